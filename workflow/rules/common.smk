# Shared names, input functions and target lists for the rules (included first).

SURVEYS = ["hsc", "legacysurvey"]
MODES = ["spatial", "random"]
DATASET = config["dataset"]["name"]
SOURCE = config["dataset"]["source"]
RESULTS = f"results/{DATASET}"
RUNS = list(config["runs"])
SCHEMA = str(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")


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
        + expand(f"{RESULTS}/images_{{survey}}.npy", survey=SURVEYS)
        + expand(f"{RESULTS}/meta_{{survey}}.parquet", survey=SURVEYS)
        + expand(f"{RESULTS}/neighbours_{{survey}}_{{mode}}.npz", survey=SURVEYS, mode=MODES)
    )


def all_targets():
    """Everything `snakemake all` builds for the configured data source."""
    targets = []
    if SOURCE == "synthetic":
        targets += [f"{RESULTS}/raw/truth.parquet", f"{RESULTS}/raw/sky.png"]
    targets += data_targets()
    targets += expand(f"{RESULTS}/triplets_{{mode}}.png", mode=MODES)
    targets += expand(f"{RESULTS}/runs/{{run}}/embeddings.parquet", run=RUNS)
    if SOURCE != "synthetic":  # real data: known lenses for the rare-object query
        targets.append(config["aux"]["lens_catalog"]["path"])
    return targets
