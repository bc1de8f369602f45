# Data stages. The synthetic sky is written in the Multimodal Universe layout, so
# every later stage reads it exactly as it reads real MMU downloads.


rule simulate:
    output:
        hsc=directory(f"{RESULTS}/raw/hsc"),
        legacysurvey=directory(f"{RESULTS}/raw/legacysurvey"),
        truth=f"{RESULTS}/raw/truth.parquet",
    log:
        f"{RESULTS}/logs/simulate.log",
    benchmark:
        benchmark_file("simulate")
    threads: 8
    resources:
        mem_mb=4000,
    params:
        settings=settings("simulate"),
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
    params:
        settings=settings("sky_figure"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/plot_sky.py"


if SOURCE == "crossmatched_parquet":

    rule crossmatched_catalogs:
        # The shards are already matched: catalogues and pairs come straight from them.
        input:
            config["dataset"]["crossmatched_parquet"],
        output:
            hsc=f"{RESULTS}/catalog_hsc.parquet",
            legacysurvey=f"{RESULTS}/catalog_legacysurvey.parquet",
            pairs=f"{RESULTS}/pairs.parquet",
        log:
            f"{RESULTS}/logs/crossmatched_catalogs.log",
        params:
            settings=settings("crossmatched_catalogs"),
        conda:
            "../envs/whatsreal.yaml"
        script:
            "../scripts/crossmatched_catalogs.py"

else:

    rule catalog:
        input:
            root=mmu_root,
        output:
            f"{RESULTS}/catalog_{{survey}}.parquet",
        log:
            f"{RESULTS}/logs/catalog_{{survey}}.log",
        wildcard_constraints:
            survey="hsc|legacysurvey",
        params:
            settings=settings("catalog"),
        conda:
            "../envs/whatsreal.yaml"
        script:
            "../scripts/catalog.py"


    rule crossmatch:
        input:
            hsc=f"{RESULTS}/catalog_hsc.parquet",
            legacysurvey=f"{RESULTS}/catalog_legacysurvey.parquet",
        output:
            f"{RESULTS}/pairs.parquet",
        log:
            f"{RESULTS}/logs/crossmatch.log",
        threads: 2
        params:
            settings=settings("crossmatch"),
        conda:
            "../envs/whatsreal.yaml"
        script:
            "../scripts/crossmatch.py"


if PROVABGS:

    rule provabgs_targets:
        # Table 5's spectroscopic targets (z, log M*, sSFR, t_age, log Z) from MMU's PROVABGS
        # catalogue, matched to each pair's Legacy position; NaN where DESI took no spectrum.
        input:
            root=PROVABGS,
            pairs=f"{RESULTS}/pairs.parquet",
            catalog=f"{RESULTS}/catalog_legacysurvey.parquet",
        output:
            f"{RESULTS}/provabgs.parquet",
        log:
            f"{RESULTS}/logs/provabgs_targets.log",
        params:
            settings=settings("provabgs_targets"),
        conda:
            "../envs/whatsreal.yaml"
        script:
            "../scripts/provabgs_targets.py"


rule split:
    input:
        f"{RESULTS}/pairs.parquet",
    output:
        f"{RESULTS}/split.parquet",
    log:
        f"{RESULTS}/logs/split.log",
    params:
        settings=settings("split"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/split.py"


rule preprocess:
    input:
        unpack(preprocess_inputs),
    output:
        images=f"{RESULTS}/images_{{survey}}.npy",
        meta=f"{RESULTS}/meta_{{survey}}.parquet",
    log:
        f"{RESULTS}/logs/preprocess_{{survey}}.log",
    benchmark:
        benchmark_file("preprocess")
    wildcard_constraints:
        survey="hsc|legacysurvey",
    threads: 4
    resources:
        mem_mb=4000,
    params:
        settings=settings("preprocess"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/preprocess.py"


rule neighbours:
    input:
        unpack(neighbours_inputs),
    output:
        f"{RESULTS}/neighbours_{{survey}}_{{mode}}.npz",
    log:
        f"{RESULTS}/logs/neighbours_{{survey}}_{{mode}}.log",
    wildcard_constraints:
        survey="hsc|legacysurvey",
        mode="spatial|random",
    threads: 2
    params:
        settings=lambda wildcards: settings(f"neighbours_{wildcards.mode}"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/neighbours.py"


rule lens_catalog:
    output:
        config["aux"]["lens_catalog"]["path"],
    log:
        f"{RESULTS}/logs/lens_catalog.log",
    params:
        settings=settings("lens_catalog"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/lens_catalog.py"


rule triplet_figure:
    input:
        lambda wildcards: [str(p) for p in run_data_files(RESULTS, wildcards.mode)],
    output:
        report(
            f"{RESULTS}/triplets_{{mode}}.png",
            caption="../report/triplets.rst",
            category="Training data",
        ),
    log:
        f"{RESULTS}/logs/triplet_figure_{{mode}}.log",
    wildcard_constraints:
        mode="spatial|random",
    params:
        settings=settings("triplet_figure"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/plot_triplets.py"
