"""The conditioning gain: how much the decoder relies on each half of its conditioning.

A decoder that ignores its instrument tokens scores the same flow-matching loss
whether it is given the anchor's own neighbour set or another galaxy's; one that
uses them does worse with the wrong set. So, on the same starting noise x0 and
time t, the loss is computed three times:

(a) with the true conditioning;
(b) with the instrument half (tokens and mask) taken from another sample
    anchored in the *same* survey (a neighbour set from elsewhere on the sky);
(c) with the physics half taken from another same-survey-anchored sample
    (another galaxy seen through the other survey).

gain_instrument = loss(b) - loss(a) and gain_physics = loss(c) - loss(a), per
sample. Swapping only within an anchor survey keeps the comparison about *which*
conditions and galaxy, not which survey. Both gains must be positive in a model
that has learned the method; this is the most direct evidence of it, and it is
logged at every validation (``val/gain_{half}_{survey}`` in metrics.csv).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from whatsreal.model.flow import Conditioning, FlowMatchingModel

__all__ = ["HALVES", "conditioning_gains", "derangement_within_groups"]

HALVES = ("instrument", "physics")


def derangement_within_groups(groups: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A permutation ``perm`` with ``groups[perm[i]] == groups[i]`` and ``perm[i] != i``
    wherever i's group has another member; members of singleton groups map to themselves.

    A random order of each group shifted by one: a uniformly random cyclic derangement."""
    groups = groups.cpu()
    perm = torch.arange(groups.numel())
    for g in torch.unique(groups):
        idx = torch.nonzero(groups == g).flatten()
        if idx.numel() < 2:
            continue
        order = idx[torch.randperm(idx.numel(), generator=generator)]
        perm[order] = order.roll(1)
    return perm


@torch.no_grad()
def conditioning_gains(
    model: FlowMatchingModel,
    x1: torch.Tensor,
    cond: Conditioning,
    groups: torch.Tensor,
    generator: torch.Generator | None = None,
    draws: int = 1,
) -> dict[str, torch.Tensor]:
    """Per-sample gains ``{"instrument": (B,), "physics": (B,)}``, averaged over ``draws``
    independent (x0, t, partner) draws; NaN for samples with no same-group partner.
    ``"loss"`` holds the per-sample loss with the true conditioning, averaged alike.

    ``generator`` (a CPU generator) fixes the draws, so the same model and batch give the
    same gains. The partner of each sample is redrawn per draw, so a gain is not the
    accident of one swapped set."""
    b = x1.shape[0]
    total = {h: torch.zeros(b, dtype=torch.float64) for h in (*HALVES, "loss")}
    perm = torch.arange(b)
    for _ in range(draws):
        x0 = torch.randn(x1.shape, generator=generator).to(x1.device, x1.dtype)
        t = model.sample_time(b, generator).to(x1.device, x1.dtype)
        _, base = model.loss(x1, cond, x0=x0, t=t)
        total["loss"] += base.double().cpu()
        for half in HALVES:
            perm = derangement_within_groups(groups, generator)
            _, swapped = model.loss(x1, cond.with_half_from(half, perm.to(x1.device)), x0=x0, t=t)
            total[half] += (swapped - base).double().cpu()
    alone = perm == torch.arange(b)  # singleton groups: the same for every draw
    out = {}
    for half in HALVES:
        g = total[half] / draws
        g[alone] = float("nan")
        out[half] = g
    out["loss"] = total["loss"] / draws
    return out
