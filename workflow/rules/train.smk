# Training and embedding export, one job per named run (config `runs`).


rule train:
    input:
        data_targets(),
    output:
        model=f"{RESULTS}/runs/{{run}}/model.ckpt",
        metrics=f"{RESULTS}/runs/{{run}}/metrics.csv",
    log:
        f"{RESULTS}/logs/train_{{run}}.log",
    params:
        data_dir=lambda wildcards, input: str(Path(input[0]).parent),
        run_dir=lambda wildcards, output: str(Path(output.model).parent),
        schema=SCHEMA,
    threads: 4
    resources:
        mem_mb=16000,
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/train.py"


rule embed:
    input:
        model=rules.train.output.model,
        data=data_targets(),
    output:
        f"{RESULTS}/runs/{{run}}/embeddings.parquet",
    log:
        f"{RESULTS}/logs/embed_{{run}}.log",
    params:
        data_dir=lambda wildcards, input: str(Path(input.data[0]).parent),
    threads: 2
    conda:
        "../envs/whatsreal.yaml"
    script:
        "../scripts/embed.py"
