"""Fig 3: a grid of the top outliers of each latent space, side by side."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import SubFigure
from matplotlib.patches import Patch

from whatsreal.plots.latents import save_figure

if TYPE_CHECKING:  # annotations only: the figure's content types live with the experiment
    from whatsreal.experiments.outliers import OutlierFigure, OutlierPanel

__all__ = ["FLAG_COLOURS", "plot_outliers"]

FLAG_COLOURS = {"rare": "#009E73", "pathology": "#D55E00", None: "0.6"}
"""Panel frames: bluish green = merger/lens, vermillion = instrument pathology (Okabe-Ito)."""


def plot_outliers(content: OutlierFigure, out: str | Path) -> None:
    """One block of panels per space (its outliers in rank order, framed by their truth flag) side by side."""
    panels = content.panels
    n_max = max(len(v) for v in panels.values())
    ncol = min(3, n_max)
    nrow = math.ceil(n_max / ncol)
    fig = plt.figure(figsize=(1.9 * ncol * len(panels) + 0.3 * len(panels), 1.8 * nrow + 1.1))
    subfigs = fig.subfigures(1, len(panels), wspace=0.02, squeeze=False)[0]
    for sub, (label, items) in zip(subfigs, panels.items(), strict=True):
        _space_block(sub, items, nrow, ncol)
        sources = sorted({it.source for it in items})
        head = label + (f"\n{content.subtitles[label]}" if label in content.subtitles else "")
        sub.suptitle(f"{head}\n({', '.join(sources)} g/r/i cutouts)", fontsize=9)
    handles = [
        Patch(facecolor="none", edgecolor=FLAG_COLOURS["rare"], lw=2.5, label="merger / lens (truth)"),
        Patch(facecolor="none", edgecolor=FLAG_COLOURS["pathology"], lw=2.5, label="HSC pathology (truth)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(content.title, fontsize=10, y=1.04)
    save_figure(fig, out)


def _space_block(sub: SubFigure, items: list[OutlierPanel], nrow: int, ncol: int) -> None:
    """One space's panels on an ``nrow`` x ``ncol`` grid; the cells without an outlier are hidden."""
    axes = sub.subplots(nrow, ncol, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= len(items):
            ax.set_axis_off()
            continue
        item = items[k]
        ax.imshow(item.rgb, origin="lower", interpolation="nearest")
        ax.set_title(item.text, fontsize=7, pad=2)
        for spine in ax.spines.values():
            spine.set_edgecolor(FLAG_COLOURS.get(item.flag, "0.6"))
            spine.set_linewidth(2.5 if item.flag else 0.8)
