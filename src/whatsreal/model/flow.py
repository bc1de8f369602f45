"""Counterfactual flow matching (paper section 3, A.1-A.2).

The decoder never sees the anchor's encoding: its conditioning is the set of
physics tokens (from every other-survey view of the same galaxy) and instrument
tokens (from every neighbour in the anchor's survey), concatenated into one
sequence. Padded views are removed from cross-attention with
``encoder_attention_mask`` (the paper's code only zeroed them, which still
takes softmax weight). Any number of views of either kind works.

Flow: x_t = (1 - t) x0 + t x1 with x0 ~ N(0, I), x1 the anchor; the UNet
predicts the velocity x1 - x0; the loss is its MSE, t ~ U[0, 1] (the paper's).

Two switches exist for small models trained briefly (the CPU demo), both off in
the paper's configuration:

- ``model.time_sampling``: t drawn from a logit-normal instead of U[0, 1]. The
  pixel noise and PSF the instrument tokens describe only change the optimal
  velocity near t = 1 (at t, a background pixel of noise sigma is resolved from
  the interpolant once t * sigma is comparable to 1 - t, i.e. t > ~0.8 for HSC in
  preprocessed units); uniform t spends most steps where they do not matter.
- ``model.unet.global_conditioning``: the masked means of the physics and of the
  instrument tokens are also added to the UNet's time embedding (diffusers'
  ``class_embed_type="projection"``), so every ResNet block at every resolution
  sees them. Cross-attention alone reaches only the resolutions with attention
  blocks (12x12 in the demo), far from the 48-pixel level where noise is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from whatsreal.model.encoders import TokenEncoder

__all__ = ["Conditioning", "FlowMatchingModel", "build_model"]


@dataclass
class Conditioning:
    """The decoder's context: (B, L, D) tokens and a (B, L) bool mask (True = real)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    n_physics: int = 0
    """The first ``n_physics`` tokens come from the physics encoder, the rest from the instrument one."""

    def repeat(self, n: int) -> Conditioning:
        """Each conditioning set n times in a row (for n posterior samples per set)."""
        return Conditioning(self.tokens.repeat_interleave(n, 0), self.mask.repeat_interleave(n, 0), self.n_physics)

    def halves(self) -> dict[str, slice]:
        """Token ranges of the two halves of the conditioning."""
        return {"physics": slice(0, self.n_physics), "instrument": slice(self.n_physics, self.tokens.shape[1])}

    def with_half_from(self, half: str, perm: torch.Tensor) -> Conditioning:
        """This conditioning with one half (tokens and mask) taken from samples ``perm``:
        sample i gets the ``half`` of sample ``perm[i]`` and keeps its own other half."""
        sl = self.halves()[half]
        tokens = self.tokens.clone()
        mask = self.mask.clone()
        tokens[:, sl] = self.tokens[perm, sl]
        mask[:, sl] = self.mask[perm, sl]
        return Conditioning(tokens, mask, self.n_physics)

    def pooled(self) -> torch.Tensor:
        """(B, 2 D): masked mean of the physics tokens beside that of the instrument tokens."""
        parts = []
        for sl in self.halves().values():
            w = self.mask[:, sl].to(self.tokens.dtype)[..., None]
            parts.append((self.tokens[:, sl] * w).sum(1) / w.sum(1).clamp_min(1.0))
        return torch.cat(parts, 1)


class FlowMatchingModel(nn.Module):
    def __init__(self, model_cfg: dict, channels: int, size: int) -> None:
        super().__init__()
        enc = model_cfg["encoder"]
        self.physics_encoder = TokenEncoder.from_config(enc, channels)
        self.instrument_encoder = TokenEncoder.from_config(enc, channels)
        u = model_cfg["unet"]
        self.global_conditioning = bool(u["global_conditioning"])
        extra = (
            {"class_embed_type": "projection", "projection_class_embeddings_input_dim": 2 * enc["token_dim"]}
            if self.global_conditioning
            else {}
        )
        self.unet = UNet2DConditionModel(
            sample_size=size,
            in_channels=channels,
            out_channels=channels,
            block_out_channels=tuple(u["block_out_channels"]),
            layers_per_block=u["layers_per_block"],
            down_block_types=tuple(u["down_block_types"]),
            up_block_types=tuple(u["up_block_types"]),
            attention_head_dim=u["attention_head_dim"],
            cross_attention_dim=enc["token_dim"],
            norm_num_groups=u["norm_num_groups"],
            **extra,
        )
        self.time_scale = float(model_cfg["time_scale"])
        self.time_sampling = dict(model_cfg["time_sampling"])
        self.tokens_per_image = enc["tokens"]

    def encode_views(
        self, encoder: TokenEncoder, views: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, V, C, H, W) views and (B, V) mask -> (B, V*T, D) tokens, (B, V*T) mask."""
        b, v = views.shape[:2]
        tokens = encoder(views.flatten(0, 1)).unflatten(0, (b, v))  # (B, V, T, D)
        tmask = mask[:, :, None].expand(b, v, tokens.shape[2])
        return tokens.flatten(1, 2), tmask.flatten(1, 2)

    def condition(
        self, physics: torch.Tensor, physics_mask: torch.Tensor, instrument: torch.Tensor, instrument_mask: torch.Tensor
    ) -> Conditioning:
        """Encode every physics and instrument view and concatenate their tokens."""
        pt, pm = self.encode_views(self.physics_encoder, physics, physics_mask)
        it, im = self.encode_views(self.instrument_encoder, instrument, instrument_mask)
        return Conditioning(torch.cat([pt, it], 1), torch.cat([pm, im], 1), n_physics=pt.shape[1])

    def condition_batch(self, batch: Mapping[str, torch.Tensor]) -> Conditioning:
        """:meth:`condition` on a triplet batch (``TripletDataset``'s ``physics``, ``instrument`` and
        their masks, already on the model's device), as training, the conditioning gain and the
        benchmarks call it."""
        return self.condition(batch["physics"], batch["physics_mask"], batch["instrument"], batch["instrument_mask"])

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        t = t.reshape(-1).expand(x_t.shape[0]) * self.time_scale
        return self.unet(
            x_t,
            t,
            encoder_hidden_states=cond.tokens.to(x_t.dtype),
            encoder_attention_mask=cond.mask.to(x_t.dtype),
            class_labels=cond.pooled().to(x_t.dtype) if self.global_conditioning else None,
            return_dict=False,
        )[0]

    def sample_time(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> torch.Tensor:
        """Training times t in (0, 1): U[0, 1] (the paper) or logit-normal (``model.time_sampling``)."""
        ts = self.time_sampling
        if ts["distribution"] == "uniform":
            return torch.rand((n,), generator=generator, device=device)
        z = torch.randn((n,), generator=generator, device=device)
        return torch.sigmoid(ts["loc"] + ts["scale"] * z)

    def loss(
        self,
        x1: torch.Tensor,
        cond: Conditioning,
        generator: torch.Generator | None = None,
        x0: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean flow-matching loss and the per-sample losses. ``x0`` and ``t`` may be given
        (the conditioning-gain measurement scores several conditionings on the same draws)."""
        if x0 is None:
            x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
        if t is None:
            t = self.sample_time(x1.shape[0], generator, x1.device).to(x1.dtype)
        tt = t[:, None, None, None]
        x_t = (1 - tt) * x0 + tt * x1
        err = (self.velocity(x_t, t, cond) - (x1 - x0)) ** 2
        per_sample = err.flatten(1).mean(1)
        return per_sample.mean(), per_sample


def build_model(cfg: dict) -> FlowMatchingModel:
    """The model a (validated) config describes, for the preprocessed image shape."""
    pre = cfg["preprocess"]
    return FlowMatchingModel(cfg["model"], channels=len(pre["bands"]), size=pre["size"])
