# The summary table (paper numbers beside ours and the truth) that the HTML
# report opens with; the report itself is `snakemake --report` (see README).


# Wall time and memory of every heavy job (their `benchmark:` TSVs) in one table; it only
# gathers, so it runs where Snakemake runs.
localrules:
    rule_times,


rule rule_times:
    input:
        benchmark_inputs,
    output:
        report(
            DATA.rule_times,
            caption="../report/rule_times.rst",
            category="0 Summary",
        ),
    log:
        DATA.log("rule_times"),
    params:
        # (rule, wildcard values) of each input, in order; derived (it takes `input`), so it
        # is no rerun trigger of its own: the job list changes only with the inputs.
        jobs=lambda wildcards, input: benchmark_jobs(),
        settings=settings("rule_times"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/rule_times.py"


rule summary:
    input:
        tables=summary_inputs,
        rule_times=rules.rule_times.output[0],
        comparison=DATA.comparison,
    output:
        summary=report(
            DATA.summary,
            caption="../report/summary.rst",
            category="0 Summary",
        ),
        criteria=DATA.criteria,
    log:
        DATA.log("summary"),
    params:
        results=lambda wildcards, output: str(DATA.root),
        runs=RUNS,
        settings=settings("summary"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/summary.py"


# The exact config this dataset's results were built with (schema defaults + the named
# --configfile files), beside them: trivial, so it runs on the submitting host.
localrules:
    effective_config,


rule effective_config:
    output:
        DATA.effective_config,
    log:
        DATA.log("effective_config"),
    params:
        # Derived (it takes `output`), so not a rerun trigger: the same config named through
        # other files is the same config.
        sources=lambda wildcards, output: [str(p) for p in workflow.overwrite_configfiles],
        settings=settings("effective_config"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/effective_config.py"
