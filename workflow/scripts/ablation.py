"""Snakemake entry point: the spatial-neighbour ablation and the neighbour-set probe.

Logic in whatsreal.experiments.ablation and whatsreal.experiments.neighbour_probe.
"""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.ablation import run_ablation
from whatsreal.experiments.bootstrap import bootstrap_config
from whatsreal.experiments.neighbour_probe import run_neighbour_probe
from whatsreal.surveys import SURVEY_ORDER

experiments_cfg = sm.config["experiments"]
bootstrap = bootstrap_config(sm.config)
# The rule lists the meta files in SURVEY_ORDER, the neighbour files in params.surveys' order.
neighbours = run_neighbour_probe(
    experiments_cfg["probes"],
    experiments_cfg["neighbour_probe"],
    bands=sm.config["preprocess"]["bands"],
    bootstrap=bootstrap,
    reference=sm.input.reference_embeddings,
    ablated=sm.input.ablated_embeddings,
    random_init=sm.input.random_init,
    neighbours=dict(zip(sm.params.surveys, sm.input.neighbours, strict=True)),
    meta=dict(zip(SURVEY_ORDER, sm.input.meta, strict=True)),
    truth=sm.input.truth[0] if sm.input.truth else None,
    table=sm.output.neighbour_table,
)
run_ablation(
    sm.input.reference,
    sm.input.ablated,
    reference_name=experiments_cfg["ablation"]["reference"],
    ablated_name=sm.wildcards.run,
    figure=sm.output.figure,
    table=sm.output.table,
    predictions=(sm.input.reference_predictions, sm.input.ablated_predictions),
    bootstrap=bootstrap,
    neighbour_table=neighbours,
)
# The same ablation under the alternative probe design (table only; the figure shows the primary one).
run_ablation(
    sm.input.reference_alternative,
    sm.input.ablated_alternative,
    reference_name=experiments_cfg["ablation"]["reference"],
    ablated_name=sm.wildcards.run,
    figure=None,
    table=sm.output.alternative,
    predictions=(sm.input.reference_alternative_predictions, sm.input.ablated_alternative_predictions),
    bootstrap=bootstrap,
)
