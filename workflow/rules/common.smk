# Shared names, input functions and target lists for the rules (included first).

from whatsreal.layout import DatasetLayout
from whatsreal.methods import method_of, training_data_files, triplet_data
from whatsreal.plan import benchmark_jobs as plan_benchmark_jobs
from whatsreal.plan import generative_runs, run_figures, run_rules, summary_tables
from whatsreal.rule_settings import rule_settings
from whatsreal.rule_times import BENCHMARKED_RULES, benchmark_stem, ran_unmeasured
from whatsreal.surveys import SURVEY_ORDER, survey_registry, training_surveys
from whatsreal.train.layout import LAYOUT_RESOURCES, check_train_layout

MODES = ["spatial", "random"]
DATASET = config["dataset"]["name"]
SOURCE = config["dataset"]["source"]
RESULTS = f"results/{DATASET}"
# Every file name comes from the layout (whatsreal.layout): DATA is this dataset's, RUN the
# pattern of one trained run's (its model, embeddings, figures and tables; wildcard {run}).
DATA = DatasetLayout(RESULTS)
RUN = DATA.run("{run}")
DIRECTIONS = SURVEY_ORDER  # a direction is named by its anchor (target) survey
# Every survey of the registry (config `surveys`): simulated, catalogued and N-way matched
# (groups.parquet). Training and the experiments pair the first two (SURVEY_ORDER).
REGISTRY = tuple(survey_registry(config))
PROVABGS = config["aux"]["provabgs"]["path"]  # MMU's PROVABGS directory, or None: no spectroscopic targets
RUNS = list(config["runs"])
SCHEMA = str(SCHEMA_PATH)  # the package's schema (whatsreal/schemas), imported by the Snakefile
# Every run's overlay applied and validated now, before any job: a typo inside
# `runs.<run>` stops the workflow here, naming the run and the key.
RUN_CONFIGS = {run: run_config(config, run, SCHEMA) for run in RUNS}


# On a cluster these run where Snakemake runs, not as jobs: lens_catalog downloads from
# VizieR (compute nodes often have no internet); `all` and `summary` only gather.
localrules:
    all,
    lens_catalog,
    summary,


def profile_resources(rule):
    """``rule``'s task-layout resources (whatsreal.train.layout.LAYOUT_RESOURCES) as the
    profile (or --set-resources) sets them, as plain values.

    Snakemake keeps a string resource as an expression it evaluates per job; these values
    (numbers, ``gpu:h100:4``, ``'srun ...'``) need no job, so they are evaluated here. One
    that needs a job (it reads ``input``, say) is left out: the job-time check still applies."""
    values = {}
    for name, res in (workflow.resource_settings.overwrite_resources or {}).get(rule, {}).items():
        if name not in LAYOUT_RESOURCES:
            continue
        if hasattr(res, "is_evaluable"):
            try:
                if res.is_evaluable():
                    res = res.evaluate(rulename=rule, wildcards={}, input=[], attempt=1, threads=None, async_run=None)
                res = res.value
            except Exception:
                continue
        values[name] = res
    return values


# A SLURM profile whose task layout for `train` does not fit train.devices/num_nodes stops
# the workflow here, naming the keys, not after a wait in the GPU queue.
check_train_layout(profile_resources("train"), {run: c["train"] for run, c in RUN_CONFIGS.items()})


def settings(rule):
    """The config values ``rule``'s result depends on (whatsreal.rule_settings), as a param:
    Snakemake reruns the rule, and through its outputs everything downstream, exactly
    when one of them changes."""
    return rule_settings(config, rule)


def run_settings(rule):
    """``settings`` for a per-run rule: the values of the run's own config (its overlay applied)."""
    return lambda wildcards: rule_settings(RUN_CONFIGS[wildcards.run], rule)


def run_data(wildcards):
    """The data files a run's training reads (whatsreal.methods.training_data_files): for flow
    matching the images, metadata, split and the neighbour graph of the run's own mode
    (rebuilding the other graph leaves the run alone); for a cvae run the images, metadata,
    split and its property labels (truth.parquet on the synthetic sky, provabgs.parquet with
    aux.provabgs.path), no neighbour graph."""
    return training_data_files(RUN_CONFIGS[wildcards.run], DATA)


def pair_data():
    """Images, metadata and split: the inputs of every experiment that reads no neighbour graph."""
    return DATA.pair_files()


def spatial_data():
    """``pair_data`` plus the spatial neighbour graphs (the noise-model and gain experiments)."""
    return DATA.run_data_files("spatial")


def run_surveys(wildcards):
    """The surveys a run trains on, in its model's order (whatsreal.surveys.training_surveys)."""
    return list(training_surveys(RUN_CONFIGS[wildcards.run]))


def run_data_root(wildcards):
    """The root of the data a run trained on: the pairs' dataset, or nway/ with train.data: groups."""
    return str(triplet_data(RUN_CONFIGS[wildcards.run], DATA).root)


def run_spatial_data(wildcards):
    """The images, metadata, split and spatial neighbour graphs of the data a run trained on (the
    pairs, or nway/ with train.data: groups), of its training surveys: what the experiments that
    condition the decoder on real neighbour sets read."""
    run_cfg = RUN_CONFIGS[wildcards.run]
    return triplet_data(run_cfg, DATA).run_data_files("spatial", training_surveys(run_cfg))


def mmu_root(wildcards):
    """The directory of healpix=*/ shards for a survey: simulated or the user's download."""
    if SOURCE == "synthetic":
        return DATA.raw(wildcards.survey)
    return config["dataset"]["mmu"][wildcards.survey]


def preprocess_inputs(wildcards):
    inputs = {
        "catalog": DATA.catalog(wildcards.survey),
        "pairs": DATA.pairs,
        "split": DATA.split,
    }
    if SOURCE == "synthetic":
        inputs["truth"] = DATA.truth
    return inputs


def nway_preprocess_inputs(wildcards):
    """``preprocess_inputs`` for the N-way rows (nway/)."""
    inputs = {
        "catalog": DATA.catalog(wildcards.survey),
        "pairs": DATA.nway.pairs,
        "split": DATA.nway.split,
    }
    if SOURCE == "synthetic":
        inputs["truth"] = DATA.truth
    return inputs


def nway_neighbours_inputs(wildcards):
    """``neighbours_inputs`` for the N-way rows (nway/)."""
    inputs = {"pairs": DATA.nway.pairs, "catalog": DATA.catalog(wildcards.survey)}
    if wildcards.mode == "random":
        inputs["spatial"] = DATA.nway.neighbours(wildcards.survey, "spatial")
    return inputs


def neighbours_inputs(wildcards):
    inputs = {
        "pairs": DATA.pairs,
        "catalog": DATA.catalog(wildcards.survey),
    }
    if wildcards.mode == "random":
        inputs["spatial"] = DATA.neighbours(wildcards.survey, "spatial")
    return inputs


def data_targets():
    """The preprocessed dataset every model run reads, and the N-way match (groups.parquet) for users."""
    return DATA.pair_files() + [DATA.neighbours(s, m) for s in SURVEY_ORDER for m in MODES] + [DATA.groups]


def experiment_targets(run):
    """Every figure and table of one run (which ones: whatsreal.plan)."""
    layout = DATA.run(run)
    targets = [layout.figure(name) for name in run_figures(config, run)]
    if "truth_metrics" in run_rules(config, run):
        targets.append(layout.table("truth_metrics.csv"))
    return targets


def all_targets():
    """Everything `snakemake all` builds for the configured data source."""
    targets = []
    if SOURCE == "synthetic":
        targets += [DATA.truth, DATA.sky_figure]
    targets += data_targets()
    targets += [DATA.triplet_figure(mode) for mode in MODES]
    for run in RUNS:
        targets.append(DATA.run(run).embeddings)
        if "export" in run_rules(config, run):  # only flow-matching runs have a model to export (whatsreal.methods)
            targets.append(DATA.run(run).export.root)
        targets += experiment_targets(run)
    targets += [DATA.comparison, DATA.comparison_fewshot, DATA.comparison_figure]
    targets += [DATA.summary, DATA.criteria, DATA.effective_config]
    if SOURCE != "synthetic":  # real data: known lenses for the rare-object query
        targets.append(config["aux"]["lens_catalog"]["path"])
    return targets


# Input functions of the experiment and report rules.


def meta_files():
    return [DATA.meta(s) for s in SURVEY_ORDER]


def image_files():
    return [DATA.images(s) for s in SURVEY_ORDER]


def truth_file():
    """truth.parquet on the synthetic sky; nothing on real data."""
    return [DATA.truth] if SOURCE == "synthetic" else []


def aion_file():
    path = config["experiments"]["aion_embeddings"]
    return [path] if path else []


def provabgs_file():
    """provabgs.parquet (Table 5's spectroscopic targets) when aux.provabgs.path is set; else nothing."""
    return [DATA.provabgs] if PROVABGS else []


def lens_file():
    """Known lenses for the rare-object query: the truth table or the aux catalogue."""
    return truth_file() if SOURCE == "synthetic" else [config["aux"]["lens_catalog"]["path"]]


def posterior_files(wildcards):
    """A run's posterior samples of every direction."""
    return [DATA.run(wildcards.run).posterior(d) for d in DIRECTIONS]


def truth_metric_inputs(wildcards):
    run = DATA.run(wildcards.run)
    inputs = [run.table("truth_probes.csv"), run.table("truth_outliers.csv")]
    if wildcards.run in generative_runs(config):
        inputs.append(run.table("truth_counterfactuals.csv"))
    return inputs


def run_methods():
    """Each run's method (its config's `method`; flow matching without one), for the comparison."""
    return {run: method_of(RUN_CONFIGS[run]).name for run in RUNS}


def outlier_scored_runs():
    """Runs whose outliers rule scores every object (Fig 3's flows); the comparison ranks them too."""
    return [run for run in RUNS if "outliers" in run_rules(config, run)]


def comparison_benchmarks():
    """The benchmark TSVs the comparison reads its training costs from: every run's train job and the
    random-init features, except jobs that ran before benchmarks existed (declaring their missing
    TSVs would retrain them only to time them; their cost shows as unmeasured)."""
    jobs = [("train", {"run": run}) for run in RUNS] + [("random_init_embeddings", {})]
    return [DATA.benchmark(benchmark_stem(rule, wc)) for rule, wc in jobs if not ran_unmeasured(RESULTS, rule, wc)]


def summary_inputs(wildcards):
    """Every table summary.md reads, run by run (whatsreal.plan.summary_tables)."""
    return [DATA.run(run).table(name) for run in RUNS for name in summary_tables(config, run)]


# Benchmarks (whatsreal.rule_times): every heavy rule writes Snakemake's benchmark TSV,
# collected by the rule_times rule into rule_times.csv and summary.md.


def benchmark_file(rule):
    """``rule``'s benchmark TSV pattern, ``benchmarks/<rule>[_{<wildcard>}...].tsv`` (named as its
    log), for the rule's ``benchmark:``; the rules and their wildcards: BENCHMARKED_RULES."""
    return DATA.benchmark(benchmark_stem(rule, {w: f"{{{w}}}" for w in BENCHMARKED_RULES[rule]}))


def benchmark_jobs():
    """(rule, wildcard values) of every benchmarked job `all` builds (whatsreal.plan), so each
    TSV is declared as rule_times' input. Jobs that ran before benchmarks existed are not timed
    (whatsreal.rule_times.ran_unmeasured): declaring their missing TSVs would rerun them,
    training included, only to measure them."""
    return [(rule, wc) for rule, wc in plan_benchmark_jobs(config) if not ran_unmeasured(RESULTS, rule, wc)]


def benchmark_inputs(wildcards):
    """The TSV of every job of benchmark_jobs(), in its order."""
    return [DATA.benchmark(benchmark_stem(rule, wc)) for rule, wc in benchmark_jobs()]
