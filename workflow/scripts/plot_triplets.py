"""Snakemake entry point: the training-triplet figure (logic in whatsreal.plots.triplets)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log = log_to_file(sm.log[0])

from whatsreal.plots.triplets import plot_triplets

plot_triplets(sm.params.data_dir, sm.output[0], mode=sm.wildcards.mode, seed=sm.config["split"]["seed"])
log.info("wrote %s", sm.output[0])
