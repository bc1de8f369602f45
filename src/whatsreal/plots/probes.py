"""Fig 4 (probe R^2 bars), the spatial-neighbour ablation bars, and Fig 9 right (zero-shot transfer)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from whatsreal.plots.latents import save_figure

__all__ = ["REP_STYLE", "plot_ablation", "plot_probes", "plot_zero_shot"]

REP_STYLE = {
    "ours_physics": {"label": "ours (physics)", "color": "#0072B2"},
    "ours_instrument": {"label": "ours (instrument)", "color": "#D55E00"},
    "aion": {"label": "AION-1", "color": "#009E73"},
    "random_init": {"label": "rand. init. ResNet", "color": "white", "edgecolor": "black", "hatch": "///"},
    "cross_predict": {"label": "cross-predict ResNet", "color": "#CC79A7"},
    "pixel_floor": {"label": "pixel statistics (floor)", "color": "0.75"},
}
"""Okabe-Ito colours as in the paper's Fig 4 (blue physics, red instrument, green AION, hatched black random)."""

R2_FLOOR = -0.25
"""Bars below this R^2 are drawn at it (marked with a triangle): worse than the mean is just 'no information'."""

SURVEY_NAMES = {"legacysurvey_instrument": "Legacy", "hsc_instrument": "HSC"}


def _bars(ax: plt.Axes, rows: pd.DataFrame, columns: Sequence[str], styles: dict[str, dict]) -> None:
    """Grouped bars: one group per row (target), one bar per column (representation); NaN bars omitted."""
    n, k = len(rows), len(columns)
    width = 0.8 / max(k, 1)
    x = np.arange(n)
    for j, col in enumerate(columns):
        values = rows[col].to_numpy(dtype=float)
        shown = np.clip(np.nan_to_num(values, nan=0.0), R2_FLOOR, 1.0)
        pos = x - 0.4 + width * (j + 0.5)
        style = dict(styles[col])
        label = style.pop("label")
        finite = np.isfinite(values)
        ax.bar(pos[finite], shown[finite], width, label=label, linewidth=0.6, **{"edgecolor": "none", **style})
        _error_bars(ax, rows, col, pos, shown)
        clipped = finite & (values < R2_FLOOR)
        if clipped.any():
            ax.scatter(pos[clipped], np.full(clipped.sum(), R2_FLOOR + 0.03), marker="v", s=14, color="0.2", zorder=4)
    ax.axhline(0.0, color="0.3", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(rows["label"], rotation=40, ha="right", fontsize=8)
    ax.set_ylim(R2_FLOOR, 1.05)
    ax.set_xlim(-0.6, n - 0.4)
    ax.grid(axis="y", alpha=0.3)


def _error_bars(ax: plt.Axes, rows: pd.DataFrame, col: str, pos: np.ndarray, shown: np.ndarray) -> None:
    """The bootstrap interval ``<col>_ci_lo``..``<col>_ci_hi`` as a black bar, when the table has it."""
    lo_col, hi_col = f"{col}_ci_lo", f"{col}_ci_hi"
    if lo_col not in rows.columns or hi_col not in rows.columns:
        return
    lo = np.clip(rows[lo_col].to_numpy(dtype=float), R2_FLOOR, 1.0)
    hi = np.clip(rows[hi_col].to_numpy(dtype=float), R2_FLOOR, 1.0)
    ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(shown)
    if ok.any():
        err = np.stack([np.clip(shown[ok] - lo[ok], 0, None), np.clip(hi[ok] - shown[ok], 0, None)])
        ax.errorbar(pos[ok], shown[ok], yerr=err, fmt="none", ecolor="0.15", elinewidth=0.7, capsize=1.5, zorder=5)


def _instrument_panel(ax: plt.Axes, rows: pd.DataFrame, columns: Sequence[str], styles: dict) -> None:
    _bars(ax, rows, columns, styles)
    groups = rows["group"].to_numpy()
    truth = rows["truth"].to_numpy(dtype=bool)
    mixed = truth.any() and not truth.all()  # catalogue and truth rows in one panel: say which is which
    keys = list(zip(groups, truth, strict=True))
    starts = [0, *[i for i in range(1, len(keys)) if keys[i] != keys[i - 1]], len(keys)]
    for a, b in itertools.pairwise(starts):
        if a > 0:
            ax.axvline(a - 0.5, color="0.4", ls="--", lw=0.8)
        ax.text(
            (a + b - 1) / 2,
            1.01,
            SURVEY_NAMES.get(groups[a], groups[a]) + (("\n(truth)" if truth[a] else "\n(catalogue)") if mixed else ""),
            ha="center",
            va="bottom",
            fontsize=8,
            fontweight="bold",
            transform=ax.get_xaxis_transform(),  # x in data units, y just above the axes
        )


def plot_probes(result: pd.DataFrame, reps: Sequence[str], out: str | Path) -> None:
    """Fig 4: left physics-related targets, right instrument targets grouped by survey; a row per target source."""
    sources = [("catalogue targets", False)] + ([("simulator truth targets", True)] if result["truth"].any() else [])
    phys_cols = [r for r in ("ours_physics", "ours_instrument", "aion", "random_init") if r in reps]
    inst_cols = [*phys_cols, "cross_predict", *(["pixel_floor"] if "pixel_floor" in result.columns else [])]
    n_phys = max(int(((result["group"] == "physics") & (result["truth"] == t)).sum()) for _, t in sources)
    n_inst = max(int(((result["group"] != "physics") & (result["truth"] == t)).sum()) for _, t in sources)
    fig, axes = plt.subplots(
        len(sources),
        2,
        figsize=(0.55 * (n_phys + n_inst) + 3.0, 4.2 * len(sources)),
        squeeze=False,
        gridspec_kw={"width_ratios": [max(n_phys, 1), max(n_inst, 1)]},
    )
    for (title, is_truth), (ax_p, ax_i) in zip(sources, axes, strict=True):
        rows = result[result["truth"] == is_truth]
        _bars(ax_p, rows[rows["group"] == "physics"], phys_cols, REP_STYLE)
        ax_p.set_title(f"Physics-related properties ({title})", fontsize=10)
        ax_p.set_ylabel(r"probe $R^2$ (held-out pairs)")
        _instrument_panel(ax_i, rows[rows["group"] != "physics"], inst_cols, REP_STYLE)
        ax_i.set_title(f"Instrument properties ({title})", fontsize=10, pad=16)
    handles, labels = axes[0, 1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False, bbox_to_anchor=(0.5, 1.02))
    fig.suptitle(
        r"Probing latent disentanglement: MLP-probe $R^2$ per target, bootstrap 95% CI (bars below "
        + f"{R2_FLOOR} drawn at it, "
        + r"$\blacktriangledown$)",
        y=1.06,
        fontsize=11,
    )
    fig.tight_layout()
    save_figure(fig, out)


def plot_ablation(
    table: pd.DataFrame, reference: str, ablated: str, out: str | Path, neighbours: pd.DataFrame | None = None
) -> None:
    """Paired bars per target (reference vs ablated run) for each latent, with CIs; the neighbour-set probe below.

    ``neighbours`` is the neighbour-set probe's table (conditions predicted from the
    mean instrument latent of the anchor's spatial neighbours, and its controls).
    """
    shaded = {"alpha": 0.45, "hatch": "..", "edgecolor": "black"}
    styles = {
        "reference_instrument": {"label": f"{reference}: instrument latent", "color": "#D55E00"},
        "ablated_instrument": {"label": f"{ablated}: instrument latent", "color": "#D55E00", **shaded},
        "reference_physics": {"label": f"{reference}: physics latent", "color": "#0072B2"},
        "ablated_physics": {"label": f"{ablated}: physics latent", "color": "#0072B2", **shaded},
        "random_init": dict(REP_STYLE["random_init"]),
    }
    groups = [("instrument", table[table["group"] != "physics"]), ("physics", table[table["group"] == "physics"])]
    panels = len(groups) + (1 if neighbours is not None and len(neighbours) else 0)
    n = [max(len(g), 1) for _, g in groups]
    fig, axes = plt.subplots(panels, 1, figsize=(max(8.0, 0.6 * max(n) + 3.0), 4.5 * panels), squeeze=False)
    for ax, (space, rows) in zip(axes[: len(groups), 0], groups, strict=True):
        cols = [f"reference_{space}", f"ablated_{space}"]
        if "random_init" in rows.columns:
            cols.append("random_init")
        if space == "instrument":
            _instrument_panel(ax, rows, cols, styles)
        else:
            _bars(ax, rows, cols, styles)
        ax.set_ylabel(r"probe $R^2$ (held-out pairs)")
        what = (
            "instrument targets from the instrument latents"
            if space == "instrument"
            else "physics targets from the physics latents"
        )
        ax.set_title(f"{what}: {reference} vs {ablated}", fontsize=10, pad=28 if space == "instrument" else 6)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
    if panels > len(groups):
        ax = axes[-1, 0]
        nstyles = {
            "reference": {"label": f"{reference}: neighbours' instrument latent", "color": "#D55E00"},
            "ablated": {"label": f"{ablated}: neighbours' instrument latent", "color": "#D55E00", **shaded},
            "random_init": {**REP_STYLE["random_init"], "label": "rand. init.: neighbours' features"},
            "reference_shuffled": {"label": f"{reference}: shuffled neighbour sets (control)", "color": "0.6"},
        }
        cols = [c for c in nstyles if c in neighbours.columns and neighbours[c].notna().any()]
        _instrument_panel(ax, neighbours, cols, nstyles)
        ax.set_ylabel(r"probe $R^2$ (every anchor, out of fold)")
        ax.set_title(
            "Neighbour-set probe: the anchor's conditions from its spatial neighbours only", fontsize=10, pad=28
        )
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
    fig.suptitle(
        "Spatial-neighbour ablation: probe $R^2$ (bootstrap 95% CI) with spatial vs random instrument neighbours",
        fontsize=11,
    )
    fig.tight_layout()
    save_figure(fig, out)


def plot_zero_shot(table: pd.DataFrame, scatter: dict[str, dict[str, np.ndarray]], out: str | Path) -> None:
    """Fig 9 right: R^2 real vs generated per target, then predicted-vs-true scatter per target.

    ``scatter[target]`` holds ``true``, ``real`` (predictions on the real images) and
    ``generated`` (predictions on the posterior samples, averaged over samples).
    """
    targets = list(table["target"])
    fig, axes = plt.subplots(1, 1 + len(targets), figsize=(4.2 * (1 + len(targets)), 4.2), squeeze=False)
    ax = axes[0, 0]
    x = np.arange(len(targets))
    real = np.clip(table["r2_real"].to_numpy(float), R2_FLOOR, 1)
    gen = np.clip(table["r2_generated"].to_numpy(float), R2_FLOOR, 1)
    ax.bar(x - 0.2, real, 0.4, color="#0072B2", label="real HSC")
    ax.bar(
        x + 0.2, gen, 0.4, color="#E69F00", label="generated HSC (from Legacy)", hatch="//", edgecolor="black", lw=0.5
    )
    for xi, a, b in zip(x, table["r2_real"], table["r2_generated"], strict=True):
        for dx, v in ((-0.2, a), (0.2, b)):  # value above the bar, or just above zero for a negative one
            ax.text(xi + dx, max(v, 0.0) + 0.02, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(targets, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(R2_FLOOR, 1.35)  # room for the legend above the bars
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_ylabel(r"$R^2$ of the frozen HSC ResNet")
    ax.set_title("Zero-shot transfer: real vs generated", fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    for ax, target in zip(axes[0, 1:], targets, strict=True):
        s = scatter[target]
        lo = np.nanmin([np.nanmin(s["true"]), np.nanmin(s["real"]), np.nanmin(s["generated"])])
        hi = np.nanmax([np.nanmax(s["true"]), np.nanmax(s["real"]), np.nanmax(s["generated"])])
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=0.8, ls="--")
        ax.scatter(s["true"], s["real"], s=12, color="#0072B2", alpha=0.7, label="real", linewidths=0)
        ax.scatter(
            s["true"],
            s["generated"],
            s=14,
            color="#E69F00",
            alpha=0.7,
            marker="^",
            label="generated (sample mean)",
            linewidths=0,
        )
        ax.set_xlabel(f"{target} (label)")
        ax.set_ylabel(f"{target} (predicted)")
        ax.set_title(f"{target}: n = {int(np.isfinite(s['true']).sum())}", fontsize=10)
        ax.legend(fontsize=7, frameon=False, loc="upper left")
    fig.tight_layout()
    save_figure(fig, out)
