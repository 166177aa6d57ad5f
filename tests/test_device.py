"""The jobs that run a trained model over the test split (dynamic evaluation, exact internals, explorer stores)
take the job's GPU when it has one, as training does: their commands default to --device auto, and the workflow
passes each job its model's training.device."""
import argparse
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import ROOT, markov_text, run_env, workflow_view
from rnnlens.cli import build_parser, main
from rnnlens.model import ModelSpec, pick_device, save_model
from rnnlens.recurrent import CharRNN

COMMANDS = ("evaluate", "dyneval", "internals", "explore-store")


def test_every_command_that_runs_a_trained_model_defaults_to_auto():
    for command in COMMANDS:
        parser = build_parser(command)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
        assert sub.get_default("device") == "auto", command


def test_a_dry_run_passes_each_job_the_training_device_of_its_model(tmp_path):
    """gru-1x8 is set to the CPU (training_overrides); lstm-1x8 keeps training.device's default, auto."""
    wf = workflow_view(tmp_path / "wf")
    (wf / "corpus.txt").write_bytes(markov_text(12000))
    config = {
        "corpora": {"toy": {"path": "corpus.txt", "split": {"train": 0.8, "val": 0.1, "test": 0.1}}},
        "grid": {"arch": ["lstm", "gru"], "layers": [1], "size": [8]},
        "training": {"seed": 1, "batch_size": 8, "seq_len": 20, "max_epochs": 1},
        "training_overrides": {"gru": {"device": "cpu"}},
        "evaluation": {"streams": 4, "warmup": 50, "dynamic": {"lr": 0.001, "models": ["lstm-1x8", "gru-1x8"]}},
        "analysis": {"explore": {"models": ["lstm-1x8", "gru-1x8"]}},
    }
    (wf / "tiny.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-n", "-p", "--configfile", "tiny.yaml"],
                          cwd=wf, env=run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    devices = {}
    for line in proc.stdout.splitlines():
        command = re.search(r"python -m rnnlens (dyneval|internals|explore-store) .*--model-id (\S+)", line)
        if command:
            devices[command.groups()] = re.search(r"--device (\S+)", line).group(1)
    assert devices == {(c, m): "cpu" if m == "gru-1x8" else "auto"
                       for c in ("dyneval", "internals", "explore-store") for m in ("lstm-1x8", "gru-1x8")}


@pytest.fixture
def tiny_model(prepared, tmp_path):
    data = prepared(markov_text(4000))
    torch.manual_seed(0)
    model = CharRNN(ModelSpec("lstm", 1, 6, 5))
    save_model(tmp_path / "model.pt", model, {"model": "lstm-1x6"})
    return tmp_path / "model.pt", data


def command_lines(model, data, out):
    return {
        "dyneval": ["dyneval", "--model", str(model), "--data", str(data), "--out", str(out / "dyn.parquet"),
                    "--model-id", "lstm-1x6", "--lr", "0.001", "--segment", "50", "--warmup", "100"],
        "internals": ["internals", "--model", str(model), "--data", str(data), "--out-dir", str(out / "internals"),
                      "--streams", "4", "--warmup", "100"],
        "explore-store": ["explore-store", "--model", str(model), "--data", str(data), "--out-dir",
                          str(out / "store"), "--eval-streams", "4", "--eval-warmup", "100", "--streams", "4",
                          "--warmup", "100"],
    }


def run_on(model, data, out, device=None):
    """Each command on the tiny model (with --device DEVICE, or its default) -> {command: exit code}."""
    return {name: main(argv + ([] if device is None else ["--device", device]))
            for name, argv in command_lines(model, data, out).items()}


def test_each_command_runs_where_auto_points(tiny_model, tmp_path, caplog, capsys):
    model, data = tiny_model
    with caplog.at_level("INFO", logger="rnnlens"):
        assert run_on(model, data, tmp_path / "auto") == {name: 0 for name in ("dyneval", "internals",
                                                                             "explore-store")}
    where = str(pick_device("auto"))
    for what in ("dynamic evaluation", "internals", "store"):
        assert f"{what} on {where}" in caplog.text, what
    if not torch.cuda.is_available():
        # a GPU this machine lacks: a one-line error naming the setting, not a silent CPU run
        assert set(run_on(model, data, tmp_path / "cuda", "cuda").values()) == {2}
        assert "sees no CUDA device" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_the_gpu_the_commands_give_the_cpu_results(tiny_model, tmp_path):
    model, data = tiny_model
    for device in ("cpu", "cuda"):
        assert set(run_on(model, data, tmp_path / device, device).values()) == {0}
    cpu, gpu = tmp_path / "cpu", tmp_path / "cuda"
    for name, column in (("dyn.parquet", "p"), ("internals/saturation.parquet", "frac_left")):
        np.testing.assert_allclose(pd.read_parquet(gpu / name)[column], pd.read_parquet(cpu / name)[column],
                                   atol=2e-3)
    np.testing.assert_allclose(np.load(gpu / "store/positions.npy")["p"], np.load(cpu / "store/positions.npy")["p"],
                               atol=2e-3)
    assert (np.load(gpu / "store/acts.npy").astype(int) - np.load(cpu / "store/acts.npy")).__abs__().max() <= 2


def test_every_rule_that_runs_a_model_asks_for_the_gpu():
    """On Slurm a rule's `gpu` resource becomes --gpus=1; without it the job lands on a node without a GPU and runs
    its model on the CPU. `set-resources` is keyed by rule name, so a `use rule` copy needs its own entry."""
    runs_a_model = {"train", "evaluate", "dyneval", "intervene", "internals", "cell-effects", "explore-store"}
    shells, copies = {}, {}
    for path in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        for block in re.split(r"(?m)^(?=rule |checkpoint |use rule )", text):
            own = re.match(r"(?:rule|checkpoint) (\w+):", block)
            if own:
                shells[own.group(1)] = set(re.findall(r"python -m rnnlens ([a-z0-9-]+)", block.split("    shell:")[-1]))
            copy = re.match(r"use rule (\w+) as (\w+)", block)
            if copy:
                copies[copy.group(2)] = copy.group(1)
    shells.update({name: shells[source] for name, source in copies.items()})
    model_rules = {name for name, commands in shells.items() if commands & runs_a_model}
    assert {"train", "train_seed", "evaluate", "evaluate_seed", "cell_effects"} <= model_rules
    declared = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())["set-resources"]
    assert {name for name in model_rules if declared.get(name, {}).get("gpu") != 1} == set()
