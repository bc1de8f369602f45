"""Snakemake entry point: catalogues and pairs from pre-matched parquet shards (whatsreal.data.crossmatched)."""

from whatsreal.data.stages import run_crossmatched_catalogs
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])
run_crossmatched_catalogs(sm.input[0], {"hsc": sm.output.hsc, "legacysurvey": sm.output.legacysurvey}, sm.output.pairs)
