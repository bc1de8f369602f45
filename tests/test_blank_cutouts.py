"""A cutout with a blank band (no valid pixel inside the crop) is listed, recorded, and
dropped from training (preprocess.blank_cutouts: drop) or kept and flagged (flag)."""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from whatsreal.data import stages
from whatsreal.data.catalog import band_letters
from whatsreal.data.preprocess import BandTransform, crop_window
from whatsreal.data.triplets import TripletDataset
from whatsreal.data.usable import drop_unusable_neighbours, usable_pairs
from whatsreal.experiments.conditioning_gain import val_pairs
from whatsreal.experiments.posterior import heldout_pairs
from whatsreal.train.datamodules import TripletDataModule

SURVEYS = ("hsc", "legacysurvey")
MODES = ("drop", "flag")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname} {record.getMessage()}")


@pytest.fixture(scope="module")
def blank_data(tiny_sky, tiny_data, tmp_path_factory):
    """The tiny dataset with HSC band g of one training pair all NaN, preprocessed once per
    mode: {mode: (directory, preprocess log messages)}, the pair, its object id, and a pair
    that has it among its HSC neighbours."""
    cfg, raw, _ = tiny_sky
    _, data = tiny_data
    base = tmp_path_factory.mktemp("blank")
    split = pd.read_parquet(data / "split.parquet")
    pairs = pd.read_parquet(data / "pairs.parquet")
    nbr = np.load(data / "neighbours_hsc_spatial.npz")["index"]
    train = split.loc[split["split"] == "train", "pair"].to_numpy()
    pair = next(int(p) for p in train if (nbr == p).any())  # a training pair that is someone's neighbour
    neighbour_of = int(np.flatnonzero((nbr == pair).any(axis=1))[0])
    cat = pd.read_parquet(data / "catalog_hsc.parquet")
    entry = cat.iloc[int(pairs["hsc_row"][pair])]
    shutil.copytree(raw / "hsc", base / "raw_hsc")
    shard = base / "raw_hsc" / Path(entry["file"]).relative_to(raw / "hsc")
    with h5py.File(shard, "a") as f:
        g = band_letters(f["image_band"][0]).index("g")
        f["image_array"][int(entry["row"]), g] = np.nan

    dirs = {}
    for mode in MODES:
        d = base / mode
        d.mkdir()
        keep = ["pairs.parquet", "split.parquet", "images_legacysurvey.npy", "meta_legacysurvey.parquet"]
        keep += [f"neighbours_{s}_{m}.npz" for s in SURVEYS for m in ("spatial", "random")]
        for name in keep:
            shutil.copy(data / name, d / name)
        stages.run_catalog(base / "raw_hsc", "hsc", cfg["preprocess"], d / "catalog_hsc.parquet")
        mode_cfg = copy.deepcopy(cfg)
        mode_cfg["preprocess"]["blank_cutouts"] = mode
        records = _Records()
        logger = logging.getLogger("whatsreal.data.preprocess")
        logger.addHandler(records)
        try:
            stages.run_preprocess(
                "hsc",
                d / "catalog_hsc.parquet",
                d / "pairs.parquet",
                d / "split.parquet",
                mode_cfg["preprocess"],
                d / "images_hsc.npy",
                d / "meta_hsc.parquet",
                truth_path=raw / "truth.parquet",
            )
        finally:
            logger.removeHandler(records)
        dirs[mode] = (d, records.messages)
    return dirs, pair, str(entry["object_id"]), neighbour_of


def test_the_simulated_sky_has_no_blank_cutout(tiny_data):
    """Guards the tests below (only the edited cutout is blank) and against false alarms."""
    _, data = tiny_data
    for s in SURVEYS:
        meta = pd.read_parquet(data / f"meta_{s}.parquet")
        assert (meta["blank_bands"] == "").all() and not meta["blank_dropped"].any()
    assert usable_pairs(data).all()


@pytest.mark.parametrize("mode", MODES)
def test_preprocess_lists_the_blank_cutout_and_meta_records_it(blank_data, mode):
    dirs, pair, object_id, _ = blank_data
    d, messages = dirs[mode]
    n_pairs = len(pd.read_parquet(d / "pairs.parquet"))
    summary = [m for m in messages if m.startswith(f"WARNING hsc: 1 of {n_pairs} cutouts have a blank band")]
    assert len(summary) == 1 and "per band: g 1" in summary[0]
    assert f"preprocess.blank_cutouts is {mode}" in summary[0]
    assert f"WARNING hsc blank cutout: object_id {object_id}, pair {pair}, band(s) g" in messages
    meta = pd.read_parquet(d / "meta_hsc.parquet")
    assert meta.loc[pair, "blank_bands"] == "g"
    assert (meta["blank_bands"] != "").sum() == 1
    assert bool(meta.loc[pair, "blank_dropped"]) == (mode == "drop")
    assert stages.read_normalisation(d / "meta_hsc.parquet")["blank_cutouts"] == 1


def test_drop_never_yields_the_pair_in_any_role(blank_data):
    dirs, pair, _, neighbour_of = blank_data
    d, _ = dirs["drop"]
    usable = usable_pairs(d)
    assert np.flatnonzero(~usable).tolist() == [pair]
    dm = TripletDataModule(d, batch_size=8, seed=0)
    dm.setup("fit")
    for ds in (dm.train_set, dm.val_set):
        assert pair not in ds.pairs
        for s in SURVEYS:
            assert pair not in ds.neighbours[s]
    blank_image = np.load(d / "images_hsc.npy")[pair]
    for batch in [*dm.train_dataloader(), *dm.val_dataloader()]:
        assert pair not in batch["pair"].numpy()
        views = batch["instrument"][batch["instrument_mask"]].numpy()
        assert not any(np.array_equal(v, blank_image) for v in views)
    # The pair it neighboured keeps its other neighbours, without it.
    before = np.load(d / "neighbours_hsc_spatial.npz")["index"][neighbour_of]
    item = TripletDataset(d, np.array([neighbour_of]), anchors=np.array([0]))[0]  # HSC-anchored
    assert int(item["instrument_mask"].sum()) == int((before >= 0).sum()) - 1
    assert not any(np.array_equal(v, blank_image) for v in item["instrument"].numpy())


def test_flag_keeps_the_pair_in_every_role(blank_data):
    dirs, pair, _, neighbour_of = blank_data
    d, _ = dirs["flag"]
    assert usable_pairs(d).all()
    dm = TripletDataModule(d, batch_size=8, seed=0)
    dm.setup("fit")
    assert pair in dm.train_set.pairs
    assert pair in dm.train_set.neighbours["hsc"][neighbour_of]
    blank_image = np.load(d / "images_hsc.npy")[pair]
    item = TripletDataset(d, np.array([neighbour_of]), anchors=np.array([0]))[0]
    assert any(np.array_equal(v, blank_image) for v in item["instrument"].numpy())


def test_pair_choosers_of_the_experiments_skip_unusable_pairs(tmp_path):
    split = pd.DataFrame({"pair": np.arange(10), "split": ["train"] * 5 + ["val"] * 5})
    split.to_parquet(tmp_path / "split.parquet")
    usable = np.ones(10, dtype=bool)
    usable[[6, 8]] = False
    assert val_pairs(tmp_path / "split.parquet", usable=usable).tolist() == [5, 7, 9]
    assert sorted(heldout_pairs(tmp_path / "split.parquet", 10, seed=0, usable=usable).tolist()) == [5, 7, 9]
    assert val_pairs(tmp_path / "split.parquet").tolist() == [5, 6, 7, 8, 9]


def test_dropped_neighbours_are_removed_and_the_rest_move_left():
    index = np.array([[3, 1, 4, -1], [1, -1, -1, -1], [2, 0, -1, -1]])
    usable = np.array([True, False, True, True, False])
    got = drop_unusable_neighbours(index, usable)
    np.testing.assert_array_equal(got, [[3, -1, -1, -1], [-1, -1, -1, -1], [2, 0, -1, -1]])
    assert drop_unusable_neighbours(index, np.ones(5, dtype=bool)) is index


def test_a_band_is_blank_when_nothing_valid_lies_where_the_crop_reads():
    """Legacy geometry: 31 central pixels of a 64-pixel cutout resampled to 48."""
    s, crop, size = 64, 31, 48
    win = crop_window(s, crop, size)
    assert win.stop - win.start in (crop, crop + 1, crop + 2)  # bilinear taps reach just past the crop
    assert win.start + win.stop - 1 == s - 1  # centred
    t = BandTransform("legacysurvey", [0, 1, 2, 3], np.full(4, 10.0, np.float32), crop, size, 0.01, 10.0, 22.5)
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 4, s, s)).astype(np.float32)
    ivar = np.ones_like(image)
    image[0, 0] = np.nan  # g: all NaN
    ivar[0, 1, win, win] = 0  # r: ivar 0 inside the window only
    image[0, 2, win, win] = 0.0  # i: exactly zero inside the window (a fill value)
    image[0, 3, win, win] = np.nan  # z: one valid pixel left inside the window
    image[0, 3, win.start, win.start] = 1.0
    np.testing.assert_array_equal(t.blank_bands(image, ivar), [[True, True, True, False]])
