"""Snakemake entry point: catalogues and pairs from pre-matched parquet shards (whatsreal.data.crossmatched)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.data.stages import run_crossmatched_catalogs

run_crossmatched_catalogs(sm.input[0], {"hsc": sm.output.hsc, "legacysurvey": sm.output.legacysurvey}, sm.output.pairs)
