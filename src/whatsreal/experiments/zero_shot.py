"""Zero-shot pipeline transfer (section 4.2, Fig 9 right): an HSC ellipticity ResNet applied to generated HSC.

If counterfactual HSC images (generated from Legacy observations) preserve the
galaxy's morphology *and* look like HSC data, a network trained only on real
HSC images should measure them as well as it measures the real HSC images of
the same galaxies (paper: R^2 0.82 real vs 0.81 generated).

The network (the model's encoder architecture, from scratch; recipe of
``experiments.baselines``) regresses the HSC catalogue ellipticity (e1, e2
from the i-band SDSS-style moments, as the paper) and, on the synthetic sky,
also the true intrinsic e1, e2. It is trained on real HSC images of up to
``experiments.zero_shot.n_train`` training-split pairs, frozen, then applied to
the HSC-anchored posterior file: the real HSC target images and the generated
samples of the same held-out galaxies. Generated R^2 is reported per sample
(mean and spread over samples), for the posterior-mean image and for the
sample-averaged prediction. The R^2 on every held-out real HSC image is a
context number (more galaxies than the posterior subset).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from whatsreal.experiments.metrics import r2_or_nan
from whatsreal.experiments.posterior_file import load_posterior
from whatsreal.experiments.regressor import ImageRegressor, train_image_regressor
from whatsreal.experiments.targets import build_targets
from whatsreal.io import write_csv
from whatsreal.layout import DatasetLayout
from whatsreal.surveys import SURVEY_ORDER

__all__ = [
    "ZERO_SHOT_COLUMNS",
    "ZERO_SHOT_TARGETS",
    "ZeroShotInputs",
    "ZeroShotResult",
    "load_zero_shot",
    "run_zero_shot",
    "train_zero_shot_regressor",
    "zero_shot_scores",
]

log = logging.getLogger(__name__)

ZERO_SHOT_TARGETS = ("hsc_e1", "hsc_e2", "true_e1", "true_e2")
"""Ellipticity targets of the transfer test (the true_* ones exist only on the synthetic sky)."""
ZERO_SHOT_COLUMNS = (
    "target",
    "n_test",
    "r2_real",
    "r2_generated",
    "r2_generated_std",
    "r2_generated_posterior_mean",
    "r2_generated_mean_prediction",
    "n_samples",
    "n_val",
    "r2_val_real",
    "n_train",
    "truth",
)


@dataclass(frozen=True)
class ZeroShotInputs:
    """The transfer test's inputs, checked: labels, real HSC images, split and the posterior file."""

    posterior: dict[str, np.ndarray]
    """The HSC-anchored posterior samples (:func:`whatsreal.experiments.posterior_file.load_posterior`)."""
    names: list[str]
    """The targets present, in :data:`ZERO_SHOT_TARGETS` order."""
    is_truth: dict[str, bool]
    """Target -> whether it comes from the truth table (synthetic sky) rather than the catalogue."""
    y: np.ndarray
    """(pairs, targets) labels; NaN = missing."""
    images: np.ndarray
    """images_hsc.npy, memory-mapped; row i is pair i."""
    split: np.ndarray
    """Per pair: ``train`` / ``val``."""

    @property
    def test_pairs(self) -> np.ndarray:
        """The posterior file's held-out galaxies (the generated images' anchors)."""
        return np.asarray(self.posterior["pair"], dtype=np.int64)


def load_zero_shot(
    data: DatasetLayout | str | Path, posterior: str | Path, truth: str | Path | None, bands: list[str]
) -> ZeroShotInputs:
    """Read and check the posterior file (HSC-anchored), the ellipticity targets and the HSC images."""
    layout = DatasetLayout.of(data)
    post = load_posterior(posterior)
    if post["direction"] != "hsc":
        raise ValueError(
            f"{posterior}: direction is '{post['direction']}', the zero-shot test needs HSC-anchored samples ('hsc')"
        )
    meta = {s: layout.meta(s) for s in SURVEY_ORDER}
    targets, specs = build_targets(meta, truth, bands)
    names = [t for t in ZERO_SHOT_TARGETS if t in targets.columns]
    images_path = layout.images("hsc")
    if not images_path.exists():
        raise FileNotFoundError(f"{images_path}: file not found")
    images = np.load(images_path, mmap_mode="r")
    if len(images) != len(targets):
        raise ValueError(f"{images_path}: {len(images)} images but {len(targets)} pairs in {meta['hsc']}")
    split = pd.read_parquet(meta["hsc"], columns=["split"])["split"].astype(str).to_numpy()
    test_pairs = np.asarray(post["pair"], dtype=np.int64)
    if test_pairs.size and (test_pairs.min() < 0 or test_pairs.max() >= len(targets)):
        raise ValueError(f"{posterior}: pair index out of range 0..{len(targets) - 1}")
    return ZeroShotInputs(
        posterior=post,
        names=names,
        is_truth={t.name: t.truth for t in specs},
        y=targets[names].to_numpy(np.float64),
        images=images,
        split=split,
    )


def train_zero_shot_regressor(
    inputs: ZeroShotInputs, n_train: int, baselines_cfg: dict, encoder: dict
) -> tuple[ImageRegressor, np.ndarray]:
    """The HSC ellipticity network, trained on a seeded ``n_train`` real HSC training pairs outside the test set.

    Returns the network and its training rows. ``baselines_cfg`` is ``experiments.baselines``
    (the recipe and its seed), ``encoder`` the model's encoder architecture (``model.encoder``).
    """
    train_pool = np.setdiff1d(np.flatnonzero(inputs.split == "train"), inputs.test_pairs)
    n_train = min(n_train, len(train_pool))
    train_rows = np.sort(np.random.default_rng(int(baselines_cfg["seed"])).permutation(train_pool)[:n_train])
    reg = train_image_regressor(
        inputs.images, inputs.y, train_rows, baselines_cfg, encoder, inputs.names, tag="zero-shot HSC ellipticity"
    )
    return reg, train_rows


@dataclass(frozen=True)
class ZeroShotResult:
    """tables/zero_shot.csv and the predictions the figure scatters."""

    table: pd.DataFrame
    """One row per target (:data:`ZERO_SHOT_COLUMNS`)."""
    scatter: dict[str, dict[str, np.ndarray]]
    """Target -> ``true``, ``real`` and ``generated`` (sample-averaged) per test galaxy."""


def zero_shot_scores(inputs: ZeroShotInputs, reg: ImageRegressor, train_rows: np.ndarray) -> ZeroShotResult:
    """R^2 of the frozen network on the real and on the generated HSC images of the test galaxies, per target."""
    post, y, names = inputs.posterior, inputs.y, inputs.names
    labels = y[inputs.test_pairs]
    pred_real = reg.predict(post["target"])
    samples = post["samples"]
    n, s = samples.shape[:2]
    pred_gen = reg.predict(samples.reshape(n * s, *samples.shape[2:])).reshape(n, s, len(names))
    pred_mean_image = reg.predict(samples.mean(axis=1))
    val_rows = np.flatnonzero(inputs.split == "val")
    pred_val = reg.predict(inputs.images[val_rows]) if val_rows.size else np.empty((0, len(names)))

    rows, scatter = [], {}
    for j, name in enumerate(names):
        per_sample = np.array([r2_or_nan(labels[:, j], pred_gen[:, k, j]) for k in range(s)])
        row = {
            "target": name,
            "n_test": int(np.isfinite(labels[:, j]).sum()),
            "r2_real": r2_or_nan(labels[:, j], pred_real[:, j]),
            "r2_generated": float(np.nanmean(per_sample)) if np.isfinite(per_sample).any() else float("nan"),
            "r2_generated_std": float(np.nanstd(per_sample)) if np.isfinite(per_sample).any() else float("nan"),
            "r2_generated_posterior_mean": r2_or_nan(labels[:, j], pred_mean_image[:, j]),
            "r2_generated_mean_prediction": r2_or_nan(labels[:, j], pred_gen[:, :, j].mean(axis=1)),
            "n_samples": int(s),
            "n_val": int(np.isfinite(y[val_rows, j]).sum()),
            "r2_val_real": r2_or_nan(y[val_rows, j], pred_val[:, j]),
            "n_train": int(np.isfinite(y[train_rows, j]).sum()),
            "truth": bool(inputs.is_truth[name]),
        }
        rows.append(row)
        scatter[name] = {"true": labels[:, j], "real": pred_real[:, j], "generated": pred_gen[:, :, j].mean(axis=1)}
        log.info(
            "zero-shot %s: R^2 real %.3f, generated %.3f +- %.3f (posterior-mean image %.3f), all val real %.3f (n=%d)",
            name,
            row["r2_real"],
            row["r2_generated"],
            row["r2_generated_std"],
            row["r2_generated_posterior_mean"],
            row["r2_val_real"],
            row["n_val"],
        )
    return ZeroShotResult(table=pd.DataFrame(rows, columns=list(ZERO_SHOT_COLUMNS)), scatter=scatter)


def run_zero_shot(
    zero_shot_cfg: dict,
    data: DatasetLayout | str | Path,
    posterior: str | Path,
    truth: str | Path | None,
    figure: str | Path,
    table: str | Path,
    *,
    baselines_cfg: dict,
    bands: list[str],
    encoder: dict,
) -> pd.DataFrame:
    """Train the HSC ellipticity ResNet, score it on real and generated HSC; write zero_shot.csv and the figure.

    ``zero_shot_cfg`` is ``experiments.zero_shot`` (``n_train``); the network follows
    ``baselines_cfg`` (``experiments.baselines``) with the model's ``encoder`` architecture (``model.encoder``);
    ``bands`` (``preprocess.bands``) are the images' bands, which the catalogue targets need.
    """
    from whatsreal.plots.probes import plot_zero_shot

    t0 = time.perf_counter()
    inputs = load_zero_shot(data, posterior, truth, bands)
    reg, train_rows = train_zero_shot_regressor(inputs, int(zero_shot_cfg["n_train"]), baselines_cfg, encoder)
    result = zero_shot_scores(inputs, reg, train_rows)
    write_csv(result.table, table)
    plot_zero_shot(result.table, result.scatter, figure)
    n, s = inputs.posterior["samples"].shape[:2]
    log.info(
        "zero-shot transfer: %d targets, %d test galaxies x %d samples in %.1f s",
        len(inputs.names),
        n,
        s,
        time.perf_counter() - t0,
    )
    return result.table
