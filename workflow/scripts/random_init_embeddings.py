"""Snakemake entry point: features of a frozen random-init encoder (logic in whatsreal.experiments.baselines)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.baselines import run_random_init_embeddings

run_random_init_embeddings(
    sm.config["model"]["encoder"],
    seed=sm.config["experiments"]["baselines"]["seed"],
    data=sm.params.data_dir,
    out=sm.output[0],
)
