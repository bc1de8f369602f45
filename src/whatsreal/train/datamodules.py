"""The LightningDataModules that feed training: :class:`TripletDataModule` (the triplet
methods) and :class:`CvaeDataModule` (``method: cvae``); which one a run uses: whatsreal.methods.

They wrap the datasets of :mod:`whatsreal.data.triplets` and :mod:`whatsreal.data.cvae`,
which stay free of Lightning, so that the jobs that only read triplets (sampling, the
generative experiments, the triplet figure) do not import it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from whatsreal.data.cvae import CvaeDataset, PropertyLabels, property_labels
from whatsreal.data.triplets import TripletDataset, passthrough_collate
from whatsreal.data.usable import usable_pairs
from whatsreal.layout import DatasetLayout
from whatsreal.surveys import SURVEY_ORDER

__all__ = ["CvaeDataModule", "SplitLoaders", "TripletDataModule"]

log = logging.getLogger(__name__)


class SplitLoaders(L.LightningDataModule):
    """Train and val loaders over ``self.train_set`` / ``self.val_set`` (set by a subclass's
    ``setup``): the batching, worker and shuffling rules every method's training shares.

    The train loader shuffles with a generator seeded by ``seed`` (so a resumed run sees the
    same order) and drops the last partial batch (see :meth:`drop_last`); val does neither (its
    set's order is fixed when it is built)."""

    def __init__(self, batch_size: int, num_workers: int, seed: int) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed

    def drop_last(self, ds: Dataset) -> bool:
        """Whether the shuffled train loader drops its last partial batch."""
        return True

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=passthrough_collate,
            persistent_workers=self.num_workers > 0,
            drop_last=shuffle and self.drop_last(ds),
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)


class TripletDataModule(SplitLoaders):
    """Train/val loaders over a preprocessed dataset (its layout or root directory) and its saved split.

    Only usable pairs (:func:`whatsreal.data.usable.usable_pairs`) are trained and
    validated on.
    """

    def __init__(
        self,
        data: DatasetLayout | str | Path,
        mode: str = "spatial",
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        surveys: tuple[str, ...] = SURVEY_ORDER,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.layout = DatasetLayout.of(data)
        self.mode = mode
        self.surveys = tuple(surveys)

    def setup(self, stage: str | None = None) -> None:
        split = pd.read_parquet(self.layout.split)
        usable = usable_pairs(self.layout, self.surveys)
        pairs = split["pair"].to_numpy(dtype=np.int64)
        keep = usable[pairs]
        if not keep.all():
            log.warning(
                "%d of %d pairs left out of training and validation: a blank cutout "
                "(the surveys' meta files, blank_bands; preprocess.blank_cutouts: drop)",
                int((~keep).sum()),
                len(pairs),
            )
        split = split[keep]
        train, val = split.loc[split["split"] == "train", "pair"], split.loc[split["split"] == "val", "pair"]
        self.train_set = TripletDataset(self.layout, train, self.mode, surveys=self.surveys)
        # Validation batches are random subsets of the held-out pairs, in one seeded order kept for
        # every validation. split.parquet lists pairs in catalogue order, which follows the sky: in
        # that order a batch holds near neighbours, and the logged conditioning gain (which swaps
        # instrument sets within a batch) would give each pair a partner with nearly its own
        # conditions. On the 3,000-step demo model that read the instrument gain 21-27 % low.
        val = val.to_numpy()[np.random.default_rng(self.seed).permutation(len(val))]
        self.val_set = TripletDataset(self.layout, val, self.mode, anchor_seed=self.seed, surveys=self.surveys)


class CvaeDataModule(SplitLoaders):
    """Train/val loaders of a run's CVAE: split.parquet, usable pairs only, labels standardised."""

    def __init__(self, config: dict, data: DatasetLayout | str | Path) -> None:
        train = config["train"]
        super().__init__(int(train["batch_size"]), int(train["num_workers"]), int(train["seed"]))
        self.labels: PropertyLabels | None = None
        self.config = config
        self.layout = DatasetLayout.of(data)

    def setup(self, stage: str | None = None) -> None:
        split = pd.read_parquet(self.layout.split, columns=["pair", "split"])
        split = split[usable_pairs(self.layout)[split["pair"].to_numpy(dtype=np.int64)]]
        self.labels = property_labels(self.config, self.layout)  # the module copies its standardisation
        labels = self.labels.standardised()
        survey = self.config["cvae"]["survey"]
        self.train_set = CvaeDataset(self.layout, survey, split.loc[split["split"] == "train", "pair"], labels)
        self.val_set = CvaeDataset(self.layout, survey, split.loc[split["split"] == "val", "pair"], labels)

    def drop_last(self, ds: Dataset) -> bool:
        """A CVAE split smaller than one batch still trains (on its one partial batch)."""
        return len(ds) > self.batch_size
