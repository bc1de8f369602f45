"""Snakemake entry point: summary.md, paper numbers beside ours (logic in whatsreal.experiments.summary)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.summary import write_summary
from whatsreal.rule_times import read_rule_times, rule_times_section

rule_times = {"Rule times (Snakemake benchmarks)": rule_times_section(read_rule_times(sm.input.rule_times))}
write_summary(
    sm.config,
    sm.params.results,
    sm.params.runs,
    sm.output.summary,
    extra_sections=rule_times,
    comparison=sm.input.comparison,
    criteria_out=sm.output.criteria,
)
