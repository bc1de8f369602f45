"""DDP without a GPU: two CPU processes (gloo) train one run as one process group.

Each process is the command the `train` rule runs on a cluster (``python -m whatsreal.train``),
started with the environment ``srun --ntasks-per-node=2`` gives its tasks, so Lightning takes
the ranks from SLURM (SLURMEnvironment) exactly as in a SLURM job, and the task-layout check
of whatsreal.train.run runs too. The processes record what they did (whatsreal.train.trace),
and the test checks: the ranks trained on different samples, ended with identical weights
(gradients were averaged), and only rank 0 wrote files; then that a job killed with SIGKILL
after a checkpoint resumes at that step and finishes. tests/slurm/ repeats this under a real
``srun``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from whatsreal.train.trace import TRACE_ENV

from .conftest import REPO
from .ddp_trace import check_ddp_trace, ddp_train_command, read_traces

WORLD = 2
MAX_STEPS = 8
CHECKPOINT_EVERY = 2
TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _srun_env(rank: int, port: int, trace: Path) -> dict[str, str]:
    """What ``srun --ntasks=2 --ntasks-per-node=2`` sets for task ``rank`` on one node (the
    variables Lightning's SLURMEnvironment and whatsreal.train read), one thread per rank."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(
        SLURM_JOB_ID="4242",
        SLURM_JOB_NAME="train",  # not 'bash'/'interactive', which Lightning treats as no srun
        SLURM_NTASKS=str(WORLD),
        SLURM_NTASKS_PER_NODE=str(WORLD),
        SLURM_NNODES="1",
        SLURM_STEP_NUM_NODES="1",
        SLURM_NODELIST="localhost",
        SLURM_PROCID=str(rank),
        SLURM_LOCALID=str(rank),
        SLURM_NODEID="0",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),  # free now; SLURMEnvironment would otherwise derive it from the job id
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]),
    )
    env[TRACE_ENV] = str(trace)
    return env


def _launch(cmd: list[str], trace: Path, out_dir: Path) -> list[subprocess.Popen]:
    """One job: WORLD copies of the command, as srun starts them."""
    port = _free_port()
    procs = []
    for rank in range(WORLD):
        out = open(out_dir / f"rank{rank}.out", "w")
        procs.append(subprocess.Popen(cmd, env=_srun_env(rank, port, trace), stdout=out, stderr=subprocess.STDOUT))
        out.close()
    return procs


def _wait(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    try:
        return [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.slow  # two training processes, a kill and a resume (~45 s)
def test_two_cpu_ranks_train_as_one_ddp_group_and_resume_after_sigkill(tiny_data, tmp_path):
    _, data = tiny_data
    cmd, run_dir, log, last, model = ddp_train_command(tmp_path, data, WORLD, MAX_STEPS, CHECKPOINT_EVERY)

    # -- first job: killed (SIGKILL, every rank, no chance to save) after a checkpoint ------
    first = tmp_path / "first"
    first.mkdir()
    procs = _launch(cmd, first / "trace", first)
    deadline = time.monotonic() + TIMEOUT_S
    while not last.exists() and all(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    running = all(p.poll() is None for p in procs)
    for p in procs:
        p.send_signal(signal.SIGKILL)
    _wait(procs, 30)
    outputs = "\n".join((first / f"rank{r}.out").read_text()[-2000:] for r in range(WORLD))
    assert running, "a rank ended before the job could be killed mid-run:\n" + outputs
    saved = torch.load(last, weights_only=True)["global_step"]  # written atomically by Lightning
    assert CHECKPOINT_EVERY <= saved < MAX_STEPS and saved % CHECKPOINT_EVERY == 0, saved
    assert not model.exists()
    # Killed mid-run, the ranks still trained apart and in step, and rank 1 wrote nothing.
    traces = read_traces(first / "trace")
    assert sorted(traces) == [0, 1]
    assert not [rec for rec in traces[1] if rec["event"] == "write"]

    # -- the same job again: resumes at the saved step on both ranks, and finishes ----------
    second = tmp_path / "second"
    second.mkdir()
    codes = _wait(_launch(cmd, second / "trace", second), TIMEOUT_S)
    outputs = "\n".join((second / f"rank{r}.out").read_text() for r in range(WORLD))
    assert codes == [0] * WORLD, outputs[-6000:]
    log_text = log.read_text()
    assert f"resuming from {last} at step {saved}" in log_text, log_text[-3000:]
    # Lightning's own record that the processes formed one group of two, from SLURM's variables.
    for rank in range(WORLD):
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/{WORLD}" in outputs, outputs[-6000:]
    assert re.search(r"rank 1 .*resuming from .* at step " + str(saved), outputs), "rank 1 resumed too"
    check_ddp_trace(read_traces(second / "trace"), WORLD, model, first_step=saved, last_step=MAX_STEPS)
    assert torch.load(model, weights_only=True)["global_step"] == MAX_STEPS
    steps = sorted(pd.read_csv(run_dir / "metrics.csv").dropna(subset=["lr"])["step"])
    # Every step after the restart once; before it, the rows flushed before the kill (SIGKILL
    # can take the last step's row, logged after its checkpoint), none twice.
    assert [s for s in steps if s >= saved] == list(range(saved, MAX_STEPS)), steps
    assert len(set(steps)) == len(steps) and 0 in steps, steps
    assert not list(run_dir.glob("**/*rank*")), "no per-rank files in the run directory"
