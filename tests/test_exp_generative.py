"""Generative experiments on the tiny sky with a tiny untrained model: posterior samples,
noiseless truth renders and counterfactuals against the truth (the noise model, Fig 7: test_exp_noise_model.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from whatsreal.data.mmu import read_catalog, read_images
from whatsreal.data.preprocess import native_band_transform
from whatsreal.data.stages import read_normalisation
from whatsreal.experiments.posterior import run_posterior_samples
from whatsreal.experiments.posterior_file import POSTERIOR_KEYS, load_posterior
from whatsreal.experiments.truth_images import (
    TRUTH_COLUMNS,
    preprocess_noiseless,
    run_truth_counterfactuals,
)
from whatsreal.io import write_npz
from whatsreal.layout import DatasetLayout
from whatsreal.sim.noiseless import render_object, sky_specs

from .conftest import merge_into, save_untrained_checkpoint, tiny_model_config

EXPERIMENTS = {
    "posterior": {"n_galaxies": 5, "n_samples": 3, "batch_size": 2, "seed": 3},
}


SMALL_UNET = {
    "block_out_channels": [8, 16, 16],
    "down_block_types": ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
}
"""Cross-attention only at 12x12: several times faster to sample than conftest's TINY_MODEL
(self-attention at 24x24), with the same code paths."""


def _cfg(**overrides: dict) -> dict:
    cfg = tiny_model_config()
    merge_into(
        cfg, {"model": {"unet": SMALL_UNET}, "experiments": EXPERIMENTS, "sample": {"method": "heun", "steps": 2}}
    )
    merge_into(cfg, overrides)
    return cfg


def _sections(cfg: dict) -> tuple[dict, dict]:
    """run_posterior_samples' config arguments: its section and the sampler's."""
    return cfg["experiments"]["posterior"], cfg["sample"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """A tiny untrained model saved the way Lightning saves one (loadable with weights_only)."""
    return save_untrained_checkpoint(_cfg(), tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def posteriors(tiny_data, checkpoint, tmp_path_factory) -> dict[str, str]:
    _, data = tiny_data
    out = tmp_path_factory.mktemp("posterior")
    paths = {}
    for d in ("hsc", "legacysurvey"):
        paths[d] = str(out / f"posterior_{d}.npz")
        run_posterior_samples(*_sections(_cfg()), checkpoint, data, d, paths[d])
    return paths


def test_posterior_npz_follows_the_contract_and_uses_only_heldout_pairs(tiny_data, posteriors):
    _, data = tiny_data
    split = pd.read_parquet(data / "split.parquet")
    val = set(split.loc[split["split"] == "val", "pair"])
    images = {s: np.load(data / f"images_{s}.npy") for s in ("hsc", "legacysurvey")}
    for direction, path in posteriors.items():
        with np.load(path, allow_pickle=False) as f:
            assert set(f.files) == set(POSTERIOR_KEYS)
        post = load_posterior(path)
        n = min(5, len(val))
        assert post["direction"] == direction
        assert post["pair"].dtype == np.int64 and post["pair"].shape == (n,)
        assert set(post["pair"]) <= val and len(set(post["pair"])) == n
        assert post["samples"].shape == (n, 3, 4, 48, 48) and post["samples"].dtype == np.float32
        assert post["target"].shape == (n, 4, 48, 48) and post["physics"].shape == (n, 4, 48, 48)
        assert post["instrument"].shape[:2] == post["instrument_mask"].shape and post["instrument_mask"].dtype == bool
        other = "legacysurvey" if direction == "hsc" else "hsc"
        np.testing.assert_array_equal(post["target"], images[direction][post["pair"]])
        np.testing.assert_array_equal(post["physics"], images[other][post["pair"]])
        nbrs = np.load(data / f"neighbours_{direction}_spatial.npz")["index"][post["pair"]]
        np.testing.assert_array_equal(post["instrument_mask"], nbrs >= 0)
        first = nbrs[0][nbrs[0] >= 0]
        np.testing.assert_array_equal(post["instrument"][0, : len(first)], images[direction][first])
        meta = pd.read_parquet(data / f"meta_{direction}.parquet").set_index("pair")
        assert list(post["object_id"]) == list(meta.loc[post["pair"], "object_id"].astype(str))
        assert np.isfinite(post["samples"]).all()
        assert not np.allclose(post["samples"][:, 0], post["samples"][:, 1]), "samples of a galaxy differ"
    # The same galaxies in both directions.
    assert list(load_posterior(posteriors["hsc"])["pair"]) == list(load_posterior(posteriors["legacysurvey"])["pair"])


def test_posterior_is_deterministic_and_independent_of_the_batch_size(tiny_data, checkpoint, posteriors, tmp_path):
    _, data = tiny_data
    ref = load_posterior(posteriors["hsc"])
    again = run_posterior_samples(
        *_sections(_cfg(experiments={"posterior": {"batch_size": 5}})), checkpoint, data, "hsc", tmp_path / "p.npz"
    )
    np.testing.assert_allclose(again["samples"], ref["samples"], rtol=1e-5, atol=1e-5)
    other_seed = run_posterior_samples(
        *_sections(_cfg(experiments={"posterior": {"seed": 4}})), checkpoint, data, "hsc", tmp_path / "q.npz"
    )
    assert list(other_seed["pair"]) != list(ref["pair"]) or not np.allclose(other_seed["samples"], ref["samples"])
    with pytest.raises(ValueError, match="direction"):
        run_posterior_samples(*_sections(_cfg()), checkpoint, data, "sdss", tmp_path / "r.npz")


def test_rebuilt_specs_reproduce_the_stored_cutouts_bit_for_bit(tiny_sky):
    """The noiseless render is the simulator's own model: the same spec gives the same noisy cutout."""
    cfg, raw, _ = tiny_sky
    specs = sky_specs(cfg)
    truth = pd.read_parquet(raw / "truth.parquet")
    for survey in ("hsc", "legacysurvey"):
        cat = read_catalog(raw / survey, columns=["object_id"])
        assert len(cat) == len(specs[survey])
        flagged = truth.loc[truth[f"{survey}_saturated_star"] | truth[f"{survey}_stripe"], f"{survey}_object_id"]
        flagged_rows = cat.index[cat["object_id"].astype(str).isin(flagged.astype(str))][:2]
        picks = [0, len(cat) // 2, len(cat) - 1, *flagged_rows]
        for i in picks:
            r = cat.loc[i]
            stored = read_images(raw / survey / r["file"], [r["row"]], ("image_array",))["image_array"][0]
            stamp = render_object(specs[survey][str(r["object_id"])], survey, cfg)
            np.testing.assert_array_equal(stamp.image, stored)
        # A clean object: the stored cutout minus the noiseless model is the sky noise.
        clean = truth[
            truth[f"in_{survey}"]
            & ~truth[[f"{survey}_{p}" for p in ("saturated_star", "stripe", "high_noise")]].any(axis=1)
        ].iloc[0]
        oid = str(clean[f"{survey}_object_id"])
        stamp = render_object(specs[survey][oid], survey, cfg)
        sigma = np.array([clean[f"{survey}_sky_sigma_{b}"] for b in ("g", "r", "i", "z")])
        resid = (stamp.image - stamp.model)[:4].std(axis=(1, 2))
        np.testing.assert_allclose(resid, sigma, rtol=0.1)


def test_noiseless_preprocessing_is_the_datas_preprocessing(tiny_data):
    """The truth images go through exactly the data's transform: the stored noisy cutout,
    preprocessed this way, is the row of images_{survey}.npy."""
    cfg, data = tiny_data
    for survey in ("hsc", "legacysurvey"):
        meta = pd.read_parquet(data / f"meta_{survey}.parquet")
        cat = pd.read_parquet(data / f"catalog_{survey}.parquet").set_index("object_id")
        images = np.load(data / f"images_{survey}.npy", mmap_mode="r")
        norm = read_normalisation(data / f"meta_{survey}.parquet")
        for pair in (0, len(meta) - 1):
            r = cat.loc[meta.loc[pair, "object_id"]]
            got = read_images(r["file"], [r["row"]], ("image_array", "image_ivar"))
            x, _ = native_band_transform(survey, cfg["preprocess"])(got["image_array"], got["image_ivar"])
            np.testing.assert_allclose((x[0] - norm["norm_mean"]) / norm["norm_std"], images[pair], atol=2e-5)
        assert preprocess_noiseless(
            np.zeros((1, 5 if survey == "hsc" else 4, 48, 48), np.float32), survey, cfg["preprocess"], norm
        ).shape == (1, 4, 48, 48)


def test_truth_counterfactuals_against_the_noiseless_truth(tiny_data, tiny_sky, posteriors, tmp_path):
    cfg, data = tiny_data
    _, raw, _ = tiny_sky
    metas = DatasetLayout(data)
    df = run_truth_counterfactuals(cfg, list(posteriors.values()), metas, raw / "truth.parquet", tmp_path / "t.csv")
    table = pd.read_csv(tmp_path / "t.csv")
    assert list(table.columns) == list(TRUTH_COLUMNS) and len(table) == 6
    vals = df.set_index("metric")["value"]
    for d in ("hsc", "legacysurvey"):
        floor = vals[f"{d}_anchored_observed_mse_vs_noiseless"]
        # The real target differs from its noiseless truth by noise and the labelled artefacts
        # (inside the crop since the sky fix), far less than it varies about its own mean.
        target = load_posterior(posteriors[d])["target"]
        assert 0 < floor < 0.8 * float(np.mean((target - target.mean()) ** 2))
        assert vals[f"{d}_anchored_sample_mse_vs_noiseless"] > floor, "an untrained model is worse than the data"
    # A planted posterior whose samples ARE the noiseless truth scores 0 against it.
    from whatsreal.experiments.truth_images import noiseless_targets

    post = load_posterior(posteriors["hsc"])
    meta = pd.read_parquet(data / "meta_hsc.parquet").set_index("pair")
    clean = noiseless_targets(
        cfg,
        "hsc",
        post["object_id"],
        meta.loc[post["pair"], "truth_id"].to_numpy(),
        pd.read_parquet(raw / "truth.parquet"),
        metas.meta("hsc"),
    )
    post["samples"] = np.repeat(clean[:, None], 2, axis=1)
    write_npz(tmp_path / "posterior_hsc.npz", **post)
    planted = run_truth_counterfactuals(
        cfg, [tmp_path / "posterior_hsc.npz"], metas, raw / "truth.parquet", tmp_path / "u.csv"
    )
    assert planted.set_index("metric")["value"]["hsc_anchored_posterior_mean_mse_vs_noiseless"] < 1e-10
    # Another simulation config cannot silently give another sky's "truth".
    wrong = _cfg(simulation={"seed": 8})
    with pytest.raises((KeyError, ValueError), match="simulat"):
        run_truth_counterfactuals(wrong, [posteriors["hsc"]], metas, raw / "truth.parquet", tmp_path / "w.csv")
    # Real data: the header only.
    real = _cfg(dataset={"source": "mmu"})
    assert run_truth_counterfactuals(real, [posteriors["hsc"]], metas, None, tmp_path / "v.csv").empty
    assert pd.read_csv(tmp_path / "v.csv").columns.tolist() == list(TRUTH_COLUMNS)
