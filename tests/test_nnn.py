"""n-NN baseline: the function it computes, that it learns a known Markov source, its files."""

import json

import numpy as np
import pytest
import torch

from rnnlens.corpus import PreparedCorpus, prepare
from rnnlens.io import atomic_write_bytes, atomic_write_text
from rnnlens.cli import main
from rnnlens.nnn import (NNN, NNNConfig, NNNSpec, count_parameters, load_nnn, nnn_distributions,
                         predict_positions, train_nnn)
from rnnlens.predictions import read_predictions

pytestmark = pytest.mark.usefixtures("one_thread")  # every test here (tests/conftest.py)

ALPHABET = b"abcd"
P_RULE = 0.9  # probability of the deterministic successor; the rest is spread over the other 3 symbols


def order2_source(length, seed=0):
    """Next symbol = x[t-2], shifted by one where x[t-1] is 'a', with probability 0.9. x[t-2] and x[t-1] are
    nearly independent, so given x[t-1] alone the next symbol is nearly uniform: both previous symbols matter."""
    rng = np.random.default_rng(seed)
    x = np.zeros(length, dtype=np.int64)
    x[:2] = rng.integers(0, 4, 2)
    noise = rng.random(length) >= P_RULE
    other = rng.integers(1, 4, length)
    for t in range(2, length):
        rule = (x[t - 2] + (x[t - 1] == 0)) % 4
        x[t] = (rule + other[t]) % 4 if noise[t] else rule
    return bytes(np.frombuffer(ALPHABET, np.uint8)[x])


SOURCE_ENTROPY = -(P_RULE * np.log(P_RULE) + (1 - P_RULE) * np.log((1 - P_RULE) / 3))  # nats/char, ~0.435


def make_corpus(tmp_path, data, name="markov", fractions=None):
    atomic_write_bytes(tmp_path / "corpus.bin", data)
    meta = prepare(name, tmp_path / "corpus.bin", fractions or {"train": 0.8, "val": 0.1, "test": 0.1}, 10)
    atomic_write_text(tmp_path / "data.json", json.dumps(meta))
    return tmp_path / "data.json"


def test_embedding_sum_equals_dense_layer_over_concatenated_one_hots():
    torch.manual_seed(0)
    spec = NNNSpec(n=3, hidden=7, vocab_size=5)
    model = NNN(spec)
    model.init_uniform()
    context = torch.randint(0, 5, (11, 3))
    one_hots = torch.nn.functional.one_hot(context, 5).float().reshape(11, 15)  # [slot0 | slot1 | slot2]
    dense = torch.tanh(one_hots @ model.context.weight + model.hidden_bias)
    expected = model.decoder(dense)
    torch.testing.assert_close(model(context), expected)
    assert sum(p.numel() for p in model.parameters()) == count_parameters(3, 7, 5)


def test_learns_order2_markov_source_and_two_bytes_beat_one(tmp_path):
    corpus = PreparedCorpus.load(make_corpus(tmp_path, order2_source(40_000)))
    cfg = NNNConfig(batch_size=100, max_epochs=8, patience=3, log_seconds=1e9)
    losses = {}
    for n, epochs in ((1, 2), (2, 8)):  # n=1 is at its ln 4 floor after an epoch
        cfg.max_epochs = epochs
        model, stats = train_nnn(corpus, n, [16], cfg)
        encoded = torch.from_numpy(corpus.encode(corpus.data))
        p, _, _ = predict_positions(model, encoded, torch.from_numpy(corpus.positions("test")))
        losses[n] = float(-np.log(p).mean())
    # n=2 sees everything the source depends on: its test loss approaches the source's entropy
    assert losses[2] < SOURCE_ENTROPY + 0.05, losses
    # n=1 cannot know x[t-2]: it stays near ln 4 = 1.386
    assert losses[1] > np.log(4) - 0.1, losses


def test_seeded_training_is_deterministic(tmp_path):
    corpus = PreparedCorpus.load(make_corpus(tmp_path, order2_source(5_000)))
    cfg = NNNConfig(batch_size=50, max_epochs=2, log_seconds=1e9)
    a, stats_a = train_nnn(corpus, 2, [8], cfg)
    b, stats_b = train_nnn(corpus, 2, [8], cfg)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert stats_a["best_val_loss"] == stats_b["best_val_loss"]


def test_cli_picks_hidden_size_writes_predictions_model_and_stats(tmp_path):
    data_json = make_corpus(tmp_path, order2_source(8_000))
    out = tmp_path / "out"
    rc = main(["nnn", "--data", str(data_json), "--n", "2", "--hidden", "2,16", "--epochs", "3", "--batch-size", "50",
              "--max-train-chars", "3000", "--threads", "1", "--model-out", str(out / "nnn-2.pt"),
              "--predictions-out", str(out / "nnn-2.parquet"), "--stats-out", str(out / "nnn-2.json")])
    assert rc == 0
    stats = json.loads((out / "nnn-2.json").read_text())
    assert set(stats["val_loss_by_hidden"]) == {"2", "16"}
    assert stats["val_loss_by_hidden"][str(stats["chosen_hidden"])] == min(stats["val_loss_by_hidden"].values())
    assert all(c["history"][0]["chars"] == 3000 for c in stats["candidates"])  # the per-epoch cap
    assert stats["train_seconds"] > 0 and np.isfinite(stats["test_loss"])

    corpus = PreparedCorpus.load(data_json)
    df, meta = read_predictions(out / "nnn-2.parquet")
    assert len(df) == corpus.split_size("test") and meta["model"] == "nnn-2" and meta["hidden"] == stats["chosen_hidden"]
    assert np.array_equal(df["target"].to_numpy(), corpus.split("test"))

    model, extra = load_nnn(out / "nnn-2.pt")
    assert model.spec.hidden == stats["chosen_hidden"] and extra["vocab"] == corpus.vocab.tolist()
    # the first test positions read their context from the end of the validation split
    positions = corpus.positions("test")[:50]
    probs = nnn_distributions(model, corpus.data, corpus.vocab, positions)
    assert probs.shape == (50, corpus.vocab_size)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    target_idx = corpus.encode(corpus.data[positions])
    np.testing.assert_allclose(probs[np.arange(50), target_idx], df["p"].to_numpy()[:50], rtol=1e-5)
    assert np.array_equal(corpus.vocab[probs.argmax(1)], df["argmax"].to_numpy()[:50])
    with pytest.raises(ValueError, match="positions must lie"):
        nnn_distributions(model, corpus.data, corpus.vocab, [1])
