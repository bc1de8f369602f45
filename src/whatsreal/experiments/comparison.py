"""Every method side by side: the configured runs, a frozen random-init encoder and raw pixels.

The seeds propose competing ways to learn the same split of physics from instrument (the
flow-matching decoder of seed 000, seed 001's structured-contrastive dual encoder and its
single-latent baseline, seed 003's physics-informed CVAE). Each run of the workflow is one
of them (its ``method`` in the run's config overlay), trained on the same triplets; this
module asks every one of them the same questions on the same pairs, so a row of
``comparison.csv`` differs between two methods only by the representation:

- *truth probes*: can a linear read-out recover the physics targets from the physics
  latent and the instrument targets from the instrument latent, and how much leaks across
  (physics targets from the instrument latent and the reverse)? Targets are the simulator's
  truth on the synthetic sky, else the catalogue and spectroscopic ones
  (:mod:`whatsreal.experiments.targets`); pairs and folds are the probe design of Table 5
  (:mod:`whatsreal.experiments.probe_design`). The probe is ridge regression (features
  standardised on the training rows, the penalty picked per target by generalised
  cross-validation from ``ridge_alphas``), not Table 5's MLP: it is deterministic, has no
  training schedule that could favour one representation, costs milliseconds, and is what
  a few-shot curve at 50 labels can fit. Each group (physics, instrument) is summarised as
  the mean R^2 over its targets, each clipped at 0 as in the truth summary of the probes,
  with a percentile-bootstrap interval over the held-out pairs; one resample matrix serves
  every representation, so two methods are compared on the same resampled pairs.
- *few-shot curves* (seed 001, Fig 3): R^2 of a few physics targets against the number of
  labelled training galaxies, each size drawn ``repeats`` times (the same draws for every
  representation); the interval is the t-interval of the mean over the draws.
- *outliers*: the fraction of mergers/lenses and of HSC pathologies among the top
  ``outlier_fraction`` of HSC objects ranked by an outlier score in each space, against
  the base rate (truth only). The score is the mean distance to the ``outlier_k`` nearest
  other HSC objects (features standardised): the normalising flows of Fig 3 cost a fit per
  space per representation, the kNN distance none, and it ranks the same low-density
  objects first. Interval: Wilson's for the binomial fraction. Beside the kNN rankings, each
  method's own outlier score ranks the same objects at the same fraction: Fig 3's flow -log p
  of a run that has the outliers rule (spaces ``physics flow``, ``instrument flow``, read from
  its ``outlier_scores.parquet``) and the CVAE's latent anomaly score (``cvae anomaly``, the
  ``cvae_anomaly`` column of its embeddings; seed 003's rare-object search).
- *counterpart retrieval*: each held-out (``val``) HSC object queries the Legacy objects
  of every pair by L2 distance between physics latents; the rank of its own Legacy view
  gives top-1 and top-k rates (``experiments.retrieval.k``), with bootstrap intervals over
  the queries and chance (1/N, k/N) beside them.
- *training cost*: wall seconds of the run's ``train`` job (its benchmark TSV), optimisation
  steps (``metrics.csv``) and their ratio, which includes start-up and validation.

Raw pixels are each survey's preprocessed images, block-averaged by ``pixel_downsample``
and flattened: a "physics latent" that is nothing but the data (no instrument space).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import RidgeCV
from sklearn.neighbors import NearestNeighbors

from whatsreal.experiments.bootstrap import (
    BootstrapR2,
    bootstrap_counts,
    percentile_ci,
    r2_point,
    resampled_medians,
)
from whatsreal.experiments.embeddings import ANOMALY_COLUMN, SPACES, paired_latents, read_embeddings
from whatsreal.experiments.probe_design import ProbeDesign, ProbeFolds, folds_for, read_probe_sky, resolve_design
from whatsreal.experiments.targets import Target, build_targets
from whatsreal.io import read_table, write_csv
from whatsreal.layout import DatasetLayout
from whatsreal.methods import DEFAULT_METHOD
from whatsreal.rule_times import benchmark_stem, read_benchmark
from whatsreal.surveys import SURVEY_ORDER
from whatsreal.truth import hsc_truth

__all__ = [
    "CVAE_SCORE",
    "FEWSHOT_COLUMNS",
    "FLOW_SCORE",
    "RANDOM_INIT",
    "RAW_PIXELS",
    "TABLE_COLUMNS",
    "ComparisonInputs",
    "ComparisonResult",
    "ComparisonSettings",
    "Representation",
    "RunFiles",
    "TrainingCost",
    "compute_comparison",
    "cost_rows",
    "counterpart_ranks",
    "downsampled_pixels",
    "few_shot_table",
    "fold_ridge_predictions",
    "knn_outlier_scores",
    "load_comparison",
    "outlier_rows",
    "own_outlier_scores",
    "precision_at_top",
    "probe_rows",
    "read_training_cost",
    "retrieval_rows",
    "run_comparison",
    "write_comparison",
]

log = logging.getLogger(__name__)

RANDOM_INIT = "random_init"
RAW_PIXELS = "raw_pixels"
FLOW_SCORE = "{space} flow"
"""``space`` of the outlier rows ranked by a run's Fig 3 flow (-log p in that latent space)."""
CVAE_SCORE = "cvae anomaly"
"""``space`` of the outlier rows ranked by a CVAE run's own latent anomaly score."""
TABLE_COLUMNS = (
    "representation",
    "method",
    "section",
    "metric",
    "space",
    "value",
    "ci_lo",
    "ci_hi",
    "reference",
    "n",
    "note",
)
"""comparison.csv: one row per (representation, section, metric, space); ``reference`` is chance or the base rate."""
FEWSHOT_COLUMNS = (
    "representation",
    "method",
    "space",
    "target",
    "n_train",
    "r2_mean",
    "r2_std",
    "ci_lo",
    "ci_hi",
    "n_repeats",
    "n_test",
)
"""comparison_fewshot.csv: one row per (representation, space, target, training size)."""
TARGET_GROUPS = ("physics", "instrument")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class ComparisonSettings:
    """``experiments.comparison`` plus the shared keys it reads (probe design, bootstrap, retrieval k)."""

    few_shot_sizes: tuple[int, ...]
    few_shot_targets: tuple[str, ...]
    repeats: int
    ridge_alphas: tuple[float, ...]
    pixel_downsample: int
    outlier_k: int
    outlier_fraction: float
    seed: int
    retrieval_k: int
    bootstrap: tuple[int, int, float]
    """``(n_resamples, seed, confidence)`` of ``experiments.bootstrap``."""
    design: ProbeDesign
    probes: dict
    """``experiments.probes`` (its ``test_fraction`` and ``seed`` split the pairs)."""
    bands: tuple[str, ...]

    @classmethod
    def from_config(cls, cfg: Mapping) -> ComparisonSettings:
        c, e = cfg["experiments"]["comparison"], cfg["experiments"]
        b = e["bootstrap"]
        return cls(
            few_shot_sizes=tuple(int(n) for n in c["few_shot_sizes"]),
            few_shot_targets=tuple(str(t) for t in c["few_shot_targets"]),
            repeats=int(c["repeats"]),
            ridge_alphas=tuple(float(a) for a in c["ridge_alphas"]),
            pixel_downsample=int(c["pixel_downsample"]),
            outlier_k=int(c["outlier_k"]),
            outlier_fraction=float(c["outlier_fraction"]),
            seed=int(c["seed"]),
            retrieval_k=int(e["retrieval"]["k"]),
            bootstrap=(int(b["n_resamples"]), int(b["seed"]), float(b["confidence"])),
            design=resolve_design(dict(cfg)),
            probes=dict(e["probes"]),
            bands=tuple(cfg["preprocess"]["bands"]),
        )


# --------------------------------------------------------------------------- training cost


@dataclass(frozen=True)
class TrainingCost:
    """What a representation cost to make: wall seconds of its job and optimisation steps (0: no training)."""

    seconds: float
    steps: int | None

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / self.steps if self.steps and math.isfinite(self.seconds) else float("nan")


def read_training_cost(benchmark: str | Path | None, metrics: str | Path | None) -> TrainingCost:
    """Wall seconds from a Snakemake benchmark TSV (NaN when absent or empty) and the steps of ``metrics.csv``.

    Steps: the largest logged ``step`` + 1 (Lightning logs the 0-based step of the update just
    made), None without a metrics file or a ``step`` column.
    """
    measured = read_benchmark(benchmark) if benchmark is not None and Path(benchmark).exists() else None
    seconds = float(measured["seconds"]) if measured is not None else float("nan")
    steps = None
    if metrics is not None and Path(metrics).exists():
        table = pd.read_csv(metrics)
        step = pd.to_numeric(table.get("step", pd.Series(dtype=float)), errors="coerce").dropna()
        steps = int(step.max()) + 1 if len(step) else None
    return TrainingCost(seconds, steps)


# --------------------------------------------------------------------------- representations


@dataclass(frozen=True)
class Representation:
    """One column of the comparison: per latent space, the (HSC, Legacy) features of every pair in pair order."""

    name: str
    method: str
    spaces: dict[str, tuple[np.ndarray, np.ndarray]]
    cost: TrainingCost | None = None
    own_scores: dict[str, np.ndarray] = field(default_factory=dict)
    """The method's own outlier scores of the HSC objects in pair order (large = unusual), by label:
    :data:`FLOW_SCORE` per space for a run with Fig 3's flows, :data:`CVAE_SCORE` for a CVAE."""

    def pair_features(self, space: str) -> np.ndarray:
        """(n_pairs, 2d): both surveys' features side by side (HSC first), as Table 5's probes read a pair."""
        hsc, legacy = self.spaces[space]
        return np.concatenate([hsc, legacy], axis=1)


@dataclass(frozen=True)
class RunFiles:
    """A trained run's files the comparison reads; ``benchmark`` is None when its training was never timed."""

    name: str
    method: str
    embeddings: Path
    metrics: Path | None
    benchmark: Path | None
    outlier_scores: Path | None = None
    """Fig 3's per-object flow scores (outlier_scores.parquet); None for a run without the outliers rule."""

    @classmethod
    def of_layout(
        cls, data: DatasetLayout | str | Path, name: str, method: str = DEFAULT_METHOD, scored: bool = False
    ) -> RunFiles:
        """The files of run ``name`` in a dataset's layout (the benchmark only if it was written; the
        outlier scores when ``scored``, i.e. the run has the outliers rule)."""
        data = DatasetLayout.of(data)
        bench = data.benchmark(benchmark_stem("train", {"run": name}))
        run = data.run(name)
        scores = run.table("outlier_scores.parquet") if scored else None
        return cls(name, method, run.embeddings, run.metrics, bench if bench.exists() else None, scores)


def _embedding_spaces(emb: pd.DataFrame, path: str | Path, n_pairs: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Physics (and, when the file has ``inst_*`` columns, instrument) features per survey in pair order,
    from the embeddings ``emb`` read from ``path`` (named in errors)."""
    has_inst = any(c.startswith(SPACES["instrument"]) and c[len(SPACES["instrument"]) :].isdigit() for c in emb)
    pairs = np.arange(n_pairs)
    out = {}
    for space in ("physics", "instrument") if has_inst else ("physics",):
        both = paired_latents(emb, SPACES[space], pairs, path).astype(np.float64)
        out[space] = (both[:n_pairs], both[n_pairs:])
    return out


def _hsc_in_pair_order(table: pd.DataFrame, column: str, n_pairs: int, source: str | Path) -> np.ndarray:
    """``column`` of the HSC rows of ``table`` (columns ``survey``/``space`` filtered by the caller) as
    (n_pairs,) float64 in pair order; an error naming ``source`` if a pair is missing."""
    values = table.set_index("pair")[column]
    missing = np.setdiff1d(np.arange(n_pairs), values.index.to_numpy())
    if missing.size:
        raise ValueError(f"{source}: no '{column}' for pair(s) {missing[:5].tolist()}")
    return values.loc[np.arange(n_pairs)].to_numpy(np.float64)


def own_outlier_scores(run: RunFiles, emb: pd.DataFrame, n_pairs: int) -> dict[str, np.ndarray]:
    """A run's own outlier scores of the HSC objects in pair order (:attr:`Representation.own_scores`)."""
    out: dict[str, np.ndarray] = {}
    if ANOMALY_COLUMN in emb:
        hsc = emb[emb["survey"] == "hsc"]
        out[CVAE_SCORE] = _hsc_in_pair_order(hsc, ANOMALY_COLUMN, n_pairs, run.embeddings)
    if run.outlier_scores is not None:
        scores = read_table(run.outlier_scores, ["space", "pair", "nll"])
        for space in SPACES:
            sub = scores[scores["space"] == space]
            if not sub.empty:
                out[FLOW_SCORE.format(space=space)] = _hsc_in_pair_order(sub, "nll", n_pairs, run.outlier_scores)
    return out


def downsampled_pixels(images: np.ndarray, factor: int, chunk: int = 1024) -> np.ndarray:
    """(N, C * (H // f) * (W // f)) float32: each image block-averaged by ``factor`` and flattened.

    A stamp whose side is not a multiple of ``factor`` loses its outer rows/columns (centred crop).
    """
    n, c, h, w = images.shape
    f = max(1, int(factor))
    hh, ww = h // f, w // f
    top, left = (h - hh * f) // 2, (w - ww * f) // 2
    out = np.empty((n, c * hh * ww), dtype=np.float32)
    for start in range(0, n, chunk):
        block = np.asarray(images[start : start + chunk, :, top : top + hh * f, left : left + ww * f], np.float64)
        out[start : start + len(block)] = (
            block.reshape(len(block), c, hh, f, ww, f).mean(axis=(3, 5)).reshape(len(block), -1)
        )
    return out


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ComparisonInputs:
    """Every representation and what they are scored against, loaded once."""

    reps: list[Representation]
    y: np.ndarray
    """(n_pairs, T) probe targets in pair order, NaN where missing."""
    specs: list[Target]
    folds: ProbeFolds
    held_out: np.ndarray
    """Pairs whose HSC view queries the retrieval (the ``val`` split; every pair when there is none)."""
    labels: pd.DataFrame | None
    """Per pair: ``rare`` and ``pathological`` (HSC) from the truth; None on real data."""

    def group_columns(self, group: str) -> list[int]:
        """Target columns of ``group``: ``physics`` or ``instrument`` (either survey's)."""
        return [j for j, t in enumerate(self.specs) if (t.group == "physics") == (group == "physics")]


def _probe_targets(table: pd.DataFrame, specs: list[Target]) -> tuple[np.ndarray, list[Target]]:
    """The truth targets when there are any (the synthetic sky), else every catalogue target."""
    chosen = [t for t in specs if t.truth] or list(specs)
    return table[[t.name for t in chosen]].to_numpy(np.float64), chosen


def load_comparison(
    runs: Sequence[RunFiles],
    random_init: str | Path,
    images: Mapping[str, str | Path],
    meta: Mapping[str, str | Path],
    truth: str | Path | None,
    settings: ComparisonSettings,
    random_init_benchmark: str | Path | None = None,
) -> ComparisonInputs:
    """Read every run's latents, the random-init features, the downsampled pixels, the targets and the folds."""
    taken = [run.name for run in runs if run.name in (RANDOM_INIT, RAW_PIXELS)]
    if taken:
        raise ValueError(f"run name '{taken[0]}' is taken by a baseline of the comparison; rename the run")
    table, specs = build_targets(meta, truth, settings.bands)
    y, specs = _probe_targets(table, specs)
    n = len(y)
    reps = []
    for run in runs:
        emb = read_embeddings(run.embeddings, spaces=("physics",))
        spaces, own = _embedding_spaces(emb, run.embeddings, n), own_outlier_scores(run, emb, n)
        reps.append(Representation(run.name, run.method, spaces, _run_cost(run), own))
    rnd_cost = TrainingCost(read_training_cost(random_init_benchmark, None).seconds, 0)
    rnd = read_embeddings(random_init, spaces=("physics",))
    reps.append(Representation(RANDOM_INIT, RANDOM_INIT, _embedding_spaces(rnd, random_init, n), rnd_cost))
    pixels = {s: downsampled_pixels(np.load(images[s], mmap_mode="r"), settings.pixel_downsample) for s in SURVEY_ORDER}
    if any(len(p) != n for p in pixels.values()):
        raise ValueError(f"images have {[len(p) for p in pixels.values()]} rows but the meta files {n} pairs")
    reps.append(Representation(RAW_PIXELS, RAW_PIXELS, {"physics": (pixels["hsc"], pixels["legacysurvey"])}))
    sky = read_probe_sky(meta)
    folds = folds_for(settings.design, settings.probes, sky)
    val = np.flatnonzero(sky["split"].astype(str).to_numpy() == "val")
    if val.size == 0:
        log.warning("comparison: no val pairs; every pair queries the retrieval")
    labels = hsc_truth(meta["hsc"], truth, np.arange(n)) if truth is not None else None
    return ComparisonInputs(reps, y, specs, folds, val if val.size else np.arange(n), labels)


def _run_cost(run: RunFiles) -> TrainingCost:
    return read_training_cost(run.benchmark, run.metrics)


# --------------------------------------------------------------------------- ridge probes


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (test - mean) / std


def _ridge_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, alphas: Sequence[float]) -> np.ndarray:
    """(n_test, T) ridge predictions, one penalty per target by GCV; targets sharing labelled rows are fitted
    together. A target with fewer than 3 labels or a constant one gets NaN."""
    pred = np.full((len(x_test), y_train.shape[1]), np.nan)
    labelled = np.isfinite(y_train)
    masks, which = np.unique(labelled.T, axis=0, return_inverse=True)
    for m, rows in enumerate(masks):
        cols = np.flatnonzero(which.ravel() == m)
        cols = cols[np.ptp(y_train[rows][:, cols], axis=0) > 0] if rows.sum() else cols[:0]
        if rows.sum() < 3 or cols.size == 0:
            continue
        xtr, xte = _standardise(x_train[rows], x_test)
        model = RidgeCV(alphas=list(alphas), alpha_per_target=cols.size > 1).fit(xtr, y_train[rows][:, cols])
        pred[:, cols] = model.predict(xte).reshape(len(x_test), cols.size)
    return pred


def fold_ridge_predictions(
    x: np.ndarray,
    y: np.ndarray,
    folds: ProbeFolds,
    alphas: Sequence[float],
    train_rows: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """(n_scored, T) out-of-fold ridge predictions of every scored pair (``folds.scored`` order).

    ``train_rows`` replaces each fold's training rows (the few-shot subsamples); rows of ``x``
    with a non-finite feature neither train nor get a prediction.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x).all(axis=1)
    scored = folds.scored
    pred = np.full((len(scored), y.shape[1]), np.nan)
    for f, (train, test) in enumerate(folds.folds):
        train = train if train_rows is None else train_rows[f]
        train, test = train[ok[train]], test[ok[test]]
        if len(train) < 3 or len(test) == 0:
            continue
        pred[np.searchsorted(scored, test)] = _ridge_predict(x[train], y[train], x[test], alphas)
    return pred


def _clipped_mean(r2: np.ndarray) -> np.ndarray:
    """Mean over the last axis of R^2 clipped at 0, NaN targets left out (NaN when all are)."""
    clipped = np.clip(r2, 0.0, None)
    finite = np.isfinite(clipped)
    total = np.where(finite, clipped, 0.0).sum(axis=-1)
    count = finite.sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _row(rep: Representation, section: str, metric: str, space: str, value: float, **extra: object) -> dict:
    base = {"ci_lo": np.nan, "ci_hi": np.nan, "reference": np.nan, "n": np.nan, "note": ""}
    return {
        "representation": rep.name,
        "method": rep.method,
        "section": section,
        "metric": metric,
        "space": space,
        "value": float(value),
        **base,
        **extra,
    }


def probe_rows(inputs: ComparisonInputs, settings: ComparisonSettings) -> list[dict]:
    """Per representation and latent space: the clipped-mean R^2 of each target group with its bootstrap
    interval (``section`` probe; a group read from the other group's latent is the crossed leak), then
    every target's R^2 (``section`` probe_target)."""
    n_boot, boot_seed, conf = settings.bootstrap
    scored = inputs.folds.scored
    boot = BootstrapR2.for_rows(len(scored), n_boot, boot_seed, conf)
    y_test = inputs.y[scored]
    rows = []
    for rep in inputs.reps:
        for space in rep.spaces:
            key = f"{rep.name}/{space}"
            pred = fold_ridge_predictions(rep.pair_features(space), inputs.y, inputs.folds, settings.ridge_alphas)
            point = boot.add(key, y_test, pred)
            for group in TARGET_GROUPS:
                cols = inputs.group_columns(group)
                if not cols:
                    continue
                lo, hi = percentile_ci(_clipped_mean(boot.replicates[key][:, cols])[:, None], conf)
                note = f"mean R^2 (clipped at 0) of {len(cols)} {group} targets from the {space} latent" + (
                    "" if group == space else " (crossed: leakage)"
                )
                extra = {"ci_lo": lo[0], "ci_hi": hi[0], "reference": 0.0, "n": len(scored), "note": note}
                rows.append(_row(rep, "probe", f"r2_{group}_targets", space, _clipped_mean(point[cols]), **extra))
            lo, hi = boot.ci(key)
            for j, t in enumerate(inputs.specs):
                extra = {"ci_lo": lo[j], "ci_hi": hi[j], "n": int(np.isfinite(y_test[:, j]).sum()), "note": t.label}
                rows.append(_row(rep, "probe_target", t.name, space, point[j], **extra))
    return rows


# --------------------------------------------------------------------------- few-shot curves


def _few_shot_columns(inputs: ComparisonInputs, wanted: Sequence[str]) -> list[int]:
    """The configured few-shot targets that exist here, else the first three physics targets."""
    names = [t.name for t in inputs.specs]
    cols = [names.index(t) for t in wanted if t in names]
    if not cols:
        cols = inputs.group_columns("physics")[:3]
        log.warning(
            "comparison: none of the few-shot targets %s here; using %s", list(wanted), [names[c] for c in cols]
        )
    return cols


def _few_shot_sizes(sizes: Sequence[int], available: int) -> list[int]:
    """The configured sizes below the labelled training rows of the smallest fold, then all of them."""
    return sorted({int(s) for s in sizes if 3 <= s < available} | {available})


def _few_shot_draws(
    inputs: ComparisonInputs, cols: list[int], settings: ComparisonSettings
) -> dict[tuple[str, str, int], list[np.ndarray]]:
    """(representation, space, size) -> one R^2 vector (over ``cols``) per draw; every representation sees
    the same subsamples of each fold's labelled training rows (seeded by size and draw)."""
    y = inputs.y[:, cols]
    labelled = np.isfinite(y).all(axis=1)
    pools = [train[labelled[train]] for train, _ in inputs.folds.folds]
    available = min(len(p) for p in pools)
    y_test = y[inputs.folds.scored]
    out: dict[tuple[str, str, int], list[np.ndarray]] = {}
    for size in _few_shot_sizes(settings.few_shot_sizes, available):
        full = size >= available  # every labelled training pair of every fold: one draw
        label = round(float(np.mean([len(p) for p in pools]))) if full else size
        for draw in range(1 if full else settings.repeats):
            rng = np.random.default_rng([settings.seed, size, draw])
            subsets = pools if full else [np.sort(rng.choice(p, size, replace=False)) for p in pools]
            for rep in inputs.reps:
                for space in rep.spaces:
                    x = rep.pair_features(space)
                    pred = fold_ridge_predictions(x, y, inputs.folds, settings.ridge_alphas, subsets)
                    out.setdefault((rep.name, space, label), []).append(np.atleast_1d(r2_point(y_test, pred)))
    return out


def few_shot_table(inputs: ComparisonInputs, settings: ComparisonSettings) -> pd.DataFrame:
    """:data:`FEWSHOT_COLUMNS`: mean, std and the t-interval of the mean R^2 over the draws of each size.

    The largest size (every labelled training pair) is one draw: no interval (its test-set
    uncertainty is the probe interval of comparison.csv).
    """
    cols = _few_shot_columns(inputs, settings.few_shot_targets)
    draws = _few_shot_draws(inputs, cols, settings)
    methods = {rep.name: rep.method for rep in inputs.reps}
    conf = settings.bootstrap[2]
    n_test = np.isfinite(inputs.y[inputs.folds.scored][:, cols]).sum(axis=0)
    rows = []
    for (name, space, size), values in draws.items():
        r2 = np.vstack(values)
        mean = r2.mean(axis=0)
        std = r2.std(axis=0, ddof=1) if len(r2) > 1 else np.full(len(cols), np.nan)
        half = stats.t.ppf(0.5 + conf / 2, len(r2) - 1) * std / math.sqrt(len(r2)) if len(r2) > 1 else std
        for j, c in enumerate(cols):
            rows.append(
                {
                    "representation": name,
                    "method": methods[name],
                    "space": space,
                    "target": inputs.specs[c].name,
                    "n_train": size,
                    "r2_mean": mean[j],
                    "r2_std": std[j],
                    "ci_lo": mean[j] - half[j],
                    "ci_hi": mean[j] + half[j],
                    "n_repeats": len(r2),
                    "n_test": int(n_test[j]),
                }
            )
    return pd.DataFrame(rows, columns=list(FEWSHOT_COLUMNS))


# --------------------------------------------------------------------------- outliers


def knn_outlier_scores(x: np.ndarray, k: int) -> np.ndarray:
    """Mean L2 distance of each row to its ``k`` nearest other rows, features standardised: large = isolated."""
    z = np.asarray(x, np.float64)
    std = z.std(axis=0)
    z = (z - z.mean(axis=0)) / np.where(std > 0, std, 1.0)
    k = min(int(k), len(z) - 1)
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z)
    others = idx != np.arange(len(z))[:, None]
    # The row itself is normally first; an exact duplicate may come before it, so drop it by index.
    keep = np.argsort(~others, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, keep, axis=1).mean(axis=1)


def precision_at_top(
    score: np.ndarray, positive: np.ndarray, fraction: float, confidence: float
) -> tuple[float, float, float, int]:
    """(precision, Wilson lo, Wilson hi, m): the positive fraction among the ``ceil(fraction * n)`` top scores."""
    m = max(1, math.ceil(float(fraction) * len(score)))
    hits = float(np.asarray(positive, bool)[np.argsort(-np.asarray(score), kind="stable")[:m]].sum())
    p = hits / m
    z = stats.norm.ppf(0.5 + confidence / 2)
    centre = (p + z**2 / (2 * m)) / (1 + z**2 / m)
    half = z * math.sqrt(p * (1 - p) / m + z**2 / (4 * m**2)) / (1 + z**2 / m)
    return p, max(0.0, centre - half), min(1.0, centre + half), m


def _own_score_note(label: str) -> str:
    """What ranks the objects of an own-score row, for its ``note``."""
    if label == CVAE_SCORE:
        return "CVAE latent anomaly score"
    return f"{label.removesuffix(' flow')}-flow -log p (Fig 3)"


def outlier_rows(inputs: ComparisonInputs, settings: ComparisonSettings) -> list[dict]:
    """Rare-class and pathology precision at the top of each space's kNN outlier score and of each
    method's own score (:attr:`Representation.own_scores`), the same fraction of the same objects (truth only)."""
    if inputs.labels is None:
        return []
    conf = settings.bootstrap[2]
    truth = {"rare": inputs.labels["rare"].to_numpy(bool), "pathology": inputs.labels["pathological"].to_numpy(bool)}
    what = {"rare": "mergers/lenses", "pathology": "HSC pathologies"}
    rows = []
    for rep in inputs.reps:
        # Label -> (score, what ranks by it): the kNN distance in each latent, then the method's own scores.
        rankings = {
            space: (knn_outlier_scores(hsc, settings.outlier_k), f"{settings.outlier_k}-NN distance ({space})")
            for space, (hsc, _) in rep.spaces.items()
        }
        rankings |= {label: (score, _own_score_note(label)) for label, score in rep.own_scores.items()}
        for space, (score, by) in rankings.items():
            for kind, positive in truth.items():
                p, lo, hi, m = precision_at_top(score, positive, settings.outlier_fraction, conf)
                note = f"{what[kind]} among the {m} HSC objects of largest {by}"
                extra = {"ci_lo": lo, "ci_hi": hi, "reference": float(positive.mean()), "n": m, "note": note}
                rows.append(_row(rep, "outliers", f"precision_{kind}", space, p, **extra))
    return rows


# --------------------------------------------------------------------------- retrieval


def counterpart_ranks(query: np.ndarray, gallery: np.ndarray, partner: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Rank (1 = nearest) of ``gallery[partner[i]]`` among every gallery row by L2 distance to ``query[i]``.

    Ties share the mean rank, so a latent that maps everything to one point ranks its
    counterpart in the middle, not first.
    """
    q, g = np.asarray(query, np.float64), np.asarray(gallery, np.float64)
    g2 = (g**2).sum(axis=1)
    ranks = np.empty(len(q))
    for start in range(0, len(q), chunk):
        qb = q[start : start + chunk]
        d = g2[None, :] - 2.0 * qb @ g.T  # |q|^2 is the same for a whole row: left out
        own = d[np.arange(len(qb)), partner[start : start + chunk]][:, None]
        less, equal = (d < own).sum(axis=1), (d == own).sum(axis=1)
        ranks[start : start + len(qb)] = less + (equal + 1) / 2.0
    return ranks


def retrieval_rows(inputs: ComparisonInputs, settings: ComparisonSettings) -> list[dict]:
    """Top-1 and top-k rates of finding each held-out HSC object's Legacy view by physics-latent distance."""
    n_boot, boot_seed, conf = settings.bootstrap
    held, k = inputs.held_out, settings.retrieval_k
    counts = bootstrap_counts(len(held), n_boot, boot_seed).astype(np.float64)
    rows = []
    for rep in inputs.reps:
        hsc, legacy = rep.spaces["physics"]
        ranks = counterpart_ranks(hsc[held], legacy, held)
        n_gallery = len(legacy)
        for metric, top in (("top1", 1), (f"top{k}", k)):
            hits = (ranks <= top).astype(np.float64)
            lo, hi = percentile_ci((counts @ hits / len(held))[:, None], conf)
            note = f"held-out HSC objects whose Legacy view is among the {top} nearest of {n_gallery} (physics)"
            extra = {"ci_lo": lo[0], "ci_hi": hi[0], "reference": top / n_gallery, "n": len(held), "note": note}
            rows.append(_row(rep, "retrieval", metric, "physics", hits.mean(), **extra))
        note = f"median rank of the Legacy view among {n_gallery} (1 = nearest; chance {(n_gallery + 1) / 2:.0f})"
        lo, hi = percentile_ci(resampled_medians(ranks, counts)[:, None], conf)
        extra = {"ci_lo": lo[0], "ci_hi": hi[0], "reference": (n_gallery + 1) / 2, "n": len(held), "note": note}
        rows.append(_row(rep, "retrieval", "median_rank", "physics", float(np.median(ranks)), **extra))
    return rows


# --------------------------------------------------------------------------- cost, result, entry point


def cost_rows(reps: Sequence[Representation]) -> list[dict]:
    """Wall seconds, steps and seconds per step of every representation that has a cost."""
    rows = []
    for rep in reps:
        if rep.cost is None:
            continue
        job = "feature extraction (no training)" if rep.cost.steps == 0 else "the train job"
        steps = np.nan if rep.cost.steps is None else rep.cost.steps
        rows.append(_row(rep, "cost", "seconds", "", rep.cost.seconds, note=f"wall seconds of {job} (benchmark)"))
        rows.append(_row(rep, "cost", "steps", "", steps, note="optimisation steps (metrics.csv)"))
        rows.append(_row(rep, "cost", "seconds_per_step", "", rep.cost.seconds_per_step, note="wall seconds / steps"))
    return rows


@dataclass(frozen=True)
class ComparisonResult:
    """comparison.csv (:data:`TABLE_COLUMNS`) and comparison_fewshot.csv (:data:`FEWSHOT_COLUMNS`)."""

    table: pd.DataFrame
    few_shot: pd.DataFrame


def compute_comparison(inputs: ComparisonInputs, settings: ComparisonSettings) -> ComparisonResult:
    """Every section for every representation (see the module docstring), timed in the log."""
    rows: list[dict] = []
    for name, section in (("probes", probe_rows), ("retrieval", retrieval_rows), ("outliers", outlier_rows)):
        t0 = time.perf_counter()
        rows += section(inputs, settings)
        log.info("comparison %s: %.1f s", name, time.perf_counter() - t0)
    rows += cost_rows(inputs.reps)
    t0 = time.perf_counter()
    few_shot = few_shot_table(inputs, settings)
    log.info("comparison few-shot curves: %.1f s", time.perf_counter() - t0)
    return ComparisonResult(pd.DataFrame(rows, columns=list(TABLE_COLUMNS)), few_shot)


def write_comparison(result: ComparisonResult, table: str | Path, few_shot: str | Path) -> None:
    write_csv(result.table, table)
    write_csv(result.few_shot, few_shot)


def run_comparison(
    runs: Sequence[RunFiles],
    random_init: str | Path,
    images: Mapping[str, str | Path],
    meta: Mapping[str, str | Path],
    truth: str | Path | None,
    settings: ComparisonSettings,
    outputs: tuple[str | Path, str | Path, str | Path],
    random_init_benchmark: str | Path | None = None,
) -> ComparisonResult:
    """Load, compute, write ``outputs`` = (table, few-shot table, figure) and draw the figure."""
    from whatsreal.plots.comparison import plot_comparison

    t0 = time.perf_counter()
    inputs = load_comparison(runs, random_init, images, meta, truth, settings, random_init_benchmark)
    log.info(
        "comparison: %d representations, %d targets, %d scored pairs, %d retrieval queries (%.1f s to load)",
        len(inputs.reps),
        len(inputs.specs),
        len(inputs.folds.scored),
        len(inputs.held_out),
        time.perf_counter() - t0,
    )
    result = compute_comparison(inputs, settings)
    write_comparison(result, outputs[0], outputs[1])
    plot_comparison(result, outputs[2])
    log.info("comparison: %.1f s in all", time.perf_counter() - t0)
    return result
