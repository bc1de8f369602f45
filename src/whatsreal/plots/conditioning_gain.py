"""The conditioning-gain figure: does the decoder use its instrument and physics tokens, and since when?"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from whatsreal.io import atomic_path
from whatsreal.surveys import SURVEY_ORDER

__all__ = ["plot_conditioning_gain"]

HALF_COLOURS = {"instrument": "tab:orange", "physics": "tab:blue"}
MISMATCH_BINS = np.array([0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, np.inf])
"""|difference| bins, in standard deviations of the property, of the sensitivity panels."""


def _sensitivity_panel(
    ax: plt.Axes, differences: pd.DataFrame, sensitivity: pd.DataFrame | None, survey: str, half: str
) -> None:
    """The half's swap gains binned by each property's |difference|: mean and standard error per bin."""
    block = differences[(differences["survey"] == survey) & (differences["half"] == half)]
    columns = [c for c in block.columns if c.startswith("d:") and block[c].notna().any()]
    for k, col in enumerate(columns):
        label = col[2:]
        sub = block[[col, "gain"]].dropna()
        which = np.digitize(sub[col].to_numpy(), MISMATCH_BINS) - 1
        centres, means, errs = [], [], []
        for b in np.unique(which):
            g = sub["gain"].to_numpy()[which == b]
            if g.size >= 5:
                centres.append(float(np.median(sub[col].to_numpy()[which == b])))
                means.append(float(g.mean()))
                errs.append(float(g.std(ddof=1) / np.sqrt(g.size)))
        if sensitivity is not None and len(sensitivity):
            row = sensitivity[
                (sensitivity["survey"] == survey) & (sensitivity["half"] == half) & (sensitivity["property"] == label)
            ]
            if len(row):
                r = row.iloc[0]
                label = f"{label}: slope {r['slope']:.4f} [{r['ci_lo']:.4f}, {r['ci_hi']:.4f}]"
        ax.errorbar(centres, means, yerr=errs, fmt="o-", ms=3, capsize=3, color=f"C{k + 2}", label=label)
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_title(f"anchor {survey}: {half}-half swaps", fontsize=9)
    ax.set_xlabel("|swapped - own|, standard deviations of the property")
    ax.set_ylabel("gain of one swap")
    ax.legend(fontsize=7)


def plot_conditioning_gain(
    history: pd.DataFrame,
    final: pd.DataFrame,
    out: str | Path,
    sensitivity: pd.DataFrame | None = None,
    differences: pd.DataFrame | None = None,
) -> None:
    """One panel per anchor survey of ``final`` (the paired two when it is empty):
    ``val/gain_{half}_{survey}`` against step from the training log, and the final model's gain
    with its bootstrap interval at the last step.

    With ``differences`` (whatsreal.experiments.conditioning_sensitivity.swap_differences, the
    synthetic sky) two more rows, one per half: each survey's swap gains against how far the
    swapped set's properties are from the anchor's, with the joint regression's slopes
    (``sensitivity``) in the legend."""
    surveys = list(dict.fromkeys(final["survey"])) or list(SURVEY_ORDER)
    halves = list(HALF_COLOURS) if differences is not None and len(differences) else []
    fig, axes = plt.subplots(
        1 + len(halves), len(surveys), figsize=(5.2 * len(surveys), 3.8 * (1 + len(halves))), squeeze=False
    )
    for i, half in enumerate(halves, start=1):
        for ax, survey in zip(axes[i], surveys, strict=True):
            _sensitivity_panel(ax, differences, sensitivity, survey, half)
    last_step = int(history["step"].max()) if "step" in history and len(history) else 0
    for ax, survey in zip(axes[0], surveys, strict=True):
        for half, colour in HALF_COLOURS.items():
            col = f"val/gain_{half}_{survey}"
            if col in history:
                h = history[["step", col]].dropna()
                ax.plot(h["step"], h[col], "o-", color=colour, ms=3, label=f"{half} (validation log)")
            row = final[(final["survey"] == survey) & (final["half"] == half)]
            if len(row):
                r = row.iloc[0]
                ax.errorbar(
                    [last_step],
                    [r["gain"]],
                    yerr=[[r["gain"] - r["ci_lo"]], [r["ci_hi"] - r["gain"]]],
                    fmt="s",
                    color=colour,
                    capsize=4,
                    label=f"{half} final: {r['gain']:.4f} [{r['ci_lo']:.4f}, {r['ci_hi']:.4f}]",
                )
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_title(f"anchor {survey}")
        ax.set_xlabel("training step")
        ax.set_ylabel("loss(shuffled half) - loss(true)")
        ax.legend(fontsize=7)
    fig.suptitle("Conditioning gain: > 0 means the decoder uses that half of its conditioning")
    fig.tight_layout()
    with atomic_path(out, ".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
