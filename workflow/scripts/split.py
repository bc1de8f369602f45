"""Snakemake entry point: the seeded train/val split by pair (logic in whatsreal.data.split)."""

from whatsreal.data.stages import run_split
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])
run_split(sm.input[0], sm.config, sm.output[0])
