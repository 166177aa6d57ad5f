"""Training seeds as trials (training.seeds): the interval math, the dropout chosen on the mean over seeds, the
config rules, and a real Snakemake run whose Table 1 shows mean ± sd over two seeds."""
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ROOT, markov_text, run_env
from rnnlens.config import ConfigError, check_config, trial_settings
from rnnlens.errors import InputError
from rnnlens.io import torch_load, torch_save
from rnnlens.predictions import write_predictions
from rnnlens.seeds import select_seeds
from rnnlens.tables import seed_summary, table1, table1_markdown

SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
T_975_2DF = 4.302652729911275  # Student's t, 97.5% quantile, 2 degrees of freedom (printed tables)


def test_seed_summary_is_the_t_interval_of_the_mean():
    s = seed_summary([1.0, 1.2, 1.4])
    assert s["n_seeds"] == 3 and s["mean"] == pytest.approx(1.2) and s["sd"] == pytest.approx(0.2)
    half = T_975_2DF * 0.2 / math.sqrt(3)
    assert (s["ci_lo"], s["ci_hi"]) == (pytest.approx(1.2 - half), pytest.approx(1.2 + half))
    # one seed: a mean, no spread
    assert seed_summary([1.3]) == {"n_seeds": 1, "mean": 1.3, "sd": None, "ci_lo": None, "ci_hi": None}
    with pytest.raises(InputError):
        seed_summary([])


def _pred(path, corpus, model, p):
    write_predictions(path, [65] * 10, [p] * 10, meta={"corpus": corpus, "model": model})
    return path


def test_table1_shows_mean_sd_and_interval_over_seeds(tmp_path):
    models = tmp_path / "models.csv"
    pd.DataFrame([
        {"corpus": "wp", "model": "lstm-1x64", "arch": "lstm", "layers": 1, "size": 64, "hidden": 64, "params": 44823},
        {"corpus": "wp", "model": "gru-1x64", "arch": "gru", "layers": 1, "size": 64, "hidden": 77, "params": 45132},
    ]).to_csv(models, index=False)
    preds = [_pred(tmp_path / "lstm.parquet", "wp", "lstm-1x64", 0.3), _pred(tmp_path / "gru.parquet", "wp", "gru-1x64", 0.4)]
    seeds = [_pred(tmp_path / f"lstm-{s}.parquet", "wp", "lstm-1x64", p) for s, p in ((2, 0.25), (3, 0.28))]
    df = table1(preds, [models], {"wp": "warpeace"}, seeds).set_index("model")
    losses = [-math.log(p) for p in (0.3, 0.25, 0.28)]
    mean = sum(losses) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in losses) / 2)
    lstm = df.loc["lstm-1x64"]
    assert lstm.n_seeds == 3 and lstm.test_loss == round(losses[0], 4)  # the documented seed's, for the picks
    assert lstm.test_loss_mean == round(mean, 4) and lstm.test_loss_sd == round(sd, 4)
    half = T_975_2DF * sd / math.sqrt(3)
    assert lstm.ci95_lo == round(mean - half, 4) and lstm.ci95_hi == round(mean + half, 4)
    assert lstm.paper_in_ci == (mean - half <= 1.449 <= mean + half)
    gru = df.loc["gru-1x64"]  # no further seed: n 1, no spread
    assert gru.n_seeds == 1 and pd.isna(gru.test_loss_sd) and pd.isna(gru.ci95_lo)
    md = table1_markdown(df.reset_index())
    assert f"{mean:.3f} \u00b1 {sd:.3f} (n=3) (1.449)" in md
    assert f"{mean - half:.3f}–{mean + half:.3f}" in md
    # without further seeds, the table is the single-seed one
    assert "n_seeds" not in table1(preds, [models], {"wp": "warpeace"}).columns
    with pytest.raises(InputError, match="lstm-2x64"):
        table1(preds, [models], {}, [_pred(tmp_path / "x.parquet", "wp", "lstm-2x64", 0.3)])


def _trial(folder, seed, dropout, val):
    folder.mkdir(parents=True)
    torch_save({"extra": {"train_config": {"seed": seed, "dropout": dropout}, "best_val_loss": val}},
               folder / "model.pt")
    (folder / "history.csv").write_text(f"epoch,val_loss\n1,{val}\n")
    return folder / "model.pt"


def test_dropout_is_chosen_on_the_mean_over_seeds(tmp_path):
    # the documented seed alone would choose dropout 0; over both seeds 0.25 is better
    losses = {(1, 0.0): 1.00, (1, 0.25): 1.02, (2, 0.0): 1.20, (2, 0.25): 1.05}
    trials = {k: _trial(tmp_path / f"seed-{k[0]}/dropout-{k[1]:g}", *k, v) for k, v in losses.items()}
    documented = [trials[1, 0.0], trials[1, 0.25], trials[2, 0.0], trials[2, 0.25]]
    out = tmp_path / "model"
    selection = select_seeds(documented, out / "model.pt", out / "history.csv", out / "selection.json")
    assert selection["dropout"] == 0.25 and selection["seed"] == 1
    assert selection["mean_val_loss"] == pytest.approx(1.035)
    assert selection["val_loss_by_seed"] == {"1": {"0": 1.00, "0.25": 1.02}, "2": {"0": 1.20, "0.25": 1.05}}
    assert torch_load(out / "model.pt")["extra"]["train_config"] == {"seed": 1, "dropout": 0.25}
    # a further seed takes the dropout chosen for the model, not its own best
    extra = tmp_path / "seed2"
    chosen = select_seeds([trials[2, 0.0], trials[2, 0.25]], extra / "model.pt", extra / "history.csv",
                          extra / "selection.json", dropout_of=out / "selection.json")
    assert chosen["dropout"] == 0.25 and chosen["seed"] == 2 and chosen["best_val_loss"] == 1.05
    assert (extra / "history.csv").read_text().endswith("1.05\n")
    with pytest.raises(InputError, match="one seed"):
        select_seeds(documented, extra / "m.pt", extra / "h.csv", extra / "s.json", dropout_of=out / "selection.json")


def _config(**training):
    return {"corpora": {"toy": {"stdlib": True, "split": {"train": 0.8, "val": 0.1, "test": 0.1}}}, "grid": {"arch": ["lstm"], "layers": [1], "size": [8]},
            "training": training}


def test_seeds_config_rules():
    with pytest.raises(ConfigError, match=r"training.seed: 2 differs from training.seeds\[0\] = 1"):
        check_config(_config(seed=2, seeds=[1, 3]), SCHEMA)
    with pytest.raises(ConfigError, match="uniqueItems|non-unique|unique"):
        check_config(_config(seeds=[1, 1]), SCHEMA)
    bad = _config(seeds=[1, 2])
    bad["training_overrides"] = {"lstm": {"seeds": [3]}}
    with pytest.raises(ConfigError, match="training_overrides.lstm.seeds"):
        check_config(bad, SCHEMA)
    # listing seeds leaves the documented seed's trial settings as they were (its jobs do not rerun)
    for plain, seeded in ((_config(), _config(seeds=[1, 2])), (_config(seed=1), _config(seed=1, seeds=[1, 2])),
                          (_config(seed=7), _config(seeds=[7, 2]))):
        check_config(plain, SCHEMA), check_config(seeded, SCHEMA)
        assert trial_settings(plain, "lstm-1x8", 0) == trial_settings(seeded, "lstm-1x8", 0)
    assert trial_settings(_config(seeds=[1, 2]), "lstm-1x8", 0, seed=2)["seed"] == 2


# --- a real run ------------------------------------------------------------------------------------------------------

TABLES = ["results/tables/table1.csv", "results/tables/table1.md"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("seeds")
    for name in ("Snakefile", "workflow", "src", "profiles", "envs", "config.yaml"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, d / name)
    (d / "corpus.txt").write_bytes(markov_text(12000))
    return d


def _write_config(workdir, **training):
    config = {
        "corpora": {"toy": {"path": str(workdir / "corpus.txt"), "split": {"train": 0.8, "val": 0.1, "test": 0.1}}},
        "grid": {"arch": ["lstm", "gru"], "layers": [1], "size": [8]},
        "training": {"seed": 1, "batch_size": 8, "seq_len": 20, "max_epochs": 1, "patience": 2,
                     "checkpoint_seconds": 60, "device": "cpu", **training},
        "evaluation": {"streams": 4, "warmup": 50},
        "resources": {"train_threads": 1},
    }
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))


def _snakemake(workdir, *args):
    cmd = [str(Path(sys.executable).parent / "snakemake"), *TABLES, "--cores", "2", "--configfile", "tiny.yaml", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=run_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _planned(workdir):
    out = _snakemake(workdir, "-n", "--quiet", "rules").stdout
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M) if m.group(1) != "total"}


@pytest.mark.slow
def test_table1_over_two_seeds(workdir):
    _write_config(workdir)
    _snakemake(workdir)
    before = pd.read_csv(workdir / "results/tables/table1.csv").set_index("model")
    assert "n_seeds" not in before

    # one seed listed: the same workflow, nothing to redo
    _write_config(workdir, seeds=[1])
    assert _planned(workdir) == {}

    # a second seed: its trials train; the documented seed's trials stay, only the choice and what follows rerun
    _write_config(workdir, seeds=[1, 2])
    jobs = _planned(workdir)
    assert jobs["train_seed"] == jobs["select_seed"] == jobs["evaluate_seed"] == jobs["select_dropout_seeds"] == 2
    assert not {"train", "select_dropout"} & set(jobs)
    _snakemake(workdir)
    assert _planned(workdir) == {}

    table = pd.read_csv(workdir / "results/tables/table1.csv").set_index("model")
    md = (workdir / "results/tables/table1.md").read_text()
    for model in ("lstm-1x8", "gru-1x8"):
        row = table.loc[model]
        assert row.test_loss == before.loc[model, "test_loss"]  # the documented seed's model is today's
        seed2 = pd.read_parquet(workdir / f"results/toy/predictions/seeds/{model}/seed-2.parquet")
        assert len(seed2) > 0
        assert row.n_seeds == 2 and row.test_loss_sd > 0
        assert row.ci95_lo < row.test_loss_mean < row.ci95_hi
        assert pd.isna(row.paper_in_ci)  # the toy corpus has no paper values
        assert f"{row.test_loss_mean:.3f} \u00b1 {row.test_loss_sd:.3f} (n=2)" in md
        selection = json.loads((workdir / f"results/toy/models/{model}/selection.json").read_text())
        assert set(selection["val_loss_by_seed"]) == {"1", "2"} and selection["seed"] == 1
        weights = [torch_load(workdir / f"results/toy/models/{model}/{s}model.pt")["extra"]["train_config"]["seed"]
                   for s in ("", "seed-2/")]
        assert weights == [1, 2]
    # extra seeds are kept out of the analyses' predictions/*.parquet
    assert sorted(p.name for p in (workdir / "results/toy/predictions").glob("*.parquet")) == [
        "gru-1x8.parquet", "lstm-1x8.parquet"]
    # the training curves read every seed's history, one label per model (drawn as the mean and the seeds' band)
    printed = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "results/figures/training_curves_toy.png",
                              "-n", "-p", "--configfile", "tiny.yaml"], cwd=workdir, env=run_env(),
                             capture_output=True, text=True, timeout=600).stdout
    command = next(line for line in printed.splitlines() if "rnnlens curves" in line)
    for model in ("lstm-1x8", "gru-1x8"):
        assert f"results/toy/models/{model}/history.csv results/toy/models/{model}/seed-2/history.csv" in command
    assert "--labels lstm-1x8 lstm-1x8 gru-1x8 gru-1x8 " in command
