"""Snakemake entry point: one-to-one HSC x Legacy crossmatch (logic in whatsreal.data.crossmatch)."""

from whatsreal.data.stages import run_crossmatch
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])
run_crossmatch({"hsc": sm.input.hsc, "legacysurvey": sm.input.legacysurvey}, sm.config, sm.output[0])
