"""Snakemake entry point: preprocess one survey's paired (or N-way) cutouts (logic in whatsreal.data.preprocess)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.data.stages import run_preprocess
from whatsreal.surveys import survey_registry

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
    zero_point=survey_registry(sm.config)[sm.wildcards.survey].zero_point,
)
