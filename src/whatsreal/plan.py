"""What ``snakemake all`` builds for a config: which rules run for each run, and so which
figures, tables and benchmark files exist.

The workflow's target lists, the summary's inputs and the rule-times table all ask here,
so "does this run get the sampling experiments?" is decided in one place and the benchmark
TSVs that ``rule_times`` gathers are exactly the benchmarked jobs that ``all`` runs.
"""

from __future__ import annotations

from whatsreal.layout import FIGURES, TABLES
from whatsreal.rule_times import BENCHMARKED_RULES
from whatsreal.surveys import SURVEY_ORDER

__all__ = [
    "DEFAULT_METHOD",
    "ablated_runs",
    "benchmark_jobs",
    "generative_runs",
    "run_figures",
    "run_method",
    "run_rules",
    "summary_tables",
]

BASE_RULES: tuple[str, ...] = (
    "train",
    "export",
    "embed",
    "umap",
    "outliers",
    "probes",
    "retrieval",
    "conditioning_gain",
)
"""Every run's rules."""

GENERATIVE_RULES: tuple[str, ...] = (
    "posterior_samples",
    "counterfactuals",
    "spatial_structure",
    "calibration",
    "zero_shot",
    "noise_model",
)
"""The sampling experiments, for ``experiments.generative_runs`` only (they cost the most)."""

DATASET_BENCHMARKS: tuple[str, ...] = ("random_init_embeddings", "cross_predict", "comparison")
"""Benchmarked dataset-level rules besides simulate and preprocess."""


DEFAULT_METHOD = "flow_matching"
"""A run's method when its config has no ``method`` key: the paper's flow-matching model."""


def run_method(run_config: dict) -> str:
    """The method a run trains: its (overlay-applied) config's ``method``, flow matching without one."""
    return str(run_config.get("method") or DEFAULT_METHOD)


def synthetic(config: dict) -> bool:
    """True on the simulated sky, whose truth table adds the truth-metric rules."""
    return config["dataset"]["source"] == "synthetic"


def generative_runs(config: dict) -> list[str]:
    """Runs that get the sampling experiments (``experiments.generative_runs``; null = all)."""
    runs = list(config["runs"])
    chosen = config["experiments"]["generative_runs"]
    return runs if chosen is None else [r for r in chosen if r in runs]


def ablated_runs(config: dict) -> list[str]:
    """The run compared with ``experiments.ablation.reference``, when both are configured."""
    ablation = config["experiments"]["ablation"]
    runs = list(config["runs"])
    return [ablation["ablated"]] if ablation["ablated"] in runs and ablation["reference"] in runs else []


def run_rules(config: dict, run: str) -> list[str]:
    """The per-run rules ``all`` runs for ``run``, in pipeline order."""
    rules = list(BASE_RULES)
    if run in ablated_runs(config):
        rules.append("ablation")
    if run in generative_runs(config):
        rules += GENERATIVE_RULES
        if synthetic(config):
            rules.append("truth_counterfactuals")
    if synthetic(config):
        rules.append("truth_metrics")
    return rules


def run_figures(config: dict, run: str) -> list[str]:
    """Names (:data:`whatsreal.layout.FIGURES`) of the figures ``all`` draws for ``run``."""
    rules = set(run_rules(config, run))
    return [name for name, rule in FIGURES.items() if rule in rules]


def summary_tables(config: dict, run: str) -> list[str]:
    """The run's tables ``summary.md`` reads: every CSV of its rules but the per-object truth
    tables that only feed truth_metrics."""
    rules = set(run_rules(config, run))
    feeders = {"truth_outliers.csv", "truth_probes.csv", "truth_counterfactuals.csv"}
    return [name for name, rule in TABLES.items() if rule in rules and name.endswith(".csv") and name not in feeders]


def benchmark_jobs(config: dict) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcard values) of every benchmarked job ``all`` runs for ``config``."""
    jobs: list[tuple[str, dict[str, str]]] = [("simulate", {})] if synthetic(config) else []
    jobs += [("preprocess", {"survey": s}) for s in SURVEY_ORDER]
    jobs += [(rule, {}) for rule in DATASET_BENCHMARKS]
    for run in config["runs"]:
        for rule in run_rules(config, run):
            if rule not in BENCHMARKED_RULES:
                continue
            if "direction" in BENCHMARKED_RULES[rule]:
                jobs += [(rule, {"run": run, "direction": d}) for d in SURVEY_ORDER]
            else:
                jobs.append((rule, {"run": run}))
    return jobs
