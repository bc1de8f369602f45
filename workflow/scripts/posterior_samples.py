"""Snakemake entry point: posterior samples of held-out anchors (logic in whatsreal.experiments.posterior)."""

from whatsreal.experiments.posterior import run_posterior_samples
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])
run_posterior_samples(sm.config, sm.input.model, sm.params.data_dir, sm.wildcards.direction, sm.output[0])
