"""Read and write Multimodal Universe (MMU) HDF5 shards.

Layout, as the MMU builders write it: ``<root>/healpix=<N>/001-of-001.hdf5``
(nside 16, nested), one top-level dataset per column, all of length N:

- ``image_array``, ``image_ivar``: (N, B, S, S) float32
- ``image_mask``: (N, B, S, S) bool for HSC, (N, S, S) bool for Legacy; True = clean
- ``image_band``: (N, B) fixed-length bytes ('hsc-g'..., 'des-g'...)
- ``image_psf_fwhm``, ``image_scale``: (N, B) float32 (arcsec)
- ``object_id``: int64 (HSC) or fixed-length bytes '<brick>-<objid>' (Legacy)
- ``ra``, ``dec`` float64, ``healpix`` int64, plus the survey's catalogue columns.

The reader never loads image datasets as a whole: catalogues come from the
1-D/2-D columns only, and images are read by row, so a real HSC sample
(~100k x 5 x 160 x 160 float32) is never held in memory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from whatsreal.surveys import Survey

__all__ = [
    "IMAGE_DATASETS",
    "MMUFormatError",
    "create_shard",
    "list_shards",
    "read_catalog",
    "read_images",
    "shard_path",
]

SHARD_NAME = "001-of-001.hdf5"
IMAGE_DATASETS = ("image_array", "image_ivar", "image_mask")
STRING_WIDTHS = {"object_id": 16, "image_band": 5}
"""Fixed string widths MMU uses (h5py.string_dtype('utf-8', width)); other string
columns get the width of their longest value."""
_HEALPIX_DIR = re.compile(r"^healpix=(\d+)$")


class MMUFormatError(ValueError):
    """A file that does not follow the MMU layout; the message names file and dataset."""


def shard_path(root: str | Path, healpix: int) -> Path:
    return Path(root) / f"healpix={int(healpix)}" / SHARD_NAME


def list_shards(root: str | Path, suffixes: Sequence[str] = (".hdf5",)) -> list[tuple[int, Path]]:
    """All ``healpix=<N>/*<suffix>`` files under ``root``, sorted by healpix then name.

    ``suffixes``: the image datasets' builders name shards ``*.hdf5``; some catalogue
    builders (PROVABGS) write ``*.h5``, so their readers pass both.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"MMU directory '{root}' does not exist")
    found = []
    for sub in root.iterdir():
        m = _HEALPIX_DIR.match(sub.name)
        if m and sub.is_dir():
            files = sorted(f for f in sub.iterdir() if f.suffix in suffixes and f.is_file())
            found.extend((int(m.group(1)), f) for f in files)
    if not found:
        pattern = "|".join(f"*{s}" for s in suffixes)
        raise MMUFormatError(f"{root}: no healpix=<N>/{pattern} files found")
    return sorted(found)


def create_shard(path: Path, survey: Survey, columns: Mapping[str, np.ndarray], size: int) -> h5py.File:
    """Create a shard with its catalogue columns written and image datasets allocated.

    Image datasets are chunked one object per chunk (so rows read independently)
    and gzip-compressed, as MMU's are. Timestamps are off so that the same inputs
    give byte-identical files.
    """
    n = len(columns["object_id"])
    nb = len(survey.bands)
    path.parent.mkdir(parents=True, exist_ok=True)
    f = h5py.File(path, "w", libver="earliest", track_order=False)
    for name, values in columns.items():
        f.create_dataset(name, data=_fixed_width(values, STRING_WIDTHS.get(name)), track_times=False)
    bands = np.tile(np.array(survey.band_strings, dtype="S5"), (n, 1))
    f.create_dataset("image_band", data=_fixed_width(bands, STRING_WIDTHS["image_band"]), track_times=False)
    f.create_dataset("image_scale", data=np.full((n, nb), survey.pixel_scale, dtype=np.float32), track_times=False)
    img_shape = (n, nb, size, size)
    mask_shape = img_shape if survey.mask_per_band else (n, size, size)
    opts = {"compression": "gzip", "compression_opts": 1, "shuffle": True, "track_times": False}
    for name, shape, dtype in (
        ("image_array", img_shape, np.float32),
        ("image_ivar", img_shape, np.float32),
        ("image_mask", mask_shape, bool),
    ):
        f.create_dataset(name, shape=shape, dtype=dtype, chunks=(1, *shape[1:]) if n else None, **opts)
    return f


def _fixed_width(values: np.ndarray, width: int | None = None) -> np.ndarray:
    """Strings as MMU stores them: fixed-width UTF-8 (h5py.string_dtype), never variable length."""
    values = np.asarray(values)
    if values.dtype == object or values.dtype.kind in "SU":
        as_bytes = np.char.encode(values.astype(str), "utf-8") if values.dtype.kind != "S" else values
        longest = int(np.char.str_len(as_bytes).max()) if as_bytes.size else 1
        if width is not None and longest > width:
            raise ValueError(f"string of {longest} bytes does not fit MMU's fixed width {width}")
        width = width or max(longest, 1)
        return as_bytes.astype(h5py.string_dtype("utf-8", width))
    return values


def _decode(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "S":
        return values.astype(str)
    return values


def read_catalog(root: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Every non-image column of every shard under ``root`` as one DataFrame.

    Adds ``healpix``, ``file`` (path relative to ``root``) and ``row`` (index in
    that file) so images can be fetched later with :func:`read_images`. Multi-band
    columns such as ``image_psf_fwhm`` are split into ``image_psf_fwhm_<k>``.
    """
    root = Path(root)
    frames = []
    for hp, path in list_shards(root):
        with h5py.File(path, "r") as f:
            if "object_id" not in f:
                raise MMUFormatError(f"{path}: missing dataset 'object_id'")
            n = f["object_id"].shape[0]
            data: dict[str, np.ndarray] = {}
            for key in columns if columns is not None else f.keys():
                if key in IMAGE_DATASETS or key == "image_band":
                    continue
                if key not in f:
                    raise MMUFormatError(f"{path}: missing dataset '{key}'")
                ds = f[key]
                if ds.shape[:1] != (n,):
                    raise MMUFormatError(f"{path}: dataset '{key}' has {ds.shape[0]} rows, object_id has {n}")
                arr = ds[()]
                if arr.ndim == 1:
                    data[key] = _decode(arr)
                elif arr.ndim == 2:
                    for k in range(arr.shape[1]):
                        data[f"{key}_{k}"] = _decode(arr[:, k])
            df = pd.DataFrame(data)
            df["healpix"] = hp
            df["file"] = str(path.relative_to(root))
            df["row"] = np.arange(n, dtype=np.int64)
            frames.append(df)
    return pd.concat(frames, ignore_index=True)


def read_images(
    path: str | Path, rows: Sequence[int] | np.ndarray, datasets: Sequence[str] = ("image_array",)
) -> dict[str, np.ndarray]:
    """Rows of image datasets from one shard, in the order given (reads only those rows)."""
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    out = {}
    with h5py.File(path, "r") as f:
        for name in datasets:
            if name not in f:
                raise MMUFormatError(f"{path}: missing dataset '{name}'")
            ds = f[name]
            if rows.size and (sorted_rows[0] < 0 or sorted_rows[-1] >= ds.shape[0]):
                raise IndexError(f"{path}: row {sorted_rows[-1]} out of range for '{name}' ({ds.shape[0]} rows)")
            uniq, inv = np.unique(sorted_rows, return_inverse=True)
            # One hyperslab read per row: h5py's list indexing is several times slower
            # on chunked, compressed datasets (measured in benchmarks/RESULTS.md).
            block = np.empty((uniq.size, *ds.shape[1:]), dtype=ds.dtype)
            for k, r in enumerate(uniq):
                ds.read_direct(block, np.s_[int(r)], np.s_[k])
            out[name] = block[inv][inverse]
    return out
