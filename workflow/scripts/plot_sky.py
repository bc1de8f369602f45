"""Snakemake entry point: the synthetic-sky overview figure (logic in whatsreal.plots.sky)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log = log_to_file(sm.log[0])

from whatsreal.plots.sky import plot_sky
from whatsreal.surveys import SURVEY_ORDER

roots = {survey: sm.input[survey] for survey in SURVEY_ORDER}  # the rule's declared shard directories
plot_sky(roots, sm.input.truth, sm.output[0], seed=sm.config["simulation"]["seed"])
log.info("wrote %s", sm.output[0])
