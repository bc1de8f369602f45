"""Snakemake entry point: a run as a self-contained model directory (logic in whatsreal.export)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.export import export_model
from whatsreal.surveys import SURVEY_ORDER

# meta_files() lists the surveys' metadata in SURVEY_ORDER.
meta = dict(zip(SURVEY_ORDER, sm.input.meta, strict=True))
export_model(sm.input.model, meta, sm.output[0], run=sm.wildcards.run)
