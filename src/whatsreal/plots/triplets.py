"""A look at what the model trains on: anchors, physics views and instrument views."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from whatsreal.data.triplets import TripletDataset
from whatsreal.data.usable import usable_pairs
from whatsreal.io import atomic_path
from whatsreal.layout import DatasetLayout
from whatsreal.surveys import SURVEY_ORDER

__all__ = ["plot_triplets"]

LABELS = {"hsc": "HSC", "legacysurvey": "Legacy"}


def _show(ax: plt.Axes, image: np.ndarray, vmin: float, vmax: float) -> None:
    """Bands i, r, g as red, green, blue of the standardised arrays, one shared linear stretch."""
    rgb = np.stack([image[2], image[1], image[0]], axis=-1)
    ax.imshow(np.clip((rgb - vmin) / (vmax - vmin), 0, 1), origin="lower")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_triplets(
    data: DatasetLayout | str | Path, out_png: str | Path, mode: str = "spatial", n: int = 3, seed: int = 0
) -> None:
    """For ``n`` validation pairs and each anchor survey: target, physics view, instrument views.

    ``data`` is the dataset's layout or its root directory."""
    layout = DatasetLayout.of(data)
    split = pd.read_parquet(layout.split)
    val = split.loc[split["split"] == "val", "pair"].to_numpy()
    val = val[usable_pairs(layout)[val]]  # what validation sees: no dropped blank cutout
    picks = np.random.default_rng(seed).choice(val, size=min(n, len(val)), replace=False)
    # Each pair twice, once per anchor survey.
    ds = TripletDataset(layout, np.repeat(picks, 2), mode, anchors=np.tile(np.arange(len(SURVEY_ORDER)), len(picks)))
    batch = ds.__getitems__(list(range(len(ds))))
    k = batch["instrument"].shape[1]
    vmin, vmax = -1.0, float(np.percentile(batch["target"].numpy(), 99.5))
    fig, axes = plt.subplots(len(ds), 2 + k, figsize=(1.6 * (2 + k), 1.7 * len(ds)), squeeze=False)
    for row in range(len(ds)):
        a = int(batch["anchor"][row])
        s, o = SURVEY_ORDER[a], SURVEY_ORDER[1 - a]
        _show(axes[row, 0], batch["target"][row].numpy(), vmin, vmax)
        _show(axes[row, 1], batch["physics"][row, 0].numpy(), vmin, vmax)
        axes[row, 0].set_ylabel(f"pair {int(batch['pair'][row])}\nanchor {LABELS[s]}", fontsize=8)
        for m in range(k):
            ax = axes[row, 2 + m]
            if batch["instrument_mask"][row, m]:
                _show(ax, batch["instrument"][row, m].numpy(), vmin, vmax)
            else:
                ax.set_axis_off()
        if row == 0:
            axes[row, 0].set_title("target (anchor)", fontsize=8)
            axes[row, 1].set_title("physics view", fontsize=8)
            for m in range(k):
                axes[row, 2 + m].set_title(f"instrument {m + 1}", fontsize=8)
        axes[row, 1].set_xlabel(f"same galaxy, {LABELS[o]}", fontsize=7)
        axes[row, 2].set_xlabel(f"{mode} neighbours, {LABELS[s]}", fontsize=7)
    fig.suptitle(f"Training triplets ({mode} neighbours; preprocessed, standardised; i/r/g as RGB)", fontsize=10)
    try:
        with atomic_path(out_png, ".png") as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
