"""Snakemake entry point: Fig 2, UMAP of both latent spaces (logic in whatsreal.experiments.umap_projection)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.umap_projection import run_umap

experiments_cfg = sm.config["experiments"]
run_umap(experiments_cfg["umap"], sm.input.embeddings, sm.output[0], k=int(experiments_cfg["retrieval"]["k"]))
