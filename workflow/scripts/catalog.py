"""Snakemake entry point: per-survey catalogue from MMU shards (logic in whatsreal.data)."""

from whatsreal.data.stages import run_catalog
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])
run_catalog(sm.input.root, sm.wildcards.survey, sm.config, sm.output[0])
