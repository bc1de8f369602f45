"""Does the method work on this sky? The paper's central claims as pass/fail rows, read off the tables.

A user who runs the pipeline wants one answer before reading 900 lines of summary.md: does the
trained model show what the paper is about? On the synthetic sky the truth is known, so every
claim can be checked against it (issue 10). This module reads the experiments' own tables and
states each claim once, with its number, its bootstrap interval, the threshold it must clear
and the table it came from:

- ``gain_instrument``, ``gain_physics`` (per survey): the decoder uses each half of its
  conditioning. The conditioning gain of the reference run (``conditioning_gain.csv``) with
  its interval above 0.
- ``physics_targets_won`` (per survey): the physics latent beats the instrument latent on every
  physics truth target (``survey_probes.csv``, the expected latent ahead with the paired
  interval excluding 0); the value is the number won, the threshold the number of targets.
- ``instrument_target_won`` (per survey and condition: PSF FWHM, sky noise, PSF depth): the
  instrument latent beats the physics latent on that condition; value = the R^2 lead.
- ``ablation_drop`` (per survey): with random neighbours the instrument latent loses at least
  ``ablation_drop`` of its R^2 on at least one condition, interval above 0
  (``survey_ablation.csv`` of the ablated run); the row shows the condition that passes with
  the largest drop, or the largest drop when none passes.
- ``neighbour_probe_drop`` (per survey): the neighbour-set probe (the anchor's conditions from
  its neighbours' instrument latents only) drops the same way, interval above 0
  (``neighbour_probe.csv``); the largest drop is shown.
- ``noise_slope`` (the configured anchor survey): Fig 7's log-log slope of the generated
  images' background noise against the conditioning set's true sky sigma exceeds
  ``noise_slope`` (``noise_model_slopes.csv``).

A claim whose table was not produced (real data has no truth; a config without the ablated
run) gets no row, so the table never reports a verdict it did not measure. The thresholds are
config (``experiments.criteria``); their defaults are issue 10's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from whatsreal.io import csv_bool
from whatsreal.markdown import markdown_table

__all__ = [
    "CLAIMS",
    "COLUMNS",
    "CriteriaSettings",
    "criteria_across",
    "criteria_markdown",
    "criteria_table",
    "read_criteria",
]

COLUMNS = ["criterion", "survey", "target", "value", "ci_lo", "ci_hi", "threshold", "met", "source", "note"]
"""criteria.csv's columns, in order: ``met`` is True/False; ``target`` is empty where the row is not about one."""

CLAIMS: dict[str, str] = {
    "gain_instrument": "the decoder uses its instrument tokens (conditioning gain)",
    "gain_physics": "the decoder uses its physics view (conditioning gain)",
    "physics_targets_won": "the physics latent wins every physics target",
    "instrument_target_won": "the instrument latent wins this condition (R^2 lead over the physics latent)",
    "ablation_drop": "random neighbours cost the instrument latent R^2 on a condition",
    "neighbour_probe_drop": "the neighbour-set probe drops with random neighbours",
    "noise_slope": "Fig 7: generated noise follows the conditioning set's sky sigma (log-log slope)",
}
"""Each criterion's claim in words, as summary.md states it, in the order rows are listed."""


@dataclass(frozen=True)
class CriteriaSettings:
    """The thresholds of the claims that have one (``experiments.criteria``)."""

    ablation_drop: float
    noise_slope: float
    noise_direction: str

    @classmethod
    def from_config(cls, config: dict) -> CriteriaSettings:
        c = config["experiments"]["criteria"]
        return cls(float(c["ablation_drop"]), float(c["noise_slope"]), str(c["noise_direction"]))


def _row(
    criterion: str,
    survey: str,
    target: str,
    value: float,
    lo: float,
    hi: float,
    threshold: float,
    met: bool,
    source: str,
    note: str = "",
) -> dict:
    return {
        "criterion": criterion,
        "survey": survey,
        "target": target,
        "value": float(value),
        "ci_lo": float(lo),
        "ci_hi": float(hi),
        "threshold": float(threshold),
        "met": bool(met),
        "source": source,
        "note": note,
    }


def _above(lo: float) -> bool:
    """An interval's lower end above 0 (a missing interval never counts as above)."""
    return not math.isnan(lo) and lo > 0


def _gain_rows(gain: pd.DataFrame, source: str) -> list[dict]:
    return [
        _row(f"gain_{r.half}", str(r.survey), "", r.gain, r.ci_lo, r.ci_hi, 0.0, _above(r.ci_lo), source)
        for r in gain.itertuples()
    ]


def _probe_rows(probes: pd.DataFrame, source: str) -> list[dict]:
    rows = []
    for survey, table in probes.groupby("survey", sort=False):
        won = csv_bool(table["disentangled"])
        phys = table["group"] == "physics"
        lost = table[phys & ~won]
        note = "; ".join(
            f"{r.target} {r.diff:+.3f} [{r.diff_ci_lo:+.3f}, {r.diff_ci_hi:+.3f}]" for r in lost.itertuples()
        )
        n_won, n = int((phys & won).sum()), int(phys.sum())
        rows.append(
            _row("physics_targets_won", str(survey), "", n_won, np.nan, np.nan, n, n > 0 and n_won == n, source, note)
        )
        for r in table[~phys].itertuples():
            rows.append(
                _row(
                    "instrument_target_won",
                    str(survey),
                    str(r.target),
                    r.diff,
                    r.diff_ci_lo,
                    r.diff_ci_hi,
                    0.0,
                    bool(won[r.Index]),
                    source,
                )
            )
    return rows


def _largest(table: pd.DataFrame, value: str, passes: Callable[[pd.DataFrame], pd.Series]) -> tuple[pd.Series, bool]:
    """The passing row with the largest ``value`` and True, or, when none passes, the row with the
    largest ``value`` and False."""
    ok = table[passes(table)]
    pool = ok if len(ok) else table
    return pool.loc[pool[value].idxmax()], bool(len(ok))


def _ablation_rows(ablation: pd.DataFrame, threshold: float, source: str) -> list[dict]:
    rows = []
    sel = ablation[(ablation["group"] == "instrument") & (ablation["latent"] == "instrument")].dropna(subset=["drop"])
    for survey, table in sel.groupby("survey", sort=False):

        def passes(t: pd.DataFrame) -> pd.Series:
            return (t["drop"] >= threshold) & (t["drop_ci_lo"] > 0)

        best, met = _largest(table, "drop", passes)
        rows.append(
            _row(
                "ablation_drop",
                str(survey),
                str(best["target"]),
                best["drop"],
                best["drop_ci_lo"],
                best["drop_ci_hi"],
                threshold,
                met,
                source,
            )
        )
    return rows


def _neighbour_rows(probe: pd.DataFrame, source: str) -> list[dict]:
    rows = []
    sel = probe[csv_bool(probe["truth"])].dropna(subset=["diff_ref_minus_abl"])
    for survey, table in sel.groupby("survey", sort=False):
        best, met = _largest(table, "diff_ref_minus_abl", lambda t: t["diff_ref_minus_abl_ci_lo"] > 0)
        rows.append(
            _row(
                "neighbour_probe_drop",
                str(survey),
                str(best["target"]),
                best["diff_ref_minus_abl"],
                best["diff_ref_minus_abl_ci_lo"],
                best["diff_ref_minus_abl_ci_hi"],
                0.0,
                met,
                source,
            )
        )
    return rows


def _slope_rows(slopes: pd.DataFrame, settings: CriteriaSettings, source: str) -> list[dict]:
    sel = slopes[
        (slopes["direction"] == settings.noise_direction)
        & (slopes["axis"] == "sky_sigma")
        & (slopes["statistic"] == "output_noise")
    ]
    note = "real images {:.3f}".format(float(sel["real_slope"].iloc[0])) if len(sel) and "real_slope" in sel else ""
    return [
        _row(
            "noise_slope",
            settings.noise_direction,
            "sky_sigma",
            r.slope,
            r.ci_lo,
            r.ci_hi,
            settings.noise_slope,
            bool(r.slope > settings.noise_slope),
            source,
            note,
        )
        for r in sel.itertuples()
    ]


def criteria_table(
    settings: CriteriaSettings,
    *,
    gain: pd.DataFrame | None = None,
    survey_probes: pd.DataFrame | None = None,
    survey_ablation: pd.DataFrame | None = None,
    neighbour_probe: pd.DataFrame | None = None,
    noise_slopes: pd.DataFrame | None = None,
    sources: dict[str, str] | None = None,
) -> pd.DataFrame:
    """One row per claim and survey (:data:`COLUMNS`) from whichever tables are given.

    ``gain``, ``survey_probes`` and ``noise_slopes`` are the reference run's; ``survey_ablation``
    and ``neighbour_probe`` the ablated run's. ``sources`` names each table in the ``source``
    column (key: the argument name; default: the table's file name)."""
    names = {
        "gain": "conditioning_gain.csv",
        "survey_probes": "survey_probes.csv",
        "survey_ablation": "survey_ablation.csv",
        "neighbour_probe": "neighbour_probe.csv",
        "noise_slopes": "noise_model_slopes.csv",
    } | (sources or {})
    rows: list[dict] = []
    if gain is not None:
        rows += _gain_rows(gain, names["gain"])
    if survey_probes is not None:
        rows += _probe_rows(survey_probes, names["survey_probes"])
    if survey_ablation is not None:
        rows += _ablation_rows(survey_ablation, settings.ablation_drop, names["survey_ablation"])
    if neighbour_probe is not None:
        rows += _neighbour_rows(neighbour_probe, names["neighbour_probe"])
    if noise_slopes is not None:
        rows += _slope_rows(noise_slopes, settings, names["noise_slopes"])
    table = pd.DataFrame(rows, columns=COLUMNS)
    order = {name: i for i, name in enumerate(CLAIMS)}
    return table.sort_values("criterion", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)


def _text(value: object) -> str:
    """A text cell; empty for a missing one (a CSV read back gives NaN for '')."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _needs(r: pd.Series) -> str:
    if r["criterion"] == "physics_targets_won":
        return f"all {int(r['threshold'])}"
    if r["criterion"] == "noise_slope":
        return f"> {r['threshold']:g}"
    if r["criterion"] == "ablation_drop":
        return f">= {r['threshold']:g}, interval above 0"
    return "interval above 0"


def _value(r: pd.Series) -> str:
    if r["criterion"] == "physics_targets_won":
        return f"{int(r['value'])} of {int(r['threshold'])}"
    # Conditioning gains are loss differences of 1e-4 to 1e-2: three decimals would print 0.000.
    d = 4 if r["criterion"].startswith("gain_") else 3
    if math.isnan(r["ci_lo"]) or math.isnan(r["ci_hi"]):
        return f"{r['value']:.{d}f}"
    return f"{r['value']:.{d}f} [{r['ci_lo']:.{d}f}, {r['ci_hi']:.{d}f}]"


def criteria_markdown(table: pd.DataFrame, reference: str, ablated: str | None) -> list[str]:
    """summary.md's first section: every row of :func:`criteria_table`, and how many are met.

    Empty when the table is (no tables to judge from)."""
    if table.empty:
        return []
    runs = f"run `{reference}`" + (f", ablated run `{ablated}`" if ablated else "")
    lines = [
        "## Does the method work on this sky?",
        "",
        f"The paper's claims that this dataset's tables can test ({runs}), each with its value, "
        "bootstrap interval (as everywhere below), threshold (`experiments.criteria`) and the table it comes from. "
        "Rows whose table was not produced (no truth on real data, no ablated run) are left out. "
        "The same rows are in `criteria.csv`.",
        "",
    ]
    rows = [
        [
            CLAIMS.get(r["criterion"], r["criterion"]),
            str(r["survey"]),
            _text(r["target"]),
            _value(r),
            _needs(r),
            "**yes**" if r["met"] else "no",
            f"`{r['source']}`",
            _text(r["note"]),
        ]
        for _, r in table.iterrows()
    ]
    lines += markdown_table(["claim", "survey", "target", "value [interval]", "needs", "met", "table", "note"], rows)
    met = int(table["met"].sum())
    lines += ["", f"{met} of {len(table)} met.", ""]
    return lines


FIXED_TARGET = frozenset({"instrument_target_won", "noise_slope"})
"""Claims about one named target. The others' ``target`` is the one each dataset's row picked
(the largest passing drop), so across datasets they are matched on claim and survey only."""


def read_criteria(path: str | Path) -> pd.DataFrame:
    """A ``criteria.csv``, or an error naming the file and what it lacks."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; build it with `snakemake {path} --configfile ...` (rule summary)")
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: not a criteria table, it lacks column(s) {', '.join(missing)}")
    table["target"] = table["target"].fillna("").astype(str)
    table["met"] = csv_bool(table["met"])
    return table


def criteria_across(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """How many of several datasets (trainings with other seeds, budgets or skies) meet each claim.

    One interval describes the probe's uncertainty about one trained model, not how the claim
    varies between trainings; several trainings of one config answer that. Returns one row per
    claim and survey (and target, for claims about a named one): ``met_in`` of ``n``, the value
    in each dataset (column = the dataset's name, NaN where it has no such row) and the
    target each row was read on (``targets``, for the claims that pick one)."""
    keyed = []
    for name, table in tables.items():
        t = table.copy()
        t["key_target"] = np.where(t["criterion"].isin(FIXED_TARGET), t["target"], "")
        t["dataset"] = name
        keyed.append(t)
    if not keyed:
        return pd.DataFrame(columns=["criterion", "survey", "target", "met_in", "n"])
    rows = pd.concat(keyed, ignore_index=True)
    order = {name: i for i, name in enumerate(CLAIMS)}
    out = []
    for (criterion, survey, target), group in rows.groupby(["criterion", "survey", "key_target"], sort=False):
        row: dict[str, object] = {"criterion": criterion, "survey": survey, "target": target}
        row["met_in"] = int(group["met"].sum())
        row["n"] = len(tables)
        picked = []
        for name in tables:
            hit = group[group["dataset"] == name]
            row[name] = float(hit["value"].iloc[0]) if len(hit) else np.nan
            picked.append(str(hit["target"].iloc[0]) if len(hit) else "-")
        row["targets"] = "" if target or not any(t not in ("", "-") for t in picked) else " / ".join(picked)
        out.append(row)
    result = pd.DataFrame(out)
    return result.sort_values("criterion", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
