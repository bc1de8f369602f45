"""Structured contrastive dual encoder (seed 001, "Causal Foundation Models"), on image triplets.

The seed trains two encoders of the same architecture, untied, on the *same* input: a
physics latent that must not change when only the instrument does, and an instrument
latent that must not change when only the object does. Its triplets (anchor, same object
under another instrument, another object under the same instrument) are ours:

- physics space: the positives of an anchor are its physics views (the same galaxy seen
  by the other survey); every other embedding of the batch is a negative;
- instrument space: the positives are its instrument views (the anchor survey's spatial
  neighbours, padded ones masked out); every other embedding of the batch is a negative.

Each space gets the seed's generalised InfoNCE (its eq. 7), on l2-normalised outputs of a
SimCLR projection head that is used in training only:

    L(a) = -log( sum_{p in P(a)} e^{a.p/tau} / (sum_{p in P(a)} e^{a.p/tau} + sum_{n in N(a)} e^{a.n/tau}) )

averaged over the anchors of the batch (eqs. 8, 9). Optionally (on by default, as in the
seed) a multiplicative decoder reconstructs the anchor from its own two latents, the
seed's eq. 6: x_hat = D(g_phys(z_phys) * g_inst(z_inst)), with g small MLPs into a shared
hidden space and D, for images instead of light curves, a small transposed-convolution
decoder; the loss is the MSE (eq. 11). The total is eq. 10's weighted sum.

Only anchors and views are encoded, never anything else, so the exported latents
(:mod:`whatsreal.model.embed`) are those of the same encoders as in the flow-matching
model: physics tokens (4x16, flattened) and instrument tokens (4x16, mean-pooled). The
projection heads read exactly those: the flattened physics tokens and the pooled
instrument tokens, so the structure the loss builds is in the space the experiments read.

The single-latent baseline of the seed (``method: single_latent``) is one encoder trained
with the physics-space loss only (same object, other survey): :class:`SingleLatentModel`.

Under DDP the candidates are gathered from every rank (:func:`gather_across_ranks`, with
the gradient flowing back to the rank that made them), so an anchor's negatives are the
whole global batch, as in SimCLR's large-batch training, and a run on 4 GPUs at batch 64
contrasts against 4 x 64 anchors (and their views), not 64; each rank's loss is still the
mean over its own anchors, and DDP averages the gradients. In one process nothing is
gathered. Two anchors whose neighbourhoods overlap are still each other's instrument
negatives (the batch does not say which images are whose neighbours): a few false
negatives, which contrastive learning tolerates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
from torch import nn

from whatsreal.model.encoders import TokenEncoder

__all__ = [
    "ContrastiveLosses",
    "DualContrastiveModel",
    "MultiplicativeDecoder",
    "SingleLatentModel",
    "build_contrastive_model",
    "contrastive_candidates",
    "gather_across_ranks",
    "generalized_info_nce",
    "projection_head",
]


def generalized_info_nce(
    anchors: torch.Tensor,
    candidates: torch.Tensor,
    positive: torch.Tensor,
    valid: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor generalised InfoNCE (seed 001, eq. 7) and which anchors have one.

    ``anchors`` (N, d), ``candidates`` (M, d): embeddings, l2-normalised here. ``positive`` and
    ``valid`` (N, M) bool: for anchor i, P(i) = {j: positive[i, j]} and N(i) = {j: valid[i, j]
    and not positive[i, j]}; an invalid candidate (the anchor itself, a padded view) is in
    neither. Returns the (N,) losses, zero where an anchor has no positive, and the (N,) mask
    of anchors that have one (those the batch mean is taken over).
    """
    a = F.normalize(anchors, dim=-1)
    c = F.normalize(candidates, dim=-1)
    logits = (a.float() @ c.float().T) / temperature  # float32 under autocast: the masks use finfo.min
    positive = positive & valid
    neg_inf = torch.finfo(logits.dtype).min
    log_pos = torch.logsumexp(logits.masked_fill(~positive, neg_inf), dim=1)
    log_all = torch.logsumexp(logits.masked_fill(~valid, neg_inf), dim=1)
    has = positive.any(dim=1)
    loss = torch.where(has, log_all - log_pos, torch.zeros_like(log_all))
    return loss, has


def projection_head(in_dim: int, out_dim: int) -> nn.Sequential:
    """SimCLR's projection head (Chen et al. 2020): Linear, ReLU, Linear; used in training only."""
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, out_dim))


class MultiplicativeDecoder(nn.Module):
    """Seed 001's eq. 6 for images: D(g_phys(z_phys) * g_inst(z_inst)).

    g_phys, g_inst: small MLPs into a shared ``hidden``-wide space; their element-wise
    product is mapped to a coarse feature map and upsampled by three stride-2 transposed
    convolutions (x8) to the image, resized to ``size`` when that is not a multiple of 8.
    """

    def __init__(self, phys_dim: int, inst_dim: int, hidden: int, channels: int, size: int) -> None:
        super().__init__()
        self.g_physics = nn.Sequential(nn.Linear(phys_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.g_instrument = nn.Sequential(nn.Linear(inst_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.size = size
        self.base = max(1, math.ceil(size / 8))
        self.width = 64
        self.to_map = nn.Linear(hidden, self.width * self.base * self.base)
        self.up = nn.Sequential(
            nn.GELU(),
            nn.ConvTranspose2d(self.width, 64, 4, stride=2, padding=1),
            nn.GELU(),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
            nn.GELU(),
            nn.ConvTranspose2d(32, 32, 4, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(32, channels, 3, padding=1),
        )

    def forward(self, z_physics: torch.Tensor, z_instrument: torch.Tensor) -> torch.Tensor:
        fused = self.g_physics(z_physics) * self.g_instrument(z_instrument)
        x = self.up(self.to_map(fused).view(-1, self.width, self.base, self.base))
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x


@dataclass
class ContrastiveLosses:
    """Per-anchor loss terms of a batch, each (B,), with the mask of anchors a term applies to."""

    physics: torch.Tensor
    physics_has: torch.Tensor
    instrument: torch.Tensor | None = None
    instrument_has: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None

    def terms(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """name -> (per-anchor values, mask) of every term this model has."""
        out = {"physics": (self.physics, self.physics_has)}
        if self.instrument is not None:
            out["instrument"] = (self.instrument, self.instrument_has)
        if self.reconstruction is not None:
            out["reconstruction"] = (self.reconstruction, torch.ones_like(self.physics_has))
        return out

    def total(self, weights: dict[str, float], select: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Eq. 10 on the anchors ``select`` (all by default): each term's mean over the anchors it
        applies to (0 when none does), and ``loss``, their weighted sum."""
        out: dict[str, torch.Tensor] = {}
        loss = self.physics.new_zeros(())
        for name, (values, has) in self.terms().items():
            w = has if select is None else has & select
            mean = (values * w).sum() / w.sum().clamp_min(1)
            out[name] = mean
            loss = loss + weights[name] * mean
        out["loss"] = loss
        return out


def _with_views(
    encoder: nn.Module, x: torch.Tensor, views: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Encode the (B, C, H, W) anchors and the real views of (B, V, C, H, W) in one pass (one set
    of batch-norm statistics for both): anchor tokens (B, T, D), view tokens (n, T, D) and the
    anchor each view belongs to (n,). Padded views are never encoded."""
    b = x.shape[0]
    owner = torch.arange(b, device=x.device)[:, None].expand(mask.shape)[mask]
    tokens = encoder(torch.cat([x, views[mask]]))
    return tokens[:b], tokens[b:], owner


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_across_ranks(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every rank's ``x`` (n_r, ...) concatenated in rank order, and the offset of this rank's rows.

    Ranks may hold different numbers of rows (each encodes only its real views): the rows are
    padded to the largest count for the collective and cut back after. A float tensor keeps its
    gradient (torch.distributed.nn's all_gather sends each rank the gradient of its own rows);
    an integer one (owners) is gathered as data. Without a process group of more than one rank:
    ``(x, 0)``.
    """
    if not _distributed():
        return x, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    padded = torch.cat([x, x.new_zeros((max(sizes) - x.shape[0], *x.shape[1:]))])
    if x.is_floating_point():
        parts = dist_fn.all_gather(padded)
    else:
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)]), sum(sizes[:rank])


def contrastive_candidates(
    anchors: torch.Tensor, views: torch.Tensor, owner: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every rank's [anchors; views] as one candidate set, with this rank's anchors' positive and valid
    masks (B, n_candidates): an anchor's positives are its own views, every other candidate but
    itself a negative (:func:`generalized_info_nce`)."""
    b = anchors.shape[0]
    all_anchors, offset = gather_across_ranks(anchors)
    all_views, _ = gather_across_ranks(views)
    # A view's owner as an index into the gathered anchors: its rank's anchor offset + local index.
    all_owner, _ = gather_across_ranks(owner + offset)
    n_anchors = all_anchors.shape[0]
    ids = torch.arange(offset, offset + b, device=anchors.device)
    positive = torch.cat(
        [torch.zeros(b, n_anchors, dtype=torch.bool, device=anchors.device), ids[:, None] == all_owner[None, :]], 1
    )
    valid = torch.ones_like(positive)
    valid[:, :n_anchors] = ids[:, None] != torch.arange(n_anchors, device=anchors.device)[None, :]
    return torch.cat([all_anchors, all_views]), positive, valid


class DualContrastiveModel(nn.Module):
    """Physics and instrument TokenEncoders (as in the flow model), projection heads, and
    the optional multiplicative decoder."""

    def __init__(self, model_cfg: dict, contrastive_cfg: dict, channels: int, size: int) -> None:
        super().__init__()
        enc = model_cfg["encoder"]
        self.physics_encoder = TokenEncoder.from_config(enc, channels)
        self.instrument_encoder = TokenEncoder.from_config(enc, channels)
        phys_dim, inst_dim = enc["tokens"] * enc["token_dim"], enc["token_dim"]
        proj = int(contrastive_cfg["projection_dim"])
        self.physics_head = projection_head(phys_dim, proj)
        self.instrument_head = projection_head(inst_dim, proj)
        self.temperature = float(contrastive_cfg["temperature"])
        self.decoder = (
            MultiplicativeDecoder(phys_dim, phys_dim, int(contrastive_cfg["decoder_dim"]), channels, size)
            if contrastive_cfg["reconstruction"]
            else None
        )

    def losses(self, batch: dict[str, torch.Tensor]) -> ContrastiveLosses:
        """The per-anchor terms of a triplet batch (whatsreal.data.triplets)."""
        x = batch["target"]
        # Physics space: anchors vs [anchors; physics views].
        z_phys, pv, p_owner = _with_views(self.physics_encoder, x, batch["physics"], batch["physics_mask"])
        a = self.physics_head(z_phys.flatten(1))
        c, positive, valid = contrastive_candidates(a, self.physics_head(pv.flatten(1)), p_owner)
        phys, phys_has = generalized_info_nce(a, c, positive, valid, self.temperature)
        # Instrument space: anchors vs [anchors; instrument views (the real neighbours)].
        z_inst, iv, i_owner = _with_views(self.instrument_encoder, x, batch["instrument"], batch["instrument_mask"])
        a = self.instrument_head(z_inst.mean(1))
        c, positive, valid = contrastive_candidates(a, self.instrument_head(iv.mean(1)), i_owner)
        inst, inst_has = generalized_info_nce(a, c, positive, valid, self.temperature)
        rec = None
        if self.decoder is not None:
            rec = ((self.decoder(z_phys.flatten(1), z_inst.flatten(1)).float() - x.float()) ** 2).flatten(1).mean(1)
        return ContrastiveLosses(phys, phys_has, inst, inst_has, rec)


class SingleLatentModel(nn.Module):
    """Seed 001's baseline: one encoder (named ``physics_encoder``, the space it is exported
    as), one projection head, InfoNCE with the same galaxy in the other survey as positive."""

    def __init__(self, model_cfg: dict, contrastive_cfg: dict, channels: int) -> None:
        super().__init__()
        enc = model_cfg["encoder"]
        self.physics_encoder = TokenEncoder.from_config(enc, channels)
        self.physics_head = projection_head(enc["tokens"] * enc["token_dim"], int(contrastive_cfg["projection_dim"]))
        self.temperature = float(contrastive_cfg["temperature"])

    def losses(self, batch: dict[str, torch.Tensor]) -> ContrastiveLosses:
        x = batch["target"]
        z, pv, p_owner = _with_views(self.physics_encoder, x, batch["physics"], batch["physics_mask"])
        a = self.physics_head(z.flatten(1))
        c, positive, valid = contrastive_candidates(a, self.physics_head(pv.flatten(1)), p_owner)
        phys, has = generalized_info_nce(a, c, positive, valid, self.temperature)
        return ContrastiveLosses(phys, has)


def build_contrastive_model(cfg: dict) -> DualContrastiveModel | SingleLatentModel:
    """The model of a validated config whose ``method`` is ``contrastive`` or ``single_latent``."""
    pre = cfg["preprocess"]
    channels, size = len(pre["bands"]), pre["size"]
    if cfg["method"] == "single_latent":
        return SingleLatentModel(cfg["model"], cfg["contrastive"], channels)
    if cfg["method"] == "contrastive":
        return DualContrastiveModel(cfg["model"], cfg["contrastive"], channels, size)
    raise ValueError(f"method '{cfg['method']}' is not a contrastive method")
