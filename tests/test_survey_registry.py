"""The survey registry (config ``surveys``): HSC and Legacy keep today's facts and sky, further
surveys are simulated, catalogued and matched N ways from a config entry alone, and a bad
registry is refused naming its key."""

from __future__ import annotations

import copy
import filecmp
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO, merge_into, save_untrained_checkpoint, tiny_config, tiny_model_config
from whatsreal.config import SCHEMA_PATH, ConfigError, check_config_files, read_yaml, validate_config
from whatsreal.data import stages
from whatsreal.data.mmu import MMUFormatError
from whatsreal.layout import DatasetLayout
from whatsreal.sim.sky import simulate_sky
from whatsreal.surveys import SURVEY_ORDER, SURVEYS, Survey, survey_registry

SCHEMA_DEFAULT_FACTS = {
    # Written out here, not read from the schema: a changed default must fail this test.
    "hsc": Survey(
        "hsc",
        ("g", "r", "i", "z", "y"),
        ("hsc-g", "hsc-r", "hsc-i", "hsc-z", "hsc-y"),
        0.168,
        27.0,
        (3.240, 2.276, 1.633, 1.263, 1.075),
        True,
        "hsc",
    ),
    "legacysurvey": Survey(
        "legacysurvey",
        ("g", "r", "i", "z"),
        ("des-g", "des-r", "des-i", "des-z"),
        0.262,
        22.5,
        (3.214, 2.165, 1.592, 1.211),
        False,
        "legacysurvey",
    ),
}

# A fourth, space-like survey in the hsc file format: added by config alone.
SPACE = {
    "surveys": {
        "space": {
            "format": "hsc",
            "bands": ["g", "r", "i", "z"],
            "band_strings": ["sp-g", "sp-r", "sp-i", "sp-z"],
            "pixel_scale": 0.1,
            "zero_point": 25.0,
            "extinction_coeff": [3.2, 2.2, 1.6, 1.2],
            "mask_per_band": True,
        }
    },
    "simulation": {
        "surveys": {
            "space": {
                "footprint": {"ra_min": 0.3, "ra_max": 0.7},
                "psf_fwhm_arcsec": {"g": 0.34, "r": 0.35, "i": 0.36, "z": 0.38},  # >= 2.2 pixels: the PSF model's range
                "psf_fwhm_scatter_dex": 0.03,
                "depth_mag": {"g": 26.0, "r": 26.0, "i": 25.8, "z": 25.5},
                "nexp": {"g": 4, "r": 4, "i": 4, "z": 4},
                "selection": {"band": "i", "mag_max": 23.0},
            }
        }
    },
    "preprocess": {"crop": {"space": 48}, "clamp": {"space": [300, 400, 700, 1200]}},
}


def _three_survey_overlay() -> dict:
    """config/sim_three.yaml without its dataset name."""
    overlay = read_yaml(REPO / "config" / "sim_three.yaml")
    overlay.pop("dataset")
    return overlay


def _config(*overlays: dict) -> dict:
    merged: dict = {}
    for overlay in overlays:
        merge_into(merged, overlay)
    return tiny_config(**merged)


def test_the_default_registry_is_hsc_and_legacy_with_todays_facts():
    assert SURVEYS == SCHEMA_DEFAULT_FACTS
    assert survey_registry(tiny_config()) == SCHEMA_DEFAULT_FACTS
    assert tuple(SURVEYS) == SURVEY_ORDER


def test_added_surveys_come_after_the_paired_two_whatever_the_file_order():
    cfg = _config(_three_survey_overlay(), SPACE)
    assert list(survey_registry(cfg)) == ["hsc", "legacysurvey", "des", "space"]
    assert survey_registry(cfg)["des"].format == "legacysurvey"


@pytest.fixture(scope="module")
def four_survey_sky(tmp_path_factory: pytest.TempPathFactory, tiny_sky) -> tuple[dict, Path, Path]:
    """The tiny sky seen by hsc, legacysurvey, sim_three's des and a space-like fourth survey,
    with each survey's catalogue and the groups: (config, raw directory, data directory)."""
    cfg = _config(_three_survey_overlay(), SPACE)
    raw = tmp_path_factory.mktemp("four") / "raw"
    simulate_sky(cfg, raw, raw / "truth.parquet", threads=1)
    out = raw.parent / "data"
    out.mkdir()
    registry = survey_registry(cfg)
    for s in registry:
        stages.run_catalog(raw / s, s, cfg["preprocess"], out / f"catalog_{s}.parquet", registry)
    stages.run_groups(
        {s: out / f"catalog_{s}.parquet" for s in registry}, cfg["crossmatch"]["radius_arcsec"], out / "groups.parquet"
    )
    return cfg, raw, out


@pytest.fixture(scope="module")
def four_survey_nway(four_survey_sky) -> tuple[dict, Path, DatasetLayout]:
    """The N-way training data of the four-survey sky (the nway_* rules' stages): (config, raw
    directory, the dataset layout whose ``nway`` holds it)."""
    cfg, raw, out = four_survey_sky
    data = DatasetLayout(out)
    registry = survey_registry(cfg)
    stages.run_crossmatch({s: data.catalog(s) for s in SURVEY_ORDER}, cfg["crossmatch"]["radius_arcsec"], data.pairs)
    stages.run_split(data.pairs, cfg["split"], data.split)
    data.nway.root.mkdir()
    stages.run_nway_rows(data.groups, data.pairs, data.split, cfg["split"], data.nway.pairs, data.nway.split)
    for s, survey in registry.items():
        stages.run_preprocess(
            s,
            data.catalog(s),
            data.nway.pairs,
            data.nway.split,
            cfg["preprocess"],
            data.nway.images(s),
            data.nway.meta(s),
            truth_path=raw / "truth.parquet",
            zero_point=survey.zero_point,
        )
        stages.run_neighbours(
            s, data.nway.pairs, data.catalog(s), cfg["neighbours"], "spatial", data.nway.neighbours(s, "spatial")
        )
    return cfg, raw, data


def test_nway_rows_are_the_galaxies_two_or_more_surveys_saw(four_survey_nway):
    """Every group seen by 2+ surveys, in order; a galaxy that is an HSC x Legacy pair keeps the
    pair's split, so what the two-survey experiments hold out is never trained on."""
    _, _, data = four_survey_nway
    groups = pd.read_parquet(data.groups)
    rows = pd.read_parquet(data.nway.pairs)
    pd.testing.assert_frame_equal(rows, groups[groups["n_surveys"] >= 2].reset_index(drop=True))
    split = pd.read_parquet(data.nway.split)
    pairs = pd.read_parquet(data.pairs).assign(split=pd.read_parquet(data.split)["split"])
    both = rows.reset_index().merge(pairs, on=["hsc_row", "legacysurvey_row"])
    assert len(both) > 0
    np.testing.assert_array_equal(split["split"].to_numpy()[both["index"]], both["split"])
    assert set(split["split"]) == {"train", "val"}


def test_nway_images_are_zero_and_unseen_where_a_survey_missed_the_galaxy(four_survey_nway):
    """Row i of every survey's images is the same galaxy (one truth id), zeros where unseen, and
    no survey's neighbours point at a galaxy it did not see."""
    cfg, _, data = four_survey_nway
    rows = pd.read_parquet(data.nway.pairs)
    truth_ids = []
    for s in survey_registry(cfg):
        seen = rows[f"{s}_row"].to_numpy() >= 0
        meta = pd.read_parquet(data.nway.meta(s))
        images = np.load(data.nway.images(s))
        np.testing.assert_array_equal(meta["seen"].to_numpy(), seen)
        assert not seen.all() and seen.any()
        assert (images[~seen] == 0).all() and (np.abs(images[seen]).reshape(seen.sum(), -1).max(axis=1) > 0).all()
        truth_ids.append(np.where(seen, meta["truth_id"].astype("Float64").to_numpy(float, na_value=np.nan), np.nan))
        index = np.load(data.nway.neighbours(s, "spatial"))["index"]
        assert (index[~seen] == -1).all()
        assert seen[index[index >= 0]].all()
    ids = np.array(truth_ids)
    first = np.nanmax(ids, axis=0)
    assert np.isfinite(first).all()
    assert ((ids == first) | np.isnan(ids)).all(), "a row is one galaxy in every survey that saw it"


def test_one_training_step_on_the_four_surveys(four_survey_nway, tmp_path):
    """train.data: groups trains the flow on all four surveys' galaxies from config alone, logging
    each anchor survey's loss and conditioning gains."""
    from whatsreal.train.run import train

    cfg, _, data = four_survey_nway
    run_cfg = tiny_model_config(max_steps=2, val_every_steps=2, checkpoint_every_steps=2, data="groups")
    for section in ("surveys", "simulation", "preprocess"):
        run_cfg[section] = cfg[section]
    train(run_cfg, data, tmp_path / "run", tmp_path / "run" / "model.ckpt")
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    for s in survey_registry(cfg):
        assert f"train/loss_{s}" in metrics.columns or f"val/loss_{s}" in metrics.columns, s
    assert "val/gain_instrument_space" in metrics.columns or "val/loss_space" in metrics.columns
    assert np.isfinite(metrics["val/loss"].dropna()).all()


def test_per_survey_experiments_cover_every_survey_and_direction(four_survey_nway, tmp_path):
    """A groups-trained model's per-survey probes, retrieval, counterfactual matrix and conditioning
    gains, from config alone: rows for all four surveys and every ordered pair that shares a
    held-out galaxy, and summary.md lists them."""
    from whatsreal.experiments.conditioning_gain import run_conditioning_gain
    from whatsreal.experiments.summary import write_summary
    from whatsreal.experiments.survey_ablation import survey_ablation_table
    from whatsreal.experiments.survey_directions import run_survey_directions
    from whatsreal.experiments.survey_probes import run_survey_probes

    cfg, raw, data = four_survey_nway
    run_cfg = tiny_model_config(data="groups")
    for section in ("surveys", "simulation", "preprocess"):
        run_cfg[section] = cfg[section]
    run_cfg["sample"]["steps"] = 2
    merge_into(
        run_cfg["experiments"],
        {
            "survey_probes": {"n_folds": 3},
            "survey_directions": {"n_galaxies": 2, "n_samples": 3, "batch_size": 2},
            "conditioning_gain": {"draws": 1, "batch_size": 8},
            "bootstrap": {"n_resamples": 50},
        },
    )
    model = save_untrained_checkpoint(run_cfg, tmp_path)
    surveys = list(survey_registry(cfg))
    run = DatasetLayout(tmp_path / "results").run("main")
    probes, retrieval = run_survey_probes(
        run_cfg,
        model,
        data.nway,
        surveys,
        raw / "truth.parquet",
        run.table("survey_probes.csv"),
        run.table("survey_retrieval.csv"),
        run.figure("survey_probes"),
        predictions_out=run.table("survey_probe_predictions.npz"),
    )
    assert set(probes["survey"]) == set(surveys)
    assert probes[["r2_physics", "r2_instrument", "diff_ci_lo"]].notna().all().all()
    assert {(r.query, r.pool) for r in retrieval.itertuples()} <= set(itertools.permutations(surveys, 2))
    directions = run_survey_directions(
        run_cfg,
        model,
        data.nway,
        surveys,
        run.table("survey_directions.csv"),
        run.figure("survey_directions"),
        truth=raw / "truth.parquet",
    )
    seen = {s: pd.read_parquet(data.nway.meta(s))["seen"].to_numpy(bool) for s in surveys}
    held = pd.read_parquet(data.nway.split)["split"].to_numpy() == "val"
    shared = {(a, b) for a, b in itertools.permutations(surveys, 2) if (held & seen[a] & seen[b]).any()}
    assert {(r.source, r.target) for r in directions.itertuples()} == shared
    assert len(shared) >= 6
    assert (directions["n_galaxies"] <= 2).all() and (directions["mse_samples"] > 0).all()
    # every target survey's noiseless truth, the added ones included, is rendered and preprocessed
    assert (directions[["mse_posterior_mean_vs_noiseless", "mse_observed_vs_noiseless"]] > 0).all().all()
    pd.DataFrame({"step": [1], "val/loss": [1.0]}).to_csv(run.metrics, index=False)
    gains = run_conditioning_gain(
        run_cfg,
        model,
        data,
        run.metrics,
        run.figure("conditioning_gain"),
        run.table("conditioning_gain.csv"),
        truth=raw / "truth.parquet",
        sensitivity=run.table("conditioning_sensitivity.csv"),
        sensitivity_by_t=run.table("conditioning_sensitivity_by_t.csv"),
    )
    assert set(gains["survey"]) == set(surveys)
    by_t = pd.read_csv(run.table("conditioning_sensitivity_by_t.csv"))
    assert set(by_t["survey"]) == set(surveys) and by_t["t_lo"].min() == 0.0 and by_t["t_hi"].max() == 1.0
    sensitivity = pd.read_csv(run.table("conditioning_sensitivity.csv"))
    assert set(sensitivity["survey"]) == set(surveys), "every survey's swaps, the added ones included"
    assert (sensitivity["n_pairs"] <= [int((held & seen[s]).sum()) for s in sensitivity["survey"]]).all()
    assert (gains["n_pairs"] <= [int((held & seen[s]).sum()) for s in gains["survey"]]).all()
    for path in (run.figure("survey_probes"), run.figure("survey_directions"), run.figure("conditioning_gain")):
        assert path.stat().st_size > 0
    ablated = DatasetLayout(tmp_path / "results").run("random_neighbours")
    predictions = run.table("survey_probe_predictions.npz")
    ablation = survey_ablation_table(predictions, predictions, (50, 0, 0.95), ablated.table("survey_ablation.csv"))
    assert set(ablation["survey"]) == set(surveys) and (ablation["drop"] == 0).all()
    summary_cfg = copy.deepcopy(run_cfg)
    summary_cfg["runs"] = {
        "main": {"train": {"data": "groups"}},
        "random_neighbours": {"train": {"data": "groups"}, "neighbours": {"mode": "random"}},
    }
    summary_cfg["experiments"]["generative_runs"] = ["main"]
    text = write_summary(summary_cfg, tmp_path / "results", ["main", "random_neighbours"], tmp_path / "summary.md")
    assert "spatial-neighbour ablation, `main` -> `random_neighbours`" in text
    for s in surveys:
        assert f"| {s} | sky_sigma | instrument |" in text
    for s in surveys:
        assert f"| {s} | psf_fwhm (instrument)" in text
    for a, b in shared:
        assert f"| {a} -> {b} |" in text


def test_adding_surveys_leaves_hsc_and_legacy_untouched(four_survey_sky, tiny_sky):
    """Each survey's random streams are keyed by its registry position: the paired surveys'
    files and truth columns are byte for byte those of the two-survey sky."""
    _, raw, _ = four_survey_sky
    _, raw2, _ = tiny_sky
    for survey in SURVEY_ORDER:
        files = sorted(p.relative_to(raw2) for p in (raw2 / survey).rglob("*.hdf5"))
        assert files
        for f in files:
            assert filecmp.cmp(raw / f, raw2 / f, shallow=False), f
    t4, t2 = pd.read_parquet(raw / "truth.parquet"), pd.read_parquet(raw2 / "truth.parquet")
    cols = [c for c in t2.columns if not c.startswith(("des", "space", "in_des", "in_space"))]
    seen = t4["in_hsc"] | t4["in_legacysurvey"]
    pd.testing.assert_frame_equal(t4.loc[seen, cols].reset_index(drop=True), t2[cols])


def test_each_added_survey_writes_its_own_format(four_survey_sky):
    _, raw, out = four_survey_sky
    des = pd.read_parquet(out / "catalog_des.parquet")
    space = pd.read_parquet(out / "catalog_space.parquet")
    assert {"FLUX_G", "FLUX_Y", "PSFSIZE_Z", "BRICKNAME"} <= set(des.columns)  # legacysurvey layout
    assert des["object_id"].str.contains("-").all()
    assert {"r_cmodel_flux", "z_cmodel_flux"} <= set(space.columns)  # hsc layout
    assert "y_cmodel_flux" not in space.columns
    truth = pd.read_parquet(raw / "truth.parquet")
    assert truth["in_des"].sum() == len(des) and truth["in_space"].sum() == len(space)
    # des sees the north of the patch only (dec_min 0.4): its galaxies are all north of hsc's southernmost.
    assert des["dec"].min() > pd.read_parquet(out / "catalog_hsc.parquet")["dec"].min()


def test_n_way_groups_equal_the_truth_on_the_four_survey_sky(four_survey_sky):
    """One group per galaxy any survey saw, with the truth's ids; galaxies seen by exactly two
    surveys (in several combinations), by three and by all four are there."""
    cfg, raw, out = four_survey_sky
    names = tuple(survey_registry(cfg))
    groups = pd.read_parquet(out / "groups.parquet")
    truth = pd.read_parquet(raw / "truth.parquet")
    seen = truth[truth[[f"in_{s}" for s in names]].any(axis=1)]
    expected = {
        tuple(str(row[f"{s}_object_id"]) if row[f"in_{s}"] else None for s in names) for _, row in seen.iterrows()
    }
    got = {
        tuple(str(row[f"{s}_object_id"]) or None for s in names)  # "" where unseen
        for _, row in groups.iterrows()
    }
    assert got == expected
    assert len(groups) == len(seen)
    combos = {tuple(r) for r in (groups[[f"{s}_row" for s in names]].to_numpy() >= 0)}
    two = {c for c in combos if sum(c) == 2}
    assert len(two) >= 3
    assert any(sum(c) == 3 for c in combos) and (True, True, True, True) in combos
    np.testing.assert_array_equal(groups["n_surveys"], (groups[[f"{s}_row" for s in names]].to_numpy() >= 0).sum(1))


def test_a_registry_band_the_files_lack_is_named(four_survey_sky):
    cfg, raw, out = four_survey_sky
    registry = survey_registry(cfg)
    claims_y = {
        **registry,
        "legacysurvey": Survey(**{**registry["legacysurvey"].__dict__, "bands": ("g", "r", "i", "z", "y")}),
    }
    with pytest.raises(MMUFormatError, match=r"bands \['y'\] of surveys\.legacysurvey\.bands"):
        stages.run_catalog(raw / "legacysurvey", "legacysurvey", cfg["preprocess"], out / "bad.parquet", claims_y)
    assert not (out / "bad.parquet").exists()
    with pytest.raises(ValueError, match=r"surveys\.euclid: unknown survey"):
        stages.run_catalog(raw / "des", "euclid", cfg["preprocess"], out / "bad.parquet", registry)


def test_two_surveys_with_the_same_name_are_refused(tmp_path):
    text = (REPO / "config" / "sim_three.yaml").read_text()
    path = tmp_path / "twice.yaml"
    path.write_text(text.replace("surveys:\n  des:\n", "surveys:\n  des:\n    format: hsc\n  des:\n", 1))
    with pytest.raises(ConfigError, match=r"twice\.yaml, line \d+, column \d+: duplicate key 'des'"):
        check_config_files([REPO / "config" / "config.yaml", path])


def _des_footprints(overlay: dict) -> None:
    """hsc west, legacysurvey east, des in the gap between them."""
    sims = overlay.setdefault("simulation", {}).setdefault("surveys", {})
    sims["hsc"] = {"footprint": {"ra_min": 0.0, "ra_max": 0.2}}
    sims["legacysurvey"] = {"footprint": {"ra_min": 0.3, "ra_max": 1.0}}
    sims["des"]["footprint"] = {"ra_min": 0.22, "ra_max": 0.28}


def _des_band_strings(overlay: dict) -> None:
    overlay["surveys"]["des"]["band_strings"] = ["DES-g", "DES-r"]


def _des_depth_without_y(overlay: dict) -> None:
    del overlay["simulation"]["surveys"]["des"]["depth_mag"]["y"]


def _crop_of_unknown_survey(overlay: dict) -> None:
    overlay["preprocess"]["crop"]["euclid"] = 40


def _hsc_changed(overlay: dict) -> None:
    overlay["surveys"]["hsc"] = {**SURVEYS["hsc"].__dict__, "pixel_scale": 0.17}
    del overlay["surveys"]["hsc"]["name"]
    overlay["surveys"]["hsc"]["bands"] = list(SURVEYS["hsc"].bands)
    for key in ("band_strings", "extinction_coeff"):
        overlay["surveys"]["hsc"][key] = list(overlay["surveys"]["hsc"][key])


def _des_without_z(overlay: dict) -> None:
    overlay["surveys"]["des"].update(bands=["g", "r", "i", "y"], band_strings=["a", "b", "c", "d"])
    overlay["surveys"]["des"]["extinction_coeff"] = [1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_des_footprints, r"simulation\.surveys\.des\.footprint: overlaps no other survey's footprint"),
        (_des_band_strings, r"surveys\.des\.band_strings: 2 entries for the 5 bands"),
        (_des_depth_without_y, r"simulation\.surveys\.des\.depth_mag: bands \['g', 'i', 'r', 'z'\] do not match"),
        (_crop_of_unknown_survey, r"preprocess\.crop\.euclid: no survey 'euclid' in the registry"),
        (_des_without_z, r"surveys\.des\.bands: the legacysurvey catalogue format measures shapes in band 'z'"),
        (_hsc_changed, r"surveys\.hsc: the paired surveys' entries keep their defaults"),
    ],
)
def test_a_bad_registry_is_refused_naming_the_key(change, message):
    overlay = _three_survey_overlay()
    validate_config({"dataset": {"name": "t"}, **overlay}, SCHEMA_PATH)  # valid as shipped
    change(overlay)
    with pytest.raises(ConfigError, match=message):
        validate_config({"dataset": {"name": "t"}, **overlay}, SCHEMA_PATH)


def test_a_registry_survey_without_simulation_parameters_is_named():
    overlay = _three_survey_overlay()
    del overlay["simulation"]
    with pytest.raises(ConfigError, match=r"simulation\.surveys\.des: required to simulate registry survey 'des'"):
        validate_config({"dataset": {"name": "t"}, **overlay}, SCHEMA_PATH)


def test_sim_three_is_the_demo_plus_one_survey():
    """config/sim_three.yaml, over the demo config, renames the dataset and adds des: nothing else."""
    demo = check_config_files([REPO / "config" / "config.yaml"])
    three = check_config_files([REPO / "config" / "config.yaml", REPO / "config" / "sim_three.yaml"])
    assert three["dataset"]["name"] == "sim_three"
    three["dataset"]["name"] = demo["dataset"]["name"]
    del three["surveys"]["des"], three["simulation"]["surveys"]["des"], three["preprocess"]["crop"]["des"]
    del three["preprocess"]["clamp"]["des"]
    assert {run: overlay.get("train") for run, overlay in three["runs"].items()} == {
        run: {"data": "groups"} if run in ("main", "random_neighbours") else None for run in demo["runs"]
    }
    for run in ("main", "random_neighbours"):
        del three["runs"][run]["train"]
    assert three == demo


def test_training_on_groups_is_checked():
    """train.data: groups needs the flow, a clamp for every registry survey and the model's bands in each."""
    overlay = _three_survey_overlay()
    base = {"dataset": {"name": "t"}, **overlay, "train": {"data": "groups"}}
    validate_config(copy.deepcopy(base), SCHEMA_PATH)
    with pytest.raises(ConfigError, match=r"train\.data: 'groups' trains the flow only; method 'contrastive'"):
        validate_config({**copy.deepcopy(base), "method": "contrastive"}, SCHEMA_PATH)
    no_clamp = copy.deepcopy(base)
    del no_clamp["preprocess"]["clamp"]
    with pytest.raises(ConfigError, match=r"preprocess\.clamp\.des: required to preprocess every registry survey"):
        validate_config(no_clamp, SCHEMA_PATH)
    no_g = copy.deepcopy(base)
    no_g["surveys"]["des"].update(bands=["r", "i", "z", "y"], band_strings=["a", "b", "c", "d"])
    no_g["surveys"]["des"]["extinction_coeff"] = [1.0] * 4
    for key in ("psf_fwhm_arcsec", "depth_mag", "nexp"):
        del no_g["simulation"]["surveys"]["des"][key]["g"]
    with pytest.raises(ConfigError, match=r"surveys\.des\.bands: lacks preprocess\.bands \['g'\]"):
        validate_config(no_g, SCHEMA_PATH)
