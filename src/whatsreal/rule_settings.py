"""Which config values each workflow rule's result depends on: what makes Snakemake rerun it.

Snakemake reruns a job when its inputs, code or *non-derived params* change. Each rule
passes ``rule_settings(config, "<rule>")`` as a param (the per-run rules with the run's own
config), so a changed value reruns exactly the rules that read it, and their downstream jobs
through their inputs. Anything a rule reads that does not change its result (worker counts,
chunk and inference batch sizes, progress bars, logging and checkpoint intervals) is left
out, so changing it reruns nothing. So is a key a newer whatsreal added to the schema while it
holds its default (whatsreal.settings_baseline): upgrading reruns nothing by itself.

The table lists dotted config prefixes; a rule depends on every value under them. Keep it
in step with what each step reads: tests/test_reruns.py runs the workflow and checks that
one changed setting per stage reruns exactly the expected jobs, and that every rule of the
workflow has an entry here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from whatsreal.config import SCHEMA_PATH, config_value
from whatsreal.methods import method_of
from whatsreal.settings_baseline import without_new_defaults

__all__ = ["METHOD_RULES", "RESULT_NEUTRAL", "RULE_SETTINGS", "WHOLE_CONFIG", "rule_settings", "settings_json"]

WHOLE_CONFIG = "*"
"""The prefix of a rule that writes the whole config: every value, result-neutral ones too."""

RULE_SETTINGS: dict[str, tuple[str, ...]] = {
    # data stages
    "simulate": ("simulation", "preprocess.crop", "surveys"),
    "sky_figure": ("simulation",),
    "catalog": ("preprocess.crop", "surveys"),
    "crossmatched_catalogs": (),
    "crossmatch": ("crossmatch",),
    "groups": ("crossmatch",),
    "split": ("split",),
    "preprocess": ("preprocess", "dataset.source"),
    "neighbours_spatial": ("neighbours.k", "neighbours.radius_arcmin"),
    "neighbours_random": ("neighbours.k", "neighbours.radius_arcmin", "neighbours.random_seed"),
    "lens_catalog": ("aux.lens_catalog",),
    "provabgs_targets": ("aux.provabgs", "crossmatch.radius_arcsec"),
    "triplet_figure": ("split.seed",),
    "nway_rows": ("split",),
    "nway_preprocess": ("preprocess", "dataset.source", "surveys"),
    "nway_neighbours_spatial": ("neighbours.k", "neighbours.radius_arcmin"),
    "nway_neighbours_random": ("neighbours.k", "neighbours.radius_arcmin", "neighbours.random_seed"),
    # training (per run: common.smk passes the run's own config, its overlay applied)
    "train": ("model", "train", "neighbours.mode", "preprocess"),
    "embed": (),
    "export": (),  # everything it writes comes from its inputs (the checkpoint and the metadata)
    # experiments
    "random_init_embeddings": ("model.encoder", "experiments.baselines", "preprocess.bands"),
    "cross_predict": (
        "model.encoder",
        "experiments.baselines",
        "experiments.probes",
        "preprocess.bands",
        "dataset.source",
    ),
    "umap": ("experiments.umap", "experiments.retrieval.k"),
    "outliers": ("experiments.outliers",),
    "baseline_outliers": ("experiments.outliers",),
    "probes": ("experiments.probes", "experiments.bootstrap", "preprocess.bands", "dataset.source"),
    "baseline_probes": ("experiments.probes", "preprocess.bands", "dataset.source"),
    "ablation": (
        "experiments.ablation",
        "experiments.bootstrap",
        "experiments.neighbour_probe",
        "experiments.probes",
        "preprocess.bands",
    ),
    "retrieval": ("experiments.retrieval", "crossmatch.radius_arcsec"),
    "posterior_samples": ("experiments.posterior", "sample"),
    "counterfactuals": ("experiments.counterfactuals", "sample", "preprocess.bands"),
    "truth_counterfactuals": ("preprocess", "dataset.source"),
    "zero_shot": (
        "experiments.zero_shot",
        "experiments.baselines",
        "model.encoder.name",
        "model.encoder.options",  # the ellipticity ResNet's architecture
        "preprocess.bands",
    ),
    "noise_model": ("experiments.noise_model", "sample", "preprocess.bands", "preprocess.crop"),
    "spatial_structure": (),
    "calibration": (),
    "truth_metrics": (),
    "conditioning_gain": ("experiments.conditioning_gain", "experiments.bootstrap"),
    "survey_probes": (
        "experiments.survey_probes",
        "experiments.retrieval.k",
        "experiments.bootstrap",
        "preprocess.bands",
        "dataset.source",
    ),
    "survey_ablation": ("experiments.bootstrap",),
    "survey_directions": ("experiments.survey_directions", "sample", "experiments.bootstrap", "preprocess.bands"),
    # every run, random init and raw pixels side by side; of the probe settings only the design (which
    # pairs, which folds): its probe is ridge, not Table 5's MLP, so the MLP's schedule reruns nothing here
    "comparison": (
        "experiments.comparison",
        "experiments.bootstrap",
        "experiments.retrieval.k",
        "experiments.probes.pairs",
        "experiments.probes.split",
        "experiments.probes.healpix_nside",
        "experiments.probes.n_folds",
        "experiments.probes.test_fraction",
        "experiments.probes.seed",
        "preprocess.bands",
        "dataset.source",
        "runs",
    ),
    "summary": ("experiments.ablation", "experiments.bootstrap", "dataset", "runs"),
    "rule_times": (),
    "effective_config": (WHOLE_CONFIG,),
}
"""Rule name -> the dotted config prefixes its result depends on. ``neighbours`` and
``nway_neighbours`` have one entry per mode, since only the random graph reads the seed."""

METHOD_RULES: frozenset[str] = frozenset({"train"})
"""Rules whose settings also hold the config sections their run's method reads (whatsreal.methods)."""

RESULT_NEUTRAL: frozenset[str] = frozenset(
    {
        "preprocess.chunk_size",
        "train.num_workers",
        "train.progress_bar",
        "train.tensorboard",
        "train.wandb",
        "train.log_every_steps",
        "train.checkpoint_every_steps",
        "embed.batch_size",
    }
)
"""Values that change how fast or how visibly a step runs, never what it writes."""


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    try:
        return config_value(config, dotted)
    except KeyError:
        raise KeyError(f"rule settings: config has no key '{dotted}'") from None


def _without_neutral(value: Any, prefix: str) -> Any:
    if not isinstance(value, dict):
        return value
    return {k: _without_neutral(v, f"{prefix}.{k}") for k, v in value.items() if f"{prefix}.{k}" not in RESULT_NEUTRAL}


def settings_json(config: dict[str, Any], prefixes: Iterable[str], *, schema_path: str | Path = SCHEMA_PATH) -> str:
    """The values under ``prefixes`` as canonical JSON (sorted keys): equal iff the values are.

    Keys added to the schema since the settings baseline are left out while they hold their
    default (whatsreal.settings_baseline), so a newer whatsreal reruns nothing by adding one."""
    if WHOLE_CONFIG in prefixes:
        return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    picked = {p: _without_neutral(_lookup(config, p), p) for p in prefixes if p not in RESULT_NEUTRAL}
    kept = without_new_defaults(config, picked, schema_path=schema_path)
    return json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)


def rule_settings(config: dict[str, Any], rule: str, *, schema_path: str | Path = SCHEMA_PATH) -> str:
    """The settings param of ``rule``: the config values its result depends on.

    Rule ``train`` also depends on what its method reads besides ``model`` and ``train``
    (:attr:`whatsreal.methods.Method.settings`: ``method`` and ``contrastive`` for the
    contrastive methods). Flow matching adds nothing, so a flow run's settings, and the
    provenance its checkpoints carry, do not depend on keys it never reads. ``schema_path``:
    the schema whose defaults a key added since the baseline is compared with."""
    if rule not in RULE_SETTINGS:
        raise KeyError(f"rule settings: no entry for rule '{rule}' in whatsreal.rule_settings.RULE_SETTINGS")
    prefixes = RULE_SETTINGS[rule]
    if rule in METHOD_RULES:
        prefixes = (*prefixes, *method_of(config).settings)
    return settings_json(config, prefixes, schema_path=schema_path)
