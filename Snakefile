# whatsreal: learning what is real in galaxy images (see README.md).
# Rules live in workflow/rules/*.smk; all logic lives in the whatsreal package.

from whatsreal.config import SCHEMA_PATH, run_config, validate_config, workflow_config_files


# The config is the schema defaults plus exactly the files named with --configfile; with
# none named, the demo's config/config.yaml alone (`python -m whatsreal.config show` prints
# the same merge). The demo file is never a base layer under a named one: a paper run must
# not inherit the demo's cut-down experiment settings.
if not workflow.overwrite_configfiles:
    for demo_file in workflow_config_files([]):
        workflow.configfile(demo_file)


# Validate and fill defaults before any rule is defined: a bad key stops the run here,
# with a message that names it.
validate_config(config, SCHEMA_PATH)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
