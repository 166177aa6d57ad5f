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
    wildcard_constraints:
        model=TRAINED_MODEL,
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
        code=code_of("evaluate"),
    shell:
        "python -m rnnlens evaluate --model {input.model} --data {input.data} --out {output}"
        " --model-id {wildcards.model} --streams {params.streams} --warmup {params.warmup}"
        " --threads {threads} > {log} 2>&1"


# A further seed's predictions, out of predictions/*.parquet: no analysis takes it for another model.
use rule evaluate as evaluate_seed with:
    input:
        model="results/{corpus}/models/{model}/seed-{seed}/model.pt",
        data=DATA_JSON,
    output:
        "results/{corpus}/predictions/seeds/{model}/seed-{seed}.parquet",
    log:
        "results/logs/{corpus}/evaluate_seed/{model}/seed-{seed}.log",
    benchmark:
        "results/benchmarks/{corpus}/evaluate_seed/{model}/seed-{seed}.tsv"


# Dynamic evaluation (Krause et al. 2018): the predictor {base}+dyn adapts the trained weights on each test
# segment after predicting it, with the (lr, decay) chosen on validation (none, flagged, when none beats static);
# its Parquet goes wherever a model's does.
rule evaluate_dynamic:
    input:
        model="results/{corpus}/models/{base}/model.pt",
        data=DATA_JSON,
    output:
        "results/{corpus}/predictions/{base}+dyn.parquet",
    log:
        "results/logs/{corpus}/evaluate_dynamic/{base}.log",
    benchmark:
        "results/benchmarks/{corpus}/evaluate_dynamic/{base}.tsv"
    conda:
        "../../envs/rnnlens.yaml"
    threads: RES["train_threads"]
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        rule=DYNAMIC.get("rule"),
        lr=DYNAMIC.get("lr"),
        decay=DYNAMIC.get("decay"),
        val_bytes=DYNAMIC.get("val_bytes"),
        segment=DYNAMIC.get("segment"),
        ms_bytes=DYNAMIC.get("ms_bytes"),
        warmup=EVAL["warmup"],
        device=model_device,
        corpus=corpus_digest,
        code=code_of("dyneval"),
    shell:
        "python -m rnnlens dyneval --model {input.model} --data {input.data} --out {output}"
        " --model-id {wildcards.base} --rule {params.rule} --lr {params.lr} --decay {params.decay}"
        " --val-bytes {params.val_bytes} --segment {params.segment} --ms-bytes {params.ms_bytes}"
        " --warmup {params.warmup} --device {params.device} --threads {threads} > {log} 2>&1"


# An intervention (analysis.interventions): the predictor {base}~{name} holds units of one layer inside the model's
# recurrence at every step; its Parquet goes wherever a model's does.
rule evaluate_intervention:
    input:
        model="results/{corpus}/models/{base}/model.pt",
        data=DATA_JSON,
    output:
        "results/{corpus}/predictions/{base}~{name}.parquet",
    log:
        "results/logs/{corpus}/evaluate_intervention/{base}~{name}.log",
    benchmark:
        "results/benchmarks/{corpus}/evaluate_intervention/{base}~{name}.tsv"
    conda:
        "../../envs/rnnlens.yaml"
    threads: RES["train_threads"]
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        spec=intervention_args,
        streams=EVAL["streams"],
        warmup=EVAL["warmup"],
        device=model_device,
        corpus=corpus_digest,
        code=code_of("intervene"),
    shell:
        "python -m rnnlens intervene --model {input.model} --data {input.data} --out {output}"
        " --model-id {wildcards.base} {params.spec} --streams {params.streams} --warmup {params.warmup}"
        " --device {params.device} --threads {threads} > {log} 2>&1"
