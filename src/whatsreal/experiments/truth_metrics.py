"""One table of every truth-based metric of a run (synthetic sky only).

Each experiment writes its own ``tables/truth_<experiment>.csv`` (``metric,
value, note``) beside its figure, so it can be rerun alone; this stage only
gathers them, tagging each row with the experiment it came from.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from whatsreal.io import atomic_path

__all__ = ["TRUTH_COLUMNS", "collect_truth_metrics", "write_truth_table"]

TRUTH_COLUMNS = ("metric", "value", "note")


def write_truth_table(rows: list[dict], out: str | Path) -> pd.DataFrame:
    """Write ``metric, value, note`` rows atomically (header only when there are none)."""
    table = pd.DataFrame(rows, columns=list(TRUTH_COLUMNS))
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    return table


def collect_truth_metrics(paths: list[str | Path], out: str | Path) -> pd.DataFrame:
    """Concatenate ``truth_<experiment>.csv`` files into one table with an ``experiment`` column."""
    frames = []
    for path in map(Path, paths):
        table = pd.read_csv(path)
        missing = [c for c in TRUTH_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(TRUTH_COLUMNS)})")
        experiment = path.stem.removeprefix("truth_")
        frames.append(table[list(TRUTH_COLUMNS)].assign(experiment=experiment))
    columns = ["experiment", *TRUTH_COLUMNS]
    merged = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    with atomic_path(out) as tmp:
        merged.to_csv(tmp, index=False)
    return merged
