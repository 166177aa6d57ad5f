rule ngram:
    input:
        DATA_JSON,
    output:
        model="results/{corpus}/ngram/ngram-{n}.binary",
        predictions="results/{corpus}/predictions/ngram-{n}.parquet",
        stats="results/{corpus}/ngram/ngram-{n}.json",
    log:
        "results/logs/{corpus}/ngram/ngram-{n}.log",
    benchmark:
        "results/benchmarks/{corpus}/ngram/ngram-{n}.tsv"
    conda:
        "../../envs/rnnlens.yaml"
    threads: 2
    resources:
        # lmplz -S is 70% of this; the Python side maps the binary model (up to ~0.5 GB for 20-grams)
        mem_mb=NGRAM["memory_mb"],
        runtime=60,
    params:
        memory=lambda wc, resources: f"{int(resources.mem_mb * 0.7)}M",
        corpus=corpus_digest,
        code=fingerprint("ngram"),
    shell:
        "python -m rnnlens ngram --data {input} --n {wildcards.n} --model-out {output.model}"
        " --predictions-out {output.predictions} --stats-out {output.stats} --memory {params.memory} > {log} 2>&1"


rule nnn:
    input:
        DATA_JSON,
    output:
        model="results/{corpus}/nnn/nnn-{n}.pt",
        predictions="results/{corpus}/predictions/nnn-{n}.parquet",
        stats="results/{corpus}/nnn/nnn-{n}.json",
    log:
        "results/logs/{corpus}/nnn/nnn-{n}.log",
    benchmark:
        "results/benchmarks/{corpus}/nnn/nnn-{n}.tsv"
    conda:
        "../../envs/rnnlens.yaml"
    threads: RES["train_threads"]
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        hidden=",".join(map(str, NNN["hidden"])),
        epochs=NNN["epochs"],
        patience=NNN["patience"],
        batch=NNN["batch_size"],
        seed=config["training"].get("seed", 1),
        corpus=corpus_digest,
        code=fingerprint("nnn"),
    shell:
        "python -m rnnlens nnn --data {input} --n {wildcards.n} --hidden {params.hidden} --epochs {params.epochs}"
        " --patience {params.patience} --batch-size {params.batch} --seed {params.seed} --threads {threads}"
        " --model-out {output.model} --predictions-out {output.predictions} --stats-out {output.stats} > {log} 2>&1"


rule table2:
    input:
        ngram=expand(
            "results/{corpus}/predictions/ngram-{n}.parquet",
            corpus=CORPORA,
            n=NGRAM_ORDERS,
        ),
        nnn=expand(
            "results/{corpus}/predictions/nnn-{n}.parquet",
            corpus=CORPORA,
            n=NNN_ORDERS,
        ),
        table1="results/tables/table1.csv",
    output:
        csv=report(
            "results/tables/table2.csv",
            caption="../report/table2.rst",
            category="Table 2",
            labels={"table": "Table 2 (CSV)"},
        ),
        md="results/tables/table2.md",
    log:
        "results/logs/table2.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=fingerprint("table2"),
    shell:
        "python -m rnnlens table2 --ngram {input.ngram} --nnn {input.nnn} --table1 {input.table1}"
        " --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"
