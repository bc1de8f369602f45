"""Per-survey object catalogues from MMU shards: one row per object, pointing at its image.

The catalogue is the index every later stage works from: ``object_id, ra, dec,
healpix, file, row`` plus the survey's catalogue columns. Building it reads only
the 1-D/2-D columns and the datasets' shapes, never the image data, and checks
what later stages rely on, naming the file, row or column at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from whatsreal.data.mmu import IMAGE_DATASETS, MMUFormatError, list_shards, read_catalog
from whatsreal.surveys import SURVEY_ORDER, SURVEYS, Survey

__all__ = ["REQUIRED_BANDS", "band_letters", "build_catalog", "check_shard"]

REQUIRED_BANDS = ("g", "r", "i", "z")
"""The bands every stage after this one uses for the paired surveys (HSC's y is dropped)."""


def band_letters(band_strings: np.ndarray) -> list[str]:
    """'hsc-g' / 'DES-G' / b'des-g' -> 'g'."""
    out = []
    for b in band_strings:
        s = b.decode() if isinstance(b, bytes) else str(b)
        out.append(s.split("-")[-1].lower())
    return out


def check_shard(path: Path, survey: Survey, min_size: int) -> int:
    """Check one shard's structure; return its number of objects.

    Raises :class:`MMUFormatError` naming the file and dataset for: unreadable or
    truncated files, missing datasets, image arrays of the wrong rank or size,
    columns whose length differs from ``object_id``, and missing bands: those every later
    stage reads, and every band of the survey's registry entry.
    """
    survey_name = survey.name
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise MMUFormatError(f"{path}: not a readable HDF5 file ({err})") from None
    with f:
        for name in ("object_id", "ra", "dec", "image_band", *IMAGE_DATASETS):
            if name not in f:
                raise MMUFormatError(f"{path}: missing dataset '{name}'")
        n = f["object_id"].shape[0]
        shape = f["image_array"].shape
        if len(shape) != 4 or shape[0] != n or shape[2] != shape[3]:
            raise MMUFormatError(f"{path}: dataset 'image_array' has shape {shape}, expected ({n}, B, S, S)")
        if shape[2] < min_size:
            raise MMUFormatError(f"{path}: cutouts are {shape[2]}x{shape[3]} pixels, at least {min_size} needed")
        if f["image_ivar"].shape != shape:
            raise MMUFormatError(f"{path}: dataset 'image_ivar' has shape {f['image_ivar'].shape}, expected {shape}")
        for name in f:
            if f[name].shape[:1] != (n,):
                raise MMUFormatError(f"{path}: dataset '{name}' has {f[name].shape[0]} rows, object_id has {n}")
        if n:
            bands = band_letters(f["image_band"][0])
            required = REQUIRED_BANDS if survey_name in SURVEY_ORDER else ()
            missing = [b for b in required if b not in bands]
            if missing:
                raise MMUFormatError(f"{path}: bands {missing} missing from 'image_band' ({bands}) of {survey_name}")
            missing = [b for b in survey.bands if b not in bands]
            if missing:
                raise MMUFormatError(
                    f"{path}: bands {missing} of surveys.{survey_name}.bands ({', '.join(survey.bands)}) missing "
                    f"from 'image_band' ({bands})"
                )
        return n


def _min_cutout(survey: str, preprocess_cfg: dict) -> int:
    return int(preprocess_cfg["crop"][survey])


def build_catalog(
    root: str | Path, survey: str, preprocess_cfg: dict, registry: Mapping[str, Survey] = SURVEYS
) -> pd.DataFrame:
    """The catalogue of every shard under ``root`` for ``survey`` (a ``registry`` entry), checked.

    ``file`` holds the path of each object's shard (``root`` joined with the shard's
    relative path, as configured), ``row`` its index there.
    """
    if survey not in registry:
        raise ValueError(f"surveys.{survey}: unknown survey (the registry has: {', '.join(registry)})")
    root = Path(root)
    for _, path in list_shards(root):
        check_shard(path, registry[survey], _min_cutout(survey, preprocess_cfg))
    try:
        cat = read_catalog(root)
    except OSError as err:
        raise MMUFormatError(f"{root}: could not read a shard's catalogue ({err})") from None
    cat["file"] = [str(root / f) for f in cat["file"]]
    _check_rows(cat, root)
    front = ["object_id", "ra", "dec", "healpix", "file", "row"]
    return cat[front + [c for c in cat.columns if c not in front]]


def _check_rows(cat: pd.DataFrame, root: Path) -> None:
    """Per-row checks whose errors name the file and row."""
    for col in ("ra", "dec"):
        bad = ~np.isfinite(cat[col].to_numpy(dtype=float))
        if bad.any():
            r = cat[bad].iloc[0]
            raise MMUFormatError(
                f"{r['file']}: row {r['row']} (object_id {r['object_id']}) has non-finite '{col}' "
                f"({int(bad.sum())} such rows under {root})"
            )
    dec = cat["dec"].to_numpy(dtype=float)
    if (np.abs(dec) > 90).any():
        r = cat[np.abs(dec) > 90].iloc[0]
        raise MMUFormatError(f"{r['file']}: row {r['row']} has dec {r['dec']} outside [-90, 90]")
    dup = cat["object_id"].duplicated(keep=False)
    if dup.any():
        first = cat[dup].sort_values("object_id").head(2)
        where = "; ".join(f"{r['file']} row {r['row']}" for _, r in first.iterrows())
        raise MMUFormatError(
            f"{root}: duplicate object_id {first['object_id'].iloc[0]} ({where}); {int(dup.sum())} rows involved"
        )
