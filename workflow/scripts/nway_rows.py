"""Snakemake entry point: the N-way training rows and their split (logic in whatsreal.data.stages)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.data.stages import run_nway_rows

run_nway_rows(sm.input.groups, sm.input.pairs, sm.input.split, sm.config["split"], sm.output.rows, sm.output.split)
