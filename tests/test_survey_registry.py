"""The survey registry (config ``surveys``): HSC and Legacy keep today's facts and sky, further
surveys are simulated, catalogued and matched N ways from a config entry alone, and a bad
registry is refused naming its key."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO, merge_into, tiny_config
from whatsreal.config import SCHEMA_PATH, ConfigError, check_config_files, read_yaml, validate_config
from whatsreal.data import stages
from whatsreal.data.mmu import MMUFormatError
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
            "bands": ["r", "i", "z"],
            "band_strings": ["sp-r", "sp-i", "sp-z"],
            "pixel_scale": 0.1,
            "zero_point": 25.0,
            "extinction_coeff": [2.2, 1.6, 1.2],
            "mask_per_band": True,
        }
    },
    "simulation": {
        "surveys": {
            "space": {
                "footprint": {"ra_min": 0.3, "ra_max": 0.7},
                "psf_fwhm_arcsec": {"r": 0.35, "i": 0.36, "z": 0.38},  # >= 2.2 pixels: the PSF model's range
                "psf_fwhm_scatter_dex": 0.03,
                "depth_mag": {"r": 26.0, "i": 25.8, "z": 25.5},
                "nexp": {"r": 4, "i": 4, "z": 4},
                "selection": {"band": "i", "mag_max": 23.0},
            }
        }
    },
    "preprocess": {"crop": {"space": 48}},
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
    assert "g_cmodel_flux" not in space.columns
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
    assert three == demo
