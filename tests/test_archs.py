"""The architecture registry: your own architecture through the whole study from a folder outside the package
(README, "Your own architecture"; its example is docs/examples/mgu.py), and one clear error for a module that does
not meet the protocol, before any job runs."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import ROOT, markov_text, run_env
from rnnlens import archs
from rnnlens.config import ConfigError, check_config
from rnnlens.model import ModelSpec, build_model, count_parameters, match_hidden_size

EXAMPLE = ROOT / "docs" / "examples" / "mgu.py"
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def test_the_readme_example_is_the_tested_module():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Your own architecture", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert block == EXAMPLE.read_text()


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """A workflow folder with the example as the package myarchs (outside rnnlens), registered as `mgu`."""
    (tmp_path / "myarchs").mkdir()
    (tmp_path / "myarchs" / "__init__.py").write_text("")
    shutil.copy(EXAMPLE, tmp_path / "myarchs" / "mgu.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(archs.ENV, json.dumps({"mgu": "myarchs.mgu"}))
    return tmp_path


def test_a_registered_module_builds_counts_and_runs_its_internals(user_folder):
    spec = ModelSpec("mgu", 2, 6, 11)
    model = build_model(spec)
    assert sum(p.numel() for p in model.parameters()) == count_parameters("mgu", 2, 6, 11)
    hidden, params, budget = match_hidden_size("mgu", 1, 16, 11)
    assert abs(params / budget - 1) < 0.05
    idx = torch.randint(0, 11, (3, 9))
    logits, state = model(idx)
    # carrying the state over two halves equals one pass
    first, mid = model(idx[:, :4])
    second, _ = model(idx[:, 4:], mid)
    assert torch.allclose(torch.cat([first, second], 1), logits, atol=1e-6) and state.shape == (2, 3, 6)
    runner = archs.load("mgu").internals_runner(model)
    acts, _ = runner.run(idx)
    assert set(acts[0]) == set(runner.kinds) == {"f", "h"} and runner.kinds["f"].gate


def test_a_module_without_the_protocol_is_refused_with_one_line(tmp_path):
    (tmp_path / "half.py").write_text("def count_parameters(arch, layers, hidden, vocab_size):\n    return 1\n")
    (tmp_path / "corpus.txt").write_bytes(markov_text(3000))
    config = {"corpora": {"toy": {"path": "corpus.txt", "split": {"train": 0.8, "val": 0.1, "test": 0.1}}},
              "grid": {"arch": ["lstm", "half"], "layers": [1], "size": [8]},
              "training": {"batch_size": 4, "seq_len": 10},
              "architectures": {"half": "half.py"}}
    with pytest.raises(ConfigError) as err:
        check_config(config, SCHEMA, base_dir=tmp_path)
    lines = str(err.value).splitlines()[1:]
    assert lines == ["  - architectures.half: module " + str(tmp_path / "half.py")
                     + " lacks build_model, internals_runner; an architecture module defines count_parameters, "
                     "build_model, internals_runner (README, 'Your own architecture')"]
    config["architectures"] = {}
    with pytest.raises(ConfigError, match=r'grid.arch\[1\]: value "half" is not allowed; expected one of "rnn"'):
        check_config(config, SCHEMA, base_dir=tmp_path)
    config["architectures"] = {"lstm": "half.py"}
    with pytest.raises(ConfigError, match="lstm is a built-in architecture"):
        check_config(config, SCHEMA, base_dir=tmp_path)


@pytest.mark.slow
def test_your_own_architecture_runs_through_the_whole_study(tmp_path):
    """`mgu` beside the LSTM on the tiny code corpus, from a folder outside the package and with no package file
    edited: trained parameter-matched, evaluated, in Table 1, the oracles, brackets, cells, saturation, the explorer
    and dynamic evaluation; a dry run of a module that lacks part of the protocol fails before any job."""
    pytest.importorskip("kenlm", reason="KenLM not installed: run `make setup` (scripts/setup_kenlm.sh)")
    for name in ("Snakefile", "workflow", "profiles", "envs", "config.yaml"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    (tmp_path / "myarchs").mkdir()
    (tmp_path / "myarchs" / "__init__.py").write_text("")
    shutil.copy(EXAMPLE, tmp_path / "myarchs" / "mgu.py")
    lines = [b'    if (x[%d] > 0) { y = "abc"; }\n' % (i % 7) for i in range(250)]
    (tmp_path / "corpus.txt").write_bytes(markov_text(6000) + b"".join(lines))
    config = {
        "corpora": {"toy": {"path": "corpus.txt", "quote_scope": "line",
                            "split": {"train": 0.8, "val": 0.1, "test": 0.1, "layout": "rows", "rows": 4,
                                      "chunk": 20}}},
        "architectures": {"mgu": "myarchs.mgu"},
        "grid": {"arch": ["lstm", "mgu"], "layers": [1], "size": [8]},
        "training": {"seed": 1, "batch_size": 8, "seq_len": 20, "max_epochs": 1, "patience": 2,
                     "checkpoint_seconds": 60, "device": "cpu"},
        "evaluation": {"streams": 4, "warmup": 50,
                       "dynamic": {"rule": "sgd", "lr": 0.001, "segment": 20, "models": ["mgu-1x8"]}},
        "resources": {"train_threads": 1},
        "ngram": {"orders": [1, 2, 3], "memory_mb": 500},
        "analysis": {"reference_ngram": 3, "bracket_bin": 10, "perchar_min_count": 5,
                     "oracles": {"ngram_orders": [1, 2, 3], "memory_windows": [100, 500]},
                     "internals": {"max_positions": 500, "threads": 1},
                     "explore": {"models": ["mgu-1x8"]}},
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    env = run_env()  # the package from the checkout, the user's module from the workflow's folder
    snakemake = [str(Path(sys.executable).parent / "snakemake"), "--cores", "2", "--configfile", "tiny.yaml"]
    proc = subprocess.run(snakemake, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    table = pd.read_csv(tmp_path / "results/tables/table1.csv").set_index("model")
    assert set(table.index) == {"lstm-1x8", "mgu-1x8", "mgu-1x8+dyn"} and (table.test_loss < 3).all()
    models = pd.read_csv(tmp_path / "results/toy/models.csv").set_index("model")
    assert abs(models.loc["mgu-1x8", "params_vs_budget"] - 1) < 0.1
    data = json.loads((tmp_path / "results/toy/data.json").read_text())
    for predictor in table.index:
        predictions = pd.read_parquet(tmp_path / f"results/toy/predictions/{predictor}.parquet")
        assert len(predictions) == data["split_sizes"]["test"], predictor
    oracle = pd.read_csv(tmp_path / "results/toy/oracles/mgu-1x8.csv")
    assert len(oracle) > 0
    cells = pd.read_parquet(tmp_path / "results/toy/internals/mgu-1x8/cells.parquet")
    assert cells.unit.max() == models.loc["mgu-1x8", "hidden"] - 1
    saturation = pd.read_parquet(tmp_path / "results/toy/internals/mgu-1x8/saturation.parquet")
    assert set(saturation.gate) == {"MGU gate f"} and saturation.frac_left.between(0, 1).all()
    for name in ("saturation.png", "brackets/brackets-toy-quote.png", "tsne.png", "arch_errors.png"):
        assert (tmp_path / "results/figures/toy" / name).stat().st_size > 1000, name
    store = json.loads((tmp_path / "results/toy/explore/mgu-1x8/store.json").read_text())
    assert store["arch"] == "mgu" and "f" in store["kinds"]
    # the user's module is in its models' fingerprints, and only theirs
    records = [json.loads(p.read_text()) for p in (tmp_path / ".snakemake" / "metadata").iterdir()]
    train = [r for r in records if r.get("rule") == "train"]
    mgu_code = [p for r in train for p in r["params"] if "myarchs/mgu.py:" in p]
    lstm_code = [p for r in train for p in r["params"] if "rnnlens/recurrent.py:" in p]
    assert mgu_code and lstm_code and not any("myarchs/mgu.py" in code for code in lstm_code)

    # half a protocol: refused before any job runs
    (tmp_path / "myarchs" / "half.py").write_text("def count_parameters(arch, layers, hidden, vocab_size):\n"
                                                  "    return 1\n")
    config["architectures"]["half"] = "myarchs.half"
    config["grid"]["arch"] = ["lstm", "half"]
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run(snakemake + ["-n"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "architectures.half: module myarchs.half lacks build_model, internals_runner" in proc.stdout + proc.stderr
