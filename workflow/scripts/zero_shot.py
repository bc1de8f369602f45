"""Snakemake entry point: zero-shot ellipticity transfer (logic in whatsreal.experiments.zero_shot)."""

from whatsreal.experiments.zero_shot import run_zero_shot
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])
run_zero_shot(
    sm.config,
    data_dir=sm.params.data_dir,
    posterior=sm.input.posterior,
    truth=sm.input.truth[0] if sm.input.truth else None,
    figure=sm.output.figure,
    table=sm.output.table,
)
