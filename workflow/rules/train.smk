# Training and embedding export, one job per named run (config `runs`).

import json
import sys


rule train:
    # One process per device: on SLURM the profile's `mpi` resource ("srun
    # --cpus-per-task=N", with tasks_per_node = GPUs) starts them and Lightning's DDP takes
    # their ranks from SLURM; locally `mpi` is empty and Lightning starts any further
    # device processes itself. SIGUSR1/SIGTERM save last.ckpt and exit 75; a rerun (or
    # Snakemake's --retries) resumes at that step.
    input:
        run_data,
    output:
        model=RUN.model,
        metrics=RUN.metrics,
    log:
        DATA.log("train_{run}"),
    benchmark:
        benchmark_file("train")
    params:
        # `python`: the interpreter running Snakemake, whose environment has whatsreal even
        # when not activated; under --sdm conda/apptainer/env-modules, that environment's.
        python=lambda wildcards, output: "python" if workflow.deployment_settings.deployment_method else sys.executable,
        # The whole config, as script rules see it in `snakemake.config`. Both lambdas take
        # `output`, which makes them derived parameters, not rerun triggers: as for the
        # script rules, a changed figure setting or interpreter path must not retrain.
        config=lambda wildcards, output: json.dumps(config),
        data_dir=lambda wildcards, input: str(DATA.root),
        run_dir=lambda wildcards, output: str(DATA.run(wildcards.run).root),
        schema=lambda wildcards, output: SCHEMA,
        # What the trained model depends on (the run's model, train, preprocess and
        # neighbour-mode values): a change retrains; worker counts, logging and
        # checkpoint intervals do not (whatsreal.rule_settings).
        settings=run_settings("train"),
    threads: 4
    # Trainings first: each takes every local core, and the experiments they unlock pack
    # two to a 2-core machine afterwards instead of trickling out one at a time between
    # trainings (make run: README, "Speed"). No effect on a cluster's queue.
    priority: 10
    resources:
        mem_mb=16000,
        mpi="",
    conda:
        "../envs/whatsreal.yaml"
    shell:
        "{resources.mpi} {params.python} -m whatsreal.train --run {wildcards.run:q}"
        " --config-json {params.config:q} --schema {params.schema:q} --data-dir {params.data_dir:q}"
        " --run-dir {params.run_dir:q} --model {output.model:q} --log {log:q}"


rule export:
    # The run as a self-contained model directory (whatsreal.export: config.json, safetensors
    # weights, the UNet in diffusers' layout), what `whatsreal.load` and the `whatsreal`
    # command read; the metadata files carry the fitted input normalisation.
    input:
        model=RUN.model,
        meta=meta_files(),
    output:
        directory(RUN.export.root),
    log:
        DATA.log("export_{run}"),
    params:
        settings=run_settings("export"),
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/export.py"


rule embed:
    input:
        model=rules.train.output.model,
        data=pair_data(),
    output:
        embeddings=RUN.embeddings,
        tokens=RUN.embeddings_tokens,
    log:
        DATA.log("embed_{run}"),
    benchmark:
        benchmark_file("embed")
    params:
        data_dir=lambda wildcards, input: str(DATA.root),
        settings=run_settings("embed"),
    threads: 1  # ~100 % load at 2 on the demo's model; the SLURM profile sets 8
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/embed.py"
