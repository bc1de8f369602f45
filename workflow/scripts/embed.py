"""Snakemake entry point: export embeddings of a trained run (logic in whatsreal.methods / whatsreal.model.embed)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.device import compute_device
from whatsreal.methods import export_checkpoint

# The batch size is the workflow's (a speed setting), not the one stored in the checkpoint;
# the latent spaces and the exporter are those of the checkpoint's method (whatsreal.methods).
export_checkpoint(
    sm.input.model,
    sm.params.data_dir,
    sm.output.embeddings,
    sm.output.tokens,
    sm.config["embed"]["batch_size"],
    compute_device(),
)
