"""Snakemake entry point: PROVABGS spectroscopic targets per pair (logic in whatsreal.data.provabgs)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.data.stages import run_provabgs_targets

run_provabgs_targets(
    sm.input.root, sm.input.pairs, sm.input.catalog, sm.config["crossmatch"]["radius_arcsec"], sm.output[0]
)
