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

from rnnlens.config import ConfigError, check_config, training_settings

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
try:
    check_config(config, SCHEMA)
except ConfigError as err:
    raise WorkflowError(str(err))
validate(config, SCHEMA)

SRC = Path(workflow.basedir) / "src" / "rnnlens"
CORPORA = list(config["corpora"])
GRID = config["grid"]
MODELS = [
    f"{arch}-{layers}x{size}"
    for arch in GRID["arch"]
    for layers in GRID["layers"]
    for size in GRID["size"]
]
RES = config.get("resources", {})
EVAL = config.get("evaluation", {})


wildcard_constraints:
    corpus="[A-Za-z0-9_]+",
    model="(rnn|lstm|gru)-[0-9]+x[0-9]+",


def code_fingerprint(*modules):
    """Hash of the package modules a stage depends on. Used as a param, so that editing them marks the
    stage's outputs stale (Snakemake's code trigger sees only the rule's own shell text).
    """
    digest = hashlib.sha256()
    for name in modules:
        digest.update((SRC / f"{name}.py").read_bytes())
    return digest.hexdigest()[:16]


def json_arg(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def train_settings(wildcards):
    return json_arg(training_settings(config, wildcards.model))


def train_runtime(wildcards, attempt):
    size = int(wildcards.model.split("x")[1])
    layers = int(wildcards.model.split("-")[1].split("x")[0])
    table = {int(k): v for k, v in RES.get("train_runtime_minutes", {}).items()}
    base = table.get(size) or max(table.values(), default=60)
    return int(base * (1 + 0.25 * (layers - 1)) * 2 ** (attempt - 1))


def corpus_spec(corpus):
    spec = dict(config["corpora"][corpus])
    spec.pop("split", None)
    spec.pop("paper", None)
    return spec


def paper_names():
    return {c: v.get("paper", c) for c, v in config["corpora"].items()}


def all_targets():
    targets = [
        "results/tables/table1.csv",
        "results/tables/table1.md",
    ]
    targets += expand("results/tables/models_{corpus}.csv", corpus=CORPORA)
    targets += []
    targets += expand("results/{corpus}/models.csv", corpus=CORPORA)
    targets += expand("results/figures/training_curves_{corpus}.png", corpus=CORPORA)
    return targets


def print_result_locations():
    print("\nrnnlens: results are in results/")
    for path in all_targets():
        if Path(path).exists():
            print(f"  {path}")
    print("  the HTML report: snakemake --report results/report.html (or: make report)")
