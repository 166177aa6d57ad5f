# The explorer's store of one model; settings and helpers in explore_common.smk, the `explore` target in the
# Snakefile.


rule explore_store:
    input:
        model="results/{corpus}/models/{model}/model.pt",
        data=DATA_JSON,
        predictions="results/{corpus}/predictions/{model}.parquet",
        cells="results/{corpus}/internals/{model}/cells.parquet",
        ngram=explore_ngram,
        oracle_ngrams=oracle_ngrams,
    output:
        store="results/{corpus}/explore/{model}/store.json",
        acts="results/{corpus}/explore/{model}/acts.npy",
        stats="results/{corpus}/explore/{model}/stats.npz",
        features="results/{corpus}/explore/{model}/features.npy",
        positions="results/{corpus}/explore/{model}/positions.npy",
        text="results/{corpus}/explore/{model}/text.bin",
        scores="results/{corpus}/explore/{model}/scores.parquet",
    log:
        "results/logs/{corpus}/explore/{model}.log",
    benchmark:
        "results/benchmarks/{corpus}/explore/{model}.tsv"
    conda:
        "../../envs/rnnlens.yaml"
    threads: EXPLORE["threads"]
    resources:
        mem_mb=EXPLORE["mem_mb"],
        runtime=120,
    params:
        out_dir=subpath(output.store, parent=True),
        ngram=explore_ngram_arg,
        oracles=json_arg(EXPLORE_ORACLES),
        evaluation=f"--eval-streams {EVAL['streams']} --eval-warmup {EVAL['warmup']}",
        device=model_device,
        corpus=corpus_digest,
        code=code_of("explore-store"),
    shell:
        "python -m rnnlens explore-store --model {input.model} --data {input.data} --out-dir {params.out_dir}"
        " --model-id {wildcards.model} --predictions {input.predictions} --cells {input.cells} {params.ngram}"
        " --oracle-ngrams {input.oracle_ngrams} --oracle-settings '{params.oracles}' {params.evaluation}"
        " --device {params.device} --threads {threads} > {log} 2>&1"
