"""Snakemake entry point: Fig 8, power spectra and autocorrelation (logic in whatsreal.experiments.spectra)."""

from whatsreal.experiments.spectra import run_spatial_structure
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])
run_spatial_structure(list(sm.input.posterior), figure=sm.output.figure, table=sm.output.table)
