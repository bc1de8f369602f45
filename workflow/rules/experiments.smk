# The paper's experiments (section 4, appendix A.3-A.7): one rule per figure/table,
# each reading only what it needs, so any one reruns alone without retraining.
# Outputs: results/{dataset}/runs/{run}/{figures,tables,samples,fits}/ and the
# dataset-level baselines/ (the untrained and supervised ResNet references).

DIRECTIONS = SURVEY_ORDER  # a direction is named by its anchor (target) survey
ABLATION_REFERENCE_DIR = RUN_DIR.format(run=config["experiments"]["ablation"]["reference"])


wildcard_constraints:
    run="|".join(RUNS) if RUNS else "none",
    direction="hsc|legacysurvey",


rule random_init_embeddings:
    # Features of a frozen, randomly initialised encoder of the same architecture.
    input:
        pair_data(),
    output:
        f"{RESULTS}/baselines/random_init_embeddings.parquet",
    log:
        f"{RESULTS}/logs/random_init_embeddings.log",
    benchmark:
        benchmark_file("random_init_embeddings")
    params:
        data_dir=lambda wildcards, input: str(Path(input[0]).parent),
        settings=settings("random_init_embeddings"),
    threads: 2
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/random_init_embeddings.py"


rule cross_predict:
    # A ResNet trained from scratch to predict each survey's instrument properties
    # from the other survey's image; R^2 on the probes' held-out pairs, under the
    # primary probe design (table) and the alternative one (alternative).
    input:
        data=pair_data(),
        truth=truth_file(),
    output:
        table=f"{RESULTS}/baselines/cross_predict.csv",
        alternative=f"{RESULTS}/baselines/cross_predict_alternative.csv",
    log:
        f"{RESULTS}/logs/cross_predict.log",
    benchmark:
        benchmark_file("cross_predict")
    params:
        data_dir=lambda wildcards, input: str(Path(input.data[0]).parent),
        settings=settings("cross_predict"),
    threads: 2
    resources:
        mem_mb=8000,
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/cross_predict.py"


rule umap:
    input:
        embeddings=f"{RUN_DIR}/embeddings.parquet",
    output:
        report(
            f"{RUN_DIR}/figures/fig2_umap.png",
            caption="../report/fig2_umap.rst",
            category="4.1 Disentangled representations",
            subcategory="{run}",
        ),
    log:
        f"{RESULTS}/logs/umap_{{run}}.log",
    benchmark:
        benchmark_file("umap")
    threads: 2
    params:
        settings=settings("umap"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/umap.py"


rule outliers:
    input:
        embeddings=f"{RUN_DIR}/embeddings.parquet",
        baseline=aion_file() or f"{RESULTS}/baselines/random_init_embeddings.parquet",
        catalog=f"{RESULTS}/catalog_hsc.parquet",
        meta=f"{RESULTS}/meta_hsc.parquet",
        images=f"{RESULTS}/images_hsc.npy",
        truth=truth_file(),
    output:
        figure=report(
            f"{RUN_DIR}/figures/fig3_outliers.png",
            caption="../report/fig3_outliers.rst",
            category="4.1 Disentangled representations",
            subcategory="{run}",
        ),
        table=f"{RUN_DIR}/tables/outliers.csv",
        truth=f"{RUN_DIR}/tables/truth_outliers.csv",
    log:
        f"{RESULTS}/logs/outliers_{{run}}.log",
    benchmark:
        benchmark_file("outliers")
    threads: 2
    params:
        settings=settings("outliers"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/outliers.py"


rule probes:
    # Table 5 with bootstrap CIs over the held-out pairs; the images give the
    # pixel-statistics floor; the test predictions feed the ablation's paired drops.
    # The primary probe design (experiments.probes.pairs/split) writes Table 5, the
    # alternative one (held-out pairs + healpix folds, or the paper's random split)
    # table5_probes_alternative.csv; the meta files carry each pair's split and ra/dec.
    input:
        embeddings=f"{RUN_DIR}/embeddings.parquet",
        random_init=f"{RESULTS}/baselines/random_init_embeddings.parquet",
        cross_predict=f"{RESULTS}/baselines/cross_predict.csv",
        cross_predict_alternative=f"{RESULTS}/baselines/cross_predict_alternative.csv",
        meta=meta_files(),
        images=expand(f"{RESULTS}/images_{{survey}}.npy", survey=SURVEY_ORDER),
        truth=truth_file(),
        aion=aion_file(),
        provabgs=provabgs_file(),
    output:
        figure=report(
            f"{RUN_DIR}/figures/fig4_probes.png",
            caption="../report/fig4_probes.rst",
            category="4.1 Disentangled representations",
            subcategory="{run}",
        ),
        table=report(
            f"{RUN_DIR}/tables/table5_probes.csv",
            caption="../report/table5_probes.rst",
            category="4.1 Disentangled representations",
            subcategory="{run}",
        ),
        truth=f"{RUN_DIR}/tables/truth_probes.csv",
        predictions=f"{RUN_DIR}/tables/probe_predictions.npz",
        alternative=f"{RUN_DIR}/tables/table5_probes_alternative.csv",
        alternative_predictions=f"{RUN_DIR}/tables/probe_predictions_alternative.npz",
    log:
        f"{RESULTS}/logs/probes_{{run}}.log",
    benchmark:
        benchmark_file("probes")
    threads: 2
    params:
        settings=settings("probes"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/probes.py"


rule ablation:
    # The spatial-neighbour ablation: probe R^2 of this run beside the reference run,
    # paired-bootstrap drops, and the neighbour-set probe (each anchor's conditions from
    # its spatial neighbours' instrument latents, both runs' encoders, shuffled control).
    # The same ablation under the alternative probe design: ablation_neighbours_alternative.csv.
    input:
        reference=f"{ABLATION_REFERENCE_DIR}/tables/table5_probes.csv",
        ablated=f"{RUN_DIR}/tables/table5_probes.csv",
        reference_predictions=f"{ABLATION_REFERENCE_DIR}/tables/probe_predictions.npz",
        ablated_predictions=f"{RUN_DIR}/tables/probe_predictions.npz",
        reference_alternative=f"{ABLATION_REFERENCE_DIR}/tables/table5_probes_alternative.csv",
        ablated_alternative=f"{RUN_DIR}/tables/table5_probes_alternative.csv",
        reference_alternative_predictions=f"{ABLATION_REFERENCE_DIR}/tables/probe_predictions_alternative.npz",
        ablated_alternative_predictions=f"{RUN_DIR}/tables/probe_predictions_alternative.npz",
        reference_embeddings=f"{ABLATION_REFERENCE_DIR}/embeddings.parquet",
        ablated_embeddings=f"{RUN_DIR}/embeddings.parquet",
        random_init=f"{RESULTS}/baselines/random_init_embeddings.parquet",
        neighbours=expand(f"{RESULTS}/neighbours_{{survey}}_spatial.npz", survey=SURVEY_ORDER),
        meta=meta_files(),
        truth=truth_file(),
    output:
        figure=report(
            f"{RUN_DIR}/figures/ablation_neighbours.png",
            caption="../report/ablation_neighbours.rst",
            category="A.5 Spatial-neighbour ablation",
        ),
        table=f"{RUN_DIR}/tables/ablation_neighbours.csv",
        neighbour_table=f"{RUN_DIR}/tables/neighbour_probe.csv",
        alternative=f"{RUN_DIR}/tables/ablation_neighbours_alternative.csv",
    log:
        f"{RESULTS}/logs/ablation_{{run}}.log",
    benchmark:
        benchmark_file("ablation")
    params:
        surveys=list(SURVEY_ORDER),
        settings=settings("ablation"),
    threads: 2
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/ablation.py"


rule retrieval:
    input:
        embeddings=f"{RUN_DIR}/embeddings.parquet",
        images=expand(f"{RESULTS}/images_{{survey}}.npy", survey=SURVEY_ORDER),
        meta=meta_files(),
        lenses=lens_file(),
    output:
        figure=report(
            f"{RUN_DIR}/figures/fig5_retrieval.png",
            caption="../report/fig5_retrieval.rst",
            category="4.1 Disentangled representations",
            subcategory="{run}",
        ),
        table=f"{RUN_DIR}/tables/retrieval.csv",
    log:
        f"{RESULTS}/logs/retrieval_{{run}}.log",
    params:
        data_dir=lambda wildcards, input: str(Path(input.meta[0]).parent),
        settings=settings("retrieval"),
    threads: 2
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/retrieval.py"


rule posterior_samples:
    # Held-out anchors of one direction, many posterior samples each: the shared
    # input of the counterfactual, spatial-structure, calibration and zero-shot rules.
    input:
        model=f"{RUN_DIR}/model.ckpt",
        data=run_data,
    output:
        f"{RUN_DIR}/samples/posterior_{{direction}}.npz",
    log:
        f"{RESULTS}/logs/posterior_samples_{{run}}_{{direction}}.log",
    benchmark:
        benchmark_file("posterior_samples")
    params:
        data_dir=lambda wildcards, input: str(Path(input.data[0]).parent),
        settings=settings("posterior_samples"),
    threads: 2
    resources:
        mem_mb=8000,
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/posterior_samples.py"


rule counterfactuals:
    input:
        posterior=expand(f"{RUN_DIR}/samples/posterior_{{direction}}.npz", direction=DIRECTIONS, allow_missing=True),
        meta=meta_files(),
    output:
        figure=report(
            f"{RUN_DIR}/figures/fig6_counterfactuals.png",
            caption="../report/fig6_counterfactuals.rst",
            category="4.2 Counterfactual generation",
            subcategory="{run}",
        ),
        table=f"{RUN_DIR}/tables/counterfactual_mse.csv",
        fits=expand(f"{RUN_DIR}/fits/counterfactuals_{{direction}}.fits", direction=DIRECTIONS, allow_missing=True),
    log:
        f"{RESULTS}/logs/counterfactuals_{{run}}.log",
    benchmark:
        benchmark_file("counterfactuals")
    params:
        settings=settings("counterfactuals"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/counterfactuals.py"


rule truth_counterfactuals:
    # Synthetic sky only: posterior samples against the noiseless truth rendered
    # through the target instrument and preprocessed like the data.
    input:
        posterior=expand(f"{RUN_DIR}/samples/posterior_{{direction}}.npz", direction=DIRECTIONS, allow_missing=True),
        meta=meta_files(),
        truth=f"{RESULTS}/raw/truth.parquet",
    output:
        f"{RUN_DIR}/tables/truth_counterfactuals.csv",
    log:
        f"{RESULTS}/logs/truth_counterfactuals_{{run}}.log",
    benchmark:
        benchmark_file("truth_counterfactuals")
    threads: 2
    params:
        settings=settings("truth_counterfactuals"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/truth_counterfactuals.py"


rule zero_shot:
    # An ellipticity ResNet trained on real HSC images, applied to real held-out HSC
    # and to HSC counterfactuals generated from Legacy.
    input:
        posterior=f"{RUN_DIR}/samples/posterior_hsc.npz",
        data=pair_data(),
        truth=truth_file(),
    output:
        figure=report(
            f"{RUN_DIR}/figures/fig9_zero_shot.png",
            caption="../report/fig9_zero_shot.rst",
            category="4.2 Counterfactual generation",
            subcategory="{run}",
        ),
        table=f"{RUN_DIR}/tables/zero_shot.csv",
    log:
        f"{RESULTS}/logs/zero_shot_{{run}}.log",
    benchmark:
        benchmark_file("zero_shot")
    params:
        data_dir=lambda wildcards, input: str(Path(input.data[0]).parent),
        settings=settings("zero_shot"),
    threads: 2
    resources:
        mem_mb=8000,
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/zero_shot.py"


rule noise_model:
    # Fig 7: real spatial neighbour sets at percentiles of the true sky sigma and PSF
    # FWHM condition the decoder; log-log slopes of the generated noise and size against
    # them, beside the real images' slopes; and artefact removal.
    input:
        model=f"{RUN_DIR}/model.ckpt",
        data=spatial_data(),
        catalog=expand(f"{RESULTS}/catalog_{{survey}}.parquet", survey=SURVEY_ORDER),
        truth=truth_file(),
    output:
        figure=report(
            f"{RUN_DIR}/figures/fig7_noise_model.png",
            caption="../report/fig7_noise_model.rst",
            category="4.2 Counterfactual generation",
            subcategory="{run}",
        ),
        table=f"{RUN_DIR}/tables/noise_model.csv",
        slopes=f"{RUN_DIR}/tables/noise_model_slopes.csv",
    log:
        f"{RESULTS}/logs/noise_model_{{run}}.log",
    benchmark:
        benchmark_file("noise_model")
    params:
        data_dir=lambda wildcards, input: str(Path(input.data[0]).parent),
        surveys=list(SURVEY_ORDER),
        settings=settings("noise_model"),
    threads: 2
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/noise_model.py"


rule spatial_structure:
    input:
        posterior=expand(f"{RUN_DIR}/samples/posterior_{{direction}}.npz", direction=DIRECTIONS, allow_missing=True),
    output:
        figure=report(
            f"{RUN_DIR}/figures/fig8_spatial_structure.png",
            caption="../report/fig8_spatial_structure.rst",
            category="A.6 Generative model evaluation",
            subcategory="{run}",
        ),
        table=f"{RUN_DIR}/tables/spatial_structure.csv",
    log:
        f"{RESULTS}/logs/spatial_structure_{{run}}.log",
    benchmark:
        benchmark_file("spatial_structure")
    params:
        settings=settings("spatial_structure"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/spatial_structure.py"


rule calibration:
    input:
        posterior=expand(f"{RUN_DIR}/samples/posterior_{{direction}}.npz", direction=DIRECTIONS, allow_missing=True),
    output:
        figure=report(
            f"{RUN_DIR}/figures/fig9_calibration.png",
            caption="../report/fig9_calibration.rst",
            category="A.6 Generative model evaluation",
            subcategory="{run}",
        ),
        table=f"{RUN_DIR}/tables/calibration.csv",
    log:
        f"{RESULTS}/logs/calibration_{{run}}.log",
    benchmark:
        benchmark_file("calibration")
    params:
        settings=settings("calibration"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/calibration.py"


rule truth_metrics:
    input:
        truth_metric_inputs,
    output:
        report(
            f"{RUN_DIR}/tables/truth_metrics.csv",
            caption="../report/truth_metrics.rst",
            category="Truth metrics (synthetic sky)",
            subcategory="{run}",
        ),
    log:
        f"{RESULTS}/logs/truth_metrics_{{run}}.log",
    params:
        settings=settings("truth_metrics"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/truth_metrics.py"


rule conditioning_gain:
    # Does the decoder use both halves of its conditioning? Loss with the instrument (or
    # physics) half swapped for another held-out pair's, minus the true loss, with CIs.
    input:
        model=f"{RUN_DIR}/model.ckpt",
        metrics=f"{RUN_DIR}/metrics.csv",
        data=spatial_data(),
    output:
        figure=report(
            f"{RUN_DIR}/figures/conditioning_gain.png",
            caption="../report/conditioning_gain.rst",
            category="Method diagnostics",
            subcategory="{run}",
        ),
        table=f"{RUN_DIR}/tables/conditioning_gain.csv",
    log:
        f"{RESULTS}/logs/conditioning_gain_{{run}}.log",
    benchmark:
        benchmark_file("conditioning_gain")
    params:
        data_dir=lambda wildcards, input: str(Path(input.data[0]).parent),
        settings=settings("conditioning_gain"),
    threads: 2
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/conditioning_gain.py"
