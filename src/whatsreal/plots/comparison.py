"""The methods-compared figure: probe means, retrieval, outliers and cost (top row), few-shot curves (bottom)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from whatsreal.experiments.comparison import CVAE_SCORE, FLOW_SCORE
from whatsreal.plots.latents import save_figure

if TYPE_CHECKING:
    from whatsreal.experiments.comparison import ComparisonResult

__all__ = ["plot_comparison"]

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "0.35")
"""Okabe-Ito colours, one per representation in table order (the baselines get the greys below)."""
BASELINE_COLOURS = {"random_init": "0.55", "raw_pixels": "0.8"}
PROBE_GROUPS = (
    ("physics", "r2_physics_targets", "physics\nfrom physics"),
    ("instrument", "r2_instrument_targets", "instrument\nfrom instr."),
    ("instrument", "r2_physics_targets", "physics\nfrom instr.\n(leak)"),
    ("physics", "r2_instrument_targets", "instrument\nfrom physics\n(leak)"),
)
"""(space, metric, x label) of the probe panel's bar groups."""
FEW_SHOT_FLOOR = -0.5
"""Lower R^2 limit of the few-shot panels: a tiny-sample fit far below 0 is just 'no information' (the CSV has it)."""


def _colours(names: Sequence[str]) -> dict[str, str]:
    own = [n for n in names if n not in BASELINE_COLOURS]
    out = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(own)}
    return out | {n: BASELINE_COLOURS[n] for n in names if n in BASELINE_COLOURS}


def _label(table: pd.DataFrame, name: str) -> str:
    method = table.loc[table["representation"] == name, "method"]
    m = str(method.iloc[0]) if len(method) else name
    return name if m == name else f"{name} ({m})"


def _grouped_bars(
    ax: plt.Axes, table: pd.DataFrame, groups: Sequence[tuple[str, str, str]], names: Sequence[str], colours: dict
) -> None:
    """One group of bars per (space, metric), one bar per representation, with the interval as an error bar."""
    width = 0.8 / max(len(names), 1)
    for j, name in enumerate(names):
        values, lo, hi, pos = [], [], [], []
        for g, (space, metric, _) in enumerate(groups):
            row = table[(table["representation"] == name) & (table["metric"] == metric) & (table["space"] == space)]
            if row.empty or not np.isfinite(row["value"].iloc[0]):
                continue
            r = row.iloc[0]
            values.append(r["value"])
            # A percentile interval need not contain the point (a clipped mean, a small sample): bars never invert.
            lo.append(max(0.0, r["value"] - r["ci_lo"]) if np.isfinite(r["ci_lo"]) else 0.0)
            hi.append(max(0.0, r["ci_hi"] - r["value"]) if np.isfinite(r["ci_hi"]) else 0.0)
            pos.append(g - 0.4 + width * (j + 0.5))
        ax.bar(pos, values, width, color=colours[name], edgecolor="0.2", linewidth=0.5, label=_label(table, name))
        if pos:
            ax.errorbar(pos, values, yerr=[lo, hi], fmt="none", ecolor="0.1", elinewidth=0.8, capsize=2)
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels([g[2] for g in groups], fontsize=7)
    ax.grid(axis="y", alpha=0.3)


def _reference_marks(ax: plt.Axes, table: pd.DataFrame, groups: Sequence[tuple[str, str, str]]) -> None:
    """A short dashed line per group at its ``reference`` (chance or base rate)."""
    for g, (space, metric, _) in enumerate(groups):
        ref = table.loc[(table["metric"] == metric) & (table["space"] == space), "reference"]
        if len(ref) and np.isfinite(ref.iloc[0]):
            ax.hlines(ref.iloc[0], g - 0.45, g + 0.45, colors="k", linestyles="--", linewidth=0.9)


def _probe_panel(ax: plt.Axes, table: pd.DataFrame, names: Sequence[str], colours: dict) -> None:
    probes = table[table["section"] == "probe"]
    _grouped_bars(ax, probes, PROBE_GROUPS, names, colours)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean ridge R^2 (clipped at 0)")
    ax.set_xlabel("targets from latent", fontsize=8)
    ax.set_title("(a) truth probes, 95% CI", fontsize=9)


def _retrieval_panel(ax: plt.Axes, table: pd.DataFrame, names: Sequence[str], colours: dict) -> None:
    retrieval = table[table["section"] == "retrieval"]
    metrics = [m for m in retrieval["metric"].unique() if m.startswith("top")]
    groups = [("physics", m, m.replace("top", "top-")) for m in metrics]
    _grouped_bars(ax, retrieval, groups, names, colours)
    _reference_marks(ax, retrieval, groups)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of held-out HSC objects")
    ax.set_title("(b) Legacy counterpart retrieval\n(dashed: chance)", fontsize=9)


OWN_SCORES = {
    "precision_rare": (FLOW_SCORE.format(space="physics"), CVAE_SCORE),
    "precision_pathology": (FLOW_SCORE.format(space="instrument"), CVAE_SCORE),
}
"""Per outlier metric, the method's own score shown in the panel's "own score" group: Fig 3's flow in
the latent that should hold the signal, or the CVAE's anomaly score (the comparison's space labels)."""


def _own_score_rows(outliers: pd.DataFrame) -> pd.DataFrame:
    """The outlier rows of each method's own score, relabelled to the one space ``own score``."""
    keep = np.zeros(len(outliers), bool)
    for metric, spaces in OWN_SCORES.items():
        keep |= ((outliers["metric"] == metric) & outliers["space"].isin(spaces)).to_numpy()
    return outliers[keep].assign(space="own score")


def _outlier_panel(ax: plt.Axes, table: pd.DataFrame, names: Sequence[str], colours: dict) -> None:
    outliers = table[table["section"] == "outliers"]
    outliers = pd.concat([outliers, _own_score_rows(outliers)], ignore_index=True)
    groups = [
        ("physics", "precision_rare", "rare\nkNN phys."),
        ("own score", "precision_rare", "rare\nown score"),
        ("instrument", "precision_pathology", "pathol.\nkNN inst."),
        ("own score", "precision_pathology", "pathol.\nown score"),
        ("physics", "precision_pathology", "pathol.\nkNN phys."),
    ]
    if outliers.empty:
        ax.text(0.5, 0.5, "no truth: outliers not scored", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    _grouped_bars(ax, outliers, groups, names, colours)
    _reference_marks(ax, outliers, groups)
    ax.set_ylim(0, 1.05)
    ax.tick_params(axis="x", labelsize=6)  # five groups in one panel
    ax.set_ylabel("precision in the top 1%")
    title = "(c) outlier precision: kNN distance per latent;\nown score: Fig 3 flow, CVAE anomaly (dashed: base rate)"
    ax.set_title(title, fontsize=9)


def _cost_panel(ax: plt.Axes, table: pd.DataFrame, names: Sequence[str], colours: dict) -> None:
    cost = table[table["section"] == "cost"].pivot_table(index="representation", columns="metric", values="value")
    shown = [n for n in names if n in cost.index and np.isfinite(cost.loc[n].get("seconds", np.nan))]
    seconds = [cost.loc[n, "seconds"] for n in shown]
    ax.barh(np.arange(len(shown)), seconds, color=[colours[n] for n in shown], edgecolor="0.2", linewidth=0.5)
    for i, n in enumerate(shown):
        steps, per = cost.loc[n].get("steps", np.nan), cost.loc[n].get("seconds_per_step", np.nan)
        text = f" {steps:.0f} steps, {per:.2f} s/step" if np.isfinite(per) else " no training"
        ax.text(seconds[i], i, text, va="center", fontsize=7)
    ax.set_yticks(np.arange(len(shown)))
    ax.set_yticklabels(shown, fontsize=7)
    if seconds and min(seconds) > 0:
        ax.set_xscale("log")
    ax.set_xlabel("wall seconds")
    ax.set_title("(d) cost to make the representation", fontsize=9)


def _few_shot_panel(ax: plt.Axes, curves: pd.DataFrame, target: str, colours: dict) -> None:
    """R^2 against labelled training galaxies: solid physics latent, dashed instrument latent, CI band."""
    for (name, space), c in curves[curves["target"] == target].groupby(["representation", "space"], sort=False):
        c = c.sort_values("n_train")
        style = "-" if space == "physics" else "--"
        ax.plot(c["n_train"], c["r2_mean"], style, marker="o", ms=3, color=colours[name], label=f"{name} {space}")
        band = np.isfinite(c["ci_lo"]) & np.isfinite(c["ci_hi"])
        ax.fill_between(c["n_train"][band], c["ci_lo"][band], c["ci_hi"][band], color=colours[name], alpha=0.15)
    ax.set_xscale("log")
    ax.set_ylim(FEW_SHOT_FLOOR, 1.0)
    ax.axhline(0.0, color="0.5", lw=0.6)
    ax.set_xlabel("labelled training galaxies")
    ax.set_ylabel("ridge R^2 (mean over draws)")
    ax.set_title(f"few-shot: {target}", fontsize=9)
    ax.grid(alpha=0.3)


def plot_comparison(result: ComparisonResult, out: str | Path) -> None:
    """Top row: probes, retrieval, outliers, cost; bottom row: one few-shot panel per target."""
    table, curves = result.table, result.few_shot
    names = list(dict.fromkeys(table["representation"]))
    colours = _colours(names)
    targets = list(dict.fromkeys(curves["target"]))[:4]
    ncol = max(4, len(targets))
    fig, axes = plt.subplots(2, ncol, figsize=(4.2 * ncol, 8.4), squeeze=False)
    _probe_panel(axes[0, 0], table, names, colours)
    _retrieval_panel(axes[0, 1], table, names, colours)
    _outlier_panel(axes[0, 2], table, names, colours)
    _cost_panel(axes[0, 3], table, names, colours)
    for ax in axes[0, 4:]:
        ax.set_axis_off()
    for ax, target in zip(axes[1], targets, strict=False):
        _few_shot_panel(ax, curves, target, colours)
    for ax in axes[1, len(targets) :]:
        ax.set_axis_off()
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), fontsize=8, frameon=False)
    if targets:
        axes[1, 0].legend(fontsize=6, loc="lower right")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save_figure(fig, out)
