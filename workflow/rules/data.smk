# Content, not timestamps, decides what a corpus reruns (README, "What reruns when"). update(): Snakemake keeps
# the fetched corpus while the fetch runs and puts it back if the fetch fails (a wrong sha256 must not cost the good
# corpus). prepare_corpus is a checkpoint: the jobs below it are judged again once it has run, by the hash of the
# data.json it wrote (common.smk, DATA_JSON), so an identical re-fetch reruns nothing below it.
rule fetch_corpus:
    input:
        corpus_source,
    output:
        corpus=update("results/{corpus}/corpus.bin"),
        provenance=update("results/{corpus}/provenance.json"),
    log:
        "results/logs/{corpus}/fetch_corpus.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        spec=lambda wc: json_arg(corpus_spec(wc.corpus)),
        code=fingerprint("fetch"),
    shell:
        "python -m rnnlens fetch --corpus {wildcards.corpus} --spec '{params.spec}'"
        " --out {output.corpus} --provenance {output.provenance} > {log} 2>&1"


checkpoint prepare_corpus:
    input:
        "results/{corpus}/corpus.bin",
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
        code=fingerprint("prepare"),
    shell:
        "python -m rnnlens prepare --corpus {wildcards.corpus} --corpus-bin {input}"
        " --split '{params.split}' --out {output} > {log} 2>&1"


rule models_table:
    input:
        DATA_JSON,
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
        corpus=corpus_digest,
        code=code_for_archs("models-table"),
    shell:
        "python -m rnnlens models-table --data {input} --archs {params.archs} --layers {params.layers}"
        " --sizes {params.sizes} --out {output} > {log} 2>&1"
