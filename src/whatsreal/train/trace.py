"""Opt-in record of what each training process did: which samples it trained on, its weights
at the end, and which files it wrote.

A DDP job's claims are hard to see from its outputs alone: that every rank trained on other
samples (the ``DistributedSampler`` split), that gradients were averaged (every rank ends
with the same weights although it saw other data), and that rank 0 alone wrote checkpoints
and metrics. With ``WHATSREAL_TRAIN_TRACE=<dir>`` in the environment, each process of
``python -m whatsreal.train`` appends JSON lines to ``<dir>/rank<R>.jsonl`` (R: the rank the
launcher gave it), which tests/test_ddp.py and tests/slurm/ read; without it nothing is
recorded and training is unchanged. It is an environment variable, not a config key, because
it changes no result, is for diagnosing a run, and must not enter the training fingerprint.

Records (``event`` field):

- ``batch``: ``step`` and the ``pairs`` (row indices into ``pairs.parquet``) of one training batch;
- ``end``: ``step``, ``global_rank``, ``world_size`` and ``weights``, a SHA-256 of the model's
  parameters after the last step (:func:`parameter_digest`);
- ``write``: a file or directory under the run directory that this process opened for
  writing, created, renamed or removed (Python audit events, so Lightning's, PyTorch's and
  pandas' writes are all seen).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import IO, Any

import lightning as L
import torch

__all__ = ["TRACE_ENV", "RankTrace", "parameter_digest", "record_writes", "trace_file"]

TRACE_ENV = "WHATSREAL_TRAIN_TRACE"

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
# Audit events that change the filesystem, with the position of the path(s) in their args.
_PATH_EVENTS = {"os.mkdir": (0,), "os.rename": (0, 1), "os.remove": (0,), "os.rmdir": (0,), "os.symlink": (1,)}


def trace_file(rank: int) -> Path | None:
    """``<dir>/rank<rank>.jsonl`` when tracing is asked for (its directory created), else None."""
    directory = os.environ.get(TRACE_ENV)
    if not directory:
        return None
    Path(directory).mkdir(parents=True, exist_ok=True)
    return Path(directory) / f"rank{rank}.jsonl"


def _append(stream: IO[str], record: dict[str, Any]) -> None:
    stream.write(json.dumps(record) + "\n")
    stream.flush()  # a killed process keeps what it recorded


def parameter_digest(module: torch.nn.Module) -> str:
    """SHA-256 over every parameter, by name: equal exactly when the trained weights are.

    Buffers (BatchNorm running statistics) are left out: DDP copies rank 0's into every rank
    at the start of each forward pass, so after the last step each rank holds its own update."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.named_parameters()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def record_writes(path: Path, root: Path) -> None:
    """Append a ``write`` record to ``path`` for every change this process makes under ``root``.

    An audit hook cannot be removed: call it once per process, only when tracing. The trace
    file is opened before the hook exists, so writing to it raises no event of its own.
    """
    root_str = os.path.abspath(root)
    stream = open(path, "a")  # open for the life of the process
    busy = False

    def inside(p: object) -> str | None:
        if isinstance(p, (str, bytes, os.PathLike)):
            full = os.path.abspath(os.fsdecode(p))
            if full == root_str or full.startswith(root_str + os.sep):
                return os.path.relpath(full, root_str)
        return None

    def hook(event: str, args: tuple) -> None:
        nonlocal busy
        if busy:
            return
        if event == "open" and len(args) >= 3:
            mode, flags = args[1], args[2] or 0
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & _WRITE_FLAGS)
            paths = [args[0]] if writing else []
        elif event in _PATH_EVENTS:
            paths = [args[i] for i in _PATH_EVENTS[event] if i < len(args)]
        else:
            return
        rel = [r for r in map(inside, paths) if r is not None]
        if rel:
            busy = True
            try:
                _append(stream, {"event": "write", "op": event, "paths": rel})
            finally:
                busy = False

    sys.addaudithook(hook)


class RankTrace(L.Callback):
    """Records each training batch's sample indices and the final weights to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stream: IO[str] | None = None

    def _write(self, record: dict[str, Any]) -> None:
        if self._stream is None:
            self._stream = open(self.path, "a")
        _append(self._stream, record)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._write({"event": "batch", "step": int(trainer.global_step), "pairs": batch["pair"].tolist()})

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(
            {
                "event": "end",
                "step": int(trainer.global_step),
                "global_rank": int(trainer.global_rank),
                "world_size": int(trainer.world_size),
                "weights": parameter_digest(pl_module),
            }
        )
