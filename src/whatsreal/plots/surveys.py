"""Figures of the per-survey experiments of a run trained on N-way groups.

``survey_probes``: per survey, the R^2 of each truth target from the physics and the instrument
latent with bootstrap intervals, and retrieval of each galaxy's counterpart across every ordered
pair of surveys against chance. ``survey_directions``: the counterfactual MSE and calibration
matrices (source survey x target survey) and one example galaxy per direction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from whatsreal.plots.generative import colour_image, rgb_bands, row_stretch, save

__all__ = ["SPACE_COLOURS", "plot_survey_directions", "plot_survey_probes"]

SPACE_COLOURS = {"physics": "#0072B2", "instrument": "#E69F00"}  # Okabe-Ito blue, orange


def _probe_panel(ax: plt.Axes, rows: pd.DataFrame, survey: str) -> None:
    """Horizontal R^2 bars of one survey's targets, physics and instrument latent side by side."""
    y = np.arange(len(rows))
    for offset, space in ((-0.2, "physics"), (0.2, "instrument")):
        r2 = rows[f"r2_{space}"].to_numpy()
        err = np.vstack([r2 - rows[f"r2_{space}_ci_lo"].to_numpy(), rows[f"r2_{space}_ci_hi"].to_numpy() - r2])
        ax.barh(y + offset, r2, height=0.38, color=SPACE_COLOURS[space], label=f"{space} latent")
        ax.errorbar(r2, y + offset, xerr=np.clip(err, 0, None), fmt="none", ecolor="k", lw=0.7, capsize=2)
    marks = zip(rows["target"], rows["group"], rows["disentangled"], strict=True)
    labels = [f"{'* ' if won else ''}{target} ({group[:4]})" for target, group, won in marks]
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlim(min(-0.1, float(np.nanmin(rows[["r2_physics", "r2_instrument"]].to_numpy())) - 0.05), 1.0)
    ax.set_xlabel("out-of-fold ridge R$^2$ (95 % CI)")
    ax.set_title(
        f"{survey}: {int(rows['disentangled'].sum())}/{len(rows)} targets won by the expected latent", fontsize=9
    )


def _retrieval_panel(ax: plt.Axes, retrieval: pd.DataFrame) -> None:
    """Top-k counterpart rate per ordered survey pair, physics vs instrument latent vs chance."""
    pairs = retrieval[["query", "pool"]].drop_duplicates().to_numpy()
    x = np.arange(len(pairs))
    for offset, space in ((-0.2, "physics"), (0.2, "instrument")):
        sub = retrieval[retrieval["space"] == space].set_index(["query", "pool"])
        values = [float(sub.loc[(q, p), "topk"]) if (q, p) in sub.index else np.nan for q, p in pairs]
        ax.bar(x + offset, values, width=0.38, color=SPACE_COLOURS[space], label=f"{space} latent")
    chance = retrieval.drop_duplicates(["query", "pool"])["chance_topk"].to_numpy()
    ax.scatter(x, chance, marker="_", s=300, color="k", label="chance", zorder=3)
    ax.set_xticks(x, [f"{q} -> {p}" for q, p in pairs], fontsize=7, rotation=35, ha="right")
    k = int(retrieval["k"].iloc[0]) if len(retrieval) else 0
    ax.set_ylabel(f"top-{k} counterpart rate")
    top = np.nanmax(retrieval["topk"].to_numpy(float)) if len(retrieval) else 0.0
    ax.set_ylim(0, max(0.05, 1.2 * top))
    ax.set_title("Retrieval of the same galaxy in another survey", fontsize=9)
    ax.legend(fontsize=7)


def plot_survey_probes(probes: pd.DataFrame, retrieval: pd.DataFrame, out: str | Path) -> None:
    """One probe panel per survey and the cross-survey retrieval panel."""
    surveys = list(dict.fromkeys(probes["survey"]))
    n = len(surveys) + 1
    tallest = int(probes.groupby("survey").size().max()) if len(probes) else 8
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 0.32 * tallest + 2.4), squeeze=False)
    axes = axes[0]
    for ax, survey in zip(axes, surveys, strict=False):
        _probe_panel(ax, probes[probes["survey"] == survey].reset_index(drop=True), survey)
    if len(retrieval):
        _retrieval_panel(axes[-1], retrieval)
    else:
        axes[-1].set_axis_off()
    fig.suptitle("Per-survey truth probes (* = expected latent ahead, CI excl. 0) and cross-survey retrieval")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    if surveys:  # below the probe panels: inside one, it hides whichever bars reach its corner
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower left", bbox_to_anchor=(0.02, 0.0), ncol=2, fontsize=8)
    save(fig, out)


def _matrix_panel(
    ax: plt.Axes, table: pd.DataFrame, surveys: Sequence[str], value: str, title: str, cmap: str, ideal: float | None
) -> None:
    """A source x target heatmap of ``value``, annotated; the diagonal (no direction) blank."""
    m = np.full((len(surveys), len(surveys)), np.nan)
    for r in table.itertuples():
        m[surveys.index(r.source), surveys.index(r.target)] = getattr(r, value)
    im = ax.imshow(m, cmap=cmap)
    lo, hi = im.get_clim()
    for i, j in np.argwhere(np.isfinite(m)):
        dark = (m[i, j] - lo) < 0.6 * (hi - lo)  # the low end of viridis and magma is dark
        ax.text(j, i, f"{m[i, j]:.3f}", ha="center", va="center", fontsize=8, color="w" if dark else "k")
    ax.set_xticks(range(len(surveys)), surveys, fontsize=8)
    ax.set_yticks(range(len(surveys)), surveys, fontsize=8)
    ax.set_xlabel("target (drawn as)")
    if ideal is None:  # the left panel: the right one shares its rows
        ax.set_ylabel("source (seen through)")
    ax.set_title(title + (f" (calibrated: {ideal:.2f})" if ideal is not None else ""), fontsize=9)
    plt.colorbar(im, ax=ax, fraction=0.046)


def plot_survey_directions(
    table: pd.DataFrame,
    examples: Mapping[tuple[str, str], Mapping[str, np.ndarray]],
    surveys: list[str],
    bands: list[str],
    out: str | Path,
) -> None:
    """MSE and calibration matrices, then per direction: the source view, the real target, one
    sample and the posterior mean of one held-out galaxy (each row on the real target's stretch)."""
    n_dir = len(examples)
    fig = plt.figure(figsize=(10, 4.2 + 1.6 * n_dir), layout="constrained")
    grid = fig.add_gridspec(1 + n_dir, 4, height_ratios=[2.6] + [1.0] * n_dir)
    ideal = float(table["z_std_ideal"].iloc[0]) if len(table) else None
    _matrix_panel(fig.add_subplot(grid[0, 0:2]), table, surveys, "mse_samples", "MSE of samples", "viridis", None)
    _matrix_panel(fig.add_subplot(grid[0, 2:4]), table, surveys, "z_std", "std of Z", "magma", ideal)
    rgb = rgb_bands(bands)
    titles = ("source view", "real target", "sample", "posterior mean")
    for i, ((source, target), ex) in enumerate(examples.items()):
        lo, hi = row_stretch(ex["target"])
        images = (ex["source"], ex["target"], ex["samples"][0], ex["samples"].mean(axis=0))
        for j, image in enumerate(images):
            ax = fig.add_subplot(grid[1 + i, j])
            stretch = row_stretch(image) if j == 0 else (lo, hi)
            ax.imshow(colour_image(image, *stretch, rgb), origin="lower", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=8)
        fig.axes[-4].set_ylabel(f"{source}\n-> {target}", fontsize=8)
    fig.suptitle("Counterfactuals across every ordered pair of surveys (held-out galaxies)")
    save(fig, out)
