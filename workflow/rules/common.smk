import hashlib
import json
import sys
from pathlib import Path

# Rules call `python -m rnnlens`; put the package's source first on the path so that the command runs this
# checkout's code in any environment that has the dependencies (the virtualenv, a conda env from envs/, a node).
SRC_DIR = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC_DIR))
shell.prefix(
    f'set -euo pipefail; export PYTHONPATH="{SRC_DIR}${{{{PYTHONPATH:+:$PYTHONPATH}}}}"; '
)

from rnnlens.config import (
    ConfigError,
    check_config,
    coerce_strings,
    dropout_label,
    dropout_values,
    load_schema,
    seed_values,
    training_settings,
    trial_settings,
)
from rnnlens.fetch import SOURCE_KEYS
from rnnlens.ids import (
    INTERVENTION_PATTERN,
    MODEL_PATTERN,
    default_intervention_name,
    dynamic_id,
    intervention_id,
    family_of,
    format_model_id,
    parse_model_id,
)

# A rule's `code` param names and hashes every module the job executes (rnnlens/fingerprint.py): fingerprint(command)
# for a job that builds no model, code_of(command) for a per-model job (its architecture's module from the {model}
# or {base} wildcard), code_for_archs(command) for a job over the grid's models. An edit that changes what one of
# them computes reruns the job; comments, docstrings and other architectures' modules do not.
from rnnlens.fingerprint import fingerprint

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
config.update(coerce_strings(config, load_schema(SCHEMA)))
try:
    check_config(
        config, SCHEMA
    )  # the one validation: also fills in the schema's defaults
except ConfigError as err:
    raise WorkflowError(str(err))

CORPORA = list(config["corpora"])
GRID = config["grid"]
MODELS = [
    format_model_id(arch, layers, size)
    for arch in GRID["arch"]
    for layers in GRID["layers"]
    for size in GRID["size"]
]
RES = config["resources"]
EVAL = config["evaluation"]
# dynamic evaluation: a predictor {model}+dyn for each of evaluation.dynamic.models (default: every model)
DYNAMIC = EVAL.get("dynamic") or {}
DYNAMIC_MODELS = (
    [dynamic_id(m) for m in DYNAMIC.get("models", MODELS)] if DYNAMIC else []
)
# interventions: a predictor {model}~{name} for each entry of analysis.interventions
INTERVENTIONS = {
    intervention_id(
        entry["model"],
        entry.get("name")
        or default_intervention_name(
            entry["mode"], entry["layer"], entry["units"], entry["value"]
        ),
    ): entry
    for entry in config["analysis"]["interventions"]
}
for entry in INTERVENTIONS.values():
    if entry["model"] not in MODELS:
        raise WorkflowError(
            f"analysis.interventions: model {entry['model']} is not in the grid; use one of {', '.join(MODELS)}"
        )
PREDICTORS = MODELS + DYNAMIC_MODELS + list(INTERVENTIONS)
NGRAM = config["ngram"]
NGRAM_ORDERS = NGRAM.get("orders", [])  # none: no n-gram baselines
NNN = config["nnn"]
NNN_ORDERS = NNN.get("orders", [])  # none: no n-NN baselines
ANALYSIS = config["analysis"]
ORACLES = ANALYSIS["oracles"]
INTERNALS = ANALYSIS["internals"]
DYNAMICS = ANALYSIS["dynamics"]
CELL_EFFECTS = ANALYSIS["cell_effects"]
CELL_EFFECT_MODELS = CELL_EFFECTS["models"] or MODELS
REFERENCE_NGRAM = ANALYSIS.get("reference_ngram", max(NGRAM_ORDERS, default=0))
ORACLE_NGRAMS = [n for n in ORACLES["ngram_orders"] if n in NGRAM_ORDERS]
DYNAMICS_NNN = [n for n in DYNAMICS["nnn_orders"] if n in NNN_ORDERS]
HAS_LSTM = "lstm" in GRID["arch"]
# training.seeds: the first is the documented seed, whose models keep the single-seed paths; each further seed has
# its trials and model under models/{model}/seed-{seed}/ and its predictions under predictions/seeds/, out of the
# analyses' predictions/*.parquet
SEEDS = seed_values(config)
EXTRA_SEEDS = SEEDS[1:]


# rules that train or read weights constrain {model} to a trained model (no +dyn predictor)
TRAINED_MODEL = MODEL_PATTERN


wildcard_constraints:
    corpus="[A-Za-z0-9_]+",
    model=f"{TRAINED_MODEL}(\\+dyn|~{INTERVENTION_PATTERN})?",
    name=INTERVENTION_PATTERN,
    base=TRAINED_MODEL,
    n="[0-9]+",
    dropout="[0-9.]+",
    seed="[0-9]+",


# Every job that reads a prepared corpus takes its data.json as an ancient() input and the hash of its bytes as the
# `corpus` param: the content decides, not the modification time. data.json holds the corpus's sha256, so changed
# bytes rerun all of the corpus; a re-fetch or re-prepare of the same bytes writes the same data.json and reruns
# nothing. prepare_corpus is a checkpoint, so that when it runs, these jobs are judged again after it with the new
# hash (README, "What reruns when").
DATA_JSON = ancient("results/{corpus}/data.json")


def corpus_digest(wildcards):
    path = Path(f"results/{wildcards.corpus}/data.json")
    if not path.exists():
        return "not prepared yet"  # the job is judged again once prepare_corpus has made it
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def json_arg(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def train_settings(wildcards):
    return json_arg(
        trial_settings(
            config, wildcards.model, wildcards.dropout, wildcards.get("seed")
        )
    )


def trial_paths(corpus, model, seed=None):
    """The trained trials of one model and seed (None: the documented seed), one per dropout value."""
    seed_folder = "" if seed is None else f"seed-{seed}/"
    return [
        f"results/{corpus}/models/{model}/{seed_folder}{dropout_label(d)}/model.pt"
        for d in dropout_values(config, model)
    ]


def model_device(wildcards):
    """The torch device of a job that runs a trained model over the test split (dynamic
    evaluation, internals, explorer store): its training.device, auto by default."""
    model = wildcards.get("model") or wildcards.get("base")
    return training_settings(config, model).get("device", "auto")


def dropout_trials(wildcards):
    """The trained trials of one model, one per dropout value of its settings."""
    return trial_paths(wildcards.corpus, wildcards.model)


def every_seed_trials(wildcards):
    """The trials of every seed of one model, the documented seed's first (the dropout goes by their mean)."""
    trials = trial_paths(wildcards.corpus, wildcards.model)
    for seed in EXTRA_SEEDS:
        trials += trial_paths(wildcards.corpus, wildcards.model, seed)
    return trials


def seed_trials(wildcards):
    return trial_paths(wildcards.corpus, wildcards.model, wildcards.seed)


def seed_predictions(corpora):
    return expand(
        "results/{corpus}/predictions/seeds/{model}/seed-{seed}.parquet",
        corpus=corpora,
        model=MODELS,
        seed=EXTRA_SEEDS,
    )


# With several seeds Table 1 reads every seed; with one, its command is the single-seed one, unchanged, so that a
# finished single-seed workflow has nothing to redo.
SEED_PREDICTIONS_ARG = (
    " --seed-predictions {input.seed_predictions}" if EXTRA_SEEDS else ""
)


def corpus_seed_predictions(wildcards):
    return seed_predictions([wildcards.corpus])


# The analyses that compare a picked model with another predictor (the error breakdown, per-character gains) read
# every seed of the picked model when there are several: the further seeds join the candidates.
SEED_CANDIDATES_ARG = " {input.seed_predictions}" if EXTRA_SEEDS else ""


def model_grid_args(wildcards):
    """models-table arguments for the one grid point of wildcards.model (e.g. lstm-2x128)."""
    arch, layers, size = parse_model_id(wildcards.model)
    return f"--archs {arch} --layers {layers} --sizes {size}"


def intervention_args(wildcards):
    """rnnlens intervene arguments of the declared intervention {base}~{name}."""
    predictor = intervention_id(wildcards.base, wildcards.name)
    if predictor not in INTERVENTIONS:
        raise WorkflowError(
            f"{predictor} is not declared under analysis.interventions in the config"
        )
    entry = INTERVENTIONS[predictor]
    units = ",".join(str(u) for u in entry["units"])
    return (
        f"--layer {entry['layer']} --units {units} --mode {entry['mode']}"
        f" --value {entry['value']} --name {wildcards.name}"
    )


def code_of(*commands):
    """The code param of a per-model rule: the commands' modules and its model's architecture module."""

    def code(wildcards):
        model = wildcards.get("model") or wildcards.get("base")
        return fingerprint(*commands, arch=parse_model_id(model).arch)

    return code


def code_for_archs(*commands):
    """The code param of a rule that builds models of every architecture of the grid (the models table)."""
    return fingerprint(*commands, arch=GRID["arch"])


def train_runtime(wildcards, attempt):
    _, layers, size = parse_model_id(wildcards.model)
    table = {int(k): v for k, v in RES["train_runtime_minutes"].items()}
    base = table.get(size) or max(table.values(), default=60)
    return int(base * (1 + 0.25 * (layers - 1)) * 2 ** (attempt - 1))


def corpus_spec(corpus):
    """The keys of a corpus entry that the fetch reads (not its split, paper name or quote_scope, which other
    rules read: a change there must not re-fetch the corpus)."""
    return {k: v for k, v in config["corpora"][corpus].items() if k in SOURCE_KEYS}


def corpus_source(wildcards):
    """A local source file of the corpus, as an input of the fetch: editing that file re-fetches it."""
    spec = corpus_spec(wildcards.corpus)
    path = spec.get("path") or spec.get("tarball", {}).get("path")
    return [path] if path else []


def paper_names():
    return {c: v.get("paper", c) for c, v in config["corpora"].items()}


def all_targets():
    targets = [
        "results/tables/table1.csv",
        "results/tables/table1.md",
    ]
    targets += expand("results/tables/models_{corpus}.csv", corpus=CORPORA)
    targets += expand("results/{corpus}/models.csv", corpus=CORPORA)
    targets += expand("results/figures/training_curves_{corpus}.png", corpus=CORPORA)
    return targets + analysis_targets()


def oracle_args():
    spec = {
        "--error-threshold": [ORACLES["error_threshold"]],
        "--ngram-threshold": [ORACLES["ngram_threshold"]],
        "--memory-windows": ORACLES["memory_windows"],
        "--rare-counts": ORACLES["rare_counts"],
        "--boosts": ORACLES["boosts"],
        "--memory-definition": [ORACLES["memory_definition"]],
    }
    return " ".join(f"{k} {' '.join(map(str, v))}" for k, v in spec.items())


def user_cells(wildcards):
    cells = INTERNALS["cells"].get(wildcards.model, [])
    return f"--cells {','.join(cells)}" if cells else ""


def corpus_predictions(wildcards):
    return expand(
        "results/{corpus}/predictions/{model}.parquet",
        corpus=wildcards.corpus,
        model=PREDICTORS,
    )


def oracle_ngrams(wildcards):
    return expand(
        "results/{corpus}/predictions/ngram-{n}.parquet",
        corpus=wildcards.corpus,
        n=ORACLE_NGRAMS,
    )


def analysis_targets():
    targets = []
    if NGRAM_ORDERS or NNN_ORDERS:
        targets += ["results/tables/table2.csv", "results/tables/table2.md"]
    for corpus in CORPORA:
        fig = f"results/figures/{corpus}"
        if HAS_LSTM and REFERENCE_NGRAM in NGRAM_ORDERS:
            targets += [
                f"{fig}/perchar.png",
                f"{fig}/brackets/brackets-{corpus}-brace.png",
            ]
        targets += [f"results/{corpus}/oracles/{m}.csv" for m in PREDICTORS]
        targets += [f"results/{corpus}/internals/{m}/cells.html" for m in MODELS]
        targets += [f"results/{corpus}/internals/{m}/saturation.png" for m in MODELS]
        targets.append(f"results/tables/best_cells_{corpus}.csv")
        if CELL_EFFECTS["features"]:
            targets.append(f"results/tables/cell_effects_{corpus}.csv")
        targets.append(f"{fig}/saturation.png")
        if HAS_LSTM:
            targets.append(f"{fig}/error_breakdown.png")
            if len(GRID["size"]) > 1:
                targets.append(f"{fig}/small_vs_large.png")
        if len(PREDICTORS) > 1:
            targets.append(f"{fig}/tsne.png")
        if len({family_of(m) for m in PREDICTORS}) > 1:
            targets.append(f"{fig}/arch_errors.png")
        if DYNAMICS["model"] in MODELS and DYNAMICS_NNN:
            targets.append(f"{fig}/dynamics.png")
    return targets


def print_result_locations():
    print("\nrnnlens: results are in results/")
    for path in all_targets():
        if Path(path).exists():
            print(f"  {path}")
    print("  the HTML report: snakemake --report results/report.html (or: make report)")
