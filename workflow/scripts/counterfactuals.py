"""Snakemake entry point: Fig 6, counterfactuals, MSE and FITS (logic in whatsreal.experiments.counterfactuals)."""

from whatsreal.experiments.counterfactuals import run_counterfactuals
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])
run_counterfactuals(
    sm.config,
    posterior=list(sm.input.posterior),
    figure=sm.output.figure,
    table=sm.output.table,
    fits=list(sm.output.fits),
)
