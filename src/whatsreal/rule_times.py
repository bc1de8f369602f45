"""How long each heavy job of the workflow took, from Snakemake's ``benchmark:`` files.

Every rule whose cost grows with the data or the model (simulate, preprocess, train, embed,
the baselines, posterior sampling and the experiments) writes a Snakemake benchmark TSV,
``results/<dataset>/benchmarks/<rule>[_<wildcard values>].tsv``. This module gathers them
into one table, ``rule_times.csv``, and a section of ``summary.md``: the numbers needed to
plan a paper-scale run (which step dominates, how much memory it peaked at) come from the
run itself instead of from reading logs.

A benchmark TSV, as Snakemake 9 writes it: a header line and one row per repetition (one
unless the rule asked for ``repeat()``), tab-separated, with ``s`` (wall seconds),
``h:m:s``, ``max_rss``/``max_vms``/``max_uss``/``max_pss`` (MB), ``io_in``/``io_out`` (MB),
``mean_load`` (CPU %) and ``cpu_time`` (s); ``--benchmark-extended`` appends job columns,
which are ignored here. A value Snakemake could not measure is ``NA``; an empty file is read
as "not measured". Jobs that ran before their rule had a benchmark are not collected (see
:func:`ran_unmeasured`), so upgrading never reruns a job just to time it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from whatsreal.io import atomic_path
from whatsreal.layout import DatasetLayout

__all__ = [
    "BENCHMARKED_RULES",
    "COLUMNS",
    "BenchmarkJob",
    "benchmark_stem",
    "collect_rule_times",
    "ran_unmeasured",
    "read_benchmark",
    "read_rule_times",
    "rule_times_section",
    "write_rule_times",
]

MEASURES: dict[str, str] = {
    "s": "seconds",
    "max_rss": "max_rss_mb",
    "mean_load": "mean_load_pct",
    "cpu_time": "cpu_time_s",
    "io_in": "io_in_mb",
    "io_out": "io_out_mb",
}
"""Benchmark column -> rule_times.csv column, for the measures the table keeps."""

COLUMNS: tuple[str, ...] = ("rule", "job", "repeats", *MEASURES.values(), "benchmark")
"""Columns of rule_times.csv, in order."""

BENCHMARKED_RULES: dict[str, tuple[str, ...]] = {
    "simulate": (),
    "preprocess": ("survey",),
    "random_init_embeddings": (),
    "cross_predict": (),
    "baseline_probes": (),
    "baseline_outliers": (),
    "train": ("run",),
    "embed": ("run",),
    "umap": ("run",),
    "outliers": ("run",),
    "probes": ("run",),
    "conditioning_gain": ("run",),
    "survey_probes": ("run",),
    "survey_directions": ("run",),
    "ablation": ("run",),
    "posterior_samples": ("run", "direction"),
    "counterfactuals": ("run",),
    "truth_counterfactuals": ("run",),
    "spatial_structure": ("run",),
    "calibration": ("run",),
    "zero_shot": ("run",),
    "noise_model": ("run",),
    "comparison": (),
}
"""The rules with a ``benchmark:`` (each took 8 s or more in the demo, or grows with the data), and
the wildcards naming their jobs, in file-name order: ``benchmarks/<rule>[_<value>...].tsv``, the
same name as the job's log (``logs/<rule>[_<value>...].log``)."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchmarkJob:
    """One job's benchmark file: its rule, its wildcard values (empty for a single-job rule)."""

    rule: str
    wildcards: Mapping[str, str]
    path: str | Path

    @property
    def label(self) -> str:
        """``run=main, direction=hsc``: the job among the rule's jobs (empty for a single-job rule)."""
        return ", ".join(f"{k}={v}" for k, v in self.wildcards.items())


def benchmark_stem(rule: str, wildcards: Mapping[str, str]) -> str:
    """``train_main``: the file name (without suffix) of a job's benchmark TSV, as of its log."""
    if rule not in BENCHMARKED_RULES:
        raise KeyError(f"rule '{rule}' has no benchmark: add it to whatsreal.rule_times.BENCHMARKED_RULES")
    return "_".join([rule, *(str(wildcards[w]) for w in BENCHMARKED_RULES[rule])])


def ran_unmeasured(results: DatasetLayout | str | Path, rule: str, wildcards: Mapping[str, str]) -> bool:
    """True when the job ran before its rule had a ``benchmark:`` (its log exists, its TSV does not).

    Such a job is left out of ``rule_times``' inputs: declaring its missing TSV would make
    Snakemake rerun it (training included) only to time it. It is timed the next time it runs
    for a reason of its own, and ``rule_times`` then picks it up (its input set changes).
    """
    stem = benchmark_stem(rule, wildcards)
    data = DatasetLayout.of(results)
    return data.log(stem).exists() and not data.benchmark(stem).exists()


def read_benchmark(path: str | Path) -> dict[str, float] | None:
    """One benchmark TSV as {rule_times column: value}; None for an empty file (not measured).

    Repetitions (``repeat()``) are averaged for times and load, maxed for memory, so a row is
    one typical run of the job. Raises ValueError naming the file when it is not a benchmark.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        return None
    try:
        table = pd.read_csv(path, sep="\t", na_values=["NA", "-"])
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a Snakemake benchmark TSV ({exc}); delete it and rerun its rule") from exc
    if "s" not in table.columns or table.empty:
        raise ValueError(
            f"{path}: not a Snakemake benchmark TSV (needs a header with an 's' column and at least one row; "
            f"got columns {list(table.columns)}); delete it and rerun its rule"
        )
    row: dict[str, float] = {"repeats": float(len(table))}
    for source, name in MEASURES.items():
        if source not in table.columns:
            row[name] = float("nan")
            continue
        values = pd.to_numeric(table[source], errors="coerce")
        if source == "s" and values.isna().any():
            raise ValueError(f"{path}: column 's' holds a non-number ({table[source].tolist()}); rerun its rule")
        row[name] = float(values.max() if source.startswith("max_") else values.mean())
    return row


def collect_rule_times(jobs: Sequence[BenchmarkJob]) -> pd.DataFrame:
    """One row per job (``COLUMNS``), slowest first; jobs not measured (empty file) last, with NaN."""
    rows = []
    for job in jobs:
        measured = read_benchmark(job.path)
        values = (
            measured if measured is not None else {"repeats": 0.0, **dict.fromkeys(MEASURES.values(), float("nan"))}
        )
        rows.append({"rule": job.rule, "job": job.label, **values, "benchmark": str(job.path)})
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["repeats"] = table["repeats"].astype(int)
    return table.sort_values("seconds", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def write_rule_times(jobs: Sequence[BenchmarkJob], out: str | Path) -> pd.DataFrame:
    """Write ``collect_rule_times(jobs)`` to ``out`` (CSV, atomically) and return it."""
    table = collect_rule_times(jobs)
    with atomic_path(out, ".csv") as tmp:
        table.to_csv(tmp, index=False)
    measured = table["seconds"].notna()
    log.info(
        "%d benchmarked jobs (%d measured), %.0f s in all; slowest: %s",
        len(table),
        int(measured.sum()),
        table["seconds"].sum(),
        f"{table['rule'].iloc[0]} {table['job'].iloc[0]} {table['seconds'].iloc[0]:.1f} s" if measured.any() else "-",
    )
    return table


def read_rule_times(path: str | Path) -> pd.DataFrame:
    """rule_times.csv as written (a single-job rule's empty ``job`` stays an empty string)."""
    table = pd.read_csv(path, dtype={"rule": str, "job": str, "benchmark": str}, keep_default_na=False, na_values=[""])
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"{path}: not a rule_times table (no column {missing}); delete it and rerun the rule_times rule"
        )
    return table.fillna({"job": ""})


def _hms(seconds: float) -> str:
    if pd.isna(seconds):
        return "-"
    total = round(float(seconds))
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _num(value: float, digits: int = 0) -> str:
    return "-" if pd.isna(value) else f"{float(value):,.{digits}f}"


def rule_times_section(table: pd.DataFrame) -> list[str]:
    """Markdown lines for summary.md: per rule (jobs, total and slowest job, peak memory), then per job."""
    if table.empty:
        return ["No benchmarked job in this workflow.", ""]
    per_rule = (
        table.groupby("rule", sort=False)
        .agg(
            jobs=("job", "size"),
            total=("seconds", lambda s: s.sum(min_count=1)),
            slowest=("seconds", "max"),
            rss=("max_rss_mb", "max"),
        )
        .sort_values("total", ascending=False, kind="stable")
    )
    measured = table["seconds"].notna()
    lines = [
        f"Wall time and peak memory of each heavy job, from Snakemake's `benchmark:` files (`rule_times.csv`). "
        f"{int(measured.sum())} of {len(table)} jobs measured, {_hms(table['seconds'].sum(min_count=1))} in all "
        "(jobs that ran in parallel overlap; a job rerun alone keeps its own last time).",
        "",
        "| rule | jobs | total h:m:s | slowest job s | peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {rule} | {int(r.jobs)} | {_hms(r.total)} | {_num(r.slowest, 1)} | {_num(r.rss)} |"
        for rule, r in per_rule.iterrows()
    ]
    lines += ["", "| rule | job | s | peak RSS MB | mean load % | CPU s |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {r.rule} | {r.job or '-'} | {_num(r.seconds, 1)} | {_num(r.max_rss_mb)} | {_num(r.mean_load_pct)} "
        f"| {_num(r.cpu_time_s, 1)} |"
        for r in table.itertuples()
    ]
    return [*lines, ""]
