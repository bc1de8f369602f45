"""Snakemake entry point: truth metrics of one run (logic in whatsreal.experiments.truth_metrics)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.truth_metrics import collect_truth_metrics

collect_truth_metrics(list(sm.input), sm.output[0])
