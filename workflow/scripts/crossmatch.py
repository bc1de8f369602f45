"""Snakemake entry point: one-to-one HSC x Legacy crossmatch (logic in whatsreal.data.crossmatch)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.data.stages import run_crossmatch

run_crossmatch(
    {"hsc": sm.input.hsc, "legacysurvey": sm.input.legacysurvey}, sm.config["crossmatch"]["radius_arcsec"], sm.output[0]
)
