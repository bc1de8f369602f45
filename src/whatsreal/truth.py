"""The truth table's vocabulary (``raw/truth.parquet`` of the synthetic sky), named once.

The simulation writes these values and columns; the outlier, noise-model and retrieval
experiments score against them. Keeping the names here means a new pathology or class is
one edit, and no experiment can silently miss it. :func:`hsc_truth` reads them per pair for
the outlier experiment and the methods comparison; it lives here, not with the outlier flows,
so that the comparison's job does not import torch to read a table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from whatsreal.io import read_table

__all__ = ["CLASSES", "PATHOLOGIES", "RARE_CLASSES", "hsc_truth", "meta_truth_ids", "pathology_column"]

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


def hsc_truth(meta: str | Path, truth: str | Path, pairs: np.ndarray) -> pd.DataFrame:
    """Per pair (in the order given): ``class``, ``pathology`` (``+``-joined HSC flags or ``none``), ``rare``,
    ``pathological``; joined via meta_hsc's ``truth_id``."""
    m = read_table(meta, ["pair", "truth_id"]).set_index("pair")
    flags = [f"hsc_{p}" for p in PATHOLOGIES]
    t = read_table(truth, ["truth_id", "galaxy_class", *flags]).set_index("truth_id")
    missing = np.setdiff1d(pairs, m.index.to_numpy())
    if missing.size:
        raise ValueError(f"{meta}: pair(s) {missing[:5].tolist()} of the embeddings are missing")
    tid = m.loc[pairs, "truth_id"]
    if tid.isna().any():
        raise ValueError(f"{meta}: column 'truth_id' is empty for pair {int(tid[tid.isna()].index[0])}")
    unknown = np.setdiff1d(tid.to_numpy(dtype=np.int64), t.index.to_numpy())
    if unknown.size:
        raise ValueError(f"{truth}: truth_id(s) {unknown[:5].tolist()} (from {meta}) not found")
    rows = t.loc[tid.to_numpy(dtype=np.int64)]
    flag_values = rows[flags].fillna(False).to_numpy(dtype=bool)
    out = pd.DataFrame(index=pd.Index(pairs, name="pair"))
    out["class"] = rows["galaxy_class"].astype(str).to_numpy()
    out["pathology"] = [
        "+".join(p for p, f in zip(PATHOLOGIES, row, strict=True) if f) or "none" for row in flag_values
    ]
    out["rare"] = out["class"].isin(RARE_CLASSES).to_numpy()
    out["pathological"] = flag_values.any(axis=1)
    return out
