"""Snakemake entry point: Fig 6, counterfactuals, MSE and FITS (logic in whatsreal.experiments.counterfactuals)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.counterfactuals import run_counterfactuals

run_counterfactuals(
    sm.config["experiments"]["counterfactuals"],
    sm.config["sample"],
    bands=sm.config["preprocess"]["bands"],
    posterior=list(sm.input.posterior),
    figure=sm.output.figure,
    table=sm.output.table,
    fits=list(sm.output.fits),
)
