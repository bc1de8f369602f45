"""Source `crossmatched_parquet`: pre-matched shards give the same dataset as the MMU path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from whatsreal.data import stages
from whatsreal.data.crossmatched import write_crossmatched_parquet
from whatsreal.data.mmu import MMUFormatError, read_images

SURVEYS = ("hsc", "legacysurvey")


@pytest.fixture(scope="module")
def shards(tiny_data, tmp_path_factory):
    """The tiny sky's pairs written as two crossmatched-parquet shards, in pair order."""
    _, out = tiny_data
    pairs = pd.read_parquet(out / "pairs.parquet")
    cats = {s: pd.read_parquet(out / f"catalog_{s}.parquet") for s in SURVEYS}
    images, ivar = {}, {}
    for s in SURVEYS:
        rows = cats[s].iloc[pairs[f"{s}_row"].to_numpy()]
        parts = [
            read_images(f, [r], ("image_array", "image_ivar")) for f, r in zip(rows["file"], rows["row"], strict=True)
        ]
        images[s] = np.concatenate([p["image_array"] for p in parts])
        ivar[s] = np.concatenate([p["image_ivar"] for p in parts])
    bands = {"hsc": ["HSC-G", "HSC-R", "HSC-I", "HSC-Z", "HSC-Y"], "legacysurvey": ["DES-G", "DES-R", "DES-I", "DES-Z"]}
    cols = pd.DataFrame(
        {
            "ra": pairs["ra"],
            "dec": pairs["dec"],
            "hsc_object_id": pairs["hsc_object_id"],
            "legacysurvey_object_id": pairs["legacysurvey_object_id"].astype(str),
        }
    )
    d = tmp_path_factory.mktemp("xm")
    half = len(pairs) // 2
    for k, sl in enumerate((slice(0, half), slice(half, None))):
        write_crossmatched_parquet(
            {s: images[s][sl] for s in SURVEYS},
            {s: ivar[s][sl] for s in SURVEYS},
            bands,
            cols.iloc[sl].reset_index(drop=True),
            d / "shards" / f"part-{k:03d}.parquet",
            row_group_size=50,
        )
    return d / "shards"


def test_crossmatched_parquet_reproduces_the_mmu_dataset(tiny_data, shards, tmp_path):
    cfg, out = tiny_data
    cats = {s: tmp_path / f"catalog_{s}.parquet" for s in SURVEYS}
    pairs = stages.run_crossmatched_catalogs(shards, cats, tmp_path / "pairs.parquet")
    ref = pd.read_parquet(out / "pairs.parquet")
    assert (pairs["hsc_object_id"].astype(str).to_numpy() == ref["hsc_object_id"].astype(str).to_numpy()).all()
    stages.run_split(tmp_path / "pairs.parquet", cfg["split"], tmp_path / "split.parquet")
    for s in SURVEYS:
        stages.run_preprocess(
            s,
            cats[s],
            tmp_path / "pairs.parquet",
            tmp_path / "split.parquet",
            cfg["preprocess"],
            tmp_path / f"images_{s}.npy",
            tmp_path / f"meta_{s}.parquet",
            workers=2,
        )
        np.testing.assert_allclose(
            np.load(tmp_path / f"images_{s}.npy"), np.load(out / f"images_{s}.npy"), rtol=1e-6, atol=1e-6
        )


def test_missing_column_is_named(shards, tmp_path):
    shard = sorted(shards.glob("*.parquet"))[0]
    table = pq.read_table(shard).drop(["legacysurvey_object_id"])
    bad = tmp_path / "bad" / "part.parquet"
    bad.parent.mkdir()
    pq.write_table(table, bad)
    with pytest.raises(MMUFormatError, match=r"part\.parquet: missing column 'legacysurvey_object_id'"):
        stages.run_crossmatched_catalogs(
            bad.parent, {s: tmp_path / f"c_{s}.parquet" for s in SURVEYS}, tmp_path / "pairs.parquet"
        )
    assert not (tmp_path / "pairs.parquet").exists()
