"""tests/test_ddp.py under a real ``srun``: 2 tasks on CPU (gloo), one DDP group.

SLURM itself starts the two ranks of ``python -m whatsreal.train`` (the `train` rule's command
after its ``srun`` prefix), so their ranks, world size, node list and port come from SLURM's
own environment. Checked from the ranks' traces (whatsreal.train.trace): different samples
per rank, identical weights after the steps, files written by rank 0 only; and a job killed
with SIGKILL (``scancel --signal=KILL``) after a checkpoint resumes at that step when started
again, and finishes.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import torch

from whatsreal.train.trace import TRACE_ENV

from ..conftest import REPO
from ..ddp_trace import check_ddp_trace, ddp_train_command, read_traces
from .cluster import LocalSlurmCluster

pytestmark = pytest.mark.slurm

WORLD = 2
MAX_STEPS = 8
CHECKPOINT_EVERY = 2
TIMEOUT_S = 300


def _srun(cluster: LocalSlurmCluster, name: str, cmd: list[str], trace: Path, out: Path) -> subprocess.Popen:
    env = {
        **cluster.env,
        TRACE_ENV: str(trace),
        "OMP_NUM_THREADS": "1",  # the test machine has a couple of cores for both ranks
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    srun = ["srun", f"--job-name={name}", f"--ntasks={WORLD}", f"--ntasks-per-node={WORLD}", "--cpus-per-task=1"]
    with open(out, "w") as stream:
        return subprocess.Popen([*srun, "--label", *cmd], env=env, stdout=stream, stderr=subprocess.STDOUT)


def test_two_srun_tasks_train_as_one_ddp_group_and_resume_after_scancel_kill(
    slurm_cluster: LocalSlurmCluster, tiny_data, tmp_path: Path
) -> None:
    _, data = tiny_data
    cmd, _, log, last, model = ddp_train_command(tmp_path, data, WORLD, MAX_STEPS, CHECKPOINT_EVERY)

    # -- first job: SIGKILL to every task once a checkpoint exists --------------------------
    first = _srun(slurm_cluster, "ddp_first", cmd, tmp_path / "trace_first", tmp_path / "first.out")
    deadline = time.monotonic() + TIMEOUT_S
    while not last.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, "the job ended before it could be killed:\n" + (tmp_path / "first.out").read_text()
    slurm_cluster.run("scancel", "--signal=KILL", "--name=ddp_first")
    first.wait(timeout=60)
    saved = torch.load(last, weights_only=True)["global_step"]
    assert CHECKPOINT_EVERY <= saved < MAX_STEPS, saved
    assert not model.exists()

    # -- the same job again: resumes at that step and finishes ------------------------------
    second = _srun(slurm_cluster, "ddp_second", cmd, tmp_path / "trace_second", tmp_path / "second.out")
    rc = second.wait(timeout=TIMEOUT_S)
    out = (tmp_path / "second.out").read_text()
    assert rc == 0, out[-6000:]
    assert f"resuming from {last} at step {saved}" in log.read_text()
    for rank in range(WORLD):  # srun --label: "<task>: <line>"
        assert f"{rank}: " in out and f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/{WORLD}" in out, out[-6000:]
    check_ddp_trace(read_traces(tmp_path / "trace_second"), WORLD, model, first_step=saved, last_step=MAX_STEPS)
    assert torch.load(model, weights_only=True)["global_step"] == MAX_STEPS
