"""summary.md with intervals: CIs beside every R^2, the verdicts, the neighbour-set probe and optional tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from whatsreal.experiments.ablation import ABLATION_COLUMNS
from whatsreal.experiments.neighbour_probe import NEIGHBOUR_PROBE_COLUMNS
from whatsreal.experiments.probes import table5_columns
from whatsreal.experiments.summary import ExtraTable, write_summary
from whatsreal.experiments.truth_metrics import collect_truth_metrics, write_truth_table

from .conftest import tiny_config


def _table5(path: Path) -> None:
    """Two truth targets: physics wins the physics one decisively, the instrument one is a tie."""
    cols = table5_columns(["ours_physics", "ours_instrument", "random_init"])
    rows = []
    for target, group, phys, inst, diff_ci in (
        ("true_e1", "physics", 0.8, 0.1, (0.6, 0.8)),
        ("true_hsc_sky_sigma", "hsc_instrument", 0.4, 0.45, (-0.12, 0.03)),
    ):
        row = dict.fromkeys(cols, np.nan)
        row |= {"target": target, "label": target.upper(), "group": group, "truth": True}
        row |= {"ours_physics": phys, "ours_instrument": inst, "random_init": 0.2, "pixel_floor": 0.9}
        for rep, v in (("ours_physics", phys), ("ours_instrument", inst), ("random_init", 0.2), ("pixel_floor", 0.9)):
            row[f"{rep}_ci_lo"], row[f"{rep}_ci_hi"] = v - 0.05, v + 0.05
        row |= {"diff_phys_minus_inst": phys - inst, "diff_ci_lo": diff_ci[0], "diff_ci_hi": diff_ci[1]}
        row |= {"n_train": 90, "n_test": 10}
        rows.append(row)
    pd.DataFrame(rows, columns=cols).to_csv(path, index=False)


def _ablation(path: Path) -> None:
    row = dict.fromkeys(ABLATION_COLUMNS, 0.5)
    row |= {"target": "legacy_galdepth", "label": "galaxy depth", "group": "legacysurvey_instrument", "truth": False}
    row |= {"reference_instrument": 0.7, "ablated_instrument": 0.2, "random_init": 0.1234}
    row |= {"diff_instrument": 0.5, "diff_instrument_ci_lo": 0.41, "diff_instrument_ci_hi": 0.59}
    pd.DataFrame([row], columns=list(ABLATION_COLUMNS)).to_csv(path, index=False)


def _neighbours(path: Path) -> None:
    row = dict.fromkeys(NEIGHBOUR_PROBE_COLUMNS, 0.0)
    row |= {"survey": "hsc", "target": "true_hsc_psf_fwhm", "label": "true PSF FWHM", "group": "hsc_instrument"}
    row |= {"truth": True, "reference": 0.777, "reference_ci_lo": 0.7, "reference_ci_hi": 0.85}
    row |= {"reference_shuffled": -0.05, "diff_ref_minus_abl": 0.6, "diff_ref_minus_abl_ci_lo": 0.45}
    row |= {"diff_ref_minus_abl_ci_hi": 0.7}
    pd.DataFrame([row], columns=list(NEIGHBOUR_PROBE_COLUMNS)).to_csv(path, index=False)


def test_summary_shows_intervals_verdicts_and_the_neighbour_probe(tmp_path):
    cfg = tiny_config()
    main = tmp_path / "runs" / "main" / "tables"
    abl = tmp_path / "runs" / "random_neighbours" / "tables"
    main.mkdir(parents=True)
    abl.mkdir(parents=True)
    _table5(main / "table5_probes.csv")
    _table5(abl / "table5_probes.csv")
    _ablation(abl / "ablation_neighbours.csv")
    _neighbours(abl / "neighbour_probe.csv")
    write_truth_table(
        [{"metric": "r2_true_e1_ours_physics", "value": 0.8, "ci_lo": 0.75, "ci_hi": 0.85, "note": "n"}],
        main / "truth_probes.csv",
    )
    write_truth_table([{"metric": "lens_precision", "value": 0.5, "note": "no interval"}], main / "truth_outliers.csv")
    merged = collect_truth_metrics([main / "truth_probes.csv", main / "truth_outliers.csv"], main / "truth_metrics.csv")
    assert list(merged.columns) == ["experiment", "metric", "value", "ci_lo", "ci_hi", "note"]
    assert np.isnan(merged.set_index("metric").loc["lens_precision", "ci_lo"])
    text = write_summary(cfg, tmp_path, ["main", "random_neighbours"], tmp_path / "summary.md")
    assert "0.800 [0.750, 0.850]" in text  # physics R^2 with its interval
    assert "0.900 [0.850, 0.950]" in text  # the pixel floor
    assert "0.700 [0.600, 0.800]" in text  # phys - instr with its paired interval
    verdict = text[text.index("### Disentanglement verdict, run `main`") :]
    lines = [line for line in verdict.splitlines() if line.startswith("| TRUE_")]
    assert lines[0].endswith("| yes |") and lines[1].endswith("| no |")  # a tie is not a win
    assert "1 of 2 targets: the expected latent wins." in verdict
    assert "0.500 [0.410, 0.590] | yes |" in text  # the ablation drop, CI excluding 0
    assert "0.123" in text  # random-init column in the ablation table
    assert "Neighbour-set probe" in text and "0.777 [0.700, 0.850]" in text
    assert "0.800 [0.750, 0.850] | n |" in text  # truth metrics carry their interval
    assert "| 0.500 | no interval |" in text


def test_optional_tables_are_shown_when_present_and_skipped_when_absent(tmp_path):
    cfg = tiny_config()
    tables = tmp_path / "runs" / "main" / "tables"
    tables.mkdir(parents=True)
    text = write_summary(cfg, tmp_path, ["main"], tmp_path / "summary.md")
    assert "Conditioning gain" not in text  # absent file: no section, no error
    pd.DataFrame(
        {
            "survey": ["hsc", "hsc"],
            "half": ["instrument", "physics"],
            "gain": [0.0123, 0.002],
            "ci_lo": [0.01, -0.001],
            "ci_hi": [0.015, 0.004],
            "n_pairs": [64, 64],
        }
    ).to_csv(tables / "conditioning_gain.csv", index=False)
    pd.DataFrame({"direction": ["hsc"], "slope": [0.8], "ci_lo": [0.6], "ci_hi": [1.0]}).to_csv(
        tables / "spatial_structure.csv", index=False
    )  # any planned table of the run can be shown as an extra one
    slopes = ExtraTable(
        "spatial_structure.csv", "Fig 7 noise slope", value="slope", verdict="slope > 0.5", threshold=0.5
    )
    from whatsreal.experiments.summary import EXTRA_TABLES

    text = write_summary(
        cfg,
        tmp_path,
        ["main"],
        tmp_path / "summary.md",
        extra_tables=(*EXTRA_TABLES, slopes),
        extra_sections={"Timing": ["make run took 12 min"], "Frame": pd.DataFrame({"a": [1.23456]})},
    )
    # gains are printed to 4 decimals (they are ~1e-4 on the demo), other extra tables to 3
    assert "0.0123 [0.0100, 0.0150] | 64 | yes |" in text and "0.0020 [-0.0010, 0.0040] | 64 | no |" in text
    assert "| hsc | 0.800 [0.600, 1.000] | yes |" in text
    assert "## Timing" in text and "make run took 12 min" in text and "1.235" in text
