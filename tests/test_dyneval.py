"""Dynamic evaluation chooses its setting on validation and never silently hurts: a setting that diverges is not
chosen, a model that no setting helps falls back to its static reading with a flag, and Table 1 flags every +dyn
row that is worse than its static model."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import markov_text
from rnnlens.cli import run
from rnnlens.corpus import PreparedCorpus, prepare
from rnnlens.dyneval import select_and_predict, validation_pieces
from rnnlens.errors import InputError
from rnnlens.model import ModelSpec, load_model
from rnnlens.predictions import read_meta
from rnnlens.tables import DYN_FLAG_MARK, table1, table1_markdown
from rnnlens.train import TrainConfig, train


def test_validation_pieces_spread_over_the_split_within_the_budget():
    pieces = [(1000 * i + 800, 1000 * i + 900) for i in range(10)]  # ten pieces of 100 bytes
    assert validation_pieces(pieces, 5000) == pieces
    chosen = validation_pieces(pieces, 250)
    assert sum(b - a for a, b in chosen) == 250
    assert chosen[0] == pieces[0] and chosen[-1][0] == pieces[-1][0]  # first and last: the whole split is seen
    assert chosen == [pieces[0], pieces[4], (9800, 9850)]
    assert validation_pieces([(100, 10_000)], 300) == [(100, 400)]


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """A corpus whose validation and test text come from another Markov source than its training text (where
    adaptation has something to learn), and a small LSTM trained on the training text."""
    d = tmp_path_factory.mktemp("shifted")
    data = markov_text(4000, seed=0) + markov_text(1000, seed=1)
    (d / "corpus.bin").write_bytes(data)
    (d / "data.json").write_text(json.dumps(prepare("toy", d / "corpus.bin", {"train": 0.8, "val": 0.1, "test": 0.1})))
    corpus = PreparedCorpus.load(d / "data.json")
    torch.manual_seed(0)
    cfg = TrainConfig(batch_size=8, seq_len=32, max_epochs=4, learning_rate=1e-2, val_streams=2, device="cpu",
                      seed=0)
    spec = ModelSpec("lstm", 1, 16, corpus.vocab_size)
    assert train(cfg, corpus, spec, d / "model.pt", d / "history.csv", d / "checkpoint.pt") == 0
    pd.DataFrame([{"corpus": "toy", "model": "lstm-1x16", "arch": "lstm", "layers": 1, "size": 16, "hidden": 16,
                   "params": sum(p.numel() for p in load_model(d / "model.pt")[0].parameters())}]
                 ).to_csv(d / "models.csv", index=False)
    return d


def _dyneval(d, out, lrs, decays=("0",), rule="sgd"):
    assert run(["dyneval", "--model", str(d / "model.pt"), "--data", str(d / "data.json"), "--out", str(out),
                "--model-id", "lstm-1x16", "--rule", rule, "--lr", *map(str, lrs), "--decay", *map(str, decays),
                "--segment", "20", "--warmup", "50", "--val-bytes", "300", "--ms-bytes", "500"]) == 0
    return read_meta(out)


def test_a_diverging_setting_is_never_chosen_and_table1_flags_what_does_not_help(shifted, tmp_path, caplog):
    d = shifted
    caplog.set_level("INFO", logger="rnnlens")
    static = tmp_path / "lstm-1x16.parquet"
    assert run(["evaluate", "--model", str(d / "model.pt"), "--data", str(d / "data.json"), "--out", str(static),
                "--model-id", "lstm-1x16", "--streams", "2", "--warmup", "50", "--device", "cpu"]) == 0

    # lr 1e4 alone: the weights blow up on validation; the predictor is the static reading, flagged
    alone = _dyneval(d, tmp_path / "alone" / "lstm-1x16+dyn.parquet", ["1e4"])["dynamic"]
    [candidate] = alone["candidates"]
    assert candidate["val_loss"] is None or candidate["val_loss"] > alone["static_val_loss"]
    assert alone["fallback"] == "validation" and alone["lr"] is None and alone["updates"] == 0
    assert alone["flag"].startswith("no adaptation")
    assert read_meta(tmp_path / "alone" / "lstm-1x16+dyn.parquet")["test_loss"] == pytest.approx(
        alone["static_test_loss"], abs=1e-6)
    assert any(r.levelname == "WARNING" and "no adaptation" in r.getMessage() for r in caplog.records)

    # the same diverging lr among a grid: validation picks a setting that helps, and it helps on test too
    caplog.clear()
    grid = _dyneval(d, tmp_path / "grid" / "lstm-1x16+dyn.parquet", ["0.3", "1e4"], ["0", "0.05"])["dynamic"]
    assert [(c["lr"], c["decay"]) for c in grid["candidates"]] == [(0.3, 0), (0.3, 0.05), (1e4, 0), (1e4, 0.05)]
    finite = [c for c in grid["candidates"] if c["val_loss"] is not None]
    best = min(finite, key=lambda c: c["val_loss"])
    assert grid["lr"] == 0.3 and (grid["lr"], grid["decay"]) == (best["lr"], best["decay"])
    assert best["val_loss"] < grid["static_val_loss"]  # the shifted text is learnt
    assert grid["fallback"] is None and grid["flag"] is None and grid["updates"] > 0
    assert grid["adapted_test_loss"] < grid["static_test_loss"]
    assert not any(r.levelname == "WARNING" for r in caplog.records)

    # Table 1: a +dyn value is never worse than its static model without a flag
    preds = [static, tmp_path / "alone" / "lstm-1x16+dyn.parquet"]
    df = table1(preds, [d / "models.csv"])
    rows = df.set_index("model")
    dyn, base = rows.loc["lstm-1x16+dyn"], rows.loc["lstm-1x16"]
    assert isinstance(dyn.dyn_flag, str) and "no adaptation" in dyn.dyn_flag
    assert pd.isna(base.dyn_flag)
    md = table1_markdown(df)
    assert f"{DYN_FLAG_MARK} dynamic evaluation flagged" in md and f"- lstm-1x16+dyn: {dyn.dyn_flag}" in md
    df = table1([static, tmp_path / "grid" / "lstm-1x16+dyn.parquet"], [d / "models.csv"]).set_index("model")
    assert df.loc["lstm-1x16+dyn", "test_loss"] < df.loc["lstm-1x16", "test_loss"]
    assert pd.isna(df.loc["lstm-1x16+dyn", "dyn_flag"])


def test_table1_flags_a_dyn_row_worse_than_its_model_even_without_a_flag_in_its_metadata(shifted, tmp_path):
    """A predictor made before the selection existed (no flag in its metadata), worse than static: flagged."""
    from rnnlens.predictions import write_predictions

    target = np.full(10, 65)
    write_predictions(tmp_path / "lstm-1x16.parquet", target, np.full(10, 0.5), meta={
        "corpus": "toy", "model": "lstm-1x16"})
    write_predictions(tmp_path / "lstm-1x16+dyn.parquet", target, np.full(10, 0.2), meta={
        "corpus": "toy", "model": "lstm-1x16+dyn", "base_model": "lstm-1x16",
        "dynamic": {"rule": "rms", "lr": 3e-4, "decay": 0.03}})
    df = table1([tmp_path / "lstm-1x16.parquet", tmp_path / "lstm-1x16+dyn.parquet"], [shifted / "models.csv"])
    flag = df.set_index("model").loc["lstm-1x16+dyn", "dyn_flag"]
    assert flag == "worse than lstm-1x16 in this table (1.6094 vs 0.6931)"
    assert f"1.609{DYN_FLAG_MARK}" in table1_markdown(df)


def test_selection_restores_the_trained_weights_and_checks_its_settings(shifted):
    model, _ = load_model(shifted / "model.pt")
    corpus = PreparedCorpus.load(shifted / "data.json")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result, selection = select_and_predict(model, corpus, [0.3], [0.0], segment=20, warmup=50, rule="rms",
                                           ms_bytes=500, val_bytes=200)
    assert len(result["logp"]) == corpus.split_size("test") and selection["val_bytes"] == 200
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(InputError, match="every lr > 0"):
        select_and_predict(model, corpus, [0.0], [0.0])
    with pytest.raises(InputError, match="decay in"):
        select_and_predict(model, corpus, [0.1], [1.5])


def test_figures_carry_the_flag(tmp_path):
    """The comparison across architectures keeps Table 1's flag for its +dyn bar (and marks it), and the label
    figures give a model says when its dynamic evaluation is flagged."""
    from rnnlens.compare import compare, plot
    from rnnlens.convergence import label
    from rnnlens.oracles import OracleConfig, TextFacts, analyse

    text = np.frombuffer(b"the cat sat on the mat; the cat ran.", dtype=np.uint8)
    facts = TextFacts(text, (10, len(text)), (0, 10))
    for model, p in (("lstm-1x16", 0.3), ("lstm-1x16+dyn", 0.35)):
        table, _, _ = analyse(facts, np.full(facts.n, p), {}, OracleConfig(rare_counts=()), model=model)
        table.to_csv(tmp_path / f"{model}.csv", index=False)
    pd.DataFrame([{"corpus": "toy", "model": "lstm-1x16", "arch": "lstm", "test_loss": 1.2, "dyn_flag": None},
                  {"corpus": "toy", "model": "lstm-1x16+dyn", "arch": "lstm+dyn", "test_loss": 1.3,
                   "dyn_flag": "worse than lstm-1x16 in this table (1.3000 vs 1.2000)"}]).to_csv(tmp_path / "t1.csv",
                                                                                                 index=False)
    df = compare(tmp_path / "t1.csv", "toy", [tmp_path / "lstm-1x16.csv", tmp_path / "lstm-1x16+dyn.csv"])
    assert df[df.arch == "lstm+dyn"].dyn_flag.notna().all() and df[df.arch == "lstm"].dyn_flag.isna().all()
    plot(df, tmp_path / "arch_errors.png", "toy")
    assert (tmp_path / "arch_errors.png").stat().st_size > 1000
    assert label("lstm-1x16+dyn", {"dynamic": {"flag": "no adaptation: ..."}}).endswith("(dyn flagged: no gain over static)")
    assert label("lstm-1x16+dyn", {"dynamic": {"flag": None}}) == "lstm-1x16+dyn"
