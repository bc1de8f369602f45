"""``python -m whatsreal.train``: train (or resume) one named run; what the ``train`` rule runs.

A command, not a Snakemake ``script:``, because on SLURM the rule's shell starts with the
profile's ``mpi`` resource (``srun --cpus-per-task=N``), which starts one copy of this
command per GPU, and Lightning's DDP takes each copy's rank from SLURM. Locally that
prefix is empty and the same command runs once (Lightning starts any further device
processes itself).

Exit status: 0 when ``--model`` is written; :data:`~whatsreal.train.interrupt.EXIT_INTERRUPTED`
(75) when a signal (SLURM's time-limit warning, preemption) stopped training after it wrote
``last.ckpt``, so running the same command again resumes at that step; 1 on any other error,
logged with its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from whatsreal.config import SCHEMA_PATH

__all__ = ["main"]

RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK")
"""Where a process learns its rank before Lightning starts: torchrun (RANK), srun
(SLURM_PROCID), Lightning's own launcher for the extra devices of one node (LOCAL_RANK)."""

log = logging.getLogger("whatsreal.train")


def _process_rank() -> int:
    for name in RANK_VARIABLES:
        if os.environ.get(name):
            return int(os.environ[name])
    return 0


def _setup_logging(path: Path | None, rank: int) -> None:
    """Rank 0 writes the rule's log file (and stderr); other ranks only stderr, prefixed with
    their rank, so DDP processes never truncate or interleave into one file and every rank's
    errors still reach the job's output (the SLURM job log on a cluster)."""
    from whatsreal.logs import log_to_file

    if rank == 0 and path is not None:
        log_to_file(path)
        return
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s rank {rank} %(levelname)s %(name)s: %(message)s", force=True
    )
    logging.captureWarnings(True)


def _read_config(args: argparse.Namespace) -> dict[str, Any]:
    if args.config_json is not None:
        config = json.loads(args.config_json)
    else:
        from whatsreal.config import read_config_file  # names the file and line of a YAML error

        config = read_config_file(args.config_file)
    if not isinstance(config, dict):
        raise ValueError("the config must be a mapping of sections (dataset, model, train, ...)")
    return config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m whatsreal.train",
        description="Train (or resume from checkpoints/last.ckpt) one named run of the config.",
    )
    parser.add_argument("--run", required=True, help="the run's name in the config's `runs` (e.g. main)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config-json", help="the whole config as JSON (what the Snakemake rule passes)")
    source.add_argument("--config-file", type=Path, help="a config YAML file; keys it omits take the schema's defaults")
    parser.add_argument("--schema", type=Path, default=SCHEMA_PATH, help="the config's JSON schema")
    parser.add_argument("--data-dir", type=Path, required=True, help="results/{dataset}: images, meta, neighbours")
    parser.add_argument("--run-dir", type=Path, required=True, help="results/{dataset}/runs/{run}")
    parser.add_argument("--model", type=Path, required=True, help="the final checkpoint to write (model.ckpt)")
    parser.add_argument("--log", type=Path, help="log file, written by rank 0 (every rank also logs to stderr)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rank = _process_rank()
    _setup_logging(args.log, rank)
    # Imported after logging is set up, so that import-time warnings reach the log too.
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from whatsreal.config import run_config, validate_config
    from whatsreal.train.interrupt import EXIT_INTERRUPTED, TrainingInterrupted
    from whatsreal.train.run import TrainingSetupError, train
    from whatsreal.train.trace import record_writes, trace_file

    trace = trace_file(rank)
    if trace is not None:  # opt-in diagnostics (WHATSREAL_TRAIN_TRACE), for DDP tests
        record_writes(trace, args.run_dir)
    try:
        # Validation first fills the schema's defaults, `runs` included, for a file that omits them.
        config = run_config(validate_config(_read_config(args), args.schema), args.run, args.schema)
        train(config, args.data_dir, args.run_dir, args.model, trace=trace)
    except TrainingInterrupted as stop:
        log.warning("%s", stop)
        return EXIT_INTERRUPTED
    except SIGTERMException:
        # Lightning's own SIGTERM handling, in place while training starts up (until the
        # SignalCheckpoint callback takes over): its SystemExit would end the process with
        # status 0, as if training had finished. last.ckpt is untouched and still valid.
        log.warning("training stopped by SIGTERM while starting; run the same target again to resume from last.ckpt")
        return EXIT_INTERRUPTED
    except TrainingSetupError as err:
        # The message says what to change (a config key, a package to install); a traceback would bury it.
        log.error("training run '%s' cannot start: %s", args.run, err)
        return 1
    except Exception:
        log.exception("training run '%s' failed", args.run)
        return 1
    if rank == 0:
        log.info("wrote %s", args.model)
    return 0
