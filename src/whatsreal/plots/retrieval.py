"""Fig 5: an HSC query and its nearest neighbours in physics and instrument space; a lens query below."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from whatsreal.plots.latents import SURVEY_COLOURS, SURVEY_LABELS, irg_image, save_figure

if TYPE_CHECKING:  # annotations only: the figure's content types live with the experiment
    from whatsreal.experiments.retrieval import LensStrip, NeighbourPanel, QueryStrips, RetrievalFigure

__all__ = ["plot_retrieval"]

HIT_COLOUR = "#009E73"
"""Okabe-Ito bluish green: the counterpart / a lens."""


def _panel(ax: plt.Axes, image: np.ndarray, lo: float, hi: float, title: str, edge: str, width: float) -> None:
    ax.imshow(irg_image(image, lo, hi - lo), origin="lower", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7, pad=2)
    for spine in ax.spines.values():
        spine.set_edgecolor(edge)
        spine.set_linewidth(width)


def _shared_stretch(content: RetrievalFigure) -> tuple[float, float]:
    """(lo, hi) of one linear stretch for every cutout shown, so brightness compares across panels."""
    shown = [content.query.image, *(p.image for panels in content.query.strips.values() for p in panels)]
    if content.lens is not None:
        shown += [content.lens.image, *(p.image for p in content.lens.neighbours)]
    pixels = np.concatenate([np.asarray(im)[:3].ravel() for im in shown])
    lo, hi = np.percentile(pixels, [1.0, 99.7])
    return lo, max(hi, lo + 1e-6)


def _strip(
    axes: np.ndarray, panels: list[NeighbourPanel], n_show: int, draw: Callable[[plt.Axes, NeighbourPanel], None]
) -> None:
    """``draw(ax, panel)`` for each of the ``n_show`` neighbour axes; the axes without a neighbour are hidden."""
    for j in range(n_show):
        ax = axes[1 + j]
        if j >= len(panels):
            ax.set_axis_off()
            continue
        draw(ax, panels[j])


def _query_rows(axes: np.ndarray, content: RetrievalFigure, lo: float, hi: float) -> None:
    """One row per space: the query, then its nearest neighbours (counterpart framed green)."""
    query: QueryStrips = content.query
    metric, k = content.metric, content.k

    def draw(ax: plt.Axes, p: NeighbourPanel) -> None:
        title = f"#{p.rank} {SURVEY_LABELS[p.survey]}\n" + ("COUNTERPART" if p.counterpart else "")
        title += f"  d={p.dist:.2f}"
        edge = HIT_COLOUR if p.counterpart else SURVEY_COLOURS[p.survey]
        _panel(ax, p.image, lo, hi, title, edge, 3.5 if p.counterpart else 2.0)

    for r, (space, panels) in enumerate(query.strips.items()):
        _panel(axes[r, 0], query.image, lo, hi, f"query: HSC\npair {query.pair}", SURVEY_COLOURS["hsc"], 3.0)
        axes[r, 0].set_ylabel(
            f"{space} space\ntop-1 {metric[f'{space}_top1_counterpart']:.0%}, top-{k} "
            f"{metric[f'{space}_top{k}_counterpart']:.0%}\nother survey {metric[f'{space}_top{k}_other_survey']:.0%}\n"
            f"this query's counterpart: #{query.partner_rank[space]}",
            fontsize=7,
        )
        _strip(axes[r], panels, content.n_show, draw)


def _lens_row(axes: np.ndarray, lens: LensStrip, content: RetrievalFigure, lo: float, hi: float) -> None:
    """The lens query and its physics-space HSC neighbours (lenses framed green)."""
    n_show, metric = content.n_show, content.metric
    _panel(axes[0], lens.image, lo, hi, f"query: known lens\npair {lens.pair}", HIT_COLOUR, 3.0)
    axes[0].set_ylabel(
        f"physics space, HSC only\nlenses in top {n_show}: {lens.fraction:.0%}\n"
        f"(all lenses: {metric[f'lens_fraction_top{n_show}_physics']:.0%}, "
        f"base {metric['lens_base_rate']:.1%})",
        fontsize=7,
    )

    def draw(ax: plt.Axes, p: NeighbourPanel) -> None:
        title = f"#{p.rank} {'LENS' if p.lens else 'not a lens'}\nd={p.dist:.2f}"
        _panel(ax, p.image, lo, hi, title, HIT_COLOUR if p.lens else "0.6", 3.0 if p.lens else 0.8)

    _strip(axes, lens.neighbours, n_show, draw)


def _no_lens_row(fig: plt.Figure, axes: np.ndarray, lens_note: str) -> None:
    """The bottom row replaced by one line saying why there is no lens query."""
    grid = axes[0].get_gridspec()
    for ax in axes:
        ax.remove()
    note = fig.add_subplot(grid[2, :])
    note.set_axis_off()
    note.text(
        0.5,
        0.5,
        f"rare-object query: {lens_note}",
        ha="center",
        va="center",
        fontsize=10,
        wrap=True,
        transform=note.transAxes,
    )


def plot_retrieval(content: RetrievalFigure, out: str | Path) -> None:
    """Rows: physics-space and instrument-space neighbours of the query, then the lens query's physics neighbours."""
    lo, hi = _shared_stretch(content)
    ncol = 1 + content.n_show
    fig, axes = plt.subplots(3, ncol, figsize=(1.45 * ncol, 7.0), squeeze=False)
    _query_rows(axes, content, lo, hi)
    if content.lens is None:
        _no_lens_row(fig, axes[2], content.lens_note)
    else:
        _lens_row(axes[2], content.lens, content, lo, hi)
    fig.suptitle(
        "Fig 5: nearest neighbours (L2) of an HSC query in physics and instrument space (frame: orange HSC, blue "
        "Legacy, green counterpart/lens)\nbottom: a known lens and its nearest HSC neighbours in physics space; "
        "preprocessed i/r/g cutouts, one shared stretch",
        fontsize=9,
    )
    fig.tight_layout()
    save_figure(fig, out)
