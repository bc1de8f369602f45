"""Snakemake entry point: export embeddings of a trained run (logic in whatsreal.model.embed)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.device import compute_device
from whatsreal.layout import DatasetLayout
from whatsreal.methods import checkpoint_method
from whatsreal.model.embed import export_embeddings
from whatsreal.train.run import load_model

device = compute_device()
# The batch size is the workflow's (a speed setting), not the one stored in the checkpoint.
batch_size = sm.config["embed"]["batch_size"]
method = checkpoint_method(sm.input.model)  # None: flow matching
if method is not None:
    data = DatasetLayout(sm.params.data_dir)
    method.export(sm.input.model, data, sm.output.embeddings, sm.output.tokens, batch_size, device)
else:
    module, _ = load_model(sm.input.model)
    export_embeddings(module.model, sm.params.data_dir, sm.output.embeddings, sm.output.tokens, batch_size, device)
