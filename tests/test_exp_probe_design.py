"""The probe design: held-out pairs only, healpix-blocked folds, the mmu default and both designs reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from whatsreal.experiments.ablation import ABLATION_COLUMNS, run_ablation
from whatsreal.experiments.bootstrap import r2_point
from whatsreal.experiments.probe_design import (
    DESIGN_COLUMNS,
    ProbeDesign,
    alternative_design,
    healpix_blocks,
    probe_folds,
    read_probe_sky,
    resolve_design,
)
from whatsreal.experiments.probes import fold_predictions, read_probe_predictions, table5_columns
from whatsreal.experiments.summary import write_summary
from whatsreal.experiments.targets import probe_split

from .conftest import tiny_config
from .test_exp_probes import FAST, probe_inputs, run_tiny_probes


def _sky(n: int, seed: int = 0, size_deg: float = 2.0, val_fraction: float = 0.3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "pair": np.arange(n),
            "split": np.where(rng.random(n) < val_fraction, "val", "train"),
            "ra": 150.0 + rng.uniform(0, size_deg, n),
            "dec": 2.0 + rng.uniform(0, size_deg, n),
        }
    )


def _cfg(source: str = "synthetic", **probes) -> dict:
    cfg = tiny_config(experiments={"probes": {**FAST, **probes}})
    cfg["dataset"]["source"] = source  # only the probe design reads it here
    return cfg


# --------------------------------------------------------------------------- resolution


def test_auto_resolves_to_held_out_healpix_on_mmu_and_to_the_paper_protocol_on_the_synthetic_sky():
    mmu = resolve_design(_cfg("mmu"))
    assert (mmu.pairs, mmu.split, mmu.nside, mmu.n_folds) == ("held_out", "healpix", 256, 5)
    syn = resolve_design(_cfg("synthetic"))
    assert (syn.pairs, syn.split) == ("all", "random")
    # Explicit choices win over auto, whatever the source.
    assert resolve_design(_cfg("mmu", pairs="all", split="random")) == ProbeDesign("all", "random", 256, 5)
    assert resolve_design(_cfg("synthetic", split="healpix", healpix_nside=64, n_folds=3)) == ProbeDesign(
        "all", "healpix", 64, 3
    )
    # The alternative is always the other reported design.
    assert (alternative_design(mmu).pairs, alternative_design(mmu).split) == ("all", "random")
    assert (alternative_design(syn).pairs, alternative_design(syn).split) == ("held_out", "healpix")
    cfg = _cfg()
    cfg["experiments"]["probes"]["split"] = "blocks"
    with pytest.raises(ValueError, match=r"experiments\.probes\.split: 'blocks'"):
        resolve_design(cfg)


def test_schema_rejects_unknown_choices():
    with pytest.raises(Exception, match="held_out"):
        tiny_config(experiments={"probes": {"pairs": "val"}})


# --------------------------------------------------------------------------- folds


def test_blocked_folds_never_put_one_healpix_pixel_on_both_sides():
    sky = _sky(900)
    design = ProbeDesign("all", "healpix", 128, 5)
    folds = probe_folds(design, sky, 0.1, 0)
    pix = healpix_blocks(sky["ra"], sky["dec"], 128)
    assert len(folds.folds) == 5 and len(np.unique(pix)) > 10
    for train, test in folds.folds:
        assert len(test) and len(train)
        assert not set(pix[train]) & set(pix[test])  # no pixel in both
        assert not set(train) & set(test)
        assert len(train) + len(test) == len(sky)
    np.testing.assert_array_equal(folds.scored, np.arange(len(sky)))  # every pair scored exactly once
    # A random split over the same pairs does share pixels (what the blocked folds prevent).
    ((train, test),) = probe_folds(ProbeDesign("all", "random", 128, 5), sky, 0.1, 0).folds
    assert set(pix[train]) & set(pix[test])


def test_held_out_uses_only_val_pairs_under_both_splits():
    sky = _sky(600)
    val = np.flatnonzero(sky["split"] == "val")
    for split in ("healpix", "random"):
        folds = probe_folds(ProbeDesign("held_out", split, 128, 4), sky, 0.2, 0)
        used = np.unique(np.concatenate([np.r_[tr, te] for tr, te in folds.folds]))
        np.testing.assert_array_equal(used, val)
    # held_out + random is the paper's split applied to the val pairs; all + random is exactly probe_split.
    ((_, test),) = probe_folds(ProbeDesign("all", "random", 128, 4), sky, 0.2, 3).folds
    np.testing.assert_array_equal(test, np.flatnonzero(probe_split(600, 0.2, 3)))


def test_few_pixels_give_one_fold_per_pixel_and_one_pixel_or_pair_is_a_clear_error(caplog):
    sky = _sky(300, size_deg=0.5)
    pix = healpix_blocks(sky["ra"], sky["dec"], 64)
    n_pix = len(np.unique(pix[sky["split"] == "val"]))
    assert 2 <= n_pix < 5
    folds = probe_folds(ProbeDesign("held_out", "healpix", 64, 5), sky, 0.1, 0)
    assert len(folds.folds) == n_pix and folds.design_columns()["probe_folds"] == n_pix
    assert all(len(np.unique(pix[test])) == 1 for _, test in folds.folds)  # leave one pixel out
    assert "fewer than n_folds=5" in caplog.text
    tiny = _sky(200).assign(ra=150.3, dec=2.3)  # every pair in one pixel
    with pytest.raises(ValueError, match=r"1 healpix pixel at healpix_nside=64.*raise healpix_nside"):
        probe_folds(ProbeDesign("held_out", "healpix", 64, 5), tiny, 0.1, 0)
    sky = tiny
    sky["split"] = "train"
    sky.loc[0, "split"] = "val"
    with pytest.raises(ValueError, match=r"only 1 held-out \(val\) pairs.*split\.val_fraction"):
        probe_folds(ProbeDesign("held_out", "random", 64, 5), sky, 0.1, 0)


def test_read_probe_sky_names_the_file_and_column(tmp_path):
    path = tmp_path / "meta_hsc.parquet"
    pd.DataFrame({"pair": [0, 1], "split": ["train", "val"], "ra": [1.0, 2.0]}).to_parquet(path)
    with pytest.raises(ValueError, match=r"meta_hsc\.parquet: missing column\(s\) dec"):
        read_probe_sky({"hsc": path, "legacysurvey": path})
    pd.DataFrame({"pair": [0, 1], "split": ["train", "test"], "ra": [1.0, 2.0], "dec": [0.0, 0.0]}).to_parquet(path)
    with pytest.raises(ValueError, match=r"meta_hsc\.parquet: column 'split' has value\(s\) \['test'\]"):
        read_probe_sky({"hsc": path, "legacysurvey": path})


def test_random_folds_overestimate_a_place_fingerprint_and_blocked_folds_do_not():
    """Features that fingerprint the healpix pixel and a target that is a random value per pixel.

    Nothing about the target is readable from the features except *where* the pair
    is: with a random split the probe recalls the value of the pixel's training
    pairs (a high R^2 for no transferable information); with blocked folds it meets
    unseen pixels and gets R^2 <= ~0. A genuine per-pair signal must survive both.
    """
    rng = np.random.default_rng(11)
    sky = _sky(800, seed=1)
    nside = 128
    pix = healpix_blocks(sky["ra"], sky["dec"], nside)
    ids, inverse = np.unique(pix, return_inverse=True)
    fingerprint = rng.normal(size=(len(ids), 8))[inverse] + rng.normal(0, 0.05, (len(sky), 8))
    place_value = rng.normal(size=len(ids))[inverse] + rng.normal(0, 0.1, len(sky))
    genuine = rng.normal(size=(len(sky), 2))
    x = np.c_[fingerprint, genuine]
    y = np.c_[place_value, genuine[:, 0] - 0.5 * genuine[:, 1]]
    pcfg = _cfg()["experiments"]["probes"]
    r2 = {}
    for split in ("random", "healpix"):
        folds = probe_folds(ProbeDesign("all", split, nside, 5), sky, 0.2, 0)
        pred = fold_predictions(x, y, folds, pcfg)
        r2[split] = np.asarray(r2_point(y[folds.scored], pred))
    assert r2["random"][0] > 0.6, r2  # the place is recalled
    assert r2["healpix"][0] < 0.2, r2  # no pixel seen in training: nothing to recall
    assert r2["random"][1] > 0.8 and r2["healpix"][1] > 0.8, r2  # a real signal survives both


# --------------------------------------------------------------------------- end to end


def test_mmu_default_probes_held_out_pairs_in_blocked_folds_and_reports_the_paper_design_too(tmp_path):
    inp = probe_inputs(tmp_path)
    meta = pd.read_parquet(inp["paths"]["meta_hsc"])
    val = np.flatnonzero(meta["split"] == "val")
    out = tmp_path / "out"
    cfg = _cfg("mmu", test_fraction=0.2)
    run_tiny_probes(inp, cfg, out, alternative_table=out / "alternative.csv")
    table = pd.read_csv(out / "table5.csv")
    assert list(table.columns) == table5_columns(["ours_physics", "ours_instrument", "random_init"])
    assert set(DESIGN_COLUMNS) <= set(table.columns)
    assert (table["probe_pairs"] == "held_out").all() and (table["probe_split"] == "healpix").all()
    assert (table["probe_folds"] == 5).all()
    row = table.set_index("target")
    assert row.loc["true_redshift", "n_test"] == len(val)  # every val pair scored once, out of fold
    assert row.loc["true_redshift", "n_train"] == round(len(val) * 4 / 5)
    # The planted signals are still found on the ~50 held-out pairs.
    assert row.loc["true_redshift", "ours_physics"] > 0.6 and row.loc["true_hsc_psf_fwhm", "ours_instrument"] > 0.6
    assert row.loc["true_redshift", "ours_instrument"] < 0.4
    pairs, names, y, preds = read_probe_predictions(out / "probe_predictions.npz")
    np.testing.assert_array_equal(pairs, val)  # the ablation pairs runs on exactly these pairs
    j = names.index("true_redshift")
    assert r2_point(y[:, j], preds["ours_physics"][:, j]) == pytest.approx(row.loc["true_redshift", "ours_physics"])
    # The cross-predict file of another design does not belong in this table.
    cross = pd.read_csv(inp["cross_predict"])
    cross.assign(probe_pairs="all", probe_split="random", probe_folds=1).to_csv(inp["cross_predict"], index=False)
    with pytest.raises(ValueError, match=r"cross-predict scored with pairs=all, split=random"):
        run_tiny_probes(inp, cfg, tmp_path / "again")
    # The alternative design is the paper's: all pairs, random 80/20 here.
    alt = pd.read_csv(out / "alternative.csv")
    assert (alt["probe_pairs"] == "all").all() and (alt["probe_split"] == "random").all()
    assert (alt["n_test"] == 48).all() and (alt["n_train"] == 192).all()
    # The synthetic default is the paper's design, its alternative the held-out blocked one.
    cross.to_csv(inp["cross_predict"], index=False)
    syn = tmp_path / "syn"
    run_tiny_probes(
        inp,
        _cfg("synthetic", test_fraction=0.2),
        syn,
        alternative_table=syn / "alternative.csv",
        alternative_predictions=syn / "alternative.npz",
    )
    np.testing.assert_array_equal(read_probe_predictions(syn / "alternative.npz")[0], val)

    def probes_only(df: pd.DataFrame) -> pd.DataFrame:  # cross-predict comes from the file given per design
        return df.drop(columns=[c for c in df.columns if c.startswith("cross_predict")])

    pd.testing.assert_frame_equal(probes_only(pd.read_csv(syn / "table5.csv")), probes_only(alt))
    pd.testing.assert_frame_equal(probes_only(pd.read_csv(syn / "alternative.csv")), probes_only(table))
    assert pd.read_csv(syn / "table5.csv").set_index("target").loc["legacy_ebv", "cross_predict"] == 0.5
    assert np.isnan(pd.read_csv(syn / "alternative.csv").set_index("target").loc["legacy_ebv", "cross_predict"])


def test_ablation_records_the_design_and_refuses_to_mix_designs(tmp_path):
    cols = table5_columns(["ours_physics", "ours_instrument", "random_init"])

    def table(path: Path, split: str) -> Path:
        row = dict.fromkeys(cols, 0.5)
        row |= {"target": "legacy_galdepth", "label": "depth", "group": "legacysurvey_instrument", "truth": False}
        row |= {"probe_pairs": "held_out", "probe_split": split, "probe_folds": 5 if split == "healpix" else 1}
        pd.DataFrame([row], columns=cols).to_csv(path, index=False)
        return path

    ref, abl = table(tmp_path / "ref.csv", "healpix"), table(tmp_path / "abl.csv", "healpix")
    out = run_ablation(ref, abl, "main", "random_neighbours", None, tmp_path / "a.csv")  # table only
    assert not list(tmp_path.glob("*.png"))
    assert (out["probe_pairs"] == "held_out").all() and (out["probe_split"] == "healpix").all()
    assert (pd.read_csv(tmp_path / "a.csv")["probe_folds"] == 5).all()
    other = table(tmp_path / "other.csv", "random")
    with pytest.raises(ValueError, match="different designs"):
        run_ablation(ref, other, "main", "random_neighbours", tmp_path / "b.png", tmp_path / "b.csv")


def test_summary_shows_the_design_and_both_designs_side_by_side(tmp_path):
    cols = table5_columns(["ours_physics", "ours_instrument", "random_init"])
    for run in ("main", "random_neighbours"):
        tables = tmp_path / "runs" / run / "tables"
        tables.mkdir(parents=True)
        for name, pairs, split, phys, n_test in (
            ("table5_probes.csv", "all", "random", 0.91, 115),
            ("table5_probes_alternative.csv", "held_out", "healpix", 0.42, 57),
        ):
            row = dict.fromkeys(cols, np.nan)
            row |= {"target": "true_redshift", "label": "redshift", "group": "physics", "truth": True}
            row |= {"ours_physics": phys, "ours_instrument": 0.1, "n_train": 9 * n_test, "n_test": n_test}
            row |= {"probe_pairs": pairs, "probe_split": split, "probe_folds": 5 if split == "healpix" else 1}
            pd.DataFrame([row], columns=cols).to_csv(tables / name, index=False)
    abl = tmp_path / "runs" / "random_neighbours" / "tables"
    for name, pairs, split, drop in (
        ("ablation_neighbours.csv", "all", "random", 0.444),
        ("ablation_neighbours_alternative.csv", "held_out", "healpix", 0.222),
    ):
        row = dict.fromkeys(ABLATION_COLUMNS, np.nan)
        row |= {"target": "legacy_galdepth", "label": "depth", "group": "legacysurvey_instrument", "truth": False}
        row |= {"diff_instrument": drop, "probe_pairs": pairs, "probe_split": split, "probe_folds": 5}
        pd.DataFrame([row], columns=list(ABLATION_COLUMNS)).to_csv(abl / name, index=False)
    text = write_summary(tiny_config(), tmp_path, ["main", "random_neighbours"], tmp_path / "summary.md")
    assert "Probe design: all pairs, random train/test split" in text
    section = text[text.index("### Probe design check, run `main`") :]
    assert "pairs held out from encoder training, healpix-blocked 5-fold cross-validation" in section
    assert "| redshift | physics | 0.910 / 0.420 |" in section and "| 1035, 115 / 513, 57 |" in section
    ablation = text[text.index("### Spatial-neighbour ablation") :]
    primary, alternative = ablation.split("The same ablation under the alternative probe design")
    assert "| 0.444 |" in primary and "| 0.222 |" in alternative
    assert alternative.lstrip(" (").startswith("pairs held out from encoder training")
