rule table1:
    input:
        predictions=expand(
            "results/{corpus}/predictions/{model}.parquet",
            corpus=CORPORA,
            model=PREDICTORS,
        ),
        models=expand("results/{corpus}/models.csv", corpus=CORPORA),
        seed_predictions=seed_predictions(CORPORA),
    output:
        csv=report(
            "results/tables/table1.csv",
            caption="../report/table1.rst",
            category="Table 1",
            labels={"table": "Table 1 (CSV)"},
        ),
        md="results/tables/table1.md",
    log:
        "results/logs/table1.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        paper=json_arg(paper_names()),
        code=fingerprint("table1"),
    shell:
        "python -m rnnlens table1 --predictions {input.predictions}"
        + SEED_PREDICTIONS_ARG
        + " --models {input.models}"
        " --paper-names '{params.paper}' --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"


# Table 1 of one corpus: the analyses of that corpus pick their models from it, so that another corpus (its models,
# or a new corpus) does not mark them stale.
rule corpus_table1:
    input:
        predictions=corpus_predictions,
        models="results/{corpus}/models.csv",
    output:
        csv="results/{corpus}/table1.csv",
        md="results/{corpus}/table1.md",
    log:
        "results/logs/{corpus}/corpus_table1.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        paper=lambda wc: json_arg({wc.corpus: paper_names()[wc.corpus]}),
        code=fingerprint("table1"),
    shell:
        "python -m rnnlens table1 --predictions {input.predictions} --models {input.models}"
        " --paper-names '{params.paper}' --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"


rule models_report:
    input:
        "results/{corpus}/models.csv",
    output:
        report(
            "results/tables/models_{corpus}.csv",
            caption="../report/models.rst",
            category="Models",
            labels={"corpus": "{corpus}"},
        ),
    log:
        "results/logs/models_report_{corpus}.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    shell:
        "cp {input} {output} 2> {log}"


# with several seeds, every seed's history: one label per model, drawn as the mean with the seeds' range as a band
rule training_curves:
    input:
        [
            f"results/{{corpus}}/models/{model}/{seed_folder}history.csv"
            for model in MODELS
            for seed_folder in [""] + [f"seed-{s}/" for s in EXTRA_SEEDS]
        ],
    output:
        report(
            "results/figures/training_curves_{corpus}.png",
            caption="../report/training_curves.rst",
            category="Training",
            labels={"corpus": "{corpus}"},
        ),
    log:
        "results/logs/training_curves_{corpus}.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        labels=[model for model in MODELS for _ in SEEDS],
        n_models=len(MODELS),
        code=fingerprint("curves"),
    shell:
        "python -m rnnlens curves --histories {input} --labels {params.labels}"
        " --title 'Training curves on {wildcards.corpus}: {params.n_models} models (hue: architecture, shade: size, line: depth)'"
        " --out {output} > {log} 2>&1"
