"""Training stopped by a signal (a SLURM time limit, preemption) resumes at the step it saved.

The command the `train` rule runs (``python -m whatsreal.train``) gets SIGUSR1 mid-run, as
SLURM sends it 90 s before the time limit under the profile's ``--signal=SIGUSR1@90``: it
must write ``last.ckpt`` at the current step and exit with status 75, and running the same
command again (what Snakemake's ``--retries`` does) must continue at that step. The same
real signal path is exercised on a SLURM cluster by tests/slurm/.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
import yaml

from whatsreal.config import run_config
from whatsreal.train.interrupt import EXIT_INTERRUPTED, TrainingInterrupted
from whatsreal.train.module import FlowMatchingModule
from whatsreal.train.run import TrainingSetupError, check_slurm_tasks, train

from .conftest import SCHEMA, tiny_model_config

MAX_STEPS = 5


def _train_command(config_file, data, run_dir, log) -> list[str]:
    return [
        sys.executable,
        "-m",
        "whatsreal.train",
        "--run",
        "main",
        "--config-file",
        str(config_file),
        "--schema",
        str(SCHEMA),
        "--data-dir",
        str(data),
        "--run-dir",
        str(run_dir),
        "--model",
        str(run_dir / "model.ckpt"),
        "--log",
        str(log),
    ]


@pytest.mark.slow  # trains the tiny model with `python -m whatsreal.train` in a subprocess
def test_sigusr1_saves_last_ckpt_exits_75_and_the_rerun_resumes_at_that_step(tiny_data, tmp_path):
    _, data = tiny_data
    config_file = tmp_path / "config.yaml"
    # Small batches, a checkpoint every step, no validation: seconds per run.
    cfg = tiny_model_config(max_steps=MAX_STEPS, batch_size=2, checkpoint_every_steps=1, val_every_steps=1000)
    config_file.write_text(yaml.safe_dump(cfg))
    run_dir, log = tmp_path / "run", tmp_path / "train.log"
    last = run_dir / "checkpoints" / "last.ckpt"
    cmd = _train_command(config_file, data, run_dir, log)

    with open(tmp_path / "first.out", "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "training ended before it could be signalled:\n" + log.read_text()[-3000:]
        proc.send_signal(signal.SIGUSR1)  # mid-run: the first periodic checkpoint exists
        rc = proc.wait(timeout=300)
    first_log = log.read_text()
    assert rc == EXIT_INTERRUPTED, first_log[-3000:]
    saved = torch.load(last, weights_only=True)["global_step"]
    assert 1 <= saved < MAX_STEPS
    assert f"training interrupted by SIGUSR1 at step {saved}; saved {last}" in first_log
    assert not (run_dir / "model.ckpt").exists()
    assert not list(last.parent.glob("*.tmp")), "the staged checkpoint was renamed into place"

    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    second_log = log.read_text()
    assert res.returncode == 0, second_log[-3000:]
    assert f"resuming from {last} at step {saved}" in second_log
    assert torch.load(run_dir / "model.ckpt", weights_only=True)["global_step"] == MAX_STEPS
    lr = pd.read_csv(run_dir / "metrics.csv").dropna(subset=["lr"])
    assert sorted(lr["step"]) == list(range(MAX_STEPS)), "every step once: before the signal, then after"


@pytest.mark.slow  # trains the tiny model in-process
def test_sigterm_in_process_stops_at_that_step_and_resume_matches(tiny_data, tmp_path, monkeypatch):
    """SIGTERM (the time limit itself, preemption): the same stop, even with Lightning's own
    SIGTERM handler, which would exit with status 0, installed around fit."""
    _, data = tiny_data
    cfg = run_config(
        tiny_model_config(max_steps=4, batch_size=2, checkpoint_every_steps=4, val_every_steps=1000), "main", SCHEMA
    )
    original = FlowMatchingModule.training_step

    def terminated_during_step_1(self, batch, batch_idx):
        if self.global_step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(FlowMatchingModule, "training_step", terminated_during_step_1)
    handler_before = signal.getsignal(signal.SIGTERM)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted, match=r"SIGTERM at step 2") as stop:
        train(cfg, data, run_dir, run_dir / "model.ckpt")
    assert stop.value.step == 2  # the step in flight finished, then the checkpoint
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    assert signal.getsignal(signal.SIGTERM) == handler_before, "handlers restored after training"

    monkeypatch.setattr(FlowMatchingModule, "training_step", original)
    train(cfg, data, run_dir, run_dir / "model.ckpt")
    assert torch.load(run_dir / "model.ckpt", weights_only=True)["global_step"] == 4
    lr = pd.read_csv(run_dir / "metrics.csv").dropna(subset=["lr"])
    assert sorted(lr["step"]) == [0, 1, 2, 3]


def test_srun_task_layout_must_match_the_config(monkeypatch):
    tcfg = {"num_nodes": 1}
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_NNODES", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "whatsreal")
    with pytest.raises(TrainingSetupError, match=re.escape("`srun --ntasks-per-node=2 ...` (the `mpi` resource")):
        check_slurm_tasks(tcfg, 2)
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2")
    with pytest.raises(TrainingSetupError, match=re.escape("srun started 2 task(s) on 1 node(s), but train.devices")):
        check_slurm_tasks(tcfg, 4)
    check_slurm_tasks(tcfg, 2)
    check_slurm_tasks(tcfg, "auto")  # Lightning decides
    monkeypatch.delenv("SLURM_NTASKS")
    check_slurm_tasks(tcfg, 4)  # not under srun
