"""Snakemake entry point: Fig 4 / Table 5, MLP probes with bootstrap CIs (logic in whatsreal.experiments.probes)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.bootstrap import bootstrap_config
from whatsreal.experiments.probe_design import resolve_design
from whatsreal.experiments.probes import run_probes
from whatsreal.surveys import SURVEY_ORDER

# The rule lists the meta files in SURVEY_ORDER.
run_probes(
    sm.config["experiments"]["probes"],
    design=resolve_design(sm.config),
    bands=sm.config["preprocess"]["bands"],
    bootstrap=bootstrap_config(sm.config),
    embeddings=sm.input.embeddings,
    random_init=None,  # the random-init, AION and pixel-floor columns: baseline_probes' predictions
    cross_predict=sm.input.cross_predict,
    meta=dict(zip(SURVEY_ORDER, sm.input.meta, strict=True)),
    truth=sm.input.truth[0] if sm.input.truth else None,
    aion=None,
    figure=sm.output.figure,
    table=sm.output.table,
    truth_table=sm.output.truth,
    predictions=sm.output.predictions,
    provabgs=sm.input.provabgs[0] if sm.input.provabgs else None,
    alternative_table=sm.output.alternative,
    alternative_cross_predict=sm.input.cross_predict_alternative,
    alternative_predictions=sm.output.alternative_predictions,
    baseline=sm.input.baseline,
    alternative_baseline=sm.input.baseline_alternative,
)
