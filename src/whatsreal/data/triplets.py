"""Training triplets: the anchor image, the same galaxy in the other survey(s), and neighbours.

For galaxy (row) i and anchor survey s (drawn per sample among the surveys that saw it, so
every direction is used and none is tied to the index), a sample holds:

- ``target``: row i's image in survey s (the decoder's target, never encoded);
- ``physics``: (P, 4, H, W) the same galaxy in each other survey, P = surveys - 1 (1 for
  the HSC x Legacy pairs), zeros where that survey did not see it;
- ``instrument``: (k, 4, H, W) survey-s images of row i's neighbours, zero padded;
- ``physics_mask`` / ``instrument_mask``: True where a view is real.

Which survey saw which row is ``seen`` ((n, surveys) bool): given, or each survey's metadata
column ``seen`` where it has one (N-way data, ``groups.parquet``), else every row (pairs). A
row must be seen by at least two surveys (a target and a physics view); a survey's
neighbour graph never points at a row it did not see. With every row seen, the draws are
exactly the two-survey loader's.

Batches are gathered with one vectorised read per survey (``__getitems__``), and
memory maps are opened lazily in each worker, so ``num_workers > 0`` works.

Pairs with a dropped blank cutout (:mod:`whatsreal.data.usable`) are never an instrument
view of another pair here, and the training's data module
(:class:`whatsreal.train.datamodules.TripletDataModule`) leaves them out of training and validation.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from whatsreal.data.lazy_memmap import LazyMemmapDataset
from whatsreal.data.usable import drop_unusable_neighbours, seen_rows, usable_pairs
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
        seen: np.ndarray | None = None,
    ) -> None:
        self.layout = DatasetLayout.of(data)
        self.pairs = np.asarray(pairs, dtype=np.int64)
        self.mode = mode
        self.surveys = surveys
        self.usable = usable_pairs(self.layout, surveys)
        self.seen = self._seen(seen)
        self.neighbours = {
            s: drop_unusable_neighbours(
                np.load(self.layout.neighbours(s, mode))["index"], self.usable & self.seen[:, j]
            )
            for j, s in enumerate(surveys)
        }
        shapes = {s: np.load(self.layout.images(s), mmap_mode="r").shape for s in surveys}
        n = {v[0] for v in shapes.values()} | {v.shape[0] for v in self.neighbours.values()} | {len(self.usable)}
        if len(n) != 1:
            raise ValueError(f"{self.layout.root}: images and neighbour files disagree on the number of pairs {n}")
        too_few = self.pairs[self.seen[self.pairs].sum(axis=1) < 2]
        if too_few.size:
            raise ValueError(
                f"{self.layout.root}: rows {too_few[:5].tolist()} ({too_few.size} in all) are seen by fewer than "
                "two surveys: no physics view"
            )
        # Anchors given, fixed by a seed (validation), or drawn afresh per fetch (training).
        if anchors is not None:
            self._fixed = np.asarray(anchors, dtype=np.int64)
            if self._fixed.shape != self.pairs.shape:
                raise ValueError(f"anchors has shape {self._fixed.shape}, pairs {self.pairs.shape}")
            unseen = ~self.seen[self.pairs, self._fixed]
            if unseen.any():
                j = int(np.flatnonzero(unseen)[0])
                raise ValueError(
                    f"anchors: row {int(self.pairs[j])} is anchored in {surveys[self._fixed[j]]}, which did not see it"
                )
        elif anchor_seed is not None:
            rng = np.random.default_rng(anchor_seed)
            drawn = rng.integers(0, len(surveys), size=len(self.pairs))
            self._fixed = self._among_seen(drawn, self.pairs, lambda k: rng.random(k))
        else:
            self._fixed = None

    def _seen(self, seen: np.ndarray | None) -> np.ndarray:
        """(n, surveys) bool: given, else each survey's metadata column ``seen``, else all True."""
        n = len(self.usable)
        if seen is not None:
            seen = np.asarray(seen, dtype=bool)
            if seen.shape != (n, len(self.surveys)):
                raise ValueError(f"seen has shape {seen.shape}, expected ({n}, {len(self.surveys)})")
            return seen
        return seen_rows(self.layout, self.surveys)

    def _among_seen(self, drawn: np.ndarray, rows: np.ndarray, uniform: Callable[[int], np.ndarray]) -> np.ndarray:
        """``drawn`` anchors (uniform over the surveys), each one that did not see its row redrawn
        uniformly among those that did: uniform over the seen surveys overall, and with every row
        seen nothing is redrawn (the draws stay the two-survey loader's)."""
        seen = self.seen[rows]
        bad = np.flatnonzero(~seen[np.arange(rows.size), drawn])
        if bad.size == 0:
            return drawn
        drawn = drawn.copy()
        options = seen[bad]
        pick = np.floor(uniform(bad.size) * options.sum(axis=1)).astype(np.int64)
        drawn[bad] = np.argmax(np.cumsum(options, axis=1) > pick[:, None], axis=1)
        return drawn

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
            drawn = torch.randint(len(self.surveys), (len(js),)).numpy()
            anchor = self._among_seen(drawn, pair, lambda k: torch.rand(k, dtype=torch.float64).numpy())
        imgs = self.images
        k = next(iter(self.neighbours.values())).shape[1]
        shape = next(iter(imgs.values())).shape[1:]
        b = len(js)
        n_phys = len(self.surveys) - 1
        target = np.empty((b, *shape), dtype=np.float32)
        physics = np.zeros((b, n_phys, *shape), dtype=np.float32)
        phys_mask = np.zeros((b, n_phys), dtype=bool)
        instrument = np.zeros((b, k, *shape), dtype=np.float32)
        inst_mask = np.zeros((b, k), dtype=bool)
        for a, s in enumerate(self.surveys):
            sel = np.flatnonzero(anchor == a)
            if sel.size == 0:
                continue
            rows = pair[sel]
            target[sel] = _take(imgs[s], rows)
            others = [(j, o) for j, o in enumerate(self.surveys) if o != s]
            for p, (j, o) in enumerate(others):
                has = self.seen[rows, j]
                phys_mask[sel, p] = has
                if has.any():
                    physics[sel[has], p] = _take(imgs[o], rows[has])
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
            "physics_mask": torch.from_numpy(phys_mask),
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
