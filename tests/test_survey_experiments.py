"""The per-survey experiments of runs trained on N-way groups, on planted data: the probes find the
latent that carries a target, retrieval finds counterparts only where they are encoded, and a
direction samples exactly the galaxies both of its surveys saw, through the source view alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import tiny_config
from whatsreal.experiments.survey_directions import direction_rows, only_source_view
from whatsreal.experiments.survey_probes import (
    SurveyLatents,
    counterpart_ranks,
    oof_ridge,
    probe_table,
    retrieval_table,
    survey_targets,
)
from whatsreal.plan import nway_trained, run_figures, run_rules, summary_tables, survey_probed

BANDS = ["g", "r", "i", "z"]
PROBES = {"n_folds": 5, "alphas": [0.1, 1.0, 10.0], "seed": 0}
BOOTSTRAP = (200, 0, 0.95)


def _truth(n: int, surveys: list[str], rng: np.random.Generator) -> pd.DataFrame:
    """A truth table with every column the probes read, independent normal values."""
    cols = {"truth_id": np.arange(n)}
    for name in ("redshift", "log_mstar", "log_ssfr", "half_light_radius_arcsec", "sersic_n", "e1", "e2"):
        cols[name] = rng.normal(size=n)
    for b in BANDS:
        cols[f"mag_{b}"] = rng.normal(size=n)
    for s in surveys:
        for q in ("psf_fwhm", "sky_sigma", "psfdepth_mag"):
            shared = rng.normal(size=n)
            for b in BANDS:
                cols[f"{s}_{q}_{b}"] = shared + 0.01 * rng.normal(size=n)
    return pd.DataFrame(cols)


def _latents(truth: pd.DataFrame, survey: str, ids: np.ndarray, rng: np.random.Generator, swap: bool) -> SurveyLatents:
    """Physics latent = the galaxy's physical truth, instrument latent = the survey's conditions,
    each linearly mixed and with noise; ``swap`` exchanges the two."""
    targets = survey_targets(truth, ids, survey, BANDS)
    phys = targets[[c for c in targets if c.startswith("physics:")]].to_numpy()
    inst = targets[[c for c in targets if c.startswith("instrument:")]].to_numpy()
    phys = phys @ rng.normal(size=(phys.shape[1], 12)) + 0.05 * rng.normal(size=(len(ids), 12))
    inst = inst @ rng.normal(size=(inst.shape[1], 6)) + 0.05 * rng.normal(size=(len(ids), 6))
    if swap:
        phys, inst = np.hstack([inst, rng.normal(size=(len(ids), 6))]), phys
    split = np.where(np.arange(len(ids)) % 5 == 0, "val", "train")
    return SurveyLatents(rows=ids.copy(), physics=phys, instrument=inst, truth_id=ids, split=split)


def test_targets_are_the_survey_own_conditions_and_missing_ones_are_named():
    rng = np.random.default_rng(0)
    truth = _truth(50, ["hsc", "des"], rng)
    t = survey_targets(truth, np.arange(10), "des", BANDS)
    expected = truth.loc[:9, [f"des_psf_fwhm_{b}" for b in BANDS]].mean(axis=1)
    np.testing.assert_allclose(t["instrument:psf_fwhm"], expected)
    assert list(t.columns).count("physics:g-r") == 1 and "physics:mag" in t
    with pytest.raises(KeyError, match="legacysurvey_psf_fwhm_g"):
        survey_targets(truth, np.arange(10), "legacysurvey", BANDS)
    with pytest.raises(ValueError, match="truth_id"):
        survey_targets(truth, np.array([3, 999]), "des", BANDS)


def test_out_of_fold_ridge_recovers_a_planted_target_and_not_noise():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 8))
    y = x @ rng.normal(size=8) + 0.1 * rng.normal(size=400)
    y[::17] = np.nan  # unlabelled rows get no prediction and train nothing
    pred = oof_ridge(x, y, 5, [0.1, 1.0], 0)
    ok = np.isfinite(y)
    assert np.isnan(pred[~ok]).all()
    assert np.corrcoef(pred[ok], y[ok])[0, 1] > 0.98
    noise = oof_ridge(x, rng.normal(size=400), 5, [0.1, 1.0], 0)
    assert abs(np.corrcoef(noise, rng.normal(size=400))[0, 1]) < 0.2


@pytest.mark.parametrize("swap", [False, True])
def test_probes_credit_the_latent_that_carries_each_target(swap):
    """Planted disentangled latents win every target with CIs excluding 0; swapped ones lose all."""
    rng = np.random.default_rng(2)
    truth = _truth(300, ["hsc", "des"], rng)
    latents = {s: _latents(truth, s, np.arange(300), rng, swap) for s in ("hsc", "des")}
    table, _ = probe_table(latents, truth, BANDS, PROBES, BOOTSTRAP)
    assert set(table["survey"]) == {"hsc", "des"}
    assert set(table.loc[table["group"] == "instrument", "target"]) == {"psf_fwhm", "sky_sigma", "psfdepth_mag"}
    assert (table["diff_ci_lo"] <= table["diff"]).all() and (table["diff"] <= table["diff_ci_hi"]).all()
    if swap:
        assert not table["disentangled"].any()
        assert (table["diff_ci_hi"] < 0).all()
    else:
        assert table["disentangled"].all()
        assert (table.loc[table["group"] == "physics", "r2_physics"] > 0.9).all()


def test_counterpart_ranks_count_ties_against_the_query():
    pool = np.array([[0.0], [1.0], [1.0], [5.0]])
    queries = np.array([[0.1], [1.0], [4.0]])
    np.testing.assert_array_equal(counterpart_ranks(queries, pool, np.array([0, 1, 3])), [1, 2, 1])
    rng = np.random.default_rng(6)
    pool, own = rng.normal(size=(300, 16)), rng.permutation(300)[:70]
    queries = pool[own] + 0.5 * rng.normal(size=(70, 16))
    dist = ((queries[:, None, :] - pool[None, :, :]) ** 2).sum(axis=-1)
    brute = (dist <= dist[np.arange(70), own][:, None]).sum(axis=1)
    np.testing.assert_array_equal(counterpart_ranks(queries, pool, own, chunk=16), brute)


def test_retrieval_finds_counterparts_in_the_latent_that_encodes_the_galaxy():
    """Every ordered pair of surveys is scored on the held-out galaxies both saw; the physics latent
    (the same galaxy's truth in every survey) finds them, the instrument latent (each survey's own
    conditions, unrelated across surveys) scores about chance."""
    rng = np.random.default_rng(3)
    surveys = ["hsc", "legacysurvey", "des"]
    truth = _truth(200, surveys, rng)
    seen = {"hsc": np.arange(0, 150), "legacysurvey": np.arange(50, 200), "des": np.arange(0, 200, 2)}
    latents = {s: _latents(truth, s, seen[s], np.random.default_rng(4), False) for s in surveys}
    table = retrieval_table(latents, k=5)
    assert len(table) == 6 * 2
    for r in table.itertuples():
        both = np.intersect1d(seen[r.query], seen[r.pool])
        assert r.n_pool == both.size
        assert r.n_queries == (latents[r.query].split[np.searchsorted(seen[r.query], both)] == "val").sum()
        if r.space == "physics":
            assert r.top1 > 0.9
        else:
            assert r.topk < 5 * r.chance_topk
    assert (table["chance_topk"] == 5 / table["n_pool"]).all()


def test_a_direction_takes_held_out_galaxies_both_surveys_saw_in_one_seeded_order():
    seen = np.array([[1, 1, 0], [1, 0, 1], [1, 1, 1], [0, 1, 1], [1, 1, 0], [1, 1, 1]], bool)
    split = np.array(["val", "val", "val", "val", "train", "val"])
    usable = np.array([True, True, True, True, True, False])
    rows = direction_rows(seen, split, usable, 0, 1, 10, seed=0)
    assert sorted(rows) == [0, 2]
    assert direction_rows(seen, split, usable, 1, 0, 10, seed=0).tolist() == rows.tolist()
    assert direction_rows(seen, split, usable, 0, 1, 1, seed=0).tolist() == rows[:1].tolist()
    assert direction_rows(seen, split, usable, 2, 0, 10, seed=0).size == 2  # rows 1 and 2


def test_only_the_source_view_is_left_unmasked():
    surveys = ("hsc", "legacysurvey", "des", "space")
    batch = {"physics": torch.ones(2, 3, 4, 5, 5), "physics_mask": torch.ones(2, 3, dtype=torch.bool)}
    only_source_view(batch, surveys, target="legacysurvey", source="des")  # slots: hsc, des, space
    assert batch["physics_mask"].tolist() == [[False, True, False]] * 2
    assert batch["physics"][:, 1].eq(1).all() and batch["physics"][:, [0, 2]].eq(0).all()


def test_groups_runs_get_every_per_survey_experiment_and_pair_runs_the_probes_on_the_synthetic_sky():
    cfg = tiny_config(
        runs={"main": {"train": {"data": "groups"}}, "pairs": {}, "cvae": {"method": "cvae"}},
        experiments={"generative_runs": ["main", "pairs"]},
    )
    assert nway_trained(cfg, "main") and not nway_trained(cfg, "pairs")
    assert {"survey_probes", "survey_directions"} <= set(run_rules(cfg, "main"))
    assert {"survey_probes", "survey_directions"} <= set(run_figures(cfg, "main"))
    assert {"survey_probes.csv", "survey_retrieval.csv", "survey_directions.csv"} <= set(summary_tables(cfg, "main"))
    # A pair run: the probes on all pairs, never the directions (the pair counterfactuals are Fig 6).
    assert "survey_probes" in run_rules(cfg, "pairs") and "survey_directions" not in run_rules(cfg, "pairs")
    assert not survey_probed(cfg, "cvae") and "survey_probes" not in run_rules(cfg, "cvae")
    cfg["experiments"]["generative_runs"] = ["pairs"]
    assert "survey_directions" not in run_rules(cfg, "main") and "survey_probes" in run_rules(cfg, "main")
    cfg["dataset"]["source"] = "mmu"  # real data: no truth; the groups run keeps its retrieval
    assert survey_probed(cfg, "main") and not survey_probed(cfg, "pairs")


def test_a_far_out_latent_cannot_predict_beyond_the_labels_seen_in_training():
    """One galaxy whose latent is 50 sigma out (a saturated star) gets a prediction inside the
    training labels' range, so it cannot decide the R^2 alone."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 4))
    y = x[:, 0] + 0.1 * rng.normal(size=300)
    x[7] = 50.0
    pred = oof_ridge(x, y, 5, [1.0], 0)
    others = np.delete(np.arange(300), 7)
    assert y[others].min() <= pred[7] <= y[others].max()
    assert np.isfinite(pred).all() and np.corrcoef(pred[others], y[others])[0, 1] > 0.8


def _predictions(path, rng, noise: dict[str, float]) -> None:
    """A survey_probe_predictions.npz of two surveys whose instrument-latent predictions of the
    first instrument target carry ``noise[survey]`` of extra scatter; everything else exact-ish."""
    from whatsreal.io import write_npz

    arrays = {}
    for s, extra in noise.items():
        y = np.random.default_rng(11).normal(size=(400, 2))
        arrays |= {f"{s}_rows": np.arange(400), f"{s}_targets": np.array(["instrument:sky_sigma", "physics:e1"])}
        arrays[f"{s}_y"] = y
        arrays[f"{s}_physics"] = y + 0.3 * rng.normal(size=y.shape)
        inst = y + 0.3 * rng.normal(size=y.shape)
        inst[:, 0] += extra * rng.normal(size=400)
        arrays[f"{s}_instrument"] = inst
    write_npz(path, **arrays)


def test_the_survey_ablation_finds_the_survey_whose_instrument_latent_collapsed(tmp_path):
    """A planted collapse in one survey's instrument latent is a drop with a CI above 0 there, and
    no drop in the survey whose latent did not change; the two files must describe the same galaxies."""
    from whatsreal.experiments.survey_ablation import survey_ablation_table

    rng = np.random.default_rng(12)
    _predictions(tmp_path / "ref.npz", rng, {"hsc": 0.0, "des": 0.0})
    _predictions(tmp_path / "abl.npz", rng, {"hsc": 1.0, "des": 0.0})
    table = survey_ablation_table(tmp_path / "ref.npz", tmp_path / "abl.npz", BOOTSTRAP, tmp_path / "out.csv")
    key = table.set_index(["survey", "target", "latent"])
    assert key.loc[("hsc", "sky_sigma", "instrument"), "drop_ci_lo"] > 0.3
    unchanged = key.loc[("des", "sky_sigma", "instrument")]
    assert unchanged["drop_ci_lo"] < 0 < unchanged["drop_ci_hi"]
    assert pd.read_csv(tmp_path / "out.csv").shape == table.shape
    with np.load(tmp_path / "abl.npz") as f:
        changed = dict(f)
    changed["des_rows"] = changed["des_rows"][::-1].copy()
    np.savez(tmp_path / "bad.npz", **changed)
    with pytest.raises(ValueError, match="des's galaxies or targets differ"):
        survey_ablation_table(tmp_path / "ref.npz", tmp_path / "bad.npz", BOOTSTRAP, tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists()


def test_the_survey_ablation_runs_when_both_runs_get_the_probes_on_the_same_data():
    cfg = tiny_config(runs={"main": {}, "random_neighbours": {"neighbours": {"mode": "random"}}})
    assert {"ablation", "survey_ablation"} <= set(run_rules(cfg, "random_neighbours"))
    assert "survey_ablation.csv" in summary_tables(cfg, "random_neighbours")
    assert "survey_ablation" not in run_rules(cfg, "main")
    cfg["runs"]["main"] = {"train": {"data": "groups"}}  # different galaxies: nothing to pair
    assert "ablation" in run_rules(cfg, "random_neighbours")
    assert "survey_ablation" not in run_rules(cfg, "random_neighbours")
    cfg["runs"]["random_neighbours"]["train"] = {"data": "groups"}
    assert "survey_ablation" in run_rules(cfg, "random_neighbours")
    cfg["dataset"]["source"] = "mmu"  # no truth to probe
    assert "survey_ablation" not in run_rules(cfg, "random_neighbours")
