"""Percentile-bootstrap confidence intervals of R^2 over held-out test pairs, paired across predictors.

Why this exists: a probe R^2 of 0.48 against 0.55 on a few hundred test pairs
says nothing until we know how much it moves with the sample. Every R^2 and
every difference of R^2 in the probe tables gets a 95 % interval from the
same recipe:

- the predictions are fixed (the probes are trained once; we never retrain per
  resample, which would cost a probe fit per resample and answer a different
  question), and only the held-out test pairs are resampled with replacement;
- one matrix of resampling *counts* ``(B, n_test)`` is drawn from a seed and
  shared by every target and every representation, so a difference (physics
  minus instrument latent, or `main` minus `random_neighbours`) is bootstrapped
  *paired*: both terms are evaluated on the same resampled pairs, which removes
  the pair-to-pair variance they share;
- R^2 of a resample is the count-weighted R^2 (identical to sklearn's R^2 on
  the resampled rows), computed for all resamples at once with matrix products,
  so B = 1000 costs milliseconds;
- the interval is the percentile interval of the resampled statistic.

Pairs without a finite label or prediction drop out of a resample's R^2 (their
weight is zeroed), exactly as they drop out of the point estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "BootstrapR2",
    "bootstrap_config",
    "bootstrap_counts",
    "cluster_bootstrap_counts",
    "percentile_ci",
    "r2_point",
    "r2_replicates",
    "resampled_medians",
]

MIN_FINITE_FRACTION = 0.9
"""An interval is reported only when at least this fraction of resamples gives a finite statistic."""


def bootstrap_config(cfg: dict) -> tuple[int, int, float]:
    """``(n_resamples, seed, confidence)`` from ``cfg['experiments']['bootstrap']``."""
    b = cfg["experiments"]["bootstrap"]
    return int(b["n_resamples"]), int(b["seed"]), float(b["confidence"])


def bootstrap_counts(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """(B, n) int32: how often each of the ``n`` test rows appears in each of ``B`` resamples of size ``n``.

    Deterministic in (n, B, seed); every table of a run draws the same matrix, which
    is what makes differences between tables' columns paired.
    """
    n, n_resamples = int(n), int(n_resamples)
    if n < 1 or n_resamples < 1:
        return np.zeros((max(n_resamples, 0), max(n, 0)), dtype=np.int32)
    rng = np.random.default_rng([int(seed), n])
    draws = rng.integers(0, n, size=(n_resamples, n))
    flat = (np.arange(n_resamples)[:, None] * n + draws).ravel()
    return np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n).astype(np.int32)


def cluster_bootstrap_counts(clusters: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """(B, n) row weights of a bootstrap that resamples whole *clusters* of rows (e.g. patches of sky).

    Rows of one cluster share errors (anchors of one sky patch see overlapping
    neighbours), so resampling rows one by one would understate the spread; each
    resample draws as many clusters as there are, with replacement, and a row's
    weight is how often its cluster was drawn.
    """
    _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    n_clusters = int(inverse.max()) + 1 if inverse.size else 0
    return bootstrap_counts(n_clusters, n_resamples, seed)[:, inverse]


def _as_columns(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a[:, None] if a.ndim == 1 else a


def r2_replicates(y: np.ndarray, pred: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """R^2 of ``pred`` against ``y`` on every resample: (B,) for 1-d inputs, (B, T) for (n, T) inputs.

    Rows where ``y`` or ``pred`` is not finite get weight 0. A resample with fewer
    than 2 distinct usable rows or a constant truth gives NaN.
    """
    one = np.asarray(y).ndim == 1
    y, pred = _as_columns(y), _as_columns(pred)
    if y.shape != pred.shape or y.shape[0] != counts.shape[1]:
        raise ValueError(f"y {y.shape}, pred {pred.shape} and counts {counts.shape} do not match")
    ok = np.isfinite(y) & np.isfinite(pred)
    w_all = counts.astype(np.float64)
    out = np.full((counts.shape[0], y.shape[1]), np.nan)
    for t in range(y.shape[1]):
        rows = np.flatnonzero(ok[:, t])
        if rows.size < 2:
            continue
        res = (y[rows, t] - pred[rows, t]) ** 2
        yt = y[rows, t] - y[rows, t].mean()  # centring first keeps the weighted sums well conditioned
        w = w_all[:, rows]
        sw = w.sum(axis=1)
        swy = w @ yt
        swyy = w @ (yt**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            ss_tot = swyy - swy**2 / sw
            ss_res = w @ res
            distinct = (w > 0).sum(axis=1)
            r2 = 1.0 - ss_res / ss_tot
        scale = max(float(np.mean(yt**2)), np.finfo(float).tiny)
        bad = (distinct < 2) | ~(ss_tot > 1e-12 * scale * np.maximum(sw, 1.0))
        out[:, t] = np.where(bad, np.nan, r2)
    return out[:, 0] if one else out


def r2_point(y: np.ndarray, pred: np.ndarray) -> np.ndarray | float:
    """R^2 on all rows (the point estimate), with the same finite-row rule as :func:`r2_replicates`."""
    one = np.asarray(y).ndim == 1
    y2 = _as_columns(y)
    r2 = r2_replicates(y, pred, np.ones((1, y2.shape[0]), dtype=np.int32))
    return float(r2[0]) if one else r2[0]


def resampled_medians(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(B,) the median of each resample of ``values`` (n,) that ``counts`` (B, n) describes
    (:func:`bootstrap_counts`: each resample has n draws), as ``np.median`` of the drawn values.

    Without materialising the resamples: in the sorted values, the middle draws (0-based
    positions (n - 1) // 2 and n // 2 of a resample) fall on the first values whose cumulative
    count exceeds those positions.
    """
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, kind="stable")
    cum = np.cumsum(np.asarray(counts)[:, order], axis=1)
    n = len(v)
    low = v[order][(cum > (n - 1) // 2).argmax(axis=1)]
    high = v[order][(cum > n // 2).argmax(axis=1)]
    return 0.5 * (low + high)


def percentile_ci(replicates: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column of ``replicates`` (B, ...); NaN where too few resamples are finite."""
    reps = np.asarray(replicates, dtype=np.float64)
    alpha = 0.5 * (1.0 - float(confidence))
    finite = np.isfinite(reps)
    enough = finite.mean(axis=0) >= MIN_FINITE_FRACTION if reps.shape[0] else np.zeros(reps.shape[1:], bool)
    safe = np.where(finite, reps, np.nan)
    with np.errstate(invalid="ignore"):
        if reps.shape[0] and np.any(enough):
            lo = np.nanquantile(np.where(enough, safe, 0.0), alpha, axis=0)
            hi = np.nanquantile(np.where(enough, safe, 0.0), 1.0 - alpha, axis=0)
        else:
            lo = hi = np.full(reps.shape[1:], np.nan)
    return np.where(enough, lo, np.nan), np.where(enough, hi, np.nan)


@dataclass
class BootstrapR2:
    """Bootstrap replicates of R^2 for named predictors of the same test rows, sharing one counts matrix.

    ``add(name, y, pred)`` stores the point R^2 (per column) and its replicates;
    ``ci(name)`` and ``diff(a, b)`` give intervals, the latter paired.
    """

    counts: np.ndarray
    confidence: float = 0.95

    def __post_init__(self) -> None:
        self.point: dict[str, np.ndarray] = {}
        self.replicates: dict[str, np.ndarray] = {}

    @classmethod
    def for_rows(cls, n: int, n_resamples: int, seed: int, confidence: float) -> BootstrapR2:
        """A bootstrap over ``n`` test rows with the configured resamples, seed and confidence."""
        return cls(bootstrap_counts(n, n_resamples, seed), confidence)

    def add(self, name: str, y: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """Record predictor ``name`` ((n,) or (n, T) predictions of ``y``); returns its point R^2 per column."""
        y2, p2 = _as_columns(y), _as_columns(pred)
        self.point[name] = np.atleast_1d(r2_point(y2, p2))
        self.replicates[name] = r2_replicates(y2, p2, self.counts)
        return self.point[name]

    def ci(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) per column of predictor ``name``."""
        return percentile_ci(self.replicates[name], self.confidence)

    def diff(self, a: str, b: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point R^2(a) - R^2(b) per column and its paired-bootstrap (lo, hi)."""
        lo, hi = percentile_ci(self.replicates[a] - self.replicates[b], self.confidence)
        return self.point[a] - self.point[b], lo, hi
