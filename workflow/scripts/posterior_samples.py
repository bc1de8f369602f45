"""Snakemake entry point: posterior samples of held-out anchors (logic in whatsreal.experiments.posterior)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.posterior import run_posterior_samples

run_posterior_samples(
    sm.config["experiments"]["posterior"],
    sm.config["sample"],
    model=sm.input.model,
    data=sm.params.data_dir,
    direction=sm.wildcards.direction,
    out=sm.output[0],
)
