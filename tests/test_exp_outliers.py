"""Fig 3 (normalising-flow outliers): planted outliers ranked first, truth precision, the contract files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from whatsreal.data.mmu import create_shard
from whatsreal.experiments.outliers import (
    SCORE_COLUMNS,
    outlier_scores,
    read_baseline,
    read_baseline_scores,
    run_baseline_outliers,
    run_outliers,
    truth_precision_rows,
)
from whatsreal.plots import outliers as outlier_plots
from whatsreal.surveys import SURVEYS
from whatsreal.truth import hsc_truth

from .conftest import tiny_config

FAST = {"transforms": 2, "hidden": [32, 32], "epochs": 40, "batch_size": 128, "top": 3}
"""A small flow that fits a few hundred points in about a second."""


def _ocfg(**extra) -> dict:
    return tiny_config(experiments={"outliers": {**FAST, **extra}})["experiments"]["outliers"]


@pytest.mark.slow  # trains the outlier flow (8-45 s on the shared 2-core machine)
def test_flow_ranks_planted_outliers_first():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(505, 4)).astype(np.float32)
    far = rng.choice(505, size=5, replace=False)
    x[far] = rng.normal(size=(5, 4)) * 0.3 + np.array([9.0, -9.0, 9.0, 9.0])
    nll, info = outlier_scores(x, _ocfg())
    assert set(np.argsort(-nll)[:5].tolist()) == set(far.tolist())
    assert info["n_train"] == 404 and info["n_scored"] == 505
    again, _ = outlier_scores(x, _ocfg())
    np.testing.assert_allclose(again, nll, rtol=1e-5)  # seeded: the same flow twice


def test_truth_precision_is_counted_on_planted_truth():
    n = 200
    nll = {"physics": np.linspace(100, 0, n), "instrument": np.linspace(0, 100, n)}  # physics: row 0 least likely
    rare = np.zeros(n, bool)
    rare[[0, 2, 150]] = True
    patho = np.zeros(n, bool)
    patho[[199, 198, 197, 196, 10]] = True
    rows = truth_precision_rows(nll, {s: rare for s in nll}, {s: patho for s in nll}, top=4)
    m = {r["metric"]: r["value"] for r in rows}
    assert set(pd.DataFrame(rows).columns) == {"metric", "value", "note"}
    assert m["base_rate_rare"] == pytest.approx(3 / n)
    assert m["base_rate_pathology"] == pytest.approx(5 / n)
    assert m["physics_top4_rare"] == pytest.approx(2 / 4)  # rows 0 and 2 among rows 0..3
    assert m["physics_top4_pathology"] == 0.0
    assert m["physics_top1pct_rare"] == pytest.approx(1 / 2)  # ceil(1% of 200) = 2 rows: 0, 1
    assert m["instrument_top4_pathology"] == 1.0  # rows 199..196
    assert m["instrument_top1pct_pathology"] == 1.0
    assert m["instrument_top4_rare"] == 0.0
    # Four pathologies beat all 195 clean rows, row 10 beats rows 0..9: AUC = (4 * 195 + 10) / (5 * 195).
    assert m["instrument_auc_pathology"] == pytest.approx((4 * 195 + 10) / (5 * 195))
    assert m["physics_auc_pathology"] == pytest.approx(1 - (4 * 195 + 10) / (5 * 195))


def _write_inputs(tmp_path, n=80, with_shard=True):
    """Planted HSC embeddings: two physics outliers (truth mergers), two instrument outliers (pathologies)."""
    rng = np.random.default_rng(1)
    pairs = np.arange(n)
    hsc_ids = (10_000 + pairs).astype(np.int64)
    phys = rng.normal(size=(n, 6))
    inst = rng.normal(size=(n, 3))
    phys[[5, 17]] += 12.0
    inst[[30, 41]] -= 12.0
    frames = []
    for s, survey in enumerate(("hsc", "legacysurvey")):
        ids = hsc_ids.astype(str) if s == 0 else np.array([f"brick-{i}" for i in pairs])
        frames.append(
            pd.concat(
                [
                    pd.DataFrame({"object_id": ids, "pair": pairs, "survey": survey, "split": "train"}),
                    pd.DataFrame(phys, columns=[f"phys_{j}" for j in range(6)]),
                    pd.DataFrame(inst + s, columns=[f"inst_{j}" for j in range(3)]),
                ],
                axis=1,
            )
        )
    emb = pd.concat(frames, ignore_index=True)
    emb.to_parquet(tmp_path / "embeddings.parquet")
    base = emb[["object_id", "pair", "survey"]].copy()
    base = pd.concat([base, pd.DataFrame(rng.normal(size=(2 * n, 5)), columns=[f"phys_{j}" for j in range(5)])], axis=1)
    base.to_parquet(tmp_path / "random_init_embeddings.parquet")
    truth_ids = 500 + pairs[::-1]
    pd.DataFrame({"pair": pairs, "truth_id": pd.array(truth_ids, dtype="Int64"), "object_id": hsc_ids}).to_parquet(
        tmp_path / "meta_hsc.parquet"
    )
    cls = np.array(["normal"] * n, dtype=object)
    cls[[5, 17]] = ["merger", "lens"]
    flags = {f"hsc_{p}": np.zeros(n, bool) for p in ("saturated_star", "stripe", "high_noise")}
    flags["hsc_saturated_star"][30] = True
    flags["hsc_stripe"][41] = True
    flags["hsc_high_noise"][41] = True
    pd.DataFrame({"truth_id": truth_ids, "galaxy_class": cls, **flags}).sample(frac=1, random_state=0).to_parquet(
        tmp_path / "truth.parquet"
    )
    np.save(tmp_path / "images_hsc.npy", rng.normal(size=(n, 4, 12, 12)).astype(np.float32))
    shard = tmp_path / "raw" / "healpix=0" / "001-of-001.hdf5"
    if with_shard:
        f = create_shard(shard, SURVEYS["hsc"], {"object_id": hsc_ids, "ra": np.zeros(n), "dec": np.zeros(n)}, 20)
        with f:
            f["image_array"][...] = rng.gamma(1.0, size=(n, 5, 20, 20)).astype(np.float32)
    pd.DataFrame({"object_id": hsc_ids, "file": str(shard), "row": pairs}).to_parquet(tmp_path / "catalog_hsc.parquet")


def _run(tmp_path, truth=True, baseline="random_init_embeddings.parquet", baseline_scores=None, out="out"):
    cfg = tiny_config(experiments={"outliers": FAST})
    return run_outliers(
        cfg["experiments"]["outliers"],
        embeddings=tmp_path / "embeddings.parquet",
        baseline=tmp_path / baseline if baseline else None,
        baseline_scores=baseline_scores,
        catalog=tmp_path / "catalog_hsc.parquet",
        meta=tmp_path / "meta_hsc.parquet",
        images=tmp_path / "images_hsc.npy",
        truth=tmp_path / "truth.parquet" if truth else None,
        figure=tmp_path / out / "fig3.png",
        table=tmp_path / out / "outliers.csv",
        truth_table=tmp_path / out / "truth_outliers.csv",
        scores=tmp_path / out / "outlier_scores.parquet",
    )


@pytest.mark.slow  # trains the outlier flow (8-45 s on the shared 2-core machine)
def test_run_outliers_writes_contract_files_and_finds_planted_objects(tmp_path, monkeypatch):
    _write_inputs(tmp_path)
    sources = []
    real_plot = outlier_plots.plot_outliers

    shown = {}

    def spy(content, out):
        sources.extend(item.source for items in content.panels.values() for item in items)
        shown.update(content.panels)
        shown["subtitles"] = content.subtitles
        real_plot(content, out)

    monkeypatch.setattr(outlier_plots, "plot_outliers", spy)
    _run(tmp_path)
    table = pd.read_csv(tmp_path / "out" / "outliers.csv")
    assert list(table.columns) == ["space", "rank", "pair", "object_id", "nll", "class", "pathology"]
    assert table.groupby("space").size().to_dict() == {"physics": 3, "instrument": 3, "random_init": 3}
    phys = table[table["space"] == "physics"]
    assert set(phys["pair"].head(2)) == {5, 17} and set(phys["class"].head(2)) == {"merger", "lens"}
    inst = table[table["space"] == "instrument"]
    assert set(inst["pair"].head(2)) == {30, 41}
    assert set(inst["pathology"].head(2)) == {"saturated_star", "stripe+high_noise"}
    assert (np.diff(phys["nll"]) <= 0).all()
    # Every object's score in every space (the comparison ranks them); the top rows are the table's.
    scores = pd.read_parquet(tmp_path / "out" / "outlier_scores.parquet")
    assert list(scores.columns) == list(SCORE_COLUMNS)
    assert scores.groupby("space").size().to_dict() == {"physics": 80, "instrument": 80, "random_init": 80}
    top = scores[scores["space"] == "physics"].nlargest(3, "nll")
    np.testing.assert_allclose(top["nll"].to_numpy(), phys["nll"].to_numpy(), rtol=1e-6)
    assert list(top["pair"]) == list(phys["pair"])
    truth = pd.read_csv(tmp_path / "out" / "truth_outliers.csv")
    assert list(truth.columns) == ["metric", "value", "note"]
    m = dict(zip(truth["metric"], truth["value"], strict=True))
    assert m["physics_top3_rare"] == pytest.approx(2 / 3) and m["physics_top3_pathology"] == 0.0
    assert m["instrument_top3_pathology"] == pytest.approx(2 / 3) and m["instrument_top3_rare"] == 0.0
    assert m["base_rate_rare"] == pytest.approx(2 / 80)
    assert (tmp_path / "out" / "fig3.png").stat().st_size > 10_000
    assert sources and all(s == "raw 20px" for s in sources)  # the wide raw cutout, read from the shard
    assert [p.flag for p in shown["ours: physics (6-D)"][:2]] == ["rare", "rare"]  # frames follow the truth
    assert [p.flag for p in shown["ours: instrument (3-D)"][:2]] == ["pathology", "pathology"]
    assert set(shown["subtitles"]) == {"ours: physics (6-D)", "ours: instrument (3-D)", "random-init encoder (5-D)"}


@pytest.mark.slow  # trains the outlier flow (8-45 s on the shared 2-core machine)
def test_real_data_without_truth_and_unreadable_shards(tmp_path, monkeypatch):
    _write_inputs(tmp_path, with_shard=False)
    seen = []
    monkeypatch.setattr(
        outlier_plots,
        "plot_outliers",
        lambda content, out: seen.extend(i.source for v in content.panels.values() for i in v),
    )
    _run(tmp_path, truth=False)
    table = pd.read_csv(tmp_path / "out" / "outliers.csv")
    assert list(table.columns) == ["space", "rank", "pair", "object_id", "nll"]
    assert pd.read_csv(tmp_path / "out" / "truth_outliers.csv").empty
    assert seen and all(s == "preprocessed 12px" for s in seen)  # fell back to images_hsc.npy


@pytest.mark.slow  # trains the outlier flow (8-45 s on the shared 2-core machine)
def test_aion_baseline_is_named_and_aligned_by_object_id(tmp_path):
    _write_inputs(tmp_path)
    emb = pd.read_parquet(tmp_path / "embeddings.parquet")
    hsc_ids = emb.loc[emb["survey"] == "hsc", "object_id"].to_numpy()
    aion = pd.DataFrame({"object_id": hsc_ids[::-1][:50], "survey": "hsc"})
    aion[[f"f{j}" for j in range(7)]] = np.arange(50)[:, None] * np.ones(7)
    aion.to_parquet(tmp_path / "aion_base.parquet")
    name, feats, pos = read_baseline(tmp_path / "aion_base.parquet", hsc_ids)
    assert name == "aion" and feats.shape == (50, 7)
    assert np.array_equal(hsc_ids[pos], hsc_ids[::-1][:50][feats[:, 0].astype(int)])
    _run(tmp_path, baseline="aion_base.parquet")
    assert "aion" in set(pd.read_csv(tmp_path / "out" / "outliers.csv")["space"])


def test_missing_columns_name_the_file(tmp_path):
    _write_inputs(tmp_path)
    meta = pd.read_parquet(tmp_path / "meta_hsc.parquet").drop(columns=["truth_id"])
    meta.to_parquet(tmp_path / "meta_hsc.parquet")
    with pytest.raises(ValueError, match=r"meta_hsc\.parquet: missing column\(s\) truth_id"):
        hsc_truth(tmp_path / "meta_hsc.parquet", tmp_path / "truth.parquet", np.arange(3))
    with pytest.raises(ValueError, match=r"meta_hsc\.parquet: missing column\(s\) truth_id"):
        _run(tmp_path)
    assert not (tmp_path / "out" / "outliers.csv").exists()
    pd.DataFrame({"object_id": ["1"], "phys_0": [1.0]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"bad\.parquet: missing column\(s\) survey"):
        read_baseline(tmp_path / "bad.parquet", np.array(["1"]))


@pytest.mark.slow  # trains the outlier flow (8-45 s on the shared 2-core machine)
def test_baseline_flow_fitted_once_gives_the_per_run_tables(tmp_path):
    """The dataset-level baseline flow (baseline_outliers rule) scores exactly what a run fitting it
    itself would: same rows, order and seed. AION covering 50 of the 80 objects, listed in another
    order, checks the alignment by object_id as well."""
    _write_inputs(tmp_path)
    emb = pd.read_parquet(tmp_path / "embeddings.parquet")
    hsc_ids = emb.loc[emb["survey"] == "hsc", "object_id"].to_numpy()
    aion = pd.DataFrame({"object_id": hsc_ids[::-1][:50], "survey": "hsc"})
    aion[[f"f{j}" for j in range(7)]] = np.random.default_rng(3).normal(size=(50, 7))
    aion.to_parquet(tmp_path / "aion_base.parquet")
    _run(tmp_path, baseline="aion_base.parquet", out="per_run")
    ocfg = tiny_config(experiments={"outliers": FAST})["experiments"]["outliers"]
    scores = tmp_path / "baselines" / "outlier_scores.parquet"
    run_baseline_outliers(ocfg, tmp_path / "aion_base.parquet", tmp_path / "meta_hsc.parquet", scores)
    base = pd.read_parquet(scores)
    assert set(base["space"]) == {"aion"} and len(base) == 50 and set(base["dim"]) == {7}
    _run(tmp_path, baseline=None, baseline_scores=scores, out="read")
    for name in ("outliers.csv", "truth_outliers.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "read" / name), pd.read_csv(tmp_path / "per_run" / name))
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "read" / "outlier_scores.parquet"),
        pd.read_parquet(tmp_path / "per_run" / "outlier_scores.parquet"),
    )
    # A scores file from another sky (an object the run does not have) is refused, naming it.
    base.loc[0, "object_id"] = "not-a-run-object"
    base.to_parquet(tmp_path / "other.parquet")
    with pytest.raises(ValueError, match=r"other\.parquet: object_id not-a-run-object is not among the run"):
        read_baseline_scores(tmp_path / "other.parquet", hsc_ids)
    with pytest.raises(ValueError, match=r"needs a baseline"):
        _run(tmp_path, baseline=None, out="none")
