"""The `train` rule's command line, ``python -m whatsreal.train``, without training anything.

Training through it (and its exit status on SIGUSR1) is the slow tier's test_train_interrupt.py.
"""

from __future__ import annotations

import runpy
import sys

import pytest

from whatsreal.train.cli import build_parser


def test_python_m_whatsreal_train_prints_its_usage(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["python -m whatsreal.train", "--help"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_module("whatsreal.train", run_name="__main__", alter_sys=True)
    assert stop.value.code == 0
    usage = capsys.readouterr().out
    for flag in ("--run", "--config-json", "--config-file", "--data-dir", "--run-dir", "--model", "--log"):
        assert flag in usage, flag


def test_the_config_comes_from_exactly_one_source(tmp_path, capsys):
    """The rule passes --config-json, a user --config-file; both or neither is a usage error (2)."""
    paths = ["--data-dir", "d", "--run-dir", "r", "--model", "m.ckpt"]
    args = build_parser().parse_args(["--run", "main", "--config-file", str(tmp_path / "c.yaml"), *paths])
    assert args.config_file == tmp_path / "c.yaml" and args.config_json is None
    for both_or_neither in (["--config-json", "{}", "--config-file", "c.yaml"], []):
        with pytest.raises(SystemExit) as stop:
            build_parser().parse_args(["--run", "main", *both_or_neither, *paths])
        assert stop.value.code == 2
        assert "--config-json" in capsys.readouterr().err
