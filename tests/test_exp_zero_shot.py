"""Zero-shot transfer: an ellipticity ResNet trained on real HSC, scored on real and generated HSC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from whatsreal.experiments.zero_shot import ZERO_SHOT_COLUMNS, run_zero_shot
from whatsreal.io import write_npz
from whatsreal.layout import DatasetLayout
from whatsreal.surveys import SURVEY_ORDER

from .conftest import TINY_MODEL, tiny_config
from .test_exp_probes import write_fake_dataset


def _posterior(path, pairs, hsc, legacy, samples) -> None:
    n, k = len(pairs), 2
    write_npz(
        path,
        pair=pairs.astype(np.int64),
        object_id=(10_000 + pairs).astype(str),
        target=hsc[pairs],
        physics=legacy[pairs],
        instrument=np.zeros((n, k, *hsc.shape[1:]), np.float32),
        instrument_mask=np.ones((n, k), bool),
        samples=samples.astype(np.float32),
        direction=np.array("hsc"),
    )


def _run(cfg: dict, data, posterior, truth, figure, table):
    """run_zero_shot with the config sections the zero_shot rule passes."""
    return run_zero_shot(
        cfg["experiments"]["zero_shot"],
        DatasetLayout(data),
        posterior,
        truth,
        figure,
        table,
        baselines_cfg=cfg["experiments"]["baselines"],
        bands=cfg["preprocess"]["bands"],
        encoder=cfg["model"]["encoder"],
    )


@pytest.mark.slow  # trains the ResNet regressor (9 s on the shared 2-core machine)
def test_zero_shot_scores_real_and_generated_hsc(tmp_path):
    n, size = 260, 16
    rng = np.random.default_rng(0)
    e1, e2 = rng.uniform(-0.4, 0.4, n), rng.uniform(-0.4, 0.4, n)
    # Planted image -> ellipticity signal: e1 is the brightness of band 0, e2 of band 1.
    hsc = rng.normal(size=(n, 4, size, size)) * 0.3
    hsc[:, 0] += 3 * e1[:, None, None]
    hsc[:, 1] += 3 * e2[:, None, None]
    images = {"hsc": hsc.astype(np.float32), "legacysurvey": rng.normal(size=(n, 4, size, size)).astype(np.float32)}
    data = tmp_path / "data"
    paths = write_fake_dataset(data, n, images=images, e1=e1, e2=e2)
    split = pd.read_parquet(paths["meta_hsc"])["split"].to_numpy()
    pairs = np.flatnonzero(split == "val")[:30]
    good = hsc[pairs][:, None] + rng.normal(size=(len(pairs), 3, 4, size, size)) * 0.05  # faithful samples
    bad = rng.normal(size=(len(pairs), 3, 4, size, size))  # samples that lost the morphology
    _posterior(tmp_path / "good.npz", pairs, images["hsc"], images["legacysurvey"], good)
    _posterior(tmp_path / "bad.npz", pairs, images["hsc"], images["legacysurvey"], bad)
    cfg = tiny_config(
        model=TINY_MODEL,
        experiments={"baselines": {"epochs": 8, "batch_size": 32, "lr": 3e-3}, "zero_shot": {"n_train": 150}},
    )
    out = tmp_path / "out"
    result = _run(cfg, data, tmp_path / "good.npz", paths["truth"], out / "fig9.png", out / "zero_shot.csv")
    table = pd.read_csv(out / "zero_shot.csv").set_index("target")
    assert list(pd.read_csv(out / "zero_shot.csv").columns) == list(ZERO_SHOT_COLUMNS)
    assert list(table.index) == ["hsc_e1", "hsc_e2", "true_e1", "true_e2"]
    assert table.loc["hsc_e1", "truth"] == False and table.loc["true_e1", "truth"] == True  # noqa: E712
    assert (table["n_test"] == 30).all() and (table["n_train"] == 150).all() and (table["n_samples"] == 3).all()
    for t in ("hsc_e1", "hsc_e2"):
        assert table.loc[t, "r2_real"] > 0.6
        assert table.loc[t, "r2_generated"] == pytest.approx(table.loc[t, "r2_real"], abs=0.1)
        assert table.loc[t, "r2_val_real"] > 0.6
    assert abs(table.loc["true_e1", "r2_real"]) < 0.5  # the fake truth e1 is unrelated to the images
    assert (out / "fig9.png").stat().st_size > 10_000
    assert len(result) == 4

    bad_result = _run(cfg, data, tmp_path / "bad.npz", None, out / "fig9_bad.png", out / "bad.csv")
    bad_table = bad_result.set_index("target")
    assert list(bad_table.index) == ["hsc_e1", "hsc_e2"]  # no truth: catalogue ellipticity only
    assert (bad_table["r2_generated"] < 0.3).all()
    np.testing.assert_allclose(bad_table["r2_real"], table.loc[["hsc_e1", "hsc_e2"], "r2_real"], rtol=0.2)


def test_zero_shot_rejects_a_legacy_anchored_file(tmp_path):
    n = 20
    data = tmp_path / "data"
    paths = write_fake_dataset(data, n)
    imgs = {s: np.load(DatasetLayout(data).images(s)) for s in SURVEY_ORDER}
    pairs = np.arange(3)
    _posterior(tmp_path / "p.npz", pairs, imgs["hsc"], imgs["legacysurvey"], imgs["hsc"][pairs][:, None].repeat(2, 1))
    with np.load(tmp_path / "p.npz") as f:
        arrays = dict(f)
    arrays["direction"] = np.array("legacysurvey")
    write_npz(tmp_path / "p.npz", **arrays)
    with pytest.raises(ValueError, match="HSC-anchored"):
        _run(tiny_config(), data, tmp_path / "p.npz", paths["truth"], tmp_path / "f.png", tmp_path / "t.csv")
