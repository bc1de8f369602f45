"""Fig 2: the two UMAP panels, coloured by survey, with a few matched pairs marked in both."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from whatsreal.io import atomic_path
from whatsreal.surveys import SURVEY_ORDER

if TYPE_CHECKING:  # annotations only: the figure's content type lives with the experiment
    from whatsreal.experiments.umap_projection import UmapProjection

__all__ = ["MARKERS", "SURVEY_COLOURS", "SURVEY_LABELS", "irg_image", "plot_umap", "save_figure"]

SURVEY_COLOURS = {"hsc": "#E69F00", "legacysurvey": "#0072B2"}
"""Okabe-Ito orange (HSC) and blue (Legacy), as in the paper and colour-blind safe."""
SURVEY_LABELS = {"hsc": "HSC", "legacysurvey": "Legacy"}
MARKERS = ("^", "X", "s", "o", "D", "v", "P", "*")
"""The paper's triangle, cross, square, circle, then four more for up to eight pairs."""


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 110) -> None:
    """Save atomically and close the figure whatever happens."""
    try:
        with atomic_path(path, ".png") as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)


def irg_image(image: np.ndarray, lo: float, span: float) -> np.ndarray:
    """A preprocessed (g, r, i, z) cutout as an i/r/g colour image, linearly stretched from ``lo`` over ``span``.

    Preprocessed images are already arcsinh-scaled, so a linear stretch shows them as the
    encoders see them; the caller picks ``lo`` and ``span`` (one per cutout, or one shared
    by a figure so brightness compares across panels).
    """
    rgb = np.stack([image[2], image[1], image[0]], axis=-1)
    return np.clip((rgb - lo) / span, 0, 1)


def plot_umap(projection: UmapProjection, out: str | Path) -> None:
    """One panel per space; each space's coords hold the HSC rows first, then Legacy in the same pair order."""
    spaces, marked, k = projection.spaces, projection.marked, projection.k
    fig, axes = plt.subplots(1, len(spaces), figsize=(6.0 * len(spaces), 6.0), squeeze=False)
    n = len(next(iter(spaces.values())).coords) // 2
    colours = np.array([SURVEY_COLOURS[s] for s in SURVEY_ORDER for _ in range(n)])
    # Draw the two surveys interleaved in a fixed random order so neither hides the other.
    order = np.random.default_rng(0).permutation(2 * n)
    size = float(np.clip(3000.0 / n, 1.0, 20.0))
    for ax, (space, m) in zip(axes[0], spaces.items(), strict=True):
        y = m.coords
        ax.scatter(y[order, 0], y[order, 1], c=colours[order], s=size, alpha=0.55, linewidths=0, rasterized=True)
        _mark_pairs(ax, y, marked, n)
        ax.set_title(
            f"{space} latents ({m.dim}-D), {n} pairs\n"
            f"counterpart in {k}-NN: {m.counterpart_knn_2d:.0%} (2-D), {m.counterpart_knn_latent:.0%} (latent); "
            f"chance {min(k, 2 * n - 1) / (2 * n - 1):.1%}\n"
            f"survey {k}-NN accuracy: {m.survey_acc_2d:.2f} (2-D), {m.survey_acc_latent:.2f} (latent)",
            fontsize=10,
        )
        ax.set_xlabel("UMAP 1")
        ax.set_ylabel("UMAP 2")
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [
        Line2D([], [], marker="o", ls="", color=SURVEY_COLOURS[s], label=SURVEY_LABELS[s], markersize=7)
        for s in SURVEY_ORDER
    ]
    handles += [
        Line2D([], [], marker=MARKERS[j % len(MARKERS)], ls="", mfc="white", mec="black", label=f"pair {j + 1}")
        for j in range(len(marked))
    ]
    axes[0, 0].legend(handles=handles, loc="best", fontsize=8, framealpha=0.8)
    fig.suptitle(
        "Fig 2: UMAP of physics vs instrument latents (colour = survey; matched markers = the two views of one "
        "galaxy)\nsurvey accuracy 0.5 = surveys mixed, 1.0 = separated",
        fontsize=11,
    )
    fig.tight_layout()
    save_figure(fig, out)


def _mark_pairs(ax: plt.Axes, y: np.ndarray, marked: np.ndarray, n: int) -> None:
    """Each marked pair's two views (rows i and i + n) as one marker shape per pair, joined by a dashed line."""
    for j, i in enumerate(marked):
        a, b = y[i], y[i + n]
        ax.plot([a[0], b[0]], [a[1], b[1]], color="0.2", lw=0.8, ls="--", zorder=3)
        for point, survey in ((a, "hsc"), (b, "legacysurvey")):
            ax.scatter(
                *point,
                marker=MARKERS[j % len(MARKERS)],
                s=150,
                c=SURVEY_COLOURS[survey],
                edgecolors="black",
                linewidths=1.3,
                zorder=4,
            )
