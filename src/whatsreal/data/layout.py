"""Which preprocessed files a consumer of the dataset reads, by name.

The workflow declares exactly these as rule inputs, and a training run fingerprints
exactly these: both ask here, so what Snakemake watches and what a checkpoint records
cannot drift apart. A run reads the neighbour graph of its own mode only, so rebuilding
the random-neighbour graph never retrains or re-embeds the spatial run.
"""

from __future__ import annotations

from pathlib import Path

from whatsreal.surveys import SURVEY_ORDER

__all__ = ["image_files", "pair_files", "run_data_files"]


def image_files(data_dir: str | Path, surveys: tuple[str, ...] = SURVEY_ORDER) -> list[Path]:
    """Per survey, the preprocessed images and their metadata (what the encoders read)."""
    d = Path(data_dir)
    return [d / f"images_{s}.npy" for s in surveys] + [d / f"meta_{s}.parquet" for s in surveys]


def pair_files(data_dir: str | Path, surveys: tuple[str, ...] = SURVEY_ORDER) -> list[Path]:
    """The images, their metadata and the train/val split: every pair-level consumer's inputs."""
    return [Path(data_dir) / "split.parquet", *image_files(data_dir, surveys)]


def run_data_files(data_dir: str | Path, mode: str, surveys: tuple[str, ...] = SURVEY_ORDER) -> list[Path]:
    """What training (and every triplet consumer) of a run with neighbour ``mode`` reads."""
    d = Path(data_dir)
    return [*pair_files(d, surveys), *(d / f"neighbours_{s}_{mode}.npz" for s in surveys)]
