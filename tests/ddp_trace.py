"""Reading and checking the per-rank traces of a DDP training (whatsreal.train.trace).

Shared by tests/test_ddp.py (two processes started as srun would start them) and
tests/slurm/ (the same under a real ``srun``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NamedTuple

import yaml

from whatsreal.methods import build_module
from whatsreal.model.checkpoint import read_checkpoint
from whatsreal.train.trace import parameter_digest

from .conftest import SCHEMA, tiny_model_config

__all__ = ["TrainCommand", "check_ddp_trace", "ddp_train_command", "read_traces"]


class TrainCommand(NamedTuple):
    """A training command line and the files it writes."""

    cmd: list[str]
    run_dir: Path
    log: Path
    last: Path
    model: Path


def ddp_train_command(tmp_path: Path, data: Path, world: int, max_steps: int, checkpoint_every: int) -> TrainCommand:
    """The `train` rule's command line (workflow/rules/train.smk, after its `srun` prefix) for
    a tiny CPU run of ``world`` ranks on ``data``, writing under ``tmp_path``."""
    cfg = tiny_model_config(
        max_steps=max_steps,
        batch_size=2,
        checkpoint_every_steps=checkpoint_every,
        val_every_steps=1000,  # no validation: not what is tested, and it costs time
        devices=world,
    )
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(cfg))
    run_dir, log = tmp_path / "run", tmp_path / "train.log"
    last, model = run_dir / "checkpoints" / "last.ckpt", run_dir / "model.ckpt"
    cmd = [sys.executable, "-m", "whatsreal.train", "--run", "main", "--config-file", str(config_file)]
    cmd += ["--schema", str(SCHEMA), "--data-dir", str(data), "--run-dir", str(run_dir)]
    cmd += ["--model", str(model), "--log", str(log)]
    return TrainCommand(cmd, run_dir, log, last, model)


def read_traces(directory: Path) -> dict[int, list[dict]]:
    """rank -> its records, from ``rank<R>.jsonl``."""
    return {
        int(path.stem.removeprefix("rank")): [json.loads(line) for line in path.read_text().splitlines()]
        for path in sorted(directory.glob("rank*.jsonl"))
    }


def check_ddp_trace(traces: dict[int, list[dict]], world: int, model: Path, first_step: int, last_step: int) -> None:
    """What one DDP launch of ``world`` ranks must show, from ``first_step`` (0, or the step it
    resumed at) to ``last_step`` (train.max_steps):

    - every rank trained every step, each on other samples than every other rank;
    - every rank ended with the same weights (gradients were averaged: the data differed),
      and they are the weights in ``model``, which rank 0 wrote;
    - rank 0 wrote the run's files (checkpoints, metrics.csv, model.ckpt); no other rank
      wrote anything under the run directory.
    """
    assert sorted(traces) == list(range(world)), f"a trace per rank expected, got ranks {sorted(traces)}"
    batches = {r: {rec["step"]: rec["pairs"] for rec in recs if rec["event"] == "batch"} for r, recs in traces.items()}
    for rank, steps in batches.items():
        assert sorted(steps) == list(range(first_step, last_step)), f"rank {rank} trained steps {sorted(steps)}"
    for step in range(first_step, last_step):
        seen = [set(batches[r][step]) for r in range(world)]
        for r in range(1, world):
            # DistributedSampler: disjoint shards of one shuffled order (padding aside, at the
            # end of an epoch, which these short runs do not reach).
            assert not seen[0] & seen[r], f"ranks 0 and {r} trained on the same pairs at step {step}"

    ends = {r: next(rec for rec in recs if rec["event"] == "end") for r, recs in traces.items()}
    for rank, end in ends.items():
        assert (end["global_rank"], end["world_size"], end["step"]) == (rank, world, last_step), end
    digests = {end["weights"] for end in ends.values()}
    assert len(digests) == 1, "ranks ended with different weights: gradients were not synchronised"
    ckpt = read_checkpoint(model)
    module = build_module(ckpt["hyper_parameters"]["config"])  # the LightningModule the ranks digested
    module.load_state_dict(ckpt["state_dict"])
    assert parameter_digest(module) == digests.pop(), f"{model} does not hold the weights the ranks ended with"

    writes = {r: {p for rec in recs if rec["event"] == "write" for p in rec["paths"]} for r, recs in traces.items()}
    for rank in range(1, world):
        assert not writes[rank], f"rank {rank} wrote under the run directory: {sorted(writes[rank])}"
    assert {"metrics.csv", "model.ckpt", "checkpoints/last.ckpt"} <= writes[0], sorted(writes[0])
