"""Stop training cleanly on a time-limit or preemption signal, so a retry resumes at that step.

SLURM warns a job before its time limit with the signal asked for by ``--signal`` (the
profile asks for ``SIGUSR1`` 90 s ahead) and ends it with ``SIGTERM`` (also what
preemption and ``scancel`` send first). :class:`SignalCheckpoint` turns either into: finish
the current optimizer step, write ``checkpoints/last.ckpt`` at that step, and raise
:class:`TrainingInterrupted`; the training command then exits with
:data:`EXIT_INTERRUPTED`, a non-zero status, so Snakemake counts the job as failed and
its ``--retries`` run it again, which resumes from ``last.ckpt`` at the same step.

Lightning's own handling is switched off on purpose (``SLURMEnvironment(auto_requeue=False)``
and the SIGTERM handler replaced once training starts): its auto-requeue saves a separate
``hpc_ckpt_*.ckpt`` and requeues the job with ``scontrol`` behind Snakemake's back, and its
SIGTERM path ends the process with status 0 (``SIGTERMException`` is a bare ``SystemExit``),
which a scheduler reads as success.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

__all__ = ["EXIT_INTERRUPTED", "STOP_SIGNALS", "SignalCheckpoint", "TrainingInterrupted"]

EXIT_INTERRUPTED = 75
"""Exit status of a training run stopped by a signal after saving ``last.ckpt`` (``EX_TEMPFAIL``:
a temporary failure, run the same command again to continue)."""

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGUSR1, signal.SIGTERM)
"""SIGUSR1: SLURM's warning ahead of the time limit (``--signal=SIGUSR1@90``); SIGTERM: the
limit itself, preemption, ``scancel``, or a workstation shutting down."""


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after writing ``checkpoint`` at ``step``; rerun to resume."""

    def __init__(self, signum: int | None, step: int, checkpoint: Path) -> None:
        # None: this rank stopped because another rank of the same job was signalled.
        self.signal_name = signal.Signals(signum).name if signum is not None else "a signal to another rank"
        self.step = step
        self.checkpoint = checkpoint
        super().__init__(
            f"training interrupted by {self.signal_name} at step {step}; saved {checkpoint}. "
            f"Run the same target again (Snakemake's --retries does) to resume at step {step}"
        )


class SignalCheckpoint(Callback):
    """On SIGUSR1 or SIGTERM, save ``last_checkpoint`` at the end of the current step and stop.

    The handler only records the signal: checkpointing from inside a signal handler could
    interrupt a collective half-way. The decision is taken at the end of a training step, and
    under DDP it is reduced over ranks (any rank signalled stops them all), because the
    ranks of one job receive the signal at slightly different moments but must stop at the
    same step. The checkpoint is written to a temporary name and renamed, so a kill during
    the write never replaces a good ``last.ckpt`` with a truncated one. A further signal is
    harmless: the first one decides.
    """

    def __init__(self, last_checkpoint: str | Path) -> None:
        self.last_checkpoint = Path(last_checkpoint)
        self.received: int | None = None  # the signal, on this rank
        self.saved_step: int | None = None  # the step last.ckpt was written at, once decided

    def _record(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Installed here, after Lightning has saved every signal handler and put in its own
        # SIGTERM one when fit started: Lightning puts all the saved handlers back when fit
        # ends, normally or by an exception, so nothing is left behind. Before this point
        # no step of this attempt has run, so a signal then loses nothing (SIGUSR1 ends the
        # process; SIGTERM is Lightning's, which the training command maps to the same exit).
        # Handlers can only be set from the main thread (a notebook's worker thread keeps the
        # defaults).
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._record)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.saved_step is not None:
            return
        if not trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            return
        # Saved here, where ModelCheckpoint saves too, so a resume restores the loops exactly.
        # Every rank calls save_checkpoint (a collective under DDP); rank 0 writes the file.
        staged = self.last_checkpoint.with_name(self.last_checkpoint.name + ".tmp")
        trainer.save_checkpoint(staged)
        if trainer.is_global_zero:
            os.replace(staged, self.last_checkpoint)
        self.saved_step = trainer.global_step

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # Stop before the next step rather than right after saving, so that Lightning first
        # writes the saved step's metrics (after on_train_batch_end). If the saved step was
        # the last one, there is no next step: the run simply completes.
        if self.saved_step is not None:
            raise TrainingInterrupted(self.received, self.saved_step, self.last_checkpoint)
