# Shared names and target lists for the rules (included first by the Snakefile).

SURVEYS = ["hsc", "legacysurvey"]
DATASET = config["dataset"]["name"]
SOURCE = config["dataset"]["source"]
RESULTS = f"results/{DATASET}"


def all_targets():
    """Everything `snakemake all` builds for the configured data source."""
    targets = []
    if SOURCE == "synthetic":
        targets += [f"{RESULTS}/raw/truth.parquet", f"{RESULTS}/raw/sky.png"]
    return targets
