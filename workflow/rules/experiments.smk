# The paper's experiments (section 4, appendix A.3-A.7): one rule per figure/table,
# each reading only what it needs, so any one reruns alone without retraining.
# Outputs: results/{dataset}/runs/{run}/{figures,tables,samples,fits}/ and the
# dataset-level baselines/ (the untrained and supervised ResNet references).
#
# Threads: rules whose work is one core's (probe MLPs pinned to one thread, UMAP with a
# fixed seed, the outlier flows, table assembly, and with the demo's small model the
# posterior samples, the noise model and the cross-predict ResNets; rule_times.csv's mean
# load <= ~100 % at 2 threads) declare 1 so a 2-core laptop runs two of them at once;
# Snakemake sets OMP_NUM_THREADS to it. The conditioning gain declares 2 (the SLURM
# profile's set-threads raises the heavy ones on a cluster).

ABLATION_REFERENCE = DATA.run(config["experiments"]["ablation"]["reference"])


wildcard_constraints:
    run="|".join(RUNS) if RUNS else "none",
    direction="hsc|legacysurvey",


rule random_init_embeddings:
    # Features of a frozen, randomly initialised encoder of the same architecture.
    input:
        pair_data(),
    output:
        DATA.random_init_embeddings,
    log:
        DATA.log("random_init_embeddings"),
    benchmark:
        benchmark_file("random_init_embeddings")
    params:
        data_dir=lambda wildcards, input: str(DATA.root),
        settings=settings("random_init_embeddings"),
    threads: 1
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
        table=DATA.cross_predict,
        alternative=DATA.cross_predict_alternative,
    log:
        DATA.log("cross_predict"),
    benchmark:
        benchmark_file("cross_predict")
    params:
        data_dir=lambda wildcards, input: str(DATA.root),
        settings=settings("cross_predict"),
    threads: 1
    resources:
        mem_mb=8000,
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/cross_predict.py"


rule umap:
    input:
        embeddings=RUN.embeddings,
    output:
        report(
            RUN.figure("fig2_umap"),
            caption="../report/fig2_umap.rst",
            category="4.1 Disentangled representations",
            subcategory="{run}",
        ),
    log:
        DATA.log("umap_{run}"),
    benchmark:
        benchmark_file("umap")
    threads: 1
    params:
        settings=settings("umap"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/umap.py"


rule baseline_outliers:
    # The baseline space's outlier flow (AION if given, else the random-init encoder) reads no
    # trained run: fitted once per dataset, its -log p read by every run's Fig 3.
    input:
        baseline=aion_file() or DATA.random_init_embeddings,
        meta=DATA.meta("hsc"),
    output:
        DATA.baseline_outlier_scores,
    log:
        DATA.log("baseline_outliers"),
    benchmark:
        benchmark_file("baseline_outliers")
    threads: 1
    params:
        settings=settings("baseline_outliers"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/baseline_outliers.py"


rule outliers:
    input:
        embeddings=RUN.embeddings,
        baseline_scores=DATA.baseline_outlier_scores,
        catalog=DATA.catalog("hsc"),
        meta=DATA.meta("hsc"),
        images=DATA.images("hsc"),
        truth=truth_file(),
    output:
        figure=report(
            RUN.figure("fig3_outliers"),
            caption="../report/fig3_outliers.rst",
            category="4.1 Disentangled representations",
            subcategory="{run}",
        ),
        table=RUN.table("outliers.csv"),
        truth=RUN.table("truth_outliers.csv"),
        scores=RUN.table("outlier_scores.parquet"),
    log:
        DATA.log("outliers_{run}"),
    benchmark:
        benchmark_file("outliers")
    threads: 1
    params:
        settings=settings("outliers"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/outliers.py"


rule baseline_probes:
    # Table 5's columns that read no trained run (random-init encoder, AION, the pixel-statistics
    # floor from the images), probed once per dataset under both designs; every run's table
    # reads these held-out predictions instead of refitting the same probes.
    input:
        random_init=DATA.random_init_embeddings,
        meta=meta_files(),
        images=image_files(),
        truth=truth_file(),
        aion=aion_file(),
        provabgs=provabgs_file(),
    output:
        predictions=DATA.baseline_probe_predictions,
        alternative_predictions=DATA.baseline_probe_predictions_alternative,
    log:
        DATA.log("baseline_probes"),
    benchmark:
        benchmark_file("baseline_probes")
    threads: 1
    params:
        settings=settings("baseline_probes"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/baseline_probes.py"


rule probes:
    # Table 5 with bootstrap CIs over the held-out pairs; the test predictions feed the
    # ablation's paired drops. The primary probe design (experiments.probes.pairs/split)
    # writes Table 5, the alternative one (held-out pairs + healpix folds, or the paper's
    # random split) table5_probes_alternative.csv; the meta files carry each pair's split and
    # ra/dec. The random-init, AION and pixel-floor columns come from baseline_probes.
    input:
        embeddings=RUN.embeddings,
        baseline=DATA.baseline_probe_predictions,
        baseline_alternative=DATA.baseline_probe_predictions_alternative,
        cross_predict=DATA.cross_predict,
        cross_predict_alternative=DATA.cross_predict_alternative,
        meta=meta_files(),
        truth=truth_file(),
        provabgs=provabgs_file(),
    output:
        figure=report(
            RUN.figure("fig4_probes"),
            caption="../report/fig4_probes.rst",
            category="4.1 Disentangled representations",
            subcategory="{run}",
        ),
        table=report(
            RUN.table("table5_probes.csv"),
            caption="../report/table5_probes.rst",
            category="4.1 Disentangled representations",
            subcategory="{run}",
        ),
        truth=RUN.table("truth_probes.csv"),
        predictions=RUN.table("probe_predictions.npz"),
        alternative=RUN.table("table5_probes_alternative.csv"),
        alternative_predictions=RUN.table("probe_predictions_alternative.npz"),
    log:
        DATA.log("probes_{run}"),
    benchmark:
        benchmark_file("probes")
    threads: 1
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
        reference=ABLATION_REFERENCE.table("table5_probes.csv"),
        ablated=RUN.table("table5_probes.csv"),
        reference_predictions=ABLATION_REFERENCE.table("probe_predictions.npz"),
        ablated_predictions=RUN.table("probe_predictions.npz"),
        reference_alternative=ABLATION_REFERENCE.table("table5_probes_alternative.csv"),
        ablated_alternative=RUN.table("table5_probes_alternative.csv"),
        reference_alternative_predictions=ABLATION_REFERENCE.table("probe_predictions_alternative.npz"),
        ablated_alternative_predictions=RUN.table("probe_predictions_alternative.npz"),
        reference_embeddings=ABLATION_REFERENCE.embeddings,
        ablated_embeddings=RUN.embeddings,
        random_init=DATA.random_init_embeddings,
        neighbours=[DATA.neighbours(s, "spatial") for s in SURVEY_ORDER],
        meta=meta_files(),
        truth=truth_file(),
    output:
        figure=report(
            RUN.figure("ablation_neighbours"),
            caption="../report/ablation_neighbours.rst",
            category="A.5 Spatial-neighbour ablation",
        ),
        table=RUN.table("ablation_neighbours.csv"),
        neighbour_table=RUN.table("neighbour_probe.csv"),
        alternative=RUN.table("ablation_neighbours_alternative.csv"),
    log:
        DATA.log("ablation_{run}"),
    benchmark:
        benchmark_file("ablation")
    params:
        surveys=list(SURVEY_ORDER),
        settings=settings("ablation"),
    threads: 1
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/ablation.py"


rule retrieval:
    input:
        embeddings=RUN.embeddings,
        images=image_files(),
        meta=meta_files(),
        lenses=lens_file(),
    output:
        figure=report(
            RUN.figure("fig5_retrieval"),
            caption="../report/fig5_retrieval.rst",
            category="4.1 Disentangled representations",
            subcategory="{run}",
        ),
        table=RUN.table("retrieval.csv"),
    log:
        DATA.log("retrieval_{run}"),
    params:
        data_dir=lambda wildcards, input: str(DATA.root),
        settings=settings("retrieval"),
    threads: 1
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/retrieval.py"


rule posterior_samples:
    # Held-out anchors of one direction, many posterior samples each: the shared
    # input of the counterfactual, spatial-structure, calibration and zero-shot rules.
    input:
        model=RUN.model,
        data=run_data,
    output:
        RUN.posterior("{direction}"),
    log:
        DATA.log("posterior_samples_{run}_{direction}"),
    benchmark:
        benchmark_file("posterior_samples")
    params:
        data_dir=lambda wildcards, input: str(DATA.root),
        settings=settings("posterior_samples"),
    threads: 1
    resources:
        mem_mb=8000,
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/posterior_samples.py"


rule counterfactuals:
    # The FITS are in the surveys' flux units with a WCS: the metadata gives positions and the
    # fitted normalisation that model pixels are turned back with.
    input:
        posterior=posterior_files,
        meta=meta_files(),
    output:
        figure=report(
            RUN.figure("fig6_counterfactuals"),
            caption="../report/fig6_counterfactuals.rst",
            category="4.2 Counterfactual generation",
            subcategory="{run}",
        ),
        table=RUN.table("counterfactual_mse.csv"),
        fits=[RUN.counterfactual_fits(d) for d in DIRECTIONS],
    log:
        DATA.log("counterfactuals_{run}"),
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
        posterior=posterior_files,
        meta=meta_files(),
        truth=DATA.truth,
    output:
        RUN.table("truth_counterfactuals.csv"),
    log:
        DATA.log("truth_counterfactuals_{run}"),
    benchmark:
        benchmark_file("truth_counterfactuals")
    threads: 1
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
        posterior=RUN.posterior("hsc"),
        data=pair_data(),
        truth=truth_file(),
    output:
        figure=report(
            RUN.figure("fig9_zero_shot"),
            caption="../report/fig9_zero_shot.rst",
            category="4.2 Counterfactual generation",
            subcategory="{run}",
        ),
        table=RUN.table("zero_shot.csv"),
    log:
        DATA.log("zero_shot_{run}"),
    benchmark:
        benchmark_file("zero_shot")
    params:
        data_dir=lambda wildcards, input: str(DATA.root),
        settings=settings("zero_shot"),
    threads: 1
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
        model=RUN.model,
        data=spatial_data(),
        catalog=[DATA.catalog(s) for s in SURVEY_ORDER],
        truth=truth_file(),
    output:
        figure=report(
            RUN.figure("fig7_noise_model"),
            caption="../report/fig7_noise_model.rst",
            category="4.2 Counterfactual generation",
            subcategory="{run}",
        ),
        table=RUN.table("noise_model.csv"),
        slopes=RUN.table("noise_model_slopes.csv"),
    log:
        DATA.log("noise_model_{run}"),
    benchmark:
        benchmark_file("noise_model")
    params:
        data_dir=lambda wildcards, input: str(DATA.root),
        surveys=list(SURVEY_ORDER),
        settings=settings("noise_model"),
    threads: 1
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/noise_model.py"


rule spatial_structure:
    input:
        posterior=posterior_files,
    output:
        figure=report(
            RUN.figure("fig8_spatial_structure"),
            caption="../report/fig8_spatial_structure.rst",
            category="A.6 Generative model evaluation",
            subcategory="{run}",
        ),
        table=RUN.table("spatial_structure.csv"),
    log:
        DATA.log("spatial_structure_{run}"),
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
        posterior=posterior_files,
    output:
        figure=report(
            RUN.figure("fig9_calibration"),
            caption="../report/fig9_calibration.rst",
            category="A.6 Generative model evaluation",
            subcategory="{run}",
        ),
        table=RUN.table("calibration.csv"),
    log:
        DATA.log("calibration_{run}"),
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
            RUN.table("truth_metrics.csv"),
            caption="../report/truth_metrics.rst",
            category="Truth metrics (synthetic sky)",
            subcategory="{run}",
        ),
    log:
        DATA.log("truth_metrics_{run}"),
    params:
        settings=settings("truth_metrics"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/truth_metrics.py"


rule conditioning_gain:
    # Does the decoder use both halves of its conditioning? Loss with the instrument (or
    # physics) half swapped for another held-out pair's, minus the true loss, with CIs.
    # On the synthetic sky, also what in each half it uses: the swaps' gains regressed on how
    # far the swapped set's true conditions (galaxy) are from the anchor's, overall and per bin
    # of flow time t (header only on real data). A run trained on N-way groups is scored on nway/, every survey an anchor.
    input:
        model=RUN.model,
        metrics=RUN.metrics,
        data=run_spatial_data,
        truth=truth_file(),
    output:
        figure=report(
            RUN.figure("conditioning_gain"),
            caption="../report/conditioning_gain.rst",
            category="Method diagnostics",
            subcategory="{run}",
        ),
        table=RUN.table("conditioning_gain.csv"),
        sensitivity=RUN.table("conditioning_sensitivity.csv"),
        sensitivity_by_t=RUN.table("conditioning_sensitivity_by_t.csv"),
    log:
        DATA.log("conditioning_gain_{run}"),
    benchmark:
        benchmark_file("conditioning_gain")
    params:
        data_dir=lambda wildcards, input: str(DATA.root),
        settings=settings("conditioning_gain"),
    threads: 2
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/conditioning_gain.py"


rule survey_probes:
    # Runs trained on N-way groups, and flow-matching runs on the synthetic sky (whatsreal.plan.
    # survey_probed): each survey's truth probed from both latents of every image it saw
    # (out-of-fold ridge, bootstrap CIs; synthetic sky only), and each galaxy's counterpart
    # retrieved across every ordered pair of surveys.
    input:
        model=RUN.model,
        data=run_spatial_data,
        truth=truth_file(),
    output:
        figure=report(
            RUN.figure("survey_probes"),
            caption="../report/survey_probes.rst",
            category="Per survey and direction",
            subcategory="{run}",
        ),
        table=RUN.table("survey_probes.csv"),
        retrieval=RUN.table("survey_retrieval.csv"),
        predictions=RUN.table("survey_probe_predictions.npz"),
    log:
        DATA.log("survey_probes_{run}"),
    benchmark:
        benchmark_file("survey_probes")
    params:
        data_dir=run_data_root,
        surveys=run_surveys,
        settings=run_settings("survey_probes"),
    threads: 1
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/survey_probes.py"


rule survey_ablation:
    # The spatial-neighbour ablation per survey, on every galaxy it saw (synthetic sky): each
    # survey's probe R^2 in this run beside the reference run's, the drop with a paired bootstrap interval.
    input:
        reference=ABLATION_REFERENCE.table("survey_probe_predictions.npz"),
        ablated=RUN.table("survey_probe_predictions.npz"),
    output:
        RUN.table("survey_ablation.csv"),
    log:
        DATA.log("survey_ablation_{run}"),
    params:
        settings=settings("survey_ablation"),
    threads: 1
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/survey_ablation.py"


rule survey_directions:
    # Runs trained on N-way groups: counterfactuals for every ordered pair of surveys (the
    # galaxy seen through the source survey only, drawn as the target survey sees it), their
    # MSE matrix and calibration per direction; on the synthetic sky also against the noiseless truth.
    input:
        model=RUN.model,
        data=run_spatial_data,
        truth=truth_file(),
    output:
        figure=report(
            RUN.figure("survey_directions"),
            caption="../report/survey_directions.rst",
            category="Per survey and direction",
            subcategory="{run}",
        ),
        table=RUN.table("survey_directions.csv"),
    log:
        DATA.log("survey_directions_{run}"),
    benchmark:
        benchmark_file("survey_directions")
    params:
        data_dir=lambda wildcards, input: str(DATA.nway.root),
        surveys=run_surveys,
        settings=run_settings("survey_directions"),
    threads: 1
    resources:
        mem_mb=8000,
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/survey_directions.py"


rule comparison:
    # Every run (whatever its `method`), the random-init encoder and raw pixels on the same pairs:
    # ridge truth probes (own and crossed latents), few-shot curves, outlier precision (kNN, Fig 3's
    # flows, the CVAE's anomaly score), counterpart retrieval and training cost
    # (whatsreal.experiments.comparison). The benchmark TSVs give the costs; the run's own files
    # are found through the layout (data_dir).
    input:
        embeddings=[DATA.run(run).embeddings for run in RUNS],
        metrics=[DATA.run(run).metrics for run in RUNS],
        outlier_scores=[DATA.run(run).table("outlier_scores.parquet") for run in outlier_scored_runs()],
        benchmarks=comparison_benchmarks(),
        random_init=DATA.random_init_embeddings,
        images=image_files(),
        meta=meta_files(),
        truth=truth_file(),
    output:
        table=report(
            DATA.comparison,
            caption="../report/comparison.rst",
            category="Methods compared",
        ),
        few_shot=DATA.comparison_fewshot,
        figure=report(
            DATA.comparison_figure,
            caption="../report/comparison.rst",
            category="Methods compared",
        ),
    log:
        DATA.log("comparison"),
    benchmark:
        benchmark_file("comparison")
    params:
        data_dir=lambda wildcards, input: str(DATA.root),
        runs=RUNS,
        # Derived (it takes `input`): a run's method is in `runs`, which the settings already track.
        methods=lambda wildcards, input: run_methods(),
        scored=lambda wildcards, input: outlier_scored_runs(),
        settings=settings("comparison"),
    threads: 1
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/comparison.py"
