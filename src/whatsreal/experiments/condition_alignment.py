"""How much one survey's observing conditions tell about the other's, and what a physics latent carries of it.

Why this is measured: the physics encoder of survey A conditions the decoder when it
reconstructs survey B's anchor, so training rewards it for carrying whatever in A's image
predicts B's image, B's observing conditions included. A's own conditions (sky noise, depth,
PSF) are read off A's pixels. Where they predict B's conditions, the physics latent has a
reason to carry them, and the paper's ablation (random neighbours leave the decoder no source
of the anchor's conditions) has a way round it. HSC and Legacy observed at different times
with different telescopes, so their condition fields are drawn independently; on a finite
patch they still align by chance, and by a different amount on every sky realisation
(benchmarks/RESULTS.md, "Why the HSC PSF is won on one sky and not another").

The alignment need not be linear. Conditions vary smoothly over the patch, so a survey's
per-band conditions together say *where* on a small patch a galaxy lies, and with that the
other survey's conditions there: a model that reads them all can localise the galaxy. Rows,
each an out-of-fold R^2 over every pair with a bootstrap interval:

- ``conditions (ridge)`` and ``conditions (boosted trees)``: A's true per-band conditions (PSF
  FWHM, sky noise, PSF depth in every band) -> a condition of B, linear and not: how much A's
  conditions, read perfectly, tell about B's;
- ``<run> physics latent``: the run's physics latent of A's image (ridge, as the probe tables)
  -> a condition of B, and -> a condition of A: how much of the alignment it carries, and its
  own-survey leakage beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from whatsreal.experiments.bootstrap import bootstrap_counts, percentile_ci, r2_point, r2_replicates
from whatsreal.experiments.survey_probes import oof_ridge
from whatsreal.experiments.targets import TRUTH_INSTRUMENT, truth_instrument_targets

__all__ = [
    "ALIGNMENT_COLUMNS",
    "CONDITIONS_LINEAR",
    "CONDITIONS_TREES",
    "alignment_table",
    "oof_boosted_trees",
    "per_band_conditions",
]

CONDITIONS_LINEAR = "conditions (ridge)"
CONDITIONS_TREES = "conditions (boosted trees)"
"""The ``representation`` of the rows that predict from the source survey's true per-band conditions."""

ALIGNMENT_COLUMNS = ["source", "representation", "target_survey", "target", "n", "r2", "ci_lo", "ci_hi"]


def per_band_conditions(truth: pd.DataFrame, truth_id: np.ndarray, survey: str, bands: Sequence[str]) -> np.ndarray:
    """(n, 3 x bands) true PSF FWHM, sky noise and PSF depth of ``survey`` in every band, for the
    galaxies ``truth_id`` of ``truth.parquet`` (``{survey}_{quantity}_{band}`` columns)."""
    table = truth.set_index("truth_id")
    cols = [f"{survey}_{quantity}_{band}" for quantity, _ in TRUTH_INSTRUMENT for band in bands]
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise KeyError(f"truth.parquet: missing column(s) {', '.join(missing)}")
    absent = np.setdiff1d(truth_id, table.index.to_numpy())
    if absent.size:
        raise ValueError(f"truth.parquet: truth_id(s) {absent[:5].tolist()} are missing")
    return table.loc[truth_id, cols].to_numpy(np.float64)


def oof_boosted_trees(x: np.ndarray, y: np.ndarray, n_folds: int, seed: int, max_iter: int = 200) -> np.ndarray:
    """(n,) out-of-fold predictions of ``y`` by gradient-boosted trees (NaN where ``y`` is not finite).

    The nonlinear reference: a condition that the other survey's conditions give only through
    where the galaxy lies on the patch is invisible to a ridge and plain to trees.

    One OpenMP thread: on a sky's thousands of rows more threads save little, and on a machine
    whose cores are busy (a training beside it) their spin-waiting made the same fits take
    minutes instead of seconds."""
    pred = np.full(len(y), np.nan)
    ok = np.flatnonzero(np.isfinite(y))
    if ok.size < 2 * n_folds:
        return pred
    with threadpool_limits(limits=1, user_api="openmp"):
        for train, test in KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(ok):
            model = HistGradientBoostingRegressor(max_iter=max_iter, learning_rate=0.05, random_state=seed)
            model.fit(x[ok[train]], y[ok[train]])
            pred[ok[test]] = model.predict(x[ok[test]])
    return pred


def _row(
    source: str,
    representation: str,
    target_survey: str,
    target: str,
    y: np.ndarray,
    pred: np.ndarray,
    counts: np.ndarray,
    confidence: float,
) -> dict:
    lo, hi = percentile_ci(r2_replicates(y, pred, counts), confidence)  # non-finite rows get weight 0
    return {
        "source": source,
        "representation": representation,
        "target_survey": target_survey,
        "target": target,
        "n": int((np.isfinite(y) & np.isfinite(pred)).sum()),
        "r2": float(r2_point(y, pred)),
        "ci_lo": float(lo),
        "ci_hi": float(hi),
    }


def alignment_table(
    targets: pd.DataFrame,
    conditions: Mapping[str, np.ndarray],
    physics_latents: Mapping[str, Mapping[str, np.ndarray]],
    n_folds: int,
    alphas: Sequence[float],
    fold_seed: int,
    bootstrap_seed: int,
    n_resamples: int,
    confidence: float,
) -> pd.DataFrame:
    """Rows :data:`ALIGNMENT_COLUMNS` for every ordered pair of the surveys of ``conditions`` (source A, target B).

    ``targets``: one row per pair with each survey's truth instrument targets
    (:func:`whatsreal.experiments.targets.truth_instrument_targets`, as
    :func:`~whatsreal.experiments.targets.build_targets` writes them).
    ``conditions``: ``{survey: (n_pairs, k) true per-band conditions}`` (:func:`per_band_conditions`).
    ``physics_latents``: ``{run: {survey: (n_pairs, d) physics latent of that survey's image}}``,
    row i the galaxy of pair i. Every row uses the folds of ``fold_seed`` and one shared bootstrap
    matrix, so two rows' intervals are paired.
    """
    surveys = list(conditions)
    names = {s: truth_instrument_targets(s) for s in surveys}
    missing = [c for s in surveys for c in names[s] if c not in targets.columns]
    if missing:
        raise KeyError(
            f"target table: missing truth column(s) {', '.join(missing)} (a simulated sky's truth is needed)"
        )
    n = len(targets)
    arrays = {f"{s} conditions": x for s, x in conditions.items()}
    arrays |= {f"run '{run}': {s} physics latent": x for run, by in physics_latents.items() for s, x in by.items()}
    for what, x in arrays.items():
        if len(x) != n:
            raise ValueError(f"{what} has {len(x)} rows but there are {n} pairs")
    counts = bootstrap_counts(n, n_resamples, bootstrap_seed)
    rows = []
    for a in surveys:
        own = np.asarray(conditions[a], dtype=np.float64)
        others = [s for s in surveys if s != a]
        for b in others:
            for name in names[b]:
                y = targets[name].to_numpy(np.float64)
                ridge = oof_ridge(own, y, n_folds, alphas, fold_seed)
                rows.append(_row(a, CONDITIONS_LINEAR, b, name, y, ridge, counts, confidence))
                trees = oof_boosted_trees(own, y, n_folds, fold_seed)
                rows.append(_row(a, CONDITIONS_TREES, b, name, y, trees, counts, confidence))
        for run, by_survey in physics_latents.items():
            if a not in by_survey:
                continue
            x = np.asarray(by_survey[a], dtype=np.float64)
            for b in [*others, a]:
                for name in names[b]:
                    y = targets[name].to_numpy(np.float64)
                    pred = oof_ridge(x, y, n_folds, alphas, fold_seed)
                    rows.append(_row(a, f"{run} physics latent", b, name, y, pred, counts, confidence))
    return pd.DataFrame(rows, columns=ALIGNMENT_COLUMNS)
