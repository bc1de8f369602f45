"""Fig 4 / Table 5 probes, the probe targets and the neighbour ablation, on tiny planted data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from whatsreal.experiments.ablation import ABLATION_COLUMNS, run_ablation
from whatsreal.experiments.probes import (
    TABLE5_COLUMNS,
    fit_probe_ensemble,
    member_seed,
    probe_r2,
    run_probes,
)
from whatsreal.experiments.targets import build_targets, probe_split
from whatsreal.surveys import SURVEY_ORDER

from .conftest import tiny_config

FAST = {"hidden": [64, 32], "epochs": 40, "batch_size": 64, "lr": 2e-3}
"""A probe small enough to train on a few hundred rows in about a second."""

HSC_BANDS = ("g", "r", "i", "z", "y")
LEGACY_BANDS = ("G", "R", "I", "Z")


def _pcfg(**extra) -> dict:
    return tiny_config(experiments={"probes": {**FAST, **extra}})["experiments"]["probes"]


# --------------------------------------------------------------------------- fixtures (shared by the other files)


def fake_tables(n: int, seed: int = 0, e1: np.ndarray | None = None, e2: np.ndarray | None = None) -> dict:
    """meta_hsc, meta_legacysurvey and truth frames with every column the targets read.

    ``e1``/``e2`` plant the HSC i-band moment ellipticity (distortion convention).
    The generator is keyed apart from a test's own ``default_rng(seed)``, so the split
    is never a function of planted values drawn from the same stream.
    """
    rng = np.random.default_rng([seed, 2024])
    pair = np.arange(n)
    split = np.where(rng.random(n) < 0.8, "train", "val")
    ids = pd.array(1000 + pair, dtype="Int64")
    e1 = rng.uniform(-0.4, 0.4, n) if e1 is None else e1
    e2 = rng.uniform(-0.4, 0.4, n) if e2 is None else e2
    hsc = {
        "pair": pair,
        "split": split,
        "truth_id": ids,
        "object_id": (10_000 + pair).astype(np.int64),
        "ra": rng.uniform(0, 1, n),
        "dec": rng.uniform(0, 1, n),
    }
    for b in HSC_BANDS:
        hsc[f"a_{b}"] = rng.uniform(0.02, 0.1, n)
        size = rng.uniform(0.5, 2.0, n)
        hsc[f"{b}_sdssshape_shape11"] = size * (1 + e1)
        hsc[f"{b}_sdssshape_shape22"] = size * (1 - e1)
        hsc[f"{b}_sdssshape_shape12"] = size * e2
        psf = rng.uniform(0.05, 0.1, n)
        hsc[f"{b}_sdssshape_psf_shape11"] = psf
        hsc[f"{b}_sdssshape_psf_shape22"] = psf
        hsc[f"{b}_sdssshape_psf_shape12"] = np.zeros(n)
    legacy = {
        "pair": pair,
        "split": split,
        "truth_id": ids,
        "object_id": np.array([f"brick-{i}" for i in pair]),
        "ra": hsc["ra"],
        "dec": hsc["dec"],
        "EBV": rng.uniform(0.02, 0.04, n),
        "SHAPE_R": rng.uniform(0.3, 2.0, n),
        "SHAPE_E1": rng.uniform(-0.4, 0.4, n),
        "SHAPE_E2": rng.uniform(-0.4, 0.4, n),
    }
    for b in LEGACY_BANDS:
        legacy[f"PSFSIZE_{b}"] = rng.uniform(1.0, 1.8, n)
        legacy[f"PSFDEPTH_{b}"] = rng.uniform(100, 2000, n)
        legacy[f"GALDEPTH_{b}"] = rng.uniform(50, 1500, n)
        legacy[f"NOBS_{b}"] = rng.integers(1, 8, n)
    truth = {
        "truth_id": 1000 + np.arange(n + 5),  # a few truth rows no pair uses
        "redshift": rng.uniform(0.05, 0.7, n + 5),
        "log_mstar": rng.normal(10, 0.5, n + 5),
        "log_ssfr": rng.normal(-10, 1, n + 5),
        "half_light_radius_arcsec": rng.uniform(0.2, 3, n + 5),
        "sersic_n": rng.uniform(0.5, 6, n + 5),
        "e1": rng.uniform(-0.5, 0.5, n + 5),
        "e2": rng.uniform(-0.5, 0.5, n + 5),
    }
    for survey in SURVEY_ORDER:
        for b in "grizy":
            for q in ("psf_fwhm", "psfdepth_mag", "galdepth_mag", "sky_sigma", "nobs"):
                truth[f"{survey}_{q}_{b}"] = rng.uniform(1, 2, n + 5)
    return {"hsc": pd.DataFrame(hsc), "legacysurvey": pd.DataFrame(legacy), "truth": pd.DataFrame(truth)}


def write_fake_dataset(
    root: Path, n: int, size: int = 16, seed: int = 0, images: dict[str, np.ndarray] | None = None, **planted
) -> dict[str, Path]:
    """A data directory with meta_*.parquet, images_*.npy, split.parquet and raw/truth.parquet."""
    root.mkdir(parents=True, exist_ok=True)
    tables = fake_tables(n, seed, **planted)
    rng = np.random.default_rng(seed + 1)
    paths = {}
    for survey in SURVEY_ORDER:
        paths[f"meta_{survey}"] = root / f"meta_{survey}.parquet"
        tables[survey].to_parquet(paths[f"meta_{survey}"], index=False)
        arr = images[survey] if images else rng.normal(size=(n, 4, size, size)).astype(np.float32)
        np.save(root / f"images_{survey}.npy", arr)
    (root / "raw").mkdir(exist_ok=True)
    paths["truth"] = root / "raw" / "truth.parquet"
    tables["truth"].to_parquet(paths["truth"], index=False)
    tables["hsc"][["pair", "split"]].to_parquet(root / "split.parquet", index=False)
    return paths


def write_embeddings(path: Path, phys: dict[str, np.ndarray], inst: dict[str, np.ndarray] | None, n: int) -> None:
    """An embeddings.parquet-layout file (HSC rows then Legacy, pair order)."""
    frames = []
    for survey in SURVEY_ORDER:
        ids = (10_000 + np.arange(n)).astype(str) if survey == "hsc" else np.array([f"brick-{i}" for i in range(n)])
        df = pd.DataFrame(
            {"object_id": ids, "pair": np.arange(n), "survey": survey, "ra": 0.0, "dec": 0.0, "split": "train"}
        )
        cols = {f"phys_{i}": phys[survey][:, i] for i in range(phys[survey].shape[1])}
        if inst is not None:
            cols |= {f"inst_{i}": inst[survey][:, i] for i in range(inst[survey].shape[1])}
        frames.append(pd.concat([df, pd.DataFrame(cols)], axis=1))
    pd.concat(frames, ignore_index=True).to_parquet(path, index=False)


# --------------------------------------------------------------------------- split and targets


def test_probe_split_is_seeded_and_sized():
    a = probe_split(200, 0.1, 3)
    assert a.dtype == bool and a.sum() == 20
    np.testing.assert_array_equal(a, probe_split(200, 0.1, 3))
    assert not np.array_equal(a, probe_split(200, 0.1, 4))
    with pytest.raises(ValueError, match="test_fraction"):
        probe_split(200, 1.5, 0)


def test_targets_follow_the_catalogue_conventions(tmp_path):
    e1 = np.linspace(-0.3, 0.3, 30)
    e2 = np.linspace(0.2, -0.2, 30)
    paths = write_fake_dataset(tmp_path, 30, e1=e1, e2=e2)
    meta = [paths["meta_hsc"], paths["meta_legacysurvey"]]
    table, specs = build_targets(meta, paths["truth"], ["g", "r", "i", "z"])
    names = [t.name for t in specs]
    assert {"hsc_e1", "hsc_e2", "legacy_galdepth", "hsc_psfsize", "true_redshift", "true_hsc_nobs"} <= set(names)
    np.testing.assert_allclose(table["hsc_e1"], e1, atol=1e-12)
    np.testing.assert_allclose(table["hsc_e2"], e2, atol=1e-12)
    hsc = pd.read_parquet(paths["meta_hsc"])
    np.testing.assert_allclose(
        table["hsc_a"], hsc[["a_g", "a_r", "a_i", "a_z"]].mean(axis=1)
    )  # y not in preprocess.bands
    truth = pd.read_parquet(paths["truth"]).set_index("truth_id")
    np.testing.assert_allclose(table["true_redshift"], truth.loc[1000 + np.arange(30), "redshift"])
    groups = {t.name: (t.group, t.truth) for t in specs}
    assert groups["legacy_nobs"] == ("legacysurvey_instrument", False)
    assert groups["true_legacy_psf_fwhm"] == ("legacysurvey_instrument", True)
    assert groups["true_e1"] == ("physics", True)
    # A band without coverage (Legacy depth 0) is left out of the band average; no band at all -> NaN.
    leg = pd.read_parquet(paths["meta_legacysurvey"])
    leg.loc[0, "GALDEPTH_I"] = 0.0
    leg.loc[1, ["GALDEPTH_G", "GALDEPTH_R", "GALDEPTH_I", "GALDEPTH_Z"]] = 0.0
    leg.to_parquet(paths["meta_legacysurvey"], index=False)
    gal, _ = build_targets(meta, None, ["g", "r", "i", "z"])
    mags = 22.5 - 2.5 * np.log10(5.0 / np.sqrt(leg.loc[0, ["GALDEPTH_G", "GALDEPTH_R", "GALDEPTH_Z"]].to_numpy(float)))
    assert gal.loc[0, "legacy_galdepth"] == pytest.approx(mags.mean())
    assert np.isnan(gal.loc[1, "legacy_galdepth"]) and gal["legacy_galdepth"].notna().sum() == 29
    # No truth file: catalogue targets only.
    cat_only, cat_specs = build_targets(meta, None, ["g", "r", "i", "z"])
    assert not any(t.truth for t in cat_specs) and len(cat_only) == 30
    # A missing column is named with its file.
    hsc.drop(columns=["i_sdssshape_shape12"]).to_parquet(paths["meta_hsc"], index=False)
    with pytest.raises(KeyError, match=r"meta_hsc\.parquet: missing column 'i_sdssshape_shape12'"):
        build_targets(meta, None, ["g", "r", "i", "z"])


# --------------------------------------------------------------------------- the probe


def test_probe_recovers_a_planted_linear_signal_and_not_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 12))
    signal = x @ rng.normal(size=12)
    noise = rng.normal(size=600)
    partial = signal.copy()
    partial[rng.random(600) < 0.3] = np.nan  # missing labels are dropped, not learnt as zeros
    y = np.stack([signal, noise, partial], axis=1)
    test = probe_split(600, 0.2, 0)
    r2, pred = probe_r2(x, y, test, _pcfg())
    assert r2[0] > 0.9, r2
    assert r2[1] < 0.2, r2
    assert r2[2] > 0.85, r2
    assert pred.shape == (test.sum(), 3)


def test_ensemble_member_equals_a_probe_trained_alone():
    """Disjoint parameters + per-member loss + elementwise AdamW: member 1 of 3 == the same probe trained alone."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    y = rng.normal(size=(300, 3))
    y[rng.random((300, 3)) < 0.2] = np.nan
    pcfg = _pcfg(dropout=0.0, epochs=8)
    seeds = [member_seed(0, k) for k in range(3)]
    together = fit_probe_ensemble(x, y, pcfg, seeds)
    alone = fit_probe_ensemble(x, y[:, 1:2], pcfg, seeds[1:2])
    import torch

    with torch.no_grad():
        xt = torch.from_numpy(x)
        np.testing.assert_allclose(together(xt)[:, 1].numpy(), alone(xt)[:, 0].numpy(), rtol=1e-4, atol=1e-5)


def test_targets_do_not_interact_even_with_dropout():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 8))
    y = np.stack([x[:, 0] + 0.1 * rng.normal(size=300), x[:, 1] ** 2], axis=1)
    test = probe_split(300, 0.2, 0)
    pcfg = _pcfg(dropout=0.2, epochs=10)
    r2_a, pred_a = probe_r2(x, y, test, pcfg)
    y2 = y.copy()
    y2[:, 0] = rng.permutation(y2[:, 0])  # scramble target 0's labels only
    r2_b, pred_b = probe_r2(x, y2, test, pcfg)
    np.testing.assert_allclose(pred_b[:, 1], pred_a[:, 1], rtol=1e-5, atol=1e-6)
    assert r2_b[1] == pytest.approx(r2_a[1], abs=1e-6)
    assert r2_b[0] < r2_a[0] - 0.3  # while target 0 itself did change


# --------------------------------------------------------------------------- run_probes end to end


def _probe_inputs(tmp_path: Path, n: int = 240) -> dict:
    paths = write_fake_dataset(tmp_path / "data", n)
    truth = pd.read_parquet(paths["truth"]).set_index("truth_id").loc[1000 + np.arange(n)]
    rng = np.random.default_rng(5)
    # Physics latents carry the true redshift; instrument latents the true HSC PSF FWHM (band-averaged).
    z = truth["redshift"].to_numpy()
    psf = truth[[f"hsc_psf_fwhm_{b}" for b in "griz"]].mean(axis=1).to_numpy()
    phys = {s: np.c_[z[:, None] * rng.normal(1, 0.01, (n, 3)), rng.normal(size=(n, 5))] for s in SURVEY_ORDER}
    inst = {s: np.c_[psf[:, None] * rng.normal(1, 0.01, (n, 2)), rng.normal(size=(n, 2))] for s in SURVEY_ORDER}
    emb = tmp_path / "embeddings.parquet"
    write_embeddings(emb, phys, inst, n)
    rnd = tmp_path / "random_init_embeddings.parquet"
    write_embeddings(rnd, {s: rng.normal(size=(n, 6)) for s in SURVEY_ORDER}, None, n)
    cross = tmp_path / "cross_predict.csv"
    pd.DataFrame({"target": ["legacy_ebv", "hsc_a"], "r2": [0.5, 0.25], "n_train": 1, "n_test": 1}).to_csv(
        cross, index=False
    )
    return {"paths": paths, "embeddings": emb, "random_init": rnd, "cross_predict": cross}


def test_run_probes_writes_table5_truth_table_and_figure(tmp_path):
    inp = _probe_inputs(tmp_path)
    cfg = tiny_config(experiments={"probes": {**FAST, "test_fraction": 0.2}})
    aion = tmp_path / "aion.parquet"
    emb = pd.read_parquet(inp["embeddings"])
    pd.DataFrame(
        {"object_id": emb["object_id"], "survey": emb["survey"], "f0": emb["phys_0"], "f1": emb["inst_0"]}
    ).iloc[:-3].to_parquet(aion, index=False)  # three Legacy objects lack AION features
    out = tmp_path / "out"
    meta = [inp["paths"]["meta_hsc"], inp["paths"]["meta_legacysurvey"]]
    result = run_probes(
        cfg,
        embeddings=inp["embeddings"],
        random_init=inp["random_init"],
        cross_predict=inp["cross_predict"],
        meta=meta,
        truth=inp["paths"]["truth"],
        aion=aion,
        figure=out / "fig4.png",
        table=out / "table5.csv",
        truth_table=out / "truth_probes.csv",
    )
    table = pd.read_csv(out / "table5.csv")
    assert list(table.columns) == [*TABLE5_COLUMNS, "aion", "n_train", "n_test"]
    assert set(table["group"]) == {"physics", "legacysurvey_instrument", "hsc_instrument"}
    row = table.set_index("target")
    assert row.loc["true_redshift", "ours_physics"] > 0.8
    assert row.loc["true_redshift", "ours_instrument"] < 0.3
    assert row.loc["true_hsc_psf_fwhm", "ours_instrument"] > 0.8
    assert row.loc["true_hsc_psf_fwhm", "ours_physics"] < 0.3
    assert row.loc["legacy_ebv", "cross_predict"] == 0.5 and np.isnan(row.loc["hsc_e1", "cross_predict"])
    assert np.isnan(row.loc["legacy_galdepth", "cross_predict"])  # not in the cross-predict file
    assert row.loc["true_redshift", "aion"] > 0.8
    assert (table["n_test"] == 48).all() and (table["n_train"] == 192).all()
    assert len(result) == len(table)
    truth = pd.read_csv(out / "truth_probes.csv")
    assert list(truth.columns) == ["metric", "value", "note"]
    m = dict(zip(truth["metric"], truth["value"], strict=True))
    assert m["r2_true_redshift_ours_physics"] == pytest.approx(row.loc["true_redshift", "ours_physics"])
    assert "r2_truth_physics_mean_ours_physics" in m and "disentanglement_score_ours" in m
    assert (out / "fig4.png").stat().st_size > 10_000

    # Real data: no truth -> catalogue targets only, truth table header only.
    run_probes(
        cfg,
        embeddings=inp["embeddings"],
        random_init=inp["random_init"],
        cross_predict=inp["cross_predict"],
        meta=meta,
        truth=None,
        aion=None,
        figure=out / "fig4_real.png",
        table=out / "table5_real.csv",
        truth_table=out / "truth_real.csv",
    )
    real = pd.read_csv(out / "table5_real.csv")
    assert list(real.columns) == [*TABLE5_COLUMNS, "n_train", "n_test"] and not real["truth"].any()
    assert pd.read_csv(out / "truth_real.csv").empty


# --------------------------------------------------------------------------- ablation


def _table5(path: Path, targets: list[str], phys: float, inst: float) -> Path:
    pd.DataFrame(
        {
            "target": targets,
            "label": [t.upper() for t in targets],
            "group": ["physics"] + ["legacysurvey_instrument"] * (len(targets) - 1),
            "truth": False,
            "ours_physics": phys,
            "ours_instrument": inst,
            "random_init": 0.1,
            "cross_predict": np.nan,
            "n_train": 10,
            "n_test": 2,
        }
    ).to_csv(path, index=False)
    return path


def test_ablation_joins_runs_and_rejects_different_targets(tmp_path):
    ref = _table5(tmp_path / "ref.csv", ["hsc_e1", "legacy_galdepth"], 0.9, 0.7)
    abl = _table5(tmp_path / "abl.csv", ["legacy_galdepth", "hsc_e1"], 0.85, 0.2)  # other row order
    out = run_ablation(ref, abl, "main", "random_neighbours", tmp_path / "abl.png", tmp_path / "ablation.csv")
    table = pd.read_csv(tmp_path / "ablation.csv")
    assert list(table.columns) == list(ABLATION_COLUMNS) and len(out) == 2
    g = table.set_index("target").loc["legacy_galdepth"]
    assert (g["reference_instrument"], g["ablated_instrument"]) == (0.7, 0.2)
    assert (g["reference_physics"], g["ablated_physics"]) == (0.9, 0.85)
    assert (tmp_path / "abl.png").stat().st_size > 10_000
    bad = _table5(tmp_path / "bad.csv", ["hsc_e1", "legacy_psfsize"], 0.8, 0.3)
    with pytest.raises(ValueError, match=r"different targets.*legacy_galdepth.*legacy_psfsize"):
        run_ablation(ref, bad, "main", "random_neighbours", tmp_path / "x.png", tmp_path / "x.csv")
