# The numbers of one model's internals (gate saturation, cell scores, excerpts); the pictures are drawn from them
# by cell_pictures and model_saturation_figure, so that a figure edit redraws and recomputes nothing.
rule internals:
    input:
        model="results/{corpus}/models/{model}/model.pt",
        data=DATA_JSON,
    output:
        saturation="results/{corpus}/internals/{model}/saturation.parquet",
        summary="results/{corpus}/internals/{model}/saturation_summary.csv",
        cells="results/{corpus}/internals/{model}/cells.parquet",
        top="results/{corpus}/internals/{model}/cells_top.csv",
        excerpts="results/{corpus}/internals/{model}/excerpts.parquet",
    log:
        "results/logs/{corpus}/internals/{model}.log",
    benchmark:
        "results/benchmarks/{corpus}/internals/{model}.tsv"
    wildcard_constraints:
        model=TRAINED_MODEL,
    conda:
        "../../envs/rnnlens.yaml"
    threads: INTERNALS["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        out_dir=subpath(output.saturation, parent=True),
        max_positions=INTERNALS["max_positions"],
        cells=user_cells,
        device=model_device,
        corpus=corpus_digest,
        code=code_of("internals"),
    shell:
        "python -m rnnlens internals --model {input.model} --data {input.data} --out-dir {params.out_dir}"
        " --model-id {wildcards.model} --max-positions {params.max_positions} {params.cells}"
        " --device {params.device} --threads {threads} > {log} 2>&1"


rule cell_pictures:
    input:
        cells="results/{corpus}/internals/{model}/cells.parquet",
        excerpts="results/{corpus}/internals/{model}/excerpts.parquet",
        data=DATA_JSON,
    output:
        # one PNG per picture (how many depends on the model), written as a whole; cells.pdf has them all
        pictures=directory("results/{corpus}/internals/{model}/cells"),
        pictures_pdf="results/{corpus}/internals/{model}/cells.pdf",
        html=report(
            "results/{corpus}/internals/{model}/cells.html",
            caption="../report/cells.rst",
            category="Inside the networks",
            subcategory="{corpus}",
            labels={"model": "{model}", "figure": "cell pictures"},
        ),
    log:
        "results/logs/{corpus}/cell_pictures/{model}.log",
    benchmark:
        "results/benchmarks/{corpus}/cell_pictures/{model}.tsv"
    wildcard_constraints:
        model=TRAINED_MODEL,
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        out_dir=subpath(input.cells, parent=True),
        cells=user_cells,
        corpus=corpus_digest,
        code=fingerprint("cell-pictures"),
    shell:
        "python -m rnnlens cell-pictures --dir {params.out_dir} --data {input.data} --model-id {wildcards.model}"
        " {params.cells} > {log} 2>&1"


# one model's gate saturation figure (a model without gates gets a figure that says so)
rule model_saturation_figure:
    input:
        "results/{corpus}/internals/{model}/saturation.parquet",
    output:
        png="results/{corpus}/internals/{model}/saturation.png",
        pdf="results/{corpus}/internals/{model}/saturation.pdf",  # written beside the PNG
    log:
        "results/logs/{corpus}/model_saturation_figure/{model}.log",
    wildcard_constraints:
        model=TRAINED_MODEL,
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=fingerprint("saturation-figure"),
    shell:
        "python -m rnnlens saturation-figure --inputs {input} --out {output.png} > {log} 2>&1"


rule best_cells:
    input:
        expand("results/{{corpus}}/internals/{model}/cells.parquet", model=MODELS),
    output:
        best=report(
            "results/tables/best_cells_{corpus}.csv",
            caption="../report/best_cells.rst",
            category="Inside the networks",
            subcategory="{corpus}",
            labels={"model": "all", "figure": "best cell per feature"},
        ),
        explanations="results/tables/cell_explanations_{corpus}.csv",
    log:
        "results/logs/{corpus}/best_cells.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=fingerprint("best-cells"),
    shell:
        "python -m rnnlens best-cells --tables {input} --out {output.best}"
        " --explanations-out {output.explanations} > {log} 2>&1"


# Do the best cells matter? Each feature's best cell of each model held at its training mean, beside random units
# of its layer; models whose architecture cannot clamp its units yet are left out (the log says so).
rule cell_effects:
    input:
        models=expand(
            "results/{{corpus}}/models/{model}/model.pt", model=CELL_EFFECT_MODELS
        ),
        best="results/tables/best_cells_{corpus}.csv",
        data=DATA_JSON,
    output:
        table=report(
            "results/tables/cell_effects_{corpus}.csv",
            caption="../report/cell_effects.rst",
            category="Inside the networks",
            subcategory="{corpus}",
            labels={"model": "all", "figure": "cell ablations (table)"},
        ),
        png=report(
            "results/figures/{corpus}/cell_effects.png",
            caption="../report/cell_effects.rst",
            category="Inside the networks",
            subcategory="{corpus}",
            labels={"model": "all", "figure": "cell ablations"},
        ),
        pdf="results/figures/{corpus}/cell_effects.pdf",  # written beside the PNG
    log:
        "results/logs/{corpus}/cell_effects.log",
    benchmark:
        "results/benchmarks/{corpus}/cell_effects.tsv"
    conda:
        "../../envs/rnnlens.yaml"
    threads: CELL_EFFECTS["threads"]
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        ids=CELL_EFFECT_MODELS,
        features=",".join(CELL_EFFECTS["features"]),
        controls=CELL_EFFECTS["controls"],
        max_positions=CELL_EFFECTS["max_positions"],
        streams=EVAL["streams"],
        warmup=CELL_EFFECTS["warmup"],
        device=config["training"].get("device", "auto"),
        corpus=corpus_digest,
        code=code_for_archs("cell-effects"),
    shell:
        "python -m rnnlens cell-effects --models {input.models} --model-ids {params.ids} --data {input.data}"
        " --best-cells {input.best} --out {output.table} --figure {output.png} --features {params.features}"
        " --controls {params.controls} --max-positions {params.max_positions} --streams {params.streams}"
        " --warmup {params.warmup} --device {params.device} --threads {threads} > {log} 2>&1"


rule saturation_figure:
    input:
        expand(
            "results/{{corpus}}/internals/{model}/saturation.parquet",
            model=MODELS,
        ),
    output:
        png=report(
            "results/figures/{corpus}/saturation.png",
            caption="../report/saturation.rst",
            category="Inside the networks",
            subcategory="{corpus}",
            labels={"model": "all with gates", "figure": "gate saturation"},
        ),
        pdf="results/figures/{corpus}/saturation.pdf",  # written beside the PNG
    log:
        "results/logs/{corpus}/saturation_figure.log",
    conda:
        "../../envs/rnnlens.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=fingerprint("saturation-figure"),
    shell:
        "python -m rnnlens saturation-figure --inputs {input} --out {output.png} > {log} 2>&1"
