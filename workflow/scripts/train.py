"""Snakemake entry point: train (or resume) one run (logic in whatsreal.train.run)."""

from whatsreal.config import run_config
from whatsreal.logs import log_to_file
from whatsreal.train.run import train

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])
cfg = run_config(sm.config, sm.wildcards.run, sm.params.schema)
train(cfg, sm.params.data_dir, sm.params.run_dir, sm.output.model)
