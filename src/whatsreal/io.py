"""Atomic file writes, and checked table reads.

Every output appears complete under its final name, or not at all: each writer
produces a temporary sibling (same directory, so the final rename is atomic on
POSIX filesystems) and renames it over the target only after the write
succeeded. An interrupted or failed step therefore never leaves a half-written
file that a later step could mistake for a result.

Every table a stage reads is checked for the columns it needs on the way in, so
a wrong or stale file fails with its name and the missing columns rather than
with a KeyError deep inside the computation.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["atomic_path", "csv_bool", "read_table", "write_csv", "write_npz", "write_parquet"]


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    ``suffix`` keeps libraries that insist on an extension (numpy, matplotlib) happy.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp creates private files; outputs are ordinary files
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_parquet(df: pd.DataFrame, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``df`` (without its index) atomically, with optional key-value schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if metadata:
        merged = {**(table.schema.metadata or {}), **{k.encode(): v.encode() for k, v in metadata.items()}}
        table = table.replace_schema_metadata(merged)
    with atomic_path(path, ".parquet") as tmp:
        pq.write_table(table, tmp)


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """``np.savez`` atomically."""
    with atomic_path(path, ".npz") as tmp:
        np.savez(tmp, **arrays)


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    """Write ``df`` as CSV (without its index) atomically."""
    with atomic_path(path, ".csv") as tmp:
        df.to_csv(tmp, index=False)


def csv_bool(series: pd.Series) -> pd.Series:
    """A boolean column as read back from CSV (``True``/``False`` strings, or bools) as bools."""
    return series.astype(str).str.lower() == "true"


def read_table(path: str | Path, columns: Sequence[str]) -> pd.DataFrame:
    """A CSV (``.csv``) or parquet file (anything else) holding ``columns``, or an error
    naming the file and what is missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    df = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    return df
