"""Bad real-data input: each problem is an error naming the file, row or column, and no output is left."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from whatsreal.data import stages
from whatsreal.data.crossmatch import CrossmatchError
from whatsreal.data.mmu import MMUFormatError


def _copy_survey(raw: Path, survey: str, dst: Path) -> tuple[Path, Path]:
    shutil.copytree(raw / survey, dst)
    shard = sorted(dst.glob("healpix=*/001-of-001.hdf5"))[0]
    return dst, shard


def _rewrite(shard: Path, name: str, data: np.ndarray) -> None:
    with h5py.File(shard, "a") as f:
        del f[name]
        f.create_dataset(name, data=data)


def _edit_missing_dataset(shard):
    with h5py.File(shard, "a") as f:
        del f["image_ivar"]
    return "missing dataset 'image_ivar'"


def _edit_wrong_shape(shard):
    with h5py.File(shard, "r") as f:
        arr = f["image_array"][()]
    _rewrite(shard, "image_array", arr[:, :, :40, :40])
    return "cutouts are 40x40 pixels, at least 48 needed"


def _edit_missing_band(shard):
    with h5py.File(shard, "r") as f:
        bands = f["image_band"][()]
    bands[:, 2] = b"hsc-x"
    _rewrite(shard, "image_band", bands)
    return "bands ['i'] missing"


def _edit_nan_coordinate(shard):
    with h5py.File(shard, "r") as f:
        dec = f["dec"][()]
    dec[3] = np.nan
    _rewrite(shard, "dec", dec)
    return "row 3 (object_id"


def _edit_duplicate_ids(shard):
    with h5py.File(shard, "r") as f:
        ids = f["object_id"][()]
    ids[5] = ids[2]
    _rewrite(shard, "object_id", ids)
    return "duplicate object_id"


def _edit_truncated(shard):
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 3])
    return "not a readable HDF5 file"


def _edit_short_column(shard):
    with h5py.File(shard, "r") as f:
        ra = f["ra"][()]
    _rewrite(shard, "ra", ra[:-1])
    return "dataset 'ra' has"


@pytest.mark.parametrize(
    "edit",
    [
        _edit_missing_dataset,
        _edit_wrong_shape,
        _edit_missing_band,
        _edit_nan_coordinate,
        _edit_duplicate_ids,
        _edit_truncated,
        _edit_short_column,
    ],
)
def test_bad_shards_are_named_and_leave_no_catalog(tiny_sky, tmp_path, edit):
    cfg, raw, _ = tiny_sky
    root, shard = _copy_survey(raw, "hsc", tmp_path / "hsc")
    message = edit(shard)
    out = tmp_path / "catalog_hsc.parquet"
    with pytest.raises(MMUFormatError) as err:
        stages.run_catalog(root, "hsc", cfg["preprocess"], out)
    assert message in str(err.value)
    assert str(shard) in str(err.value) or str(root) in str(err.value)
    assert not out.exists()
    assert not list(tmp_path.glob(".catalog_hsc*")), "no temporary file may remain"


def test_empty_overlap_is_an_error_and_leaves_no_pairs(tiny_data, tmp_path):
    cfg, out = tiny_data
    import pandas as pd

    ls = pd.read_parquet(out / "catalog_legacysurvey.parquet")
    ls["ra"] = ls["ra"] + 30.0  # the Legacy catalogue now covers other sky
    moved = tmp_path / "catalog_legacysurvey.parquet"
    ls.to_parquet(moved)
    target = tmp_path / "pairs.parquet"
    with pytest.raises(CrossmatchError, match="do the two catalogues cover the same sky"):
        stages.run_crossmatch(
            {"hsc": out / "catalog_hsc.parquet", "legacysurvey": moved}, cfg["crossmatch"]["radius_arcsec"], target
        )
    assert not target.exists()


def test_missing_mmu_directory_is_named(tiny_sky, tmp_path):
    cfg, _, _ = tiny_sky
    with pytest.raises(FileNotFoundError, match="nope"):
        stages.run_catalog(tmp_path / "nope", "hsc", cfg["preprocess"], tmp_path / "c.parquet")
