rule train:
    input:
        data="results/{corpus}/data.json",
        models="results/{corpus}/models.csv",
    output:
        model="results/{corpus}/models/{model}/model.pt",
        history="results/{corpus}/models/{model}/history.csv",
    log:
        "results/logs/{corpus}/train/{model}.log",
    benchmark:
        "results/benchmarks/{corpus}/train/{model}.tsv"
    conda:
        "../../envs/rnnlens.yaml"
    threads: RES.get("train_threads", 2)
    resources:
        mem_mb=RES.get("train_mem_mb", 4000),
        runtime=train_runtime,
    params:
        settings=train_settings,
        # the checkpoint is not an output: Snakemake must keep it when a job is killed, so the retry resumes
        checkpoint="results/{corpus}/models/{model}/checkpoint.pt",
        code=code_fingerprint("model", "train", "corpus", "convergence"),
    shell:
        "python -m rnnlens train --data {input.data} --models-table {input.models} --model {wildcards.model}"
        " --settings '{params.settings}' --out-model {output.model} --out-history {output.history}"
        " --checkpoint {params.checkpoint} --threads {threads} --code-fingerprint {params.code} >> {log} 2>&1"
