"""The conditioning-gain figure: does the decoder use its instrument and physics tokens, and since when?"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from whatsreal.io import atomic_path
from whatsreal.surveys import SURVEY_ORDER

__all__ = ["plot_conditioning_gain"]

HALF_COLOURS = {"instrument": "tab:orange", "physics": "tab:blue"}


def plot_conditioning_gain(history: pd.DataFrame, final: pd.DataFrame, out: str | Path) -> None:
    """One panel per anchor survey of ``final`` (the paired two when it is empty):
    ``val/gain_{half}_{survey}`` against step from the training log, and the final model's gain
    with its bootstrap interval at the last step."""
    surveys = list(dict.fromkeys(final["survey"])) or list(SURVEY_ORDER)
    fig, axes = plt.subplots(1, len(surveys), figsize=(5.2 * len(surveys), 3.8), sharey=False, squeeze=False)
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
