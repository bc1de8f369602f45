"""Datasets that read whole batches from memory-mapped image files opened where they are read.

A DataLoader pickles its dataset into every worker process. An open ``np.memmap`` would be
pickled as its data (the whole file copied into each worker), so the datasets here keep the
arrays out of their pickled state and open them lazily, once per process, on first use.
Batches are read with ``__getitems__`` (one sorted fancy index per file, page-cache
friendly); ``__getitem__`` is the one-item case of it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = ["LazyMemmapDataset"]


class LazyMemmapDataset(Dataset):
    """Base of the batch-reading datasets: ``images`` opened on first use, never pickled.

    Subclasses implement :meth:`open_images` (the memory-mapped array, or a mapping of them)
    and ``__getitems__`` (a batch as a dict of tensors).
    """

    _images: Any = None

    def open_images(self) -> Any:
        """Open the image file(s) memory-mapped; called once per process."""
        raise NotImplementedError

    @property
    def images(self) -> Any:
        """The memory-mapped images, opened in this process on first use."""
        if self._images is None:
            self._images = self.open_images()
        return self._images

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_images"] = None  # reopened by whichever process unpickles it
        return state

    def __getitems__(self, js: list[int]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def __getitem__(self, j: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([j]).items()}
