"""What knowing an observing condition is worth to the flow-matching loss (synthetic sky).

Every decoder trained on the demo sky, the oracle handed the true PSF included, lowers its loss
with the sky noise of its conditioning and not with the PSF
(whatsreal.experiments.conditioning_sensitivity). That is either the loss (it does not pay for
the PSF on this sky) or the decoder (it does, and the decoder does not collect). This module
computes what the loss pays, per pixel in the model's standardised units, for a decoder that
knows the noiseless scene s apart from the one condition in question. With
x1 = s + n, n ~ N(0, sp^2) per pixel, x_t = t x1 + (1 - t) x0 and the velocity v = x1 - x0,
the Bayes predictor given s and sp is v_hat = s + k r, with r = x_t - t s,
V = t^2 sp^2 + (1 - t)^2 and k = (t sp^2 - (1 - t)) / V; its residual is uncorrelated with r.

- **Mismatch cost** (what a swap measures of a decoder that trusts its conditioning): told a
  noise level sp' instead of sp, the loss grows by (k' - k)^2 V; told the scene through another
  PSF, s' = s + d, by d^2 (1 - t)^2 / V^2.
- **Value of knowing** (what a decoder that also reads x_t gains from the condition over the
  sky's spread of it): the PSF as one scalar a ~ N(0, 1) along d (a standard deviation of PSF
  FWHM over the sky), so the scene is s0 + a d; x_t informs a with precision t^2 sum(d^2 / V),
  and not knowing a costs Var(a | r) sum(d^2 (1 - t)^2 / V^2). The noise level as log sigma
  with the sky's prior standard deviation; x_t informs it with the Fisher information
  sum(2 t^4 sp^4 / V^2), and not knowing it costs Var(log sigma | r) sum((dk / dlog sigma)^2 V)
  (delta method, dk / dlog sigma = 2 t (1 - t) sp^2 / V^2).

Both are means over the stamp's pixels and bands, as the loss is. They are upper bounds on
what a real decoder can collect only in the sense that it knows the scene: a decoder that is
unsure of the galaxy's light to more than |d| per pixel gains less from the PSF. Per-pixel
noise sp and the PSF's effect d are measured on the simulator's own renders, through the
data's preprocessing (whatsreal.experiments.truth_images.preprocess_noiseless), so the
arcsinh stretch and Legacy's resampling are included. Pixels are taken as independent
throughout: the resampling correlates Legacy's noise, so there x_t tells a little less of
either condition than assumed, and the values of knowing are slightly low.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np
import pandas as pd
import torch
from scipy.special import expit, ndtri

from whatsreal.data.stages import read_normalisation
from whatsreal.data.triplets import TripletDataset
from whatsreal.data.usable import usable_pairs
from whatsreal.experiments.conditioning_gain import val_pairs
from whatsreal.experiments.truth_images import preprocess_noiseless
from whatsreal.io import read_table
from whatsreal.layout import DatasetLayout
from whatsreal.sim.noiseless import object_spec, sky_specs
from whatsreal.sim.render import ObjectSpec, render_stamp
from whatsreal.surveys import SURVEY_ORDER, Survey

__all__ = [
    "FLOOR_COLUMNS",
    "FLOOR_TIMES",
    "VALUE_COLUMNS",
    "HeldOutStamps",
    "StampTerms",
    "floor_lines",
    "floor_table",
    "held_out_stamps",
    "known_scene_loss",
    "losses_at_times",
    "mismatch_costs",
    "stamp_terms",
    "time_density",
    "value_table",
    "values_of_knowing",
]

VALUE_COLUMNS = ["survey", "t_lo", "t_hi", "condition", "mismatch_cost", "value_of_knowing", "n_stamps"]
"""Rows of :func:`value_table`: per survey, t bin and condition (``sky noise``, ``PSF FWHM``),
the mean cost per pixel of a one-standard-deviation mismatch and the value of knowing."""

FLOOR_COLUMNS = ["survey", "t", "loss", "known_scene_loss", "excess", "noise_mismatch_cost", "psf_mismatch_cost"]
"""Rows of :func:`floor_table`: a model's mean loss on the stamps at a fixed t beside the
known-scene floor and the two conditions' one-standard-deviation mismatch costs there."""

FLOOR_TIMES = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
"""Default fixed flow times to score a model at: mid path, where the sky noise pays, to close to
the image, where the PSF does."""


@dataclass(frozen=True)
class StampTerms:
    """One stamp in the model's units: per-pixel noise at its sky sigma (``sp``) and at sigma
    times exp(one standard deviation of log sigma over the sky) (``sp_alt``), and the scene's
    change when every band's PSF FWHM grows by one standard deviation over the sky (``d``)."""

    sp: np.ndarray
    sp_alt: np.ndarray
    d: np.ndarray
    sd_log_sigma: float


def stamp_terms(
    spec: ObjectSpec,
    survey: Survey,
    cutout_size: int,
    psf_beta: float,
    preprocess_cfg: dict,
    norm: dict[str, float],
    sd_fwhm: float,
    sd_log_sigma: float,
    rng: np.random.Generator,
    noise_draws: int = 16,
) -> StampTerms:
    """:class:`StampTerms` of ``spec`` rendered as the simulator renders it. The noise level in
    model units is the root mean square of ``noise_draws`` preprocessed noise draws about the
    preprocessed noiseless scene (the stretch compresses noise on bright pixels)."""
    if noise_draws < 2:
        raise ValueError(f"noise_draws must be at least 2, got {noise_draws}")
    model = render_stamp(spec, survey, cutout_size, psf_beta).model[None].astype(np.float64)
    wider = replace(spec, psf_fwhm=tuple(f + sd_fwhm for f in spec.psf_fwhm))
    model_wider = render_stamp(wider, survey, cutout_size, psf_beta).model[None].astype(np.float64)

    def units(x: np.ndarray) -> np.ndarray:
        return preprocess_noiseless(x, survey.name, preprocess_cfg, norm, survey)[0].astype(np.float64)

    base = units(model)
    sigma = np.asarray(spec.sky_sigma, dtype=np.float64)[None, :, None, None]

    def noise_level(factor: float) -> np.ndarray:
        draws = [units(model + factor * sigma * rng.standard_normal(model.shape)) - base for _ in range(noise_draws)]
        return np.sqrt(np.mean(np.square(draws), axis=0))

    sp_alt = noise_level(float(np.exp(sd_log_sigma)))
    return StampTerms(noise_level(1.0), sp_alt, units(model_wider) - base, sd_log_sigma)


@dataclass(frozen=True)
class HeldOutStamps:
    """Per survey: the chosen held-out pairs (sorted), their :class:`StampTerms`, and the sky's
    standard deviations of band-mean PSF FWHM and log band-mean sky sigma over the survey's pairs."""

    pairs: dict[str, np.ndarray]
    terms: dict[str, list[StampTerms]]
    sd_fwhm: dict[str, float]
    sd_log_sigma: dict[str, float]


def held_out_stamps(
    layout: DatasetLayout, cfg: dict, stamps: int, noise_draws: int, seed: int, surveys: Sequence[str] = SURVEY_ORDER
) -> HeldOutStamps:
    """Up to ``stamps`` random held-out pairs per survey (split ``val``, usable: never trained
    on), each anchor rendered again from the simulator's spec (``cfg`` must be the config that
    simulated the sky) and reduced to :class:`StampTerms`."""
    if stamps < 1:
        raise ValueError(f"stamps must be at least 1, got {stamps}")
    if not layout.truth.exists():
        raise FileNotFoundError(f"{layout.truth}: no truth table; the value of a condition needs a simulated sky")
    truth = pd.read_parquet(layout.truth).set_index("truth_id")
    specs = sky_specs(cfg)
    bands, sim = cfg["preprocess"]["bands"], cfg["simulation"]
    rng = np.random.default_rng(seed)
    held_out = val_pairs(layout.split, usable=usable_pairs(layout.root, tuple(surveys)))
    out = HeldOutStamps({}, {}, {}, {})
    for survey in surveys:
        meta = read_table(layout.meta(survey), ["pair", "truth_id", "object_id"])
        meta = meta[meta["truth_id"] >= 0]
        rows = truth.loc[meta["truth_id"].to_numpy()]
        out.sd_fwhm[survey] = float(rows[[f"{survey}_psf_fwhm_{b}" for b in bands]].mean(axis=1).std())
        sky = rows[[f"{survey}_sky_sigma_{b}" for b in bands]].mean(axis=1)
        out.sd_log_sigma[survey] = float(np.log(sky).std())
        candidates = meta[meta["pair"].isin(held_out)]
        chosen = candidates.iloc[np.sort(rng.choice(len(candidates), min(stamps, len(candidates)), replace=False))]
        out.pairs[survey] = chosen["pair"].to_numpy()
        entry = Survey.from_entry(survey, cfg["surveys"][survey])
        norm = read_normalisation(layout.meta(survey))
        beta = sim["surveys"][survey]["psf_beta"]
        sds = out.sd_fwhm[survey], out.sd_log_sigma[survey]
        out.terms[survey] = [
            stamp_terms(
                object_spec(specs[survey], survey, oid),
                entry,
                sim["cutout_size"],
                beta,
                cfg["preprocess"],
                norm,
                *sds,
                rng,
                noise_draws,
            )
            for oid in chosen["object_id"]
        ]
    return out


def _predictor(t: float, sp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, k) per pixel at flow time t."""
    v = t * t * sp**2 + (1 - t) ** 2
    return v, (t * sp**2 - (1 - t)) / v


def mismatch_costs(t: float, terms: StampTerms) -> tuple[float, float]:
    """Mean per-pixel loss increase at ``t`` of a decoder told the wrong noise level (``sp_alt``)
    and of one told the scene through the wrong PSF (``d``): (noise, PSF)."""
    v, k = _predictor(t, terms.sp)
    _, k_alt = _predictor(t, terms.sp_alt)
    noise = float(((k_alt - k) ** 2 * v).mean())
    psf = float((terms.d**2 * (1 - t) ** 2 / v**2).mean())
    return noise, psf


def values_of_knowing(t: float, terms: StampTerms) -> tuple[float, float]:
    """Mean per-pixel loss a decoder that reads x_t saves at ``t`` by being told the noise level
    and the PSF, against knowing only the sky's spread of them: (noise, PSF)."""
    v, _ = _predictor(t, terms.sp)
    psf_precision = 1.0 + t * t * float((terms.d**2 / v).sum())
    psf = float((terms.d**2 * (1 - t) ** 2 / v**2).mean()) / psf_precision
    fisher = float((2 * (t * t * terms.sp**2 / v) ** 2).sum())
    dk = 2 * t * (1 - t) * terms.sp**2 / v**2
    noise = float((dk**2 * v).mean()) / (1.0 / terms.sd_log_sigma**2 + fisher)
    return noise, psf


def known_scene_loss(t: float, terms: StampTerms) -> float:
    """Mean per-pixel loss at ``t`` of the Bayes predictor told the noiseless scene and the noise
    level: Var(n - x0) - Cov(n - x0, r)^2 / V. A decoder's loss above it is what it does not
    know of the scene; where that excess is large against :func:`mismatch_costs`' PSF term, the
    PSF is a small part of its error. Pixels are taken as independent: Legacy's resampling
    correlates neighbouring pixels' noise, which a decoder can use, so there the floor is high."""
    v, _ = _predictor(t, terms.sp)
    cov = t * terms.sp**2 - (1 - t)
    return float((terms.sp**2 + 1 - cov**2 / v).mean())


@torch.no_grad()
def losses_at_times(
    net: torch.nn.Module, cond: object, x1: torch.Tensor, times: Sequence[float], draws: int, seed: int
) -> np.ndarray:
    """(len(times), n) per-sample flow-matching loss of ``net`` (a FlowMatchingModel) on the
    targets ``x1`` under conditioning ``cond`` at each fixed flow time, averaged over ``draws``
    draws of x0 (drawn on the CPU from ``seed``, the same for every t)."""
    gen = torch.Generator().manual_seed(seed)
    x0s = [torch.randn(x1.shape, generator=gen).to(x1.device) for _ in range(draws)]
    out = np.zeros((len(times), x1.shape[0]))
    for i, t in enumerate(times):
        tt = torch.full((x1.shape[0],), float(t), device=x1.device)
        for x0 in x0s:
            out[i] += net.loss(x1, cond, x0=x0, t=tt)[1].double().cpu().numpy() / draws
    return out


def floor_table(
    net: torch.nn.Module,
    condition: Callable[[dict[str, torch.Tensor]], object],
    layout: DatasetLayout,
    stamps: HeldOutStamps,
    times: Sequence[float],
    draws: int,
    seed: int,
    neighbours: str = "spatial",
) -> pd.DataFrame:
    """:data:`FLOOR_COLUMNS` rows: the model ``net`` (its conditioning of a triplet batch by
    ``condition``, e.g. ``net.condition_batch``) scored on each survey's stamps, anchored in
    that survey, at each fixed t of ``times`` (:func:`losses_at_times`), beside the known-scene
    floor and the mismatch costs on the same stamps. ``neighbours``: the graph the instrument
    views come from, the run's ``neighbours.mode`` (an ablated run is scored as it was trained)."""
    device = next(net.parameters()).device
    surveys = list(SURVEY_ORDER)
    rows = []
    for survey, pairs in stamps.pairs.items():
        ds = TripletDataset(layout.root, pairs, neighbours, anchors=np.full(len(pairs), surveys.index(survey)))
        batch = {k: v.to(device) for k, v in ds.__getitems__(list(range(len(ds)))).items()}
        with torch.no_grad():
            cond = condition(batch)
        losses = losses_at_times(net, cond, batch["target"], times, draws, seed).mean(1)
        terms = stamps.terms[survey]
        for t, loss in zip(times, losses, strict=True):
            floor = float(np.mean([known_scene_loss(t, s) for s in terms]))
            noise, psf = np.mean([mismatch_costs(t, s) for s in terms], axis=0)
            rows.append((survey, float(t), float(loss), floor, float(loss) - floor, float(noise), float(psf)))
    return pd.DataFrame(rows, columns=FLOOR_COLUMNS)


def floor_lines(table: pd.DataFrame) -> list[str]:
    """:func:`floor_table` as printable lines, one per survey and t (the benchmark scripts')."""
    return [
        f"{r.survey:13s} t {r.t:.2f}: loss {r.loss:.4f}, known-scene floor {r.known_scene_loss:.4f}, "
        f"excess {r.excess:.4f}  (1-sd mismatch cost: noise {r.noise_mismatch_cost:.4f}, PSF {r.psf_mismatch_cost:.4f})"
        for r in table.itertuples()
    ]


def time_density(ts: np.ndarray, time_sampling: dict) -> np.ndarray:
    """Density of the training's flow times (``model.time_sampling``) at ``ts`` in (0, 1)."""
    ts = np.asarray(ts, dtype=np.float64)
    if time_sampling["distribution"] == "uniform":
        return np.ones_like(ts)
    z = (np.log(ts / (1 - ts)) - time_sampling["loc"]) / time_sampling["scale"]
    return np.exp(-0.5 * z**2) / (np.sqrt(2 * np.pi) * time_sampling["scale"] * ts * (1 - ts))


def _bin_edges(time_sampling: dict, bins: int) -> np.ndarray:
    """Equal-probability edges of the training's t distribution (as conditioning_sensitivity
    bins the swaps by count)."""
    q = np.linspace(0, 1, bins + 1)
    if time_sampling["distribution"] == "uniform":
        return q
    return expit(time_sampling["loc"] + time_sampling["scale"] * ndtri(q))


def value_table(
    terms_by_survey: dict[str, Sequence[StampTerms]], time_sampling: dict, bins: int, grid: int = 199
) -> pd.DataFrame:
    """:data:`VALUE_COLUMNS` rows: per survey, the mismatch cost and the value of knowing of each
    condition, averaged over the stamps and over t within each of ``bins`` equal-probability bins
    of the training's t distribution, plus one row over all t (``t_lo`` 0, ``t_hi`` 1, weighted
    by that distribution: what the training's loss pays)."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    ts = np.linspace(0.5 / grid, 1 - 0.5 / grid, grid)
    weight = time_density(ts, time_sampling)
    edges = _bin_edges(time_sampling, bins)
    spans = [(0.0, 1.0)] + ([] if bins == 1 else list(pairwise(edges)))
    rows = []
    for survey, stamps in terms_by_survey.items():
        if not stamps:
            raise ValueError(f"{survey}: no stamps to compute the value of its conditions on")
        cost = np.array([[mismatch_costs(t, s) for t in ts] for s in stamps]).mean(0)  # (grid, 2)
        value = np.array([[values_of_knowing(t, s) for t in ts] for s in stamps]).mean(0)
        for lo, hi in spans:
            inside = (ts >= lo) & (ts < hi)
            w = weight[inside] / weight[inside].sum()
            for c, condition in enumerate(("sky noise", "PSF FWHM")):
                paid = float(w @ cost[inside, c]), float(w @ value[inside, c])
                rows.append((survey, float(lo), float(hi), condition, *paid, len(stamps)))
    return pd.DataFrame(rows, columns=VALUE_COLUMNS)
