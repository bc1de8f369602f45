"""Snakemake entry point: Fig 5, nearest-neighbour retrieval (logic in whatsreal.experiments.retrieval)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.retrieval import run_retrieval

run_retrieval(
    sm.config["experiments"]["retrieval"],
    embeddings=sm.input.embeddings,
    data=sm.params.data_dir,
    lenses=sm.input.lenses[0] if sm.input.lenses else None,
    figure=sm.output.figure,
    table=sm.output.table,
    radius_arcsec=float(sm.config["crossmatch"]["radius_arcsec"]),
)
