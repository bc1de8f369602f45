"""Snakemake entry point: N-way matching of every survey's catalogue (logic in whatsreal.data.groups)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.data.stages import run_groups, run_groups_from_pairs

if "pairs" in sm.input.keys():
    run_groups_from_pairs(sm.input.pairs, sm.output[0])
else:
    run_groups(dict(sm.input.items()), sm.config["crossmatch"]["radius_arcsec"], sm.output[0])
