"""Snakemake entry point: the spatial-neighbour ablation (logic in whatsreal.experiments.ablation)."""

from whatsreal.experiments.ablation import run_ablation
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])
run_ablation(
    sm.input.reference,
    sm.input.ablated,
    reference_name=sm.config["experiments"]["ablation"]["reference"],
    ablated_name=sm.wildcards.run,
    figure=sm.output.figure,
    table=sm.output.table,
)
