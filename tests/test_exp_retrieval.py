"""Fig 5 (retrieval): planted duplicates are found, shuffled ones are not; lens queries; contract files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from whatsreal.experiments.metrics import neighbours_excluding
from whatsreal.experiments.retrieval import lens_pairs, retrieval_metrics, run_retrieval
from whatsreal.layout import DatasetLayout

from .conftest import tiny_config


def _embeddings(n: int, noise: float = 0.0, shuffle: bool = False, seed: int = 0) -> pd.DataFrame:
    """Physics: each pair's two views identical (+ ``noise``); instrument: survey offset (+ noise)."""
    rng = np.random.default_rng(seed)
    phys = rng.normal(size=(n, 8))
    frames = []
    for s, survey in enumerate(("hsc", "legacysurvey")):
        p = phys + rng.normal(scale=noise, size=phys.shape) if noise else phys.copy()
        if shuffle and s == 1:
            p = p[rng.permutation(n)]
        frames.append(
            pd.concat(
                [
                    pd.DataFrame(
                        {
                            "object_id": [f"{survey}-{i}" for i in range(n)],
                            "pair": np.arange(n),
                            "survey": survey,
                            "ra": 10 + np.arange(n) * 0.01,
                            "dec": np.zeros(n),
                            "split": np.where(np.arange(n) % 4 == 0, "val", "train"),
                        }
                    ),
                    pd.DataFrame(p, columns=[f"phys_{j}" for j in range(8)]),
                    pd.DataFrame(rng.normal(size=(n, 3)) + 20 * s, columns=[f"inst_{j}" for j in range(3)]),
                ],
                axis=1,
            )
        )
    return pd.concat(frames, ignore_index=True)


def _metrics(emb: pd.DataFrame, space: str, k: int = 5) -> dict:
    x = emb[[c for c in emb.columns if c.startswith(space)]].to_numpy()
    queries = np.flatnonzero(emb["split"] == "val")
    return retrieval_metrics(x, emb, queries, k)


@pytest.mark.parametrize("noise", [0.0, 1e-3])
def test_planted_duplicates_are_the_top_neighbour(noise):
    emb = _embeddings(200, noise=noise)
    phys = _metrics(emb, "phys_")
    assert phys["top1"] == 1.0 and phys["topk"] == 1.0
    assert phys["top1_hsc"] == 1.0 and phys["top1_legacysurvey"] == 1.0
    inst = _metrics(emb, "inst_")
    assert inst["other_survey"] == 0.0 and inst["top1"] == 0.0


def test_shuffled_counterparts_are_found_at_chance():
    phys = _metrics(_embeddings(200, shuffle=True), "phys_")
    assert phys["top1"] < 0.05 and phys["topk"] < 0.1


def test_the_query_row_itself_is_never_a_neighbour():
    x = np.zeros((6, 2))  # all rows identical: every row ties with the query
    nbrs = neighbours_excluding(x, np.arange(6), 3)
    assert nbrs.shape == (6, 3)
    assert not (nbrs == np.arange(6)[:, None]).any()


def _write_data(tmp_path, emb: pd.DataFrame, lens_pairs_: list[int]) -> None:
    n = int(emb["pair"].max()) + 1
    rng = np.random.default_rng(2)
    layout = DatasetLayout(tmp_path)
    for survey in ("hsc", "legacysurvey"):
        np.save(layout.images(survey), rng.normal(size=(n, 4, 10, 10)).astype(np.float32))
    truth_ids = 1000 + np.arange(n)
    hsc = emb[emb["survey"] == "hsc"]
    pd.DataFrame(
        {
            "pair": hsc["pair"],
            "truth_id": pd.array(truth_ids[hsc["pair"]], dtype="Int64"),
            "ra": hsc["ra"],
            "dec": hsc["dec"],
        }
    ).to_parquet(layout.meta("hsc"))
    cls = np.array(["normal"] * n, dtype=object)
    cls[lens_pairs_] = "lens"
    pd.DataFrame({"truth_id": truth_ids, "galaxy_class": cls}).to_parquet(tmp_path / "truth.parquet")
    emb.to_parquet(tmp_path / "embeddings.parquet")


def _run(tmp_path, lenses="truth.parquet"):
    cfg = tiny_config(experiments={"retrieval": {"k": 5, "n_show": 4}})
    run_retrieval(
        cfg["experiments"]["retrieval"],
        tmp_path / "embeddings.parquet",
        DatasetLayout(tmp_path),
        tmp_path / lenses if lenses else None,
        tmp_path / "out" / "fig5.png",
        tmp_path / "out" / "ret.csv",
        radius_arcsec=float(cfg["crossmatch"]["radius_arcsec"]),
    )
    table = pd.read_csv(tmp_path / "out" / "ret.csv")
    assert list(table.columns) == ["metric", "value", "note"]
    assert (tmp_path / "out" / "fig5.png").stat().st_size > 10_000
    return dict(zip(table["metric"], table["value"], strict=True)), table


def test_run_retrieval_writes_metrics_and_finds_clustered_lenses(tmp_path):
    emb = _embeddings(120)
    lenses = [3, 20, 44, 67, 90, 111]
    for survey in ("hsc", "legacysurvey"):  # lenses share a corner of physics space
        rows = emb["survey"].eq(survey) & emb["pair"].isin(lenses)
        emb.loc[rows, [f"phys_{j}" for j in range(8)]] = 8.0 + 0.01 * np.arange(rows.sum())[:, None] + np.zeros(8)
    _write_data(tmp_path, emb, lenses)
    m, _ = _run(tmp_path)
    assert m["physics_top5_counterpart"] == 1.0
    assert m["instrument_top5_other_survey"] == 0.0
    assert m["lens_queries"] == 6
    assert m["lens_fraction_top4_physics"] == 1.0  # 5 other lenses, all nearer than any normal galaxy
    assert m["lens_base_rate"] == pytest.approx(5 / 119)
    assert m["lens_fraction_top4_instrument"] < 0.5
    assert m["chance_top1_counterpart"] == pytest.approx(1 / 239)


def test_no_lens_is_reported_not_fatal(tmp_path):
    _write_data(tmp_path, _embeddings(40), [])
    m, table = _run(tmp_path)
    assert m["lens_queries"] == 0 and np.isnan(m["lens_fraction_top4_physics"])
    assert "no known lens" in table.set_index("metric").loc["lens_queries", "note"]
    m, table = _run(tmp_path, lenses=None)
    assert "no lens catalogue" in table.set_index("metric").loc["lens_queries", "note"]


def test_real_lens_catalogue_is_matched_by_position(tmp_path):
    emb = _embeddings(30)
    _write_data(tmp_path, emb, [])
    hsc = emb[emb["survey"] == "hsc"]
    near = hsc.iloc[[4, 9]]
    pd.DataFrame(
        {"ra": [*(near["ra"] + 0.5 / 3600), 200.0], "dec": [*near["dec"], -30.0], "name": ["a", "b", "far"]}
    ).to_csv(tmp_path / "lenses.csv", index=False)
    assert lens_pairs(tmp_path / "lenses.csv", tmp_path / "meta_hsc.parquet", 1.0).tolist() == [4, 9]
    assert lens_pairs(tmp_path / "lenses.csv", tmp_path / "meta_hsc.parquet", 0.2).tolist() == []
    m, _ = _run(tmp_path, lenses="lenses.csv")
    assert m["lens_queries"] == 2
    pd.DataFrame({"ra": [1.0]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad\.csv: missing column\(s\) dec"):
        lens_pairs(tmp_path / "bad.csv", tmp_path / "meta_hsc.parquet", 1.0)


def test_missing_column_names_file_and_column(tmp_path):
    emb = _embeddings(20)
    _write_data(tmp_path, emb.drop(columns=["split"]), [])
    with pytest.raises(ValueError, match=r"embeddings\.parquet: missing column\(s\) split"):
        _run(tmp_path)
    _write_data(
        tmp_path, emb.drop(columns=["phys_0", "phys_1", "phys_2", "phys_3", "phys_4", "phys_5", "phys_6", "phys_7"]), []
    )
    with pytest.raises(ValueError, match=r"embeddings\.parquet: missing column\(s\) phys_0"):
        _run(tmp_path)
    assert not (tmp_path / "out" / "ret.csv").exists()


def test_missing_images_fail_before_the_table_is_written(tmp_path):
    _write_data(tmp_path, _embeddings(20), [])
    DatasetLayout(tmp_path).images("legacysurvey").unlink()
    with pytest.raises(FileNotFoundError, match=r"images_legacysurvey\.npy: file not found"):
        _run(tmp_path)
    assert not (tmp_path / "out" / "ret.csv").exists()
