"""Snakemake entry point: counterfactuals across every ordered pair of surveys (experiments.survey_directions)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.config import SCHEMA_PATH, run_config
from whatsreal.device import compute_device
from whatsreal.experiments.survey_directions import run_survey_directions

run_survey_directions(
    run_config(sm.config, sm.wildcards.run, SCHEMA_PATH),
    model=sm.input.model,
    data=sm.params.data_dir,
    surveys=sm.params.surveys,
    table=sm.output.table,
    figure=sm.output.figure,
    device=compute_device(),
    truth=sm.input.truth[0] if sm.input.truth else None,
)
