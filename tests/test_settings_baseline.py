"""A key added to the schema after the settings baseline reruns nothing while it holds its
default (whatsreal.settings_baseline), and reruns what it should once set."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from whatsreal.config import SCHEMA_PATH, effective_config, load_schema, schema_default, validate_config
from whatsreal.provenance import training_fingerprint
from whatsreal.rule_settings import RULE_SETTINGS, rule_settings
from whatsreal.settings_baseline import BASELINE_FILE, KeyTree, baseline_keys, schema_key_paths

DEMO = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


@pytest.fixture(scope="module")
def newer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This version's schema plus what a later version might add: a model key, an experiment
    section with a member, and a key of every survey's simulation."""
    schema = load_schema(SCHEMA_PATH)  # a fresh parse, free to change
    schema["properties"]["model"]["properties"]["new_knob"] = {"type": "integer", "default": 3}
    schema["properties"]["experiments"]["properties"]["new_experiment"] = {
        "type": "object",
        "default": {},
        "properties": {"draws": {"type": "integer", "default": 4}},
    }
    rate = {"type": "number", "default": 0.0}
    schema["definitions"]["survey_simulation"]["properties"]["new_artefact_rate"] = rate
    for survey in schema["properties"]["simulation"]["properties"]["surveys"]["properties"].values():
        survey["properties"]["new_artefact_rate"] = rate
    path = tmp_path_factory.mktemp("schema") / "newer.schema.yaml"
    path.write_text(yaml.safe_dump(schema))
    return path


def _demo(schema: Path, **model: object) -> dict:
    raw = yaml.safe_load(DEMO.read_text())
    raw["model"] = {**raw.get("model", {}), **model}
    return validate_config(raw, schema, check_paths=False)


def test_schema_key_paths_follow_refs_and_user_named_entries() -> None:
    schema = {
        "definitions": {"entry": {"type": "object", "properties": {"rate": {"default": 1}}}},
        "properties": {
            "a": {"type": "object", "properties": {"b": {"default": 2}}},
            "named": {"type": "object", "additionalProperties": {"$ref": "#/definitions/entry"}},
            "free": {"type": "object", "additionalProperties": {"type": "object"}},
        },
    }
    assert schema_key_paths(schema) == ["a", "a.b", "free", "free.*", "named", "named.*", "named.*.rate"]
    tree = KeyTree(schema_key_paths(schema))
    assert tree.child("named").child("hsc").child("rate").is_leaf  # any entry's name
    assert tree.child("a").child("c") is None  # a new key
    assert tree.child("free").child("main").is_leaf  # below it is the entry's value, not new keys


def test_the_frozen_baseline_lists_only_keys_the_schema_has() -> None:
    """Every key of the baseline is one the schema still defines; a key removed from the schema
    must leave the baseline too (it could never be set again)."""
    listed = [ln for ln in BASELINE_FILE.read_text().splitlines() if ln and not ln.startswith("#")]
    assert set(listed) <= set(schema_key_paths(load_schema(SCHEMA_PATH)))
    assert {"model", "model.unet", "simulation.surveys.*.psf_fwhm_arcsec", "runs.*"} <= set(listed)


def test_schema_default_fills_sections_and_user_named_entries(newer: Path) -> None:
    schema = load_schema(newer)
    cfg = _demo(newer)
    assert schema_default(cfg, ["experiments", "new_experiment"], schema) == {"draws": 4}
    assert schema_default(cfg, ["simulation", "surveys", "hsc", "new_artefact_rate"], schema) == 0.0
    with pytest.raises(KeyError, match=r"dataset\.nothing_here"):
        schema_default(cfg, ["dataset", "nothing_here"], schema)


@pytest.mark.parametrize("rule", sorted(RULE_SETTINGS))
def test_new_keys_at_their_default_change_no_rule_settings(newer: Path, rule: str) -> None:
    before = _demo(SCHEMA_PATH)
    after = _demo(newer)
    assert after["model"]["new_knob"] == 3 and after["experiments"]["new_experiment"] == {"draws": 4}
    if rule == "effective_config":  # the record of the whole config shows every key
        assert rule_settings(after, rule, schema_path=newer) != rule_settings(before, rule)
        return
    assert rule_settings(after, rule, schema_path=newer) == rule_settings(before, rule)


def test_new_keys_set_away_from_their_default_rerun_what_reads_them(newer: Path) -> None:
    default = _demo(newer)
    knob = _demo(newer, new_knob=5)
    assert rule_settings(knob, "train", schema_path=newer) != rule_settings(default, "train", schema_path=newer)
    assert json.loads(rule_settings(knob, "train", schema_path=newer))["model"]["new_knob"] == 5
    assert rule_settings(knob, "simulate", schema_path=newer) == rule_settings(default, "simulate", schema_path=newer)

    rate = copy.deepcopy(default)
    rate["simulation"]["surveys"]["hsc"]["new_artefact_rate"] = 0.01
    simulate = json.loads(rule_settings(rate, "simulate", schema_path=newer))
    assert simulate["simulation"]["surveys"]["hsc"]["new_artefact_rate"] == 0.01
    assert "new_artefact_rate" not in simulate["simulation"]["surveys"]["legacysurvey"]

    # An old key at its default stays in: the baseline's keys are compared as they always were.
    assert "time_scale" not in yaml.safe_load(DEMO.read_text())["model"]
    assert "time_scale" in json.loads(rule_settings(default, "train", schema_path=newer))["model"]


def test_interrupted_training_resumes_across_a_new_key(newer: Path) -> None:
    """The checkpoint's provenance holds rule train's settings: a newer whatsreal that only adds
    a key must not refuse to resume a training started before it."""
    files = [DEMO]
    saved = training_fingerprint(rule_settings(_demo(SCHEMA_PATH), "train"), files)
    assert training_fingerprint(rule_settings(_demo(newer), "train", schema_path=newer), files) == saved


def test_shipped_configs_keep_every_value_in_their_settings() -> None:
    """Today every key is in the baseline, so nothing is left out of any rule's settings."""
    cfg = effective_config([DEMO], check_paths=False)
    train = json.loads(rule_settings(cfg, "train"))
    assert train["model"] == cfg["model"]
    assert baseline_keys().child("model").child("unet") is not None
