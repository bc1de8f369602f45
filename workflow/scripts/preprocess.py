"""Snakemake entry point: preprocess one survey's paired cutouts (logic in whatsreal.data.preprocess)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.data.stages import run_preprocess

run_preprocess(
    sm.wildcards.survey,
    sm.input.catalog,
    sm.input.pairs,
    sm.input.split,
    sm.config["preprocess"],
    sm.output.images,
    sm.output.meta,
    truth_path=sm.input.get("truth"),
    workers=sm.threads,
)
