rule evaluate:
    input:
        model="results/{corpus}/models/{model}/model.pt",
        data=DATA_JSON,
    output:
        "results/{corpus}/predictions/{model}.parquet",
    log:
        "results/logs/{corpus}/evaluate/{model}.log",
    benchmark:
        "results/benchmarks/{corpus}/evaluate/{model}.tsv"
    conda:
        "../../envs/rnnlens.yaml"
    threads: RES["train_threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        streams=EVAL["streams"],
        warmup=EVAL["warmup"],
        corpus=corpus_digest,
        code=fingerprint("evaluate"),
    shell:
        "python -m rnnlens evaluate --model {input.model} --data {input.data} --out {output}"
        " --model-id {wildcards.model} --streams {params.streams} --warmup {params.warmup}"
        " --threads {threads} > {log} 2>&1"
