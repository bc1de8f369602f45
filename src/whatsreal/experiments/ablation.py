"""Appendix A.5 spatial-neighbour ablation: the probe table of a run whose instrument neighbours are random.

The instrument encoder learns instrument conditions because the 5 neighbours it
sees share them with the anchor (they are close on the sky). With random
neighbours that signal is gone, so the instrument latents' R^2 on instrument
targets should collapse (paper: galaxy depth 0.68 -> 0.20) while the physics
latents change little. This joins the two runs' Table 5 files target by target.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from whatsreal.io import atomic_path

__all__ = ["ABLATION_COLUMNS", "run_ablation"]

log = logging.getLogger(__name__)

ABLATION_COLUMNS = (
    "target",
    "label",
    "group",
    "truth",
    "reference_physics",
    "reference_instrument",
    "ablated_physics",
    "ablated_instrument",
)
_NEEDED = ("target", "label", "group", "truth", "ours_physics", "ours_instrument")


def _read(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    df = pd.read_csv(path)
    missing = [c for c in _NEEDED if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    if df["target"].duplicated().any():
        raise ValueError(f"{path}: duplicate target {df.loc[df['target'].duplicated(), 'target'].iloc[0]}")
    return df


def run_ablation(
    reference_csv: str | Path,
    ablated_csv: str | Path,
    reference_name: str,
    ablated_name: str,
    figure: str | Path,
    table: str | Path,
) -> pd.DataFrame:
    """Write ablation_neighbours.csv (reference vs ablated R^2 of both latents per target) and its bar figure."""
    from whatsreal.plots.probes import plot_ablation

    ref, abl = _read(reference_csv), _read(ablated_csv)
    only_ref = sorted(set(ref["target"]) - set(abl["target"]))
    only_abl = sorted(set(abl["target"]) - set(ref["target"]))
    if only_ref or only_abl:
        raise ValueError(
            f"probe tables have different targets: only in {reference_csv} ({reference_name}): {only_ref}; "
            f"only in {ablated_csv} ({ablated_name}): {only_abl}"
        )
    merged = ref[list(_NEEDED)].merge(
        abl[["target", "ours_physics", "ours_instrument"]],
        on="target",
        suffixes=("_ref", "_abl"),
        validate="one_to_one",
    )
    out = pd.DataFrame(
        {
            "target": merged["target"],
            "label": merged["label"],
            "group": merged["group"],
            "truth": merged["truth"],
            "reference_physics": merged["ours_physics_ref"],
            "reference_instrument": merged["ours_instrument_ref"],
            "ablated_physics": merged["ours_physics_abl"],
            "ablated_instrument": merged["ours_instrument_abl"],
        },
        columns=list(ABLATION_COLUMNS),
    )
    with atomic_path(table) as tmp:
        out.to_csv(tmp, index=False)
    for _, r in out[out["group"] != "physics"].iterrows():
        log.info(
            "ablation %s: instrument-latent R^2 %s %.3f -> %s %.3f",
            r["target"],
            reference_name,
            r["reference_instrument"],
            ablated_name,
            r["ablated_instrument"],
        )
    plot_ablation(out, reference_name, ablated_name, figure)
    return out
