"""Snakemake entry point: Fig 7, conditioning on neighbour sets at percentiles of the true sky sigma
and PSF FWHM, and artefact removal (logic in whatsreal.experiments.noise_model)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.noise_model import run_noise_model

# The whole config: the noise model reads the preprocess, sample and (synthetic sky) simulation sections too.
run_noise_model(
    sm.config,
    model=sm.input.model,
    data=sm.params.data_dir,
    catalogs=dict(zip(sm.params.surveys, sm.input.catalog, strict=True)),
    truth=sm.input.truth[0] if sm.input.truth else None,
    figure=sm.output.figure,
    table=sm.output.table,
    slopes=sm.output.slopes,
)
