"""Table 5 baselines: the frozen random-init encoder and the cross-predict ResNet, on tiny planted data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from whatsreal.experiments.baselines import (
    CROSS_PREDICT_COLUMNS,
    run_cross_predict,
    run_random_init_embeddings,
)
from whatsreal.experiments.metrics import r2_or_nan
from whatsreal.experiments.probe_design import DESIGN_COLUMNS, resolve_design
from whatsreal.experiments.regressor import masked_smooth_l1, train_image_regressor
from whatsreal.experiments.targets import build_targets
from whatsreal.layout import DatasetLayout
from whatsreal.surveys import SURVEY_ORDER

from .conftest import TINY_MODEL, tiny_config
from .test_exp_probes import write_fake_dataset

FAST_RESNET = {"epochs": 6, "batch_size": 32, "lr": 3e-3, "seed": 0}


def _cfg(**baselines) -> dict:
    return tiny_config(model=TINY_MODEL, experiments={"baselines": {**FAST_RESNET, **baselines}})


@pytest.mark.slow  # trains a ResNet regressor (10-11 s on the shared 2-core machine)
def test_regressor_learns_mean_brightness_from_images():
    """Planted image -> scalar signal: the target is each image's mean brightness; a second target is half missing."""
    rng = np.random.default_rng(0)
    n = 240
    level = rng.uniform(-2, 2, n)
    images = (rng.normal(size=(n, 4, 16, 16)) * 0.3 + level[:, None, None, None]).astype(np.float32)
    y = np.stack([level, np.where(rng.random(n) < 0.5, np.nan, -level)], axis=1)
    train, test = np.arange(200), np.arange(200, n)
    arch = {"name": "resnet10t"}
    reg = train_image_regressor(images, y, train, _cfg()["experiments"]["baselines"], arch, ["b", "neg_b"])
    pred = reg.predict(images[test])
    assert pred.shape == (40, 2)
    assert r2_or_nan(level[test], pred[:, 0]) > 0.8
    assert r2_or_nan(-level[test], pred[:, 1]) > 0.8  # learnt from the labelled half only
    again = train_image_regressor(images, y, train, _cfg()["experiments"]["baselines"], arch, ["b", "neg_b"])
    np.testing.assert_allclose(again.predict(images[test]), pred, rtol=1e-4, atol=1e-4)  # seeded


def test_masked_loss_ignores_missing_labels():
    import torch

    pred = torch.zeros(4, 2)
    target = torch.tensor([[1.0, 100.0], [1.0, 0.5], [1.0, 100.0], [1.0, 0.5]])
    mask = torch.tensor([[True, False], [True, True], [True, False], [True, True]])
    # Each column: mean Smooth L1 over its labelled rows (0.5 for |d| = 1; 0.125 for |d| = 0.5), summed.
    assert float(masked_smooth_l1(pred, target, mask)) == pytest.approx(0.5 + 0.125)


def _random_init_embeddings(cfg: dict, data: Path, out: Path) -> pd.DataFrame:
    """``run_random_init_embeddings`` with the config sections the rule's script passes."""
    return run_random_init_embeddings(cfg["model"]["encoder"], cfg["experiments"]["baselines"]["seed"], data, out)


def test_random_init_embeddings_layout_and_determinism(tmp_path):
    write_fake_dataset(tmp_path / "data", 10, size=32)
    cfg = _cfg()
    out = tmp_path / "random_init_embeddings.parquet"
    table = _random_init_embeddings(cfg, tmp_path / "data", out)
    df = pd.read_parquet(out)
    n_feat = TINY_MODEL["encoder"]["tokens"] * TINY_MODEL["encoder"]["token_dim"]
    ids = ["object_id", "pair", "survey", "ra", "dec", "split"]
    assert list(df.columns) == [*ids, *[f"phys_{i}" for i in range(n_feat)]]
    assert list(df["survey"]) == ["hsc"] * 10 + ["legacysurvey"] * 10
    assert list(df["pair"]) == list(range(10)) * 2
    assert df["object_id"].iloc[0] == "10000" and df["object_id"].iloc[10] == "brick-0"
    feats = df[[f"phys_{i}" for i in range(n_feat)]].to_numpy()
    assert np.isfinite(feats).all() and feats.std(axis=0).max() > 0
    # The two surveys' (different) images give different features from the same encoder.
    assert not np.allclose(feats[:10], feats[10:])
    _random_init_embeddings(cfg, tmp_path / "data", tmp_path / "again.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "again.parquet"), table)
    other = _random_init_embeddings(_cfg(seed=1), tmp_path / "data", tmp_path / "seed1.parquet")
    assert not np.allclose(other[[f"phys_{i}" for i in range(n_feat)]].to_numpy(), feats)


@pytest.mark.slow  # trains a ResNet regressor (10-11 s on the shared 2-core machine)
def test_cross_predict_learns_a_shared_signal_and_names_table5_targets(tmp_path):
    """Legacy EBV is planted as the brightness of the HSC image: the HSC->Legacy net should recover it."""
    n = 200
    rng = np.random.default_rng(3)
    images = {s: rng.normal(size=(n, 4, 16, 16)).astype(np.float32) * 0.3 for s in SURVEY_ORDER}
    data = tmp_path / "data"
    paths = write_fake_dataset(data, n, images=images)
    meta = pd.read_parquet(paths["meta_legacysurvey"])
    ebv = meta["EBV"].to_numpy()
    images["hsc"] += ((ebv - ebv.mean()) / ebv.std())[:, None, None, None].astype(np.float32)
    np.save(data / "images_hsc.npy", images["hsc"])
    cfg = _cfg(epochs=8)
    cfg["experiments"]["probes"]["test_fraction"] = 0.2
    out = tmp_path / "baselines" / "cross_predict.csv"
    experiments = cfg["experiments"]
    result = run_cross_predict(
        experiments["baselines"],
        experiments["probes"],
        design=resolve_design(cfg),
        encoder_cfg=cfg["model"]["encoder"],
        bands=cfg["preprocess"]["bands"],
        data=DatasetLayout(data),
        truth=paths["truth"],
        out=out,
        alternative_out=tmp_path / "baselines" / "alternative.csv",
    )
    table = pd.read_csv(out)
    assert list(table.columns) == [*CROSS_PREDICT_COLUMNS, *DESIGN_COLUMNS]
    assert (table["probe_pairs"] == "all").all() and (table["probe_split"] == "random").all()
    _, specs = build_targets(
        {"hsc": paths["meta_hsc"], "legacysurvey": paths["meta_legacysurvey"]}, paths["truth"], ["g", "r", "i", "z"]
    )
    assert set(table["target"]) == {t.name for t in specs if t.group != "physics"}  # Table 5's instrument rows
    r2 = table.set_index("target")["r2"]
    assert r2["legacy_ebv"] > 0.7
    assert r2["legacy_psfsize"] < 0.3  # pure noise: nothing to learn
    assert (table["n_test"] == 40).all() and (table["n_train"] == 160).all()
    assert len(result) == len(table)
    # The alternative design: only the val pairs, healpix-blocked folds, each val pair scored once out of fold.
    alt = pd.read_csv(tmp_path / "baselines" / "alternative.csv")
    assert list(alt.columns) == [*CROSS_PREDICT_COLUMNS, *DESIGN_COLUMNS]
    assert (alt["probe_pairs"] == "held_out").all() and (alt["probe_split"] == "healpix").all()
    assert (alt["probe_folds"] == 5).all()
    n_val = int((meta["split"] == "val").sum())
    assert (alt["n_test"] == n_val).all() and (alt["n_train"] == round(n_val * 4 / 5)).all()
    assert set(alt["target"]) == set(table["target"])
    assert alt.set_index("target").loc["legacy_ebv", "r2"] > 0.3  # the planted signal survives on ~40 pairs
