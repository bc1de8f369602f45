"""The config schema: defaults, and rejection of bad configs with the key named."""

from __future__ import annotations

import pytest
import yaml

from whatsreal.config import ConfigError, load_config, load_schema, validate_config

from .conftest import REPO, SCHEMA


def test_shipped_configs_validate_and_fill_defaults():
    cfg = load_config(REPO / "config" / "config.yaml", SCHEMA)
    assert cfg["dataset"]["name"] == "sim"
    assert cfg["dataset"]["source"] == "synthetic"
    # Defaults reach nested keys that the file does not mention.
    assert cfg["simulation"]["surveys"]["hsc"]["selection"] == {"band": "i", "mag_max": 22.5}
    assert cfg["simulation"]["surveys"]["legacysurvey"]["footprint"]["dec_max"] == 1.0
    assert cfg["simulation"]["pathologies"]["stripe"] == pytest.approx(0.005)


def test_empty_config_is_the_default_sky():
    cfg = validate_config({}, SCHEMA)
    assert cfg["simulation"]["cutout_size"] == 64
    assert cfg["dataset"]["mmu"] == {"hsc": None, "legacysurvey": None}


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"simulation": {"cutout_sise": 64}}, "simulation.cutout_sise: unknown key"),
        ({"dataset": {"source": "sdss"}}, "dataset.source: 'sdss' is not one of"),
        ({"simulation": {"seed": "abc"}}, "simulation.seed: 'abc' is not of type 'integer'"),
        ({"simulation": {"cutout_size": 32}}, "simulation.cutout_size: 32 is less than the minimum of 48"),
        (
            {"simulation": {"surveys": {"hsc": {"psf_fwhm_arcsec": {"g": -1}}}}},
            "simulation.surveys.hsc.psf_fwhm_arcsec",
        ),
        ({"dataset": {"name": "a/b"}}, "dataset.name"),
        ({"simulation": {"class_fractions": {"merger": 0.5, "lens": 0.5}}}, "simulation.class_fractions"),
        (
            {"simulation": {"surveys": {"hsc": {"footprint": {"ra_min": 0.9, "ra_max": 0.1}}}}},
            "simulation.surveys.hsc.footprint.ra_min: must be below ra_max",
        ),
        (
            {
                "simulation": {
                    "surveys": {"hsc": {"footprint": {"ra_max": 0.1}}, "legacysurvey": {"footprint": {"ra_min": 0.5}}}
                }
            },
            "footprints do not overlap",
        ),
        ({"dataset": {"source": "mmu"}}, "dataset.mmu.hsc: required when dataset.source is 'mmu'"),
        (
            {"dataset": {"source": "mmu", "mmu": {"hsc": "/nonexistent/hsc", "legacysurvey": "/nonexistent/ls"}}},
            "dataset.mmu.legacysurvey: directory '/nonexistent/ls' does not exist",
        ),
        ({"dataset": {"source": "crossmatched_parquet"}}, "dataset.crossmatched_parquet: required"),
    ],
)
def test_bad_configs_are_rejected_naming_the_key(config, named):
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    assert named in str(err.value)


def test_mmu_source_with_existing_dirs_is_accepted(tmp_path):
    (tmp_path / "hsc").mkdir()
    (tmp_path / "ls").mkdir()
    cfg = validate_config(
        {"dataset": {"source": "mmu", "mmu": {"hsc": str(tmp_path / "hsc"), "legacysurvey": str(tmp_path / "ls")}}},
        SCHEMA,
    )
    assert cfg["dataset"]["mmu"]["hsc"] == str(tmp_path / "hsc")


def test_load_config_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"simulation": {"density_per_arcmin2": 0}}))
    with pytest.raises(ConfigError, match=r"(?s)bad\.yaml: .*simulation\.density_per_arcmin2"):
        load_config(path, SCHEMA)


def test_paper_config_is_the_schema_defaults_on_real_data(tmp_path):
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    for survey in ("hsc", "legacysurvey"):
        (tmp_path / survey).mkdir()
        paper["dataset"]["mmu"][survey] = str(tmp_path / survey)
    cfg = validate_config(paper, SCHEMA)
    defaults = validate_config({}, SCHEMA)
    assert cfg["model"] == defaults["model"]
    assert cfg["dataset"]["source"] == "mmu"
    assert (cfg["train"]["max_steps"], cfg["train"]["batch_size"], cfg["train"]["lr"]) == (75000, 64, 1e-4)
    assert (cfg["sample"]["method"], cfg["sample"]["steps"]) == ("euler", 250)


def test_the_schema_is_parsed_once_and_each_caller_gets_its_own_copy(tmp_path):
    """load_schema keeps one parse per file version; a caller changing its copy changes no one
    else's, and a file changed on disk is read again."""
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump({"type": "object", "properties": {"a": {"default": 1}}}))
    first = load_schema(path)
    first["properties"]["a"]["default"] = 99
    assert load_schema(path)["properties"]["a"]["default"] == 1
    path.write_text(yaml.safe_dump({"type": "object", "properties": {"a": {"default": 22}}}))
    assert load_schema(path)["properties"]["a"]["default"] == 22
