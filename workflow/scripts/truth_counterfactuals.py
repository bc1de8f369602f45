"""Snakemake entry point: counterfactuals against the noiseless truth (logic in whatsreal.experiments.truth_images)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.truth_images import run_truth_counterfactuals
from whatsreal.surveys import SURVEY_ORDER

# The rule lists the meta files in SURVEY_ORDER.
run_truth_counterfactuals(
    sm.config,
    posterior=list(sm.input.posterior),
    meta=dict(zip(SURVEY_ORDER, sm.input.meta, strict=True)),
    truth=sm.input.truth,
    out=sm.output[0],
)
