"""One table of every truth-based metric of a run (synthetic sky only).

Each experiment writes its own ``tables/truth_<experiment>.csv`` (``metric,
value, note``) beside its figure, so it can be rerun alone; this stage only
gathers them, tagging each row with the experiment it came from.

A metric measured on a finite sample of held-out pairs also carries its
bootstrap interval in the optional ``ci_lo, ci_hi`` columns (the probes write
them); experiments without intervals leave them out, and the gathered table
has them (NaN for those rows) as soon as one input does.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from whatsreal.io import write_csv

__all__ = ["CI_COLUMNS", "TRUTH_COLUMNS", "collect_truth_metrics", "write_truth_table"]

TRUTH_COLUMNS = ("metric", "value", "note")
"""Columns every ``truth_<experiment>.csv`` has."""
CI_COLUMNS = ("ci_lo", "ci_hi")
"""Optional interval columns, written between ``value`` and ``note``."""


def _columns(with_ci: bool) -> list[str]:
    return ["metric", "value", *(CI_COLUMNS if with_ci else ()), "note"]


def write_truth_table(rows: list[dict], out: str | Path, with_ci: bool | None = None) -> pd.DataFrame:
    """Write ``metric, value[, ci_lo, ci_hi], note`` rows atomically (header only when there are none).

    ``with_ci`` None: the interval columns are written when a row has them.
    """
    if with_ci is None:
        with_ci = any(c in r for r in rows for c in CI_COLUMNS)
    table = pd.DataFrame(rows, columns=_columns(with_ci))
    write_csv(table, out)
    return table


def collect_truth_metrics(paths: list[str | Path], out: str | Path) -> pd.DataFrame:
    """Concatenate ``truth_<experiment>.csv`` files into one table with an ``experiment`` column."""
    frames = []
    with_ci = False
    for path in map(Path, paths):
        table = pd.read_csv(path)
        missing = [c for c in TRUTH_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(TRUTH_COLUMNS)})")
        has_ci = all(c in table.columns for c in CI_COLUMNS)
        with_ci |= has_ci
        experiment = path.stem.removeprefix("truth_")
        frames.append(table[_columns(has_ci)].assign(experiment=experiment))
    columns = ["experiment", *_columns(with_ci)]
    merged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    merged = merged.reindex(columns=columns)
    write_csv(merged, out)
    return merged
