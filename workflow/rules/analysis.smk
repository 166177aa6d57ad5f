rule oracles:
    input:
        data=DATA_JSON,
        predictions="results/{corpus}/predictions/{model}.parquet",
        ngram=oracle_ngrams,
    output:
        csv="results/{corpus}/oracles/{model}.csv",
        png="results/{corpus}/oracles/{model}.png",
    log:
        "results/logs/{corpus}/oracles/{model}.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=3000,
        runtime=15,
    params:
        options=oracle_args(),
        corpus=corpus_digest,
        code=fingerprint("oracles"),
    shell:
        "python -m rnnlens oracles --data {input.data} --predictions {input.predictions} --ngram {input.ngram}"
        " {params.options} --csv-out {output.csv} --fig-out {output.png} > {log} 2>&1"


rule error_breakdown:
    input:
        data=DATA_JSON,
        table1="results/{corpus}/table1.csv",
        predictions=corpus_predictions,
        seed_predictions=corpus_seed_predictions,
        ngram=oracle_ngrams,
    output:
        png=report(
            "results/figures/{corpus}/error_breakdown.png",
            caption="../report/error_breakdown.rst",
            category="Error analysis",
            labels={"corpus": "{corpus}", "figure": "best LSTM"},
        ),
        csv="results/{corpus}/analysis/error_breakdown.csv",
    log:
        "results/logs/{corpus}/error_breakdown.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=3000,
        runtime=15,
    params:
        options=oracle_args(),
        corpus=corpus_digest,
        code=fingerprint("oracles"),
    shell:
        (
            "python -m rnnlens oracles --data {input.data} --table1 {input.table1} --pick lstm"
            " --candidates {input.predictions}"
            + SEED_CANDIDATES_ARG
            + " --ngram {input.ngram}"
            " {params.options} --csv-out {output.csv} --fig-out {output.png} > {log} 2>&1"
        )


rule small_vs_large:
    input:
        data=DATA_JSON,
        table1="results/{corpus}/table1.csv",
        predictions=corpus_predictions,
        ngram=oracle_ngrams,
    output:
        png=report(
            "results/figures/{corpus}/small_vs_large.png",
            caption="../report/small_vs_large.rst",
            category="Error analysis",
            labels={"corpus": "{corpus}", "figure": "small vs large LSTM"},
        ),
        csv="results/{corpus}/analysis/small_vs_large.csv",
    log:
        "results/logs/{corpus}/small_vs_large.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=3000,
        runtime=15,
    params:
        options=oracle_args(),
        corpus=corpus_digest,
        code=fingerprint("small-vs-large"),
    shell:
        "python -m rnnlens small-vs-large --data {input.data} --table1 {input.table1} --pick lstm"
        " --candidates {input.predictions} --ngram {input.ngram} {params.options}"
        " --csv-out {output.csv} --fig-out {output.png} > {log} 2>&1"


rule perchar:
    input:
        table1="results/{corpus}/table1.csv",
        predictions=corpus_predictions,
        seed_predictions=corpus_seed_predictions,
        ngram=f"results/{{corpus}}/predictions/ngram-{REFERENCE_NGRAM}.parquet",
    output:
        png=report(
            "results/figures/{corpus}/perchar.png",
            caption="../report/perchar.rst",
            category="Long-range structure",
            labels={"corpus": "{corpus}", "figure": "per-character gains"},
        ),
        pdf="results/figures/{corpus}/perchar.pdf",  # written beside the PNG
        csv="results/{corpus}/analysis/perchar.csv",
        overlap="results/{corpus}/analysis/error_overlap.json",
    log:
        "results/logs/{corpus}/perchar.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        min_count=ANALYSIS["perchar_min_count"],
        code=fingerprint("perchar"),
    shell:
        (
            "python -m rnnlens perchar --table1 {input.table1} --pick lstm --candidates {input.predictions}"
            + SEED_CANDIDATES_ARG
            + " --b {input.ngram} --min-count {params.min_count}"
            " --csv-out {output.csv} --fig-out {output.png} --overlap-out {output.overlap} > {log} 2>&1"
        )


rule brackets:
    input:
        data=DATA_JSON,
        table1="results/{corpus}/table1.csv",
        predictions=corpus_predictions,
        ngram=f"results/{{corpus}}/predictions/ngram-{REFERENCE_NGRAM}.parquet",
    output:
        figures=report(
            expand(
                "results/figures/{{corpus}}/brackets/brackets-{{corpus}}-{delimiter}.png",
                delimiter=["brace", "paren", "bracket", "quote"],
            ),
            caption="../report/brackets.rst",
            category="Long-range structure",
            labels={"corpus": "{corpus}", "figure": "closing delimiters vs distance"},
        ),
        pdfs=expand(
            "results/figures/{{corpus}}/brackets/brackets-{{corpus}}-{delimiter}.pdf",
            delimiter=["brace", "paren", "bracket", "quote"],
        ),
        csv="results/{corpus}/analysis/brackets.csv",
        summary="results/{corpus}/analysis/brackets.json",
    log:
        "results/logs/{corpus}/brackets.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=3000,
        runtime=10,
    params:
        bin=ANALYSIS["bracket_bin"],
        min_count=ANALYSIS["bracket_min_count"],
        max_distance=ANALYSIS["bracket_max_distance"],
        scope=lambda wc: config["corpora"][wc.corpus]["quote_scope"],
        corpus=corpus_digest,
        code=fingerprint("brackets"),
    shell:
        "python -m rnnlens brackets --data {input.data} --table1 {input.table1} --pick lstm"
        " --candidates {input.predictions} --predictions {input.ngram}"
        " --bin {params.bin} --min-count {params.min_count} --max-distance {params.max_distance}"
        " --quote-scope {params.scope} --csv-out {output.csv} --summary-out {output.summary}"
        " --fig-dir results/figures/{wildcards.corpus}/brackets > {log} 2>&1"


rule agreement:
    input:
        corpus_predictions,
    output:
        png=report(
            "results/figures/{corpus}/tsne.png",
            caption="../report/tsne.rst",
            category="Comparing models",
            labels={"corpus": "{corpus}", "figure": "t-SNE of models"},
        ),
        matrix="results/{corpus}/analysis/agreement.csv",
        embedding="results/{corpus}/analysis/tsne.csv",
    log:
        "results/logs/{corpus}/agreement.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=3000,
        runtime=10,
    params:
        seed=config["training"].get("seed", 1),
        code=fingerprint("agreement"),
    shell:
        "python -m rnnlens agreement --predictions {input} --csv-out {output.matrix}"
        " --embedding-out {output.embedding} --fig-out {output.png} --seed {params.seed} > {log} 2>&1"


rule dynamics:
    input:
        data=DATA_JSON,
        model=f"results/{{corpus}}/models/{DYNAMICS['model']}/model.pt",
        nnn=expand("results/{{corpus}}/nnn/nnn-{n}.pt", n=DYNAMICS_NNN),
    output:
        png=report(
            "results/figures/{corpus}/dynamics.png",
            caption="../report/dynamics.rst",
            category="Comparing models",
            labels={"corpus": "{corpus}", "figure": "training dynamics"},
        ),
        csv="results/{corpus}/analysis/dynamics.csv",
    log:
        "results/logs/{corpus}/dynamics.log",
    conda:
        "../../envs/rnnlens.yaml"
    threads: RES["train_threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        positions=DYNAMICS["positions"],
        corpus=corpus_digest,
        code=fingerprint("dynamics-models", arch=parse_model_id(DYNAMICS["model"]).arch),
    shell:
        "python -m rnnlens dynamics-models --data {input.data} --model {input.model} --nnn {input.nnn}"
        " --positions {params.positions} --threads {threads} --csv-out {output.csv} --fig-out {output.png}"
        " > {log} 2>&1"


# Beyond the paper: the error breakdown of the best model of each architecture (dynamic-evaluation predictors
# as their own, lstm+dyn) side by side, and what each removes of the LSTM's errors per category.
rule compare_archs:
    input:
        table1="results/{corpus}/table1.csv",
        oracles=expand(
            "results/{{corpus}}/oracles/{model}.csv",
            model=PREDICTORS,
        ),
    output:
        png=report(
            "results/figures/{corpus}/arch_errors.png",
            caption="../report/arch_errors.rst",
            category="Error analysis",
            labels={"corpus": "{corpus}", "figure": "errors by architecture"},
        ),
        pdf="results/figures/{corpus}/arch_errors.pdf",
        csv="results/{corpus}/analysis/arch_errors.csv",
    log:
        "results/logs/{corpus}/compare_archs.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=fingerprint("compare-archs"),
    shell:
        "python -m rnnlens compare-archs --table1 {input.table1} --corpus {wildcards.corpus}"
        " --oracles {input.oracles} --csv-out {output.csv} --fig-out {output.png} > {log} 2>&1"
