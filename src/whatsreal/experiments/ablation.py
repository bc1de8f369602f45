"""Appendix A.5 spatial-neighbour ablation: the probe table of a run whose instrument neighbours are random.

The instrument encoder learns instrument conditions because the 5 neighbours it
sees share them with the anchor (they are close on the sky). With random
neighbours that signal is gone, so the instrument latents' R^2 on instrument
targets should collapse (paper: galaxy depth 0.68 -> 0.20) while the physics
latents change little. This joins the two runs' Table 5 files target by target
and adds, per latent, the drop ``reference - ablated`` with a *paired* bootstrap
interval: both runs' probes are scored on the same held-out pairs (same split
seed), so resampling those pairs once for both removes the sample noise they
share. Both tables must come from the same probe design (pairs and split,
:mod:`whatsreal.experiments.probe_design`), which the ablation table records.
The random-init encoder (a dataset-level baseline, the same for both runs) is
carried along as the no-training reference.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from whatsreal.experiments.bootstrap import BootstrapR2
from whatsreal.experiments.probe_design import DESIGN_COLUMNS
from whatsreal.experiments.probes import read_probe_predictions
from whatsreal.io import read_table, write_csv

__all__ = ["ABLATION_COLUMNS", "ablation_table", "paired_drops", "run_ablation"]

log = logging.getLogger(__name__)

_CI = ("", "_ci_lo", "_ci_hi")
ABLATION_COLUMNS = (
    "target",
    "label",
    "group",
    "truth",
    *[f"{run}_{space}{end}" for run in ("reference", "ablated") for space in ("physics", "instrument") for end in _CI],
    *[f"random_init{end}" for end in _CI],
    *[f"diff_{space}{end}" for space in ("physics", "instrument") for end in _CI],
    *DESIGN_COLUMNS,
)
"""Columns of ``ablation_neighbours.csv``; ``diff_<space>`` = reference - ablated R^2 of that latent;
``probe_*``: the probe design both runs' tables were scored with (empty for tables that predate it)."""
_NEEDED = ("target", "label", "group", "truth", "ours_physics", "ours_instrument")
_SPACES = {"physics": "ours_physics", "instrument": "ours_instrument"}


def _read(path: str | Path) -> pd.DataFrame:
    df = read_table(path, _NEEDED)
    if df["target"].duplicated().any():
        raise ValueError(f"{path}: duplicate target {df.loc[df['target'].duplicated(), 'target'].iloc[0]}")
    return df


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    """A column, or NaN when an older table lacks it (e.g. CIs)."""
    return df[name] if name in df.columns else pd.Series(np.nan, index=df.index)


def _design_value(df: pd.DataFrame, column: str, path: str | Path) -> object:
    """The single value of a design column of a probe table (None when an older table lacks it)."""
    if column not in df.columns:
        return None
    values = df[column].dropna().unique()
    if len(values) > 1:
        raise ValueError(f"{path}: column '{column}' has several values {sorted(map(str, values))}")
    return values[0].item() if len(values) and hasattr(values[0], "item") else (values[0] if len(values) else None)


def paired_drops(
    reference: str | Path, ablated: str | Path, n_resamples: int, seed: int, confidence: float
) -> pd.DataFrame:
    """Per target: reference - ablated R^2 of each latent and its paired-bootstrap interval.

    Reads the two runs' ``probe_predictions.npz``; they must hold the same test
    pairs (same dataset and probe split), else the drop would not be paired.
    """
    pairs_r, names_r, y_r, pred_r = read_probe_predictions(reference)
    pairs_a, names_a, y_a, pred_a = read_probe_predictions(ablated)
    if not np.array_equal(pairs_r, pairs_a):
        raise ValueError(
            f"{reference} and {ablated}: different test pairs (probe split or dataset differ); "
            "the drop must be measured on the same pairs"
        )
    common = [t for t in names_r if t in set(names_a)]
    ir = [names_r.index(t) for t in common]
    ia = [names_a.index(t) for t in common]
    y = y_r[:, ir]
    if not np.allclose(y, y_a[:, ia], equal_nan=True):
        raise ValueError(f"{reference} and {ablated}: the test labels differ")
    boot = BootstrapR2.for_rows(len(pairs_r), n_resamples, seed, confidence)
    out = pd.DataFrame({"target": common})
    for space, rep in _SPACES.items():
        for run, preds, cols in (("reference", pred_r, ir), ("ablated", pred_a, ia)):
            if rep not in preds:
                raise ValueError(f"{reference if run == 'reference' else ablated}: no predictions of {rep}")
            boot.add(f"{run}_{space}", y, preds[rep][:, cols])
        d, lo, hi = boot.diff(f"reference_{space}", f"ablated_{space}")
        out[f"diff_{space}"], out[f"diff_{space}_ci_lo"], out[f"diff_{space}_ci_hi"] = d, lo, hi
    return out


def _aligned_tables(
    reference_csv: str | Path, ablated_csv: str | Path, reference_name: str, ablated_name: str
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, object]]:
    """Both runs' Table 5, the ablated one in the reference's target order, and their common probe design.

    Raises when the tables list different targets or were scored with different designs:
    their R^2 would not be comparable target by target.
    """
    ref, abl = _read(reference_csv), _read(ablated_csv)
    only_ref = sorted(set(ref["target"]) - set(abl["target"]))
    only_abl = sorted(set(abl["target"]) - set(ref["target"]))
    if only_ref or only_abl:
        raise ValueError(
            f"probe tables have different targets: only in {reference_csv} ({reference_name}): {only_ref}; "
            f"only in {ablated_csv} ({ablated_name}): {only_abl}"
        )
    abl = abl.set_index("target").loc[ref["target"]].reset_index()
    design = {c: _design_value(ref, c, reference_csv) for c in DESIGN_COLUMNS}
    other = {c: _design_value(abl, c, ablated_csv) for c in DESIGN_COLUMNS}
    if design != other:
        raise ValueError(
            f"{reference_csv} and {ablated_csv}: probe tables scored with different designs ({design} vs {other}); "
            "both runs must use the same experiments.probes pairs/split"
        )
    return ref, abl, design


def ablation_table(
    ref: pd.DataFrame, abl: pd.DataFrame, design: dict[str, object], drops: pd.DataFrame | None
) -> pd.DataFrame:
    """``ABLATION_COLUMNS`` of two aligned Table 5 frames; ``drops`` (:func:`paired_drops` by target) gives the
    drops' intervals (NaN without it)."""
    out = pd.DataFrame({c: ref[c] for c in ("target", "label", "group", "truth")})
    for run, df in (("reference", ref), ("ablated", abl)):
        for space, rep in _SPACES.items():
            for end in _CI:
                out[f"{run}_{space}{end}"] = _column(df, f"{rep}{end}").to_numpy()
    for end in _CI:
        out[f"random_init{end}"] = _column(ref, f"random_init{end}").to_numpy()
    for space in _SPACES:
        out[f"diff_{space}"] = out[f"reference_{space}"] - out[f"ablated_{space}"]
        out[f"diff_{space}_ci_lo"] = np.nan
        out[f"diff_{space}_ci_hi"] = np.nan
    if drops is not None:
        known = out["target"].isin(drops.index).to_numpy()
        for space in _SPACES:
            for end in ("_ci_lo", "_ci_hi"):
                col = f"diff_{space}{end}"
                out.loc[known, col] = drops.loc[out.loc[known, "target"], col].to_numpy()
    for c, v in design.items():
        out[c] = v
    return out[list(ABLATION_COLUMNS)]


def _log_drops(out: pd.DataFrame, reference_name: str, ablated_name: str) -> None:
    for _, r in out[out["group"] != "physics"].iterrows():
        log.info(
            "ablation %s: instrument-latent R^2 %s %.3f -> %s %.3f (drop %.3f [%.3f, %.3f])",
            r["target"],
            reference_name,
            r["reference_instrument"],
            ablated_name,
            r["ablated_instrument"],
            r["diff_instrument"],
            r["diff_instrument_ci_lo"],
            r["diff_instrument_ci_hi"],
        )


def run_ablation(
    reference_csv: str | Path,
    ablated_csv: str | Path,
    reference_name: str,
    ablated_name: str,
    figure: str | Path | None,
    table: str | Path,
    predictions: tuple[str | Path, str | Path] | None = None,
    bootstrap: tuple[int, int, float] = (1000, 0, 0.95),
    neighbour_table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Write ablation_neighbours.csv (both runs' R^2 with CIs, random init, paired drops) and its figure.

    ``predictions`` = the (reference, ablated) ``probe_predictions.npz`` for the
    paired drop intervals (without them the drops have no interval);
    ``bootstrap`` = (n_resamples, seed, confidence); ``neighbour_table`` (the
    neighbour-set probe's result) adds a panel to the figure; ``figure=None``
    writes the table only (the ablation under the alternative probe design).
    """
    from whatsreal.plots.probes import plot_ablation

    ref, abl, design = _aligned_tables(reference_csv, ablated_csv, reference_name, ablated_name)
    drops = paired_drops(*predictions, *bootstrap).set_index("target") if predictions is not None else None
    out = ablation_table(ref, abl, design, drops)
    write_csv(out, table)
    _log_drops(out, reference_name, ablated_name)
    if figure is not None:
        plot_ablation(out, reference_name, ablated_name, figure, neighbour_table)
    return out
