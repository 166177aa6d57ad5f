import numpy as np
import pytest
import torch

from conftest import markov_text
from rnnlens.corpus import PreparedCorpus
from rnnlens.evaluate import batch_rows, evaluate, predict_test
from rnnlens.model import ModelSpec
from rnnlens.recurrent import CharRNN
from rnnlens.predictions import read_predictions


def _model(corpus, arch="lstm", layers=2, seed=0, scale=0.5):
    torch.manual_seed(seed)
    model = CharRNN(ModelSpec(arch, layers, 12, corpus.vocab_size))
    model.init_uniform(scale)  # larger than the paper's init, so the state carries information far
    return model.eval()


@torch.no_grad()
def _sequential(model, corpus):
    """Reference: one batch-1 pass over the whole corpus; p of every test byte given everything before it."""
    idx = torch.from_numpy(corpus.encode(corpus.data))
    logits, _ = model(idx[None, :-1])
    probs = torch.softmax(logits[0], -1)
    positions = corpus.positions("test")
    p = probs[torch.arange(len(idx) - 1), idx[1:]].numpy()[positions - 1]
    am = corpus.vocab[probs.argmax(-1).numpy()][positions - 1]
    return p, am


def test_layout_covers_each_position_once():
    rows = batch_rows([(1000, 1333)], 10)
    assert len(rows) == 10 and rows[0] == (1000, 34)
    covered = np.concatenate([np.arange(s, s + n) for s, n in rows])
    assert np.array_equal(covered, np.arange(1000, 1333))
    # several pieces: rows never cross a seam, and every position is covered once
    pieces = [(100, 150), (300, 390), (500, 510)]
    rows = batch_rows(pieces, 6)
    covered = np.concatenate([np.arange(s, s + n) for s, n in rows])
    assert np.array_equal(covered, np.concatenate([np.arange(a, b) for a, b in pieces]))
    assert all(any(a <= s and s + n <= b for a, b in pieces) for s, n in rows)
    assert batch_rows(pieces, 2) == [(100, 50), (300, 90), (500, 10)]


def test_one_stream_with_full_warmup_equals_sequential_pass(prepared):
    corpus = PreparedCorpus.load(prepared(markov_text(3000)))
    model = _model(corpus)
    ref_p, ref_am = _sequential(model, corpus)
    got = predict_test(model, corpus, streams=1, warmup=10**6, chunk=97)
    assert np.allclose(got["p"], ref_p, atol=1e-5)
    assert np.array_equal(got["argmax"], ref_am)
    assert np.array_equal(got["target"], corpus.split("test"))


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru"])
def test_streams_with_warmup_match_sequential_pass(prepared, arch):
    corpus = PreparedCorpus.load(prepared(markov_text(6000)))
    model = _model(corpus, arch, scale=0.08)
    ref_p, _ = _sequential(model, corpus)
    got = predict_test(model, corpus, streams=7, warmup=400, chunk=50)
    assert len(got["p"]) == len(ref_p) == 600
    warm_error = np.abs(got["p"] - ref_p).max()
    assert warm_error < 1e-5
    # without warm-up the first predictions of each stream come from a blank state and differ
    cold = predict_test(model, corpus, streams=7, warmup=0, chunk=50)
    assert np.abs(cold["p"] - ref_p).max() > max(1e-5, 10 * warm_error)


def test_predictions_parquet_schema_and_loss(prepared, tmp_path):
    corpus = PreparedCorpus.load(prepared(markov_text(3000)))
    model = _model(corpus)
    meta = evaluate(model, {"best_val_loss": 1.0}, corpus, tmp_path / "p.parquet", "lstm-2x12", streams=4,
                    warmup=100)
    df, stored = read_predictions(tmp_path / "p.parquet")
    assert list(df.columns) == ["pos", "target", "p", "argmax", "p_argmax"]
    assert str(df.pos.dtype) == "int32" and str(df.target.dtype) == "uint8" and str(df.p.dtype) == "float32"
    assert np.array_equal(df.pos, np.arange(300)) and df.pos.is_unique
    assert stored["model"] == "lstm-2x12" and stored["corpus"] == "toy"
    assert stored["test_loss"] == pytest.approx(-np.log(df.p.astype(float)).mean(), rel=1e-6)
    assert stored["params"] == sum(p.numel() for p in model.parameters())
    assert (df.p_argmax >= df.p - 1e-7).all()
