"""Preprocessing against its formula, and the triplet loader over the preprocessed files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from whatsreal.config import validate_config
from whatsreal.data.preprocess import BandTransform, resample_centre
from whatsreal.data.stages import read_normalisation
from whatsreal.data.triplets import TripletDataset, passthrough_collate
from whatsreal.train.datamodules import TripletDataModule

from .conftest import SCHEMA

PRE = validate_config({}, SCHEMA)["preprocess"]


def _transform(survey: str, crop: int) -> BandTransform:
    return BandTransform(
        survey,
        [0, 1, 2, 3],
        np.asarray(PRE["clamp"][survey], dtype=np.float32),
        crop,
        48,
        PRE["arcsinh_softening"],
        PRE["arcsinh_scale"],
        PRE["reference_zero_point"],
    )


def test_hsc_transform_reproduces_the_formula():
    rng = np.random.default_rng(0)
    img = rng.normal(0, 50, (3, 5, 160, 160)).astype(np.float32)
    img[0, 3, 80, 80] = 1e4  # far above the z clamp (330)
    img[1, 0, 70, 70] = np.nan
    ivar = np.ones_like(img)
    ivar[2, 1, 75, 75] = 0.0
    out, n_bad = _transform("hsc", 48)(img, ivar)
    assert out.shape == (3, 4, 48, 48) and out.dtype == np.float32
    assert n_bad == 2
    x = img[:, :4, 56:104, 56:104].copy()
    x[~np.isfinite(x)] = 0
    x[2, 1, 75 - 56, 75 - 56] = 0
    lim = np.array([80, 110, 200, 330], dtype=np.float32)[None, :, None, None]
    x = np.clip(x, -lim, lim) / 10 ** ((27 - 22.5) / 2.5)
    expected = np.arcsinh(x / 0.01) * 0.01 * 10
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert out[0, 3, 80 - 56, 80 - 56] == pytest.approx(np.arcsinh(330 / 10**1.8 / 0.01) * 0.1, rel=1e-5)


def test_legacy_transform_has_no_zero_point_change_and_clamps():
    img = np.full((1, 4, 64, 64), 100.0, dtype=np.float32)
    out, _ = _transform("legacysurvey", 31)(img, np.ones_like(img))
    clamp = np.array([6, 15, 20, 25])
    np.testing.assert_allclose(out[0, :, 24, 24], np.arcsinh(clamp / 0.01) * 0.1, rtol=1e-5)


def _gaussian(size: int, centre: float, sigma: float) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    return np.exp(-((x - centre) ** 2 + (y - centre) ** 2) / (2 * sigma**2)).astype(np.float32)


def _centroid(a: np.ndarray) -> tuple[float, float]:
    y, x = np.mgrid[: a.shape[0], : a.shape[1]]
    return float((a * x).sum() / a.sum()), float((a * y).sum() / a.sum())


@pytest.mark.parametrize("size", [160, 64, 63, 48])
def test_centred_source_stays_centred_after_legacy_upsampling(size):
    src = _gaussian(size, (size - 1) / 2, 2.0)[None, None]
    out = resample_centre(src, 31, 48)[0, 0]
    cx, cy = _centroid(out)
    assert cx == pytest.approx(23.5, abs=0.02) and cy == pytest.approx(23.5, abs=0.02)
    # The field of view is 31 input pixels: a 2-pixel sigma becomes 2 * 48/31 output pixels.
    var = (out * ((np.arange(48) - 23.5) ** 2)[None, :]).sum() / out.sum()
    assert np.sqrt(var) == pytest.approx(2 * 48 / 31, rel=0.05)


def test_hsc_crop_is_an_exact_copy():
    img = np.random.default_rng(1).normal(size=(2, 4, 160, 160)).astype(np.float32)
    np.testing.assert_array_equal(resample_centre(img, 48, 48), img[:, :, 56:104, 56:104])


def test_preprocessed_arrays_are_standardised_on_the_training_split(tiny_data):
    _, out = tiny_data
    split = pd.read_parquet(out / "split.parquet")
    train = (split["split"] == "train").to_numpy()
    for s in ("hsc", "legacysurvey"):
        images = np.load(out / f"images_{s}.npy", mmap_mode="r")
        meta = pd.read_parquet(out / f"meta_{s}.parquet")
        assert images.shape == (len(split), 4, 48, 48) and images.dtype == np.float32
        assert len(meta) == len(split) and (meta["pair"] == np.arange(len(split))).all()
        assert meta["truth_id"].notna().all()
        x = np.asarray(images[train], dtype=np.float64)
        assert abs(x.mean()) < 1e-3 and x.std() == pytest.approx(1.0, rel=1e-3)
        norm = read_normalisation(out / f"meta_{s}.parquet")
        assert norm["norm_std"] > 0


def test_meta_rows_are_the_pairs(tiny_data):
    _, out = tiny_data
    pairs = pd.read_parquet(out / "pairs.parquet")
    for s in ("hsc", "legacysurvey"):
        meta = pd.read_parquet(out / f"meta_{s}.parquet")
        assert (meta["object_id"].astype(str).to_numpy() == pairs[f"{s}_object_id"].astype(str).to_numpy()).all()


def test_triplets_have_the_right_views(tiny_data):
    _, out = tiny_data
    split = pd.read_parquet(out / "split.parquet")
    ds = TripletDataset(out, split["pair"].to_numpy(), "spatial")
    images = {s: np.load(out / f"images_{s}.npy") for s in ("hsc", "legacysurvey")}
    nbrs = {s: np.load(out / f"neighbours_{s}_spatial.npz")["index"] for s in ("hsc", "legacysurvey")}
    torch.manual_seed(0)
    batch = ds.__getitems__(list(range(len(ds))))
    assert batch["target"].shape == (len(ds), 4, 48, 48)
    assert batch["physics"].shape == (len(ds), 1, 4, 48, 48)
    assert batch["instrument"].shape == (len(ds), 5, 4, 48, 48)
    anchors = batch["anchor"].numpy()
    assert 0.3 < anchors.mean() < 0.7, "both directions are used"
    for j in range(len(ds)):
        pair = int(batch["pair"][j])
        s, o = ("hsc", "legacysurvey") if anchors[j] == 0 else ("legacysurvey", "hsc")
        np.testing.assert_array_equal(batch["target"][j].numpy(), images[s][pair])
        np.testing.assert_array_equal(batch["physics"][j, 0].numpy(), images[o][pair])  # same galaxy, other survey
        idx = nbrs[s][pair]
        np.testing.assert_array_equal(batch["instrument_mask"][j].numpy(), idx >= 0)
        assert pair not in idx, "no object is its own neighbour"
        for m, n in enumerate(idx):
            want = images[s][n] if n >= 0 else np.zeros((4, 48, 48), np.float32)
            np.testing.assert_array_equal(batch["instrument"][j, m].numpy(), want)


def test_fixed_anchors_are_reproducible_and_single_items_work(tiny_data):
    _, out = tiny_data
    ds = TripletDataset(out, np.arange(20), "random", anchor_seed=3)
    a = ds.__getitems__(list(range(20)))["anchor"]
    b = ds.__getitems__(list(range(20)))["anchor"]
    assert torch.equal(a, b)
    item = ds[4]
    assert item["target"].shape == (4, 48, 48) and item["instrument"].shape == (5, 4, 48, 48)


def test_datamodule_with_worker_processes(tiny_data):
    _, out = tiny_data
    dm = TripletDataModule(out, batch_size=16, num_workers=2, seed=1)
    dm.setup("fit")
    split = pd.read_parquet(out / "split.parquet")
    assert len(dm.val_set) == int((split["split"] == "val").sum())
    assert set(dm.train_set.pairs).isdisjoint(dm.val_set.pairs)
    batches = list(dm.train_dataloader())
    assert len(batches) == len(dm.train_set) // 16
    assert all(b["target"].shape == (16, 4, 48, 48) for b in batches)
    seen = torch.cat([b["pair"] for b in batches]).numpy()
    assert len(set(seen)) == len(seen)
    loader = DataLoader(dm.val_set, batch_size=8, num_workers=2, collate_fn=passthrough_collate)
    assert sum(len(b["pair"]) for b in loader) == len(dm.val_set)


def test_validation_batches_are_a_fixed_random_order_of_the_held_out_pairs(tiny_data):
    """split.parquet lists pairs in catalogue (sky) order; validation batches must not be runs of
    sky neighbours, or the logged conditioning gain swaps a pair's instrument set for one with
    nearly its own conditions. The order is seeded: every validation sees the same batches."""
    _, out = tiny_data
    split = pd.read_parquet(out / "split.parquet")
    held_out = np.sort(split.loc[split["split"] == "val", "pair"].to_numpy())
    orders = []
    for seed in (1, 1, 2):
        dm = TripletDataModule(out, batch_size=4, seed=seed)
        dm.setup("fit")
        orders.append(np.asarray(dm.val_set.pairs))
        assert np.array_equal(np.sort(orders[-1]), held_out)
        assert not np.array_equal(orders[-1], held_out), "the catalogue order, unshuffled"
    assert np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[0], orders[2])
    loaded = torch.cat([b["pair"] for b in dm.val_dataloader()]).numpy()
    assert np.array_equal(loaded, orders[2])


def test_triplet_figure_shows_a_row_per_pair_and_anchor(tiny_data, tmp_path):
    """The `triplet_figure` rule's figure: one row per validation pair and anchor survey, so a
    figure of three pairs is three times as tall as one of a single pair; both graphs draw."""
    from matplotlib.image import imread

    from whatsreal.plots.triplets import plot_triplets

    _, data = tiny_data
    heights = {}
    for mode, n in (("spatial", 1), ("random", 3)):
        png = tmp_path / f"triplets_{mode}.png"
        plot_triplets(data, png, mode=mode, n=n)
        image = imread(png)
        assert image[..., :3].std() > 0.05, f"{png.name} is blank"
        heights[n] = image.shape[0]
    assert 2.5 < heights[3] / heights[1] < 3.5, heights
