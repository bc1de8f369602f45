"""Checksums of a finished run's tables and arrays, to prove a refactor left the outputs alone.

Usage::

    python benchmarks/output_checksums.py results/tiny > before.tsv    # on the old commit
    python benchmarks/output_checksums.py results/tiny > after.tsv     # on the new one
    python benchmarks/output_checksums.py --compare before.tsv after.tsv

Hashed: every table and array (csv, parquet, npy, npz, fits) under the results folder. Left
out, because they record *when* or *how long* rather than *what*: logs, benchmark TSVs,
rule_times.csv, summary.md (it quotes the rule times), checkpoints (they carry wall-clock
state), metrics.csv (it logs step times), figures and the effective config (it names
the config files' paths). Parquet files are compared by content (their rows as CSV), since
the file bytes carry the writer's version; FITS files by their header cards and data, without
the CHECKSUM/DATASUM cards, whose comment astropy stamps with the time of writing.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd

TABLE_SUFFIXES = {".csv", ".parquet", ".npy", ".npz", ".fits"}
SKIPPED_NAMES = {"rule_times.csv", "metrics.csv", "summary.md", "effective_config.yaml"}
SKIPPED_DIRS = {"logs", "benchmarks", "checkpoints", "figures", "lightning_logs"}


def digest(path: Path) -> str:
    """sha256 of a file's content; parquet by its rows, npz member by member, FITS by its cards and data."""
    h = hashlib.sha256()
    if path.suffix == ".parquet":
        buf = io.StringIO()
        pd.read_parquet(path).to_csv(buf, index=False)
        h.update(buf.getvalue().encode())
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            for name in sorted(z.files):
                h.update(name.encode())
                h.update(np.ascontiguousarray(z[name]).tobytes())
    elif path.suffix == ".fits":
        _fits_content(path, h)
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


def _fits_content(path: Path, h) -> None:
    """Every HDU's header cards and data into ``h``, but the CHECKSUM and DATASUM cards: astropy
    stamps the CHECKSUM card's comment with the time of writing, so two identical runs differ there."""
    from astropy.io import fits

    with fits.open(path) as hdul:
        for hdu in hdul:
            for card in hdu.header.cards:
                if card.keyword not in ("CHECKSUM", "DATASUM"):
                    h.update(f"{card.keyword}={card.value!r}/{card.comment}".encode())
            if hdu.data is not None:
                h.update(np.ascontiguousarray(hdu.data).tobytes())


def manifest(root: Path) -> dict[str, str]:
    """``{relative path: digest}`` of every hashed file under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or p.suffix not in TABLE_SUFFIXES or p.name in SKIPPED_NAMES:
            continue
        if SKIPPED_DIRS.intersection(rel.parts[:-1]):
            continue
        out[str(rel)] = digest(p)
    return out


def read_manifest(path: Path) -> dict[str, str]:
    rows = (line.split("\t") for line in path.read_text().splitlines() if line)
    return {name: d for name, d in rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, help="a results folder, or two manifests with --compare")
    ap.add_argument("--compare", action="store_true", help="compare two manifests; exit 1 if they differ")
    args = ap.parse_args(argv)
    if not args.compare:
        for name, d in manifest(args.paths[0]).items():
            print(f"{name}\t{d}")
        return 0
    a, b = (read_manifest(p) for p in args.paths[:2])
    same = sorted(k for k in a.keys() & b.keys() if a[k] == b[k])
    differ = sorted(k for k in a.keys() & b.keys() if a[k] != b[k])
    print(
        f"{len(same)} identical, {len(differ)} differ, {len(a.keys() - b.keys())} only in the first, "
        f"{len(b.keys() - a.keys())} only in the second"
    )
    for k in differ:
        print(f"differs: {k}")
    for k in sorted(a.keys() ^ b.keys()):
        print(f"only in {'first' if k in a else 'second'}: {k}")
    return 1 if differ or a.keys() != b.keys() else 0


if __name__ == "__main__":
    sys.exit(main())
