"""Snakemake entry point: known strong lenses from VizieR or a local file (logic in whatsreal.data.lenses)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.data.lenses import fetch_lens_catalog

lens_cfg = sm.config["aux"]["lens_catalog"]
fetch_lens_catalog(lens_cfg["vizier"], lens_cfg["local"], sm.output[0])
