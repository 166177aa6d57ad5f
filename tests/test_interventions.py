import numpy as np
import pandas as pd
import pytest
import torch

from rnnlens.corpus import PreparedCorpus
from rnnlens.errors import InputError
from rnnlens.evaluate import predict_test
from rnnlens.interventions import Intervention, predict_with_intervention, unit_means
from rnnlens.model import ModelSpec
from rnnlens.recurrent import CharRNN, LayerwiseRunner, reference_internals


def random_model(arch, layers=2, hidden=12, vocab=5, seed=0):
    torch.manual_seed(seed)
    model = CharRNN(ModelSpec(arch, layers, hidden, vocab))
    model.init_uniform(0.5)  # large weights: units that move, so a wrong clamp shows
    return model.eval()


@pytest.mark.parametrize("arch", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("method", ["loop", "fused"])
def test_clamped_runner_matches_the_equations_step_by_step(arch, method):
    model = random_model(arch)
    idx = torch.randint(0, 5, (3, 40), generator=torch.Generator().manual_seed(1))
    state = model(idx[:, :7])[1]  # a carried state, not zeros
    per_step = torch.randn(3, 40, 2, generator=torch.Generator().manual_seed(2))
    runner = LayerwiseRunner(model, method)
    for clamp in ({1: ([3, 7], per_step)}, {0: ([0], torch.tensor([0.0]))}):
        acts, new_state = runner.run(idx, state, clamp=clamp)
        ref, ref_state = reference_internals(model, idx, state, clamp=clamp)
        cell = "c" if arch == "lstm" else "h"
        layer, (units, values) = next(iter(clamp.items()))
        held = acts[layer][cell][..., units]
        assert torch.allclose(held, torch.as_tensor(values).expand_as(held))
        for ours, theirs in zip(acts, ref):
            for name in theirs:
                assert torch.allclose(ours[name], theirs[name], atol=1e-5), name
        for ours, theirs in zip(torch.as_tensor(new_state[0] if arch == "lstm" else new_state).flatten(),
                                torch.as_tensor(ref_state[0] if arch == "lstm" else ref_state).flatten()):
            assert abs(float(ours - theirs)) < 1e-5
        # the clamp acts inside the recurrence: later steps of the other units and the layers above change
        free, _ = runner.run(idx, state)
        other = [u for u in range(12) if u not in units]
        assert (free[-1]["h"][:, 5:, other] - acts[-1]["h"][:, 5:, other]).abs().max() > 1e-3


@pytest.mark.parametrize("arch", ["lstm", "gru", "rnn"])
def test_holding_units_at_their_own_values_reproduces_the_model(arch, one_thread):
    model = random_model(arch, seed=3)
    idx = torch.randint(0, 5, (4, 60), generator=torch.Generator().manual_seed(4))
    runner = LayerwiseRunner(model, "loop" if arch != "rnn" else "auto")
    free, _ = runner.run(idx)
    cell = "c" if arch == "lstm" else "h"
    units = [1, 4, 9]
    held, _ = runner.run(idx, clamp={0: (units, free[0][cell][..., units].clone()),
                                     1: (units, free[1][cell][..., units].clone())})
    logits, _ = model(idx)
    assert (runner.logits(held) - logits).abs().max() < 1e-5
    # the same loop with the same numbers written back: bit for bit (a vanilla RNN's free run is fused)
    assert (runner.logits(held) - runner.logits(free)).abs().max() <= (0 if runner.method == "loop" else 1e-6)


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_a_patch_from_the_same_text_is_the_identity(arch, prepared, one_thread):
    corpus = PreparedCorpus.load(prepared(split=(0.6, 0.1, 0.3)))
    model = random_model(arch, vocab=corpus.vocab_size, seed=5)
    own = predict_test(model, corpus, streams=4, warmup=50, chunk=70)
    same = Intervention(2, [0, 3, 5], "patch", source=corpus.data.copy())
    patched = predict_with_intervention(model, corpus, same, streams=4, warmup=50, chunk=70)
    assert np.abs(patched["p"] - own["p"]).max() < 1e-6
    assert (patched["argmax"] == own["argmax"]).all() and (patched["target"] == own["target"]).all()
    assert patched["interventions"] == ["patch-L2U0-3-5"]
    # a patch from another text changes the predictions, and so does an ablation
    other = corpus.data.copy()
    other[other == ord("a")] = ord("b")
    changed = predict_with_intervention(model, corpus, Intervention(1, range(12), "patch", source=other),
                                        streams=4, warmup=50, chunk=70)
    assert np.abs(changed["p"] - own["p"]).max() > 1e-3
    zeroed = predict_with_intervention(model, corpus, Intervention(1, [2], "value", values=0.0), streams=4,
                                       warmup=50, chunk=70, keep_probs=True)
    assert np.abs(zeroed["p"] - own["p"]).max() > 1e-3
    # keep_probs: every position's distribution, whose true byte's and largest entries are p and p_argmax
    probs, target = zeroed["probs"], corpus.encode(zeroed["target"])
    assert probs.shape == (len(zeroed["p"]), corpus.vocab_size) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.abs(probs[np.arange(len(target)), target] - zeroed["p"]).max() < 1e-6
    assert (corpus.vocab[probs.argmax(1)] == zeroed["argmax"]).all()
    assert np.abs(probs.max(1) - zeroed["p_argmax"]).max() < 1e-6


def test_unit_means_average_the_training_split(prepared, one_thread):
    corpus = PreparedCorpus.load(prepared(split=(0.6, 0.1, 0.3)))
    model = random_model("lstm", vocab=corpus.vocab_size, seed=6)
    means = unit_means(model, corpus, streams=1, warmup=0, max_positions=0)
    a, b = corpus.pieces["train"][0]
    # one stream over the whole split from a zero state: the plain run over the training text
    acts, _ = reference_internals(model, torch.from_numpy(corpus.encode(corpus.data[a:b]))[None])
    expected = np.stack([layer["c"][0].double().mean(0).numpy() for layer in acts])
    assert np.abs(means - expected).max() < 1e-5


def test_bad_interventions_are_refused(prepared, monkeypatch):
    corpus = PreparedCorpus.load(prepared())
    model = random_model("lstm", vocab=corpus.vocab_size)
    with pytest.raises(InputError, match="layer 3 is outside"):
        predict_with_intervention(model, corpus, Intervention(3, [0], "value", values=0))
    with pytest.raises(InputError, match="units \\[12\\] outside"):
        predict_with_intervention(model, corpus, Intervention(1, [12], "value", values=0))
    with pytest.raises(InputError, match="same length"):
        predict_with_intervention(model, corpus, Intervention(1, [0], "patch", source=corpus.data[:-1]))
    with pytest.raises(InputError, match="mode"):
        Intervention(1, [0], "scale")
    # an architecture whose runner cannot clamp (the README's example, docs/examples/mgu.py) says so
    import json

    from conftest import ROOT
    from rnnlens import archs

    monkeypatch.setenv(archs.ENV, json.dumps({"mgu": str(ROOT / "docs" / "examples" / "mgu.py")}))
    torch.manual_seed(0)
    mgu = archs.load("mgu").build_model(ModelSpec("mgu", 1, 8, corpus.vocab_size))
    with pytest.raises(InputError, match="not supported for the mgu architecture"):
        predict_with_intervention(mgu, corpus, Intervention(1, [0], "value", values=0))


def test_the_line_position_cell_is_judged_on_the_line_breaks_first_byte():
    """With CRLF line ends the `\n` follows `\r` with certainty, so no cell can help predict it: the target is `\r`."""
    from rnnlens.cell_effects import masks, target_char

    unix = np.frombuffer(b"ab cd\nefg\nh ij\n" * 20, dtype=np.uint8)
    crlf = np.frombuffer(b"ab cd\r\nefg\r\nh ij\r\n" * 20, dtype=np.uint8)
    assert target_char("line_pos", unix) == "\n" and target_char("line_pos", crlf) == "\r"
    assert target_char("in_dquote", crlf) == '"'
    before = pd.DataFrame({"line_pos": np.arange(len(crlf)) % 7})
    holds, target = masks("line_pos", before, crlf, target_char("line_pos", crlf))
    assert target.sum() == int(((crlf == ord("\r")) & holds).sum()) > 0 and not target[crlf == ord("\n")].any()


def test_an_intervention_is_a_predictor_that_table1_reads_as_its_own_arch(prepared, tmp_path, one_thread):
    import pandas as pd

    from rnnlens.cli import main
    from rnnlens.model import save_model
    from rnnlens.picks import pick_model
    from rnnlens.predictions import read_meta
    from rnnlens.tables import table1

    data = prepared(split=(0.6, 0.1, 0.3))
    corpus = PreparedCorpus.load(data)
    model = random_model("lstm", layers=1, vocab=corpus.vocab_size, seed=7)
    save_model(tmp_path / "model.pt", model, {"model": "lstm-1x12"})
    common = ["--model", str(tmp_path / "model.pt"), "--data", str(data), "--model-id", "lstm-1x12", "--streams", "4",
              "--warmup", "50"]
    own, zeroed = tmp_path / "lstm-1x12.parquet", tmp_path / "lstm-1x12~zero-L1U3.parquet"
    assert main(["evaluate", *common, "--out", str(own)]) == 0
    assert main(["intervene", *common, "--out", str(zeroed), "--layer", "1", "--units", "3", "--mode", "value"]) == 0
    meta = read_meta(zeroed)
    assert meta["model"] == "lstm-1x12~zero-L1U3" and meta["base_model"] == "lstm-1x12"
    assert meta["intervention"] == {"layer": 1, "units": [3], "mode": "value", "value": 0.0}
    assert pd.read_parquet(zeroed).shape == pd.read_parquet(own).shape
    assert meta["test_loss"] != read_meta(own)["test_loss"]
    models = tmp_path / "models.csv"
    pd.DataFrame([{"corpus": corpus.name, "model": "lstm-1x12", "arch": "lstm", "layers": 1, "size": 12,
                   "hidden": 12, "params": 0}]).to_csv(models, index=False)
    table = table1([own, zeroed], [models]).set_index("model")
    assert table.loc["lstm-1x12~zero-L1U3", "arch"] == "lstm~zero-L1U3" and table.loc["lstm-1x12", "arch"] == "lstm"
    assert table.loc["lstm-1x12~zero-L1U3", "hidden"] == 12
    table.reset_index().to_csv(tmp_path / "t1.csv", index=False)
    assert pick_model(tmp_path / "t1.csv", corpus.name, "lstm") == "lstm-1x12"  # the best LSTM stays unaltered


@pytest.mark.slow
def test_ablating_a_trained_lstms_quote_cell_costs_closing_quotes_more_than_any_other_unit(tmp_path, one_thread):
    """The planted long-range dependency: quoted spans of 20-60 characters must close. A small LSTM learns it;
    its best in_dquote cell, held at its training mean, costs clearly more on closing quotes than on other
    characters, and more than every other unit of its layer does (the controls)."""
    import pandas as pd

    from rnnlens.cli import main
    from rnnlens.model import save_model
    from test_cells import quoted_corpus, train_tbptt, write_corpus

    corpus = write_corpus(tmp_path, quoted_corpus(120_000))
    torch.manual_seed(0)
    model = CharRNN(ModelSpec("lstm", 1, 8, corpus.vocab_size))
    model.init_uniform(0.08)
    train_tbptt(model, torch.from_numpy(corpus.encode(corpus.split("train"))), steps=600)
    save_model(tmp_path / "model.pt", model, {"model": "lstm-1x8"})
    data, model_pt = str(tmp_path / "data.json"), str(tmp_path / "model.pt")
    assert main(["internals", "--model", model_pt, "--data", data, "--out-dir", str(tmp_path / "internals"),
                 "--streams", "10", "--warmup", "300", "--windows", "1", "--window-chars", "100"]) == 0
    assert main(["best-cells", "--tables", str(tmp_path / "internals" / "cells.parquet"), "--out",
                 str(tmp_path / "best_cells.csv")]) == 0
    out, figure = tmp_path / "cell_effects_quotes.csv", tmp_path / "cell_effects_quotes.png"
    assert main(["cell-effects", "--models", model_pt, "--data", data, "--best-cells", str(tmp_path / "best_cells.csv"),
                 "--out", str(out), "--figure", str(figure), "--features", "in_dquote,line_pos", "--controls", "7",
                 "--streams", "10", "--warmup", "300", "--mean-positions", "20000"]) == 0
    table = pd.read_csv(out)
    quote = table[table.feature == "in_dquote"]
    best, controls = quote[quote.role == "best"].iloc[0], quote[quote.role == "control"]
    assert best.score > 0.99 and best.targets > 100  # a real quote cell, and enough closing quotes to measure
    assert len(controls) == 7 and best.unit not in set(controls.unit)  # every other unit of the layer
    print(f"\nbest in_dquote cell L{best.layer}U{best.unit} (AUC {best.score:.4f}): +{best.dloss_target:.3f} nats on "
          f"{best.targets} closing quotes, +{best.dloss_other:.3f} on other characters; controls on closing quotes: "
          + ", ".join(f"U{r.unit} {r.dloss_target:+.3f}" for r in controls.itertuples()))
    assert best.dloss_target > 5 * best.dloss_other
    assert best.dloss_target > 1.5 * controls.dloss_target.max()
    assert best.dloss_target > 1.0  # nats: the closing quote becomes far less predictable
    assert set(table.feature) == {"in_dquote", "line_pos"} and len(table) == 16
    assert figure.exists() and figure.with_suffix(".pdf").exists()


@pytest.mark.slow
def test_workflow_writes_cell_effects_and_declared_interventions(tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd
    import yaml

    from conftest import ROOT, markov_text, run_env

    for name in ("Snakefile", "workflow", "src", "profiles", "envs", "config.yaml"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    code = b"".join(b'  if (x[%d] > 0) { y = "abc"; }\n' % (i % 7) for i in range(250))
    (tmp_path / "corpus.txt").write_bytes(markov_text(4000) + code)
    config = {
        "corpora": {"toy": {"path": str(tmp_path / "corpus.txt"), "split": {"train": 0.8, "val": 0.1, "test": 0.1}}},
        "grid": {"arch": ["lstm", "lru"], "layers": [1], "size": [8]},
        "training": {"seed": 1, "batch_size": 8, "seq_len": 20, "max_epochs": 1, "patience": 2,
                     "checkpoint_seconds": 60, "device": "cpu"},
        "evaluation": {"streams": 4, "warmup": 50},
        "resources": {"train_threads": 1},
        "analysis": {"internals": {"max_positions": 800, "threads": 1},
                     "cell_effects": {"features": ["in_dquote", "brace_depth"], "controls": 2, "max_positions": 600,
                                      "threads": 1},
                     "interventions": [{"model": "lstm-1x8", "layer": 1, "units": [0, 1]},
                                       {"model": "lstm-1x8", "layer": 1, "units": [2], "mode": "value"},
                                       {"model": "lru-1x8", "layer": 1, "units": [0], "mode": "value"}]},
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    target = "results/tables/cell_effects_toy.csv"
    proc = subprocess.run([str(Path(sys.executable).parent / "snakemake"), target, "results/toy/table1.csv",
                           "--cores", "2", "--configfile",
                           "tiny.yaml"], cwd=tmp_path, env=run_env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(tmp_path / target)
    # the LRU clamps its state too (the transformer: test_interventions_archs.py, on the command line)
    assert set(table.model) == {"lstm-1x8", "lru-1x8"} and set(table.feature) == {"in_dquote", "brace_depth"}
    roles = table.groupby(["model", "feature"]).role.value_counts().unstack()
    assert len(roles) == 4 and (roles[["best", "control"]].to_numpy() == [1, 2]).all()
    assert (table.positions > 500).all() and table.dloss_all.notna().all()
    assert "skipped" not in (tmp_path / "results/logs/toy/cell_effects.log").read_text()
    assert (tmp_path / "results/figures/toy/cell_effects.png").stat().st_size > 1000
    # the declared interventions are predictors of their own, in Table 1 beside their model
    table1 = pd.read_csv(tmp_path / "results/toy/table1.csv").set_index("model")
    assert table1.loc["lstm-1x8~ablate-L1U0-1", "arch"] == "lstm~ablate-L1U0-1"
    assert table1.loc["lstm-1x8~zero-L1U2", "arch"] == "lstm~zero-L1U2"
    assert table1.loc["lstm-1x8~zero-L1U2", "hidden"] == table1.loc["lstm-1x8", "hidden"]
    assert table1.loc["lstm-1x8~ablate-L1U0-1", "test_loss"] != table1.loc["lstm-1x8", "test_loss"]
    assert table1.loc["lru-1x8~zero-L1U0", "arch"] == "lru~zero-L1U0"
    assert table1.loc["lru-1x8~zero-L1U0", "test_loss"] != table1.loc["lru-1x8", "test_loss"]
