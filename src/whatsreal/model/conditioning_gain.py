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

:func:`conditioning_swaps` keeps every draw's partners and gains, so that *which* property of
the swapped set the loss responds to can be measured against the truth
(whatsreal.experiments.conditioning_sensitivity); :func:`conditioning_gains` averages them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from whatsreal.model.flow import Conditioning, FlowMatchingModel

__all__ = ["HALVES", "Swap", "average_swaps", "conditioning_gains", "conditioning_swaps", "derangement_within_groups"]

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


@dataclass(frozen=True)
class Swap:
    """One draw of one half: sample i was given the ``half`` of sample ``partner[i]``, on the
    same (x0, t) as its true-conditioning loss ``loss``; ``gain`` = swapped loss - true loss.
    ``t`` is each sample's flow time in that draw, kept so that a gain can be placed on the
    path from noise (t = 0) to image (t = 1)."""

    draw: int
    half: str
    partner: torch.Tensor
    gain: torch.Tensor
    loss: torch.Tensor
    t: torch.Tensor


@torch.no_grad()
def conditioning_swaps(
    model: FlowMatchingModel,
    x1: torch.Tensor,
    cond: Conditioning,
    groups: torch.Tensor,
    generator: torch.Generator | None = None,
    draws: int = 1,
) -> list[Swap]:
    """Every (draw, half) swap: ``draws`` independent (x0, t) draws, and per draw and half a
    fresh partner for each sample, drawn within its group (:func:`derangement_within_groups`).

    ``generator`` (a CPU generator) fixes the draws, so the same model and batch give the same
    swaps. A sample whose group has no other member keeps itself as partner (gain 0)."""
    b = x1.shape[0]
    out: list[Swap] = []
    for d in range(draws):
        x0 = torch.randn(x1.shape, generator=generator).to(x1.device, x1.dtype)
        t = model.sample_time(b, generator).to(x1.device, x1.dtype)
        _, base = model.loss(x1, cond, x0=x0, t=t)
        for half in HALVES:
            perm = derangement_within_groups(groups, generator)
            _, swapped = model.loss(x1, cond.with_half_from(half, perm.to(x1.device)), x0=x0, t=t)
            gain = (swapped - base).double().cpu()
            out.append(Swap(d, half, perm, gain, base.double().cpu(), t.double().cpu()))
    return out


def conditioning_gains(
    model: FlowMatchingModel,
    x1: torch.Tensor,
    cond: Conditioning,
    groups: torch.Tensor,
    generator: torch.Generator | None = None,
    draws: int = 1,
) -> dict[str, torch.Tensor]:
    """Per-sample gains ``{"instrument": (B,), "physics": (B,)}``, averaged over ``draws``
    independent (x0, t, partner) draws (:func:`conditioning_swaps`); NaN for samples with no
    same-group partner. ``"loss"`` holds the per-sample loss with the true conditioning,
    averaged alike.

    The partner of each sample is redrawn per draw, so a gain is not the accident of one
    swapped set."""
    return average_swaps(conditioning_swaps(model, x1, cond, groups, generator, draws), x1.shape[0], draws)


def average_swaps(swaps: list[Swap], b: int, draws: int) -> dict[str, torch.Tensor]:
    """:func:`conditioning_gains`' per-sample means of ``swaps`` (``b`` samples, ``draws`` >= 1 draws)."""
    out: dict[str, torch.Tensor] = {}
    for half in HALVES:
        mine = [s for s in swaps if s.half == half]
        g = torch.stack([s.gain for s in mine]).sum(0) / draws
        g[mine[-1].partner == torch.arange(b)] = float("nan")  # singleton groups: the same for every draw
        out[half] = g
    out["loss"] = torch.stack([s.loss for s in swaps if s.half == HALVES[0]]).sum(0) / draws
    return out
