# One model's row of the models table (its hidden size from its parameter budget and the vocabulary): what its
# training reads, so that a grid that grows adds rows without marking the models already trained stale.
rule model_spec:
    input:
        DATA_JSON,
    output:
        "results/{corpus}/models/{model}/spec.csv",
    log:
        "results/logs/{corpus}/model_spec/{model}.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        grid=model_grid_args,
        corpus=corpus_digest,
        code=code_of("models-table"),
    shell:
        "python -m rnnlens models-table --data {input} {params.grid} --out {output} > {log} 2>&1"


rule train:
    input:
        data=DATA_JSON,
        models="results/{corpus}/models/{model}/spec.csv",
    output:
        model="results/{corpus}/models/{model}/dropout-{dropout}/model.pt",
        history="results/{corpus}/models/{model}/dropout-{dropout}/history.csv",
    log:
        "results/logs/{corpus}/train/{model}/dropout-{dropout}.log",
    benchmark:
        "results/benchmarks/{corpus}/train/{model}/dropout-{dropout}.tsv"
    wildcard_constraints:
        model=TRAINED_MODEL,
    conda:
        "../../envs/rnnlens.yaml"
    threads: RES["train_threads"]
    resources:
        mem_mb=RES["train_mem_mb"],
        runtime=train_runtime,
    params:
        settings=train_settings,
        # the checkpoint is not an output: Snakemake must keep it when a job is killed, so the retry resumes
        checkpoint="results/{corpus}/models/{model}/dropout-{dropout}/checkpoint.pt",
        corpus=corpus_digest,
        code=code_of("train"),
    shell:
        "python -m rnnlens train --data {input.data} --models-table {input.models} --model {wildcards.model}"
        " --settings '{params.settings}' --out-model {output.model} --out-history {output.history}"
        " --checkpoint {params.checkpoint} --threads {threads} --code-fingerprint '{params.code}' >> {log} 2>&1"


# A further seed of training.seeds: the same trials under models/{model}/seed-{seed}/ (its settings' seed is {seed})
use rule train as train_seed with:
    output:
        model="results/{corpus}/models/{model}/seed-{seed}/dropout-{dropout}/model.pt",
        history="results/{corpus}/models/{model}/seed-{seed}/dropout-{dropout}/history.csv",
    log:
        "results/logs/{corpus}/train/{model}/seed-{seed}/dropout-{dropout}.log",
    benchmark:
        "results/benchmarks/{corpus}/train/{model}/seed-{seed}/dropout-{dropout}.tsv"
    params:
        settings=train_settings,
        checkpoint="results/{corpus}/models/{model}/seed-{seed}/dropout-{dropout}/checkpoint.pt",
        corpus=corpus_digest,
        code=code_of("train"),


# The model of a grid point: the dropout trial with the best validation loss (the paper chose dropout on
# validation). With one dropout value this is a copy of the one trial.
rule select_dropout:
    input:
        dropout_trials,
    output:
        model="results/{corpus}/models/{model}/model.pt",
        history="results/{corpus}/models/{model}/history.csv",
        selection="results/{corpus}/models/{model}/selection.json",
    log:
        "results/logs/{corpus}/select_dropout/{model}.log",
    wildcard_constraints:
        model=TRAINED_MODEL,
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=fingerprint("select-dropout"),
    shell:
        "python -m rnnlens select-dropout --trials {input} --out-model {output.model}"
        " --out-history {output.history} --out-selection {output.selection} > {log} 2>&1"


# With several seeds (training.seeds): the dropout with the best validation loss averaged over seeds, and the
# documented seed's trial of it (rnnlens.seeds). A rule of its own, so that a single-seed workflow keeps its jobs.
rule select_dropout_seeds:
    input:
        every_seed_trials,
    output:
        model="results/{corpus}/models/{model}/model.pt",
        history="results/{corpus}/models/{model}/history.csv",
        selection="results/{corpus}/models/{model}/selection.json",
    log:
        "results/logs/{corpus}/select_dropout_seeds/{model}.log",
    wildcard_constraints:
        model=TRAINED_MODEL,
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=fingerprint("select-seeds"),
    shell:
        "python -m rnnlens select-seeds --trials {input} --out-model {output.model}"
        " --out-history {output.history} --out-selection {output.selection} > {log} 2>&1"


if EXTRA_SEEDS:

    ruleorder: select_dropout_seeds > select_dropout

else:

    ruleorder: select_dropout > select_dropout_seeds


# The model of a further seed: its trial at the dropout chosen for the model over every seed.
rule select_seed:
    input:
        trials=seed_trials,
        selection="results/{corpus}/models/{model}/selection.json",
    output:
        model="results/{corpus}/models/{model}/seed-{seed}/model.pt",
        history="results/{corpus}/models/{model}/seed-{seed}/history.csv",
        selection="results/{corpus}/models/{model}/seed-{seed}/selection.json",
    log:
        "results/logs/{corpus}/select_seed/{model}/seed-{seed}.log",
    wildcard_constraints:
        model=TRAINED_MODEL,
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=fingerprint("select-seeds"),
    shell:
        "python -m rnnlens select-seeds --trials {input.trials} --dropout-of {input.selection}"
        " --out-model {output.model} --out-history {output.history} --out-selection {output.selection} > {log} 2>&1"
