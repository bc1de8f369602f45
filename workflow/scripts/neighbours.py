"""Snakemake entry point: spatial or random neighbour graph (logic in whatsreal.data.neighbours)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.data.stages import run_neighbours

run_neighbours(
    sm.wildcards.survey,
    sm.input.pairs,
    sm.input.catalog,
    sm.config["neighbours"],
    sm.wildcards.mode,
    sm.output[0],
    spatial_path=sm.input.get("spatial"),
)
