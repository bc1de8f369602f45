"""Logging for pipeline steps: everything a step says goes to its Snakemake log file."""

from __future__ import annotations

import logging
from pathlib import Path

__all__ = ["log_to_file"]


def log_to_file(path: str | Path, level: int = logging.INFO) -> logging.Logger:
    """Send the root logger and Python warnings to ``path`` (and stderr); return the root logger."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(level)
    for handler in (logging.FileHandler(path, mode="w"), logging.StreamHandler()):
        handler.setFormatter(fmt)
        root.addHandler(handler)
    logging.captureWarnings(True)
    return root
