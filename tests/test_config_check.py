"""YAML errors name the file and line; `python -m whatsreal.config check` validates config files."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from whatsreal.config import DEMO_CONFIG, ConfigError, check_config_files, load_config, main, read_config_file

from .conftest import REPO, SCHEMA

# Line 6 is indented one space too far: "mapping values are not allowed here" at column 14.
BAD_SYNTAX = "dataset:\n  name: sim\n  source: synthetic\ntrain:\n  max_steps: 3\n   batch_size: 4\n"


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BAD_SYNTAX)
    with pytest.raises(ConfigError) as err:
        load_config(path, SCHEMA)
    message = str(err.value)
    assert f"{path}, line 6, column 14: mapping values are not allowed here" in message
    assert "batch_size: 4" in message  # the offending line is quoted


def test_a_tab_is_named_with_a_hint(tmp_path):
    path = tmp_path / "tabs.yaml"
    path.write_text("train:\n\tmax_steps: 3\n")
    with pytest.raises(ConfigError, match=r"tabs\.yaml, line 2, column 1: .*spaces, never tabs"):
        read_config_file(path)


@pytest.mark.parametrize(("text", "expected"), [("", {}), ("# only a comment\n", {}), ("train: {lr: 0.1}\n", None)])
def test_read_config_file_returns_the_mapping(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert read_config_file(path) == (expected if expected is not None else {"train": {"lr": 0.1}})


def test_a_top_level_list_is_rejected_naming_the_file(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- train\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: the top level of a config must be a mapping"):
        read_config_file(path)


def test_check_merges_files_in_order_over_the_defaults(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("dataset: {name: other}\ntrain: {max_steps: 7}\n")
    cfg = check_config_files([REPO / "config" / "config.yaml", overlay], SCHEMA)
    assert cfg["dataset"]["name"] == "other"  # the later file wins
    assert cfg["train"]["max_steps"] == 7
    assert cfg["simulation"]["seed"] == 42  # kept from the first file
    assert cfg["preprocess"]["blank_cutouts"] == "drop"  # a schema default neither file sets


def test_check_names_the_files_and_the_key(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("train: {max_stepz: 7}\n")
    with pytest.raises(ConfigError) as err:
        check_config_files([REPO / "config" / "config.yaml", overlay], SCHEMA)
    assert "overlay.yaml" in str(err.value) and "train.max_stepz: unknown key" in str(err.value)


def test_check_cli_exit_codes(tmp_path, capsys):
    good = REPO / "config" / "config.yaml"
    assert main(["check", str(good)]) == 0
    assert capsys.readouterr().out.strip() == "ok"

    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_SYNTAX)
    assert main(["check", str(good), str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}, line 6, column 14" in err

    assert main(["check", str(tmp_path / "missing.yaml")]) == 1
    assert "missing.yaml" in capsys.readouterr().err

    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("preprocess: {blank_cutouts: keep}\n")
    assert main(["check", str(wrong)]) == 1
    assert "preprocess.blank_cutouts: 'keep' is not one of ['drop', 'flag']" in capsys.readouterr().err


def test_the_module_entry_point_runs_as_the_makefile_calls_it(tmp_path):
    """The Makefile runs `show --key` (where results go) and `check` as commands."""
    run = [sys.executable, "-m", "whatsreal.config"]
    got = subprocess.run([*run, "show", "--key", "dataset.name"], cwd=REPO, capture_output=True, text=True)
    assert got.returncode == 0 and got.stdout == "sim\n"
    sci = ["config/config.yaml", "config/sim_science.yaml"]
    got = subprocess.run(
        [*run, "show", "--configfile", *sci, "--key", "train.max_steps"], cwd=REPO, capture_output=True, text=True
    )
    assert got.returncode == 0 and got.stdout == "1500\n"
    got = subprocess.run([*run, "show", "--key", "train.no_such_key"], cwd=REPO, capture_output=True, text=True)
    assert got.returncode == 1 and "train.no_such_key" in got.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_SYNTAX)
    got = subprocess.run([*run, "check", str(bad)], cwd=REPO, capture_output=True, text=True)
    assert got.returncode == 1 and "line 6, column 14" in got.stderr and got.stdout == ""
    got = subprocess.run([*run, "config/config.yaml", "dataset.name"], cwd=REPO, capture_output=True, text=True)
    assert got.returncode == 2 and "invalid choice" in got.stderr


def test_show_prints_the_effective_config_as_yaml(capsys):
    """`show` prints exactly the named files over the schema defaults: the demo file is not
    layered under them, and the paper's placeholder MMU paths are warnings, not errors."""
    paper = REPO / "config" / "paper.yaml"
    assert main(["show", "--configfile", str(paper)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    shown = yaml.safe_load(out)
    assert yaml.safe_load(out + err) == shown  # one YAML document even with stderr merged in
    assert shown == check_config_files([paper], check_paths=False)
    assert shown["train"]["max_steps"] == 75000 and shown["dataset"]["source"] == "mmu"
    assert shown["experiments"]["umap"]["n_pairs"] == 8192  # the demo file says 2048
    assert out.startswith("# warning: dataset.mmu.hsc: directory '/path/to")
    assert main(["show"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == check_config_files([DEMO_CONFIG])
