"""The neighbour-set probe: an anchor's observing conditions read from its *neighbours'* instrument latents.

The paper's ablation (appendix A.5) argues that the instrument encoder learns
observing conditions because the spatial neighbours it is shown share them with
the anchor. This measures that directly, without the anchor's own image: for
each anchor, the instrument latents of its spatial neighbours in the anchor's
survey (``DatasetLayout.neighbours(survey, "spatial")``, rows index pairs; the
anchor itself is never among them) are averaged, and an MLP probe (the Table 5 probe, same
config, same split) predicts the anchor's conditions from that mean: true PSF
FWHM, sky noise and depth on the synthetic sky, the catalogue's instrument
columns on real data.

It is run on the embeddings of the reference run (`main`) and of the ablated
run (`random_neighbours`) with the *same* spatial neighbour sets, so the only
difference is the encoder: does its latent carry the conditions that neighbours
share? Controls:

- shuffled neighbour sets: each anchor gets another anchor's neighbour set (a
  derangement of the rows), which must fail (R^2 ~ 0 or below): a success here
  would mean the probe reads something other than shared local conditions;
- the frozen random-init encoder's features of the same neighbours: what the
  architecture captures without training.

The split is spatial, not the per-pair split of Table 5. Neighbour sets of
nearby anchors overlap, so with a random split a test anchor's features are
means over objects that also enter training anchors' features: the mean of
*any* per-object features then fingerprints the location, and a flexible probe
interpolates the (spatially smooth) conditions from training anchors nearby -
random features reached R^2 ~ 0.2 that way on a planted toy. Here the sky is cut
into blocks (``experiments.neighbour_probe.block_arcmin``) and the blocks into
``folds`` groups; each group is held out once (cross-fitting), and in each fold
every training anchor whose neighbour set shares an object with a held-out
anchor's is dropped, so no object's latent is seen on both sides. Every anchor
is thus scored once, by a probe that never saw its neighbours: with one held-out
fifth instead, the sky-noise drops' intervals were about twice as wide and
Legacy's could not be told from 0 on ``config/sim_science.yaml``. The intervals resample *blocks* (a cluster bootstrap),
since anchors of one block share neighbours and so errors. ``reference -
ablated`` and ``reference - reference_shuffled`` are paired on the same
resampled blocks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from whatsreal.experiments.bootstrap import BootstrapR2, cluster_bootstrap_counts
from whatsreal.experiments.embeddings import SPACES, latent_columns, read_embeddings
from whatsreal.experiments.probes import probe_r2
from whatsreal.experiments.targets import Target, build_targets, instrument_group, meta_paths_by_survey
from whatsreal.io import read_table, write_csv
from whatsreal.layout import DatasetLayout
from whatsreal.surveys import SURVEY_ORDER

__all__ = [
    "NEIGHBOUR_PROBE_COLUMNS",
    "NEIGHBOUR_PROBE_VARIANTS",
    "AnchorFolds",
    "anchor_folds",
    "block_folds",
    "disjoint_training",
    "neighbour_mean",
    "neighbour_probe",
    "read_neighbour_index",
    "run_neighbour_probe",
    "shuffled_neighbour_sets",
    "spatial_blocks",
]

log = logging.getLogger(__name__)

NEIGHBOUR_PROBE_VARIANTS = ("reference", "ablated", "random_init", "reference_shuffled", "ablated_shuffled")
"""Predictors, in table order: the two runs' instrument latents, the random-init features, the shuffled controls."""
NEIGHBOUR_PROBE_COLUMNS = (
    "survey",
    "target",
    "label",
    "group",
    "truth",
    *[f"{v}{end}" for v in NEIGHBOUR_PROBE_VARIANTS for end in ("", "_ci_lo", "_ci_hi")],
    "diff_ref_minus_abl",
    "diff_ref_minus_abl_ci_lo",
    "diff_ref_minus_abl_ci_hi",
    "diff_ref_minus_shuffled",
    "diff_ref_minus_shuffled_ci_lo",
    "diff_ref_minus_shuffled_ci_hi",
    "n_train",
    "n_test",
    "n_test_blocks",
    "n_folds",
)
"""Columns of ``tables/neighbour_probe.csv``: one row per (survey, target). ``n_test``: anchors scored (each
once, out of fold), in ``n_test_blocks`` blocks; ``n_train``: training anchors of the smallest fold."""
SHUFFLE_STREAM = 7
"""Keeps the shuffle's random stream apart from the split's and the bootstrap's for the same seed."""
BLOCK_STREAM = 8
"""The same for the assignment of blocks to folds."""


def read_neighbour_index(path: str | Path, n_pairs: int) -> np.ndarray:
    """The ``index`` (N, k) array of a neighbours npz, checked against the number of pairs."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    with np.load(path, allow_pickle=False) as f:
        if "index" not in f.files:
            raise ValueError(f"{path}: missing array 'index'")
        index = np.asarray(f["index"], dtype=np.int64)
    if index.ndim != 2 or len(index) != n_pairs:
        raise ValueError(f"{path}: index has shape {index.shape}, expected ({n_pairs}, k)")
    if index.size and (index.max() >= n_pairs or index.min() < -1):
        raise ValueError(f"{path}: index values must be -1 (padding) or pair rows 0..{n_pairs - 1}")
    return index


def neighbour_mean(latents: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(N, d) mean of ``latents[j]`` over each row's neighbours j; NaN rows for anchors with none.

    Padding (-1) and the anchor itself (which a shuffled set may contain) are
    left out, so an anchor's own image never enters its features.
    """
    latents = np.asarray(latents, dtype=np.float64)
    index = np.asarray(index, dtype=np.int64)
    valid = (index >= 0) & (index != np.arange(len(index))[:, None])
    safe = np.where(valid, index, 0)
    total = (latents[safe] * valid[..., None]).sum(axis=1)
    count = valid.sum(axis=1)
    out = total / np.maximum(count, 1)[:, None]
    out[count == 0] = np.nan
    return out


def spatial_blocks(ra: np.ndarray, dec: np.ndarray, block_arcmin: float) -> np.ndarray:
    """Block id per object: squares of ``block_arcmin`` on the sky from the patch's corner (RA scaled by cos Dec)."""
    ra, dec = np.asarray(ra, np.float64), np.asarray(dec, np.float64)
    if ra.size == 0:
        return np.zeros(0, dtype=np.int64)
    dra = (ra - np.median(ra) + 180.0) % 360.0 - 180.0  # unwrapped: a patch across RA = 0 stays whole
    x = dra * np.cos(np.radians(dec))
    x = (x - x.min()) * 60.0 / float(block_arcmin)
    y = (dec - dec.min()) * 60.0 / float(block_arcmin)
    keys = np.stack([np.floor(x), np.floor(y)], axis=1).astype(np.int64)
    return np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1)


def block_folds(blocks: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold id (0..n_folds-1) per anchor: whole blocks, in a seeded random order, each to the fold with fewest anchors.

    Balancing by anchors, not blocks, keeps the held-out sets of equal size when
    blocks at the patch's edge are partly empty.
    """
    blocks = np.asarray(blocks)
    ids, inverse, counts = np.unique(blocks, return_inverse=True, return_counts=True)
    if len(ids) < n_folds or n_folds < 2:
        raise ValueError(
            f"the neighbour-set probe needs at least experiments.neighbour_probe.folds = {n_folds} (>= 2) sky blocks, "
            f"got {len(ids)} (lower experiments.neighbour_probe.block_arcmin or folds)"
        )
    order = np.random.default_rng([int(seed), BLOCK_STREAM]).permutation(len(ids))
    fold_of_block = np.empty(len(ids), dtype=np.int64)
    size = np.zeros(n_folds, dtype=np.int64)
    for b in order:
        f = int(np.argmin(size))
        fold_of_block[b] = f
        size[f] += counts[b]
    return fold_of_block[inverse.reshape(-1)]


def disjoint_training(index: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Training anchors: not held out, and no neighbour in common with any held-out anchor's set.

    So no object's latent enters both a training feature and a test feature, and
    a probe cannot recognise a test anchor's place by the objects it averages.
    """
    index = np.asarray(index, np.int64)
    used = np.zeros(len(index), dtype=bool)
    held = index[np.asarray(test, bool)]
    used[held[held >= 0]] = True
    shares = (used[np.where(index >= 0, index, 0)] & (index >= 0)).any(axis=1)
    return ~np.asarray(test, bool) & ~shares


def shuffled_neighbour_sets(index: np.ndarray, seed: int) -> np.ndarray:
    """Each anchor gets another anchor's neighbour set (a seeded derangement of the rows).

    A cyclic shift along a random permutation moves every row, so no anchor keeps
    its own set; the sets themselves (sizes, separations) are unchanged.
    """
    n = len(index)
    if n < 2:
        return index.copy()
    perm = np.random.default_rng([int(seed), SHUFFLE_STREAM]).permutation(n)
    out = np.empty_like(index)
    out[perm] = index[np.roll(perm, -1)]
    return out


def neighbour_probe(
    features: dict[str, np.ndarray],
    index: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    probes_cfg: dict,
    boot: BootstrapR2,
    shuffle_seed: int,
    keys: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Out-of-fold R^2 per target column of ``y`` from the neighbour-mean of each named per-pair latent in ``features``.

    ``features['reference']`` and ``features['ablated']`` (and optionally
    ``'random_init'``) are (N, d) latents of every pair in the anchor's survey.
    ``folds`` (N,) gives each anchor's fold (-1: never scored); for each fold a
    probe learns on the anchors of the other folds that share no neighbour with
    its held-out ones (:func:`disjoint_training`) and predicts the held-out ones.
    The two runs are also probed on shuffled neighbour sets
    (``reference_shuffled``, ``ablated_shuffled``). Predictions of the scored
    anchors (``folds >= 0``, in row order: ``boot``'s rows) are recorded in
    ``boot`` under the variant names; returns the point R^2 per variant.
    """
    folds = np.asarray(folds, np.int64)
    scored = folds >= 0
    shuffled = shuffled_neighbour_sets(index, shuffle_seed)
    runs = [name for name in ("reference", "ablated") if name in features]
    plan = [(name, features[name], index) for name in features]
    plan += [(f"{name}_shuffled", features[name], shuffled) for name in runs]
    out = {}
    for variant, latents, sets in plan:
        x = neighbour_mean(latents, sets)
        pred = np.full(y.shape, np.nan)
        for f in np.unique(folds[scored]):
            test = folds == f
            train = disjoint_training(sets, test) & scored
            _, pred[test] = probe_r2(x, y, test, probes_cfg, keys=keys, train=train)
        out[variant] = boot.add(variant, y[scored], pred[scored])
    return out


def _survey_latents(path: str | Path, survey: str, n: int, space: str) -> np.ndarray:
    """(N, d) latents of ``space`` of the pairs' ``survey`` views, in pair order."""
    emb = read_embeddings(path, spaces=(space,))
    cols = latent_columns(emb, SPACES[space], path)
    sub = emb[emb["survey"] == survey].set_index("pair")
    missing = np.setdiff1d(np.arange(n), sub.index.to_numpy())
    if missing.size:
        raise ValueError(f"{path}: pair(s) {missing[:5].tolist()} have no '{survey}' row")
    return sub.loc[np.arange(n), cols].to_numpy(np.float64)


def _survey_targets(specs: Sequence[Target], survey: str) -> list[int]:
    """Columns of a survey's instrument targets: the truth ones when there are any, else the catalogue's."""
    group = [j for j, t in enumerate(specs) if t.group == instrument_group(survey)]
    truth = [j for j in group if specs[j].truth]
    return truth or group


@dataclass(frozen=True)
class AnchorFolds:
    """One survey's anchors: their sky blocks and each anchor's fold (whole blocks per fold)."""

    blocks: np.ndarray
    folds: np.ndarray

    def smallest_training(self, index: np.ndarray, rows: np.ndarray) -> int:
        """Training anchors among ``rows`` in the fold that keeps fewest (held out + those sharing a neighbour)."""
        return min(int((disjoint_training(index, self.folds == f) & rows).sum()) for f in np.unique(self.folds))


def anchor_folds(meta_path: str | Path, block_arcmin: float, n_folds: int, seed: int) -> AnchorFolds:
    """Sky blocks of ``block_arcmin`` (positions from the survey's meta file) dealt into ``n_folds`` folds."""
    sky = read_table(meta_path, ["ra", "dec"])
    blocks = spatial_blocks(sky["ra"].to_numpy(), sky["dec"].to_numpy(), block_arcmin)
    return AnchorFolds(blocks, block_folds(blocks, n_folds, seed))


def _survey_features(
    reference: str | Path, ablated: str | Path, random_init: str | Path | None, survey: str, n: int
) -> dict[str, np.ndarray]:
    """Per-pair latents of one survey: both runs' instrument latents and the random-init features."""
    feats = {
        "reference": _survey_latents(reference, survey, n, "instrument"),
        "ablated": _survey_latents(ablated, survey, n, "instrument"),
    }
    if random_init is not None:
        feats["random_init"] = _survey_latents(random_init, survey, n, "physics")
    return feats


def _survey_rows(
    survey: str,
    specs: Sequence[Target],
    cols: Sequence[int],
    y: np.ndarray,
    r2: dict[str, np.ndarray],
    boot: BootstrapR2,
    index: np.ndarray,
    split: AnchorFolds,
) -> list[dict]:
    """``neighbour_probe.csv`` rows of one survey's targets (``cols`` of ``specs``; ``y`` their values)."""
    has_set = (index >= 0).any(axis=1)
    d_abl = boot.diff("reference", "ablated")
    d_shuf = boot.diff("reference", "reference_shuffled")
    rows = []
    for k, j in enumerate(cols):
        t = specs[j]
        row = {"survey": survey, "target": t.name, "label": t.label, "group": t.group, "truth": t.truth}
        for variant in NEIGHBOUR_PROBE_VARIANTS:
            if variant in r2:
                lo, hi = boot.ci(variant)
                row |= {variant: r2[variant][k], f"{variant}_ci_lo": lo[k], f"{variant}_ci_hi": hi[k]}
        labelled = np.isfinite(y[:, k]) & has_set
        row |= {
            "diff_ref_minus_abl": d_abl[0][k],
            "diff_ref_minus_abl_ci_lo": d_abl[1][k],
            "diff_ref_minus_abl_ci_hi": d_abl[2][k],
            "diff_ref_minus_shuffled": d_shuf[0][k],
            "diff_ref_minus_shuffled_ci_lo": d_shuf[1][k],
            "diff_ref_minus_shuffled_ci_hi": d_shuf[2][k],
            "n_train": split.smallest_training(index, labelled),
            "n_test": int(labelled.sum()),
            "n_test_blocks": len(np.unique(split.blocks[labelled])),
            "n_folds": len(np.unique(split.folds)),
        }
        rows.append(row)
        log.info(
            "neighbour probe %s: R^2 reference %.3f, ablated %.3f, shuffled %.3f",
            t.name,
            row["reference"],
            row["ablated"],
            row["reference_shuffled"],
        )
    return rows


def run_neighbour_probe(
    probes_cfg: dict,
    neighbour_probe_cfg: dict,
    bands: Sequence[str],
    bootstrap: tuple[int, int, float],
    reference: str | Path,
    ablated: str | Path,
    random_init: str | Path | None,
    neighbours: Mapping[str, str | Path],
    meta: Mapping[str, str | Path] | DatasetLayout,
    truth: str | Path | None,
    table: str | Path,
) -> pd.DataFrame:
    """Write ``neighbour_probe.csv``: each survey's conditions from its neighbours' latents, with block-bootstrap CIs.

    ``probes_cfg``: ``experiments.probes`` (the probe and its seed); ``neighbour_probe_cfg``:
    ``experiments.neighbour_probe`` (block size, number of folds); ``bands``:
    ``preprocess.bands``; ``bootstrap``: ``(n_resamples, seed, confidence)``.
    ``reference``/``ablated`` are the two runs' embeddings.parquet, ``random_init``
    the frozen random encoder's features (its physics tokens: it has no
    instrument head), ``neighbours`` the spatial neighbour files per survey,
    ``meta`` each survey's meta file (``{survey: path}``) or the dataset's layout.
    """
    n_boot, boot_seed, confidence = bootstrap
    seed = int(probes_cfg["seed"])
    block_arcmin = float(neighbour_probe_cfg["block_arcmin"])
    n_folds = int(neighbour_probe_cfg["folds"])
    t0 = time.perf_counter()
    targets, specs = build_targets(meta, truth, bands)
    n = len(targets)
    positions = meta_paths_by_survey(meta)
    rows = []
    for survey in SURVEY_ORDER:
        cols = _survey_targets(specs, survey)
        if not cols:
            continue
        index = read_neighbour_index(neighbours[survey], n)
        split = anchor_folds(positions[survey], block_arcmin, n_folds, seed)
        log.info(
            "neighbour probe %s: %d anchors in %d blocks of %.1f', %d folds; the smallest fold trains on %d anchors "
            "that share no neighbour with its held-out ones",
            survey,
            len(index),
            len(np.unique(split.blocks)),
            block_arcmin,
            n_folds,
            split.smallest_training(index, np.ones(len(index), dtype=bool)),
        )
        feats = _survey_features(reference, ablated, random_init, survey, n)
        y = targets[[specs[j].name for j in cols]].to_numpy(np.float64)
        boot = BootstrapR2(cluster_bootstrap_counts(split.blocks, n_boot, boot_seed), confidence)
        r2 = neighbour_probe(feats, index, y, split.folds, probes_cfg, boot, seed, keys=cols)
        rows += _survey_rows(survey, specs, cols, y, r2, boot, index, split)
    result = pd.DataFrame(rows, columns=list(NEIGHBOUR_PROBE_COLUMNS))
    write_csv(result, table)
    log.info("neighbour probe: %d targets in %.1f s", len(result), time.perf_counter() - t0)
    return result
