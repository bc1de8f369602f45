"""Snakemake entry point: Fig 9 left, pixel-wise calibration (logic in whatsreal.experiments.calibration)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.calibration import run_calibration

run_calibration(list(sm.input.posterior), figure=sm.output.figure, table=sm.output.table)
