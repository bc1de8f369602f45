"""Fig 5: an HSC query and its nearest neighbours in physics and instrument space; a lens query below."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from whatsreal.plots.latents import SURVEY_COLOURS, SURVEY_LABELS, save_figure

__all__ = ["plot_retrieval"]

HIT_COLOUR = "#009E73"
"""Okabe-Ito bluish green: the counterpart / a lens."""


def _rgb(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Preprocessed (g, r, i, z) cutout as i/r/g colour with one shared linear stretch."""
    rgb = np.stack([image[2], image[1], image[0]], axis=-1)
    return np.clip((rgb - lo) / (hi - lo), 0, 1)


def _panel(ax: plt.Axes, image: np.ndarray, lo: float, hi: float, title: str, edge: str, width: float) -> None:
    ax.imshow(_rgb(image, lo, hi), origin="lower", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7, pad=2)
    for spine in ax.spines.values():
        spine.set_edgecolor(edge)
        spine.set_linewidth(width)


def plot_retrieval(
    query: dict,
    strips: dict[str, list[dict]],
    lens_query: dict | None,
    lens_strip: list[dict] | None,
    metric: dict[str, float],
    k: int,
    n_show: int,
    lens_note: str,
    out: str | Path,
) -> None:
    """Rows: physics-space and instrument-space neighbours of ``query``, then the lens query's physics neighbours."""
    shown = [query["image"], *(c["image"] for cards in strips.values() for c in cards)]
    if lens_query is not None:
        shown += [lens_query["image"], *(c["image"] for c in lens_strip or [])]
    pixels = np.concatenate([np.asarray(im)[:3].ravel() for im in shown])
    lo, hi = np.percentile(pixels, [1.0, 99.7])
    hi = max(hi, lo + 1e-6)
    ncol = 1 + n_show
    fig, axes = plt.subplots(3, ncol, figsize=(1.45 * ncol, 7.0), squeeze=False)
    for r, (space, cards) in enumerate(strips.items()):
        _panel(axes[r, 0], query["image"], lo, hi, f"query: HSC\npair {query['pair']}", SURVEY_COLOURS["hsc"], 3.0)
        axes[r, 0].set_ylabel(
            f"{space} space\ntop-1 {metric[f'{space}_top1_counterpart']:.0%}, top-{k} "
            f"{metric[f'{space}_top{k}_counterpart']:.0%}\nother survey {metric[f'{space}_top{k}_other_survey']:.0%}\n"
            f"this query's counterpart: #{query['partner_rank'][space]}",
            fontsize=7,
        )
        for j in range(n_show):
            ax = axes[r, 1 + j]
            if j >= len(cards):
                ax.set_axis_off()
                continue
            c = cards[j]
            title = f"#{c['rank']} {SURVEY_LABELS[c['survey']]}\n" + ("COUNTERPART" if c["counterpart"] else "")
            title += f"  d={c['dist']:.2f}"
            edge = HIT_COLOUR if c["counterpart"] else SURVEY_COLOURS[c["survey"]]
            _panel(ax, c["image"], lo, hi, title, edge, 3.5 if c["counterpart"] else 2.0)
    if lens_query is None:
        grid = axes[2, 0].get_gridspec()
        for ax in axes[2]:
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
    else:
        _panel(
            axes[2, 0], lens_query["image"], lo, hi, f"query: known lens\npair {lens_query['pair']}", HIT_COLOUR, 3.0
        )
        axes[2, 0].set_ylabel(
            f"physics space, HSC only\nlenses in top {n_show}: {lens_query['fraction']:.0%}\n"
            f"(all lenses: {metric[f'lens_fraction_top{n_show}_physics']:.0%}, "
            f"base {metric['lens_base_rate']:.1%})",
            fontsize=7,
        )
        for j in range(n_show):
            ax = axes[2, 1 + j]
            if j >= len(lens_strip):
                ax.set_axis_off()
                continue
            c = lens_strip[j]
            _panel(
                ax,
                c["image"],
                lo,
                hi,
                f"#{c['rank']} {'LENS' if c['lens'] else 'not a lens'}\nd={c['dist']:.2f}",
                HIT_COLOUR if c["lens"] else "0.6",
                3.0 if c["lens"] else 0.8,
            )
    fig.suptitle(
        "Fig 5: nearest neighbours (L2) of an HSC query in physics and instrument space (frame: orange HSC, blue "
        "Legacy, green counterpart/lens)\nbottom: a known lens and its nearest HSC neighbours in physics space; "
        "preprocessed i/r/g cutouts, one shared stretch",
        fontsize=9,
    )
    fig.tight_layout()
    save_figure(fig, out)
