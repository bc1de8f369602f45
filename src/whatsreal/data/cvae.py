"""The CVAE's data (``method: cvae``): one survey's preprocessed cutouts with physical labels.

Seed 003 trains on one survey's images (DECaLS: ``cvae.survey``, default ``legacysurvey``)
with the spectroscopic redshift, stellar mass and star-formation rate of each galaxy.
Here the labels come from

- the synthetic sky: the truth table (``DatasetLayout.truth``), joined by each pair's
  ``truth_id`` in the survey's metadata - the simulator's own values;
- real data with ``aux.provabgs.path``: ``provabgs.parquet`` (``DatasetLayout.provabgs``),
  one row per pair, NaN where DESI took no spectrum;
- real data without it: none; the CVAE then trains as a plain VAE whose property
  dimensions get no property loss (a warning says so).

Labels are standardised with the mean and standard deviation of the training split's
labelled, usable pairs (what the model's latent is measured in); a missing or non-finite
label stays NaN and contributes no property loss. Train and validation follow
``split.parquet``; pairs with a dropped blank cutout (:mod:`whatsreal.data.usable`) are
left out of both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from whatsreal.data.lazy_memmap import LazyMemmapDataset
from whatsreal.data.usable import usable_pairs
from whatsreal.layout import DatasetLayout
from whatsreal.surveys import SURVEY_ORDER

__all__ = [
    "PROPERTY_COLUMNS",
    "CvaeDataset",
    "PropertyLabels",
    "label_file",
    "property_labels",
    "training_files",
]

log = logging.getLogger(__name__)

PROPERTY_COLUMNS: dict[str, dict[str, str]] = {
    "redshift": {"truth": "redshift", "provabgs": "z"},
    "log_mstar": {"truth": "log_mstar", "provabgs": "log_mstar"},
    "log_ssfr": {"truth": "log_ssfr", "provabgs": "log_ssfr"},
}
"""A CVAE property (``cvae.properties``) -> its column in truth.parquet (whatsreal.sim.population)
and in provabgs.parquet (whatsreal.data.provabgs)."""


def label_file(config: dict, data: DatasetLayout) -> tuple[str, Path] | None:
    """(kind, path) of the labels a run of ``config`` reads: ``truth`` on the synthetic sky,
    ``provabgs`` on real data with ``aux.provabgs.path``, else None (no labels)."""
    if config["dataset"]["source"] == "synthetic":
        return "truth", data.truth
    if config["aux"]["provabgs"]["path"]:
        return "provabgs", data.provabgs
    return None


def training_files(config: dict, data: DatasetLayout | str | Path) -> list[Path]:
    """Every file a CVAE training reads: the split, each survey's images and metadata (usable
    pairs need every survey's; the embeddings encode every survey) and the label file.

    No neighbour graph: the CVAE sees one image at a time. The train rule declares exactly
    these (common.smk ``run_data``) and the checkpoint fingerprints them."""
    data = DatasetLayout.of(data)
    labels = label_file(config, data)
    return [*data.pair_files(), *([labels[1]] if labels else [])]


@dataclass(frozen=True)
class PropertyLabels:
    """Each pair's raw property values (n_pairs, P; NaN = none) and their standardisation."""

    names: tuple[str, ...]
    values: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    def standardised(self) -> np.ndarray:
        return ((self.values - self.mean) / self.std).astype(np.float32)


def _raw_labels(config: dict, data: DatasetLayout, n_pairs: int) -> np.ndarray:
    names = list(config["cvae"]["properties"])
    out = np.full((n_pairs, len(names)), np.nan)
    source = label_file(config, data)
    if source is None:
        log.warning(
            "cvae: no property labels (real data and aux.provabgs.path is null): the property "
            "dimensions get no property loss; set aux.provabgs.path for a physics-informed latent"
        )
        return out
    kind, path = source
    columns = [PROPERTY_COLUMNS[p][kind] for p in names]
    if kind == "truth":
        meta = pd.read_parquet(data.meta(config["cvae"]["survey"]), columns=["pair", "truth_id"])
        truth = pd.read_parquet(path, columns=["truth_id", *columns])
        if truth["truth_id"].duplicated().any():
            raise ValueError(f"{path}: duplicate truth_id values")
        by_id = truth.set_index(truth["truth_id"].astype(np.int64))[columns]
        tid = meta["truth_id"]
        found = tid.notna().to_numpy()
        rows = by_id.reindex(tid[found].astype(np.int64).to_numpy()).to_numpy(dtype=np.float64)
        out[meta["pair"].to_numpy()[found]] = rows
    else:
        table = pd.read_parquet(path, columns=["pair", *columns])
        out[table["pair"].to_numpy(dtype=np.int64)] = table[columns].to_numpy(dtype=np.float64)
    out[~np.isfinite(out)] = np.nan
    return out


def property_labels(config: dict, data: DatasetLayout | str | Path) -> PropertyLabels:
    """The labels of every pair and the training split's standardisation (mean 0, std 1 where
    a property has no usable training label, so it stays NaN and is never used)."""
    data = DatasetLayout.of(data)
    split = pd.read_parquet(data.split, columns=["pair", "split"])
    usable = usable_pairs(data)
    values = _raw_labels(config, data, len(usable))
    train = np.zeros(len(usable), dtype=bool)
    train[split.loc[split["split"] == "train", "pair"].to_numpy(dtype=np.int64)] = True
    train &= usable
    mean = np.zeros(values.shape[1])
    std = np.ones(values.shape[1])
    for j, name in enumerate(config["cvae"]["properties"]):
        col = values[train, j]
        col = col[np.isfinite(col)]
        if len(col) >= 2 and col.std() > 0:
            mean[j], std[j] = col.mean(), col.std()
        log.info("cvae label %s: %d of %d training pairs labelled", name, len(col), int(train.sum()))
    return PropertyLabels(tuple(config["cvae"]["properties"]), values, mean, std)


class CvaeDataset(LazyMemmapDataset):
    """Pairs' cutouts in one survey (``image``: (B, C, H, W)) with standardised labels (``labels``: (B, P))."""

    def __init__(self, data: DatasetLayout | str | Path, survey: str, pairs: np.ndarray, labels: np.ndarray) -> None:
        if survey not in SURVEY_ORDER:
            raise ValueError(f"cvae.survey '{survey}' is not one of {', '.join(SURVEY_ORDER)}")
        self.layout = DatasetLayout.of(data)
        self.survey = survey
        self.pairs = np.asarray(pairs, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.float32)

    def open_images(self) -> np.ndarray:
        return np.load(self.layout.images(self.survey), mmap_mode="r")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitems__(self, js: list[int]) -> dict[str, torch.Tensor]:
        pair = self.pairs[np.asarray(js, dtype=np.int64)]
        order = np.argsort(pair, kind="stable")  # increasing reads: page-cache friendly
        image = np.empty((len(pair), *self.images.shape[1:]), dtype=np.float32)
        image[order] = self.images[pair[order]]
        return {
            "image": torch.from_numpy(image),
            "labels": torch.from_numpy(self.labels[pair]),
            "pair": torch.from_numpy(pair),
        }
