"""Snakemake entry point: Fig 6, counterfactuals, MSE and FITS (logic in whatsreal.experiments.counterfactuals)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.counterfactuals import run_counterfactuals
from whatsreal.surveys import SURVEY_ORDER

run_counterfactuals(
    sm.config["experiments"]["counterfactuals"],
    sm.config["sample"],
    preprocess_cfg=sm.config["preprocess"],
    posterior=list(sm.input.posterior),
    meta=dict(zip(SURVEY_ORDER, sm.input.meta, strict=True)),  # meta_files() is in SURVEY_ORDER
    figure=sm.output.figure,
    table=sm.output.table,
    fits=list(sm.output.fits),
)
