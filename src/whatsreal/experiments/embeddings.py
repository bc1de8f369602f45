"""Reading embeddings.parquet (and other parquet tables) the way every experiment needs it.

The UMAP figure, outliers, retrieval, the probes and the neighbour probe all read
the same file: identifiers, a survey per row, and latent columns ``phys_0..`` and
``inst_0..``. One reader checks that layout, so a broken file fails with the same
message (file and missing columns) whichever experiment meets it first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from whatsreal.io import read_table
from whatsreal.layout import DatasetLayout
from whatsreal.surveys import SURVEY_ORDER

__all__ = [
    "ANOMALY_COLUMN",
    "SPACES",
    "latent_columns",
    "latents_by_survey",
    "paired_latents",
    "read_embeddings",
    "run_embedding_paths",
]

SPACES: dict[str, str] = {"physics": "phys_", "instrument": "inst_"}
"""Latent space -> column prefix in embeddings.parquet (the file format's names)."""

ANOMALY_COLUMN = "cvae_anomaly"
"""The CVAE method's per-row anomaly score in its embeddings.parquet (whatsreal.model.cvae_embed)."""


def latent_columns(df: pd.DataFrame, prefix: str, source: str | Path) -> list[str]:
    """``{prefix}0, {prefix}1, ...`` in numeric order; an error naming ``source`` if there are none."""
    cols = [c for c in df.columns if c.startswith(prefix) and c[len(prefix) :].isdigit()]
    if not cols:
        raise ValueError(f"{source}: missing column(s) {prefix}0, {prefix}1, ... (no '{prefix}*' latent columns)")
    return sorted(cols, key=lambda c: int(c[len(prefix) :]))


def read_embeddings(path: str | Path, spaces: tuple[str, ...] = tuple(SPACES)) -> pd.DataFrame:
    """embeddings.parquet checked: identifiers, known surveys, and the latent columns of ``spaces``."""
    df = read_table(path, ["object_id", "pair", "survey"])
    for space in spaces:
        latent_columns(df, SPACES[space], path)
    unknown = sorted(set(df["survey"].astype(str)) - set(SURVEY_ORDER))
    if unknown:
        raise ValueError(f"{path}: column 'survey' has unknown value(s) {unknown} (known: {', '.join(SURVEY_ORDER)})")
    df = df.copy()
    df["object_id"] = df["object_id"].astype(str)
    df["survey"] = df["survey"].astype(str)
    df["pair"] = df["pair"].astype(np.int64)
    return df


def paired_latents(emb: pd.DataFrame, prefix: str, pairs: np.ndarray, source: str | Path) -> np.ndarray:
    """(2n, d) float32: the HSC rows of ``pairs`` then the Legacy rows of the same pairs, in that order.

    Row i and row i + n are the two views of one galaxy, which is what every
    pair-level metric (UMAP counterparts, probes on pair features) relies on.
    """
    cols = latent_columns(emb, prefix, source)
    blocks = []
    for survey in SURVEY_ORDER:
        sub = emb[emb["survey"] == survey].set_index("pair")
        missing = np.setdiff1d(pairs, sub.index.to_numpy())
        if missing.size:
            raise ValueError(f"{source}: pair(s) {missing[:5].tolist()} have no '{survey}' row")
        blocks.append(sub.loc[pairs, cols].to_numpy(dtype=np.float32))
    return np.concatenate(blocks)


def latents_by_survey(emb: pd.DataFrame, prefix: str, pairs: np.ndarray, source: str | Path) -> dict[str, np.ndarray]:
    """``{survey: (n, d) latent}`` of ``pairs``, row i of every survey the same galaxy: the blocks of
    :func:`paired_latents`, for code that asks one survey's latent at a time."""
    both = paired_latents(emb, prefix, pairs, source)
    n = len(pairs)
    return {survey: both[i * n : (i + 1) * n] for i, survey in enumerate(SURVEY_ORDER)}


def run_embedding_paths(layout: DatasetLayout, runs: Sequence[str] | None = None) -> dict[str, Path]:
    """``{run: embeddings.parquet}`` of a dataset: the ``runs`` asked for, or every run that has one.

    A run asked for by name without the file is an error naming the file, so a typo in a run
    name or a run not yet exported is not silently left out of a table."""
    if runs is None:
        found = sorted(d.name for d in layout.runs.iterdir() if d.is_dir()) if layout.runs.is_dir() else []
        return {run: layout.run(run).embeddings for run in found if layout.run(run).embeddings.exists()}
    paths = {run: layout.run(run).embeddings for run in runs}
    for run, path in paths.items():
        if not path.exists():
            raise FileNotFoundError(f"{path}: file not found (run '{run}' has no exported embeddings)")
    return paths
