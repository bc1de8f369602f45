"""Snakemake entry point: per-survey probes and cross-survey retrieval (whatsreal.experiments.survey_probes)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.config import SCHEMA_PATH, run_config
from whatsreal.device import compute_device
from whatsreal.experiments.survey_probes import run_survey_probes

run_survey_probes(
    run_config(sm.config, sm.wildcards.run, SCHEMA_PATH),
    model=sm.input.model,
    data=sm.params.data_dir,
    surveys=sm.params.surveys,
    truth=sm.input.truth[0] if sm.input.truth else None,
    probes_out=sm.output.table,
    retrieval_out=sm.output.retrieval,
    figure=sm.output.figure,
    device=compute_device(),
    predictions_out=sm.output.predictions,
)
