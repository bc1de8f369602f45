"""Snakemake entry point: simulate the synthetic sky (logic in whatsreal.sim.sky)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log = log_to_file(sm.log[0])

from pathlib import Path

from whatsreal.sim.sky import simulate_sky

# The MMU root holding every registry survey's shard directory (the rule's per-survey outputs).
raw_dir = Path(sm.output.hsc).parent
report = simulate_sky(sm.config, raw_dir, sm.output.truth, threads=sm.threads, stars=sm.output.stars)
for survey, n in report.n_selected.items():
    log.info("%s: %d objects, %.1f%% with >=5 neighbours within 3'", survey, n, 100 * report.neighbour_fraction[survey])
log.info(
    "%d galaxies in both hsc and legacysurvey; %d stamps rendered in %.1f s (%.0f stamps/s)",
    report.n_overlap,
    report.stamps,
    report.render_seconds,
    report.stamps / report.render_seconds,
)
