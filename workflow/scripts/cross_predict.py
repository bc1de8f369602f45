"""Snakemake entry point: the cross-predict ResNet baseline (logic in whatsreal.experiments.baselines)."""

from whatsreal.experiments.baselines import run_cross_predict
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])
run_cross_predict(sm.config, sm.params.data_dir, sm.output[0])
