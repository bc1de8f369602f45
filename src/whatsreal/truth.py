"""The truth table's vocabulary (``raw/truth.parquet`` of the synthetic sky), named once.

The simulation writes these values and columns; the outlier, noise-model and retrieval
experiments score against them. Keeping the names here means a new pathology or class is
one edit, and no experiment can silently miss it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["CLASSES", "PATHOLOGIES", "RARE_CLASSES", "meta_truth_ids", "pathology_column"]

CLASSES: tuple[str, ...] = ("normal", "merger", "lens")
"""``galaxy_class`` categories, in the categorical's order."""

RARE_CLASSES: tuple[str, ...] = tuple(c for c in CLASSES if c != "normal")
"""The classes the rare-object queries look for."""

PATHOLOGIES: tuple[str, ...] = ("saturated_star", "stripe", "high_noise")
"""Instrument artefacts drawn per survey and cutout; ``<survey>_<pathology>`` bool columns."""


def pathology_column(survey: str, pathology: str) -> str:
    """``hsc_stripe``: the truth column flagging one pathology in one survey's cutouts."""
    if pathology not in PATHOLOGIES:
        raise KeyError(f"unknown pathology '{pathology}'; known: {PATHOLOGIES}")
    return f"{survey}_{pathology}"


def meta_truth_ids(meta: pd.DataFrame) -> np.ndarray:
    """The ``truth_id`` of each row of a survey's metadata as int64, -1 where a row has none
    (the column is nullable: a real or unmatched object has no simulated truth)."""
    return meta["truth_id"].astype("Int64").fillna(-1).astype(np.int64).to_numpy()
