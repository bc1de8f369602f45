"""Set up and run training for one named run, resumable from ``last.ckpt``.

A restarted job (SLURM time limit, preemption, a crash) finds
``checkpoints/last.ckpt`` and continues at the same step with the optimizer and
LR-scheduler state. SIGUSR1 (SLURM's warning before the time limit) or SIGTERM
writes ``last.ckpt`` at the current step and stops with ``TrainingInterrupted``
(whatsreal.train.interrupt), so the retry loses nothing. DDP is used whenever more
than one device is asked for; under ``srun`` (the SLURM profile starts one task per
GPU) the ranks come from SLURM, checked against ``train.devices``/``train.num_nodes``.
A finished run's model is loaded for inference by :mod:`whatsreal.model.checkpoint`, without Lightning.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from whatsreal.device import compute_device
from whatsreal.io import atomic_path, write_csv
from whatsreal.layout import DatasetLayout, RunLayout
from whatsreal.methods import build_datamodule, build_module, training_data_files
from whatsreal.provenance import describe_differences, training_fingerprint
from whatsreal.rule_settings import rule_settings
from whatsreal.train.cli import RANK_VARIABLES
from whatsreal.train.interrupt import SignalCheckpoint
from whatsreal.train.trace import RankTrace

__all__ = [
    "TrainingSetupError",
    "check_loggers",
    "check_slurm_tasks",
    "merge_metrics",
    "resolve_hardware",
    "resume_point",
    "train",
    "wandb_run_id",
]

log = logging.getLogger(__name__)


class TrainingSetupError(RuntimeError):
    """The configured hardware or files cannot be used; the message says what to change."""


def resolve_hardware(train_cfg: dict) -> tuple[str, int | str, str]:
    """(accelerator, devices, precision) for this machine, or a clear error."""
    accel = train_cfg["accelerator"]
    has_gpu = compute_device().type == "cuda"
    if accel == "gpu" and not has_gpu:
        raise TrainingSetupError(
            "train.accelerator is 'gpu' but this machine has no CUDA GPU; set train.accelerator: cpu "
            "(or auto), or run on a GPU node (profiles/slurm)"
        )
    if accel == "auto":
        accel = "gpu" if has_gpu else "cpu"
    devices = train_cfg["devices"]
    if accel == "gpu" and isinstance(devices, int) and devices > torch.cuda.device_count():
        raise TrainingSetupError(f"train.devices is {devices} but this node has {torch.cuda.device_count()} GPU(s)")
    if accel == "cpu" and devices == "auto":
        devices = 1
    precision = train_cfg["precision"]
    if precision == "auto":
        precision = "bf16-mixed" if accel == "gpu" else "32-true"
    if accel == "cpu" and precision in ("16-mixed",):
        raise TrainingSetupError("train.precision 16-mixed needs a GPU; use 32-true or bf16-mixed on CPU")
    return accel, devices, precision


def check_slurm_tasks(train_cfg: dict, devices: int | str) -> None:
    """Under ``srun``, refuse a task layout that does not match the config, naming both sides.

    Lightning takes its ranks from SLURM and needs one task per device on every node. The
    task layout comes from the SLURM profile (``tasks_per_node``, ``nodes``), the device
    counts from the config (``train.devices``, ``train.num_nodes``): edited separately, they
    can disagree, and this says which keys to change before any process group is formed.
    """
    if not SLURMEnvironment.detect() or not isinstance(devices, int):
        return  # not launched by srun, or the device count is left to Lightning ('auto')
    ntasks = int(os.environ["SLURM_NTASKS"])
    nodes = int(os.environ.get("SLURM_STEP_NUM_NODES") or os.environ.get("SLURM_NNODES") or 1)
    if ntasks > 1 and "SLURM_NTASKS_PER_NODE" not in os.environ:
        # Lightning refuses this too, but blames "your SLURM bash script".
        raise TrainingSetupError(
            f"srun started {ntasks} tasks without --ntasks-per-node, which Lightning needs: start them with "
            f"`srun --ntasks-per-node={devices} ...` (the `mpi` resource of rule train in profiles/slurm/config.yaml)"
        )
    if ntasks != devices * train_cfg["num_nodes"] or nodes != train_cfg["num_nodes"]:
        raise TrainingSetupError(
            f"srun started {ntasks} task(s) on {nodes} node(s), but train.devices is {devices} per node and "
            f"train.num_nodes is {train_cfg['num_nodes']}: Lightning needs one task per device. Make the SLURM "
            "profile's rule `train` ask for tasks_per_node = GPUs per node (gres) = train.devices and "
            "nodes = train.num_nodes (profiles/slurm/config.yaml)"
        )


def check_loggers(train_cfg: dict) -> None:
    """Refuse, before any work, a logger whose package is not installed, saying how to fix it.

    Lightning would only fail when it builds the trainer, with a traceback about an import;
    a one-line error at the start names both ways out."""
    if train_cfg["tensorboard"] and not any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")):
        raise TrainingSetupError(
            "train.tensorboard is true but tensorboard is not installed: `pip install tensorboard` "
            "(a dependency of whatsreal) or set train.tensorboard: false"
        )
    if train_cfg["wandb"] and importlib.util.find_spec("wandb") is None:
        raise TrainingSetupError(
            "train.wandb is true but wandb is not installed: `pip install 'whatsreal[wandb]'` (or `pip install wandb`) "
            "or set train.wandb: false"
        )


def wandb_run_id(run: RunLayout) -> str:
    """The W&B run id of ``run``: read from :attr:`RunLayout.wandb_id`, or made up and kept there.

    A SLURM retry or a resumed training is a new process; with the same id (and
    ``resume="allow"``) W&B continues the same run instead of starting another. The file
    is created with a hard link, which fails when it exists, so DDP ranks that race to
    create it all end up with the id of the first. A training that starts over moves the
    file aside with the old checkpoints (:func:`resume_point`): a new training, a new W&B run.
    """
    path = run.wandb_id
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        tmp.write_text(secrets.token_hex(8) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process was first: its id wins
        finally:
            tmp.unlink()
    return path.read_text().strip()


FINISHED = RunLayout(Path()).finished.name
"""The marker (``RunLayout.finished``) written into ``checkpoints/`` when a training completes: a
later job for the same run is a retrain (``--forcerun``, or changed inputs), never a resume."""


def _is_primary_process() -> bool:
    """Rank 0, known from the launcher's environment before any process group exists."""
    for name in RANK_VARIABLES:
        if os.environ.get(name):
            return int(os.environ[name]) == 0
    return True


def resume_point(run_dir: Path, provenance: dict, move_stale: bool = True) -> Path | None:
    """``checkpoints/last.ckpt`` when it continues an interrupted training of exactly these
    settings and data; otherwise None, after moving the old checkpoints and CSV logs aside
    to ``stale/<UTC time>/`` (``move_stale``: only one process of a DDP job moves files) and
    logging why in one line.

    Every process takes the same decision from the same files; one that finds them already
    moved by rank 0 starts over too, which is what rank 0 decided.
    """
    run = RunLayout(Path(run_dir))
    ckpt_dir = run.checkpoints
    last = run.last_checkpoint
    finished = run.finished
    if not ckpt_dir.is_dir() or not any(ckpt_dir.iterdir()):
        return None
    if finished.exists():
        try:
            step = json.loads(finished.read_text()).get("step", "?")
        except (OSError, ValueError):
            step = "?"
        reasons = [f"the training in {ckpt_dir} finished (step {step}); a new job for this run trains from scratch"]
    elif not last.exists():
        reasons = [f"{ckpt_dir} holds no last.ckpt to resume from"]
    else:
        try:
            ckpt = torch.load(last, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            return None  # moved aside by rank 0 meanwhile: it decided to start over
        except Exception as err:  # truncated or not a checkpoint
            ckpt = None
            reasons = [f"{last} is not a readable checkpoint ({type(err).__name__})"]
        if ckpt is not None:
            reasons = describe_differences(ckpt.get("hyper_parameters", {}).get("provenance"), provenance)
            if not reasons:
                log.info("resuming from %s at step %d (same settings and data)", last, int(ckpt.get("global_step", 0)))
                return last
    if move_stale:
        stale = run.stale / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        stale.mkdir(parents=True)
        for moved in (run.checkpoints, run.training_logs, run.tensorboard, run.wandb_id):
            if moved.exists():
                moved.replace(stale / moved.name)
        log.warning("training from step 0, not resuming: %s; old checkpoints moved to %s", "; ".join(reasons), stale)
    else:
        log.warning("training from step 0, not resuming: %s", "; ".join(reasons))
    return None


def train(
    config: dict,
    data_dir: DatasetLayout | str | Path,
    run_dir: str | Path,
    model_out: str | Path,
    trace: Path | None = None,
) -> Path:
    """Train the run whose validated config (its overlay applied) is ``config``, or resume an
    interrupted training of the same settings and data; write ``model_out`` at the end.

    ``data_dir``: the dataset's layout or root directory. ``trace``: a JSON-lines file where
    this process records its batches' sample indices and final weights
    (whatsreal.train.trace; off by default)."""
    run = RunLayout(Path(run_dir))
    train_cfg = config["train"]
    hardware = resolve_hardware(train_cfg)
    check_loggers(train_cfg)
    check_slurm_tasks(train_cfg, hardware[1])
    L.seed_everything(train_cfg["seed"], workers=True)
    data = DatasetLayout.of(data_dir)
    provenance = training_fingerprint(rule_settings(config, "train"), training_data_files(config, data))
    resume = resume_point(run.root, provenance, move_stale=_is_primary_process())
    # The run's method (whatsreal.methods) picks the module; every method reads the same triplets.
    module = build_module(config, provenance)
    dm = build_datamodule(config, data)
    trainer = _trainer(train_cfg, hardware, run, trace)
    # weights_only: resuming never unpickles arbitrary objects from the checkpoint file.
    trainer.fit(module, datamodule=dm, ckpt_path=resume, weights_only=True)
    _write_results(trainer, run, Path(model_out))
    return Path(model_out)


def _trainer(train_cfg: dict, hardware: tuple[str, int | str, str], run: RunLayout, trace: Path | None) -> L.Trainer:
    """The Lightning trainer: loggers, periodic and signal checkpoints, DDP when asked for."""
    accel, devices, precision = hardware
    # One CSV version per (re)start; merged into metrics.csv at the end, so a resumed run
    # keeps the history from before its restart.
    loggers = [CSVLogger(run.root, name=run.training_logs.name, flush_logs_every_n_steps=train_cfg["log_every_steps"])]
    if train_cfg["tensorboard"]:
        # version="": every (re)start writes into the same directory; TensorBoard shows its event files as one run.
        loggers.append(TensorBoardLogger(run.tensorboard.parent, name=run.tensorboard.name, version=""))
    if train_cfg["wandb"]:
        from lightning.pytorch.loggers import WandbLogger

        # The same id on every restart: W&B continues the run (resume="allow" creates it the first time).
        loggers.append(WandbLogger(save_dir=run.wandb.parent, name=run.root.name, id=wandb_run_id(run), resume="allow"))
    checkpoints = ModelCheckpoint(
        dirpath=run.checkpoints,
        filename="step{step:07d}",
        every_n_train_steps=train_cfg["checkpoint_every_steps"],
        save_last=True,
        save_top_k=-1,
        auto_insert_metric_name=False,
    )
    strategy = "ddp" if (isinstance(devices, int) and devices > 1) or train_cfg["num_nodes"] > 1 else "auto"
    # Under srun the ranks come from SLURM; Lightning's auto-requeue stays off (see
    # whatsreal.train.interrupt: Snakemake's retries resume from last.ckpt instead).
    plugins = [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []
    return L.Trainer(
        accelerator=accel,
        devices=devices,
        num_nodes=train_cfg["num_nodes"],
        strategy=strategy,
        precision=precision,
        max_steps=train_cfg["max_steps"],
        val_check_interval=train_cfg["val_every_steps"],
        check_val_every_n_epoch=None,
        logger=loggers,
        callbacks=[
            checkpoints,
            SignalCheckpoint(run.last_checkpoint),
            *([RankTrace(trace)] if trace is not None else []),
        ],
        plugins=plugins,
        enable_progress_bar=train_cfg["progress_bar"],
        log_every_n_steps=train_cfg["log_every_steps"],
        default_root_dir=run.root,
        num_sanity_val_steps=0,
    )


def _write_results(trainer: L.Trainer, run: RunLayout, model_out: Path) -> None:
    """The final model, the merged metrics and the finished marker (rank 0 writes the files).

    Every rank calls save_checkpoint (a collective under DDP); the strategy writes once."""
    staged = Path(str(model_out) + ".tmp")
    trainer.save_checkpoint(staged)
    if trainer.global_rank == 0:
        merged = merge_metrics(run)
        write_csv(merged, run.metrics)
        staged.replace(model_out)
        with atomic_path(run.finished, ".json") as tmp:
            Path(tmp).write_text(json.dumps({"step": int(trainer.global_step), "model": str(model_out)}))


def merge_metrics(run: RunLayout) -> pd.DataFrame:
    """Concatenate the CSV logs of every (re)start in order. Steps that a restart redid
    (it resumes from the last checkpoint, before the kill) keep only the later rows."""
    versions = run.training_log_versions()
    frames: list[pd.DataFrame] = []
    for path in versions:
        df = pd.read_csv(path)
        if frames and len(df):
            first = df["step"].min()
            frames = [f[f["step"] < first] for f in frames]
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
