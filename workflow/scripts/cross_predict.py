"""Snakemake entry point: the cross-predict ResNet baseline (logic in whatsreal.experiments.baselines)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.baselines import run_cross_predict

run_cross_predict(sm.config, sm.params.data_dir, sm.output.table, alternative_out=sm.output.alternative)
