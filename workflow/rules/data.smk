# Data stages. The synthetic sky is written in the Multimodal Universe layout, so
# every later stage reads it exactly as it reads real MMU downloads.


rule simulate:
    output:
        hsc=directory(f"{RESULTS}/raw/hsc"),
        legacysurvey=directory(f"{RESULTS}/raw/legacysurvey"),
        truth=f"{RESULTS}/raw/truth.parquet",
    log:
        f"{RESULTS}/logs/simulate.log",
    threads: 8
    resources:
        mem_mb=4000,
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/simulate.py"


rule sky_figure:
    input:
        hsc=rules.simulate.output.hsc,
        legacysurvey=rules.simulate.output.legacysurvey,
        truth=rules.simulate.output.truth,
    output:
        report(
            f"{RESULTS}/raw/sky.png",
            caption="../report/sky.rst",
            category="Synthetic sky",
        ),
    log:
        f"{RESULTS}/logs/sky_figure.log",
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/plot_sky.py"
