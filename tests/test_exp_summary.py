"""The truth-metric collector and summary.md, on planted tables."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import tiny_config
from whatsreal.experiments.summary import PAPER_ROW_OF_TARGET, write_summary
from whatsreal.experiments.truth_metrics import collect_truth_metrics, write_truth_table
from whatsreal.layout import DatasetLayout
from whatsreal.plan import summary_tables


def test_truth_metrics_are_tagged_by_experiment(tmp_path):
    write_truth_table([{"metric": "r2_redshift", "value": 0.9, "note": "n=10"}], tmp_path / "truth_probes.csv")
    write_truth_table([], tmp_path / "truth_outliers.csv")  # real data: header only
    merged = collect_truth_metrics([tmp_path / "truth_probes.csv", tmp_path / "truth_outliers.csv"], tmp_path / "m.csv")
    assert list(merged.columns) == ["experiment", "metric", "value", "note"]
    assert merged["experiment"].tolist() == ["probes"]
    assert pd.read_csv(tmp_path / "m.csv")["value"].tolist() == [0.9]


def test_truth_metrics_name_the_bad_file(tmp_path):
    pd.DataFrame({"metric": ["a"]}).to_csv(tmp_path / "truth_probes.csv", index=False)
    with pytest.raises(ValueError, match=r"truth_probes\.csv: missing column\(s\) value, note"):
        collect_truth_metrics([tmp_path / "truth_probes.csv"], tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()


def test_summary_puts_paper_numbers_beside_ours(tmp_path):
    cfg = tiny_config()
    tables = tmp_path / "runs" / "main" / "tables"
    tables.mkdir(parents=True)
    target, paper_row = next(iter(PAPER_ROW_OF_TARGET.items()))
    pd.DataFrame(
        {
            "target": [target, "true_redshift"],
            "label": ["x", "true redshift"],
            "group": ["physics", "physics"],
            "truth": [False, True],
            "ours_physics": [0.6543, 0.777],
            "ours_instrument": [0.1, 0.2],
            "random_init": [0.3, 0.4],
            "cross_predict": [float("nan"), float("nan")],
            "n_train": [90, 90],
            "n_test": [10, 10],
        }
    ).to_csv(tables / "table5_probes.csv", index=False)
    pd.DataFrame(
        {
            "direction": ["hsc"],
            "n_galaxies": [4],
            "n_samples": [2],
            "mse_samples": [0.1234],
            "mse_posterior_mean": [0.1],
        }
    ).to_csv(tables / "counterfactual_mse.csv", index=False)
    text = write_summary(cfg, tmp_path, ["main", "random_neighbours"], tmp_path / "summary.md")
    assert (tmp_path / "summary.md").read_text() == text
    assert paper_row in text and "0.654" in text  # our value beside the paper's row
    assert "0.081" in text and "0.123" in text  # paper vs our counterfactual MSE
    assert "true redshift" in text and "0.777" in text
    assert "## Run `random_neighbours`" in text  # a run without tables still gets its heading


def test_summary_reads_only_the_tables_the_plan_builds(tmp_path):
    """A table left from an earlier config (here: counterfactuals of a run that no longer samples) is not shown."""
    cfg = tiny_config()
    assert "counterfactual_mse.csv" not in summary_tables(cfg, "random_neighbours")
    for run in ("main", "random_neighbours"):
        tables = DatasetLayout(tmp_path).run(run).table("counterfactual_mse.csv")
        tables.parent.mkdir(parents=True)
        pd.DataFrame(
            {"direction": ["hsc"], "n_galaxies": [4], "n_samples": [2], "mse_samples": [0.5 if run == "main" else 0.9]}
        ).to_csv(tables, index=False)
    text = write_summary(cfg, DatasetLayout(tmp_path), ["main", "random_neighbours"], tmp_path / "summary.md")
    assert "### Counterfactual generation, run `main`" in text and "0.500" in text
    assert "### Counterfactual generation, run `random_neighbours`" not in text and "0.900" not in text
