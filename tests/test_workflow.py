"""Real Snakemake runs of the whole workflow on a tiny grid: outputs, no-op rerun, selective reruns."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT, markov_text, run_env, workflow_view
from rnnlens.predictions import read_meta

pytestmark = pytest.mark.slow


def tiny_config(corpus_path):
    return {
        "corpora": {"toy": {"path": str(corpus_path), "split": {"train": 0.8, "val": 0.1, "test": 0.1}}},
        "grid": {"arch": ["lstm", "gru"], "layers": [1], "size": [8]},
        "training": {"seed": 1, "batch_size": 8, "seq_len": 20, "max_epochs": 1, "patience": 2,
                     "checkpoint_seconds": 60, "device": "cpu"},
        "evaluation": {"streams": 4, "warmup": 50},
        "resources": {"train_threads": 1},
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A copy of the workflow (so tests may edit its code) with a tiny config."""
    d = tmp_path_factory.mktemp("wf")
    for name in ("Snakefile", "workflow", "src", "profiles", "envs", "config.yaml"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, d / name)
    (d / "corpus.txt").write_bytes(markov_text(12000))
    (d / "tiny.yaml").write_text(yaml.safe_dump(tiny_config(d / "corpus.txt")))
    return d


def snakemake(workdir, *args, check=True):
    cmd = [str(Path(sys.executable).parent / "snakemake"), "--cores", "2", "--configfile", "tiny.yaml",
           *args]
    proc = subprocess.run(cmd, cwd=workdir, env=run_env(), capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def planned_jobs(workdir):
    """Rule -> number of jobs a dry run would execute."""
    out = snakemake(workdir, "-n", "--quiet", "rules").stdout
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M) if m.group(1) != "total"}


def test_end_to_end_then_noop_then_selective_reruns(workdir):
    snakemake(workdir)
    table = pd.read_csv(workdir / "results/tables/table1.csv")
    assert sorted(table.model) == ["gru-1x8", "lstm-1x8"]
    assert (table.test_loss > 0).all() and (table.test_loss < 2.0).all()
    assert (workdir / "results/figures/training_curves_toy.png").stat().st_size > 1000
    # the toy corpus is not one of the paper's: Table 1 says so instead of promising "ours (paper)"
    assert "the paper has no values for this corpus" in (workdir / "results/tables/table1.md").read_text()
    for rule_log in ("toy/train/lstm-1x8/dropout-0.log", "toy/evaluate/gru-1x8.log", "table1.log"):
        assert (workdir / "results/logs" / rule_log).exists()
    # each training job uses the threads its rule declares (resources.train_threads), not every core
    assert "on cpu with 1 CPU thread(s)" in (workdir / "results/logs/toy/train/lstm-1x8/dropout-0.log").read_text()

    # a second run has nothing to do
    assert planned_jobs(workdir) == {}
    assert "Nothing to be done" in snakemake(workdir).stdout + snakemake(workdir).stderr

    # one training setting for one architecture: only that model and the aggregations downstream rerun
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["training_overrides"] = {"gru": {"learning_rate": 0.001}}
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(workdir)
    assert jobs["train"] == jobs["select_dropout"] == jobs["evaluate"] == jobs["internals"] == jobs["oracles"] == 1
    assert jobs["table1"] == jobs["training_curves"] == 1
    assert not {"fetch_corpus", "prepare_corpus", "models_table"} & set(jobs)
    snakemake(workdir)
    assert planned_jobs(workdir) == {}

    # a dropout list for one architecture: only its new trial trains, and its model is chosen on validation
    config["training_overrides"]["lstm"] = {"dropout": [0, 0.25]}
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(workdir)
    assert jobs["train"] == jobs["select_dropout"] == jobs["evaluate"] == 1
    snakemake(workdir)
    selection = json.loads((workdir / "results/toy/models/lstm-1x8/selection.json").read_text())
    assert set(selection["val_loss_by_dropout"]) == {"0", "0.25"}
    assert selection["best_val_loss"] == min(selection["val_loss_by_dropout"].values())
    table = pd.read_csv(workdir / "results/tables/table1.csv").set_index("model")
    assert table.loc["lstm-1x8", "dropout"] == selection["dropout"] and table.loc["lstm-1x8", "dropout_tried"] == "0,0.25"
    assert f"d={selection['dropout']:g}" in (workdir / "results/tables/table1.md").read_text()
    assert planned_jobs(workdir) == {}

    # editing a table's code marks only that table (and what reads it) stale, no model
    with open(workdir / "src/rnnlens/paper.py", "a") as f:
        f.write("\nEDITED = True  # an edit of the code (a comment alone reruns nothing)\n")
    jobs = planned_jobs(workdir)
    assert jobs["table1"] == 1 and not {"train", "evaluate", "internals", "oracles", "agreement"} & set(jobs)
    snakemake(workdir)

    # editing the training code marks every trained model stale
    with open(workdir / "src/rnnlens/train.py", "a") as f:
        f.write("\nEDITED = True  # an edit of the code (a comment alone reruns nothing)\n")
    jobs = planned_jobs(workdir)
    assert jobs["train"] == 3 and jobs["evaluate"] == 2


def test_bad_config_fails_before_any_job(workdir):
    config = yaml.safe_load((workdir / "tiny.yaml").read_text())
    config["grid"]["arch"] = ["lstm", "tranformer"]
    (workdir / "bad.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-n", "--configfile", "bad.yaml"], cwd=workdir, env=run_env(), capture_output=True, text=True)
    assert proc.returncode != 0
    assert "grid.arch[1]" in proc.stderr + proc.stdout and "tranformer" in proc.stderr + proc.stdout


def test_a_corpus_of_one_distinct_byte_stops_at_prepare_before_any_training(workdir):
    (workdir / "one.txt").write_bytes(b"x" * 12000)
    config = tiny_config(workdir / "one.txt")
    config["corpora"] = {"one": config["corpora"]["toy"]}
    (workdir / "one.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "--cores", "2", "--configfile", "one.yaml"],
                          cwd=workdir, env=run_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "Error in rule prepare_corpus" in proc.stdout + proc.stderr
    assert "one distinct byte (b'x')" in (workdir / "results/logs/one/prepare_corpus.log").read_text()
    assert not (workdir / "results/one/data.json").exists() and not (workdir / "results/logs/one/train").exists()


def test_full_paper_grid_plans_144_training_jobs_for_72_models(tmp_path):
    # planned in a folder of its own: whatever this checkout's results/ hold does not change the plan
    proc = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-n", "--quiet", "rules"],
                          cwd=workflow_view(tmp_path / "wf"), env=run_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", proc.stdout, re.M)}
    # sizes 256 and 512 try dropout 0, 0.25 and 0.5 (config.yaml): 2 corpora x (18 + 18 x 3) trials
    assert jobs["train"] == 144 and jobs["select_dropout"] == jobs["evaluate"] == 72 and jobs["table1"] == 1


def code_corpus_workdir(tmp_path, line, n_lines):
    """A copy of the workflow on Markov text followed by code-like lines (so that brackets, quotes and comments
    occur), in char-rnn's rows layout (4 pieces per split; no stage may join text across a seam). -> its config."""
    pytest.importorskip("kenlm", reason="KenLM not installed: run `make setup` (scripts/setup_kenlm.sh)")
    if not (Path(sys.executable).parent / "lmplz").exists() and not shutil.which("lmplz"):
        pytest.skip("lmplz not built: run `make setup` (scripts/setup_kenlm.sh)")
    for name in ("Snakefile", "workflow", "src", "profiles", "envs", "config.yaml"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    lines = [line % (i % 7) for i in range(n_lines)]
    (tmp_path / "corpus.txt").write_bytes(markov_text(6000, alphabet=b"ab c\n") + b"".join(lines))
    config = tiny_config(tmp_path / "corpus.txt")
    config["corpora"]["toy"]["quote_scope"] = "line"
    config["corpora"]["toy"]["split"].update(layout="rows", rows=4, chunk=20)
    return config


def test_every_analysis_runs_end_to_end(tmp_path):
    """The whole workflow, baselines and analyses included, on a tiny grid: every target of `all` is made."""
    config = code_corpus_workdir(tmp_path, b'    if (x[%d] > 0) { y = "abc"; } /* note */\n', 300)
    config["grid"] = {"arch": ["rnn", "lstm", "gru"], "layers": [1], "size": [8, 12]}
    config["ngram"] = {"orders": [1, 2, 3], "memory_mb": 500}
    config["nnn"] = {"orders": [1, 2], "hidden": [16], "epochs": 1, "patience": 1, "batch_size": 200}
    config["analysis"] = {
        "reference_ngram": 3, "bracket_bin": 10, "perchar_min_count": 5,
        "oracles": {"ngram_orders": [1, 2, 3], "memory_windows": [100, 500]},
        "internals": {"max_positions": 800, "threads": 1, "cells": {"lstm-1x8": ["1:0"]}},
        "dynamics": {"model": "lstm-1x8", "snapshot_epochs": [0.5, 1], "nnn_orders": [1, 2], "positions": 300},
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path)
    figures = tmp_path / "results/figures/toy"
    for name in ("perchar.png", "brackets/brackets-toy-brace.png", "error_breakdown.png", "small_vs_large.png",
                 "tsne.png", "dynamics.png", "saturation.png"):
        assert (figures / name).stat().st_size > 1000, name
    table2 = pd.read_csv(tmp_path / "results/tables/table2.csv")
    assert sorted(table2.n) == [1, 2, 3] and table2.ngram_test_loss.is_monotonic_decreasing
    assert (tmp_path / "results/toy/internals/lstm-1x8/cells.html").read_text().count("<") > 100
    data = json.loads((tmp_path / "results/toy/data.json").read_text())
    assert data["layout"]["kind"] == "rows" and len(data["pieces"]["test"]) == 4
    for model in ("lstm-1x8", "ngram-3", "nnn-2"):
        predictions = pd.read_parquet(tmp_path / f"results/toy/predictions/{model}.parquet")
        assert len(predictions) == data["split_sizes"]["test"], model
    dynamics = pd.read_csv(tmp_path / "results/toy/analysis/dynamics.csv")
    assert len(dynamics) == 2 * 2 and (dynamics.sym_kl > 0).all()
    assert planned_jobs(tmp_path) == {}
    # every file the rules wrote is a declared output (or in one), a log or a benchmark: nothing undeclared that a
    # rerun could leave stale beside new outputs (training snapshots aside: the training stage's own manifest)
    summary = snakemake(tmp_path, "--summary").stdout.splitlines()
    declared = {tmp_path / line.split("\t")[0] for line in summary[1:] if line.strip()}
    undeclared = [p.relative_to(tmp_path).as_posix() for p in (tmp_path / "results").rglob("*")
                  if p.is_file() and not any(p == d or d in p.parents for d in declared)
                  and p.relative_to(tmp_path / "results").parts[0] not in ("logs", "benchmarks")
                  and "snapshots" not in p.parts]
    assert undeclared == []


def test_transformer_lru_and_dynamic_evaluation_run_through_every_stage(tmp_path):
    """Beyond the paper: a grid with the transformer and the LRU beside the LSTM, and dynamic-evaluation predictors,
    through every stage: Table 1 lists the +dyn predictors, the analyses take them, the cells stage scores the new
    archs' units and the saturation figure leaves them out, and the comparison across architectures is made."""
    config = code_corpus_workdir(tmp_path, b'    if (x[%d] > 0) { y = "abc"; }\n', 250)
    config["grid"] = {"arch": ["lstm", "transformer", "lru"], "layers": [1], "size": [8]}
    config["training_overrides"] = {"transformer": {"optimizer": "adamw", "window": 24, "heads": 2},
                                    "lru": {"optimizer": "adamw", "lr_warmup_steps": 3}}
    config["evaluation"]["dynamic"] = {"rule": "rms", "lr": [0.001, 0.01], "decay": 0.01, "segment": 20, "ms_bytes": 400,
                                       "models": ["lstm-1x8", "transformer-1x8"]}
    config["ngram"] = {"orders": [1, 2, 3], "memory_mb": 500}
    config["analysis"] = {"reference_ngram": 3, "bracket_bin": 10, "perchar_min_count": 5,
                          "oracles": {"ngram_orders": [1, 2, 3], "memory_windows": [100, 500]},
                          "internals": {"max_positions": 500, "threads": 1}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path)
    table = pd.read_csv(tmp_path / "results/tables/table1.csv").set_index("model")
    assert set(table.index) == {"lstm-1x8", "transformer-1x8", "lru-1x8", "lstm-1x8+dyn", "transformer-1x8+dyn"}
    assert table.loc["lstm-1x8+dyn", "arch"] == "lstm+dyn" and table.loc["lstm-1x8+dyn", "params"] == table.loc[
        "lstm-1x8", "params"]
    for model in ("lstm-1x8", "transformer-1x8"):  # the setting chosen per model on validation, both lrs scored
        dynamic = read_meta(tmp_path / f"results/toy/predictions/{model}+dyn.parquet")["dynamic"]
        assert [c["lr"] for c in dynamic["candidates"]] == [0.001, 0.01] and dynamic["static_val_loss"] > 0
        flagged = table.loc[f"{model}+dyn", "test_loss"] > table.loc[model, "test_loss"] or dynamic["flag"]
        assert isinstance(table.loc[f"{model}+dyn", "dyn_flag"], str) == bool(flagged)
    data = json.loads((tmp_path / "results/toy/data.json").read_text())
    for model in table.index:
        assert len(pd.read_parquet(tmp_path / f"results/toy/predictions/{model}.parquet")) == data["split_sizes"]["test"]
    # each model trained with the widths of its row, within the tolerance of its budget (params: the trained model's)
    models = pd.read_csv(tmp_path / "results/toy/models.csv").set_index("model")
    assert (models.loc[["transformer-1x8", "lru-1x8"], "inner"] > 0).all()
    assert (models.deviation_pct.abs() <= models.tolerance_pct).all()
    for model in models.index:
        assert read_meta(tmp_path / f"results/toy/predictions/{model}.parquet")["params"] == models.loc[model, "params"]
    compared = pd.read_csv(tmp_path / "results/toy/analysis/arch_errors.csv")
    assert set(compared.arch) == {"lstm", "transformer", "lru", "lstm+dyn", "transformer+dyn"}
    assert (compared[compared.arch == "lstm"].errors_vs_reference == 0).all()
    brackets = json.loads((tmp_path / "results/toy/analysis/brackets.json").read_text())
    assert brackets["windows"] == {"transformer-1x8": 24, "transformer-1x8+dyn": 24}
    cells = pd.read_parquet(tmp_path / "results/toy/internals/transformer-1x8/cells.parquet")
    assert cells.unit.max() == models.loc["transformer-1x8", "hidden"] + models.loc["transformer-1x8", "inner"] - 1
    assert "no gates" in (tmp_path / "results/logs/toy/internals/lru-1x8.log").read_text()
    for name in ("arch_errors.png", "saturation.png", "tsne.png", "error_breakdown.png"):
        assert (tmp_path / "results/figures/toy" / name).stat().st_size > 1000, name
    assert planned_jobs(tmp_path) == {}
