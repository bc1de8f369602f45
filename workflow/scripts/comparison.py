"""Snakemake entry point: every method side by side (logic in whatsreal.experiments.comparison)."""

# The log first: a failure anywhere below, imports included, must leave its traceback there.
from whatsreal.logs import log_to_file

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to_file(sm.log[0])

from whatsreal.experiments.comparison import ComparisonSettings, RunFiles, run_comparison
from whatsreal.layout import DatasetLayout
from whatsreal.rule_times import benchmark_stem
from whatsreal.surveys import SURVEY_ORDER

data = DatasetLayout(sm.params.data_dir)
# The rule lists the image and meta files in SURVEY_ORDER; the runs' files come from the layout.
runs = [RunFiles.of_layout(data, run, sm.params.methods[run], scored=run in sm.params.scored) for run in sm.params.runs]
random_init_benchmark = data.benchmark(benchmark_stem("random_init_embeddings", {}))
run_comparison(
    runs,
    random_init=sm.input.random_init,
    images=dict(zip(SURVEY_ORDER, sm.input.images, strict=True)),
    meta=dict(zip(SURVEY_ORDER, sm.input.meta, strict=True)),
    truth=sm.input.truth[0] if sm.input.truth else None,
    settings=ComparisonSettings.from_config(sm.config),
    outputs=(sm.output.table, sm.output.few_shot, sm.output.figure),
    random_init_benchmark=random_init_benchmark if random_init_benchmark.exists() else None,
)
