"""What reruns when (README): each row changes one thing in a copy of a finished tiny workflow and asserts the exact
jobs Snakemake plans (a dry run), or runs where only running can tell (the corpus rows: whether the fetched bytes
changed is known once they are fetched)."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, markov_text, run_env

pytestmark = pytest.mark.slow

MODELS = ("lstm-1x8", "gru-1x8", "lru-1x8")


def corpus_bytes(seed=0):
    # code-like lines so that the bracket analysis has brackets and quotes
    lines = [b'    if (x[%d] > 0) { y = "abc"; } /* note */\n' % (i % 7) for i in range(300)]
    return markov_text(6000, seed=seed) + b"".join(lines)


def tiny_config():
    """Every rule the paper's analyses use, on three tiny models (the LRU for the rows about one architecture's
    code) and n-gram orders 1 and 2 (no n-NN, no explorer)."""
    return {
        "corpora": {"toy": {"path": "corpus.txt", "split": {"train": 0.8, "val": 0.1, "test": 0.1},
                            "quote_scope": "line"}},
        "grid": {"arch": ["lstm", "gru", "lru"], "layers": [1], "size": [8]},
        "training": {"seed": 1, "batch_size": 8, "seq_len": 20, "max_epochs": 1, "patience": 1,
                     "checkpoint_seconds": 60, "device": "cpu"},
        "evaluation": {"streams": 4, "warmup": 50},
        "resources": {"train_threads": 1},
        "ngram": {"orders": [1, 2], "memory_mb": 200},
        "analysis": {"reference_ngram": 2, "bracket_bin": 10, "perchar_min_count": 5,
                     "oracles": {"ngram_orders": [1, 2], "memory_windows": [100]},
                     "internals": {"max_positions": 300, "threads": 1}, "explore": {"models": []}},
    }


def snakemake(workdir, *args, check=True):
    cmd = [str(Path(sys.executable).parent / "snakemake"), "--cores", "2", "--configfile", "tiny.yaml", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=run_env(), capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def jobs_in(output):
    """The jobs a Snakemake log lists, as 'rule' or 'rule:wildcard values' (e.g. 'train:toy,lstm-1x8,0'); the
    target rule `all` left out."""
    jobs = set()
    for match in re.finditer(r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:    .*\n)*)", output, re.M):
        wildcards = re.search(r"^    wildcards: (.*)$", match.group(2), re.M)
        values = ",".join(kv.split("=", 1)[1] for kv in wildcards.group(1).split(", ")) if wildcards else ""
        jobs.add(match.group(1) + (f":{values}" if values else ""))
    return jobs - {"all"}


def planned(workdir):
    return jobs_in(snakemake(workdir, "-n"))


def edit_config(workdir, change):
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    change(config)
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))


def per_model(rules, models=MODELS, corpus="toy"):
    return {f"{rule}:{corpus},{model}" + (",0" if rule == "train" else "") for rule in rules for model in models}


# the jobs that read every model of a corpus (its figures and tables), and the tables over every corpus
CORPUS_AGGREGATES = {f"{rule}:toy" for rule in ("corpus_table1", "training_curves", "agreement", "best_cells",
                                                 "saturation_figure", "error_breakdown", "perchar", "brackets",
                                                 "compare_archs")}
AGGREGATES = CORPUS_AGGREGATES | {"table1", "table2"}
MODEL_JOBS = ("train", "select_dropout", "evaluate", "internals", "cell_pictures", "model_saturation_figure", "oracles")
FIGURES = {f"{rule}:toy" for rule in ("training_curves", "agreement", "saturation_figure", "error_breakdown", "perchar",
                                      "brackets", "compare_archs")}


def edit_code(workdir, module, text="\nEDITED = True  # an edit that changes the code\n"):
    with open(workdir / "src/rnnlens" / module, "a") as f:
        f.write(text)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One real run of the tiny workflow, shared by every row (each row works on a copy)."""
    d = tmp_path_factory.mktemp("finished")
    shutil.copy(ROOT / "Snakefile", d)
    for name in ("workflow", "src", "profiles", "envs"):
        shutil.copytree(ROOT / name, d / name, ignore=shutil.ignore_patterns("__pycache__"))
    (d / "corpus.txt").write_bytes(corpus_bytes())
    (d / "tiny.yaml").write_text(yaml.safe_dump(tiny_config()))
    ran = jobs_in(snakemake(d))
    assert planned(d) == set()
    return d, ran


@pytest.fixture
def clone(finished, tmp_path):
    """A copy of the finished workflow with the same modification times and Snakemake metadata (.snakemake)."""
    d = tmp_path / "wf"
    shutil.copytree(finished[0], d, symlinks=True)  # copy2: modification times kept
    return d


def test_the_tiny_run_made_every_job_once(finished):
    _, ran = finished
    data = {"fetch_corpus:toy", "prepare_corpus:toy", "models_table:toy", "models_report:toy", "ngram:toy,1",
            "ngram:toy,2"}
    assert ran == data | per_model(("model_spec",) + MODEL_JOBS) | AGGREGATES


def test_edit_plots_reruns_only_figure_jobs_never_the_internals(clone):
    edit_code(clone, "plots.py")
    # each model's saturation figure is drawn apart from its internals; the oracles job draws its model's chart
    assert planned(clone) == FIGURES | per_model(("model_saturation_figure", "oracles"))


def test_edit_train_reruns_training_and_everything_downstream(clone):
    edit_code(clone, "train.py")
    assert planned(clone) == per_model(MODEL_JOBS) | AGGREGATES


def test_comments_and_docstrings_in_any_module_rerun_nothing(clone):
    for path in sorted((clone / "src/rnnlens").rglob("*.py")):
        text = path.read_text()
        path.write_text(text.replace('"""', '"""Edited. ', 1) + "\n# a comment\n")
    model = clone / "src/rnnlens/model.py"
    model.write_text(model.read_text().replace("What every architecture shares", "What all architectures share"))
    assert planned(clone) == set()


def test_a_new_cli_command_reruns_nothing(clone):
    (clone / "src/rnnlens/hello.py").write_text(
        "def add_hello_arguments(parser):\n    pass\n\n\ndef run_hello(args):\n    print('hello')\n")
    cli = clone / "src/rnnlens/cli.py"
    cli.write_text(cli.read_text().replace('COMMANDS = {', 'COMMANDS = {\n    "hello": ("rnnlens.hello", "say hello"),'))
    assert planned(clone) == set()


def test_an_lru_edit_reruns_only_the_lru_models_and_the_aggregates_over_models(clone):
    edit_code(clone, "lru.py")
    lru = per_model(("model_spec",) + MODEL_JOBS, models=["lru-1x8"])
    assert planned(clone) == lru | AGGREGATES | {"models_table:toy", "models_report:toy"}
    # `rnnlens stale` says why: the module that changed, for the jobs that run it
    proc = subprocess.run([sys.executable, "-m", "rnnlens", "stale", "--", "--configfile", "tiny.yaml"], cwd=clone,
                          env=run_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    print(proc.stdout)  # the note's figure
    assert "1 models_table job: rnnlens/lru.py changed   [toy]" in lines
    assert "1 model_spec job: rnnlens/lru.py changed   [toy, lru-1x8]" in lines
    # planned after an upstream job, and with its own code changed: both said
    assert "1 train job: rnnlens/lru.py changed; and after an upstream job reruns   [toy, lru-1x8, 0]" in lines
    assert "1 evaluate job: rnnlens/lru.py changed; and after an upstream job reruns   [toy, lru-1x8]" in lines
    # no code of its own changed: only the upstream rerun
    assert "1 table1 job: after an upstream job reruns" in lines
    assert lines[-1] == f"{len(planned(clone))} jobs in all"


def test_an_lru_edit_reruns_nothing_on_a_grid_without_the_lru(clone):
    edit_config(clone, lambda c: c["grid"].update(arch=["lstm", "gru"]))
    snakemake(clone)  # the aggregates over models follow the smaller grid
    assert planned(clone) == set()
    edit_code(clone, "lru.py")
    edit_code(clone, "transformer.py")
    assert planned(clone) == set()


def test_batch_size_reruns_training_and_no_baseline(clone):
    edit_config(clone, lambda c: c["training"].update(batch_size=4))
    assert planned(clone) == per_model(MODEL_JOBS) | AGGREGATES


def test_quote_scope_reruns_only_the_bracket_analysis(clone):
    edit_config(clone, lambda c: c["corpora"]["toy"].update(quote_scope="paragraph"))
    assert planned(clone) == {"brackets:toy"}


def test_training_override_for_lstm_reruns_only_lstm_models_and_their_dependants(clone):
    edit_config(clone, lambda c: c.update(training_overrides={"lstm": {"learning_rate": 0.001}}))
    assert planned(clone) == per_model(MODEL_JOBS, models=["lstm-1x8"]) | AGGREGATES


def test_a_new_size_trains_only_the_new_models(clone):
    edit_config(clone, lambda c: c["grid"].update(size=[8, 12]))
    new = ["lstm-1x12", "gru-1x12", "lru-1x12"]
    assert planned(clone) == (per_model(("model_spec",) + MODEL_JOBS, models=new) | AGGREGATES
                              | {"models_table:toy", "models_report:toy", "small_vs_large:toy"})


def test_a_new_corpus_runs_only_its_jobs_and_the_tables(clone, finished):
    (clone / "corpus2.txt").write_bytes(corpus_bytes(seed=1))
    edit_config(clone, lambda c: c["corpora"].update(toy2={**c["corpora"]["toy"], "path": "corpus2.txt"}))
    toy2 = {re.sub(r"^(\w+):toy\b", r"\1:toy2", job) for job in finished[1] if ":toy" in job}
    assert planned(clone) == toy2 | {"table1", "table2"}


def test_ngram_orders_rerun_only_ngram_jobs_and_their_dependants(clone):
    edit_config(clone, lambda c: c["ngram"].update(orders=[1, 2, 3]))
    assert planned(clone) == {"ngram:toy,3", "table2"}


def test_refetching_or_repreparing_identical_bytes_reruns_nothing_below_the_corpus(clone):
    ran = jobs_in(snakemake(clone, "--forcerun", "fetch_corpus"))
    assert ran == {"fetch_corpus:toy", "prepare_corpus:toy"}
    assert planned(clone) == set()
    assert jobs_in(snakemake(clone, "--forcerun", "prepare_corpus")) == {"prepare_corpus:toy"}
    assert planned(clone) == set()


def test_a_failed_fetch_keeps_the_corpus_and_the_fixed_config_reruns_nothing_below_it(clone):
    good = (clone / "results/toy/corpus.bin").read_bytes()
    edit_config(clone, lambda c: c["corpora"]["toy"].update(sha256="0" * 64))
    out = snakemake(clone, check=False)
    assert "Error in rule fetch_corpus" in out
    assert (clone / "results/toy/corpus.bin").read_bytes() == good
    edit_config(clone, lambda c: c["corpora"]["toy"].pop("sha256"))
    assert jobs_in(snakemake(clone)) == {"fetch_corpus:toy", "prepare_corpus:toy"}
    assert planned(clone) == set()


def test_changed_corpus_bytes_rerun_everything_of_that_corpus(clone, finished):
    with open(clone / "corpus.txt", "ab") as f:
        f.write(b"abc ab\n" * 10)
    # before the fetch Snakemake cannot know what changes: it plans the fetch and judges the rest after it
    assert planned(clone) == {"fetch_corpus:toy", "prepare_corpus:toy"}
    assert jobs_in(snakemake(clone)) == finished[1]
    assert planned(clone) == set()
