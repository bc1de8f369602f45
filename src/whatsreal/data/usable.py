"""Which pairs training and evaluation may use: not those with a blank cutout, when dropped.

Preprocessing marks a cutout whose band has no valid pixel inside the crop, per survey,
in each survey's metadata (``DatasetLayout.meta``: ``blank_bands``; ``blank_dropped`` when
``preprocess.blank_cutouts`` is ``drop``). A dropped pair is treated as if it were not
in the dataset: it is neither a target nor a physics view, and never an instrument view
of another pair, whichever of its two cutouts is blank. Likewise which survey saw a row of
the N-way data (``seen``; a survey that missed a galaxy has zeros there). Consumers ask here
rather than reading the columns themselves, so the rule is the same everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from whatsreal.layout import DatasetLayout
from whatsreal.surveys import SURVEY_ORDER

__all__ = ["drop_unusable_neighbours", "seen_rows", "usable_pairs"]


def seen_rows(data: DatasetLayout | str | Path, surveys: tuple[str, ...] = SURVEY_ORDER) -> np.ndarray:
    """(n, surveys) bool: which survey saw each row: its metadata column ``seen`` (the N-way rows
    of ``nway/``, where a survey may have missed a galaxy), else every row (the pairs, which both
    surveys saw). ``data`` is the dataset's layout or its root directory."""
    layout = DatasetLayout.of(data)
    columns = []
    for survey in surveys:
        path = layout.meta(survey)
        if "seen" in pq.read_schema(path).names:
            columns.append(pd.read_parquet(path, columns=["seen"])["seen"].to_numpy(bool))
        else:
            columns.append(np.ones(pq.read_metadata(path).num_rows, dtype=bool))
    return np.column_stack(columns)


def usable_pairs(data: DatasetLayout | str | Path, surveys: tuple[str, ...] = SURVEY_ORDER) -> np.ndarray:
    """(n_pairs,) bool: True where no survey's metadata drops the pair.

    ``data`` is the dataset's layout or its root directory. A meta file written before
    blank cutouts were detected (no ``blank_dropped`` column) drops nothing.
    """
    layout = DatasetLayout.of(data)
    usable: np.ndarray | None = None
    for survey in surveys:
        path = layout.meta(survey)
        has_column = "blank_dropped" in pq.read_schema(path).names
        columns = ["pair", "blank_dropped"] if has_column else ["pair"]
        meta = pd.read_parquet(path, columns=columns)
        if not (meta["pair"].to_numpy() == np.arange(len(meta))).all():
            raise ValueError(f"{path}: rows are not the pairs 0..{len(meta) - 1} in order")
        dropped = meta["blank_dropped"].to_numpy(dtype=bool) if has_column else np.zeros(len(meta), dtype=bool)
        if usable is None:
            usable = ~dropped
        elif len(dropped) != len(usable):
            raise ValueError(f"{path}: {len(dropped)} pairs, but the other surveys' meta files have {len(usable)}")
        else:
            usable &= ~dropped
    if usable is None:
        raise ValueError("usable_pairs needs at least one survey")
    return usable


def drop_unusable_neighbours(index: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """A neighbour graph (n, k; -1 padded) without the neighbours that are not ``usable``.

    The remaining neighbours keep their order and move left, so padding stays at the end
    (as the neighbour stage writes it); the rows of unusable pairs themselves are kept,
    since the graph is indexed by pair.
    """
    index = np.asarray(index)
    valid = index >= 0
    keep = valid & usable[np.where(valid, index, 0)]
    if keep.sum() == valid.sum():
        return index
    order = np.argsort(~keep, axis=1, kind="stable")  # kept entries first, in their order
    out = np.take_along_axis(np.where(keep, index, -1), order, axis=1)
    return out.astype(index.dtype, copy=False)
