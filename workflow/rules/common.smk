# Shared names, input functions and target lists for the rules (included first).

from whatsreal.data.layout import pair_files, run_data_files
from whatsreal.rule_settings import rule_settings
from whatsreal.rule_times import BENCHMARKED_RULES, benchmark_stem, ran_unmeasured
from whatsreal.surveys import SURVEY_ORDER
from whatsreal.train.layout import LAYOUT_RESOURCES, check_train_layout

MODES = ["spatial", "random"]
DATASET = config["dataset"]["name"]
SOURCE = config["dataset"]["source"]
RESULTS = f"results/{DATASET}"
RUN_DIR = f"{RESULTS}/runs/{{run}}"  # one trained run's model, embeddings, figures and tables
PROVABGS = config["aux"]["provabgs"]["path"]  # MMU's PROVABGS directory, or None: no spectroscopic targets
RUNS = list(config["runs"])
SCHEMA = str(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
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
    """The data files a run's triplets read: images, metadata, split and the neighbour graph
    of the run's own mode (rebuilding the other graph leaves the run alone)."""
    mode = RUN_CONFIGS[wildcards.run]["neighbours"]["mode"]
    return [str(p) for p in run_data_files(RESULTS, mode)]


def pair_data():
    """Images, metadata and split: the inputs of every experiment that reads no neighbour graph."""
    return [str(p) for p in pair_files(RESULTS)]


def spatial_data():
    """``pair_data`` plus the spatial neighbour graphs (the noise-model and gain experiments)."""
    return [str(p) for p in run_data_files(RESULTS, "spatial")]


def mmu_root(wildcards):
    """The directory of healpix=*/ shards for a survey: simulated or the user's download."""
    if SOURCE == "synthetic":
        return f"{RESULTS}/raw/{wildcards.survey}"
    return config["dataset"]["mmu"][wildcards.survey]


def preprocess_inputs(wildcards):
    inputs = {
        "catalog": f"{RESULTS}/catalog_{wildcards.survey}.parquet",
        "pairs": f"{RESULTS}/pairs.parquet",
        "split": f"{RESULTS}/split.parquet",
    }
    if SOURCE == "synthetic":
        inputs["truth"] = f"{RESULTS}/raw/truth.parquet"
    return inputs


def neighbours_inputs(wildcards):
    inputs = {
        "pairs": f"{RESULTS}/pairs.parquet",
        "catalog": f"{RESULTS}/catalog_{wildcards.survey}.parquet",
    }
    if wildcards.mode == "random":
        inputs["spatial"] = f"{RESULTS}/neighbours_{wildcards.survey}_spatial.npz"
    return inputs


def data_targets():
    """The preprocessed dataset every model run reads."""
    return (
        [f"{RESULTS}/split.parquet"]
        + expand(f"{RESULTS}/images_{{survey}}.npy", survey=SURVEY_ORDER)
        + expand(f"{RESULTS}/meta_{{survey}}.parquet", survey=SURVEY_ORDER)
        + expand(f"{RESULTS}/neighbours_{{survey}}_{{mode}}.npz", survey=SURVEY_ORDER, mode=MODES)
    )


def generative_runs():
    """Runs that get the sampling experiments (``experiments.generative_runs``; null = all)."""
    chosen = config["experiments"]["generative_runs"]
    return RUNS if chosen is None else [r for r in chosen if r in RUNS]


def experiment_targets(run):
    """Every figure and table of one run."""
    d = RUN_DIR.format(run=run)
    targets = [
        f"{d}/figures/fig2_umap.png",
        f"{d}/figures/fig3_outliers.png",
        f"{d}/figures/fig4_probes.png",
        f"{d}/figures/fig5_retrieval.png",
        f"{d}/figures/conditioning_gain.png",
    ]
    if run in generative_runs():
        targets += [
            f"{d}/figures/fig6_counterfactuals.png",
            f"{d}/figures/fig7_noise_model.png",
            f"{d}/figures/fig8_spatial_structure.png",
            f"{d}/figures/fig9_calibration.png",
            f"{d}/figures/fig9_zero_shot.png",
        ]
    ablation = config["experiments"]["ablation"]
    if run == ablation["ablated"] and ablation["reference"] in RUNS:
        targets.append(f"{d}/figures/ablation_neighbours.png")
    if SOURCE == "synthetic":
        targets.append(f"{d}/tables/truth_metrics.csv")
    return targets


def all_targets():
    """Everything `snakemake all` builds for the configured data source."""
    targets = []
    if SOURCE == "synthetic":
        targets += [f"{RESULTS}/raw/truth.parquet", f"{RESULTS}/raw/sky.png"]
    targets += data_targets()
    targets += expand(f"{RESULTS}/triplets_{{mode}}.png", mode=MODES)
    targets += expand(f"{RUN_DIR}/embeddings.parquet", run=RUNS)
    for run in RUNS:
        targets += experiment_targets(run)
    targets.append(f"{RESULTS}/summary.md")
    targets.append(f"{RESULTS}/effective_config.yaml")
    if SOURCE != "synthetic":  # real data: known lenses for the rare-object query
        targets.append(config["aux"]["lens_catalog"]["path"])
    return targets


# Input functions of the experiment and report rules.


def meta_files():
    return expand(f"{RESULTS}/meta_{{survey}}.parquet", survey=SURVEY_ORDER)


def truth_file():
    """truth.parquet on the synthetic sky; nothing on real data."""
    return [f"{RESULTS}/raw/truth.parquet"] if SOURCE == "synthetic" else []


def aion_file():
    path = config["experiments"]["aion_embeddings"]
    return [path] if path else []


def provabgs_file():
    """provabgs.parquet (Table 5's spectroscopic targets) when aux.provabgs.path is set; else nothing."""
    return [f"{RESULTS}/provabgs.parquet"] if PROVABGS else []


def lens_file():
    """Known lenses for the rare-object query: the truth table or the aux catalogue."""
    return truth_file() if SOURCE == "synthetic" else [config["aux"]["lens_catalog"]["path"]]


def truth_metric_inputs(wildcards):
    inputs = [f"{RUN_DIR}/tables/truth_probes.csv", f"{RUN_DIR}/tables/truth_outliers.csv"]
    if wildcards.run in generative_runs():
        inputs.append(f"{RUN_DIR}/tables/truth_counterfactuals.csv")
    return [p.format(run=wildcards.run) for p in inputs]


def summary_inputs(wildcards):
    inputs = []
    for run in RUNS:
        d = f"{RUN_DIR.format(run=run)}/tables"
        inputs += [
            f"{d}/table5_probes.csv",
            f"{d}/table5_probes_alternative.csv",
            f"{d}/retrieval.csv",
            f"{d}/outliers.csv",
            f"{d}/conditioning_gain.csv",
        ]
        if run in generative_runs():
            inputs += [
                f"{d}/counterfactual_mse.csv",
                f"{d}/calibration.csv",
                f"{d}/zero_shot.csv",
                f"{d}/spatial_structure.csv",
                f"{d}/noise_model.csv",
                f"{d}/noise_model_slopes.csv",
            ]
        if SOURCE == "synthetic":
            inputs.append(f"{d}/truth_metrics.csv")
        ablation = config["experiments"]["ablation"]
        if run == ablation["ablated"] and ablation["reference"] in RUNS:
            inputs += [
                f"{d}/ablation_neighbours.csv",
                f"{d}/ablation_neighbours_alternative.csv",
                f"{d}/neighbour_probe.csv",
            ]
    return inputs


# Benchmarks (whatsreal.rule_times): every heavy rule writes Snakemake's benchmark TSV,
# collected by the rule_times rule into rule_times.csv and summary.md.


def benchmark_file(rule):
    """``rule``'s benchmark TSV pattern, ``benchmarks/<rule>[_{<wildcard>}...].tsv`` (named as its
    log), for the rule's ``benchmark:``; the rules and their wildcards: BENCHMARKED_RULES."""
    wildcards = {w: f"{{{w}}}" for w in BENCHMARKED_RULES[rule]}
    return f"{RESULTS}/benchmarks/{benchmark_stem(rule, wildcards)}.tsv"


def benchmark_jobs():
    """(rule, wildcard values) of every benchmarked job `all` builds for this config: the
    same jobs as all_targets(), so each TSV is declared as rule_times' input."""
    jobs = [("simulate", {})] if SOURCE == "synthetic" else []
    jobs += [("preprocess", {"survey": s}) for s in SURVEY_ORDER]
    jobs += [("random_init_embeddings", {}), ("cross_predict", {})]
    ablation = config["experiments"]["ablation"]
    for run in RUNS:
        jobs += [
            (rule, {"run": run}) for rule in ("train", "embed", "umap", "outliers", "probes", "conditioning_gain")
        ]
        if run == ablation["ablated"] and ablation["reference"] in RUNS:
            jobs.append(("ablation", {"run": run}))
        if run in generative_runs():
            jobs += [("posterior_samples", {"run": run, "direction": d}) for d in SURVEY_ORDER]
            jobs += [
                (rule, {"run": run})
                for rule in ("counterfactuals", "spatial_structure", "calibration", "zero_shot", "noise_model")
            ]
            if SOURCE == "synthetic":
                jobs.append(("truth_counterfactuals", {"run": run}))
    # Jobs that ran before benchmarks existed are not timed (whatsreal.rule_times.ran_unmeasured);
    # declaring their missing TSVs would rerun them, training included, only to measure them.
    return [(rule, wc) for rule, wc in jobs if not ran_unmeasured(RESULTS, rule, wc)]


def benchmark_inputs(wildcards):
    """The TSV of every job of benchmark_jobs(), in its order."""
    return [f"{RESULTS}/benchmarks/{benchmark_stem(rule, wc)}.tsv" for rule, wc in benchmark_jobs()]
