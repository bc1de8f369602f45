"""Snakemake entry point: truth metrics of one run (logic in whatsreal.experiments.truth_metrics)."""

from whatsreal.experiments.truth_metrics import collect_truth_metrics
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])
collect_truth_metrics(list(sm.input), sm.output[0])
