"""Snakemake entry point: the training-triplet figure (logic in whatsreal.plots.triplets)."""

from pathlib import Path

from whatsreal.logs import log_to_file
from whatsreal.plots.triplets import plot_triplets

sm = snakemake  # noqa: F821 - injected by Snakemake
log = log_to_file(sm.log[0])
plot_triplets(Path(sm.output[0]).parent, sm.output[0], mode=sm.wildcards.mode, seed=sm.config["split"]["seed"])
log.info("wrote %s", sm.output[0])
