"""Which ODE sampler gives Euler-250's counterfactuals for fewer network evaluations (issue 17).

The paper integrates the learned flow with 250 Euler steps, so every posterior sample costs
250 UNet evaluations. A cheaper solver is only acceptable if the numbers the paper reports do
not move: the counterfactual MSE (of the samples and of the posterior mean, against the real
target; whatsreal.experiments.counterfactuals) and the pixel z-score std of Fig 9
(whatsreal.experiments.calibration). This module draws the posterior of the same held-out
galaxies from the *same* starting noise x0 with every candidate and compares those three
numbers with Euler-250's, per direction; :func:`fastest_within` picks the candidate with the
fewest evaluations whose every number is within a relative tolerance (2 % by default) of the
reference in every direction.

Candidates are the fixed-step samplers of :mod:`whatsreal.model.samplers` (what the
experiment rules can be switched to through ``sample.method``/``sample.steps``) and,
for comparison, zuko's adaptive Dormand-Prince solver (``dopri5``; its evaluation count is
counted, not chosen). A row's ``seconds`` is the wall time of its sampling on the device it
ran on, so the speed of candidates can be compared within one study.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from whatsreal.data.triplets import TripletDataset
from whatsreal.device import cuda_bf16
from whatsreal.experiments.calibration import pixel_z
from whatsreal.experiments.metrics import counterfactual_mse
from whatsreal.experiments.posterior import galaxy_noise, nfe_per_step
from whatsreal.model.flow import Conditioning, FlowMatchingModel
from whatsreal.model.samplers import METHODS, integrate

__all__ = [
    "METRICS",
    "STUDY_COLUMNS",
    "Candidate",
    "fastest_within",
    "integrate_adaptive",
    "parse_candidates",
    "run_sampler_study",
]

log = logging.getLogger(__name__)

METRICS = ("mse_samples", "mse_posterior_mean", "z_std")
"""The numbers a sampler must reproduce: both counterfactual MSEs and the calibration z std."""

STUDY_COLUMNS = (
    "direction",
    "candidate",
    "method",
    "steps",
    "rtol",
    "nfe",
    "seconds",
    *METRICS,
    *(f"rel_{m}" for m in METRICS),
)


@dataclass(frozen=True)
class Candidate:
    """One sampler: a fixed-step method with ``steps`` steps, or ``dopri5`` at tolerance ``rtol``."""

    method: str
    steps: int = 0
    rtol: float = 0.0

    @property
    def name(self) -> str:
        return f"dopri5-{self.rtol:g}" if self.method == "dopri5" else f"{self.method}-{self.steps}"

    @property
    def fixed_nfe(self) -> int | None:
        """Evaluations per sample, known in advance for fixed-step methods (None for dopri5)."""
        return None if self.method == "dopri5" else self.steps * nfe_per_step(self.method)


def parse_candidates(specs: list[str]) -> list[Candidate]:
    """Candidates from ``method-steps`` strings (``heun-10``) or ``dopri5-<rtol>`` (``dopri5-1e-3``)."""
    out = []
    for spec in specs:
        method, _, value = spec.partition("-")
        try:
            if method == "dopri5":
                cand = Candidate("dopri5", rtol=float(value))
                ok = cand.rtol > 0
            else:
                cand = Candidate(method, steps=int(value))
                ok = method in METHODS and cand.steps > 0
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"sampler candidate '{spec}': expected <method>-<steps> with method in {METHODS} "
                "and steps > 0, or dopri5-<rtol> with rtol > 0"
            )
        out.append(cand)
    return out


class EvaluationLimitError(RuntimeError):
    """An adaptive solve needed more network evaluations than allowed."""


@torch.no_grad()
def integrate_adaptive(
    model: FlowMatchingModel, x0: torch.Tensor, cond: Conditioning, rtol: float, max_nfe: int = 2000
) -> tuple[torch.Tensor, int]:
    """(x at t=1, network evaluations per sample) by zuko's adaptive Dormand-Prince solver.

    The step size is controlled on the whole batch at once (zuko's error norm spans it), so
    the evaluation count is that of the hardest sample; ``atol`` is ``rtol`` / 10 in the
    model's pixel units (values of order 1). More than ``max_nfe`` evaluations raise
    :class:`EvaluationLimitError` instead of running on."""
    from zuko.utils import odeint

    count = 0

    def velocity(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        nonlocal count
        count += 1
        if count > max_nfe:
            raise EvaluationLimitError(f"dopri5 at rtol {rtol:g} needed more than {max_nfe} evaluations")
        return model.velocity(x, t.to(x.dtype).reshape(()), cond).to(x.dtype)

    x = odeint(velocity, x0.float(), 0.0, 1.0, atol=rtol / 10, rtol=rtol)
    return x, count


def _draw(
    model: FlowMatchingModel, cond: Conditioning, x0: torch.Tensor, cand: Candidate, device: torch.device
) -> tuple[np.ndarray, int, float]:
    """(samples (B*S, C, H, W) as float32, evaluations per sample, seconds) of one candidate."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    if cand.method == "dopri5":
        x, nfe = integrate_adaptive(model, x0, cond, cand.rtol, max_nfe=500)
    else:
        x, nfe = integrate(model, x0, cond, cand.steps, cand.method), int(cand.fixed_nfe or 0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return x.float().cpu().numpy(), nfe, time.perf_counter() - start


def _metrics(samples: np.ndarray, target: np.ndarray) -> dict[str, float]:
    mse_s, mse_m = counterfactual_mse(samples, target)
    z, _ = pixel_z(samples, target)
    return {"mse_samples": mse_s, "mse_posterior_mean": mse_m, "z_std": float(z.std())}


@torch.no_grad()
def run_sampler_study(
    model: FlowMatchingModel,
    data: str,
    pairs: np.ndarray,
    directions: tuple[str, ...],
    surveys: tuple[str, ...],
    mode: str,
    n_samples: int,
    candidates: list[Candidate],
    reference: Candidate,
    seed: int,
    device: torch.device,
) -> pd.DataFrame:
    """One row per (direction, candidate), reference first, with the relative differences
    ``rel_<metric>`` = (candidate - reference) / reference.

    Every candidate integrates from the same x0 (:func:`~whatsreal.experiments.posterior.galaxy_noise`
    keyed by (``seed``, pair), as the posterior rule draws it) and the same conditioning,
    encoded once per direction; on CUDA the network runs under bf16 autocast, as in the
    posterior rule."""
    model.eval().to(device)
    rows = []
    for direction in directions:
        anchors = np.full(pairs.shape, surveys.index(direction), dtype=np.int64)
        ds = TripletDataset(data, pairs, mode=mode, anchors=anchors, surveys=surveys)
        batch = ds.__getitems__(list(range(len(pairs))))
        shape = tuple(batch["target"].shape[1:])
        x0 = torch.cat([galaxy_noise(seed, int(p), n_samples, shape) for p in batch["pair"]]).to(device)
        target = batch["target"].numpy()
        with cuda_bf16(device):
            cond = model.condition_batch({k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)})
            cond = cond.repeat(n_samples)
            ref_row: dict | None = None
            for cand in [reference, *[c for c in candidates if c != reference]]:
                try:
                    flat, nfe, seconds = _draw(model, cond, x0, cand, device)
                except EvaluationLimitError as err:
                    log.warning("%s-anchored: %s; candidate left out", direction, err)
                    continue
                samples = flat.reshape(len(pairs), n_samples, *shape)
                row = {
                    "direction": direction,
                    "candidate": cand.name,
                    "method": cand.method,
                    "steps": cand.steps,
                    "rtol": cand.rtol,
                    "nfe": nfe,
                    "seconds": seconds,
                    **_metrics(samples, target),
                }
                ref_row = ref_row or row
                for m in METRICS:
                    row[f"rel_{m}"] = (row[m] - ref_row[m]) / ref_row[m]
                rows.append(row)
                log.info(
                    "%s-anchored %-12s %4d evaluations %7.2f s: MSE samples %.5f (%+.2f%%), posterior mean %.5f "
                    "(%+.2f%%), z std %.4f (%+.2f%%)",
                    *(direction, cand.name, nfe, seconds, row["mse_samples"], 100 * row["rel_mse_samples"]),
                    *(row["mse_posterior_mean"], 100 * row["rel_mse_posterior_mean"]),
                    *(row["z_std"], 100 * row["rel_z_std"]),
                )
    return pd.DataFrame(rows, columns=list(STUDY_COLUMNS))


def fastest_within(table: pd.DataFrame, reference: str, tolerance: float = 0.02) -> pd.Series | None:
    """The candidate (not the reference) with the fewest evaluations per sample whose every
    ``rel_<metric>`` is within ``tolerance`` in every direction studied, as a row with its
    worst relative difference (``worst``) and its largest evaluation count over directions
    (``nfe``); None when no candidate qualifies. Ties in evaluations go to the smaller worst
    difference."""
    rel = [f"rel_{m}" for m in METRICS]
    others = table[table["candidate"] != reference]
    if others.empty:
        return None
    n_directions = table["direction"].nunique()
    per = others.assign(worst=others[rel].abs().max(axis=1)).groupby("candidate")
    summary = pd.DataFrame(
        {
            "nfe": per["nfe"].max(),
            "worst": per["worst"].max(),
            "directions": per["direction"].nunique(),
            "seconds": per["seconds"].sum(),
        }
    )
    ok = summary[(summary["worst"] <= tolerance) & (summary["directions"] == n_directions)]
    if ok.empty:
        return None
    return ok.sort_values(["nfe", "worst"]).iloc[0]
