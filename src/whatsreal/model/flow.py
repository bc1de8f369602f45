"""Counterfactual flow matching (paper section 3, A.1-A.2).

The decoder never sees the anchor's encoding: its conditioning is the set of
physics tokens (from every other-survey view of the same galaxy) and instrument
tokens (from every neighbour in the anchor's survey), concatenated into one
sequence. Padded views are removed from cross-attention with
``encoder_attention_mask`` (the paper's code only zeroed them, which still
takes softmax weight). Any number of views of either kind works.

Flow: x_t = (1 - t) x0 + t x1 with x0 ~ N(0, I), x1 the anchor; the UNet
predicts the velocity x1 - x0; the loss is its MSE, t ~ U[0, 1].
"""

from __future__ import annotations

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

    def repeat(self, n: int) -> Conditioning:
        """Each conditioning set n times in a row (for n posterior samples per set)."""
        return Conditioning(self.tokens.repeat_interleave(n, 0), self.mask.repeat_interleave(n, 0))


class FlowMatchingModel(nn.Module):
    def __init__(self, model_cfg: dict, channels: int, size: int) -> None:
        super().__init__()
        enc = model_cfg["encoder"]
        self.physics_encoder = TokenEncoder(enc["name"], channels, enc["tokens"], enc["token_dim"])
        self.instrument_encoder = TokenEncoder(enc["name"], channels, enc["tokens"], enc["token_dim"])
        u = model_cfg["unet"]
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
        )
        self.time_scale = float(model_cfg["time_scale"])
        self.tokens_per_image = enc["tokens"]

    def _encode(
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
        pt, pm = self._encode(self.physics_encoder, physics, physics_mask)
        it, im = self._encode(self.instrument_encoder, instrument, instrument_mask)
        return Conditioning(torch.cat([pt, it], 1), torch.cat([pm, im], 1))

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        t = t.reshape(-1).expand(x_t.shape[0]) * self.time_scale
        return self.unet(
            x_t,
            t,
            encoder_hidden_states=cond.tokens.to(x_t.dtype),
            encoder_attention_mask=cond.mask.to(x_t.dtype),
            return_dict=False,
        )[0]

    def loss(
        self, x1: torch.Tensor, cond: Conditioning, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean flow-matching loss and the per-sample losses."""
        x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
        t = torch.rand((x1.shape[0],), generator=generator, device=x1.device, dtype=x1.dtype)
        tt = t[:, None, None, None]
        x_t = (1 - tt) * x0 + tt * x1
        err = (self.velocity(x_t, t, cond) - (x1 - x0)) ** 2
        per_sample = err.flatten(1).mean(1)
        return per_sample.mean(), per_sample


def build_model(cfg: dict) -> FlowMatchingModel:
    """The model a (validated) config describes, for the preprocessed image shape."""
    pre = cfg["preprocess"]
    return FlowMatchingModel(cfg["model"], channels=len(pre["bands"]), size=pre["size"])
