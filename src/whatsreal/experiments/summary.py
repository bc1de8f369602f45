"""``summary.md``: every number the paper reports beside ours, and beside the truth where it exists.

It reads only the experiments' tables, so it is cheap to rebuild and never
retrains anything. Each number names the run (and so the config overlay) and
the table it came from; a table that is missing (an experiment not run for that
run) shows as "-".

Every probe R^2 and every difference of R^2 is printed with its bootstrap 95 %
interval as ``value [lo, hi]`` (the tables' ``*_ci_lo``/``*_ci_hi`` columns), and
the verdicts ("does the physics latent beat the instrument latent on this
target?", "does the instrument R^2 drop when the neighbours are random?") are
read off those intervals: *yes* only when the interval excludes 0 in the
expected direction. A table without interval columns (an older run) prints the
value alone and no verdict.

Tables produced by other experiments join through :data:`EXTRA_TABLES` (optional
per-run files, shown when present) or the ``extra_sections`` argument of
:func:`write_summary` (ready-made sections); neither fails when absent.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from whatsreal.experiments.criteria import CriteriaSettings, criteria_markdown, criteria_table
from whatsreal.experiments.paper_numbers import ABLATION, GENERATIVE, TABLE5
from whatsreal.io import atomic_path, csv_bool, write_csv
from whatsreal.layout import DatasetLayout, RunLayout
from whatsreal.markdown import markdown_table
from whatsreal.plan import summary_tables

__all__ = [
    "COMPARISON_ROWS",
    "EXTRA_TABLES",
    "PAPER_ROW_OF_TARGET",
    "ExtraTable",
    "RunTables",
    "criteria",
    "extra_table_section",
    "methods_compared_section",
    "write_summary",
]

PAPER_ROW_OF_TARGET: dict[str, str] = {
    "hsc_e1": "Ellipticity e1",
    "hsc_e2": "Ellipticity e2",
    # The paper's redshift, mass, sSFR, age and metallicity come from spectra (PROVABGS, when
    # aux.provabgs.path is set); on the synthetic sky the true values stand in for the first three.
    "provabgs_z": "Redshift z",
    "provabgs_log_mstar": "log M*",
    "provabgs_log_ssfr": "sSFR",
    "provabgs_t_age": "t_age",
    "provabgs_log_z_met": "log Z_Met",
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


@dataclass(frozen=True)
class ExtraTable:
    """An optional per-run table (``runs/<run>/tables/<filename>``) shown in summary.md when it exists.

    ``columns``: the columns shown, in order (empty = all; absent ones are skipped).
    ``value``: a column whose interval is in ``ci_lo``/``ci_hi`` (or ``<value>_ci_lo``/``_ci_hi``):
    printed as ``value [lo, hi]``. ``verdict``: header of a yes/no column, *yes* when the
    interval's lower end is above ``threshold`` (for a positive effect that must be real).
    ``digits``: decimals of ``value`` and its interval (conditioning gains are ~1e-4).
    """

    filename: str
    title: str
    columns: tuple[str, ...] = ()
    value: str | None = None
    verdict: str | None = None
    threshold: float = 0.0
    digits: int = 3


EXTRA_TABLES: tuple[ExtraTable, ...] = (
    ExtraTable(
        "conditioning_gain.csv",
        "Conditioning gain: decoder validation loss with one conditioning half shuffled minus with the true one",
        columns=("survey", "half", "gain", "n_pairs"),
        value="gain",
        verdict="gain > 0 (CI excl. 0)",
        digits=4,
    ),
    ExtraTable(
        "conditioning_sensitivity.csv",
        "What the decoder uses: swap gain per standard deviation of |swapped - own| true property (joint fit per half)",
        columns=("survey", "half", "property", "slope", "n_swaps", "n_pairs"),
        value="slope",
        verdict="slope > 0 (CI excl. 0)",
        digits=4,
    ),
    ExtraTable(
        "noise_model_slopes.csv",
        "Fig 7: log-log slope of the generated images' statistic against the conditioning set's true value",
        columns=("direction", "axis", "statistic", "slope", "real_slope", "ratio", "n_galaxies", "n_levels"),
        value="slope",
        verdict="slope > 0.5 (CI lower end)",
        threshold=0.5,
    ),
)
"""Optional tables of other experiments; extend (or pass ``extra_tables=``) to show more, e.g. Fig 7 slopes."""


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return str(int(value))  # counts stay counts
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "-" if math.isnan(v) else f"{v:.{digits}f}"


def _get(row: object, name: str) -> float:
    """``row[name]`` as a float (NaN when the column or value is missing) for a Series or namedtuple."""
    try:
        v = row[name] if isinstance(row, pd.Series | dict) else getattr(row, name)
    except (KeyError, AttributeError):
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _fmt_ci(row: object, name: str, lo: str | None = None, hi: str | None = None, digits: int = 3) -> str:
    """``value [lo, hi]`` from ``row``'s ``name`` and its CI columns (``<name>_ci_lo``/``_ci_hi`` by default)."""
    value = _fmt(_get(row, name), digits)
    low, high = _get(row, lo or f"{name}_ci_lo"), _get(row, hi or f"{name}_ci_hi")
    if value == "-" or math.isnan(low) or math.isnan(high):
        return value
    return f"{value} [{low:.{digits}f}, {high:.{digits}f}]"


def _excludes_zero(lo: float, hi: float, sign: int) -> str:
    """'yes' when [lo, hi] lies entirely on the ``sign`` side of 0, 'no' otherwise, '-' without an interval."""
    if math.isnan(lo) or math.isnan(hi):
        return "-"
    return "yes" if (lo > 0 if sign > 0 else hi < 0) else "no"


@dataclass(frozen=True)
class RunTables:
    """The tables of one run that summary.md reads: those :func:`whatsreal.plan.summary_tables` plans for it.

    The summary rule declares exactly those files as its inputs, so a table left over from an
    earlier config (an experiment no longer run for this run) is never shown.
    """

    layout: RunLayout
    planned: frozenset[str]

    @classmethod
    def of(cls, config: dict, results: DatasetLayout | str | Path, run: str) -> RunTables:
        return cls(DatasetLayout.of(results).run(run), frozenset(summary_tables(config, run)))

    def read(self, name: str) -> pd.DataFrame | None:
        """Table ``name`` (a file name of :data:`whatsreal.layout.TABLES`), or None when not planned or not written."""
        path = self.layout.table(name)
        return pd.read_csv(path) if name in self.planned and path.exists() else None


def _config_digest(config: dict) -> str:
    """A short, stable fingerprint of the resolved config, to tell runs of different configs apart."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _probe_section(tables: RunTables, run: str) -> list[str]:
    probes = tables.read("table5_probes.csv")
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
        rows.append([paper_row, f"`{target}`"] + [f"{_fmt(paper.get(r))} / {_fmt_ci(ours, r)}" for r in reps])
    lines = [
        f"### Table 5 probes, run `{run}` (R^2 on held-out pairs; paper / ours [bootstrap 95% CI])",
        "",
        f"Probe design: {_design_text(probes)}.",
        "",
    ]
    lines += markdown_table(
        ["paper row", "our target", "ours (phys)", "ours (instr)", "rand. init", "cross-predict"], rows
    )
    truth_rows = probes[csv_bool(probes["truth"])]
    if len(truth_rows):
        lines += [
            "",
            f"True simulator parameters (synthetic sky), run `{run}`. *Pixel floor*: R^2 of trivial per-band "
            "pixel statistics of the survey's own image (outer-pixel robust std, moment size); a latent that "
            "does not beat it adds nothing to what the pixels give away.",
            "",
        ]
        lines += markdown_table(
            ["target", "group", "ours (phys)", "ours (instr)", "rand. init", "pixel floor", "phys - instr"],
            [
                [
                    str(r.label),
                    str(r.group),
                    _fmt_ci(r, "ours_physics"),
                    _fmt_ci(r, "ours_instrument"),
                    _fmt_ci(r, "random_init"),
                    _fmt_ci(r, "pixel_floor"),
                    _fmt_ci(r, "diff_phys_minus_inst", "diff_ci_lo", "diff_ci_hi"),
                ]
                for r in truth_rows.itertuples()
            ],
        )
    return [*lines, "", *_verdict_section(probes, run)]


def _design_text(table: pd.DataFrame) -> str:
    """``pairs ..., split ...`` of a probe table from its design columns ('not recorded' for older tables)."""
    if not {"probe_pairs", "probe_split"} <= set(table.columns) or table.empty:
        return "not recorded"
    r = table.iloc[0]
    if r["probe_pairs"] not in ("all", "held_out") or r["probe_split"] not in ("random", "healpix"):
        return "not recorded"
    pairs = "pairs held out from encoder training" if r["probe_pairs"] == "held_out" else "all pairs"
    if r["probe_split"] == "healpix":
        split = f"healpix-blocked {_fmt(_get(r, 'probe_folds'), 0)}-fold cross-validation (out-of-fold R^2)"
    else:
        split = "random train/test split"
    return f"{pairs}, {split} (`probe_pairs={r['probe_pairs']}`, `probe_split={r['probe_split']}`)"


def _alternative_section(tables: RunTables, run: str) -> list[str]:
    """The same probes under the alternative design beside the primary one: what the choice of pairs/split changes."""
    primary = tables.read("table5_probes.csv")
    alt = tables.read("table5_probes_alternative.csv")
    if primary is None or alt is None:
        return []
    truth = csv_bool(primary["truth"])
    chosen = primary[truth] if truth.any() else primary
    other = alt.set_index("target")
    rows = []
    for r in chosen.itertuples():
        if r.target not in other.index:
            continue
        o = other.loc[r.target]
        rows.append(
            [
                str(r.label),
                str(r.group),
                f"{_fmt_ci(r, 'ours_physics')} / {_fmt_ci(o, 'ours_physics')}",
                f"{_fmt_ci(r, 'ours_instrument')} / {_fmt_ci(o, 'ours_instrument')}",
                f"{_fmt_ci(r, 'random_init')} / {_fmt_ci(o, 'random_init')}",
                f"{_fmt(_get(r, 'n_train'), 0)}, {_fmt(_get(r, 'n_test'), 0)} / "
                f"{_fmt(_get(o, 'n_train'), 0)}, {_fmt(_get(o, 'n_test'), 0)}",
            ]
        )
    if not rows:
        return []
    lines = [
        f"### Probe design check, run `{run}`: primary / alternative design",
        "",
        f"Primary (Table 5 above): {_design_text(primary)}. Alternative (`table5_probes_alternative.csv`): "
        f"{_design_text(alt)}. Pairs the encoders trained on, or a split that puts sky neighbours on both sides, "
        "can inflate R^2 (a probe recognises the place, not the property). The held-out sample is small: its "
        "probes also train on far fewer pairs (n_train), which lowers R^2 by itself, and its intervals are wide.",
        "",
    ]
    header = ["target", "group", "ours (phys)", "ours (instr)", "rand. init", "n_train, n_test"]
    return [*lines, *markdown_table(header, rows), ""]


def _verdict_section(probes: pd.DataFrame, run: str) -> list[str]:
    """Per target: does the expected latent win, with the paired CI of physics - instrument excluding 0?"""
    truth = csv_bool(probes["truth"])
    chosen = probes[truth] if truth.any() else probes
    if "diff_phys_minus_inst" not in chosen.columns or chosen.empty:
        return []
    rows = []
    for r in chosen.itertuples():
        physics = str(r.group) == "physics"
        lo, hi = _get(r, "diff_ci_lo"), _get(r, "diff_ci_hi")
        rows.append(
            [
                str(r.label),
                str(r.group),
                "physics" if physics else "instrument",
                _fmt_ci(r, "diff_phys_minus_inst", "diff_ci_lo", "diff_ci_hi"),
                _excludes_zero(lo, hi, 1 if physics else -1),
            ]
        )
    what = "true simulator parameters" if truth.any() else "catalogue targets"
    lines = [
        f"### Disentanglement verdict, run `{run}` ({what})",
        "",
        "*yes*: the expected latent wins with the paired bootstrap 95% CI of (physics - instrument) R^2 excluding 0.",
        "",
    ]
    lines += markdown_table(["target", "group", "should win", "phys - instr R^2", "wins (CI excl. 0)"], rows)
    n_yes = sum(r[-1] == "yes" for r in rows)
    return [*lines, "", f"{n_yes} of {len(rows)} targets: the expected latent wins.", ""]


def _ablation_rows(table: pd.DataFrame) -> list[list[str]]:
    """One row per instrument target of an ablation table: paper, ours (reference -> ablated), drop and verdict."""
    paper_row_of = {t: r for t, r in PAPER_ROW_OF_TARGET.items() if r in ABLATION}
    inst = table[table["group"].astype(str) != "physics"]
    rows = []
    for r in inst.itertuples():
        paper = ABLATION.get(paper_row_of.get(str(r.target), ""))
        rows.append(
            [
                str(r.label) + (" (truth)" if str(r.truth).lower() == "true" else ""),
                str(r.group),
                f"{_fmt(paper[0], 2)} -> {_fmt(paper[1], 2)}" if paper else "-",
                f"{_fmt_ci(r, 'reference_instrument')} -> {_fmt_ci(r, 'ablated_instrument')}",
                _fmt_ci(r, "random_init"),
                _fmt_ci(r, "diff_instrument"),
                _excludes_zero(_get(r, "diff_instrument_ci_lo"), _get(r, "diff_instrument_ci_hi"), 1),
            ]
        )
    return rows


def _ablation_section(tables: RunTables, run: str, reference: str) -> list[str]:
    table = tables.read("ablation_neighbours.csv")
    if table is None:
        return []
    lines = [
        f"### Spatial-neighbour ablation: instrument-latent R^2, `{reference}` -> `{run}`",
        "",
        "Drop = reference minus ablated R^2, paired bootstrap 95% CI over the same held-out pairs. "
        f"Probe design: {_design_text(table)}.",
        "",
    ]
    header = ["property", "group", "paper", "ours", "rand. init", "drop", "drop > 0 (CI excl. 0)"]
    lines += [*markdown_table(header, _ablation_rows(table)), ""]
    alt = tables.read("ablation_neighbours_alternative.csv")
    if alt is not None and not alt.empty:
        lines += [
            f"The same ablation under the alternative probe design ({_design_text(alt)}; "
            "`ablation_neighbours_alternative.csv`):",
            "",
            *markdown_table(header, _ablation_rows(alt)),
            "",
        ]
    return [*lines, *_neighbour_section(tables, run, reference)]


def _neighbour_section(tables: RunTables, run: str, reference: str) -> list[str]:
    table = tables.read("neighbour_probe.csv")
    if table is None or table.empty:
        return []
    rows = [
        [
            str(r.label),
            str(r.survey),
            _fmt_ci(r, "reference"),
            _fmt_ci(r, "ablated"),
            _fmt_ci(r, "random_init"),
            _fmt_ci(r, "reference_shuffled"),
            _fmt_ci(r, "diff_ref_minus_abl"),
            _excludes_zero(_get(r, "diff_ref_minus_abl_ci_lo"), _get(r, "diff_ref_minus_abl_ci_hi"), 1),
        ]
        for r in table.itertuples()
    ]
    lines = [
        "### Neighbour-set probe: the anchor's conditions from the mean instrument latent of its spatial neighbours",
        "",
        f"Same spatial neighbour sets for both encoders (`{reference}`, `{run}`); the anchor's own image is never "
        "used. Control: neighbour sets shuffled between anchors (must fail, R^2 <= 0). R^2 over every anchor, each "
        "predicted out of fold (whole sky blocks per fold; a fold's probe never trains on an anchor that shares a "
        "neighbour with the fold) [95% CI resampling the blocks].",
        "",
    ]
    header = [
        "target",
        "survey",
        f"`{reference}`",
        f"`{run}`",
        "rand. init",
        f"`{reference}` shuffled",
        "drop",
        "drop > 0 (CI excl. 0)",
    ]
    return [*lines, *markdown_table(header, rows), ""]


def _mse_row(r: Any) -> list[str]:
    return [
        f"counterfactual MSE, {DIRECTION_NAMES.get(r.direction, r.direction)}",
        _fmt(GENERATIVE.get(f"mse_{r.direction}")),
        f"{_fmt(r.mse_samples)} ({r.n_galaxies} galaxies x {r.n_samples} samples)",
    ]


def _zero_shot_row(r: Any) -> list[str]:
    return [
        f"zero-shot {r.target} R^2, real / generated HSC",
        f"{_fmt(GENERATIVE['zero_shot_r2_real'], 2)} / {_fmt(GENERATIVE['zero_shot_r2_generated'], 2)}",
        f"{_fmt(r.r2_real)} / {_fmt(r.r2_generated)} (n={r.n_test})",
    ]


def _calibration_row(r: Any) -> list[str]:
    return [
        f"std of pixel Z, {DIRECTION_NAMES.get(r.direction, r.direction)}",
        "slightly above 1",
        f"{_fmt(r.z_std)} (mean {_fmt(r.z_mean)})",
    ]


_GENERATIVE_TABLES = (
    ("counterfactual_mse.csv", _mse_row),
    ("zero_shot.csv", _zero_shot_row),
    ("calibration.csv", _calibration_row),
)
"""The generative section's tables, in order, each with its (quantity, paper, ours) row of a table row."""


def _generative_section(tables: RunTables, run: str) -> list[str]:
    rows = []
    for name, describe in _GENERATIVE_TABLES:
        table = tables.read(name)
        if table is not None:
            rows += [[*describe(r), name] for r in table.itertuples()]
    if not rows:
        return []
    lines = [f"### Counterfactual generation, run `{run}`", ""]
    return [*lines, *markdown_table(["quantity", "paper", "ours", "table"], rows), ""]


def _survey_probe_section(tables: RunTables, run: str) -> list[str]:
    """Per-survey truth probes of an N-way run (survey_probes.csv): one row per survey and target."""
    table = tables.read("survey_probes.csv")
    if table is None:
        return []
    lines = [f"### Per survey: truth probes of each survey's own images, run `{run}`", ""]
    if table.empty:
        return [*lines, "No truth table (real data): the per-survey probes need the synthetic sky.", ""]
    won = csv_bool(table["disentangled"])
    counts = ", ".join(
        f"{s} {int(won[table['survey'] == s].sum())}/{int((table['survey'] == s).sum())}"
        for s in dict.fromkeys(table["survey"])
    )
    lines += [
        "Out-of-fold ridge R^2 over every galaxy the survey saw; *ahead* is the expected latent (physics for "
        "the galaxy's parameters, instrument for the survey's own conditions) minus the other. Targets won, CI "
        f"excluding 0: {counts}.",
        "",
    ]
    rows = [
        [
            str(r.survey),
            f"{r.target} ({r.group})",
            _fmt_ci(r, "r2_physics"),
            _fmt_ci(r, "r2_instrument"),
            _fmt_ci(r, "diff"),
            _excludes_zero(_get(r, "diff_ci_lo"), _get(r, "diff_ci_hi"), 1),
            _fmt(int(r.n)),
        ]
        for r in table.itertuples()
    ]
    header = ["survey", "target", "R^2 physics latent", "R^2 instrument latent", "expected ahead by", "CI excl. 0", "n"]
    return [*lines, *markdown_table(header, rows), ""]


def _survey_ablation_section(tables: RunTables, run: str, reference: str) -> list[str]:
    """The spatial-neighbour ablation per survey (survey_ablation.csv): instrument targets, both latents."""
    table = tables.read("survey_ablation.csv")
    if table is None or table.empty:
        return []
    sel = table[table["group"] == "instrument"]
    lines = [
        f"### Per survey: spatial-neighbour ablation, `{reference}` -> `{run}`",
        "",
        "Each survey's conditions probed from its own images in both runs (the same galaxies and folds); "
        "drop = R^2 in the reference minus R^2 here, paired bootstrap interval.",
        "",
    ]
    rows = [
        [
            str(r.survey),
            str(r.target),
            str(r.latent),
            _fmt(r.r2_reference),
            _fmt(r.r2_ablated),
            _fmt_ci(r, "drop"),
            _excludes_zero(_get(r, "drop_ci_lo"), _get(r, "drop_ci_hi"), 1),
        ]
        for r in sel.itertuples()
    ]
    header = ["survey", "target", "latent", f"R^2 `{reference}`", f"R^2 `{run}`", "drop", "drop > 0 (CI excl. 0)"]
    return [*lines, *markdown_table(header, rows), ""]


def _survey_retrieval_section(tables: RunTables, run: str) -> list[str]:
    """Counterpart retrieval across every ordered pair of surveys (survey_retrieval.csv)."""
    table = tables.read("survey_retrieval.csv")
    if table is None or table.empty:
        return []
    lines = [f"### Retrieval across surveys, run `{run}`", ""]
    rows = [
        [
            f"{r.query} -> {r.pool}",
            str(r.space),
            _fmt(r.top1),
            f"{_fmt(r.topk)} ({_fmt(r.chance_topk)})",
            f"{_fmt(r.median_rank, 0)} / {int(r.n_pool)}",
            _fmt(int(r.n_queries)),
        ]
        for r in table.itertuples()
    ]
    k = int(table["k"].iloc[0])
    header = ["query -> pool", "latent", "top-1", f"top-{k} (chance)", "median rank / pool", "queries"]
    return [*lines, *markdown_table(header, rows), ""]


def _survey_direction_section(tables: RunTables, run: str) -> list[str]:
    """Counterfactual MSE and calibration of every ordered pair of surveys (survey_directions.csv)."""
    table = tables.read("survey_directions.csv")
    if table is None or table.empty:
        return []
    lines = [f"### Counterfactuals across surveys (source view only -> target), run `{run}`", ""]
    rows = [
        [
            f"{r.source} -> {r.target}",
            _fmt_ci(r, "mse_samples", digits=4),
            _fmt(r.mse_posterior_mean, 4),
            f"{_fmt(r.z_std)} ({_fmt(r.z_std_ideal)})",
            _fmt(r.z_mean),
            f"{_fmt(_get(r, 'mse_posterior_mean_vs_noiseless'), 4)} ({_fmt(_get(r, 'mse_observed_vs_noiseless'), 4)})",
            f"{int(r.n_galaxies)} x {int(r.n_samples)}",
        ]
        for r in table.itertuples()
    ]
    header = [
        "direction",
        "MSE of samples",
        "MSE of posterior mean",
        "std Z (calibrated)",
        "mean Z",
        "posterior mean vs noiseless truth (real target's)",
        "galaxies x samples",
    ]
    return [*lines, *markdown_table(header, rows), ""]


def _metric_section(tables: RunTables, name: str, title: str) -> list[str]:
    table = tables.read(name)
    if table is None or table.empty:
        return []
    lines = [title, ""]
    rows = [[str(r.metric), _fmt(r.value), str(r.note) if isinstance(r.note, str) else ""] for r in table.itertuples()]
    return [*lines, *markdown_table(["metric", "value", "note"], rows), ""]


def _ci_columns(table: pd.DataFrame, value: str) -> tuple[str, str] | None:
    """The CI columns of ``value``: ``<value>_ci_lo``/``_ci_hi``, else a plain ``ci_lo``/``ci_hi``."""
    for lo, hi in ((f"{value}_ci_lo", f"{value}_ci_hi"), ("ci_lo", "ci_hi")):
        if lo in table.columns and hi in table.columns:
            return lo, hi
    return None


def extra_table_section(table: pd.DataFrame, spec: ExtraTable, run: str) -> list[str]:
    """Markdown of one optional table: the chosen columns, ``value [lo, hi]`` and a verdict column."""
    if table.empty:
        return []
    shown = [c for c in (spec.columns or tuple(table.columns)) if c in table.columns]
    ci = _ci_columns(table, spec.value) if spec.value and spec.value in table.columns else None
    if ci and not spec.columns:
        shown = [c for c in shown if c not in ci]
    header = [*shown, *([spec.verdict] if spec.verdict and ci else [])]
    rows = []
    for r in table.to_dict("records"):  # records keep each column's type (counts print as integers)
        cells = [_fmt_ci(r, c, *ci, digits=spec.digits) if ci and c == spec.value else _fmt(r[c]) for c in shown]
        if spec.verdict and ci:
            lo = _get(r, ci[0])
            cells.append("-" if math.isnan(lo) else ("yes" if lo > spec.threshold else "no"))
        rows.append(cells)
    lines = [f"### {spec.title}, run `{run}` ({spec.filename})", ""]
    return [*lines, *markdown_table(header, rows), ""]


def _extra_sections(sections: Mapping[str, Sequence[str] | pd.DataFrame]) -> list[str]:
    """Ready-made sections: a title -> markdown lines, or a DataFrame printed as a table."""
    lines: list[str] = []
    for title, body in sections.items():
        lines += [f"## {title}", ""]
        if isinstance(body, pd.DataFrame):
            lines += markdown_table([str(c) for c in body.columns], [[_fmt(v) for v in row] for row in body.to_numpy()])
        else:
            lines += [str(line) for line in body]
        lines.append("")
    return lines


def _truth_metric_section(tables: RunTables, run: str) -> list[str]:
    truth = tables.read("truth_metrics.csv")
    if truth is None or truth.empty:
        return []
    has_ci = "ci_lo" in truth.columns and "ci_hi" in truth.columns
    lines = [f"### Truth metrics (synthetic sky), run `{run}`" + (" [bootstrap 95% CI]" if has_ci else ""), ""]
    lines += markdown_table(
        ["experiment", "metric", "value", "note"],
        [
            [
                str(r.experiment),
                str(r.metric),
                _fmt_ci(r, "value", "ci_lo", "ci_hi") if has_ci else _fmt(r.value),
                str(r.note) if isinstance(r.note, str) else "",
            ]
            for r in truth.itertuples()
        ],
    )
    return [*lines, ""]


COMPARISON_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("probe", "r2_physics_targets", "physics", "physics targets <- physics latent (R^2)"),
    ("probe", "r2_instrument_targets", "instrument", "instrument targets <- instrument latent (R^2)"),
    ("probe", "r2_physics_targets", "instrument", "physics targets <- instrument latent (leak)"),
    ("probe", "r2_instrument_targets", "physics", "instrument targets <- physics latent (leak)"),
    ("retrieval", "top1", "physics", "Legacy counterpart top-1"),
    ("retrieval", "top{k}", "physics", "Legacy counterpart top-{k}"),
    ("retrieval", "median_rank", "physics", "counterpart median rank"),
    ("outliers", "precision_rare", "physics", "rare classes in top outliers (kNN, physics)"),
    ("outliers", "precision_rare", "physics flow", "rare classes in top outliers (Fig 3 flow, physics)"),
    ("outliers", "precision_rare", "cvae anomaly", "rare classes in top outliers (CVAE anomaly score)"),
    ("outliers", "precision_pathology", "instrument", "pathologies in top outliers (kNN, instrument)"),
    ("outliers", "precision_pathology", "instrument flow", "pathologies in top outliers (Fig 3 flow, instrument)"),
    ("outliers", "precision_pathology", "cvae anomaly", "pathologies in top outliers (CVAE anomaly score)"),
    ("outliers", "precision_pathology", "physics", "pathologies in top outliers (kNN, physics)"),
    ("cost", "seconds", "", "wall seconds (train job; random init: its features)"),
    ("cost", "steps", "", "training steps"),
    ("cost", "seconds_per_step", "", "seconds per step"),
)
"""(section, metric, space, row label) of the "Methods compared" table; ``{k}``: the retrieval k."""


COMPARISON_DIGITS = {"seconds": 0, "steps": 0, "median_rank": 1, "seconds_per_step": 2}
"""Digits of the comparison's counts, ranks and times (fractions and R^2: 3)."""


def _comparison_cell(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "-"
    r = rows.iloc[0]
    return _fmt_ci(r, "value", "ci_lo", "ci_hi", digits=COMPARISON_DIGITS.get(str(r["metric"]), 3))


def methods_compared_section(table: pd.DataFrame, k: int) -> list[str]:
    """Markdown of comparison.csv: one column per representation (run and its method, random init, raw
    pixels), one row per headline metric, ``value [lo, hi]``, and the chance/base-rate reference."""
    if table.empty:
        return []
    names = list(dict.fromkeys(table["representation"]))
    method = dict(zip(table["representation"], table["method"], strict=True))
    header = ["metric", *[n if method[n] == n else f"{n} ({method[n]})" for n in names], "chance / base rate"]
    body = []
    for section, metric, space, label in COMPARISON_ROWS:
        metric, label = metric.format(k=k), label.format(k=k)
        sel = table[(table["section"] == section) & (table["metric"] == metric) & (table["space"].fillna("") == space)]
        if sel.empty:
            continue
        cells = [_comparison_cell(sel[sel["representation"] == n]) for n in names]
        body.append([label, *cells, _fmt(sel["reference"].iloc[0])])
    lines = [
        "## Methods compared",
        "",
        "Every run (its `method`), a frozen random-init encoder and raw pixels on the same pairs "
        "(`comparison/comparison.csv`, figure `comparison/comparison.png`): ridge probes of the true (else "
        "catalogue) targets, mean R^2 clipped at 0 per group, bootstrap intervals over the held-out pairs; "
        "retrieval of each held-out HSC object's Legacy view by physics-latent distance; outlier precision "
        "in the top 1 % (Wilson intervals) by kNN distance in each latent and by each method's own score "
        "(Fig 3's flows, the CVAE's anomaly score); training cost from the benchmarks. Few-shot curves: "
        "`comparison/comparison_fewshot.csv`.",
        "",
    ]
    if "cvae" in set(table["method"]):
        lines += [
            "A `cvae` run is supervised: its latent regresses `cvae.properties` on the labels of the `train` "
            "split (on the synthetic sky, the truth), so its rows for those properties score pairs whose "
            "labels it was fitted to; `experiments.probes.pairs: held_out` scores the held-out pairs only.",
            "",
        ]
    return [*lines, *markdown_table(header, body), ""]


def criteria(
    config: dict, results: DatasetLayout | str | Path, runs: Sequence[str]
) -> tuple[pd.DataFrame, str, str | None]:
    """The criteria table (whatsreal.experiments.criteria) from the reference run's and the ablated
    run's tables as planned for them; with the two run names (the ablated one None when not run)."""
    ablation = config["experiments"]["ablation"]
    reference = ablation["reference"]
    ablated = ablation["ablated"] if ablation["ablated"] in runs and reference in runs else None
    ref = RunTables.of(config, results, reference) if reference in runs else None
    abl = RunTables.of(config, results, ablated) if ablated else None

    def read(tables: RunTables | None, name: str) -> pd.DataFrame | None:
        return None if tables is None else tables.read(name)

    def where(run: str | None, name: str) -> str:
        return f"{run}/tables/{name}"

    table = criteria_table(
        CriteriaSettings.from_config(config),
        gain=read(ref, "conditioning_gain.csv"),
        survey_probes=read(ref, "survey_probes.csv"),
        survey_ablation=read(abl, "survey_ablation.csv"),
        neighbour_probe=read(abl, "neighbour_probe.csv"),
        noise_slopes=read(ref, "noise_model_slopes.csv"),
        sources={
            "gain": where(reference, "conditioning_gain.csv"),
            "survey_probes": where(reference, "survey_probes.csv"),
            "survey_ablation": where(ablated, "survey_ablation.csv"),
            "neighbour_probe": where(ablated, "neighbour_probe.csv"),
            "noise_slopes": where(reference, "noise_model_slopes.csv"),
        },
    )
    return table, reference, ablated


def write_summary(
    config: dict,
    results: DatasetLayout | str | Path,
    runs: list[str],
    out: str | Path,
    extra_tables: Sequence[ExtraTable] = EXTRA_TABLES,
    extra_sections: Mapping[str, Sequence[str] | pd.DataFrame] | None = None,
    comparison: str | Path | None = None,
    criteria_out: str | Path | None = None,
) -> str:
    """Write ``summary.md`` for every run of a dataset and return its text.

    ``results``: the dataset's layout (or its root); each run's tables are those
    :func:`whatsreal.plan.summary_tables` plans for it, shown when written.
    ``extra_tables``: optional per-run tables shown when their file exists
    (:data:`EXTRA_TABLES` by default); ``extra_sections``: ready-made sections
    (title -> markdown lines or a DataFrame) appended at the end. ``comparison``: comparison.csv,
    shown as the "Methods compared" section before the runs. The criteria (:func:`criteria`) come
    first, and go to ``criteria_out`` as CSV when given (its header alone when nothing was judged).
    """
    ds = config["dataset"]
    boot = config["experiments"].get("bootstrap", {})
    lines = [
        f"# whatsreal summary: dataset `{ds['name']}` (source `{ds['source']}`)",
        "",
        f"Config fingerprint `{_config_digest(config)}`. Each run is the base config with its `runs.<run>` "
        "overlay; every number below comes from `results/"
        f"{ds['name']}/runs/<run>/tables/`. Paper numbers are for the real HSC x Legacy data at paper scale; "
        "on the synthetic sky, compare the pattern (which latent wins which property) more than the values. "
        f"Intervals in brackets: percentile bootstrap over the held-out pairs ({boot.get('n_resamples', '?')} "
        f"resamples, {100 * float(boot.get('confidence', 0.95)):.0f}%), paired for differences.",
        "",
    ]
    judged, reference_run, ablated_run = criteria(config, results, runs)
    lines += criteria_markdown(judged, reference_run, ablated_run)
    if criteria_out is not None:
        write_csv(judged, criteria_out)
    if comparison is not None:
        lines += methods_compared_section(pd.read_csv(comparison), int(config["experiments"]["retrieval"]["k"]))
    reference = config["experiments"]["ablation"]["reference"]
    for run in runs:
        overlay = config["runs"].get(run, {})
        tables = RunTables.of(config, results, run)
        lines += [f"## Run `{run}` (overlay `{json.dumps(overlay, sort_keys=True)}`)", ""]
        lines += _probe_section(tables, run)
        lines += _alternative_section(tables, run)
        if run != reference:
            lines += _ablation_section(tables, run, reference)
        for spec in extra_tables:
            extra = tables.read(spec.filename)
            if extra is not None:
                lines += extra_table_section(extra, spec, run)
        lines += _generative_section(tables, run)
        lines += _metric_section(tables, "retrieval.csv", f"### Retrieval (Fig 5), run `{run}`")
        lines += _truth_metric_section(tables, run)
        lines += _survey_probe_section(tables, run)
        lines += _survey_ablation_section(tables, run, reference)
        lines += _survey_retrieval_section(tables, run)
        lines += _survey_direction_section(tables, run)
    lines += _extra_sections(extra_sections or {})
    text = "\n".join(lines).rstrip() + "\n"
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    return text
