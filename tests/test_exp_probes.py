"""Fig 4 / Table 5 probes, the probe targets and the neighbour ablation, on tiny planted data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score

from whatsreal.experiments.ablation import ABLATION_COLUMNS, paired_drops, run_ablation
from whatsreal.experiments.bootstrap import bootstrap_config
from whatsreal.experiments.probe_design import resolve_design
from whatsreal.experiments.probes import (
    FLOOR,
    REPRESENTATIONS,
    TABLE5_COLUMNS,
    fit_probe_ensemble,
    member_seed,
    pixel_statistics,
    probe_r2,
    read_probe_predictions,
    run_baseline_probes,
    run_probes,
    table5_columns,
    write_probe_predictions,
)
from whatsreal.experiments.targets import build_targets, probe_split
from whatsreal.layout import DatasetLayout
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
        **{f"mag_{b}": rng.uniform(19, 24, n + 5) for b in "grizy"},
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
    meta = {"hsc": paths["meta_hsc"], "legacysurvey": paths["meta_legacysurvey"]}
    table, specs = build_targets(meta, paths["truth"], ["g", "r", "i", "z"])
    names = [t.name for t in specs]
    assert {"hsc_e1", "hsc_e2", "legacy_galdepth", "hsc_psfsize", "true_redshift", "true_mag", "true_g_r"} <= set(names)
    # One truth target per instrument knob and survey: no quantity that is a function of another.
    truth_inst = [t.name for t in specs if t.truth and t.group != "physics"]
    assert truth_inst == [f"true_{s}_{q}" for s in ("hsc", "legacy") for q in ("psf_fwhm", "sky_sigma", "psfdepth_mag")]
    np.testing.assert_allclose(table["hsc_e1"], e1, atol=1e-12)
    np.testing.assert_allclose(table["hsc_e2"], e2, atol=1e-12)
    hsc = pd.read_parquet(paths["meta_hsc"])
    np.testing.assert_allclose(
        table["hsc_a"], hsc[["a_g", "a_r", "a_i", "a_z"]].mean(axis=1)
    )  # y not in preprocess.bands
    truth = pd.read_parquet(paths["truth"]).set_index("truth_id")
    np.testing.assert_allclose(table["true_redshift"], truth.loc[1000 + np.arange(30), "redshift"])
    rows = truth.loc[1000 + np.arange(30)]
    np.testing.assert_allclose(table["true_g_r"], rows["mag_g"] - rows["mag_r"])
    np.testing.assert_allclose(table["true_mag"], rows[[f"mag_{b}" for b in "griz"]].mean(axis=1))
    np.testing.assert_allclose(
        table["true_legacy_sky_sigma"], rows[[f"legacysurvey_sky_sigma_{b}" for b in "griz"]].mean(axis=1)
    )
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
    # The dataset's layout names the same meta files; a mapping must name every survey.
    pd.testing.assert_frame_equal(build_targets(DatasetLayout(tmp_path), None, ["g", "r", "i", "z"])[0], cat_only)
    with pytest.raises(ValueError, match=r"no meta file for survey.*legacysurvey"):
        build_targets({"hsc": paths["meta_hsc"]}, None, ["g", "r", "i", "z"])
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


def probe_inputs(tmp_path: Path, n: int = 240) -> dict:
    paths = write_fake_dataset(tmp_path / "data", n)
    truth = pd.read_parquet(paths["truth"]).set_index("truth_id").loc[1000 + np.arange(n)]
    rng = np.random.default_rng(5)
    # HSC pixels carry the true HSC sky noise (the pixel floor must find it); Legacy pixels carry nothing.
    sky = truth[[f"hsc_sky_sigma_{b}" for b in "griz"]].mean(axis=1).to_numpy()
    np.save(paths["meta_hsc"].parent / "images_hsc.npy", (rng.normal(size=(n, 4, 16, 16)) * sky[:, None, None, None]))
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
    pd.DataFrame(
        {"target": ["legacy_ebv", "hsc_a"], "r2": [0.5, 0.25], "n_train": 1, "n_test": 1, "ci_lo": [0.4, np.nan]}
        | {"ci_hi": [0.6, np.nan]}
    ).to_csv(cross, index=False)
    images = {s: DatasetLayout(paths["meta_hsc"].parent).images(s) for s in SURVEY_ORDER}
    return {"paths": paths, "embeddings": emb, "random_init": rnd, "cross_predict": cross, "images": images}


@pytest.mark.slow  # trains the MLP probes of every target (17 s on the shared 2-core machine)
def run_tiny_probes(inp: dict, cfg: dict, out: Path, **overrides) -> pd.DataFrame:
    """``run_probes`` on the inputs of :func:`probe_inputs`, writing into ``out`` (no AION; any
    argument can be overridden, e.g. ``truth=None`` for real data or ``provabgs=...``)."""
    kwargs = {
        "embeddings": inp["embeddings"],
        "random_init": inp["random_init"],
        "cross_predict": inp["cross_predict"],
        "meta": {"hsc": inp["paths"]["meta_hsc"], "legacysurvey": inp["paths"]["meta_legacysurvey"]},
        "truth": inp["paths"]["truth"],
        "aion": None,
        "figure": out / "fig4.png",
        "table": out / "table5.csv",
        "truth_table": out / "truth_probes.csv",
        "images": inp["images"],
        "predictions": out / "probe_predictions.npz",
    }
    sections = {
        "probes_cfg": cfg["experiments"]["probes"],
        "design": resolve_design(cfg),
        "bands": cfg["preprocess"]["bands"],
        "bootstrap": bootstrap_config(cfg),
    }
    return run_probes(**sections, **{**kwargs, **overrides})


def test_run_probes_writes_table5_truth_table_and_figure(tmp_path):
    inp = probe_inputs(tmp_path)
    cfg = tiny_config(experiments={"probes": {**FAST, "test_fraction": 0.2}})
    aion = tmp_path / "aion.parquet"
    emb = pd.read_parquet(inp["embeddings"])
    pd.DataFrame(
        {"object_id": emb["object_id"], "survey": emb["survey"], "f0": emb["phys_0"], "f1": emb["inst_0"]}
    ).iloc[:-3].to_parquet(aion, index=False)  # three Legacy objects lack AION features
    out = tmp_path / "out"
    result = run_tiny_probes(inp, cfg, out, aion=aion)
    table = pd.read_csv(out / "table5.csv")
    assert list(table.columns) == table5_columns([*REPRESENTATIONS])
    assert list(table.columns[: len(TABLE5_COLUMNS) + 2]) == [*TABLE5_COLUMNS, "aion", FLOOR]
    for rep in ("ours_physics", "ours_instrument", "random_init", "aion", FLOOR):
        assert {f"{rep}_ci_lo", f"{rep}_ci_hi"} <= set(table.columns)
    assert {"diff_phys_minus_inst", "diff_ci_lo", "diff_ci_hi"} <= set(table.columns)
    assert set(table["group"]) == {"physics", "legacysurvey_instrument", "hsc_instrument"}
    row = table.set_index("target")
    assert row.loc["true_redshift", "ours_physics"] > 0.8
    assert row.loc["true_redshift", "ours_instrument"] < 0.3
    assert row.loc["true_hsc_psf_fwhm", "ours_instrument"] > 0.8
    assert row.loc["true_hsc_psf_fwhm", "ours_physics"] < 0.3
    assert row.loc["legacy_ebv", "cross_predict"] == 0.5 and np.isnan(row.loc["hsc_e1", "cross_predict"])
    assert (row.loc["legacy_ebv", "cross_predict_ci_lo"], row.loc["legacy_ebv", "cross_predict_ci_hi"]) == (0.4, 0.6)
    assert np.isnan(row.loc["hsc_a", "cross_predict_ci_lo"])  # the baseline's file gives no interval for it
    assert np.isnan(row.loc["legacy_galdepth", "cross_predict"])  # not in the cross-predict file
    assert row.loc["true_redshift", "aion"] > 0.8
    assert (table["n_test"] == 48).all() and (table["n_train"] == 192).all()
    assert len(result) == len(table)
    # Intervals: ordered, around the estimate, and decisive where the signal is planted.
    for rep in ("ours_physics", "ours_instrument", "random_init", "aion"):
        lo, hi, v = table[f"{rep}_ci_lo"], table[f"{rep}_ci_hi"], table[rep]
        ok = v.notna()
        assert lo[ok].notna().all() and (lo[ok] < hi[ok]).all(), rep
        assert ((lo[ok] <= v[ok] + 0.02) & (v[ok] <= hi[ok] + 0.02)).all(), rep
    assert row.loc["true_redshift", "ours_physics_ci_lo"] > 0.7
    assert row.loc["true_redshift", "diff_ci_lo"] > 0  # physics beats instrument, CI excluding 0
    assert row.loc["true_hsc_psf_fwhm", "diff_ci_hi"] < 0  # instrument beats physics
    assert row.loc["true_redshift", "diff_phys_minus_inst"] == pytest.approx(
        row.loc["true_redshift", "ours_physics"] - row.loc["true_redshift", "ours_instrument"]
    )
    # Pixel floor: instrument targets only; it finds the sky noise planted in the HSC pixels and nothing else.
    assert table.loc[table["group"] == "physics", FLOOR].isna().all()
    assert row.loc["true_hsc_sky_sigma", FLOOR] > 0.7 and row.loc["true_hsc_sky_sigma", f"{FLOOR}_ci_lo"] > 0.5
    assert row.loc["true_legacy_sky_sigma", FLOOR] < 0.3
    # The test predictions reproduce the table.
    pairs, names, y, preds = read_probe_predictions(out / "probe_predictions.npz")
    np.testing.assert_array_equal(pairs, np.flatnonzero(probe_split(240, 0.2, cfg["experiments"]["probes"]["seed"])))
    assert set(preds) == {"ours_physics", "ours_instrument", "random_init", "aion", FLOOR}
    j = names.index("true_redshift")
    assert r2_score(y[:, j], preds["ours_physics"][:, j]) == pytest.approx(row.loc["true_redshift", "ours_physics"])
    lacking = np.isin(pairs, [237, 238, 239])  # the pairs without AION features stay in, as NaN
    np.testing.assert_array_equal(np.isnan(preds["aion"]).all(axis=1), lacking)
    truth = pd.read_csv(out / "truth_probes.csv")
    assert list(truth.columns) == ["metric", "value", "ci_lo", "ci_hi", "note"]
    m = truth.set_index("metric")
    assert m.loc["r2_true_redshift_ours_physics", "value"] == pytest.approx(row.loc["true_redshift", "ours_physics"])
    assert m.loc["r2_true_redshift_ours_physics", "ci_lo"] == pytest.approx(
        row.loc["true_redshift", "ours_physics_ci_lo"]
    )
    assert "r2_truth_physics_mean_random_init" in m.index and "disentanglement_score_ours" in m.index
    assert m.loc["diff_phys_minus_inst_true_redshift", "ci_lo"] > 0
    assert m.loc["r2_floor_true_hsc_sky_sigma", "value"] > 0.7
    assert "r2_floor_true_redshift" not in m.index
    score = m.loc["disentanglement_score_ours"]
    assert score["ci_lo"] < score["value"] < score["ci_hi"] and score["ci_lo"] > 0  # 2 of 11 targets planted
    assert (out / "fig4.png").stat().st_size > 10_000

    # Real data: no truth -> catalogue targets only, truth table header only.
    run_tiny_probes(
        inp,
        cfg,
        out,
        truth=None,
        figure=out / "fig4_real.png",
        table=out / "table5_real.csv",
        truth_table=out / "truth_real.csv",
        images=None,
        predictions=None,
    )
    real = pd.read_csv(out / "table5_real.csv")
    assert list(real.columns) == table5_columns(["ours_physics", "ours_instrument", "random_init"])
    assert "aion" not in real.columns and not real["truth"].any()
    assert real[FLOOR].isna().all()  # no images given: no floor
    assert pd.read_csv(out / "truth_real.csv").empty


@pytest.mark.slow  # trains the MLP probes of every target twice (~20 s on the shared 2-core machine)
def test_baseline_columns_probed_once_give_the_same_table(tmp_path):
    """The random-init, AION and pixel-floor columns fitted once per dataset (baseline_probes rule)
    and read by a run are the columns the run would fit itself, to the bit, in both designs; a
    baseline file of another design is refused, naming the file."""
    inp = probe_inputs(tmp_path)
    cfg = tiny_config(experiments={"probes": {**FAST, "test_fraction": 0.2}})
    aion = tmp_path / "aion.parquet"
    emb = pd.read_parquet(inp["embeddings"])
    pd.DataFrame({"object_id": emb["object_id"], "survey": emb["survey"], "f0": emb["phys_0"]}).to_parquet(aion)
    meta = {"hsc": inp["paths"]["meta_hsc"], "legacysurvey": inp["paths"]["meta_legacysurvey"]}
    alt = {"alternative_cross_predict": inp["cross_predict"]}
    own = tmp_path / "own"
    run_tiny_probes(inp, cfg, own, aion=aion, **alt, alternative_table=own / "alt.csv")
    base = tmp_path / "baselines"
    common = (cfg["experiments"]["probes"], resolve_design(cfg), cfg["preprocess"]["bands"])
    run_baseline_probes(
        *common, inp["random_init"], meta, inp["paths"]["truth"], aion, inp["images"], base / "p.npz", base / "alt.npz"
    )
    _, _, _, preds = read_probe_predictions(base / "p.npz")
    assert set(preds) == {"random_init", "aion", FLOOR}
    read = tmp_path / "read"
    no_baseline_files = {"random_init": None, "aion": None, "images": None}
    run_tiny_probes(
        inp,
        cfg,
        read,
        **no_baseline_files,
        **alt,
        alternative_table=read / "alt.csv",
        baseline=base / "p.npz",
        alternative_baseline=base / "alt.npz",
    )
    for name in ("table5.csv", "alt.csv", "truth_probes.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(read / name), pd.read_csv(own / name))
    assert pd.read_csv(read / "table5.csv")[["random_init", "aion", FLOOR]].notna().any().all()
    # The alternative design's file as the primary's baseline: other pairs scored, refused.
    with pytest.raises(ValueError, match=r"alt\.npz: scored \d+ pairs, but the design"):
        run_tiny_probes(inp, cfg, tmp_path / "bad", **no_baseline_files, baseline=base / "alt.npz")
    assert not (tmp_path / "bad" / "table5.csv").exists()


# --------------------------------------------------------------------------- pixel floor


def test_pixel_statistics_read_sky_noise_and_size():
    rng = np.random.default_rng(4)
    n, size = 40, 32
    sigma = rng.uniform(0.5, 2.0, n)
    width = rng.uniform(1.0, 3.0, n)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    blob = np.exp(-(xx**2 + yy**2)[None] / (2 * width[:, None, None] ** 2)) * 200
    images = blob[:, None] + rng.normal(size=(n, 2, size, size)) * sigma[:, None, None, None]
    stats = pixel_statistics(images.astype(np.float32), chunk=7)
    assert stats.shape == (n, 4)
    np.testing.assert_allclose(stats[:, 0], sigma, rtol=0.25)  # outer-pixel robust std = the noise
    assert np.corrcoef(stats[:, 2], width)[0, 1] > 0.9  # moment size follows the source size


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


def _predictions(path: Path, y: np.ndarray, inst_noise: float, rng: np.random.Generator) -> Path:
    """A probe_predictions.npz: physics predictions shared by both runs, instrument ones with ``inst_noise``."""
    preds = {
        "ours_physics": y + 0.3 * np.random.default_rng(0).normal(size=y.shape),
        "ours_instrument": y + inst_noise * rng.normal(size=y.shape),
        "random_init": np.zeros_like(y),
    }
    write_probe_predictions(path, np.arange(0, 2 * len(y), 2), ["hsc_e1", "legacy_galdepth"], y, preds)
    return path


def test_ablation_joins_runs_and_rejects_different_targets(tmp_path):
    ref = _table5(tmp_path / "ref.csv", ["hsc_e1", "legacy_galdepth"], 0.9, 0.7)
    abl = _table5(tmp_path / "abl.csv", ["legacy_galdepth", "hsc_e1"], 0.85, 0.2)  # other row order
    out = run_ablation(ref, abl, "main", "random_neighbours", tmp_path / "abl.png", tmp_path / "ablation.csv")
    table = pd.read_csv(tmp_path / "ablation.csv")
    assert list(table.columns) == list(ABLATION_COLUMNS) and len(out) == 2
    assert {"random_init", "random_init_ci_lo", "diff_instrument", "diff_instrument_ci_lo"} <= set(table.columns)
    g = table.set_index("target").loc["legacy_galdepth"]
    assert (g["reference_instrument"], g["ablated_instrument"]) == (0.7, 0.2)
    assert (g["reference_physics"], g["ablated_physics"]) == (0.9, 0.85)
    assert g["diff_instrument"] == pytest.approx(0.5) and g["random_init"] == 0.1
    assert np.isnan(g["diff_instrument_ci_lo"])  # no predictions given: no interval
    assert (tmp_path / "abl.png").stat().st_size > 10_000
    bad = _table5(tmp_path / "bad.csv", ["hsc_e1", "legacy_psfsize"], 0.8, 0.3)
    with pytest.raises(ValueError, match=r"different targets.*legacy_galdepth.*legacy_psfsize"):
        run_ablation(ref, bad, "main", "random_neighbours", tmp_path / "x.png", tmp_path / "x.csv")


def test_ablation_drop_is_a_paired_bootstrap_on_the_same_pairs(tmp_path):
    rng = np.random.default_rng(6)
    y = rng.normal(size=(200, 2))
    ref = _table5(tmp_path / "ref.csv", ["hsc_e1", "legacy_galdepth"], 0.9, 0.7)
    abl = _table5(tmp_path / "abl.csv", ["hsc_e1", "legacy_galdepth"], 0.9, 0.1)
    p_ref = _predictions(tmp_path / "ref.npz", y, 0.5, rng)  # instrument R^2 ~ 0.8
    p_abl = _predictions(tmp_path / "abl.npz", y, 3.0, rng)  # instrument R^2 << 0
    table = run_ablation(
        ref, abl, "main", "random_neighbours", tmp_path / "a.png", tmp_path / "a.csv", predictions=(p_ref, p_abl)
    ).set_index("target")
    g = table.loc["legacy_galdepth"]
    assert g["diff_instrument_ci_lo"] > 0.5  # a large drop, CI excluding 0
    # The physics predictions are the same in both runs: a paired drop is exactly 0, with no width.
    assert g["diff_physics_ci_lo"] == pytest.approx(0.0) and g["diff_physics_ci_hi"] == pytest.approx(0.0)
    # Different test pairs cannot be paired.
    other = tmp_path / "other.npz"
    write_probe_predictions(other, np.arange(200), ["hsc_e1", "legacy_galdepth"], y, {"ours_physics": y})
    with pytest.raises(ValueError, match="different test pairs"):
        paired_drops(p_ref, other, 100, 0, 0.95)
