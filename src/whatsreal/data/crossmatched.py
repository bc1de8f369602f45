"""The pre-matched parquet shards (HF ``legacysurvey_hsc_crossmatched``), read like MMU data.

Each row is one galaxy seen by both surveys: ``hsc_image`` and ``legacysurvey_image``
are structs of per-band lists (``band``, ``flux``, and where present ``ivar``,
``mask``, ``psf_fwhm``, ``scale``), next to ``hsc_object_id``,
``legacysurvey_object_id`` and the catalogue columns. Rows are already pairs, so
the crossmatch stage is skipped: row i of the shards, in file order, is pair i.

Images are decoded per row group and per requested row; a shard is never
converted to Python lists as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from whatsreal.data.catalog import band_letters
from whatsreal.data.mmu import MMUFormatError

__all__ = [
    "image_column",
    "list_parquet_shards",
    "parquet_band_letters",
    "read_crossmatched_catalogs",
    "read_parquet_images",
    "write_crossmatched_parquet",
]

POSITION_COLUMNS = (("ra", "dec"), ("hsc_ra", "hsc_dec"), ("RA", "DEC"))


def image_column(survey: str) -> str:
    return f"{survey}_image"


def list_parquet_shards(path: str | Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    shards = sorted(path.rglob("*.parquet"))
    if not shards:
        raise MMUFormatError(f"{path}: no *.parquet shards found")
    return shards


def _nested_to_array(column: pa.ChunkedArray | pa.Array, depth: int) -> np.ndarray:
    """A list<list<...<float>>> column of equal-sized lists -> ndarray (n, d1, ..., d_depth)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    shape = []
    values = arr
    for _ in range(depth):
        lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
        if lengths.size and (lengths != lengths[0]).any():
            raise ValueError(f"ragged nested lists (lengths {sorted(set(lengths.tolist()))[:5]})")
        shape.append(int(lengths[0]) if lengths.size else 0)
        values = pc.list_flatten(values)
    return values.to_numpy(zero_copy_only=False).reshape(n, *shape)


def parquet_band_letters(path: str | Path, survey: str) -> list[str]:
    table = pq.ParquetFile(path).read_row_group(0, columns=[image_column(survey)])
    bands = table.column(image_column(survey)).combine_chunks().field("band")[0].as_py()
    return band_letters(bands)


def read_parquet_images(path: str | Path, rows: Sequence[int] | np.ndarray, survey: str) -> dict[str, np.ndarray]:
    """``image_array`` and ``image_ivar`` (ones where the shard has no ivar) for ``rows``, in order."""
    rows = np.asarray(rows, dtype=np.int64)
    pf = pq.ParquetFile(path)
    starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
    if rows.size and (rows.min() < 0 or rows.max() >= starts[-1]):
        raise IndexError(f"{path}: row {rows.max()} out of range ({starts[-1]} rows)")
    col = image_column(survey)
    flux = ivar = None
    for g in np.unique(np.searchsorted(starts, rows, side="right") - 1):
        sel = np.flatnonzero((rows >= starts[g]) & (rows < starts[g + 1]))
        struct = pf.read_row_group(int(g), columns=[col]).column(col).combine_chunks()
        struct = struct.take(pa.array(rows[sel] - starts[g]))
        f = _nested_to_array(struct.field("flux"), 3).astype(np.float32)
        names = {struct.type.field(i).name for i in range(struct.type.num_fields)}
        w = _nested_to_array(struct.field("ivar"), 3).astype(np.float32) if "ivar" in names else np.ones_like(f)
        if flux is None:
            flux = np.empty((rows.size, *f.shape[1:]), np.float32)
            ivar = np.empty_like(flux)
        flux[sel], ivar[sel] = f, w
    if flux is None:
        flux = ivar = np.empty((0,), np.float32)
    return {"image_array": flux, "image_ivar": ivar}


def read_crossmatched_catalogs(
    path: str | Path, surveys: tuple[str, str]
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Per-survey catalogues (``object_id, ra, dec, file, row`` + scalar columns) and the pairs.

    Raises :class:`MMUFormatError` naming the shard and column when a required
    column is missing or a coordinate is not finite.
    """
    cats: dict[str, list[pd.DataFrame]] = {s: [] for s in surveys}
    for shard in list_parquet_shards(path):
        for s, frame in _shard_catalogs(shard, surveys).items():
            cats[s].append(frame)
    out = {s: pd.concat(frames, ignore_index=True) for s, frames in cats.items()}
    _check_catalogs(out, surveys)
    first = out[surveys[0]]
    idx = np.arange(len(first), dtype=np.int64)
    pairs = pd.DataFrame(
        {
            f"{surveys[0]}_row": idx,
            f"{surveys[1]}_row": idx,
            f"{surveys[0]}_object_id": first["object_id"].to_numpy(),
            f"{surveys[1]}_object_id": out[surveys[1]]["object_id"].to_numpy(),
            "ra": first["ra"].to_numpy(),
            "dec": first["dec"].to_numpy(),
            "sep_arcsec": np.zeros(len(first)),
        }
    )
    return out, pairs


def _shard_catalogs(shard: Path, surveys: tuple[str, str]) -> dict[str, pd.DataFrame]:
    """One shard's rows as each survey's catalogue (its ids, the shared position and scalar columns)."""
    schema = pq.read_schema(shard)
    names = set(schema.names)
    for s in surveys:
        for need in (image_column(s), f"{s}_object_id"):
            if need not in names:
                raise MMUFormatError(f"{shard}: missing column '{need}'")
    pos = next((p for p in POSITION_COLUMNS if set(p) <= names), None)
    if pos is None:
        raise MMUFormatError(
            f"{shard}: no position columns (looked for {POSITION_COLUMNS}); the spatial neighbours need ra/dec"
        )
    scalar = [f.name for f in schema if not pa.types.is_nested(f.type) and f.name not in pos]
    table = pq.read_table(shard, columns=[*pos, *scalar]).to_pandas()
    n = len(table)
    frames = {}
    for s in surveys:
        df = pd.DataFrame(
            {
                "object_id": table[f"{s}_object_id"].to_numpy(),
                "ra": table[pos[0]].to_numpy(),
                "dec": table[pos[1]].to_numpy(),
                "healpix": -1,
                "file": str(shard),
                "row": np.arange(n, dtype=np.int64),
            }
        )
        extra = [c for c in scalar if not c.endswith("_object_id")]
        frames[s] = pd.concat([df, table[extra].reset_index(drop=True)], axis=1)
    return frames


def _check_catalogs(cats: dict[str, pd.DataFrame], surveys: tuple[str, str]) -> None:
    """Refuse a non-finite position or a repeated object id, naming the shard and row."""
    first = cats[surveys[0]]
    bad = ~(np.isfinite(first["ra"].to_numpy(float)) & np.isfinite(first["dec"].to_numpy(float)))
    if bad.any():
        r = first[bad].iloc[0]
        raise MMUFormatError(f"{r['file']}: row {r['row']} has a non-finite position")
    for s in surveys:
        dup = cats[s]["object_id"].duplicated()
        if dup.any():
            r = cats[s][dup].iloc[0]
            raise MMUFormatError(f"{r['file']}: row {r['row']} repeats {s}_object_id {r['object_id']}")


def write_crossmatched_parquet(
    images: dict[str, np.ndarray],
    ivar: dict[str, np.ndarray],
    bands: dict[str, list[str]],
    columns: pd.DataFrame,
    out: str | Path,
    row_group_size: int = 256,
) -> None:
    """Write pairs in the crossmatched-parquet layout (used to test the reader on our own sky)."""
    from whatsreal.io import atomic_path

    data = {c: pa.array(columns[c].to_numpy()) for c in columns.columns}
    for s, arr in images.items():
        n, b, h, w = arr.shape
        flux = pa.array(list(arr.reshape(n, b, h, w).tolist()), type=pa.list_(pa.list_(pa.list_(pa.float32()))))
        iv = pa.array(list(ivar[s].tolist()), type=pa.list_(pa.list_(pa.list_(pa.float32()))))
        band = pa.array([bands[s]] * n, type=pa.list_(pa.string()))
        data[image_column(s)] = pa.StructArray.from_arrays([band, flux, iv], names=["band", "flux", "ivar"])
    with atomic_path(out, ".parquet") as tmp:
        pq.write_table(pa.table(data), tmp, row_group_size=row_group_size)
