"""Snakemake entry point: the spatial-neighbour ablation per survey (whatsreal.experiments.survey_ablation)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.bootstrap import bootstrap_config
from whatsreal.experiments.survey_ablation import survey_ablation_table

survey_ablation_table(sm.input.reference, sm.input.ablated, bootstrap_config(sm.config), sm.output[0])
