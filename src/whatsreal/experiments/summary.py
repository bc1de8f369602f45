"""``summary.md``: every number the paper reports beside ours, and beside the truth where it exists.

It reads only the experiments' tables, so it is cheap to rebuild and never
retrains anything. Each number names the run (and so the config overlay) and
the table it came from; a table that is missing (an experiment not run for that
run) shows as "-".
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pandas as pd

from whatsreal.experiments.paper_numbers import ABLATION, GENERATIVE, TABLE5
from whatsreal.io import atomic_path

__all__ = ["PAPER_ROW_OF_TARGET", "write_summary"]

PAPER_ROW_OF_TARGET: dict[str, str] = {
    "hsc_e1": "Ellipticity e1",
    "hsc_e2": "Ellipticity e2",
    # The paper's redshift, mass and sSFR come from spectra (PROVABGS); the synthetic sky has
    # no spectroscopic catalogue, so its true values stand in (real data: absent, shown as "-").
    "true_redshift": "Redshift z",
    "true_log_mstar": "log M*",
    "true_log_ssfr": "sSFR",
    "legacy_galdepth": "Legacy galaxy depth",
    "legacy_psfdepth": "Legacy PSF depth",
    "legacy_psfsize": "Legacy PSF size",
    "legacy_ebv": "Legacy E(B-V)",
    "legacy_nobs": "Legacy # observations",
    "hsc_a": "HSC extinction a",
    "hsc_psfsize": "HSC PSF size",
}
"""Our target name (tables/table5_probes.csv ``target``) -> the paper's Table 5 row."""

DIRECTION_NAMES = {"hsc": "HSC-anchored (Legacy -> HSC)", "legacysurvey": "Legacy-anchored (HSC -> Legacy)"}


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "-" if math.isnan(v) else f"{v:.{digits}f}"


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.exists() else None


def _config_digest(config: dict) -> str:
    """A short, stable fingerprint of the resolved config, to tell runs of different configs apart."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _probe_section(tables: Path, run: str) -> list[str]:
    probes = _read(tables / "table5_probes.csv")
    if probes is None:
        return []
    reps = ["ours_physics", "ours_instrument", "random_init", "cross_predict"]
    rows = []
    by_target = probes.set_index("target")
    for target, paper_row in PAPER_ROW_OF_TARGET.items():
        if target not in by_target.index:
            continue
        ours = by_target.loc[target]
        paper = TABLE5[paper_row]
        rows.append([paper_row, f"`{target}`"] + [f"{_fmt(paper.get(r))} / {_fmt(ours.get(r))}" for r in reps])
    lines = [f"### Table 5 probes, run `{run}` (R^2 on held-out pairs; paper / ours)", ""]
    lines += _table(["paper row", "our target", "ours (phys)", "ours (instr)", "rand. init", "cross-predict"], rows)
    truth_rows = probes[probes["truth"].astype(str).str.lower() == "true"]
    if len(truth_rows):
        lines += ["", f"True simulator parameters (synthetic sky), run `{run}`:", ""]
        lines += _table(
            ["target", "group", "ours (phys)", "ours (instr)", "rand. init"],
            [
                [str(r.label), str(r.group), _fmt(r.ours_physics), _fmt(r.ours_instrument), _fmt(r.random_init)]
                for r in truth_rows.itertuples()
            ],
        )
    return [*lines, ""]


def _ablation_section(tables: Path, run: str, reference: str) -> list[str]:
    table = _read(tables / "ablation_neighbours.csv")
    if table is None:
        return []
    by_target = table.set_index("target")
    rows = []
    for target, paper_row in PAPER_ROW_OF_TARGET.items():
        if paper_row not in ABLATION or target not in by_target.index:
            continue
        ref, abl = ABLATION[paper_row]
        r = by_target.loc[target]
        rows.append(
            [
                paper_row,
                f"{_fmt(ref, 2)} -> {_fmt(abl, 2)}",
                f"{_fmt(r.reference_instrument)} -> {_fmt(r.ablated_instrument)}",
            ]
        )
    lines = [f"### Spatial-neighbour ablation: instrument-latent R^2, `{reference}` -> `{run}`", ""]
    return [*lines, *_table(["property", "paper", "ours"], rows), ""]


def _generative_section(tables: Path, run: str) -> list[str]:
    rows = []
    mse = _read(tables / "counterfactual_mse.csv")
    if mse is not None:
        for r in mse.itertuples():
            rows.append(
                [
                    f"counterfactual MSE, {DIRECTION_NAMES.get(r.direction, r.direction)}",
                    _fmt(GENERATIVE.get(f"mse_{r.direction}")),
                    f"{_fmt(r.mse_samples)} ({r.n_galaxies} galaxies x {r.n_samples} samples)",
                    "counterfactual_mse.csv",
                ]
            )
    zero = _read(tables / "zero_shot.csv")
    if zero is not None:
        for r in zero.itertuples():
            rows.append(
                [
                    f"zero-shot {r.target} R^2, real / generated HSC",
                    f"{_fmt(GENERATIVE['zero_shot_r2_real'], 2)} / {_fmt(GENERATIVE['zero_shot_r2_generated'], 2)}",
                    f"{_fmt(r.r2_real)} / {_fmt(r.r2_generated)} (n={r.n_test})",
                    "zero_shot.csv",
                ]
            )
    calib = _read(tables / "calibration.csv")
    if calib is not None:
        for r in calib.itertuples():
            rows.append(
                [
                    f"std of pixel Z, {DIRECTION_NAMES.get(r.direction, r.direction)}",
                    "slightly above 1",
                    f"{_fmt(r.z_std)} (mean {_fmt(r.z_mean)})",
                    "calibration.csv",
                ]
            )
    if not rows:
        return []
    lines = [f"### Counterfactual generation, run `{run}`", ""]
    return [*lines, *_table(["quantity", "paper", "ours", "table"], rows), ""]


def _metric_section(tables: Path, name: str, title: str) -> list[str]:
    table = _read(tables / name)
    if table is None or table.empty:
        return []
    lines = [title, ""]
    rows = [[str(r.metric), _fmt(r.value), str(r.note) if isinstance(r.note, str) else ""] for r in table.itertuples()]
    return [*lines, *_table(["metric", "value", "note"], rows), ""]


def write_summary(config: dict, results: str | Path, runs: list[str], out: str | Path) -> str:
    """Write ``summary.md`` for every run of a dataset and return its text."""
    results = Path(results)
    ds = config["dataset"]
    lines = [
        f"# whatsreal summary: dataset `{ds['name']}` (source `{ds['source']}`)",
        "",
        f"Config fingerprint `{_config_digest(config)}`. Each run is the base config with its `runs.<run>` "
        "overlay; every number below comes from `results/"
        f"{ds['name']}/runs/<run>/tables/`. Paper numbers are for the real HSC x Legacy data at paper scale; "
        "on the synthetic sky, compare the pattern (which latent wins which property) more than the values.",
        "",
    ]
    reference = config["experiments"]["ablation"]["reference"]
    for run in runs:
        overlay = config["runs"].get(run, {})
        tables = results / "runs" / run / "tables"
        lines += [f"## Run `{run}` (overlay `{json.dumps(overlay, sort_keys=True)}`)", ""]
        lines += _probe_section(tables, run)
        if run != reference:
            lines += _ablation_section(tables, run, reference)
        lines += _generative_section(tables, run)
        lines += _metric_section(tables, "retrieval.csv", f"### Retrieval (Fig 5), run `{run}`")
        truth = _read(tables / "truth_metrics.csv")
        if truth is not None and not truth.empty:
            lines += [f"### Truth metrics (synthetic sky), run `{run}`", ""]
            lines += _table(
                ["experiment", "metric", "value", "note"],
                [
                    [str(r.experiment), str(r.metric), _fmt(r.value), str(r.note) if isinstance(r.note, str) else ""]
                    for r in truth.itertuples()
                ],
            )
            lines.append("")
    text = "\n".join(lines).rstrip() + "\n"
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    return text
