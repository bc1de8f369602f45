"""Snakemake entry point: per-survey catalogue from MMU shards (logic in whatsreal.data)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.data.stages import run_catalog
from whatsreal.surveys import survey_registry

run_catalog(sm.input.root, sm.wildcards.survey, sm.config["preprocess"], sm.output[0], survey_registry(sm.config))
