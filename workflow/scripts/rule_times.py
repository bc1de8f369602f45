"""Snakemake entry point: rule_times.csv from the heavy jobs' benchmark TSVs (logic in whatsreal.rule_times)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.rule_times import BenchmarkJob, write_rule_times

# params.jobs is aligned with the inputs: (rule, wildcard values) of each benchmark TSV.
jobs = [BenchmarkJob(rule, dict(wcs), path) for (rule, wcs), path in zip(sm.params.jobs, sm.input, strict=True)]
write_rule_times(jobs, sm.output[0])
