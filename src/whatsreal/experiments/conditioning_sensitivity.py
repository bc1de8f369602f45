"""Which property of a swapped conditioning set does the decoder's loss respond to? (synthetic sky)

The conditioning gain (whatsreal.experiments.conditioning_gain) says *that* the decoder uses a
half of its conditioning; this says *what* in it. Every swap it scores (held-out row i given
row j's half, on one draw of x0 and t) has a gain, and on the synthetic sky the truth says how
far j's galaxy and conditions are from i's. Per anchor survey and half, the swap gains are
regressed by least squares, with an intercept, on the absolute differences |v_j - v_i| of the
half's properties (:data:`PROPERTIES`), each divided by that property's standard deviation over
the scored rows, so a slope is "gain per standard deviation of mismatch" and the two slopes of
a half are comparable:

- instrument half: sky noise (log of the band-mean sky sigma) and PSF FWHM (band mean), the
  two independent knobs of the simulated instrument (depth is a function of both);
- physics half: magnitude (band mean) and half-light radius (log).

Fitted jointly, a slope measures its property's effect with the other one's held fixed (on the
synthetic sky the two conditions are nearly independent). A slope above 0, its interval
excluding 0, means the loss grows as the swapped set's value moves away from the anchor's: the
decoder reads that property from the tokens. A slope at 0 with a positive gain means it uses
the half for something else. This is what shows, for example, whether a decoder whose
instrument gain is positive uses the PSF or only the pixel noise.

The anchor's own value stands for its neighbour set's: spatial neighbours share the anchor's
conditions (the neighbour-set probe's reason to exist). Intervals: percentile bootstrap over
anchor rows (``experiments.bootstrap``): every swap of a resampled anchor is kept, so its draws
and partners stay together.

:func:`sensitivity_by_time` fits the same regression within bins of the flow time t of each
swap's draw (t = 0: pure noise, t = 1: the image). A condition can only pay where the
interpolant x_t does not already show it: a background pixel's noise stays unresolved until
t is close to 1, while a galaxy's blurred core is visible from lower t on. Where along the path
each property's slope lives says whether a condition is ignored because no t rewards it or
because x_t gives it away.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from whatsreal.experiments.bootstrap import bootstrap_counts, percentile_ci
from whatsreal.experiments.survey_probes import survey_targets

__all__ = [
    "PROPERTIES",
    "SENSITIVITY_BY_TIME_COLUMNS",
    "SENSITIVITY_COLUMNS",
    "Property",
    "sensitivity_by_time",
    "sensitivity_table",
    "swap_differences",
    "time_bin_edges",
]


@dataclass(frozen=True)
class Property:
    """A truth column of :func:`whatsreal.experiments.survey_probes.survey_targets` and how it is
    compared (``log``: on a log scale, for quantities that act multiplicatively)."""

    column: str
    label: str
    log: bool

    def values(self, targets: pd.DataFrame) -> np.ndarray:
        v = targets[self.column].to_numpy(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(v) if self.log else v


PROPERTIES: dict[str, tuple[Property, ...]] = {
    "instrument": (
        Property("instrument:sky_sigma", "log sky noise", log=True),
        Property("instrument:psf_fwhm", "PSF FWHM", log=False),
    ),
    "physics": (
        Property("physics:mag", "magnitude", log=False),
        Property("physics:half_light_radius_arcsec", "log half-light radius", log=True),
    ),
}
"""Per half, the properties a swap's gain is regressed on (jointly)."""

SENSITIVITY_COLUMNS = (
    "survey",
    "half",
    "property",
    "slope",
    "ci_lo",
    "ci_hi",
    "property_sd",
    "mean_gain",
    "n_swaps",
    "n_pairs",
)

SENSITIVITY_BY_TIME_COLUMNS = ("t_lo", "t_hi", *SENSITIVITY_COLUMNS)


class _Fit(NamedTuple):
    slopes: np.ndarray  # (P,)
    replicates: np.ndarray  # (B, P)


def swap_differences(
    swaps: pd.DataFrame, truth: pd.DataFrame, truth_ids: Mapping[str, pd.Series], bands: Sequence[str]
) -> pd.DataFrame:
    """``swaps`` (whatsreal.experiments.conditioning_gain.SWAP_COLUMNS) with, per property of its
    half, ``d:<label>``: |value(partner) - value(anchor)| in units of the property's standard
    deviation over the survey's scored rows. ``truth_ids[survey]``: truth_id by row (pair) index.

    Swaps whose anchor or partner has no truth (or a non-finite value) get NaN there."""
    parts = []
    for survey, block in swaps.groupby("survey", sort=False):
        ids = truth_ids[str(survey)]
        rows = np.union1d(block["pair"].to_numpy(), block["partner"].to_numpy())
        have = ids.reindex(rows)
        known = have.notna() & (have >= 0)
        targets = survey_targets(truth, have[known].astype(np.int64).to_numpy(), str(survey), bands)
        block = block.copy()
        for half, props in PROPERTIES.items():
            sel = (block["half"] == half).to_numpy()
            for prop in props:
                by_row = pd.Series(np.nan, index=rows)
                by_row[have.index[known.to_numpy()]] = prop.values(targets)
                finite = by_row[np.isfinite(by_row)]
                sd = float(finite.std()) if len(finite) > 1 else np.nan
                col = f"d:{prop.label}"
                if col not in block:
                    block[col] = np.nan
                a = by_row.reindex(block.loc[sel, "pair"]).to_numpy()
                b = by_row.reindex(block.loc[sel, "partner"]).to_numpy()
                block.loc[sel, col] = np.abs(b - a) / sd if sd > 0 else np.nan
                block.loc[sel, f"sd:{prop.label}"] = sd
        parts.append(block)
    return pd.concat(parts, ignore_index=True) if parts else swaps.copy()


def _weighted_slopes(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(R, P) least-squares slopes (intercept dropped) of y on x under each row of ``weights`` (R, n)."""
    a = np.column_stack([np.ones(len(y)), x])
    ata = np.einsum("rn,nj,nk->rjk", weights, a, a)
    aty = np.einsum("rn,nj,n->rj", weights, a, y)
    # The pseudo-inverse: a resample that draws too few distinct anchors has a singular design.
    return (np.linalg.pinv(ata) @ aty[..., None])[:, 1:, 0]


def _fit(block: pd.DataFrame, columns: list[str], n_resamples: int, seed: int) -> _Fit:
    x = block[columns].to_numpy(np.float64)
    y = block["gain"].to_numpy(np.float64)
    anchors, which = np.unique(block["pair"].to_numpy(), return_inverse=True)
    point = _weighted_slopes(x, y, np.ones((1, len(y))))[0]
    counts = bootstrap_counts(len(anchors), n_resamples, seed)  # (B, anchors)
    return _Fit(point, _weighted_slopes(x, y, counts[:, which].astype(np.float64)))


def sensitivity_table(differences: pd.DataFrame, n_resamples: int, seed: int, confidence: float) -> pd.DataFrame:
    """One row per (survey, half, property): the joint regression's slope with its interval.

    ``differences``: :func:`swap_differences`' output. Swaps with a NaN difference are left out;
    a (survey, half) with fewer than 3 anchors gets NaN."""
    rows = []
    for (survey, half), block in differences.groupby(["survey", "half"], sort=False):
        props = PROPERTIES[str(half)]
        columns = [f"d:{p.label}" for p in props]
        block = block.dropna(subset=[*columns, "gain"])
        n_pairs = int(block["pair"].nunique())
        if n_pairs >= 3:
            fit = _fit(block, columns, n_resamples, seed)
            lo, hi = percentile_ci(fit.replicates, confidence)
        else:
            fit = _Fit(np.full(len(props), np.nan), np.empty((0, len(props))))
            lo = hi = np.full(len(props), np.nan)
        for k, prop in enumerate(props):
            sd_col = f"sd:{prop.label}"
            rows.append(
                {
                    "survey": survey,
                    "half": half,
                    "property": prop.label,
                    "slope": float(fit.slopes[k]),
                    "ci_lo": float(lo[k]),
                    "ci_hi": float(hi[k]),
                    "property_sd": float(block[sd_col].iloc[0]) if len(block) and sd_col in block else np.nan,
                    "mean_gain": float(block["gain"].mean()) if len(block) else np.nan,
                    "n_swaps": len(block),
                    "n_pairs": n_pairs,
                }
            )
    return pd.DataFrame(rows, columns=list(SENSITIVITY_COLUMNS))


def time_bin_edges(t: np.ndarray, bins: int) -> np.ndarray:
    """Edges of ``bins`` bins of flow time holding equal numbers of the swaps' ``t`` (quantiles, so
    a logit-normal ``model.time_sampling`` fills every bin), the outer two set to 0 and 1. Edges
    that coincide (fewer distinct times than bins) are merged into one; a bin left without swaps
    gives no rows in :func:`sensitivity_by_time`."""
    if bins < 1:
        raise ValueError(f"time bins must be >= 1, got {bins}")
    t = np.asarray(t, np.float64)
    t = t[np.isfinite(t)]
    if t.size == 0:
        return np.array([0.0, 1.0])
    edges = np.quantile(t, np.linspace(0.0, 1.0, bins + 1))
    edges[0], edges[-1] = 0.0, 1.0
    return np.unique(edges)


def sensitivity_by_time(
    differences: pd.DataFrame, bins: int, n_resamples: int, seed: int, confidence: float
) -> pd.DataFrame:
    """:func:`sensitivity_table` within each of ``bins`` bins of the swaps' flow time t
    (:func:`time_bin_edges`): rows of :data:`SENSITIVITY_BY_TIME_COLUMNS`, bin by bin. A swap at
    an inner edge belongs to the bin above it; t = 1 to the last bin.

    ``mean_gain`` in a bin is the loss a wrong half costs at those times; the slopes say what in
    the half it costs there."""
    if "t" not in differences:
        raise ValueError("the swaps have no flow-time column 't' (scored before t was recorded?)")
    t = differences["t"].to_numpy(np.float64)
    edges = time_bin_edges(t, bins)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)
    parts = []
    for k in range(len(edges) - 1):
        table = sensitivity_table(differences[which == k], n_resamples, seed, confidence)
        table.insert(0, "t_hi", float(edges[k + 1]))
        table.insert(0, "t_lo", float(edges[k]))
        parts.append(table)
    return pd.concat(parts, ignore_index=True)[list(SENSITIVITY_BY_TIME_COLUMNS)]
