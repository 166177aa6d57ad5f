rule fetch_corpus:
    output:
        corpus="results/{corpus}/corpus.bin",
        provenance="results/{corpus}/provenance.json",
    log:
        "results/logs/{corpus}/fetch_corpus.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        spec=lambda wc: json_arg(corpus_spec(wc.corpus)),
        code=code_fingerprint("corpus", "kernel"),
    shell:
        "python -m rnnlens fetch --corpus {wildcards.corpus} --spec '{params.spec}'"
        " --out {output.corpus} --provenance {output.provenance} > {log} 2>&1"


rule prepare_corpus:
    input:
        corpus="results/{corpus}/corpus.bin",
        provenance="results/{corpus}/provenance.json",
    output:
        "results/{corpus}/data.json",
    log:
        "results/logs/{corpus}/prepare_corpus.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        split=lambda wc: json_arg(config["corpora"][wc.corpus]["split"]),
        min_train=config["training"]["batch_size"] * (config["training"]["seq_len"] + 1),
        code=code_fingerprint("corpus"),
    shell:
        "python -m rnnlens prepare --corpus {wildcards.corpus} --corpus-bin {input.corpus}"
        " --provenance {input.provenance} --split '{params.split}' --min-train-bytes {params.min_train}"
        " --out {output} > {log} 2>&1"


rule models_table:
    input:
        "results/{corpus}/data.json",
    output:
        "results/{corpus}/models.csv",
    log:
        "results/logs/{corpus}/models_table.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        archs=",".join(GRID["arch"]),
        layers=",".join(map(str, GRID["layers"])),
        sizes=",".join(map(str, GRID["size"])),
        code=code_fingerprint("model", "transformer", "lru"),
    shell:
        "python -m rnnlens models-table --data {input} --archs {params.archs} --layers {params.layers}"
        " --sizes {params.sizes} --out {output} > {log} 2>&1"
