"""Probe selection (issue 10): a latent read by ridge and by a probe chosen per latent in inner
folds; the benchmark script end to end on the finished tiny workflow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from whatsreal.experiments.probe_selection import SELECTION_COLUMNS, ProbeCandidates, oof_selected, selection_table
from whatsreal.experiments.targets import truth_instrument_targets

from .conftest import REPO, run_script

# Small MLPs keep the tests quick; the selection logic is the same at any width.
CANDIDATES = ProbeCandidates(
    alphas=[0.1, 1.0, 10.0, 100.0], mlp_penalties=(0.01, 1.0), mlp_hidden=(32,), inner_folds=3, max_iter=200
)


def r2(y: np.ndarray, p: np.ndarray) -> float:
    return float(1 - ((y - p) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def test_a_target_carried_nonlinearly_is_found_by_the_selected_probe_and_not_by_the_ridge():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 8))
    y = np.abs(x[:, 0]) + 0.1 * rng.standard_normal(600)  # symmetric in x0: no linear trace
    ridge, picks = oof_selected(x, y, 5, 0, CANDIDATES, select=False)
    assert picks == ["ridge"] * 5
    assert r2(y, ridge) < 0.05
    chosen, picks = oof_selected(x, y, 5, 0, CANDIDATES)
    assert len(picks) == 5 and all(p.startswith("mlp(") for p in picks)
    assert r2(y, chosen) > 0.6


def test_a_linear_target_keeps_the_ridge_s_score_and_bad_rows_train_nothing():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 40))  # wide and linear: where a loosely penalised MLP overfits
    y = x[:, :3].sum(axis=1) + 0.5 * rng.standard_normal(400)
    y[:7] = np.nan
    x[7, 5] = np.inf
    ridge, _ = oof_selected(x, y, 5, 0, CANDIDATES, select=False)
    chosen, picks = oof_selected(x, y, 5, 0, CANDIDATES)
    assert np.isnan(chosen[:8]).all() and np.isfinite(chosen[8:]).all()
    ok = np.isfinite(chosen)
    # Whatever each fold chose, it was chosen for its inner score: it cannot fall far below the ridge.
    assert r2(y[ok], chosen[ok]) > r2(y[ok], ridge[ok]) - 0.03
    assert set(picks) <= set(CANDIDATES.names())
    # A target no candidate can score (constant): every fold falls back to the ridge.
    _, picks = oof_selected(x[8:208], np.full(200, 3.0), 5, 0, CANDIDATES)
    assert picks == ["ridge"] * 5
    # Too few usable rows for outer x inner folds: all NaN, no fold run.
    pred, picks = oof_selected(x[:20], y[:20], 5, 0, CANDIDATES)
    assert np.isnan(pred).all() and picks == []


def test_a_capped_inner_selection_chooses_on_a_subset_and_still_predicts_every_row():
    from dataclasses import replace

    rng = np.random.default_rng(3)
    x = rng.standard_normal((1500, 8))
    y = np.abs(x[:, 0]) + 0.3 * rng.standard_normal(1500)
    # A cap above the training rows changes nothing, to the last digit (on fewer rows: quicker).
    full, picks_full = oof_selected(x[:120], y[:120], 5, 0, CANDIDATES)
    same, picks_same = oof_selected(x[:120], y[:120], 5, 0, replace(CANDIDATES, inner_max_rows=121))
    assert picks_same == picks_full and np.array_equal(same, full)
    _, picks_full = oof_selected(x, y, 5, 0, CANDIDATES)
    assert all(p.startswith("mlp(") for p in picks_full)
    # On 24 rows the MLPs cannot show what they would learn from 1,200: the choice leans to the
    # ridge, as documented; every row is still predicted by the refit on all training rows.
    tiny, picks_tiny = oof_selected(x, y, 5, 0, replace(CANDIDATES, inner_max_rows=24))
    assert picks_tiny.count("ridge") >= 4 and np.isfinite(tiny).all()
    # A cap of a few hundred rows still finds the nonlinear target.
    some, picks_some = oof_selected(x, y, 5, 0, replace(CANDIDATES, inner_max_rows=400))
    assert all(p.startswith("mlp(") for p in picks_some) and r2(y, some) > 0.4
    with pytest.raises(ValueError, match="inner_max_rows must be at least 2 x inner_folds = 6, got 5"):
        replace(CANDIDATES, inner_max_rows=5)
    with pytest.raises(ValueError, match="inner_folds must be at least 2"):
        replace(CANDIDATES, inner_folds=1)


def toy_sky(n: int = 500, seed: int = 2) -> tuple[pd.DataFrame, dict]:
    """HSC's PSF is in the instrument latent as its square only (ridge-invisible) and absent from
    the physics latent; HSC's sky noise is linear in both, more so in the instrument latent."""
    rng = np.random.default_rng(seed)
    psf, sky = rng.standard_normal(n), rng.standard_normal(n)
    hsc_names = truth_instrument_targets("hsc")
    targets = pd.DataFrame(
        {hsc_names[0]: psf**2 + 0.1 * rng.standard_normal(n), hsc_names[1]: sky, hsc_names[2]: rng.standard_normal(n)}
    )
    instrument = np.column_stack([psf, sky + 0.3 * rng.standard_normal(n), rng.standard_normal((n, 4))])
    physics = np.column_stack([sky + 1.0 * rng.standard_normal(n), rng.standard_normal((n, 11))])
    return targets, {"hsc": {"physics": physics, "instrument": instrument}}


def test_the_table_shows_a_nonlinear_lead_that_the_ridge_misses():
    targets, latents = toy_sky()
    table = selection_table(targets, latents, CANDIDATES, 5, 0, (200, 0, 0.95), ["psf_fwhm", "sky_sigma"])
    assert list(table.columns) == SELECTION_COLUMNS
    assert len(table) == 2 * 2  # two targets, ridge and selected
    row = table.set_index(["target", "probe"])
    psf = "true_hsc_psf_fwhm"
    assert row.loc[(psf, "ridge"), "lead_ci_lo"] < 0.05
    assert row.loc[(psf, "selected"), "lead"] > 0.5 and row.loc[(psf, "selected"), "lead_ci_lo"] > 0.4
    assert row.loc[(psf, "selected"), "r2_physics"] < 0.05
    sky = row.loc[("true_hsc_sky_sigma", "selected")]
    assert sky.lead_ci_lo > 0 and sky.r2_physics_ci_lo > 0.2
    assert (table.n == len(targets)).all()
    assert set(row.loc[(psf, "ridge"), ["picks_physics", "picks_instrument"]]) == {"ridge,ridge,ridge,ridge,ridge"}


def test_wrong_inputs_are_named():
    targets, latents = toy_sky(n=60)
    with pytest.raises(KeyError, match="true_hsc_sky_sigma"):
        selection_table(targets.drop(columns=["true_hsc_sky_sigma"]), latents, CANDIDATES, 5, 0, (20, 0, 0.95))
    short = {"hsc": {"physics": latents["hsc"]["physics"][:59], "instrument": latents["hsc"]["instrument"]}}
    with pytest.raises(ValueError, match="survey 'hsc': physics latent has 59 rows but there are 60 pairs"):
        selection_table(targets, short, CANDIDATES, 5, 0, (20, 0, 0.95))
    with pytest.raises(KeyError, match="survey 'hsc': no instrument latent"):
        selection_table(targets, {"hsc": {"physics": latents["hsc"]["physics"]}}, CANDIDATES, 5, 0, (20, 0, 0.95))


@pytest.mark.slow  # reads the finished tiny workflow (session fixture)
def test_the_script_tables_every_run_of_a_finished_workflow(finished_tiny_run, tmp_path):
    workdir, cfg, _ = finished_tiny_run
    out = tmp_path / "selection.csv"
    cmd = [
        str(REPO / "benchmarks" / "probe_selection.py"),
        "--data",
        str(workdir / "results" / "tiny"),
        "--config",
        str(REPO / "config" / "config.yaml"),
        str(cfg),
        "--targets",
        "psf_fwhm",
        "--mlp-penalties",
        "1.0",
        "--mlp-hidden",
        "16",
        "--inner-max-rows",
        "60",
        "--out",
        str(out),
    ]
    res = run_script(*cmd)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    table = pd.read_csv(out)
    assert list(table.columns) == ["run", *SELECTION_COLUMNS]
    runs = sorted(p.parent.name for p in (workdir / "results" / "tiny" / "runs").glob("*/embeddings.parquet"))
    assert runs and set(table.run) == set(runs)
    assert set(table.target) == {"true_hsc_psf_fwhm", "true_legacy_psf_fwhm"}
    assert set(table.probe) == {"ridge", "selected"}
    assert table[["r2_physics", "r2_instrument", "lead"]].notna().all().all()
    assert "candidates ['ridge', 'mlp(1)'], chosen on <= 60 rows per outer fold" in res.stdout
