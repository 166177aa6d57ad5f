"""The analyses pick their models from Table 1 themselves: a failing pick fails the analysis, its message in the log."""
import argparse
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, markov_text, run_env
from rnnlens.cli import main
from rnnlens.corpus import PreparedCorpus
from rnnlens.picks import _candidates, one_of, pick_model
from rnnlens.predictions import write_predictions

# corpus toy: two LSTM sizes and a GRU; the 12-unit LSTM is the best LSTM
TABLE1 = [("lstm-1x8", "lstm", 8, 1.9), ("lstm-1x12", "lstm", 12, 1.5), ("gru-1x8", "gru", 8, 1.7)]


@pytest.fixture
def models(prepared, tmp_path):
    """data.json, Table 1 and the predictions of the models in it and of a 2-gram, on one tiny corpus."""
    data = prepared(markov_text(3000, alphabet=b"ab (c)\n"))  # brackets occur
    corpus = PreparedCorpus.load(data)
    target = corpus.split("test")
    rng = np.random.default_rng(0)
    paths = {}
    for model in [m for m, *_ in TABLE1] + ["ngram-2"]:
        paths[model] = tmp_path / f"{model}.parquet"
        write_predictions(paths[model], target, rng.uniform(0.05, 1, len(target)),
                          None if model.startswith("ngram") else rng.integers(0, 256, len(target)),
                          meta={"model": model, "corpus": "toy"})
    pd.DataFrame([{"corpus": "toy", "model": m, "arch": a, "layers": 1, "size": s, "test_loss": loss}
                  for m, a, s, loss in TABLE1]).to_csv(tmp_path / "table1.csv", index=False)
    return data, tmp_path / "table1.csv", paths


def test_pick_model_chooses_by_test_loss(models):
    _, table1, _ = models
    assert pick_model(table1, "toy", "lstm") == "lstm-1x12"
    assert pick_model(table1, "toy", "lstm", size="min") == "lstm-1x8"


def test_the_analyses_resolve_their_picks(models, tmp_path):
    data, table1, paths = models
    pick = ["--table1", str(table1), "--pick", "lstm", "--candidates", *(str(paths[m]) for m, *_ in TABLE1)]
    assert main(["perchar", *pick, "--b", str(paths["ngram-2"]), "--csv-out", str(tmp_path / "pc.csv"),
                 "--fig-out", str(tmp_path / "pc.png"), "--overlap-out", str(tmp_path / "pc.json")]) == 0
    assert set(pd.read_csv(tmp_path / "pc.csv").label_a) == {"lstm-1x12"}
    # brackets: the best of each architecture (and of each LSTM depth at the largest size), then the n-gram
    assert main(["brackets", "--data", str(data), *pick, "--predictions", str(paths["ngram-2"]), "--csv-out",
                 str(tmp_path / "b.csv"), "--fig-dir", str(tmp_path / "b")]) == 0
    assert set(pd.read_csv(tmp_path / "b.csv").model) == {"gru-1x8", "lstm-1x12", "ngram-2"}
    assert main(["small-vs-large", "--data", str(data), *pick, "--csv-out", str(tmp_path / "s.csv"),
                 "--fig-out", str(tmp_path / "s.png")]) == 0
    table = pd.read_csv(tmp_path / "s.csv")
    assert {"lstm-1x8", "lstm-1x12"} <= set(table.astype(str).stack())


def test_a_picked_model_with_several_seeds_brings_every_seed_to_the_comparisons(models, tmp_path):
    """training.seeds: a further seed's predictions (predictions/seeds/...) carry the same model id; the error
    breakdown and the per-character gains read every seed of the picked model, the documented seed's file first."""
    data, table1, paths = models
    seeds_dir = tmp_path / "seeds" / "lstm-1x12"
    seeds_dir.mkdir(parents=True)
    seed2 = seeds_dir / "seed-2.parquet"
    target = PreparedCorpus.load(data).split("test")
    write_predictions(seed2, target, np.random.default_rng(2).uniform(0.05, 1, len(target)),
                      np.random.default_rng(3).integers(0, 256, len(target)), meta={"model": "lstm-1x12", "corpus": "toy"})
    candidates = [str(seed2)] + [str(paths[m]) for m, *_ in TABLE1]  # the further seed listed first on purpose
    args = argparse.Namespace(table1=str(table1), pick="lstm", candidates=candidates)
    assert one_of(args, "a", None) == str(paths["lstm-1x12"])  # one model, one file: the documented seed's
    assert one_of(args, "a", None, every_seed=True) == [str(paths["lstm-1x12"]), str(seed2)]
    pick = ["--table1", str(table1), "--pick", "lstm", "--candidates", *candidates]
    assert main(["perchar", *pick, "--b", str(paths["ngram-2"]), "--csv-out", str(tmp_path / "pc.csv"),
                 "--fig-out", str(tmp_path / "pc.png"), "--overlap-out", str(tmp_path / "pc.json")]) == 0
    two = pd.read_csv(tmp_path / "pc.csv")
    assert main(["perchar", "--a", str(paths["lstm-1x12"]), "--b", str(paths["ngram-2"]), "--csv-out",
                 str(tmp_path / "one.csv"), "--fig-out", str(tmp_path / "one.png"), "--overlap-out",
                 str(tmp_path / "one.json")]) == 0
    one = pd.read_csv(tmp_path / "one.csv")
    assert set(two.seeds_a) == {2} and set(one.seeds_a) == {1}
    # the two seeds' mean p differs from the documented seed's alone
    assert not np.allclose(two.sort_values("byte")["mean_p_a"].to_numpy(), one.sort_values("byte")["mean_p_a"].to_numpy())


def test_the_documented_seed_comes_first_wherever_the_results_folder_lies(tmp_path):
    """A results folder under a folder named `seeds` (a lab's checkout, say) holds no seed's file there."""
    predictions = tmp_path / "seeds" / "results" / "toy" / "predictions"
    documented, seed2 = predictions / "lstm-1x8.parquet", predictions / "seeds" / "lstm-1x8" / "seed-2.parquet"
    seed2.parent.mkdir(parents=True)
    target = np.frombuffer(b"abc" * 10, dtype=np.uint8)
    for path in (seed2, documented):
        write_predictions(path, target, np.full(len(target), 0.5), target, meta={"model": "lstm-1x8", "corpus": "toy"})
    by_model, corpus = _candidates([str(seed2), str(documented)])
    assert corpus == "toy" and by_model == {"lstm-1x8": [str(documented), str(seed2)]}


def test_a_failing_pick_fails_the_job_with_its_message_in_the_log(models, tmp_path):
    """As the rule runs it: `set -euo pipefail`, the command's output into the rule's log."""
    _, table1, paths = models
    candidates = " ".join(str(paths[m]) for m, *_ in TABLE1)
    log = tmp_path / "perchar.log"
    proc = subprocess.run(
        ["bash", "-c", f"set -euo pipefail; {sys.executable} -m rnnlens perchar --table1 {table1} --pick rnn "
                       f"--candidates {candidates} --b {paths['ngram-2']} --csv-out {tmp_path / 'pc.csv'} "
                       f"--fig-out {tmp_path / 'pc.png'} --overlap-out {tmp_path / 'pc.json'} > {log} 2>&1"],
        env=run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    errors = [line for line in log.read_text().splitlines() if "error" in line]
    assert errors == [f"rnnlens perchar: error: no model of corpus 'toy' matches arch=rnn size=any layers=None in "
                      f"{table1}; is Table 1 up to date with the grid? (rerun the workflow)"]
    assert not (tmp_path / "pc.csv").exists() and not (tmp_path / "pc.png").exists()


def test_a_pick_missing_from_the_candidates_and_a_path_beside_a_pick_are_errors(models, tmp_path, capsys):
    data, table1, paths = models
    common = ["--data", str(data), "--csv-out", str(tmp_path / "o.csv"), "--fig-out", str(tmp_path / "o.png")]
    # Table 1 names a model whose predictions were not given: Table 1 is older than the grid
    assert main(["oracles", *common, "--table1", str(table1), "--pick", "lstm", "--candidates",
                 str(paths["lstm-1x8"])]) == 2
    assert "picks lstm-1x12 for toy, but no --candidates file holds its predictions" in capsys.readouterr().err
    assert main(["oracles", *common, "--predictions", str(paths["lstm-1x8"]), "--pick", "lstm"]) == 2
    assert "give either --predictions PARQUET or --pick ARCH" in capsys.readouterr().err


def test_no_rule_splices_a_command_into_its_shell_line():
    """A $(...) inside a command's arguments can fail without failing the command (bash ignores its status)."""
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        assert "$(" not in smk.read_text(), smk.name


def test_a_dry_run_plans_every_picking_analysis_with_its_pick(tmp_path):
    """Planned from nothing (a folder of its own), so a finished `make demo` in this checkout changes nothing."""
    from conftest import VENV_BIN, workflow_view

    proc = subprocess.run([str(VENV_BIN / "snakemake"), "-n", "-p", "--configfile", "profiles/demo/demo.yaml"],
                          cwd=workflow_view(tmp_path / "wf"), env=run_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    commands = [line for line in proc.stdout.splitlines() if "--pick" in line]
    for command in ("perchar", "brackets --data", "small-vs-large", "oracles --data"):
        assert any(f"rnnlens {command}" in c and "--table1 results/demo/table1.csv --pick lstm --candidates" in c
                   for c in commands), command
    # the demo also asks whether its best cells matter: cell effects of its two 2-layer models
    effects = [line for line in proc.stdout.splitlines() if "rnnlens cell-effects" in line]
    assert len(effects) == 1 and "--model-ids lstm-2x64 gru-2x64 " in effects[0], effects
    assert "results/tables/cell_effects_demo.csv" in effects[0] and "results/figures/demo/cell_effects.png" in effects[0]
