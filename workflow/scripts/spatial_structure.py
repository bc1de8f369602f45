"""Snakemake entry point: Fig 8, power spectra and autocorrelation (logic in whatsreal.experiments.spectra)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.spectra import run_spatial_structure

run_spatial_structure(list(sm.input.posterior), figure=sm.output.figure, table=sm.output.table)
