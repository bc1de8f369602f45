"""Training's optional loggers: TensorBoard works as installed, W&B keeps one run across restarts
and, when not installed, training refuses to start with one line saying what to do."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from typing import ClassVar

import pytest
import yaml
from lightning.pytorch.loggers import CSVLogger

import whatsreal.train.run as run_module
from whatsreal.config import run_config
from whatsreal.layout import RunLayout
from whatsreal.train.run import TrainingSetupError, check_loggers, resume_point, train, wandb_run_id

from .conftest import REPO, SCHEMA, tiny_model_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cfg(**train_overrides):
    return run_config(tiny_model_config(**train_overrides), "main", SCHEMA)


class RecordingWandbLogger(CSVLogger):
    """Stands in for Lightning's WandbLogger (wandb is not installed here) and records its arguments."""

    made: ClassVar[list[dict]] = []

    def __init__(self, save_dir, name, id, resume):
        RecordingWandbLogger.made.append({"save_dir": save_dir, "name": name, "id": id, "resume": resume})
        super().__init__(save_dir, name="recorded_wandb")


def test_two_steps_with_tensorboard_and_wandb_write_events_and_keep_the_wandb_id(tiny_data, tmp_path, monkeypatch):
    _, data = tiny_data
    monkeypatch.setattr("lightning.pytorch.loggers.WandbLogger", RecordingWandbLogger)
    monkeypatch.setattr(run_module, "check_loggers", lambda train_cfg: None)  # the stand-in needs no wandb
    RecordingWandbLogger.made.clear()
    run = RunLayout(tmp_path / "run")
    train(_cfg(max_steps=2, tensorboard=True, wandb=True), data, run.root, run.model)

    events = list(run.tensorboard.glob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events), list(run.root.rglob("*"))
    assert run.model.exists() and run.metrics.exists()
    [made] = RecordingWandbLogger.made
    assert made["resume"] == "allow" and made["id"] == run.wandb_id.read_text().strip()
    assert made["id"] == wandb_run_id(run), "a retry reads the same id"


def test_wandb_id_is_kept_until_the_training_starts_over(tmp_path):
    run = RunLayout(tmp_path / "run")
    first = wandb_run_id(run)
    assert first.isalnum() and len(first) >= 8
    assert wandb_run_id(run) == first, "a retry (a new process) continues the same W&B run"
    assert wandb_run_id(RunLayout(tmp_path / "other")) != first
    assert not list(run.root.glob(".wandb_id*")), "no temporary files left"

    # A finished training: the next job trains from scratch, a new W&B run with it.
    run.checkpoints.mkdir()
    run.finished.write_text(json.dumps({"step": 2}))
    assert resume_point(run.root, {}) is None
    assert not run.wandb_id.exists()
    assert [p.read_text().strip() for p in run.stale.glob("*/wandb_id")] == [first]
    assert wandb_run_id(run) != first


def test_wandb_not_installed_is_one_clear_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    cfg = _cfg(wandb=True)
    with pytest.raises(TrainingSetupError, match=r"pip install 'whatsreal\[wandb\]'.*or set train\.wandb: false"):
        check_loggers(cfg["train"])
    check_loggers(_cfg(tensorboard=True)["train"])  # installed as a dependency: no error


@pytest.mark.slow  # starts python -m whatsreal.train (imports Lightning: ~10 s)
@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_the_training_command_says_how_to_get_wandb_without_a_traceback(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_model_config(wandb=True)))
    got = subprocess.run(
        [
            *(sys.executable, "-m", "whatsreal.train", "--run", "main", "--config-file", str(config)),
            *("--data-dir", str(tmp_path / "data"), "--run-dir", str(tmp_path / "run"), "--model", str(tmp_path / "m")),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert got.returncode == 1, got.stderr
    assert "pip install 'whatsreal[wandb]'" in got.stderr and "Traceback" not in got.stderr, got.stderr
    assert not (tmp_path / "run").exists(), "refused before any work"
