"""Snakemake entry point: the conditioning gain of a trained run (logic in whatsreal.experiments.conditioning_gain)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.config import SCHEMA_PATH, run_config
from whatsreal.experiments.conditioning_gain import run_conditioning_gain

# The run's config (its overlay on the rest): the checkpoint is checked against its model and
# preprocess sections, which a run overlay may change (e.g. a smaller UNet).
run_conditioning_gain(
    run_config(sm.config, sm.wildcards.run, SCHEMA_PATH),
    model=sm.input.model,
    data=sm.params.data_dir,
    metrics=sm.input.metrics,
    figure=sm.output.figure,
    table=sm.output.table,
    truth=sm.input.truth[0] if sm.input.truth else None,
    sensitivity=sm.output.sensitivity,
    sensitivity_by_t=sm.output.sensitivity_by_t,
)
