"""Condition alignment (issue 10): one survey's conditions predicting the other's, and what a
physics latent carries of it; the benchmark script end to end on the finished tiny workflow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from whatsreal.experiments.condition_alignment import (
    ALIGNMENT_COLUMNS,
    CONDITIONS_LINEAR,
    CONDITIONS_TREES,
    alignment_table,
    per_band_conditions,
)
from whatsreal.experiments.targets import truth_instrument_targets

from .conftest import REPO, run_script

SURVEYS = ("hsc", "legacysurvey")


def position_coded_sky(n: int = 500, seed: int = 0) -> tuple[pd.DataFrame, dict, np.ndarray]:
    """Conditions that are smooth functions of one position u on a patch: HSC's are cos and sin
    of 2 pi u, Legacy's cos and sin of 4 pi u, quadratic in HSC's (cos 4 pi u = cos^2 - sin^2), so
    HSC's conditions give Legacy's through where the galaxy lies, which a ridge cannot use."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(0, 1, n)
    noise = lambda: 0.02 * rng.standard_normal(n)  # noqa: E731
    hsc = np.column_stack([np.cos(2 * np.pi * u) + noise(), np.sin(2 * np.pi * u) + noise(), u * 0 + noise()])
    legacy = np.column_stack([np.cos(4 * np.pi * u) + noise(), np.sin(4 * np.pi * u) + noise(), noise()])
    targets = pd.DataFrame(
        {
            **dict(zip(truth_instrument_targets("hsc"), hsc.T, strict=True)),
            **dict(zip(truth_instrument_targets("legacysurvey"), legacy.T, strict=True)),
        }
    )
    return targets, {"hsc": hsc, "legacysurvey": legacy}, u


def table_for(targets: pd.DataFrame, conditions: dict, latents: dict) -> pd.DataFrame:
    return alignment_table(targets, conditions, latents, 5, [0.1, 1.0, 10.0], 0, 0, 200, 0.95)


def value(table: pd.DataFrame, source: str, rep: str, target: str) -> pd.Series:
    row = table[(table.source == source) & (table.representation == rep) & (table.target == target)]
    assert len(row) == 1, (source, rep, target)
    return row.iloc[0]


def test_trees_find_the_other_survey_s_conditions_through_position_where_a_ridge_does_not():
    targets, conditions, _ = position_coded_sky()
    table = table_for(targets, conditions, {})
    assert list(table.columns) == ALIGNMENT_COLUMNS
    assert len(table) == 2 * 2 * 3  # two directions, ridge and trees, three target conditions
    cos_legacy = "true_legacy_psf_fwhm"
    ridge = value(table, "hsc", CONDITIONS_LINEAR, cos_legacy)
    trees = value(table, "hsc", CONDITIONS_TREES, cos_legacy)
    assert ridge.r2 < 0.1
    assert trees.r2 > 0.8 and trees.ci_lo > 0.7
    assert trees.n == len(targets)
    # Legacy's cos 4 pi u and sin 4 pi u fix u only up to a half period: HSC's cos 2 pi u is
    # not a function of them, and the trees must not find it.
    assert value(table, "legacysurvey", CONDITIONS_TREES, "true_hsc_psf_fwhm").r2 < 0.2
    # Pure noise conditions are predicted by nothing.
    assert value(table, "hsc", CONDITIONS_TREES, "true_legacy_psfdepth_mag").ci_lo < 0.05


def test_a_physics_latent_that_carries_its_survey_s_conditions_is_told_from_one_that_does_not():
    targets, conditions, u = position_coded_sky()
    rng = np.random.default_rng(1)
    n = len(targets)
    leaky = np.column_stack([conditions["hsc"][:, :2], rng.standard_normal((n, 6))])
    clean = rng.standard_normal((n, 8))
    quadratic = np.column_stack([np.cos(4 * np.pi * u), rng.standard_normal((n, 7))])  # the other survey's, read
    latents = {"leaky": {"hsc": leaky}, "clean": {"hsc": clean}, "reads_legacy": {"hsc": quadratic}}
    table = table_for(targets, conditions, latents)
    own = "true_hsc_psf_fwhm"
    assert value(table, "hsc", "leaky physics latent", own).r2 > 0.9
    assert value(table, "hsc", "clean physics latent", own).r2 < 0.05
    assert value(table, "hsc", "reads_legacy physics latent", "true_legacy_psf_fwhm").r2 > 0.9
    assert value(table, "hsc", "clean physics latent", "true_legacy_psf_fwhm").r2 < 0.05
    # Each run gets rows on both surveys' conditions, for its one survey only.
    rows = table[table.representation == "leaky physics latent"]
    assert set(rows.source) == {"hsc"} and len(rows) == 6


def test_wrong_inputs_are_named():
    targets, conditions, _ = position_coded_sky(n=40)
    with pytest.raises(KeyError, match="true_legacy_sky_sigma"):
        table_for(targets.drop(columns=["true_legacy_sky_sigma"]), conditions, {})
    with pytest.raises(ValueError, match="run 'main': hsc physics latent has 39 rows but there are 40 pairs"):
        table_for(targets, conditions, {"main": {"hsc": np.zeros((39, 4))}})
    truth = pd.DataFrame({"truth_id": [3, 5], "hsc_psf_fwhm_g": [0.6, 0.7], "hsc_sky_sigma_g": [1.0, 2.0]})
    with pytest.raises(KeyError, match="hsc_psfdepth_mag_g"):
        per_band_conditions(truth, np.array([5, 3]), "hsc", ["g"])
    truth["hsc_psfdepth_mag_g"] = [26.0, 25.5]
    with pytest.raises(ValueError, match=r"truth_id\(s\) \[4\]"):
        per_band_conditions(truth, np.array([4]), "hsc", ["g"])
    got = per_band_conditions(truth, np.array([5, 3]), "hsc", ["g"])
    assert np.array_equal(got, [[0.7, 2.0, 25.5], [0.6, 1.0, 26.0]])  # in truth_id order asked, quantity by quantity


@pytest.mark.slow  # reads the finished tiny workflow (session fixture)
def test_the_script_tables_every_run_of_a_finished_workflow(finished_tiny_run, tmp_path):
    workdir, cfg, _ = finished_tiny_run
    out = tmp_path / "alignment.csv"
    cmd = [
        str(REPO / "benchmarks" / "condition_alignment.py"),
        "--data",
        str(workdir / "results" / "tiny"),
        "--config",
        str(REPO / "config" / "config.yaml"),
        str(cfg),
        "--out",
        str(out),
    ]
    res = run_script(*cmd)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    table = pd.read_csv(out)
    assert list(table.columns) == ALIGNMENT_COLUMNS
    runs = sorted(p.parent.name for p in (workdir / "results" / "tiny" / "runs").glob("*/embeddings.parquet"))
    assert runs and {f"{r} physics latent" for r in runs} <= set(table.representation)
    assert set(table.source) == set(SURVEYS)
    assert table.loc[table.representation == CONDITIONS_TREES, "r2"].notna().all()
    assert "true conditions (boosted trees)" in res.stdout
