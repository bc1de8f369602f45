"""Snakemake entry point: known strong lenses from VizieR or a local file (logic in whatsreal.data.lenses)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.data.lenses import fetch_lens_catalog

# The local file is the rule's declared input (aux.lens_catalog.local), when set.
local = sm.input[0] if len(sm.input) else None
fetch_lens_catalog(sm.config["aux"]["lens_catalog"]["vizier"], local, sm.output[0])
