"""Snakemake entry point: Table 5's run-independent columns (random init, AION, pixel floor), probed once
per dataset under both designs (logic in whatsreal.experiments.probes.run_baseline_probes)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.probe_design import resolve_design
from whatsreal.experiments.probes import run_baseline_probes
from whatsreal.surveys import SURVEY_ORDER

# The rule lists the meta and image files in SURVEY_ORDER.
run_baseline_probes(
    sm.config["experiments"]["probes"],
    design=resolve_design(sm.config),
    bands=sm.config["preprocess"]["bands"],
    random_init=sm.input.random_init,
    meta=dict(zip(SURVEY_ORDER, sm.input.meta, strict=True)),
    truth=sm.input.truth[0] if sm.input.truth else None,
    aion=sm.input.aion[0] if sm.input.aion else None,
    images=dict(zip(SURVEY_ORDER, sm.input.images, strict=True)),
    predictions=sm.output.predictions,
    alternative_predictions=sm.output.alternative_predictions,
    provabgs=sm.input.provabgs[0] if sm.input.provabgs else None,
)
