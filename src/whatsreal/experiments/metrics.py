"""Measurements several experiments share, so each is computed one way everywhere.

- :func:`r2_or_nan`: the R^2 of the probes, the cross-predict baseline and the
  zero-shot test, over the finite labels only (real catalogues have gaps), NaN
  where R^2 is undefined rather than a misleading number.
- :func:`counterfactual_mse`: Fig 6's numbers (samples and posterior mean against the real
  target), which the counterfactuals rule tabulates and the sampler study compares between
  samplers;
- :func:`mse`: the mean squared difference of two image stacks in float64, as the
  counterfactual-against-truth numbers compare samples, means and targets;
- :func:`neighbours_excluding`: exact L2 k nearest neighbours with the query's own
  row removed, as the UMAP figure's kNN numbers and the retrieval figure both
  need; planted exact duplicates may sort before the row itself, so "drop the
  first hit" would be wrong.

scikit-learn is imported inside the two functions that use it: the jobs that only compare
images (Fig 6, the truth counterfactuals) are each a new interpreter, and would otherwise
spend a second or more of CPU importing it for nothing.
"""

from __future__ import annotations

import numpy as np

__all__ = ["counterfactual_mse", "mse", "neighbours_excluding", "r2_or_nan"]


def r2_or_nan(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """sklearn R^2 over the finite labels; NaN with fewer than 2 of them or a constant truth."""
    from sklearn.metrics import r2_score

    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    ok = np.isfinite(y_true) & np.isfinite(y_pred)
    if ok.sum() < 2 or np.ptp(y_true[ok]) == 0:
        return float("nan")
    return float(r2_score(y_true[ok], y_pred[ok]))


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean of (a - b)^2 over every element, accumulated in float64 (images are float32)."""
    return float(((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2).mean())


def neighbours_excluding(index: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(m, k) rows of ``index`` nearest (L2) to ``index[queries]``, each query's own row left out.

    ``k`` is capped at ``len(index) - 1``. Pass ``queries = np.arange(len(index))``
    for every row's neighbours among the others.
    """
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(index) - 1)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(index).kneighbors(index[queries], return_distance=False)
    not_self = idx != np.asarray(queries)[:, None]
    # The query row is usually first, but exact duplicates (planted counterparts) may come before it.
    order = np.argsort(~not_self, axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)[:, :k]


def counterfactual_mse(samples: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(mean over samples and galaxies of the per-sample MSE, MSE of the posterior mean) vs target.

    ``samples`` (n, S, C, H, W), ``target`` (n, C, H, W); float64 accumulation."""
    s = samples.astype(np.float64)
    t = target.astype(np.float64)[:, None]
    per_sample = ((s - t) ** 2).mean(axis=(2, 3, 4))
    mean_err = ((s.mean(axis=1) - t[:, 0]) ** 2).mean()
    return float(per_sample.mean()), float(mean_err)
