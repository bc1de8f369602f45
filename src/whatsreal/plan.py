"""What ``snakemake all`` builds for a config: which rules run for each run, and so which
figures, tables and benchmark files exist.

The workflow's target lists, the summary's inputs and the rule-times table all ask here,
so "does this run get the sampling experiments?" is decided in one place and the benchmark
TSVs that ``rule_times`` gathers are exactly the benchmarked jobs that ``all`` runs.
"""

from __future__ import annotations

from whatsreal.layout import FIGURES, TABLES
from whatsreal.methods import run_method
from whatsreal.rule_times import BENCHMARKED_RULES
from whatsreal.surveys import SURVEY_ORDER

__all__ = [
    "ablated_runs",
    "benchmark_jobs",
    "generative_runs",
    "nway_trained",
    "run_figures",
    "run_rules",
    "summary_tables",
    "survey_probed",
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

SURVEY_RULES: tuple[str, ...] = ("survey_probes",)
"""Per-survey probes (out-of-fold ridge on every galaxy each survey saw) and retrieval across
surveys: every run trained on N-way groups (``train.data: groups``), and on the synthetic sky
every flow-matching run trained on pairs (:func:`survey_probed`)."""

NWAY_GENERATIVE_RULES: tuple[str, ...] = ("survey_directions",)
"""N-way runs that get the sampling experiments: counterfactuals for every ordered pair of surveys."""

DATASET_BENCHMARKS: tuple[str, ...] = ("random_init_embeddings", "cross_predict", "comparison")
"""Benchmarked dataset-level rules besides simulate and preprocess."""
RUN_INDEPENDENT_BASELINES: dict[str, str] = {"baseline_probes": "probes", "baseline_outliers": "outliers"}
"""Dataset-level rules fitting a per-run rule's run-independent part once -> that per-run rule:
they run (and are benchmarked) when at least one run gets the per-run rule."""


def synthetic(config: dict) -> bool:
    """True on the simulated sky, whose truth table adds the truth-metric rules."""
    return config["dataset"]["source"] == "synthetic"


def generative_runs(config: dict) -> list[str]:
    """Runs that get the sampling experiments (``experiments.generative_runs``; null = all): only
    runs whose method has the flow-matching decoder (whatsreal.methods) can sample."""
    runs = [r for r in config["runs"] if run_method(config, r).generative]
    chosen = config["experiments"]["generative_runs"]
    return runs if chosen is None else [r for r in chosen if r in runs]


def nway_trained(config: dict, run: str) -> bool:
    """True when ``run`` trains on the N-way groups (its overlay's ``train.data``, else the config's)."""
    overlay = (config.get("runs", {}).get(run) or {}).get("train", {})
    return overlay.get("data", config.get("train", {}).get("data", "pairs")) == "groups"


def survey_probed(config: dict, run: str) -> bool:
    """True when ``run`` gets the per-survey probes (:data:`SURVEY_RULES`).

    A run trained on N-way groups always does: it is the only place its third survey is scored,
    and on real data its retrieval still runs. A flow-matching run trained on pairs does on the
    synthetic sky: there the linear probes over all galaxies give the intervals tight enough to
    see the spatial-neighbour ablation, which Table 5's MLP on the held-out pairs (a tenth of the
    galaxies) leaves about 0.2 wide. The other methods' runs are scored by the comparison."""
    if nway_trained(config, run):
        return True
    return synthetic(config) and run_method(config, run).generative


def _probed(config: dict, run: str) -> bool:
    return "probes" in _method_rules(config, run)


def ablated_runs(config: dict) -> list[str]:
    """The run compared with ``experiments.ablation.reference``, when both are configured and
    both get the probe tables the comparison reads."""
    ablation = config["experiments"]["ablation"]
    runs = list(config["runs"])
    ablated, reference = ablation["ablated"], ablation["reference"]
    if ablated in runs and reference in runs and _probed(config, ablated) and _probed(config, reference):
        return [ablated]
    return []


def _method_rules(config: dict, run: str) -> tuple[str, ...]:
    """The rules the run's method supports (every rule for flow matching)."""
    method = run_method(config, run)
    return BASE_RULES if method.rules is None else method.rules


def run_rules(config: dict, run: str) -> list[str]:
    """The per-run rules ``all`` runs for ``run``, in pipeline order.

    A run whose method has no flow-matching decoder (whatsreal.methods) gets only the rules of
    its method: no export, conditioning gain or sampling experiments; its truth metrics need
    the probes and outliers tables."""
    rules = [r for r in BASE_RULES if r in _method_rules(config, run)]
    nway = nway_trained(config, run)
    if run in ablated_runs(config):
        rules.append("ablation")
        reference = config["experiments"]["ablation"]["reference"]
        same_data = nway == nway_trained(config, reference)  # the paired drop needs the same galaxies
        if synthetic(config) and same_data and survey_probed(config, run) and survey_probed(config, reference):
            rules.append("survey_ablation")
    if survey_probed(config, run):
        rules += SURVEY_RULES
    if run in generative_runs(config):
        rules += GENERATIVE_RULES
        if synthetic(config):
            rules.append("truth_counterfactuals")
        if nway:
            rules += NWAY_GENERATIVE_RULES
    if synthetic(config) and {"probes", "outliers"} <= set(rules):
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
    per_run = {rule for run in config["runs"] for rule in run_rules(config, run)}
    jobs += [(rule, {}) for rule, user in RUN_INDEPENDENT_BASELINES.items() if user in per_run]
    for run in config["runs"]:
        for rule in run_rules(config, run):
            if rule not in BENCHMARKED_RULES:
                continue
            if "direction" in BENCHMARKED_RULES[rule]:
                jobs += [(rule, {"run": run, "direction": d}) for d in SURVEY_ORDER]
            else:
                jobs.append((rule, {"run": run}))
    return jobs
