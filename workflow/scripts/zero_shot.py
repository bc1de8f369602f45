"""Snakemake entry point: zero-shot ellipticity transfer (logic in whatsreal.experiments.zero_shot)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.zero_shot import run_zero_shot

run_zero_shot(
    sm.config["experiments"]["zero_shot"],
    data=sm.params.data_dir,
    posterior=sm.input.posterior,
    truth=sm.input.truth[0] if sm.input.truth else None,
    figure=sm.output.figure,
    table=sm.output.table,
    baselines_cfg=sm.config["experiments"]["baselines"],
    bands=sm.config["preprocess"]["bands"],
    encoder=sm.config["model"]["encoder"],
)
