"""Training triplets: the anchor image, the same galaxy in the other survey, and neighbours.

For pair i and anchor survey s (drawn per sample, so both directions are used
and neither is tied to the index), a sample holds:

- ``target``: pair i's image in survey s (the decoder's target, never encoded);
- ``physics``: (P, 4, H, W) the same galaxy in the other survey(s), P = 1 here;
- ``instrument``: (k, 4, H, W) survey-s images of pair i's neighbours, zero padded;
- ``physics_mask`` / ``instrument_mask``: True where a view is real.

Batches are gathered with one vectorised read per survey (``__getitems__``), and
memory maps are opened lazily in each worker, so ``num_workers > 0`` works.

Pairs with a dropped blank cutout (:mod:`whatsreal.data.usable`) are never an instrument
view of another pair here, and the training's data module
(:class:`whatsreal.train.datamodules.TripletDataModule`) leaves them out of training and validation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from whatsreal.data.lazy_memmap import LazyMemmapDataset
from whatsreal.data.usable import drop_unusable_neighbours, usable_pairs
from whatsreal.layout import DatasetLayout
from whatsreal.surveys import SURVEY_ORDER

__all__ = ["TripletDataset", "passthrough_collate"]


def passthrough_collate(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``__getitems__`` already returns a collated batch."""
    return batch


class TripletDataset(LazyMemmapDataset):
    """Triplets over a dataset's preprocessed images and neighbour graphs (``DatasetLayout.images``/``.neighbours``).

    ``data`` is the dataset's layout or its root directory.

    Neighbours whose pair is not usable (a dropped blank cutout, per each survey's metadata, ``blank_dropped``)
    are removed from the neighbour graph, so they are masked out, never fed as a view. The
    ``pairs`` themselves are the caller's choice.
    """

    def __init__(
        self,
        data: DatasetLayout | str | Path,
        pairs: np.ndarray,
        mode: str = "spatial",
        anchor_seed: int | None = None,
        surveys: tuple[str, ...] = SURVEY_ORDER,
        anchors: np.ndarray | None = None,
    ) -> None:
        self.layout = DatasetLayout.of(data)
        self.pairs = np.asarray(pairs, dtype=np.int64)
        self.mode = mode
        self.surveys = surveys
        self.usable = usable_pairs(self.layout, surveys)
        self.neighbours = {
            s: drop_unusable_neighbours(np.load(self.layout.neighbours(s, mode))["index"], self.usable) for s in surveys
        }
        shapes = {s: np.load(self.layout.images(s), mmap_mode="r").shape for s in surveys}
        n = {v[0] for v in shapes.values()} | {v.shape[0] for v in self.neighbours.values()} | {len(self.usable)}
        if len(n) != 1:
            raise ValueError(f"{self.layout.root}: images and neighbour files disagree on the number of pairs {n}")
        # Anchors given, fixed by a seed (validation), or drawn afresh per fetch (training).
        if anchors is not None:
            self._fixed = np.asarray(anchors, dtype=np.int64)
            if self._fixed.shape != self.pairs.shape:
                raise ValueError(f"anchors has shape {self._fixed.shape}, pairs {self.pairs.shape}")
        elif anchor_seed is not None:
            self._fixed = np.random.default_rng(anchor_seed).integers(0, len(surveys), size=len(self.pairs))
        else:
            self._fixed = None

    def open_images(self) -> dict[str, np.ndarray]:
        return {s: np.load(self.layout.images(s), mmap_mode="r") for s in self.surveys}

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitems__(self, js: list[int]) -> dict[str, torch.Tensor]:
        js = np.asarray(js, dtype=np.int64)
        pair = self.pairs[js]
        if self._fixed is not None:
            anchor = self._fixed[js]
        else:
            anchor = torch.randint(len(self.surveys), (len(js),)).numpy()
        imgs = self.images
        k = next(iter(self.neighbours.values())).shape[1]
        shape = next(iter(imgs.values())).shape[1:]
        b = len(js)
        n_phys = len(self.surveys) - 1
        target = np.empty((b, *shape), dtype=np.float32)
        physics = np.empty((b, n_phys, *shape), dtype=np.float32)
        instrument = np.zeros((b, k, *shape), dtype=np.float32)
        inst_mask = np.zeros((b, k), dtype=bool)
        for a, s in enumerate(self.surveys):
            sel = np.flatnonzero(anchor == a)
            if sel.size == 0:
                continue
            rows = pair[sel]
            target[sel] = _take(imgs[s], rows)
            others = [o for o in self.surveys if o != s]
            for p, o in enumerate(others):
                physics[sel, p] = _take(imgs[o], rows)
            nbr = self.neighbours[s][rows]  # (m, k)
            valid = nbr >= 0
            inst_mask[sel] = valid
            flat = nbr[valid]
            if flat.size:
                got = _take(imgs[s], flat)
                block = np.zeros((sel.size, k, *shape), dtype=np.float32)
                block[valid] = got
                instrument[sel] = block
        return {
            "target": torch.from_numpy(target),
            "physics": torch.from_numpy(physics),
            "physics_mask": torch.ones((b, n_phys), dtype=torch.bool),
            "instrument": torch.from_numpy(instrument),
            "instrument_mask": torch.from_numpy(inst_mask),
            "anchor": torch.from_numpy(anchor.astype(np.int64)),
            "pair": torch.from_numpy(pair),
        }


def _take(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of a memory map in the order given, read in increasing order (page-cache friendly)."""
    order = np.argsort(rows, kind="stable")
    out = np.empty((rows.size, *array.shape[1:]), dtype=np.float32)
    out[order] = array[rows[order]]
    return out
