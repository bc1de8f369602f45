"""Snakemake entry point: the cross-predict ResNet baseline (logic in whatsreal.experiments.baselines)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.baselines import run_cross_predict
from whatsreal.experiments.probe_design import resolve_design

run_cross_predict(
    sm.config["experiments"]["baselines"],
    sm.config["experiments"]["probes"],
    design=resolve_design(sm.config),
    encoder_cfg=sm.config["model"]["encoder"],
    bands=sm.config["preprocess"]["bands"],
    data=sm.params.data_dir,
    truth=sm.input.truth[0] if sm.input.truth else None,
    out=sm.output.table,
    alternative_out=sm.output.alternative,
)
