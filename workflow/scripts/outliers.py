"""Snakemake entry point: Fig 3, normalising-flow outliers (logic in whatsreal.experiments.outliers)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.outliers import run_outliers

run_outliers(
    sm.config["experiments"]["outliers"],
    embeddings=sm.input.embeddings,
    baseline=None,  # read from baseline_outliers' scores, fitted once per dataset
    baseline_scores=sm.input.baseline_scores,
    catalog=sm.input.catalog,
    meta=sm.input.meta,
    images=sm.input.images,
    truth=sm.input.truth[0] if sm.input.truth else None,
    figure=sm.output.figure,
    table=sm.output.table,
    truth_table=sm.output.truth,
    scores=sm.output.scores,
)
