"""Snakemake entry point: write the effective config beside the results (whatsreal.config)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.config import write_effective_config

write_effective_config(sm.config, sm.params.sources, sm.output[0])
