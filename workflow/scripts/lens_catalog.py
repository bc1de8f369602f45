"""Snakemake entry point: known strong lenses from VizieR or a local file (logic in whatsreal.data.lenses)."""

from whatsreal.data.lenses import fetch_lens_catalog
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])
lens_cfg = sm.config["aux"]["lens_catalog"]
fetch_lens_catalog(lens_cfg["vizier"], lens_cfg["local"], sm.output[0])
