"""The two reference representations of Table 5: a frozen random-init encoder and the cross-predict ResNet.

- *Rand. Init. ResNet*: what an encoder of our architecture captures by its
  inductive bias alone. A seeded, randomly initialised TokenEncoder of
  ``model.encoder`` (frozen, eval mode) embeds every image of both surveys;
  the features are written in the embeddings.parquet layout (``phys_*`` only)
  so the probes read it exactly like our latents.
- *Cross-predict*: how much of a survey's instrument properties is visible in
  the *other* survey's image (shared sky-position structure such as dust, or
  footprint correlations). A ResNet trained from scratch per direction
  (HSC image -> Legacy instrument targets, Legacy image -> HSC instrument
  targets), scored by R^2 on the probes' held-out pairs under the same probe
  design as Table 5 (:mod:`whatsreal.experiments.probe_design`; one ResNet per
  fold with blocked k-fold). Physics latents that beat this would be leaking
  private instrument information.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from whatsreal.device import compute_device
from whatsreal.experiments.metrics import r2_or_nan
from whatsreal.experiments.probe_design import DESIGN_COLUMNS, ProbeDesign, ProbeFolds, folds_for, read_probe_sky
from whatsreal.experiments.regressor import one_cpu_thread, train_image_regressor
from whatsreal.experiments.targets import build_targets, instrument_group
from whatsreal.io import write_csv, write_parquet
from whatsreal.layout import DatasetLayout
from whatsreal.model.encoders import TokenEncoder
from whatsreal.surveys import SURVEY_ORDER

__all__ = ["CROSS_PREDICT_COLUMNS", "random_init_features", "run_cross_predict", "run_random_init_embeddings"]

log = logging.getLogger(__name__)

CROSS_PREDICT_COLUMNS = ("target", "r2", "n_train", "n_test")
META_ID_COLUMNS = ("pair", "split", "object_id", "ra", "dec")


def _images(path: Path) -> np.ndarray:
    """One survey's preprocessed images, memory-mapped: (N, C, H, W)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    images = np.load(path, mmap_mode="r")
    if images.ndim != 4:
        raise ValueError(f"{path}: expected (N, C, H, W) images, got shape {images.shape}")
    return images


# --------------------------------------------------------------------------- random init


@torch.no_grad()
def random_init_features(
    encoder_cfg: dict, seed: int, images_by_survey: dict[str, np.ndarray], batch_size: int = 256
) -> dict[str, np.ndarray]:
    """(N, tokens*token_dim) features per survey from ONE frozen random encoder of ``model.encoder``
    (``encoder_cfg``) seeded by ``seed`` (``experiments.baselines.seed``)."""
    in_chans = {im.shape[1] for im in images_by_survey.values()}
    if len(in_chans) != 1:
        raise ValueError(f"surveys have different channel counts {sorted(in_chans)}; one encoder cannot embed both")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        enc = TokenEncoder.from_config(encoder_cfg, in_chans.pop())
    dev = compute_device()
    enc = enc.to(dev).eval()
    with one_cpu_thread() if dev.type == "cpu" else contextlib.nullcontext():
        return {s: _encode(enc, images, batch_size, dev) for s, images in images_by_survey.items()}


@torch.no_grad()
def _encode(enc: TokenEncoder, images: np.ndarray, batch_size: int, dev: torch.device) -> np.ndarray:
    feats = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.array(images[start : start + batch_size], dtype=np.float32)).to(dev)
        feats.append(enc(x).float().flatten(1).cpu().numpy())
    return np.concatenate(feats)


def run_random_init_embeddings(
    encoder_cfg: dict, seed: int, data: DatasetLayout | str | Path, out: str | Path
) -> pd.DataFrame:
    """Write random_init_embeddings.parquet: embeddings.parquet's layout with only ``phys_*`` features.

    ``encoder_cfg``: ``model.encoder``; ``seed``: ``experiments.baselines.seed``; ``data``: the
    dataset's layout (or its root), whose images and meta files are embedded.
    """
    data = DatasetLayout.of(data)
    t0 = time.perf_counter()
    images = {s: _images(data.images(s)) for s in SURVEY_ORDER}
    feats = random_init_features(encoder_cfg, seed, images)
    frames = [_random_init_frame(data.meta(survey), survey, feats[survey]) for survey in SURVEY_ORDER]
    table = pd.concat(frames, ignore_index=True)
    write_parquet(table, out)
    log.info(
        "random-init embeddings: %d rows x %d features in %.1f s",
        len(table),
        feats["hsc"].shape[1],
        time.perf_counter() - t0,
    )
    return table


def _random_init_frame(meta_path: Path, survey: str, f: np.ndarray) -> pd.DataFrame:
    """One survey's rows: the meta file's ids and positions beside its features."""
    meta = pd.read_parquet(meta_path)
    missing = [c for c in META_ID_COLUMNS if c not in meta.columns]
    if missing:
        raise KeyError(f"{meta_path}: missing column(s) {', '.join(missing)}")
    if len(meta) != len(f):
        raise ValueError(f"{meta_path}: {len(meta)} rows but the {survey} images have {len(f)}")
    ids = pd.DataFrame(
        {
            "object_id": meta["object_id"].astype(str),
            "pair": meta["pair"].astype(np.int64),
            "survey": survey,
            "ra": meta["ra"],
            "dec": meta["dec"],
            "split": meta["split"],
        }
    )
    return pd.concat([ids, pd.DataFrame(f, columns=[f"phys_{i}" for i in range(f.shape[1])])], axis=1)


# --------------------------------------------------------------------------- cross predict


def _cross_predict_design(
    baselines_cfg: dict,
    encoder_cfg: dict,
    data: DatasetLayout,
    table: pd.DataFrame,
    specs: list,
    folds: ProbeFolds,
    out: str | Path,
) -> pd.DataFrame:
    """Score the cross-predict ResNets of one probe design: one ResNet per (direction, fold), R^2 out of fold."""
    scored = folds.scored
    rows = []
    for survey in SURVEY_ORDER:
        other = next(s for s in SURVEY_ORDER if s != survey)
        chosen = [t for t in specs if t.group == instrument_group(survey)]
        if not chosen:
            continue
        names = [t.name for t in chosen]
        images = _images(data.images(other))
        if len(images) != len(table):
            raise ValueError(f"{data.images(other)}: {len(images)} images but {len(table)} pairs")
        y = table[names].to_numpy(dtype=np.float64)
        pred = np.full((len(scored), len(names)), np.nan)
        for k, (train_rows, test_rows) in enumerate(folds.folds):
            usable = [j for j in range(len(names)) if np.isfinite(y[train_rows, j]).sum() >= 2]
            if len(usable) < len(names):
                log.warning(
                    "cross-predict %s (fold %d): too few labels for %s",
                    survey,
                    k,
                    [names[j] for j in range(len(names)) if j not in usable],
                )
            if not usable:
                continue
            reg = train_image_regressor(
                images,
                y[:, usable],
                train_rows,
                baselines_cfg,
                encoder_cfg,
                [names[j] for j in usable],
                tag=f"cross-predict {other}->{survey} ({folds.design.pairs}/{folds.design.split}, fold {k})",
            )
            pred[np.ix_(np.searchsorted(scored, test_rows), usable)] = reg.predict(images[test_rows])
        n_train = folds.training_counts(y)
        for j, name in enumerate(names):
            r2 = r2_or_nan(y[scored, j], pred[:, j])
            rows.append(
                {
                    "target": name,
                    "r2": r2,
                    "n_train": int(n_train[j]),
                    "n_test": int(np.isfinite(y[scored, j]).sum()),
                }
                | folds.design_columns()
            )
            log.info("cross-predict %s from %s (%s): R^2 = %.3f", name, other, folds.design.label, r2)
    result = pd.DataFrame(rows, columns=[*CROSS_PREDICT_COLUMNS, *DESIGN_COLUMNS])
    write_csv(result, out)
    return result


def run_cross_predict(
    baselines_cfg: dict,
    probes_cfg: dict,
    design: ProbeDesign,
    encoder_cfg: dict,
    bands: Sequence[str],
    data: DatasetLayout | str | Path,
    truth: str | Path | None,
    out: str | Path,
    alternative_out: str | Path | None = None,
) -> pd.DataFrame:
    """Cross-predict baseline: each survey's instrument targets from the other survey's image.

    Writes ``target, r2, n_train, n_test, probe_pairs, probe_split, probe_folds``
    for every instrument target of Table 5 (catalogue and, with ``truth``, the
    synthetic sky's truth.parquet, truth), R^2 on the probes' held-out pairs of the
    primary probe ``design`` (:func:`~whatsreal.experiments.probe_design.resolve_design`),
    so it belongs in Table 5; ``alternative_out`` receives the same under the alternative design.
    With k folds a ResNet is trained per fold (``n_train``: mean over folds).
    ``baselines_cfg``: ``experiments.baselines`` (the ResNet's training); ``probes_cfg``:
    ``experiments.probes`` (the folds' test fraction and seed); ``encoder_cfg``:
    ``model.encoder`` (the ResNet's architecture); ``bands``: ``preprocess.bands``; ``data``: the
    dataset's layout or root.
    """
    data = DatasetLayout.of(data)
    table, specs = build_targets(data, truth, bands)
    sky = read_probe_sky(data)
    folds = folds_for(design, probes_cfg, sky)
    result = _cross_predict_design(baselines_cfg, encoder_cfg, data, table, specs, folds, out)
    if alternative_out is not None:
        other = folds_for(design, probes_cfg, sky, alternative=True)
        _cross_predict_design(baselines_cfg, encoder_cfg, data, table, specs, other, alternative_out)
    return result
