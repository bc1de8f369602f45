"""Fig 7: the instrument encoder + decoder as a data-driven noise model, measured.

Why this design: the question is whether the decoder draws the *noise and PSF of
the instrument it is conditioned on*. Conditioning on images ranked by their SNR
from anywhere on the sky does not ask it: on our sky SNR tracks galaxy
brightness (Spearman -0.96), not noise. So the conditioning here is what the
model sees in training, a real spatial neighbour set (the anchor survey's spatial
neighbour graph's row of some pair, ``DatasetLayout.neighbours``, padded members left out),
and sets are picked by a known, true observing condition:

- **Axes.** ``sky_sigma`` (sky noise per pixel) and ``psf_fwhm`` (seeing, arcsec),
  each averaged over the model's bands. Synthetic sky: the truth table's
  ``{survey}_{quantity}_{band}`` columns joined via the survey's meta table's
  (``DatasetLayout.meta``) truth_id (a band-averaged ``{survey}_{quantity}`` column is accepted too).
  Real data: sky sigma = per band the median of 1/sqrt(ivar) over the valid pixels
  of the central crop, from the raw cutouts; PSF FWHM = the catalogue's
  ``image_psf_fwhm_<k>`` (MMU) or Legacy's ``PSFSIZE_<B>``.
- **A set's true value** is the *mean over its members* (the images the instrument
  encoder actually reads), not its anchor's; the anchor's value is kept in the log.
- **Selection.** For each configured percentile p, the level is the p-th percentile
  of the per-object value over the candidate sets' members; the chosen set is the
  candidate whose value is nearest the level. Candidates: up to ``max_sets`` anchors
  (a seeded subset, full sets preferred) whose members are all free of labelled
  artefacts, none of them being one of the generated galaxies. The chosen values are
  therefore non-decreasing in p.
- **Generation.** ``n_galaxies`` clean held-out galaxies; each keeps one starting
  noise x0 (``posterior.galaxy_noise``) across all sets and both axes, so only the
  instrument conditioning changes. Direction ``hsc``: physics = the Legacy view,
  HSC-anchored output (required); ``legacysurvey`` the reverse, when configured.
  Sampling uses the configured ``sample`` method and steps.
- **Statistics** (preprocessed units, what the model produces): output noise =
  :func:`background_noise` (robust std of adjacent-pixel differences beyond a third
  of the stamp from the centre); output size = :func:`source_size` (adaptive-moment
  sigma of the central source, pixels).
- **Slopes.** log(statistic) against log(the set's true value), pooled over galaxies
  with a per-galaxy intercept (a galaxy's size is its own), 95 % percentile
  bootstrap over galaxies. A model that uses its instrument tokens reproduces the
  *real* images' slope, not necessarily 1: preprocessing is arcsinh(x/0.01)*0.01*10,
  non-linear for background pixels with sigma >> 0.01, and a galaxy's size grows with
  the PSF only in quadrature. The reference is the same statistic on the real images
  of the candidate sets' members against each member's own true value (bootstrap
  over objects); the table reports the model slope, the real slope and their ratio.

Artefact removal (bottom of the figure, unchanged in spirit): an HSC image with a
pathology (synthetic sky: the truth flags, kept only where the artefact shows inside
the model's central crop, :func:`artifact_in_crop`; real data: the largest fraction of
masked / ivar-0 / non-finite pixels in the crop) goes through the *physics* encoder
and random clean HSC images through the instrument encoder, a combination never seen
in training. On the synthetic sky the input and the output are compared with the
noiseless truth (MSE in preprocessed units).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import galsim
import numpy as np
import pandas as pd
import torch

from whatsreal.data.mmu import read_images
from whatsreal.data.preprocess import band_positions, iter_rows_by_file, read_cutouts
from whatsreal.data.usable import usable_pairs
from whatsreal.device import compute_device
from whatsreal.experiments.posterior import galaxy_noise, sample_posterior, usable_val_pairs
from whatsreal.io import write_csv
from whatsreal.layout import DatasetLayout
from whatsreal.model.checkpoint import load_trained_model
from whatsreal.plots.generative import plot_noise_model
from whatsreal.surveys import SURVEY_ORDER
from whatsreal.truth import PATHOLOGIES, meta_truth_ids

__all__ = [
    "AXES",
    "NOISE_COLUMNS",
    "SLOPE_COLUMNS",
    "ArtifactPanel",
    "ArtifactRemoval",
    "DirectionResult",
    "NoiseModelResult",
    "SlopeFit",
    "SlopePanel",
    "Traversal",
    "TraversalRow",
    "artifact_in_crop",
    "background_noise",
    "candidate_anchors",
    "cutout_sky_sigma",
    "fit_loglog_slope",
    "measure_noise_model",
    "raw_conditions",
    "run_noise_model",
    "select_conditioning_sets",
    "source_size",
    "truth_conditions",
]

log = logging.getLogger(__name__)

AXES = ("sky_sigma", "psf_fwhm")
"""The two true conditions traversed: sky noise per pixel and PSF FWHM (arcsec)."""
STATISTIC = {"sky_sigma": "output_noise", "psf_fwhm": "output_size"}
"""Which output statistic answers which axis."""
REAL_STATISTIC = {"sky_sigma": "real_noise", "psf_fwhm": "real_size"}
NOISE_COLUMNS = (
    "kind",
    "direction",
    "axis",
    "percentile",
    "galaxy_pair",
    "object_id",
    "set_anchor_pair",
    "set_pairs",
    "conditioning_sky_sigma",
    "conditioning_psf_fwhm",
    "conditioning_value",
    "output_noise",
    "output_size",
    "real_noise",
    "real_size",
    "target_noise",
    "target_size",
    "note",
)
SLOPE_COLUMNS = (
    "direction",
    "axis",
    "statistic",
    "slope",
    "ci_lo",
    "ci_hi",
    "real_slope",
    "real_ci_lo",
    "real_ci_hi",
    "ratio",
    "n_galaxies",
    "n_levels",
    "n_real",
)
STRIPE_GAP = 4
"""Rows this far apart are compared when looking for a stripe (wider than any stripe)."""
MAX_BAD_FRACTION = 0.1
"""Real data: conditioning members and reference objects with more bad pixels in the crop are left out."""


# --------------------------------------------------------------------------- statistics


def background_noise(image: np.ndarray) -> float:
    """Robust noise std of a (C, H, W) image, per band averaged over bands: 1.4826 x MAD / sqrt(2)
    of the differences of horizontally adjacent pixels beyond a third of the stamp from the
    centre. Differencing cancels the smooth light of the galaxy's wings and of neighbours,
    so the estimate follows the pixel noise, not the galaxy's size."""
    h, w = image.shape[-2:]
    yy, xx = np.mgrid[:h, :w]
    outer = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) > min(h, w) / 3
    both = outer[:, 1:] & outer[:, :-1]
    diff = (image[:, :, 1:] - image[:, :, :-1])[:, both]
    mad = np.median(np.abs(diff - np.median(diff, axis=1, keepdims=True)), axis=1)
    return float((1.4826 * mad / np.sqrt(2)).mean())


def source_size(image: np.ndarray, guess_sigma: float = 3.0) -> float:
    """Adaptive-moment sigma (pixels) of the central source of a (C, H, W) image; NaN if it fails.

    The bands are averaged and the outer region's median (the standardisation offset of
    the background) subtracted; GalSim's HSM then fits an elliptical Gaussian weight
    matched to the source, the standard PSF/galaxy size estimator, robust to noise
    because the weight follows the object rather than a fixed aperture."""
    img = np.asarray(image, dtype=np.float64).mean(axis=0)
    h, w = img.shape
    yy, xx = np.mgrid[:h, :w]
    outer = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) > min(h, w) / 3
    img = img - np.median(img[outer])
    if not np.isfinite(img).all():
        return float("nan")
    centre = galsim.PositionD((w + 1) / 2, (h + 1) / 2)  # GalSim pixels are 1-indexed
    res = galsim.hsm.FindAdaptiveMom(
        galsim.Image(np.ascontiguousarray(img)), guess_sig=guess_sigma, guess_centroid=centre, strict=False
    )
    if res.moments_status != 0 or not np.isfinite(res.moments_sigma) or res.moments_sigma <= 0:
        return float("nan")
    # A fit that wandered off to a neighbour does not measure the central source.
    if np.hypot(res.moments_centroid.x - centre.x, res.moments_centroid.y - centre.y) > min(h, w) / 6:
        return float("nan")
    return float(res.moments_sigma)


@dataclass(frozen=True)
class SlopeFit:
    """A log-log slope with its bootstrap interval and the sample it came from."""

    slope: float
    ci_lo: float
    ci_hi: float
    n_groups: int
    n_points: int


def fit_loglog_slope(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> SlopeFit:
    """OLS slope of log(y) on log(x) with a percentile-bootstrap interval.

    With ``groups`` (e.g. the galaxy of each point) every group gets its own intercept
    (the fit is on within-group deviations) and whole groups are resampled, because the
    points of one galaxy share its x0 and its light profile and are not independent.
    Without, each point is its own unit. Non-positive or non-finite points are dropped."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log(x[ok]), np.log(y[ok])
    if groups is None:
        codes = np.arange(lx.size)
    else:
        _, codes = np.unique(np.asarray(groups)[ok], return_inverse=True)
    n_groups = int(codes.max()) + 1 if codes.size else 0
    nan = SlopeFit(float("nan"), float("nan"), float("nan"), n_groups, int(lx.size))
    if lx.size < 2:
        return nan
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot).astype(np.float64)
    if groups is None:
        # Weighted moments per resample (the global intercept is refitted each time).
        w = np.vstack([np.ones(n_groups), counts])
        sw = w.sum(axis=1)
        mx, my = (w @ lx) / sw, (w @ ly) / sw
        sxy = w @ (lx * ly) - sw * mx * my
        sxx = w @ (lx * lx) - sw * mx * mx
    else:
        dx = lx - (np.bincount(codes, lx) / np.bincount(codes))[codes]
        dy = ly - (np.bincount(codes, ly) / np.bincount(codes))[codes]
        gxy, gxx = np.bincount(codes, dx * dy, n_groups), np.bincount(codes, dx * dx, n_groups)
        w = np.vstack([np.ones(n_groups), counts])
        sxy, sxx = w @ gxy, w @ gxx
    scale = max(float(np.var(lx)), np.finfo(float).tiny) * lx.size
    with np.errstate(divide="ignore", invalid="ignore"):
        slopes = np.where(sxx > 1e-12 * scale, sxy / sxx, np.nan)
    if not np.isfinite(slopes[0]):
        return nan
    boot = slopes[1:]
    if n_groups < 2 or np.isfinite(boot).mean() < 0.9:
        return SlopeFit(float(slopes[0]), float("nan"), float("nan"), n_groups, int(lx.size))
    alpha = 0.5 * (1.0 - confidence)
    lo, hi = np.nanquantile(boot, [alpha, 1.0 - alpha])
    return SlopeFit(float(slopes[0]), float(lo), float(hi), n_groups, int(lx.size))


# --------------------------------------------------------------------------- conditions


def _band_mean(table: pd.DataFrame, survey: str, quantity: str, bands: list[str]) -> np.ndarray:
    """Mean over ``bands`` of the truth columns ``{survey}_{quantity}_{band}``.

    Tolerates a band-averaged ``{survey}_{quantity}`` column, or other bands than the
    model's (then all of the survey's bands are averaged)."""
    cols = [f"{survey}_{quantity}_{b}" for b in bands if f"{survey}_{quantity}_{b}" in table.columns]
    if not cols and f"{survey}_{quantity}" in table.columns:
        cols = [f"{survey}_{quantity}"]
    if not cols:
        prefix = f"{survey}_{quantity}_"
        cols = [c for c in table.columns if c.startswith(prefix) and len(c) - len(prefix) <= 2]
    if not cols:
        raise KeyError(f"truth table has no {survey} '{quantity}' column (looked for {survey}_{quantity}_<band>)")
    return table[cols].to_numpy(dtype=np.float64).mean(axis=1)


def truth_conditions(
    truth: str | Path | pd.DataFrame, meta: pd.DataFrame, survey: str, bands: list[str]
) -> pd.DataFrame:
    """Per row of ``meta`` (columns pair, truth_id): true sky_sigma, psf_fwhm (band means) and the
    first labelled pathology of ``survey`` ('' if none), from the synthetic sky's truth table."""
    t = pd.read_parquet(truth) if not isinstance(truth, pd.DataFrame) else truth
    t = t.set_index("truth_id")
    tid = meta_truth_ids(meta)
    found = np.isin(tid, t.index.to_numpy())
    rows = t.reindex(np.where(found, tid, t.index[0]))
    out = pd.DataFrame({"pair": meta["pair"].to_numpy(dtype=np.int64)})
    for q in AXES:
        out[q] = np.where(found, _band_mean(rows, survey, q, bands), np.nan)
    path = np.full(len(meta), "", dtype=object)
    for p in PATHOLOGIES:
        col = f"{survey}_{p}"
        if col in rows.columns:
            flag = rows[col].to_numpy(dtype=bool, na_value=False) & found
            path[flag & (path == "")] = p
    out["pathology"] = path
    out["bad_fraction"] = np.nan
    return out


def cutout_sky_sigma(
    image: np.ndarray, ivar: np.ndarray, crop: int, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(n, B, S, S) raw cutouts -> per object (sky sigma averaged over bands, fraction of bad pixels).

    Per band: the median of 1/sqrt(ivar) over the central ``crop`` x ``crop`` valid pixels
    (the noise the pipeline reports; real data have no truth). Bad = non-finite, ivar <= 0
    or False in the MMU mask (True = clean; (n, B, S, S) or one (n, S, S) for all bands)."""
    s = image.shape[-1]
    lo = max((s - crop) // 2, 0)
    x = image[..., lo : lo + crop, lo : lo + crop].astype(np.float64)
    w = ivar[..., lo : lo + crop, lo : lo + crop].astype(np.float64)
    good = np.isfinite(x) & np.isfinite(w) & (w > 0)
    if mask is not None:
        m = mask[..., lo : lo + crop, lo : lo + crop].astype(bool)
        good &= m if m.ndim == good.ndim else m[:, None]
    sig = np.where(good, 1.0 / np.sqrt(np.where(good, w, 1.0)), np.nan)
    with warnings.catch_warnings():  # an object or band with no valid pixel gives NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        per_band = np.nanmedian(sig.reshape(*sig.shape[:2], -1), axis=-1)
        sigma = np.nanmean(per_band, axis=1)
    return sigma, 1.0 - good.mean(axis=(1, 2, 3))


ARTIFACT_SIGNATURES = ("bad_pixels", "ivar_drop", "stripe")
"""What :func:`artifact_in_crop` looks for; a labelled kind maps to one of them."""
SIGNATURE_OF = {"saturated_star": "bad_pixels", "high_noise": "ivar_drop", "stripe": "stripe"}


def artifact_in_crop(
    image: np.ndarray,
    ivar: np.ndarray,
    mask: np.ndarray | None,
    crop: int,
    kind: str | None = None,
    stripe_sigmas: float = 2.5,
    ivar_drop: float = 0.5,
) -> bool:
    """Whether a (B, S, S) raw cutout shows an instrumental artefact inside its central ``crop``.

    Read off the pixels rather than trusted from the label, because a label says an artefact
    was drawn somewhere in the stamp, not that the model (which sees only the crop) sees it.
    Signatures: bad pixels (saturation: ivar 0 / masked / non-finite); a local drop of ivar
    below ``ivar_drop`` x the band's median (a high-noise patch); a stripe: a row (column)
    that, minus the mean of the rows ``STRIPE_GAP`` above and below, stays ``stripe_sigmas``
    above the noise along its whole length (its 25th percentile in each outer third of the
    row), which a galaxy's smooth light does not. ``kind`` (a pathology label) checks only
    its own signature; None checks all."""
    want = ARTIFACT_SIGNATURES if kind is None else (SIGNATURE_OF.get(kind, ""),)
    if not set(want) & set(ARTIFACT_SIGNATURES):
        want = ARTIFACT_SIGNATURES
    s = image.shape[-1]
    lo = max((s - crop) // 2, 0)
    sl = slice(lo, lo + crop)
    x = image.astype(np.float64)
    w = ivar.astype(np.float64)
    good = np.isfinite(x) & np.isfinite(w) & (w > 0)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        good &= m if m.ndim == good.ndim else m[None]
    if "bad_pixels" in want and not good[:, sl, sl].all():
        return True
    if "ivar_drop" in want:
        med_w = np.array([np.median(w[b][good[b]]) if good[b].any() else np.nan for b in range(len(w))])
        if (np.where(good, w, np.inf)[:, sl, sl] < ivar_drop * med_w[:, None, None]).any():
            return True
    g = STRIPE_GAP
    if "stripe" not in want or s <= 2 * g + 3:
        return False
    z = np.where(good, x * np.sqrt(np.where(good, w, 0.0)), np.nan)
    rows = z[:, g:-g, :] - 0.5 * (z[:, : -2 * g, :] + z[:, 2 * g :, :])  # (B, S - 2g, S)
    cols = np.swapaxes(z[:, :, g:-g] - 0.5 * (z[:, :, : -2 * g] + z[:, :, 2 * g :]), 1, 2)
    third = s // 3
    inside = (np.arange(g, s - g) >= lo) & (np.arange(g, s - g) < lo + crop)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for d in (rows, cols):
            level = np.minimum(
                np.nanpercentile(d[..., :third], 25, axis=-1), np.nanpercentile(d[..., -third:], 25, axis=-1)
            )
            if (level[:, inside] > stripe_sigmas).any():
                return True
    return False


def _psf_columns(catalog: pd.DataFrame, positions: list[int], bands: list[str]) -> list[str] | None:
    """Catalogue columns holding the PSF FWHM of ``bands`` (MMU ``image_psf_fwhm_<k>`` or Legacy PSFSIZE)."""
    mmu = [f"image_psf_fwhm_{k}" for k in positions]
    if all(c in catalog.columns for c in mmu):
        return mmu
    legacy = [f"PSFSIZE_{b.upper()}" for b in bands]
    if all(c in catalog.columns for c in legacy):
        return legacy
    return None


def raw_conditions(catalog: pd.DataFrame, survey: str, bands: list[str], crop: int, chunk: int = 256) -> pd.DataFrame:
    """Real data: per catalogue row (object_id, file, row, ...) the sky sigma and bad-pixel
    fraction of :func:`cutout_sky_sigma` from the raw cutouts, and the catalogue's PSF FWHM
    (band mean; NaN when the catalogue has none, e.g. the crossmatched parquet shards)."""
    missing = {"object_id", "file", "row"} - set(catalog.columns)
    if missing:
        raise KeyError(f"catalogue is missing column(s) {sorted(missing)}")
    files = catalog["file"].astype(str).to_numpy()
    rows = catalog["row"].to_numpy(dtype=np.int64)
    sigma = np.full(len(catalog), np.nan)
    bad = np.full(len(catalog), np.nan)
    fwhm = np.full(len(catalog), np.nan)
    for path, shard_rows, positions in iter_rows_by_file(files, rows, chunk):
        idx = band_positions(path, survey, bands)
        mask = None
        if path.endswith(".parquet"):  # the crossmatched shards carry no mask
            image, ivar = read_cutouts(path, shard_rows, survey)
        else:
            got = read_images(path, shard_rows, ("image_array", "image_ivar", "image_mask"))
            image, ivar, mask = got["image_array"], got["image_ivar"], got["image_mask"]
            if mask.ndim == image.ndim:
                mask = mask[:, idx]
        sigma[positions], bad[positions] = cutout_sky_sigma(image[:, idx], ivar[:, idx], crop, mask)
        cols = _psf_columns(catalog, idx, bands)
        if cols is not None:
            fwhm[positions] = catalog.iloc[positions][cols].to_numpy(dtype=np.float64).mean(axis=1)
    return pd.DataFrame(
        {
            "object_id": catalog["object_id"].astype(str).to_numpy(),
            "sky_sigma": sigma,
            "psf_fwhm": fwhm,
            "bad_fraction": bad,
        }
    )


def _catalog_rows(catalog: str | Path, object_ids: np.ndarray) -> pd.DataFrame:
    """Catalogue rows of ``object_ids`` in that order (object_id as str)."""
    cat = pd.read_parquet(catalog)
    cat["object_id"] = cat["object_id"].astype(str)
    cat = cat.drop_duplicates("object_id").set_index("object_id")
    ids = pd.Index(np.asarray(object_ids).astype(str))
    absent = ~ids.isin(cat.index)
    if absent.any():
        raise KeyError(f"{catalog}: {int(absent.sum())} object ids of the meta table are not in the catalogue")
    return cat.loc[ids].reset_index()


# --------------------------------------------------------------------------- set selection


def candidate_anchors(
    neighbours: np.ndarray,
    exclude: np.ndarray,
    bad: np.ndarray,
    max_sets: int,
    n_levels: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Pairs whose spatial neighbour set may condition the decoder: the set has at least one
    member, neither its anchor nor a member is in ``exclude`` (the generated galaxies),
    no member is ``bad`` (a labelled artefact); full sets only when there are enough of
    them. At most ``max_sets`` (a seeded subset)."""
    valid = neighbours >= 0
    safe = np.where(valid, neighbours, 0)
    excluded = np.zeros(len(neighbours), dtype=bool)
    excluded[np.asarray(exclude, dtype=np.int64)] = True
    ok = valid.any(axis=1) & ~excluded & ~(valid & (excluded[safe] | bad[safe])).any(axis=1)
    full = ok & valid.all(axis=1)
    pick = full if full.sum() >= max(n_levels, 1) else ok
    cand = np.flatnonzero(pick)
    if len(cand) > max_sets:
        cand = np.sort(rng.choice(cand, max_sets, replace=False))
    return cand


def select_conditioning_sets(
    value: np.ndarray, neighbours: np.ndarray, candidates: np.ndarray, percentiles: list[float]
) -> pd.DataFrame:
    """One neighbour set per percentile of ``value`` (per pair, NaN = unknown).

    The level of percentile p is the p-th percentile of ``value`` over the candidates'
    members; the chosen set (candidate anchor) is the one whose members' mean value is
    nearest the level (ties: the lower anchor). Returns per percentile: level, anchor,
    members (tuple of pairs), value (members' mean), anchor_value, spread (members' std)."""
    value = np.asarray(value, dtype=np.float64)
    rows = []
    members = [tuple(int(q) for q in neighbours[a] if q >= 0) for a in candidates]
    means = np.array([np.mean(value[list(m)]) if m else np.nan for m in members])
    usable = np.flatnonzero(np.isfinite(means))
    if usable.size == 0:
        raise ValueError("no candidate neighbour set has a known value of the condition")
    pool = np.unique(np.concatenate([np.asarray(members[i], dtype=np.int64) for i in usable]))
    pool_values = value[pool][np.isfinite(value[pool])]
    for p in percentiles:
        level = float(np.percentile(pool_values, p))
        j = usable[np.argmin(np.abs(means[usable] - level))]
        m = members[j]
        rows.append(
            {
                "percentile": float(p),
                "level": level,
                "anchor": int(candidates[j]),
                "members": m,
                "value": float(means[j]),
                "anchor_value": float(value[candidates[j]]),
                "spread": float(np.std(value[list(m)])),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- generation


def _batch(
    physics: np.ndarray, instrument: np.ndarray, inst_mask: np.ndarray, pairs: np.ndarray
) -> dict[str, torch.Tensor]:
    """A TripletDataset-style batch: physics (B, C, H, W) -> one view each, instrument (B, k, C, H, W)."""
    b = len(physics)
    return {
        "target": torch.zeros((b, *physics.shape[1:])),
        "physics": torch.from_numpy(np.ascontiguousarray(physics[:, None], dtype=np.float32)),
        "physics_mask": torch.ones((b, 1), dtype=torch.bool),
        "instrument": torch.from_numpy(np.ascontiguousarray(instrument, dtype=np.float32)),
        "instrument_mask": torch.from_numpy(np.asarray(inst_mask, dtype=bool)),
        "pair": torch.from_numpy(np.array(pairs, dtype=np.int64)),
    }


def _instrument(images: np.ndarray, members: tuple[int, ...], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(k, C, H, W) zero-padded images of a set's members and the (k,) mask of real ones."""
    out = np.zeros((k, *images.shape[1:]), dtype=np.float32)
    mask = np.zeros(k, dtype=bool)
    for j, q in enumerate(members[:k]):
        out[j] = images[q]
        mask[j] = True
    return out, mask


@dataclass(frozen=True)
class _Decoder:
    """The trained decoder and how this experiment samples it: one image per conditioning,
    the configured ODE method and steps, the experiment's seed, ``batch_size`` jobs at a time."""

    net: torch.nn.Module
    device: torch.device
    k: int
    """Instrument images per conditioning set (the run's ``neighbours.k``)."""
    steps: int
    method: str
    seed: int
    batch_size: int

    def sample(self, batch: dict[str, torch.Tensor], x0: torch.Tensor | None = None) -> np.ndarray:
        """(B, C, H, W): one sample per batch row (x0 per pair from the seed when not given)."""
        return sample_posterior(self.net, batch, 1, self.steps, self.method, self.seed, self.device, x0=x0)[:, 0]


def _load_decoder(model: str | Path, noise_model_cfg: dict, sample_cfg: dict) -> _Decoder:
    """The run's decoder, in eval mode on the compute device."""
    net, saved = load_trained_model(model)
    net = net.eval()
    device = compute_device()
    net.to(device)
    return _Decoder(
        net=net,
        device=device,
        k=int(saved["neighbours"]["k"]),
        steps=int(sample_cfg["steps"]),
        method=sample_cfg["method"],
        seed=int(noise_model_cfg["seed"]),
        batch_size=int(noise_model_cfg["batch_size"]),
    )


@dataclass(frozen=True)
class _Job:
    """One image to generate: a galaxy under the set chosen for one axis and percentile."""

    axis: str
    chosen: tuple
    """The set's row of :func:`select_conditioning_sets` (percentile, level, anchor, members, value, ...)."""
    galaxy: int
    members: tuple[int, ...]


@dataclass
class _Direction:
    """Everything one direction (anchor survey) needs: images, neighbours, per-pair conditions."""

    survey: str
    other: str
    images: np.ndarray
    physics: np.ndarray
    neighbours: np.ndarray
    meta: pd.DataFrame
    cond: pd.DataFrame  # per pair: sky_sigma, psf_fwhm, pathology, bad_fraction
    layout: DatasetLayout


def _load_direction(
    survey: str,
    layout: DatasetLayout,
    catalog: str | Path,
    truth: pd.DataFrame | None,
    preprocess_cfg: dict,
    exclude: np.ndarray,
    max_sets: int,
    n_levels: int,
    rng: np.random.Generator,
) -> tuple[_Direction, np.ndarray]:
    """The direction's data and its candidate anchors (conditions known for all their members)."""
    other = next(s for s in SURVEY_ORDER if s != survey)
    bands = list(preprocess_cfg["bands"])
    meta = pd.read_parquet(layout.meta(survey))
    meta["object_id"] = meta["object_id"].astype(str)
    nbr = np.load(layout.neighbours(survey, "spatial"))["index"]
    unusable = ~usable_pairs(layout.root)  # a dropped blank cutout is never a conditioning member
    if truth is not None:
        if "truth_id" not in meta.columns:
            raise KeyError(f"{layout.meta(survey)} has no truth_id column; was it preprocessed with the truth table?")
        cond = truth_conditions(truth, meta, survey, bands)
        bad = (cond["pathology"].to_numpy() != "") | unusable
        cand = candidate_anchors(nbr, exclude, bad, max_sets, n_levels, rng)
    else:
        # Real data: the conditions of the candidates' members are read from the raw cutouts.
        cand = candidate_anchors(nbr, exclude, unusable, max_sets, n_levels, rng)
        cond, cand = _raw_direction_conditions(
            meta, nbr, cand, exclude, catalog, survey, bands, int(preprocess_cfg["crop"][survey])
        )
    d = _Direction(
        survey=survey,
        other=other,
        images=np.load(layout.images(survey), mmap_mode="r"),
        physics=np.load(layout.images(other), mmap_mode="r"),
        neighbours=nbr,
        meta=meta,
        cond=cond,
        layout=layout,
    )
    return d, cand


def _raw_direction_conditions(
    meta: pd.DataFrame,
    nbr: np.ndarray,
    cand: np.ndarray,
    exclude: np.ndarray,
    catalog: str | Path,
    survey: str,
    bands: list[str],
    crop: int,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Real data: per pair the conditions of :func:`raw_conditions`, read only for the candidates'
    members and the generated galaxies (NaN elsewhere), and the candidates left once sets with a
    member too masked or of unknown sky sigma are dropped."""
    need = np.unique(np.concatenate([nbr[cand][nbr[cand] >= 0], np.asarray(exclude, dtype=np.int64)]))
    rows = _catalog_rows(catalog, meta["object_id"].to_numpy()[need])
    got = raw_conditions(rows, survey, bands, crop)
    cond = pd.DataFrame(
        {"pair": meta["pair"].to_numpy(dtype=np.int64), "sky_sigma": np.nan, "psf_fwhm": np.nan, "pathology": ""}
    )
    cond["bad_fraction"] = np.nan
    for c in ("sky_sigma", "psf_fwhm", "bad_fraction"):
        cond.loc[need, c] = got[c].to_numpy()
    too_bad = (cond["bad_fraction"] > MAX_BAD_FRACTION).to_numpy() | ~np.isfinite(cond["sky_sigma"].to_numpy())
    valid = nbr[cand] >= 0
    keep = ~(valid & too_bad[np.where(valid, nbr[cand], 0)]).any(axis=1)
    return cond, cand[keep]


def _choose_galaxies(
    layout: DatasetLayout, truth: pd.DataFrame | None, bands: list[str], n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` held-out (split == val) pairs without a dropped blank cutout, a seeded random
    choice; on the synthetic sky only those with no labelled artefact in either survey (the
    comparison is about noise, not artefacts)."""
    split = pd.read_parquet(layout.split)
    val = usable_val_pairs(split, usable_pairs(layout.root))
    if truth is not None:
        clean = np.ones(len(split), dtype=bool)
        for s in SURVEY_ORDER:
            meta = pd.read_parquet(layout.meta(s), columns=["pair", "truth_id"])
            c = truth_conditions(truth, meta, s, bands)
            clean[c["pair"].to_numpy()] &= c["pathology"].to_numpy() == ""
        val = val[clean[val]] if clean[val].any() else val
    if val.size == 0:
        raise ValueError(f"{layout.split}: no held-out pairs (split == 'val') to generate")
    return np.sort(rng.permutation(val)[:n])


def _generate(decoder: _Decoder, jobs: list[_Job], d: _Direction, x0: dict[int, torch.Tensor]) -> np.ndarray:
    """(len(jobs), C, H, W) samples: job = galaxy pair + conditioning members, with the galaxy's x0."""
    out = []
    batch_size = decoder.batch_size
    for start in range(0, len(jobs), batch_size):
        part = jobs[start : start + batch_size]
        pairs = np.array([j.galaxy for j in part], dtype=np.int64)
        physics = np.stack([np.asarray(d.physics[p]) for p in pairs])
        inst, mask = zip(*(_instrument(d.images, j.members, decoder.k) for j in part), strict=True)
        batch = _batch(physics, np.stack(inst), np.stack(mask), pairs)
        out.append(decoder.sample(batch, x0=torch.cat([x0[int(p)] for p in pairs])))
        log.info("%s-anchored: generated %d/%d images", d.survey, min(start + batch_size, len(jobs)), len(jobs))
    return np.concatenate(out) if out else np.empty((0,))


def _reference(d: _Direction, cand: np.ndarray, axis: str, limit: int, rng: np.random.Generator) -> pd.DataFrame:
    """The real-image reference: members of the candidate sets (at most ``limit``, seeded),
    the statistic of their real preprocessed image against their own true value."""
    members = np.unique(d.neighbours[cand][d.neighbours[cand] >= 0])
    cond = d.cond.iloc[members]
    ok = (cond["pathology"] == "").to_numpy() & np.isfinite(cond[axis].to_numpy())
    ok &= ~(cond["bad_fraction"] > MAX_BAD_FRACTION).to_numpy()
    members = members[ok]
    if len(members) > limit:
        members = np.sort(rng.choice(members, limit, replace=False))
    stat = background_noise if axis == "sky_sigma" else source_size
    y = np.array([stat(np.asarray(d.images[q])) for q in members])
    return pd.DataFrame({"pair": members, "x": d.cond[axis].to_numpy()[members], "y": y})


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SlopePanel:
    """One (direction, axis) panel of the figure's middle row: each generated image's statistic
    against its conditioning set's true value, and the real images' reference."""

    direction: str
    axis: str
    statistic: str
    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    """The galaxy (pair) of each generated point."""
    fit: SlopeFit
    real_x: np.ndarray
    real_y: np.ndarray
    real_fit: SlopeFit


@dataclass(frozen=True)
class TraversalRow:
    """One galaxy generated under the chosen set of every percentile of one axis."""

    axis: str
    percentiles: list[float]
    values: list[float]
    """The sets' true values (members' means)."""
    outputs: np.ndarray
    """(P, C, H, W) generated images."""
    statistic: list[float]
    """The axis' statistic of each output."""
    conditioning: np.ndarray
    """(P, k, C, H, W) zero-padded images of each set."""
    n_members: list[int]


@dataclass(frozen=True)
class Traversal:
    """The figure's top rows: one galaxy of one direction under every set of each axis."""

    direction: str
    other: str
    label: str
    physics: np.ndarray
    """(C, H, W) the other survey's view (the physics input)."""
    truth: np.ndarray
    """(C, H, W) the real image of the anchor survey."""
    truth_noise: float
    truth_size: float
    rows: list[TraversalRow]


@dataclass(frozen=True)
class ArtifactPanel:
    """One artefact-removal example (a row of the figure's bottom)."""

    input: np.ndarray
    """(C, H, W) the corrupted HSC image through the physics encoder."""
    output: np.ndarray
    instrument: np.ndarray
    """(n, C, H, W) the random clean HSC images through the instrument encoder."""
    clean: np.ndarray | None
    """The noiseless truth (synthetic sky only)."""
    label: str
    pair: int


@dataclass(frozen=True)
class DirectionResult:
    """One direction's table rows (``NOISE_COLUMNS``), slope rows (``SLOPE_COLUMNS``), panels and traversal."""

    rows: list[dict]
    slope_rows: list[dict]
    scatter: list[SlopePanel]
    traversal: Traversal


@dataclass(frozen=True)
class ArtifactRemoval:
    """The artefact-removal examples: table rows (``NOISE_COLUMNS``) and figure panels."""

    rows: list[dict]
    panels: list[ArtifactPanel]


@dataclass(frozen=True)
class NoiseModelResult:
    """Everything Fig 7 and its two tables show."""

    table: pd.DataFrame
    """tables/noise_model.csv: conditioning rows of every direction, then the artefact rows."""
    slopes: pd.DataFrame
    """tables/noise_model_slopes.csv: one row per direction and axis."""
    traversal: Traversal
    """The first direction's traversal (the figure shows one)."""
    scatter: list[SlopePanel]
    artifacts: list[ArtifactPanel]


# --------------------------------------------------------------------------- the experiment


def _real_stats(images: np.ndarray, pairs: set[int]) -> dict[int, tuple[float, float]]:
    """(background noise, source size) of the real preprocessed image of each pair."""
    return {q: (background_noise(np.asarray(images[q])), source_size(np.asarray(images[q]))) for q in sorted(pairs)}


def _conditioning_rows(
    d: _Direction, jobs: list[_Job], outputs: np.ndarray, real: dict[int, tuple[float, float]]
) -> list[dict]:
    """One table row per generated image."""
    ids = d.meta["object_id"].to_numpy()
    sky, fwhm = d.cond["sky_sigma"].to_numpy(), d.cond["psf_fwhm"].to_numpy()
    rows = []
    for j, out in zip(jobs, outputs, strict=True):
        s, m, g = j.chosen, list(j.members), j.galaxy
        rows.append(
            {
                "kind": "conditioning",
                "direction": d.survey,
                "axis": j.axis,
                "percentile": s.percentile,
                "galaxy_pair": g,
                "object_id": str(ids[g]),
                "set_anchor_pair": s.anchor,
                "set_pairs": " ".join(map(str, m)),
                "conditioning_sky_sigma": float(sky[m].mean()),
                "conditioning_psf_fwhm": float(fwhm[m].mean()),
                "conditioning_value": s.value,
                "output_noise": background_noise(out),
                "output_size": source_size(out),
                "real_noise": float(np.mean([real[q][0] for q in m])),
                "real_size": _nanmean([real[q][1] for q in m]),
                "target_noise": real[g][0],
                "target_size": real[g][1],
                "note": f"conditioning_value = mean true {j.axis} over the set's members "
                f"(set anchor's own {s.anchor_value:.4g}, members' spread {s.spread:.3g})",
            }
        )
    return rows


def _nanmean(values: list[float]) -> float:
    """Mean of the finite values; NaN when there are none (no RuntimeWarning)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _traversal(d: _Direction, galaxies: np.ndarray, jobs: list[_Job], outputs: np.ndarray, k: int) -> Traversal:
    """The figure's image rows: one galaxy (bright, not the brightest: its central physics-view
    brightness nearest the 90th percentile of the generated galaxies') under every set of each axis."""
    h, w = d.physics.shape[-2:]
    centre = np.array(
        [np.asarray(d.physics[g])[:, h // 2 - 4 : h // 2 + 4, w // 2 - 4 : w // 2 + 4].mean() for g in galaxies]
    )
    shown = int(galaxies[int(np.argmin(np.abs(centre - np.quantile(centre, 0.9))))])
    rows = []
    for axis in AXES:
        sel = [i for i, j in enumerate(jobs) if j.axis == axis and j.galaxy == shown]
        if not sel:
            continue
        stat = background_noise if axis == "sky_sigma" else source_size
        rows.append(
            TraversalRow(
                axis=axis,
                percentiles=[jobs[i].chosen.percentile for i in sel],
                values=[jobs[i].chosen.value for i in sel],
                outputs=outputs[sel],
                statistic=[stat(outputs[i]) for i in sel],
                conditioning=np.stack([_instrument(d.images, jobs[i].members, k)[0] for i in sel]),
                n_members=[len(jobs[i].members) for i in sel],
            )
        )
    truth = np.asarray(d.images[shown])
    return Traversal(
        direction=d.survey,
        other=d.other,
        label=f"pair {shown}",
        physics=np.asarray(d.physics[shown]),
        truth=truth,
        truth_noise=background_noise(truth),
        truth_size=source_size(truth),
        rows=rows,
    )


def _conditioning_jobs(
    d: _Direction, cand: np.ndarray, galaxies: np.ndarray, percentiles: list[float]
) -> tuple[list[str], list[_Job]]:
    """The axes with known true values and one job (axis, chosen set, galaxy, members) per axis,
    percentile and galaxy, in that order."""
    members_all = np.unique(d.neighbours[cand][d.neighbours[cand] >= 0])
    jobs: list[_Job] = []
    axes = []
    for axis in AXES:
        values = d.cond[axis].to_numpy(dtype=np.float64)
        if not np.isfinite(values[members_all]).any():
            log.warning("%s: no true %s known for the conditioning sets; axis skipped", d.survey, axis)
            continue
        axes.append(axis)
        for s in select_conditioning_sets(values, d.neighbours, cand, percentiles).itertuples():
            log.info(
                "%s %s P%g: level %.4g -> neighbour set of pair %d (%d members), members' mean %.4g "
                "(spread %.3g; anchor %.4g)",
                d.survey,
                axis,
                s.percentile,
                s.level,
                s.anchor,
                len(s.members),
                s.value,
                s.spread,
                s.anchor_value,
            )
            jobs += [_Job(axis=axis, chosen=s, galaxy=int(g), members=s.members) for g in galaxies]
    return axes, jobs


def _fit_axis(
    d: _Direction, cand: np.ndarray, table: pd.DataFrame, axis: str, noise_model_cfg: dict, rng: np.random.Generator
) -> tuple[dict, SlopePanel]:
    """The slope row (``SLOPE_COLUMNS``) and the figure panel of one axis: the generated images'
    log-log slope and the real images' (members of the candidate sets, drawn with ``rng``)."""
    seed, n_boot = int(noise_model_cfg["seed"]), int(noise_model_cfg["n_bootstrap"])
    sub = table[table["axis"] == axis]
    stat = STATISTIC[axis]
    fit = fit_loglog_slope(sub["conditioning_value"], sub[stat], sub["galaxy_pair"], n_boot, seed)
    ref = _reference(d, cand, axis, int(noise_model_cfg["n_reference"]), rng)
    ref_fit = fit_loglog_slope(ref["x"], ref["y"], None, n_boot, seed)
    ratio = fit.slope / ref_fit.slope if np.isfinite(ref_fit.slope) and ref_fit.slope != 0 else float("nan")
    row = {
        "direction": d.survey,
        "axis": axis,
        "statistic": stat,
        "slope": fit.slope,
        "ci_lo": fit.ci_lo,
        "ci_hi": fit.ci_hi,
        "real_slope": ref_fit.slope,
        "real_ci_lo": ref_fit.ci_lo,
        "real_ci_hi": ref_fit.ci_hi,
        "ratio": ratio,
        "n_galaxies": fit.n_groups,
        "n_levels": int(sub["percentile"].nunique()),
        "n_real": ref_fit.n_points,
    }
    log.info(
        "%s-anchored, %s: log-log slope of %s %.3f [%.3f, %.3f] over %d galaxies; real images %.3f "
        "[%.3f, %.3f] over %d objects; ratio model/real %.2f",
        *(d.survey, axis, stat, fit.slope, fit.ci_lo, fit.ci_hi, fit.n_groups),
        *(ref_fit.slope, ref_fit.ci_lo, ref_fit.ci_hi, ref_fit.n_points, ratio),
    )
    panel = SlopePanel(
        direction=d.survey,
        axis=axis,
        statistic=stat,
        x=sub["conditioning_value"].to_numpy(),
        y=sub[stat].to_numpy(),
        groups=sub["galaxy_pair"].to_numpy(),
        fit=fit,
        real_x=ref["x"].to_numpy(),
        real_y=ref["y"].to_numpy(),
        real_fit=ref_fit,
    )
    return row, panel


def _run_direction(
    d: _Direction,
    cand: np.ndarray,
    galaxies: np.ndarray,
    percentiles: list[float],
    decoder: _Decoder,
    x0: dict[int, torch.Tensor],
    noise_model_cfg: dict,
    rng: np.random.Generator,
) -> DirectionResult:
    """One direction: choose the sets per axis, generate, measure, fit."""
    axes, jobs = _conditioning_jobs(d, cand, galaxies, percentiles)
    outputs = _generate(decoder, jobs, d, x0)
    real = _real_stats(d.images, {int(q) for j in jobs for q in j.members} | {int(g) for g in galaxies})
    rows = _conditioning_rows(d, jobs, outputs, real)
    table = pd.DataFrame(rows)
    fits = [_fit_axis(d, cand, table, axis, noise_model_cfg, rng) for axis in axes]
    return DirectionResult(
        rows=rows,
        slope_rows=[row for row, _ in fits],
        scatter=[panel for _, panel in fits],
        traversal=_traversal(d, galaxies, jobs, outputs, decoder.k),
    )


def _read_raw(catalog_rows: pd.DataFrame, survey: str, bands: list[str]) -> list[tuple[np.ndarray, ...]]:
    """(image, ivar, mask or None) of each catalogue row (file, row), model bands only, in order."""
    files = catalog_rows["file"].astype(str).to_numpy()
    rows = catalog_rows["row"].to_numpy(dtype=np.int64)
    out: list[tuple[np.ndarray, ...]] = [()] * len(catalog_rows)
    for path, shard_rows, positions in iter_rows_by_file(files, rows, 256):
        idx = band_positions(path, survey, bands)
        if path.endswith(".parquet"):
            image, ivar = read_cutouts(path, shard_rows, survey)
            mask = None
        else:
            got = read_images(path, shard_rows, ("image_array", "image_ivar", "image_mask"))
            image, ivar, mask = got["image_array"], got["image_ivar"], got["image_mask"]
            mask = mask[:, idx] if mask.ndim == image.ndim else mask
        for j, pos in enumerate(positions):
            out[pos] = (image[j, idx], ivar[j, idx], None if mask is None else mask[j])
    return out


def _choose_artifacts(pool: pd.DataFrame, n: int, synthetic: bool) -> list[int]:
    """Rows of ``pool`` with a pathology inside the crop: one per kind in turn, held-out
    first (synthetic), else the most masked."""
    if synthetic:
        by_kind = {
            p: sorted(
                pool.index[(pool["pathology"] == p) & pool["in_crop"]], key=lambda r: (pool.at[r, "split"] != "val", r)
            )
            for p in PATHOLOGIES
        }
        picked: list[int] = []
        while len(picked) < n and any(by_kind.values()):
            for p in PATHOLOGIES:
                if by_kind[p] and len(picked) < n:
                    picked.append(by_kind[p].pop(0))
        return picked
    bad = pool[pool["bad_fraction"] > 0].sort_values("bad_fraction", ascending=False, kind="stable")
    return list(bad.index[:n])


def _artifact_pool(
    d: _Direction, catalog: str | Path, synthetic: bool, galaxies: np.ndarray, bands: list[str], crop: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """HSC pairs without a dropped blank cutout, with ``in_crop`` marking (synthetic sky) the
    labelled artefacts that show inside the crop, and the clean pairs that may condition."""
    pool = d.cond.assign(split=d.meta["split"].to_numpy(), object_id=d.meta["object_id"].to_numpy(), in_crop=False)
    pool = pool[usable_pairs(d.layout.root)[pool["pair"].to_numpy(dtype=np.int64)]]  # no dropped blank cutout
    if not synthetic:
        return pool, pool[(pool["bad_fraction"] == 0) & ~pool["pair"].isin(galaxies)]
    flagged = np.flatnonzero((pool["pathology"] != "").to_numpy())
    if flagged.size:
        raw = _read_raw(_catalog_rows(catalog, pool["object_id"].to_numpy()[flagged]), d.survey, bands)
        kinds = pool["pathology"].to_numpy()[flagged]
        inside = np.array([artifact_in_crop(*r, crop=crop, kind=q) for r, q in zip(raw, kinds, strict=True)])
        pool.loc[pool.index[flagged], "in_crop"] = inside
        log.info(
            "artefact removal: %d of %d labelled HSC artefacts show inside the %d-px crop",
            int(inside.sum()),
            flagged.size,
            crop,
        )
    return pool, pool[(pool["pathology"] == "") & ~pool["pair"].isin(galaxies)]


def _artifact_row(
    d: _Direction, pool_row: pd.Series, pair: int, members: list[int], image: np.ndarray, recon: np.ndarray, note: str
) -> dict:
    """The table row (``NOISE_COLUMNS``) of one artefact-removal example."""
    sky, fwhm = d.cond["sky_sigma"].to_numpy(), d.cond["psf_fwhm"].to_numpy()
    return {
        "kind": "artifact_removal",
        "direction": d.survey,
        "axis": "",
        "percentile": float("nan"),
        "galaxy_pair": int(pair),
        "object_id": str(pool_row["object_id"]),
        "set_anchor_pair": -1,
        "set_pairs": " ".join(map(str, members)),
        "conditioning_sky_sigma": _nanmean(sky[members]),
        "conditioning_psf_fwhm": _nanmean(fwhm[members]),
        "conditioning_value": float("nan"),
        "output_noise": background_noise(recon),
        "output_size": source_size(recon),
        "real_noise": float(np.mean([background_noise(np.asarray(d.images[q])) for q in members])),
        "real_size": _nanmean([source_size(np.asarray(d.images[q])) for q in members]),
        "target_noise": background_noise(image),
        "target_size": source_size(image),
        "note": note,
    }


def _artifact_removal(
    cfg: dict,
    decoder: _Decoder,
    d: _Direction,
    catalog: str | Path,
    truth: pd.DataFrame | None,
    galaxies: np.ndarray,
    rng: np.random.Generator,
) -> ArtifactRemoval:
    """The bottom of Fig 7: artefact-corrupted HSC images through the physics encoder, random
    clean HSC images through the instrument encoder. The whole ``cfg``: the noiseless truth of
    the synthetic sky is rebuilt from its ``simulation`` section."""
    crop = int(cfg["preprocess"]["crop"][d.survey])
    synthetic = truth is not None
    pool, clean = _artifact_pool(d, catalog, synthetic, galaxies, list(cfg["preprocess"]["bands"]), crop)
    chosen = _choose_artifacts(pool, int(cfg["experiments"]["noise_model"]["n_artifacts"]), synthetic)
    if not chosen:
        log.warning("no HSC cutout with an artefact inside the crop; the artefact-removal panel is empty")
        return ArtifactRemoval([], [])
    pairs = pool.loc[chosen, "pair"].to_numpy(dtype=np.int64)
    inputs = np.stack([np.asarray(d.images[p]) for p in pairs])
    sets = []
    for p in pairs:
        others = clean[clean["pair"] != p]["pair"].to_numpy()
        sets.append(tuple(int(q) for q in np.sort(rng.choice(others, min(decoder.k, len(others)), replace=False))))
    inst, mask = zip(*(_instrument(d.images, s, decoder.k) for s in sets), strict=True)
    recon = decoder.sample(_batch(inputs, np.stack(inst), np.stack(mask), pairs))
    noiseless = _noiseless_hsc(cfg, d, pool.loc[chosen], truth) if synthetic else None
    rows, panels = [], []
    for j, r in enumerate(chosen):
        label = pool.at[r, "pathology"] or f"{pool.at[r, 'bad_fraction']:.1%} bad pixels"
        note = f"pathology: {label} (inside the crop); split {pool.at[r, 'split']}"
        clean_j = None
        if noiseless is not None:
            clean_j = noiseless[j]
            mse_in = float(((inputs[j] - clean_j) ** 2).mean())
            mse_out = float(((recon[j] - clean_j) ** 2).mean())
            note += f"; MSE vs noiseless truth: input {mse_in:.4f}, reconstruction {mse_out:.4f}"
        log.info("artefact removal, pair %d: %s", pairs[j], note)
        rows.append(_artifact_row(d, pool.loc[r], pairs[j], list(sets[j]), inputs[j], recon[j], note))
        panels.append(
            ArtifactPanel(
                input=inputs[j],
                output=recon[j],
                instrument=inst[j][mask[j]],
                clean=clean_j,
                label=label,
                pair=int(pairs[j]),
            )
        )
    return ArtifactRemoval(rows, panels)


def _noiseless_hsc(cfg: dict, d: _Direction, rows: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """The noiseless HSC truth of ``rows`` (pool rows), preprocessed like the data."""
    from whatsreal.experiments.truth_images import noiseless_targets

    tids = d.meta["truth_id"].to_numpy()[rows["pair"].to_numpy(dtype=np.int64)]
    return noiseless_targets(cfg, d.survey, rows["object_id"].to_numpy(), tids, truth, d.layout.meta(d.survey))


def measure_noise_model(
    cfg: dict,
    model: str | Path,
    data: DatasetLayout | str | Path,
    catalogs: Mapping[str, str | Path],
    truth: str | Path | None,
) -> NoiseModelResult:
    """Choose the galaxies and sets, generate, measure and fit every configured direction, then
    the artefact removal. The whole ``cfg``: besides ``experiments.noise_model`` it reads
    ``preprocess`` (bands, crop), ``sample`` and, on the synthetic sky, ``simulation`` (the
    noiseless truth is rendered again)."""
    layout = DatasetLayout.of(data)
    noise_model_cfg = cfg["experiments"]["noise_model"]
    seed = int(noise_model_cfg["seed"])
    rng = np.random.default_rng(seed)
    percentiles = [float(p) for p in noise_model_cfg["percentiles"]]
    directions = [s for s in SURVEY_ORDER if s in noise_model_cfg["directions"]]
    decoder = _load_decoder(model, noise_model_cfg, cfg["sample"])
    truth_df = pd.read_parquet(truth) if truth is not None else None

    galaxies = _choose_galaxies(
        layout, truth_df, list(cfg["preprocess"]["bands"]), int(noise_model_cfg["n_galaxies"]), rng
    )
    shape = np.load(layout.images("hsc"), mmap_mode="r").shape[1:]
    x0 = {int(g): galaxy_noise(seed, int(g), 1, shape) for g in galaxies}
    log.info("noise model: %d held-out galaxies %s; percentiles %s", len(galaxies), galaxies.tolist(), percentiles)

    def load(survey: str) -> tuple[_Direction, np.ndarray]:
        max_sets = int(noise_model_cfg["max_sets"])
        return _load_direction(
            survey, layout, catalogs[survey], truth_df, cfg["preprocess"], galaxies, max_sets, len(percentiles), rng
        )

    results: list[DirectionResult] = []
    hsc: _Direction | None = None
    for survey in directions:
        d, cand = load(survey)
        results.append(_run_direction(d, cand, galaxies, percentiles, decoder, x0, noise_model_cfg, rng))
        hsc = d if survey == "hsc" else hsc
    if hsc is None:  # the artefacts are HSC's; load its conditions when HSC is not a direction
        hsc, _ = load("hsc")
    artifacts = _artifact_removal(cfg, decoder, hsc, catalogs["hsc"], truth_df, galaxies, rng)
    return NoiseModelResult(
        table=pd.DataFrame([row for r in results for row in r.rows] + artifacts.rows, columns=list(NOISE_COLUMNS)),
        slopes=pd.DataFrame([row for r in results for row in r.slope_rows], columns=list(SLOPE_COLUMNS)),
        traversal=results[0].traversal,
        scatter=[panel for r in results for panel in r.scatter],
        artifacts=artifacts.panels,
    )


def run_noise_model(
    cfg: dict,
    model: str | Path,
    data: DatasetLayout | str | Path,
    catalogs: Mapping[str, str | Path],
    truth: str | Path | None,
    figure: str | Path,
    table: str | Path,
    slopes: str | Path,
) -> pd.DataFrame:
    """Fig 7, tables/noise_model.csv (one row per direction, axis, percentile and galaxy, then
    the artefact-removal rows) and tables/noise_model_slopes.csv (one row per direction and
    axis: model slope, real-image slope, their ratio). Returns the first table.

    ``data``: the dataset (its layout or root). The whole ``cfg``, as :func:`measure_noise_model`."""
    result = measure_noise_model(cfg, model, data, catalogs, truth)
    write_csv(result.table, table)
    write_csv(result.slopes, slopes)
    plot_noise_model(result.traversal, result.scatter, result.artifacts, list(cfg["preprocess"]["bands"]), figure)
    return result.table
