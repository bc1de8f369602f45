"""Snakemake entry point: the synthetic-sky overview figure (logic in whatsreal.plots.sky)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log = log_to_file(sm.log[0])

from pathlib import Path

from whatsreal.plots.sky import plot_sky

plot_sky(Path(sm.input.truth).parent, sm.input.truth, sm.output[0], seed=sm.config["simulation"]["seed"])
log.info("wrote %s", sm.output[0])
