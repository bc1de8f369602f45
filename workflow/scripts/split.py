"""Snakemake entry point: the seeded train/val split by pair (logic in whatsreal.data.split)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.data.stages import run_split

run_split(sm.input[0], sm.config["split"], sm.output[0])
