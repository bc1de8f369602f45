# Data stages. The synthetic sky is written in the Multimodal Universe layout, so
# every later stage reads it exactly as it reads real MMU downloads.


rule simulate:
    output:
        **{s: directory(DATA.raw(s)) for s in REGISTRY},
        truth=DATA.truth,
        stars=DATA.stars,
    log:
        DATA.log("simulate"),
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
            DATA.sky_figure,
            caption="../report/sky.rst",
            category="Synthetic sky",
        ),
    log:
        DATA.log("sky_figure"),
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
            hsc=DATA.catalog("hsc"),
            legacysurvey=DATA.catalog("legacysurvey"),
            pairs=DATA.pairs,
        log:
            DATA.log("crossmatched_catalogs"),
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
            DATA.catalog("{survey}"),
        log:
            DATA.log("catalog_{survey}"),
        wildcard_constraints:
            survey="|".join(REGISTRY),
        params:
            settings=settings("catalog"),
        conda:
            "../envs/whatsreal.yaml"
        script:
            "../scripts/catalog.py"


    rule crossmatch:
        input:
            hsc=DATA.catalog("hsc"),
            legacysurvey=DATA.catalog("legacysurvey"),
        output:
            DATA.pairs,
        log:
            DATA.log("crossmatch"),
        threads: 2
        params:
            settings=settings("crossmatch"),
        conda:
            "../envs/whatsreal.yaml"
        script:
            "../scripts/crossmatch.py"


rule groups:
    # N-way matching: every survey's catalogue merged into galaxies seen by 1..N surveys
    # (whatsreal.data.groups). A pre-matched source's pairs are its two-survey groups.
    input:
        **(
            {"pairs": DATA.pairs}
            if SOURCE == "crossmatched_parquet"
            else {s: DATA.catalog(s) for s in REGISTRY}
        ),
    output:
        DATA.groups,
    log:
        DATA.log("groups"),
    threads: 1
    params:
        settings=settings("groups"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/groups.py"


if PROVABGS:

    rule provabgs_targets:
        # Table 5's spectroscopic targets (z, log M*, sSFR, t_age, log Z) from MMU's PROVABGS
        # catalogue, matched to each pair's Legacy position; NaN where DESI took no spectrum.
        input:
            root=PROVABGS,
            pairs=DATA.pairs,
            catalog=DATA.catalog("legacysurvey"),
        output:
            DATA.provabgs,
        log:
            DATA.log("provabgs_targets"),
        params:
            settings=settings("provabgs_targets"),
        conda:
            "../envs/whatsreal.yaml"
        script:
            "../scripts/provabgs_targets.py"


rule split:
    input:
        DATA.pairs,
    output:
        DATA.split,
    log:
        DATA.log("split"),
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
        images=DATA.images("{survey}"),
        meta=DATA.meta("{survey}"),
    log:
        DATA.log("preprocess_{survey}"),
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
        DATA.neighbours("{survey}", "{mode}"),
    log:
        DATA.log("neighbours_{survey}_{mode}"),
    wildcard_constraints:
        survey="hsc|legacysurvey",
        mode="spatial|random",
    threads: 2
    # Above `train`'s 10: a graph takes seconds and unlocks a training. Below it, a local run
    # with `--set-threads train=1` starts `main` on one core while the random graphs wait
    # for both, and the two trainings then run one after the other.
    priority: 20
    params:
        settings=lambda wildcards: settings(f"neighbours_{wildcards.mode}"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/neighbours.py"


rule lens_catalog:
    # aux.lens_catalog.local, when set, is read instead of VizieR: declared, so a new file reruns it.
    input:
        [config["aux"]["lens_catalog"]["local"]] if config["aux"]["lens_catalog"]["local"] else [],
    output:
        config["aux"]["lens_catalog"]["path"],
    log:
        DATA.log("lens_catalog"),
    params:
        settings=settings("lens_catalog"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/lens_catalog.py"


rule triplet_figure:
    input:
        lambda wildcards: DATA.run_data_files(wildcards.mode),
    output:
        report(
            DATA.triplet_figure("{mode}"),
            caption="../report/triplets.rst",
            category="Training data",
        ),
    log:
        DATA.log("triplet_figure_{mode}"),
    wildcard_constraints:
        mode="spatial|random",
    params:
        data_dir=lambda wildcards, input: str(DATA.root),
        settings=settings("triplet_figure"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/plot_triplets.py"


# N-way training data (runs with train.data: groups): the galaxies of groups.parquet seen by
# two or more registry surveys, every survey's images (zeros where unseen) and neighbour
# graphs, under nway/ with the pair files' names (whatsreal.layout, DatasetLayout.nway).
rule nway_rows:
    input:
        groups=DATA.groups,
        pairs=DATA.pairs,
        split=DATA.split,
    output:
        rows=DATA.nway.pairs,
        split=DATA.nway.split,
    log:
        DATA.log("nway_rows"),
    params:
        settings=settings("nway_rows"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/nway_rows.py"


rule nway_preprocess:
    input:
        unpack(nway_preprocess_inputs),
    output:
        images=DATA.nway.images("{survey}"),
        meta=DATA.nway.meta("{survey}"),
    log:
        DATA.log("nway_preprocess_{survey}"),
    wildcard_constraints:
        survey="|".join(REGISTRY),
    threads: 4
    resources:
        mem_mb=4000,
    params:
        settings=settings("nway_preprocess"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/preprocess.py"


rule nway_neighbours:
    input:
        unpack(nway_neighbours_inputs),
    output:
        DATA.nway.neighbours("{survey}", "{mode}"),
    log:
        DATA.log("nway_neighbours_{survey}_{mode}"),
    wildcard_constraints:
        survey="|".join(REGISTRY),
        mode="spatial|random",
    threads: 2
    params:
        settings=lambda wildcards: settings(f"nway_neighbours_{wildcards.mode}"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/neighbours.py"
