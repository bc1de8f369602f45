"""Latents compared on the instrument truth with a probe chosen per latent: ridge or an MLP.

Why this is measured: the probe tables (``survey_probes.csv``, and the claims judged from it)
read every latent with a ridge, which asks what a latent makes *linearly* explicit. The paper's
Table 5 reads them with MLPs. On the demo sky the two disagree about the PSF: a ridge finds the
instrument latent no better than the physics latent on PSF FWHM in most trainings, while the
instrument latent holds more of it nonlinearly (benchmarks/RESULTS.md, "The PSF lead under a
probe chosen per latent"). An MLP of fixed width and penalty is no fair judge either: it overfits
the wider physics latent (64 dimensions against the instrument latent's 16 on the demo) and so
favours the narrow one. Here each latent gets the probe that suits it: in every outer fold, the
candidates (ridge over the config's alphas, and one MLP per penalty) are scored by inner k-fold
R^2 on that fold's training rows only, and the best is refit on them and predicts the held-out
rows. The outer folds, the bootstrap matrix and the pairs are the same for every latent and
probe, so their intervals are paired.

Rows (:data:`SELECTION_COLUMNS`), per survey and instrument target: ``probe`` is ``ridge`` (the
probe tables' reading) or ``selected``; R^2 of the physics and instrument latent with bootstrap
intervals; the lead, instrument minus physics, with its paired interval; and which candidate
each outer fold chose for each latent (``ridge`` or ``mlp(<penalty>)``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from whatsreal.experiments.bootstrap import bootstrap_counts, percentile_ci, r2_point, r2_replicates
from whatsreal.experiments.survey_probes import ridge_probe
from whatsreal.experiments.targets import TRUTH_INSTRUMENT, truth_instrument_targets

__all__ = ["SELECTION_COLUMNS", "ProbeCandidates", "oof_selected", "selection_table"]

SELECTION_COLUMNS = [
    "survey",
    "target",
    "probe",
    "n",
    "r2_physics",
    "r2_physics_ci_lo",
    "r2_physics_ci_hi",
    "r2_instrument",
    "r2_instrument_ci_lo",
    "r2_instrument_ci_hi",
    "lead",
    "lead_ci_lo",
    "lead_ci_hi",
    "picks_physics",
    "picks_instrument",
]


@dataclass(frozen=True)
class ProbeCandidates:
    """The probes a latent may be read with, and how the choice is made.

    ``alphas``: the ridge penalties (RidgeCV picks among them by leave-one-out, as the probe
    tables do). ``mlp_penalties``: one MLP candidate per L2 penalty, each with hidden layers
    ``mlp_hidden``, early stopping on a 15 % slice of its training rows, and standardised inputs
    and target; one that reaches ``max_iter`` epochs first keeps its last weights (a capped
    probe, not a failure). ``inner_folds``: the k of the inner cross-validation that picks the
    candidate. ``inner_max_rows``: when an outer fold trains on more rows than this, the choice
    is made on a seeded random subset of that many of them (the chosen probe is still refit on
    all). Why: the inner selection fits every candidate ``inner_folds`` times per outer fold and
    latent: on a 240' sky's 17,866 pairs, three MLP candidates had not finished one survey in
    10 minutes. The subset makes the choice cheaper, not neutral: an MLP needs more rows than a
    ridge to win, so a small subset leans the choice towards the ridge; ``None`` (the default)
    uses every row.
    """

    alphas: Sequence[float]
    mlp_penalties: Sequence[float] = (0.01, 0.1, 1.0)
    mlp_hidden: Sequence[int] = (256, 128)
    inner_folds: int = 3
    max_iter: int = 400
    seed: int = 0
    inner_max_rows: int | None = None

    def __post_init__(self) -> None:
        if self.inner_folds < 2:
            raise ValueError(f"inner_folds must be at least 2, got {self.inner_folds}")
        if self.inner_max_rows is not None and self.inner_max_rows < 2 * self.inner_folds:
            raise ValueError(
                f"inner_max_rows must be at least 2 x inner_folds = {2 * self.inner_folds}, got {self.inner_max_rows}"
            )

    def names(self) -> list[str]:
        """Every candidate's label, ridge first."""
        return ["ridge", *(f"mlp({p:g})" for p in self.mlp_penalties)]

    def build(self, name: str) -> Pipeline | TransformedTargetRegressor:
        """A fresh, unfitted estimator for the candidate ``name`` (one of :meth:`names`)."""
        if name == "ridge":
            return ridge_probe(self.alphas)
        penalty = dict(zip(self.names()[1:], self.mlp_penalties, strict=True))[name]
        mlp = MLPRegressor(
            hidden_layer_sizes=tuple(self.mlp_hidden),
            alpha=penalty,
            early_stopping=True,
            validation_fraction=0.15,
            n_iter_no_change=20,
            max_iter=self.max_iter,
            random_state=self.seed,
        )
        return TransformedTargetRegressor(make_pipeline(StandardScaler(), mlp), transformer=StandardScaler())


def _fit_predict(
    candidates: ProbeCandidates, name: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray
) -> np.ndarray:
    # Clipped to the training labels' range, as the probe tables' ridge: one far-out latent (a
    # saturated star across the galaxy) must not decide an R^2.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = candidates.build(name).fit(x, y)
    return np.clip(np.asarray(model.predict(x_test), dtype=np.float64).ravel(), y.min(), y.max())


def _pick(candidates: ProbeCandidates, x: np.ndarray, y: np.ndarray) -> str:
    """The candidate with the best mean R^2 over inner folds of (x, y), or of a seeded subset of
    ``candidates.inner_max_rows`` of its rows; ties, and a target no candidate can score
    (constant in a fold), go to the ridge."""
    cap = candidates.inner_max_rows
    if cap is not None and len(y) > cap:
        keep = np.sort(np.random.default_rng(candidates.seed + 2).choice(len(y), cap, replace=False))
        x, y = x[keep], y[keep]
    inner = KFold(n_splits=candidates.inner_folds, shuffle=True, random_state=candidates.seed + 1)
    folds = list(inner.split(x))
    best, best_score = "ridge", -np.inf
    for name in candidates.names():
        score = np.mean(
            [float(r2_point(y[te], _fit_predict(candidates, name, x[tr], y[tr], x[te]))) for tr, te in folds]
        )
        if score > best_score:
            best, best_score = name, score
    return best


def oof_selected(
    x: np.ndarray, y: np.ndarray, n_folds: int, fold_seed: int, candidates: ProbeCandidates, select: bool = True
) -> tuple[np.ndarray, list[str]]:
    """(n,) out-of-fold predictions of ``y`` from ``x`` and the candidate each outer fold used.

    With ``select``, each outer fold's probe is chosen by :func:`_pick` on that fold's training
    rows only (its held-out rows never inform the choice); without, every fold uses the ridge.
    Rows with a non-finite label or feature get NaN and train nothing. The fits run on one BLAS
    thread, leaving the other core of a 2-core machine to whatever runs beside them (a
    training, as when this was measured)."""
    pred = np.full(len(y), np.nan)
    picks: list[str] = []
    ok = np.flatnonzero(np.isfinite(y) & np.isfinite(x).all(axis=1))
    if ok.size < 2 * n_folds * candidates.inner_folds:
        return pred, picks
    with threadpool_limits(limits=1):
        for train, test in KFold(n_splits=n_folds, shuffle=True, random_state=fold_seed).split(ok):
            xt, yt = x[ok[train]], y[ok[train]]
            name = _pick(candidates, xt, yt) if select else "ridge"
            picks.append(name)
            pred[ok[test]] = _fit_predict(candidates, name, xt, yt, x[ok[test]])
    return pred, picks


def selection_table(
    targets: pd.DataFrame,
    latents: Mapping[str, Mapping[str, np.ndarray]],
    candidates: ProbeCandidates,
    n_folds: int,
    fold_seed: int,
    bootstrap: tuple[int, int, float],
    quantities: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Rows :data:`SELECTION_COLUMNS` for every survey of ``latents`` and its truth instrument targets.

    ``targets``: one row per pair with the truth instrument targets
    (:func:`whatsreal.experiments.targets.build_targets` on a simulated sky).
    ``latents``: ``{survey: {"physics": (n, d), "instrument": (n, d')}}``, row i that survey's
    image of pair i. ``quantities``: a subset of ``psf_fwhm``, ``sky_sigma``, ``psfdepth_mag``
    (default all three). ``bootstrap``: (resamples, seed, confidence), one matrix for every row.
    """
    n = len(targets)
    n_resamples, boot_seed, confidence = bootstrap
    counts = bootstrap_counts(n, n_resamples, boot_seed)
    rows = []
    for survey, by_space in latents.items():
        for space in ("physics", "instrument"):
            if space not in by_space:
                raise KeyError(f"survey '{survey}': no {space} latent given")
            if len(by_space[space]) != n:
                raise ValueError(
                    f"survey '{survey}': {space} latent has {len(by_space[space])} rows but there are {n} pairs"
                )
        for (quantity, _), name in zip(TRUTH_INSTRUMENT, truth_instrument_targets(survey), strict=True):
            if quantities is not None and quantity not in quantities:
                continue
            if name not in targets.columns:
                raise KeyError(f"target table: missing truth column '{name}' (a simulated sky's truth is needed)")
            y = targets[name].to_numpy(np.float64)
            for probe, select in (("ridge", False), ("selected", True)):
                out = {
                    space: oof_selected(
                        np.asarray(by_space[space], np.float64), y, n_folds, fold_seed, candidates, select
                    )
                    for space in ("physics", "instrument")
                }
                row = {"survey": survey, "target": name, "probe": probe}
                row["n"] = int(
                    (np.isfinite(y) & np.isfinite(out["physics"][0]) & np.isfinite(out["instrument"][0])).sum()
                )
                reps = {}
                for space, (pred, picks) in out.items():
                    reps[space] = r2_replicates(y, pred, counts)
                    lo, hi = percentile_ci(reps[space], confidence)
                    row |= {
                        f"r2_{space}": float(r2_point(y, pred)),
                        f"r2_{space}_ci_lo": float(lo),
                        f"r2_{space}_ci_hi": float(hi),
                    }
                    row[f"picks_{space}"] = ",".join(picks)
                lo, hi = percentile_ci(reps["instrument"] - reps["physics"], confidence)
                row |= {
                    "lead": row["r2_instrument"] - row["r2_physics"],
                    "lead_ci_lo": float(lo),
                    "lead_ci_hi": float(hi),
                }
                rows.append(row)
    return pd.DataFrame(rows, columns=SELECTION_COLUMNS)
