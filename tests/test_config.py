import copy
from pathlib import Path

import pytest
import yaml

from rnnlens.config import ConfigError, check_config, training_settings

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture
def config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def _error(config, base_dir=ROOT):
    with pytest.raises(ConfigError) as info:
        check_config(config, SCHEMA, base_dir)
    return str(info.value)


def test_shipped_configs_are_valid(config):
    check_config(config, SCHEMA)
    check_config(yaml.safe_load((ROOT / "profiles/demo/demo.yaml").read_text()), SCHEMA)


def test_unknown_arch_names_key_value_and_allowed(config):
    config["grid"]["arch"] = ["lstm", "mamba"]
    msg = _error(config)
    assert "grid.arch[1]" in msg and '"mamba"' in msg and '"rnn", "lstm", "gru", "transformer", "lru"' in msg


def test_transformer_window_and_dynamic_models_are_checked(config):
    config["grid"]["arch"] = ["lstm", "transformer"]
    config["training_overrides"] = {"transformer": {"window": 64, "optimizer": "adamw"}}
    config["evaluation"] = {"dynamic": {"lr": 0.003, "models": ["lstm-1x64", "lru-1x64"]}}
    config["analysis"]["cell_effects"] = {"features": ["in_dquote"], "models": ["gru-1x64"]}
    msg = _error(config)
    assert "analysis.cell_effects.models: gru-1x64 is not a model of the grid" in msg
    assert "training.window" in msg and "transformer-1x64" in msg and "seq_len 100" in msg
    assert "evaluation.dynamic.models: lru-1x64 is not a model of the grid" in msg
    config["training_overrides"]["transformer"]["window"] = 128
    config["evaluation"]["dynamic"]["models"] = ["lstm-1x64"]
    config["analysis"]["cell_effects"]["models"] = ["transformer-1x64"]
    check_config(config, SCHEMA)
    config["training_overrides"]["transformer"]["heads"] = 3
    assert "heads" in _error(config)


def test_dynamic_settings_are_one_value_or_a_list_to_choose_from(config):
    config["evaluation"] = {"dynamic": {"lr": 0.003}}
    check_config(config, SCHEMA)
    assert config["evaluation"]["dynamic"]["decay"] == 0.0 and config["evaluation"]["dynamic"]["val_bytes"] == 50000
    config["evaluation"]["dynamic"] = {"lr": [1e-4, 3e-4, 1e-3], "decay": [0, 0.03]}
    check_config(config, SCHEMA)
    config["evaluation"]["dynamic"] = {"lr": [1e-4, -1], "decay": 1.5, "val_bytes": 0}
    msg = _error(config)
    assert "evaluation.dynamic.lr[1]: value -1 is not allowed" in msg
    assert "evaluation.dynamic.decay: value 1.5 is not allowed" in msg
    assert "evaluation.dynamic.val_bytes" in msg


def test_a_dynamics_model_without_snapshot_epochs_is_an_error_before_any_job(config):
    """The dynamics figure reads snapshots only written by its model's training: without snapshot_epochs it would
    fail after that training ("retrain that model")."""
    del config["analysis"]["dynamics"]["snapshot_epochs"]
    msg = _error(config)
    assert "analysis.dynamics.snapshot_epochs: not set" in msg and "lstm-3x512" in msg
    config["analysis"]["dynamics"]["snapshot_epochs"] = [60, 70]  # after max_epochs 50
    assert "comes after lstm-3x512's training.max_epochs 50" in _error(config)
    # no figure planned (its model is not in the grid, or no n-NN to compare with): nothing to check
    config["analysis"]["dynamics"] = {"model": "lstm-3x512"}
    config["grid"]["size"] = [64, 128]
    check_config(config, SCHEMA)
    config["grid"]["size"] = [512]
    config["nnn"] = {"orders": [20]}
    check_config(config, SCHEMA)


@pytest.mark.parametrize("size", [0, -64, 1.5, "big"])
def test_size_must_be_positive_integer(config, size):
    config["grid"]["size"] = [64, size]
    msg = _error(config)
    assert "grid.size[1]" in msg


def test_split_must_sum_to_one(config):
    config["corpora"]["warpeace"]["split"] = {"train": 0.8, "val": 0.1, "test": 0.2}
    assert "sum to 1.1; they must sum to 1" in _error(config)


def test_missing_corpus_file(config, tmp_path):
    config["corpora"]["mine"] = {"path": "no/such/file.txt", "split": {"train": 0.8, "val": 0.1, "test": 0.1}}
    msg = _error(config, tmp_path)
    assert "corpora.mine.path" in msg and "does not exist" in msg


def test_corpus_too_short_for_a_batch(config, tmp_path):
    (tmp_path / "tiny.txt").write_bytes(b"x" * 500)
    config["corpora"] = {"tiny": {"path": "tiny.txt", "split": {"train": 0.8, "val": 0.1, "test": 0.1}}}
    assert "fewer than batch_size x (seq_len + 1) = 10100" in _error(config, tmp_path)


def test_corpus_needs_exactly_one_source(config):
    config["corpora"]["warpeace"]["path"] = "x.txt"  # now both url and path
    assert "give exactly one source" in _error(config)


def test_bad_sha256_and_unknown_key(config):
    config["corpora"]["warpeace"]["sha256"] = "abc"
    config["training"]["learning_rat"] = 0.1
    msg = _error(config)
    assert "corpora.warpeace.sha256" in msg and "learning_rat" in msg


def test_ngram_order_beyond_kenlm_build(config):
    config.setdefault("ngram", {})["orders"] = [3, 25]
    # the schema may restrict the order too; either way the message names the limit
    assert "25" in _error(config)


def test_overrides_apply_by_arch_then_model(config):
    config["training_overrides"] = {"lstm": {"dropout": 0.25}, "lstm-3x512": {"dropout": 0.5}}
    check_config(config, SCHEMA)
    assert training_settings(config, "gru-1x64")["dropout"] == 0.0
    assert training_settings(config, "lstm-1x64")["dropout"] == 0.25
    assert training_settings(config, "lstm-3x512")["dropout"] == 0.5


def test_strings_from_the_command_line_get_the_schema_types(config):
    """Nested --config values reach the workflow as strings (YAML BaseLoader); only schema-typed leaves convert."""
    from rnnlens.config import coerce_strings, load_schema

    raw = {
        "grid": {"arch": ["lstm"], "layers": ["1", "2"], "size": ["64"]},
        "training": {"learning_rate": "2e-3", "tf32": "false", "max_epochs": "3"},
        "corpora": {"wp": {"path": "1234", "sha256": "0" * 64, "split": {"train": "0.8", "val": "0.1", "test": "0.1"}}},
        "analysis": {"internals": {"cells": {"lstm-1x64": ["1:0"]}}},
        "resources": {"train_runtime_minutes": {"64": "60"}},
    }
    typed = coerce_strings(raw, load_schema(SCHEMA))
    assert typed["grid"]["layers"] == [1, 2] and typed["training"]["learning_rate"] == 0.002
    assert typed["training"]["tf32"] is False and typed["corpora"]["wp"]["split"]["train"] == 0.8
    assert typed["corpora"]["wp"]["sha256"] == "0" * 64 and typed["corpora"]["wp"]["path"] == "1234"
    assert typed["analysis"]["internals"]["cells"]["lstm-1x64"] == ["1:0"]
    assert typed["resources"]["train_runtime_minutes"]["64"] == 60


def test_precision_is_checked_before_any_job(config):
    config["training"]["precision"] = "fp8"
    assert "training.precision" in _error(copy.deepcopy(config))
    config["training"].update(precision="bf16", device="cpu")
    check_config(config, SCHEMA)
    config["training_overrides"] = {"lstm": {"precision": "fp16"}}
    assert "fp16 needs a CUDA device, but training.device is cpu; use bf16 or fp32" in _error(config)


def test_convergence_and_bracket_settings_are_validated(config):
    assert config["training"]["convergence_tolerance"] == 0.01
    assert config["analysis"]["bracket_min_count"] == 10 and config["analysis"]["bracket_max_distance"] == 400
    bad = copy.deepcopy(config)
    bad["training"]["convergence_tolerance"] = 1.5
    assert "training.convergence_tolerance" in _error(bad)
    bad = copy.deepcopy(config)
    bad["analysis"]["bracket_min_count"] = 0
    assert "analysis.bracket_min_count" in _error(bad)
    bad = copy.deepcopy(config)
    bad["analysis"]["bracket_max_distance"] = "far"
    assert "analysis.bracket_max_distance" in _error(bad)


def test_a_default_changed_in_the_schema_reaches_the_job_that_uses_it(tmp_path):
    """Defaults live in the schema alone: change evaluation.streams' default there, leave it out of the config, and
    the evaluate job's command carries the new value (a real dry run of a copy of the workflow)."""
    import shutil
    import subprocess
    import sys

    from conftest import markov_text, run_env

    for name in ("Snakefile", "workflow", "src", "profiles", "envs"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, tmp_path / name)
    schema = tmp_path / "workflow" / "schemas" / "config.schema.yaml"
    text = schema.read_text()
    old = 'streams: {$ref: "#/definitions/positive_int", default: 100}'
    assert text.count(old) == 1
    schema.write_text(text.replace(old, 'streams: {$ref: "#/definitions/positive_int", default: 37}'))
    (tmp_path / "corpus.txt").write_bytes(markov_text(12000))
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({
        "corpora": {"toy": {"path": "corpus.txt", "split": {"train": 0.8, "val": 0.1, "test": 0.1}}},
        "grid": {"arch": ["lstm"], "layers": [1], "size": [8]},
        "training": {"batch_size": 8, "seq_len": 20, "max_epochs": 1, "device": "cpu"},
    }))
    proc = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "results/toy/predictions/lstm-1x8.parquet",
                           "-n", "-p", "--cores", "1", "--configfile", "tiny.yaml"],
                          cwd=tmp_path, env=run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    evaluate = [line for line in proc.stdout.splitlines() if "rnnlens evaluate" in line]
    assert evaluate and "--streams 37 " in evaluate[0], proc.stdout[-3000:]


def test_training_runtimes_are_set_in_the_workflow_config_only():
    """docs/slurm.md tells users to edit resources.train_runtime_minutes in the config: a `config:` block in the
    Slurm profile would silently override it."""
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    assert not {"config", "configfile", "configfiles"} & set(profile)
    assert "resources.train_runtime_minutes` in the workflow config" in (ROOT / "docs/slurm.md").read_text()
