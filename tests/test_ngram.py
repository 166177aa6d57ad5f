"""KenLM byte n-grams: the byte->token mapping, proper distributions, loss vs order on a known Markov source,
the predictions Parquet, and bad orders."""

import json
import sys

import numpy as np
import pytest

from rnnlens import ngram
from rnnlens.cli import main
from rnnlens.corpus import PreparedCorpus, prepare
from rnnlens.predictions import SCHEMA, read_predictions


def kenlm_installed():
    try:
        ngram.find_tool("lmplz"), ngram.find_tool("build_binary"), ngram.import_kenlm()
    except ngram.NgramError:
        return False
    return True


needs_kenlm = pytest.mark.skipif(
    not kenlm_installed(),
    reason="KenLM (lmplz, build_binary, kenlm module) is not installed: run make or scripts/setup_kenlm.sh")

ALPHABET = np.frombuffer(b"ab \n\r", dtype=np.uint8)  # whitespace bytes carry the structure on purpose
MARKOV_ORDER = 2


def markov_source(length, seed=0):
    """An order-2 Markov chain over ALPHABET with peaked transitions -> (bytes, true -ln p of each byte)."""
    rng = np.random.default_rng(seed)
    k = len(ALPHABET)
    table = rng.dirichlet(np.full(k, 0.3), size=(k, k))  # table[a, b] = p(next | a, b)
    idx = list(rng.integers(k, size=MARKOV_ORDER))
    nll = [np.log(k)] * MARKOV_ORDER
    for _ in range(length - MARKOV_ORDER):
        probs = table[idx[-2], idx[-1]]
        nxt = rng.choice(k, p=probs)
        nll.append(-np.log(probs[nxt]))
        idx.append(nxt)
    return ALPHABET[idx].tobytes(), np.array(nll)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A prepared corpus (corpus.bin + data.json) from the Markov source, with '~' and '!' only in the val/test
    part: vocabulary bytes the training split lacks (KenLM's <unk>)."""
    data, nll = markov_source(30_000)
    data = bytearray(data)
    for pos, byte in ((24_500, ord("~")), (27_500, ord("~")), (28_000, ord("!"))):
        data[pos] = byte
    root = tmp_path_factory.mktemp("markov")
    (root / "corpus.bin").write_bytes(bytes(data))
    meta = prepare("markov", root / "corpus.bin", {"train": 0.8, "val": 0.1, "test": 0.1}, min_train_bytes=100)
    (root / "data.json").write_text(json.dumps(meta))
    return root / "data.json", nll


@pytest.fixture(scope="module")
def models(corpus, tmp_path_factory):
    data_json, _ = corpus
    train = PreparedCorpus.load(data_json).split("train")
    out = tmp_path_factory.mktemp("models")
    paths = {}
    for n in (1, 2, 3, 5, 20):
        paths[n] = out / f"ngram-{n}.binary"
        ngram.train(train, n, paths[n], memory="64M")
    return {n: ngram.load(p) for n, p in paths.items()}


def test_byte_tokens_round_trip_all_256_bytes():
    tokens = [ngram.byte_token(b) for b in range(256)]
    assert len(set(tokens)) == 256
    for token in tokens:
        assert token.isprintable() and not any(c.isspace() for c in token)
        assert token not in ("<s>", "</s>", "<unk>")
    every_byte = bytes(range(256))
    text = ngram.encode_tokens(every_byte)
    assert len(text.split()) == 256 and text.split(" ") == tokens
    assert ngram.decode_tokens(text) == every_byte
    assert [ngram.byte_token(b) for b in b" \n\ra"] == ["x20", "x0a", "x0d", "a"]
    noise = np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    assert ngram.decode_tokens(ngram.encode_tokens(noise)) == noise


def test_bad_order_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ngram.NgramError, match="maximum order 21"):
        ngram.check_order(22)
    with pytest.raises(ngram.NgramError, match="positive integer"):
        ngram.check_order(0)
    (tmp_path / "data.json").write_text("{}")  # never read: the order is checked first
    args = ["--data", str(tmp_path / "data.json"), "--n", "21", "--model-out", str(tmp_path / "m.binary"),
            "--predictions-out", str(tmp_path / "p.parquet"), "--stats-out", str(tmp_path / "s.json")]
    assert main(["ngram", *args]) == 2
    assert "maximum order 21" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json"]


def test_missing_lmplz_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ngram.NgramError, match="setup_kenlm.sh"):
        ngram.find_tool("lmplz")


@needs_kenlm
def test_distributions_sum_to_one_and_match_the_scores(corpus, models):
    data_json, _ = corpus
    c = PreparedCorpus.load(data_json)
    assert set(ngram.unseen_bytes(models[3], c.vocab)) == {ord("~"), ord("!")}
    test_start, test_end = c.pieces["test"][0]
    for n, model in models.items():
        # positions in the training, validation and test splits, the first test byte (context in val) among them
        for pos in (500, 12_345, 24_000, 24_500, test_start, test_start + 3, 28_000, test_end - 1):
            context = c.data[max(0, pos - (n - 1)):pos]
            dist = ngram.next_byte_distribution(model, context, c.vocab)
            assert np.all(dist > 0)
            assert dist.sum() + ngram.held_out_mass(model, context, c.vocab) == pytest.approx(1, abs=1e-5)
            [p] = ngram.score(model, context, c.data[pos:pos + 1], c.vocab)
            assert p == pytest.approx(dist[np.searchsorted(c.vocab, c.data[pos])], rel=1e-6)
    # the two bytes unseen in training share p(<unk>) equally
    dist = ngram.next_byte_distribution(models[3], c.data[test_start - 2:test_start], c.vocab)
    assert dist[np.searchsorted(c.vocab, ord("~"))] == dist[np.searchsorted(c.vocab, ord("!"))]


@needs_kenlm
def test_test_loss_falls_with_order_up_to_the_source_order(corpus, models):
    data_json, true_nll = corpus
    c = PreparedCorpus.load(data_json)
    test_start, test_end = c.pieces["test"][0]
    losses = {}
    for n, model in models.items():
        p = ngram.score(model, c.data[:test_start], c.split("test"), c.vocab)
        losses[n] = -np.log(p).mean()
    true_loss = true_nll[test_start:test_end].mean()
    assert losses[1] > losses[2] + 0.1 > losses[3] + 0.2
    assert losses[3] < true_loss + 0.05  # order 3 = the source's 2 bytes of context: close to its entropy
    assert losses[5] > losses[3] - 0.01  # more context than the source has cannot help
    assert losses[20] > losses[3] - 0.01


@needs_kenlm
def test_cli_writes_predictions_model_and_stats(corpus, tmp_path):
    data_json, _ = corpus
    c = PreparedCorpus.load(data_json)
    out = tmp_path / "ngram"
    # the paper's n counts context bytes: ngram-2 is KenLM order 3
    args = ["--data", str(data_json), "--n", "2", "--model-out", str(out / "ngram-2.binary"),
            "--predictions-out", str(tmp_path / "predictions" / "ngram-2.parquet"),
            "--stats-out", str(out / "ngram-2.json"), "--memory", "64M"]
    assert main(["ngram", *args]) == 0
    df, meta = read_predictions(tmp_path / "predictions" / "ngram-2.parquet")
    import pyarrow.parquet as pq

    assert pq.read_schema(tmp_path / "predictions" / "ngram-2.parquet").remove_metadata() == SCHEMA
    test = c.split("test")
    assert len(df) == len(test)
    np.testing.assert_array_equal(df["pos"], np.arange(len(test)))
    np.testing.assert_array_equal(df["target"], test)
    assert df["argmax"].isna().all() and df["p_argmax"].isna().all()
    assert ((df["p"] > 0) & (df["p"] <= 1)).all()
    assert meta["model"] == "ngram-2" and meta["corpus"] == "markov" and meta["order"] == 3 and meta["n"] == 2
    assert meta["test_loss"] == pytest.approx(-np.log(df["p"].to_numpy(np.float64)).mean(), rel=1e-6)
    model = ngram.load(out / "ngram-2.binary")
    expected = ngram.score(model, c.data[:c.pieces["test"][0][0]], test, c.vocab)
    np.testing.assert_allclose(df["p"], expected, rtol=1e-6)
    stats = json.loads((out / "ngram-2.json").read_text())
    assert stats["test_loss"] == pytest.approx(meta["test_loss"])
    assert stats["model_bytes"] == (out / "ngram-2.binary").stat().st_size > 0
    assert stats["build_seconds"] > 0 and stats["lmplz_peak_rss_bytes"] > 0
    assert stats["ngram_counts"]["1"] == len(c.vocab) - 2 + 3  # seen bytes + <s>, </s>, <unk>
    assert stats["unseen_vocab_bytes"] == [ord("!"), ord("~")]
    assert sorted(p.name for p in out.iterdir()) == ["ngram-2.binary", "ngram-2.json"]  # no temporaries left
