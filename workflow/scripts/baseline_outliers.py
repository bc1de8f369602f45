"""Snakemake entry point: the baseline space's outlier flow, fitted once per dataset
(logic in whatsreal.experiments.outliers.run_baseline_outliers)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.outliers import run_baseline_outliers

run_baseline_outliers(
    sm.config["experiments"]["outliers"],
    baseline=sm.input.baseline,
    meta=sm.input.meta,
    scores=sm.output[0],
)
