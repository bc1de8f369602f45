"""Snakemake entry point: export embeddings of a trained run (logic in whatsreal.model.embed)."""

import torch

from whatsreal.logs import log_to_file
from whatsreal.model.embed import export_embeddings
from whatsreal.train.run import load_model

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])
module, cfg = load_model(sm.input.model)
device = "cuda" if torch.cuda.is_available() else "cpu"
export_embeddings(module.model, sm.params.data_dir, sm.output[0], cfg["embed"]["batch_size"], device)
