"""The neighbour-set probe: a condition shared by spatial neighbours is recovered, shuffled sets fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from whatsreal.data.neighbours import spatial_neighbours
from whatsreal.experiments.bootstrap import BootstrapR2, bootstrap_config, cluster_bootstrap_counts
from whatsreal.experiments.neighbour_probe import (
    NEIGHBOUR_PROBE_COLUMNS,
    block_folds,
    disjoint_training,
    neighbour_mean,
    neighbour_probe,
    run_neighbour_probe,
    shuffled_neighbour_sets,
    spatial_blocks,
)
from whatsreal.io import write_npz
from whatsreal.surveys import SURVEY_ORDER

from .conftest import tiny_config
from .test_exp_probes import FAST, write_embeddings, write_fake_dataset


def _pcfg() -> dict:
    return tiny_config(experiments={"probes": FAST})["experiments"]["probes"]


def _cells(n: int, size: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Anchors in cells of ``size`` (a cell = a patch of sky with one condition); k neighbours from the same cell."""
    cell = np.arange(n) // size
    index = np.full((n, k), -1, dtype=np.int64)
    for i in range(n):
        mates = np.flatnonzero((cell == cell[i]) & (np.arange(n) != i))
        index[i] = rng.choice(mates, size=k, replace=False)
    return cell, index


def _planted_latents(condition: np.ndarray, rng: np.random.Generator, d: int = 6) -> np.ndarray:
    """Latents = a nonlinear function of the object's condition + per-object noise (plus pure-noise dims)."""
    n = len(condition)
    signal = np.c_[condition, np.sin(2 * condition)] + 0.3 * rng.normal(size=(n, 2))
    return np.c_[signal, rng.normal(size=(n, d - 2))]


def test_neighbour_mean_leaves_out_padding_and_the_anchor_itself():
    latents = np.array([[1.0], [2.0], [4.0], [8.0]])
    index = np.array([[1, 2, -1], [1, 0, -1], [-1, -1, -1], [0, 3, 3]])  # row 1 and 3 list themselves
    out = neighbour_mean(latents, index)
    np.testing.assert_allclose(out[[0, 1, 3], 0], [3.0, 1.0, 1.0])
    assert np.isnan(out[2, 0])  # no neighbour: no feature, never the anchor's own latent


def test_shuffled_sets_are_a_derangement_of_the_same_sets():
    index = np.arange(40).reshape(20, 2)
    shuffled = shuffled_neighbour_sets(index, 0)
    assert not (shuffled == index).all(axis=1).any()  # every anchor gets another anchor's set
    assert sorted(map(tuple, shuffled)) == sorted(map(tuple, index))
    np.testing.assert_array_equal(shuffled, shuffled_neighbour_sets(index, 0))


def test_blocks_are_dealt_whole_into_balanced_folds_and_training_shares_no_neighbour_with_a_fold():
    rng = np.random.default_rng(3)
    ra, dec = rng.uniform(10, 11, 2000), rng.uniform(-0.5, 0.5, 2000)
    blocks = spatial_blocks(ra, dec, 6.0)
    assert len(np.unique(blocks)) == 100  # a 60' x 60' patch in 6' squares
    folds = block_folds(blocks, 5, 0)
    assert sorted(np.unique(folds)) == [0, 1, 2, 3, 4]
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= np.bincount(blocks).max()  # balanced to within one block
    assert all(len(np.unique(folds[blocks == b])) == 1 for b in np.unique(blocks))  # whole blocks
    np.testing.assert_array_equal(folds, block_folds(blocks, 5, 0))
    assert not np.array_equal(folds, block_folds(blocks, 5, 1))
    index, _ = spatial_neighbours(ra, dec, 5, 3.0)
    for f in range(5):
        test = folds == f
        train = disjoint_training(index, test)
        assert not (train & test).any() and train.sum() > 0.5 * (~test).sum()
        used_by_test = set(index[test][index[test] >= 0].tolist())
        assert not any(set(row[row >= 0].tolist()) & used_by_test for row in index[train])
    with pytest.raises(ValueError, match=r"at least experiments\.neighbour_probe\.folds = 5"):
        block_folds(np.arange(10) // 3, 5, 0)


def test_planted_shared_condition_is_recovered_from_neighbours_and_fails_when_shuffled():
    rng = np.random.default_rng(0)
    n = 800
    cell, index = _cells(n, 10, 5, rng)
    condition = rng.uniform(1.0, 2.0, cell.max() + 1)[cell]
    own = rng.normal(0, condition.std(), n)  # a part of the target only the anchor's own image could know
    y = np.c_[condition, condition + own]
    folds = block_folds(cell, 4, 0)
    features = {
        "reference": _planted_latents(condition + own, rng),
        "ablated": rng.normal(size=(n, 6)),
        "random_init": rng.normal(size=(n, 16)),  # per-object noise: must not fingerprint the place
    }
    boot = BootstrapR2(cluster_bootstrap_counts(cell, 500, 0), 0.95)
    r2 = neighbour_probe(features, index, y, folds, _pcfg(), boot, shuffle_seed=0)
    assert r2["reference"][0] > 0.7, r2
    # The anchor's own part is out of reach: about half the variance, never the ~1 a leak would give.
    assert 0.2 < r2["reference"][1] < 0.65, r2
    for variant in ("reference_shuffled", "ablated", "ablated_shuffled", "random_init"):
        assert r2[variant][0] < 0.1, (variant, r2)
    lo, _ = boot.ci("reference")
    assert lo[0] > 0.5
    _, d_lo, _ = boot.diff("reference", "reference_shuffled")
    assert d_lo[0] > 0.4


def _plant(paths: dict, n: int, rng: np.random.Generator) -> tuple[dict, dict[str, np.ndarray]]:
    """Truth and spatial neighbour files in which HSC PSF FWHM and Legacy sky noise vary smoothly on the sky."""
    truth = pd.read_parquet(paths["truth"])
    rows = truth.index[truth["truth_id"].isin(1000 + np.arange(n))]
    order = truth.loc[rows, "truth_id"].to_numpy() - 1000
    meta = pd.read_parquet(paths["meta_hsc"])
    ra, dec = meta["ra"].to_numpy(), meta["dec"].to_numpy()
    conditions, neighbours = {}, {}
    for k, (survey, quantity) in enumerate((("hsc", "psf_fwhm"), ("legacysurvey", "sky_sigma"))):
        c = 1.0 + 0.3 * np.sin(2 * np.pi * (ra / 0.45 + k)) + 0.3 * np.cos(2 * np.pi * dec / 0.55)
        for b in "grizy":
            truth.loc[rows, f"{survey}_{quantity}_{b}"] = c[order]
        conditions[survey] = c
        index, sep = spatial_neighbours(ra, dec, 5, 3.0)
        neighbours[survey] = paths["meta_hsc"].parent / f"neighbours_{survey}_spatial.npz"
        write_npz(neighbours[survey], index=index, sep_arcmin=sep)
    truth.to_parquet(paths["truth"], index=False)
    return neighbours, conditions


@pytest.mark.slow  # trains the probes with bootstrap intervals (12 s on the shared 2-core machine)
def _run_neighbour_probe(cfg: dict, *args) -> pd.DataFrame:
    """``run_neighbour_probe`` with the config sections the rule's script passes."""
    experiments = cfg["experiments"]
    sections = (experiments["probes"], experiments["neighbour_probe"], cfg["preprocess"]["bands"])
    return run_neighbour_probe(*sections, bootstrap_config(cfg), *args)


def test_run_neighbour_probe_writes_the_table_with_cis(tmp_path: Path):
    n = 1200
    rng = np.random.default_rng(1)
    paths = write_fake_dataset(tmp_path / "data", n, size=4)
    neighbours, conditions = _plant(paths, n, rng)
    ref, abl, rnd = tmp_path / "ref.parquet", tmp_path / "abl.parquet", tmp_path / "rnd.parquet"
    noise = {s: rng.normal(size=(n, 4)) for s in SURVEY_ORDER}
    write_embeddings(ref, noise, {s: _planted_latents(conditions[s], rng) for s in SURVEY_ORDER}, n)
    write_embeddings(abl, noise, {s: rng.normal(size=(n, 6)) for s in SURVEY_ORDER}, n)
    write_embeddings(rnd, {s: rng.normal(size=(n, 16)) for s in SURVEY_ORDER}, None, n)
    cfg = tiny_config(experiments={"probes": FAST, "bootstrap": {"n_resamples": 300}, "neighbour_probe": {"folds": 3}})
    meta = {"hsc": paths["meta_hsc"], "legacysurvey": paths["meta_legacysurvey"]}
    out = tmp_path / "neighbour_probe.csv"
    _run_neighbour_probe(cfg, ref, abl, rnd, neighbours, meta, paths["truth"], out)
    table = pd.read_csv(out)
    assert list(table.columns) == list(NEIGHBOUR_PROBE_COLUMNS)
    assert table["target"].tolist() == [
        f"true_{s}_{q}" for s in ("hsc", "legacy") for q in ("psf_fwhm", "sky_sigma", "psfdepth_mag")
    ]
    row = table.set_index("target")
    for target in ("true_hsc_psf_fwhm", "true_legacy_sky_sigma"):  # planted: smooth on the sky
        r = row.loc[target]
        assert r["reference"] > 0.6 and r["reference_ci_lo"] > 0.3, r
        assert r["ablated"] < 0.15 and r["reference_shuffled"] < 0.15 and r["random_init"] < 0.15, r
        assert r["diff_ref_minus_abl_ci_lo"] > 0 and r["diff_ref_minus_shuffled_ci_lo"] > 0, r
        assert r["diff_ref_minus_abl"] == pytest.approx(r["reference"] - r["ablated"])
    assert row.loc["true_hsc_sky_sigma", "reference"] < 0.15  # random per object: nothing shared to read
    # Cross-fitted: every anchor is scored once, by a probe that never trained on an anchor sharing its neighbours.
    assert (table["n_test"] == n).all() and (table["n_test_blocks"] >= 60).all() and (table["n_folds"] == 3).all()
    assert (table["n_train"] > 0.25 * n).all() and (table["n_train"] < 2 / 3 * n).all()  # minus a third, minus borders
    ci = table[[c for c in table.columns if c.endswith("_ci_lo")]].to_numpy()
    assert np.isfinite(ci).all()


def test_real_data_probes_the_catalogue_instrument_columns(tmp_path: Path):
    n = 300
    rng = np.random.default_rng(2)
    paths = write_fake_dataset(tmp_path / "data", n, size=4)
    neighbours, _ = _plant(paths, n, rng)
    emb = tmp_path / "emb.parquet"
    write_embeddings(
        emb, {s: rng.normal(size=(n, 4)) for s in SURVEY_ORDER}, {s: rng.normal(size=(n, 3)) for s in SURVEY_ORDER}, n
    )
    cfg = tiny_config(experiments={"probes": {**FAST, "epochs": 3}, "bootstrap": {"n_resamples": 50}})
    meta = {"hsc": paths["meta_hsc"], "legacysurvey": paths["meta_legacysurvey"]}
    table = _run_neighbour_probe(cfg, emb, emb, None, neighbours, meta, None, tmp_path / "np.csv")
    assert table["target"].tolist() == [
        "hsc_a",
        "hsc_psfsize",
        "legacy_galdepth",
        "legacy_psfdepth",
        "legacy_psfsize",
        "legacy_ebv",
        "legacy_nobs",
    ]
    assert table["random_init"].isna().all()  # no random-init file given
    assert table["diff_ref_minus_abl"].abs().max() == 0  # the same embeddings for both runs
