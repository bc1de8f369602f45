"""Per-survey probes and retrieval across every two surveys, on every galaxy each survey saw.

A run trained with ``train.data: groups`` has seen every registry survey as an anchor, so its
two latents should split the truth the same way in each of them: the physics latent of a DES
image should know the galaxy's redshift, its instrument latent DES's seeing and sky noise. The
pair experiments (Table 5, Fig 5) only score HSC x Legacy; this module scores each survey on
its own galaxies and each pair of surveys on the galaxies both saw.

A flow-matching run trained on the pairs gets the same probes on the synthetic sky (the plan:
whatsreal.plan.survey_probed): Table 5's MLP scores a tenth of the pairs, so its ablation
intervals are about 0.2 wide; the same question asked of all pairs with a linear probe has
intervals a few hundredths wide, and the spatial-neighbour ablation (whatsreal.experiments.
survey_ablation) is read from these predictions.

Embeddings: every image a survey saw in the run's training data (the pairs, or ``nway/``'s rows
with ``seen``), but no row that training leaves out for a blank cutout in any survey (the rule of
whatsreal.data.usable, as the gain and the directions apply it), is encoded by the run's two
encoders on its own pixels, as the pair export does (physics tokens flattened, instrument tokens
mean-pooled; whatsreal.model.embed).

Probes (``survey_probes.csv``): for each survey, target and latent, out-of-fold ridge
predictions (``experiments.survey_probes.n_folds`` folds over the survey's galaxies, features
standardised inside each fold, the ridge penalty chosen by leave-one-out among ``alphas``,
predictions clipped to the fold's training label range).
A linear probe on all galaxies, not Table 5's MLP on a held-out split: with a third survey's
galaxies split over three anchors, a 10 % test split leaves too few for an interval, and a
linear read-out is the stricter test of what a latent makes explicit. The encoders never saw a
label, so scoring galaxies they were trained on is no leak. Every R^2 and the difference
"expected latent minus the other" (physics latent for physics targets, instrument latent for
the survey's instrument targets) has a paired percentile-bootstrap interval over galaxies
(``experiments.bootstrap``); the verdict is *yes* when that difference's interval excludes 0.
The targets are the truth's (synthetic sky only): the physical parameters, the band-averaged
magnitude and colours, and the survey's own PSF FWHM, sky noise and PSF depth, band-averaged
over the model's bands (``preprocess.bands``), as Table 5's truth rows.

Retrieval (``survey_retrieval.csv``): for every ordered pair of surveys (a, b), the held-out
galaxies (``split == val``) both saw query with their a-image's latent among the b-images of
every galaxy both saw (L2 distance); the rate at which the query's own b-view is the nearest
(top-1) or among the ``experiments.retrieval.k`` nearest (top-k), the median rank, and what a
random ranking gives. The physics latent should find the counterpart far above chance, the
instrument latent should not.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from whatsreal.data.usable import seen_rows, usable_pairs
from whatsreal.experiments.bootstrap import BootstrapR2, bootstrap_config
from whatsreal.experiments.targets import TRUTH_INSTRUMENT, TRUTH_MAGNITUDE, TRUTH_PHYSICS
from whatsreal.io import read_table, write_csv, write_npz
from whatsreal.layout import DatasetLayout
from whatsreal.model.checkpoint import load_trained_model
from whatsreal.model.embed import encode_spaces
from whatsreal.plots.surveys import plot_survey_probes
from whatsreal.truth import meta_truth_ids

__all__ = [
    "PROBE_COLUMNS",
    "RETRIEVAL_COLUMNS",
    "SurveyLatents",
    "counterpart_ranks",
    "encode_surveys",
    "oof_ridge",
    "probe_table",
    "retrieval_table",
    "ridge_probe",
    "run_survey_probes",
    "survey_targets",
]

log = logging.getLogger(__name__)

PROBE_COLUMNS = (
    "survey",
    "group",
    "target",
    "n",
    "r2_physics",
    "r2_physics_ci_lo",
    "r2_physics_ci_hi",
    "r2_instrument",
    "r2_instrument_ci_lo",
    "r2_instrument_ci_hi",
    "expected",
    "diff",
    "diff_ci_lo",
    "diff_ci_hi",
    "disentangled",
)
RETRIEVAL_COLUMNS = ("query", "pool", "space", "n_queries", "n_pool", "top1", "topk", "k", "median_rank", "chance_topk")


@dataclass(frozen=True)
class SurveyLatents:
    """One survey's encoded images: the data rows it saw and their two latents, row-aligned."""

    rows: np.ndarray
    physics: np.ndarray
    instrument: np.ndarray
    truth_id: np.ndarray
    split: np.ndarray


def _kept_meta(layout: DatasetLayout, survey: str, keep: np.ndarray) -> pd.DataFrame:
    """The survey's metadata rows where ``keep``; ``truth_id`` -1 where there is none (real data)."""
    meta = read_table(layout.meta(survey), ["pair", "split"])
    meta = meta[keep]
    if "truth_id" not in meta.columns:  # real data: nothing to join the truth on
        return meta.assign(truth_id=-1)
    return meta.assign(truth_id=meta_truth_ids(meta))


@dataclass(frozen=True)
class _Rows:
    """The ``rows`` of a memory-mapped image array, read a slice at a time (never all at once)."""

    images: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, where: slice) -> np.ndarray:
        return np.asarray(self.images[self.rows[where]])


@torch.no_grad()
def encode_surveys(
    model: torch.nn.Module, layout: DatasetLayout, surveys: Sequence[str], batch_size: int, device: torch.device
) -> dict[str, SurveyLatents]:
    """Every image each survey saw through both encoders (physics flattened, instrument pooled)."""
    keep = seen_rows(layout, tuple(surveys)) & usable_pairs(layout, tuple(surveys))[:, None]
    out = {}
    for i, survey in enumerate(surveys):
        meta = _kept_meta(layout, survey, keep[:, i])
        rows = meta["pair"].to_numpy(np.int64)
        images = _Rows(np.load(layout.images(survey), mmap_mode="r"), rows)
        tokens = encode_spaces(model, images, batch_size, device, desc=f"embed {survey}")
        out[survey] = SurveyLatents(
            rows=rows,
            physics=tokens["physics"].reshape(len(rows), -1),
            instrument=tokens["instrument"].mean(axis=1),
            truth_id=meta["truth_id"].to_numpy(np.int64),
            split=meta["split"].astype(str).to_numpy(),
        )
        log.info("%s: %d galaxies encoded", survey, len(rows))
    return out


def survey_targets(truth: pd.DataFrame, truth_id: np.ndarray, survey: str, bands: Sequence[str]) -> pd.DataFrame:
    """(n, targets) truth values of the galaxies ``truth_id`` as ``survey`` saw them: the physical
    parameters, band-averaged magnitude and adjacent colours (group ``physics``), and the survey's
    PSF FWHM, sky noise and PSF depth averaged over ``bands`` (group ``instrument``).

    Column names are ``physics:<name>`` / ``instrument:<name>``; an error names a missing column."""
    table = truth.set_index("truth_id")
    missing_ids = np.setdiff1d(truth_id, table.index.to_numpy())
    if missing_ids.size:
        raise ValueError(f"truth.parquet: truth_id(s) {missing_ids[:5].tolist()} of {survey}'s rows are missing")
    rows = table.loc[truth_id]

    def column(name: str) -> np.ndarray:
        if name not in rows.columns:
            raise KeyError(f"truth.parquet: missing column '{name}' (needed for {survey}'s probes)")
        return rows[name].to_numpy(np.float64)

    out: dict[str, np.ndarray] = {f"physics:{col}": column(col) for col, _ in TRUTH_PHYSICS}
    mags = {b: column(TRUTH_MAGNITUDE.format(b=b)) for b in bands}
    out["physics:mag"] = np.mean(list(mags.values()), axis=0)
    for a, b in itertools.pairwise(bands):
        out[f"physics:{a}-{b}"] = mags[a] - mags[b]
    for quantity, _ in TRUTH_INSTRUMENT:
        out[f"instrument:{quantity}"] = np.mean([column(f"{survey}_{quantity}_{b}") for b in bands], axis=0)
    return pd.DataFrame(out)


def ridge_probe(alphas: Sequence[float]) -> Pipeline:
    """The probe tables' linear read-out, unfitted: features standardised, then ridge with the
    penalty chosen among ``alphas`` by leave-one-out. One definition, so every table that says
    it reads a latent "as the probe tables do" fits this same model."""
    return make_pipeline(StandardScaler(), RidgeCV(alphas=list(alphas)))


def oof_ridge(x: np.ndarray, y: np.ndarray, n_folds: int, alphas: Sequence[float], seed: int) -> np.ndarray:
    """(n,) out-of-fold ridge predictions of ``y``; rows with a non-finite label get NaN and train nothing.

    Each fold's predictions are clipped to the range of its training labels: an image far outside
    the training distribution (a saturated star across the galaxy puts its latent 20+ sigma out)
    would otherwise get a prediction many label ranges away, and that one galaxy would decide
    the R^2 and its interval."""
    pred = np.full(len(y), np.nan)
    ok = np.flatnonzero(np.isfinite(y) & np.isfinite(x).all(axis=1))
    if ok.size < 2 * n_folds:
        return pred
    for train, test in KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(ok):
        model = ridge_probe(alphas).fit(x[ok[train]], y[ok[train]])
        pred[ok[test]] = np.clip(model.predict(x[ok[test]]), y[ok[train]].min(), y[ok[train]].max())
    return pred


def probe_table(
    latents: dict[str, SurveyLatents],
    truth: pd.DataFrame,
    bands: Sequence[str],
    probe_cfg: dict,
    bootstrap: tuple[int, int, float],
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """``survey_probes.csv`` (one row per survey and target, :data:`PROBE_COLUMNS`) and the
    out-of-fold predictions behind it, which the per-survey ablation pairs across runs:
    ``<survey>_rows``, ``_targets``, ``_y``, ``_physics``, ``_instrument`` (survey names have
    no underscore)."""
    n_resamples, seed, confidence = bootstrap
    rows = []
    arrays: dict[str, np.ndarray] = {}
    for survey, lat in latents.items():
        targets = survey_targets(truth, lat.truth_id, survey, bands)
        boot = BootstrapR2.for_rows(len(lat.rows), n_resamples, seed, confidence)
        arrays |= {f"{survey}_rows": lat.rows, f"{survey}_targets": np.array(targets.columns, dtype=str)}
        arrays[f"{survey}_y"] = targets.to_numpy(np.float64)
        arrays[f"{survey}_physics"] = np.full(targets.shape, np.nan)
        arrays[f"{survey}_instrument"] = np.full(targets.shape, np.nan)
        for name in targets.columns:
            group, target = name.split(":", 1)
            y = targets[name].to_numpy()
            preds = {
                space: oof_ridge(x, y, probe_cfg["n_folds"], probe_cfg["alphas"], probe_cfg["seed"])
                for space, x in (("physics", lat.physics), ("instrument", lat.instrument))
            }
            for space, pred in preds.items():
                boot.add(f"{name}/{space}", y, pred)
                arrays[f"{survey}_{space}"][:, list(targets.columns).index(name)] = pred
            other = "instrument" if group == "physics" else "physics"
            d, lo, hi = boot.diff(f"{name}/{group}", f"{name}/{other}")
            row = {"survey": survey, "group": group, "target": target, "n": int(np.isfinite(y).sum())}
            for space in preds:
                c_lo, c_hi = boot.ci(f"{name}/{space}")
                row |= {
                    f"r2_{space}": float(boot.point[f"{name}/{space}"][0]),
                    f"r2_{space}_ci_lo": float(c_lo[0]),
                    f"r2_{space}_ci_hi": float(c_hi[0]),
                }
            row |= {
                "expected": group,
                "diff": float(d[0]),
                "diff_ci_lo": float(lo[0]),
                "diff_ci_hi": float(hi[0]),
                "disentangled": bool(lo[0] > 0),
            }
            rows.append(row)
            log.info(
                "%s %s: R^2 physics %.3f, instrument %.3f; %s latent ahead by %.3f [%.3f, %.3f]",
                *(survey, target, row["r2_physics"], row["r2_instrument"], group, d[0], lo[0], hi[0]),
            )
    return pd.DataFrame(rows, columns=list(PROBE_COLUMNS)), arrays


def counterpart_ranks(queries: np.ndarray, pool: np.ndarray, own: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(q,) 1-based rank of each query's own pool row (``own``) among all pool rows by L2 distance;
    ties count against the query (the counterpart ranks after every row at the same distance).

    ``chunk`` queries at a time against the whole pool, so memory stays chunk x pool at any size."""
    pool = np.asarray(pool, np.float64)
    ranks = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        q = np.asarray(queries[start : start + chunk], np.float64)
        d = _sq_dist(q, pool)
        mine = d[np.arange(len(q)), own[start : start + chunk]]
        ranks[start : start + len(q)] = (d <= mine[:, None]).sum(axis=1)
    return ranks


def _sq_dist(q: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Squared L2 distances (q, pool) without the (q, pool, d) difference tensor."""
    return np.maximum((q**2).sum(axis=1)[:, None] + (pool**2).sum(axis=1)[None, :] - 2.0 * q @ pool.T, 0.0)


def retrieval_table(latents: dict[str, SurveyLatents], k: int) -> pd.DataFrame:
    """``survey_retrieval.csv``: one row per ordered survey pair and latent space (:data:`RETRIEVAL_COLUMNS`)."""
    rows = []
    for a, b in itertools.permutations(latents, 2):
        la, lb = latents[a], latents[b]
        both = np.intersect1d(la.rows, lb.rows)
        if both.size < 2:
            log.warning("%s -> %s: %d galaxies seen by both, no retrieval", a, b, both.size)
            continue
        pos_a = pd.Index(la.rows).get_indexer(both)
        pos_b = pd.Index(lb.rows).get_indexer(both)
        held = la.split[pos_a] == "val"
        if not held.any():
            log.warning("%s -> %s: no held-out galaxy seen by both, no retrieval", a, b)
            continue
        own = np.flatnonzero(held)  # each query's position in the pool (the pool is `both` in order)
        for space in ("physics", "instrument"):
            xa, xb = getattr(la, space), getattr(lb, space)
            ranks = counterpart_ranks(xa[pos_a[held]], xb[pos_b], own)
            n_pool = int(both.size)
            rows.append(
                {
                    "query": a,
                    "pool": b,
                    "space": space,
                    "n_queries": int(held.sum()),
                    "n_pool": n_pool,
                    "top1": float(np.mean(ranks == 1)),
                    "topk": float(np.mean(ranks <= k)),
                    "k": k,
                    "median_rank": float(np.median(ranks)),
                    "chance_topk": min(k, n_pool) / n_pool,
                }
            )
            log.info(
                "retrieval %s -> %s (%s latent): top-1 %.3f, top-%d %.3f (chance %.3f), median rank %.0f of %d",
                *(a, b, space, rows[-1]["top1"], k, rows[-1]["topk"], rows[-1]["chance_topk"]),
                *(rows[-1]["median_rank"], n_pool),
            )
    return pd.DataFrame(rows, columns=list(RETRIEVAL_COLUMNS))


def run_survey_probes(
    config: dict,
    model: str | Path,
    data: DatasetLayout | str | Path,
    surveys: Sequence[str],
    truth: str | Path | None,
    probes_out: str | Path,
    retrieval_out: str | Path,
    figure: str | Path,
    device: torch.device | str = "cpu",
    predictions_out: str | Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write ``survey_probes.csv``, ``survey_retrieval.csv`` and their figure for one run.

    ``config``: the run's (its overlay applied; the checkpoint is checked against it);
    ``data``: the data the run trained on (the pairs' dataset, or ``DatasetLayout.nway``), or
    its root; ``surveys``: the run's training surveys, in the model's order; ``truth``:
    truth.parquet, None on real data
    (no truth to probe: the probes table has its header only, retrieval is scored).
    ``predictions_out``: where the out-of-fold predictions go (``survey_probe_predictions.npz``:
    per survey ``<survey>_rows``, ``_targets``, ``_y`` and one (n, targets) array per latent)."""
    layout = DatasetLayout.of(data)
    net, _ = load_trained_model(model, config)
    device = torch.device(device)
    net.eval().to(device)
    latents = encode_surveys(net, layout, surveys, int(config["embed"]["batch_size"]), device)
    arrays: dict[str, np.ndarray] = {}
    if truth is None:
        log.info("no truth table (real data): the per-survey probes need the synthetic sky's truth")
        probes = pd.DataFrame(columns=list(PROBE_COLUMNS))
    else:
        probes, arrays = probe_table(
            latents,
            read_table(truth, ["truth_id"]),
            list(config["preprocess"]["bands"]),
            config["experiments"]["survey_probes"],
            bootstrap_config(config),
        )
    retrieval = retrieval_table(latents, int(config["experiments"]["retrieval"]["k"]))
    write_csv(probes, probes_out)
    write_csv(retrieval, retrieval_out)
    if predictions_out is not None:
        write_npz(predictions_out, **arrays)
    plot_survey_probes(probes, retrieval, figure)
    return probes, retrieval
