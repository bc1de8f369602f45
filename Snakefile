# whatsreal: learning what is real in galaxy images (see README.md).
# Rules live in workflow/rules/*.smk; all logic lives in the whatsreal package.

from pathlib import Path

from whatsreal.config import run_config, validate_config


configfile: Path(workflow.basedir) / "config" / "config.yaml"


# Validate and fill defaults before any rule is defined: a bad key stops the run here,
# with a message that names it.
validate_config(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
