# The summary table (paper numbers beside ours and the truth) that the HTML
# report opens with; the report itself is `snakemake --report` (see README).


rule summary:
    input:
        summary_inputs,
    output:
        report(
            f"{RESULTS}/summary.md",
            caption="../report/summary.rst",
            category="0 Summary",
        ),
    log:
        f"{RESULTS}/logs/summary.log",
    params:
        results=lambda wildcards, output: str(Path(output[0]).parent),
        runs=RUNS,
        settings=settings("summary"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/summary.py"
