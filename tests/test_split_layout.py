"""char-rnn's rows split layout, as the paper used it: piece boundaries computed by hand, every test byte scored
exactly once by every predictor, and no stage that joins text across a seam between pieces."""
import numpy as np
import pytest
import torch

from conftest import markov_text
from rnnlens import ngram
from rnnlens.brackets import closers_in_test
from rnnlens.corpus import CorpusError, PreparedCorpus, row_pieces
from rnnlens.evaluate import predict_test
from rnnlens.internals import excerpt_windows, split_features, stream_test_internals
from rnnlens.recurrent import reference_internals
from rnnlens.model import ModelSpec
from rnnlens.recurrent import CharRNN
from rnnlens.nnn import NNNConfig, split_positions, train_nnn, write_test_predictions
from rnnlens.oracles import TextFacts
from rnnlens.predictions import read_predictions
from rnnlens.train import training_streams

SPLIT = {"train": 0.8, "val": 0.1, "test": 0.1}


def test_rows_layout_reproduces_char_rnn_boundaries():
    # 10,537 bytes, 4 rows of 100-byte columns: cut to 10,400 (a multiple of 4 x 100), rows of 2,600 bytes,
    # nb = 26 columns: floor(20.8) = 20 train, floor(2.6) = 2 val, the remaining 4 test
    pieces, used = row_pieces(10_537, SPLIT, rows=4, chunk=100)
    assert used == 10_400
    assert pieces["train"] == [[0, 2000], [2600, 4600], [5200, 7200], [7800, 9800]]
    assert pieces["val"] == [[2000, 2200], [4600, 4800], [7200, 7400], [9800, 10000]]
    assert pieces["test"] == [[2200, 2600], [4800, 5200], [7400, 7800], [10000, 10400]]
    # War and Peace as the paper counted it: 3,258,246 bytes -> 100 rows of 32,500 = 26,000 / 3,200 / 3,300
    pieces, used = row_pieces(3_258_246, SPLIT)
    assert used == 3_250_000 and len(pieces["test"]) == 100
    assert pieces["train"][1] == [32_500, 58_500] and pieces["val"][1] == [58_500, 61_700]
    assert pieces["test"][1] == [61_700, 65_000]
    assert sum(b - a for a, b in pieces["test"]) == 330_000
    # Linux (linux.txt): 6,215,875 bytes -> rows of 62,100: 558 / 31 / 32 columns, 320,000 test bytes
    pieces, _ = row_pieces(6_215_875, {"train": 0.9, "val": 0.05, "test": 0.05})
    assert pieces["test"][0] == [58_900, 62_100] and sum(b - a for a, b in pieces["test"]) == 320_000
    with pytest.raises(CorpusError, match="too small for the rows layout"):
        row_pieces(399, SPLIT, rows=4, chunk=100)
    with pytest.raises(CorpusError, match="leave the val split no column"):
        row_pieces(3200, SPLIT, rows=4, chunk=100)  # 8 columns: floor(0.8) = 0 for validation


@pytest.fixture
def rows_corpus(prepared):
    # 4 rows, 20-byte columns: rows of 3,000 bytes, 2,400 train / 300 val / 300 test each
    return PreparedCorpus.load(prepared(markov_text(12_050, seed=3), layout="rows", rows=4, chunk=20))


def test_prepared_corpus_records_layout_and_pieces(rows_corpus):
    c = rows_corpus
    assert c.layout["kind"] == "rows" and c.layout["row_bytes"] == 3000
    assert c.pieces["test"] == [(2700, 3000), (5700, 6000), (8700, 9000), (11700, 12000)]
    assert np.array_equal(c.split("test"), np.concatenate([c.data[a:b] for a, b in c.pieces["test"]]))
    assert list(c.piece_starts("test")) == [0, 300, 600, 900]
    # every byte of the used corpus belongs to exactly one split
    covered = np.concatenate([c.positions(name) for name in ("train", "val", "test")])
    assert np.array_equal(np.sort(covered), np.arange(12_000))


def test_training_streams_are_the_rows(rows_corpus):
    c = rows_corpus
    encoded = torch.from_numpy(c.encode(c.data))
    inputs, targets = training_streams(encoded, c.pieces["train"], batch_size=4)
    assert inputs.shape == (4, 2399)
    for b, (a, end) in enumerate(c.pieces["train"]):  # stream b reads row b's training text in order
        assert torch.equal(inputs[b], encoded[a:end - 1]) and torch.equal(targets[b], encoded[a + 1:end])
    # twice the rows: each row's training text cut into two streams, none crossing a seam
    inputs, targets = training_streams(encoded, c.pieces["train"], batch_size=8)
    assert inputs.shape == (8, 1199)
    a, end = c.pieces["train"][1]
    assert torch.equal(inputs[2], encoded[a:a + 1199]) and torch.equal(inputs[3], encoded[a + 1199:a + 2398])


def _sequential_p(model, corpus):
    """p of every byte given the whole real text before it: one batch-1 pass over the corpus."""
    idx = torch.from_numpy(corpus.encode(corpus.data))
    with torch.no_grad():
        logits, _ = model(idx[None, :-1])
    probs = torch.softmax(logits[0], -1)
    return probs[torch.arange(len(idx) - 1), idx[1:]].numpy()  # [i] predicts byte i + 1


def test_rnn_predicts_every_test_byte_once_after_its_real_context(rows_corpus):
    c = rows_corpus
    torch.manual_seed(0)
    model = CharRNN(ModelSpec("lstm", 2, 16, c.vocab_size)).eval()
    model.init_uniform(0.3)
    got = predict_test(model, c, streams=4, warmup=2700, chunk=128)
    assert len(got["p"]) == c.split_size("test") and np.array_equal(got["target"], c.split("test"))
    # each piece was read after the real text before it (not after the previous test piece): equal to a
    # sequential pass over the whole corpus at every test position
    reference = _sequential_p(model, c)[c.positions("test") - 1]
    np.testing.assert_allclose(got["p"], reference, atol=2e-5)
    # joining the test pieces instead would predict a piece's first bytes from the previous piece's end
    joined = PreparedCorpus.contiguous("joined", c.split("test"), {"train": (0, 1), "val": (1, 2),
                                                                    "test": (2, 1200)}, vocab=c.vocab)
    seam = predict_test(model, joined, streams=1, warmup=10)["p"]
    assert np.abs(seam[298:303] - got["p"][300:305]).max() > 1e-3


def test_ngram_trains_per_piece_and_scores_each_piece_with_real_context(rows_corpus, tmp_path):
    pytest.importorskip("kenlm")
    try:
        ngram.find_tool("lmplz")
    except ngram.NgramError:
        pytest.skip("KenLM not built: run make setup")
    c = rows_corpus
    model_path = tmp_path / "ngram-2.binary"
    stats = ngram.train([c.data[a:b] for a, b in c.pieces["train"]], ngram.kenlm_order(2), model_path, memory="64M")
    assert stats["train_pieces"] == 4 and stats["order"] == 3
    model = ngram.load(model_path)
    p = ngram.score_pieces(model, c, "test")
    assert len(p) == c.split_size("test")
    # byte by byte: the same p as the model's distribution after the 2 real bytes before each test byte
    for i in (0, 1, 299, 300, 301, 1199):
        pos = c.positions("test")[i]
        dist = ngram.next_byte_distribution(model, c.data[pos - 2:pos], c.vocab)
        assert p[i] == pytest.approx(dist[np.searchsorted(c.vocab, c.data[pos])], rel=1e-6)


def test_no_ngram_spans_a_seam(tmp_path):
    pytest.importorskip("kenlm")
    try:
        ngram.find_tool("lmplz")
    except ngram.NgramError:
        pytest.skip("KenLM not built: run make setup")
    # "XY" occurs only across the seam between the two pieces: one line per piece never sees that bigram
    pieces = [b"ab" * 200 + b"X", b"Y" + b"ba" * 200]
    ngram.train(pieces, 2, tmp_path / "m.binary", memory="64M")
    model = ngram.load(tmp_path / "m.binary")
    (_, _, _), (_, used_y, _) = list(model.full_scores("X Y", bos=False, eos=False))
    assert used_y == 1  # KenLM backed off to the unigram of Y: no "X Y" bigram was counted
    ngram.train([b"".join(pieces)], 2, tmp_path / "joined.binary", memory="64M")
    joined = ngram.load(tmp_path / "joined.binary")
    assert list(joined.full_scores("X Y", bos=False, eos=False))[1][1] == 2


def test_nnn_examples_never_cross_a_seam_and_test_is_scored_once(rows_corpus, tmp_path):
    c = rows_corpus
    n = 3
    train = split_positions(c, "train", n).numpy()
    starts = np.array([a for a, _ in c.pieces["train"]])
    piece = np.searchsorted(starts, train, side="right") - 1
    assert (train - n >= starts[piece]).all()  # every context lies in the example's own piece
    assert len(train) == c.split_size("train") - n * len(c.pieces["train"])
    model, stats = train_nnn(c, n, [8], NNNConfig(max_epochs=1, batch_size=500))
    write_test_predictions(model, c, tmp_path / "nnn-3.parquet", stats)
    df, _ = read_predictions(tmp_path / "nnn-3.parquet")
    assert len(df) == c.split_size("test") and np.array_equal(df["target"], c.split("test"))


def test_brackets_and_oracles_read_each_piece_in_its_real_text():
    # a brace opened in the training columns of a row and closed in that row's test piece
    data = np.frombuffer(b"." * 90 + b"{" + b"." * 18 + b"}" + b"." * 90, dtype=np.uint8)
    pieces = [(100, 120), (150, 160)]
    offsets, distances, counts = closers_in_test(data, pieces, "brace")
    assert list(offsets) == [9] and list(distances) == [19] and counts["openers_before_test"] == 1
    # a word that starts before a test piece continues in it: its second byte is not word-initial
    text = np.frombuffer(b"the quick brown fox jumps over the lazy dog " * 3, dtype=np.uint8)
    facts = TextFacts(text, [(6, 12), (50, 60)], [(0, 4), (20, 40)])
    assert facts.n == 16 and facts.position_in_word[0] == 2  # "i" of "quick"
    assert facts.target[6] == text[50]


def test_internals_cover_each_test_byte_once_after_real_context(rows_corpus):
    c = rows_corpus
    torch.manual_seed(1)
    model = CharRNN(ModelSpec("gru", 2, 10, c.vocab_size)).eval()
    model.init_uniform(0.3)
    n = c.split_size("test")
    seen, values = np.zeros(n, dtype=int), np.zeros((n, 10))
    for chunk in stream_test_internals(model, c, streams=4, warmup=2700, chunk=64):
        valid = chunk.valid
        seen[chunk.pos[valid]] += 1
        values[chunk.pos[valid]] = chunk.acts[1]["h"].numpy()[valid]
    assert (seen == 1).all()
    ref, _ = reference_internals(model, torch.from_numpy(c.encode(c.data))[None])
    np.testing.assert_allclose(values, ref[1]["h"][0].numpy()[c.positions("test")], atol=1e-6)
    features = split_features(c, "test")
    assert len(features) == n
    # excerpt windows lie inside one piece each
    for a, b in excerpt_windows(n, 4, 250, c.piece_starts("test")):
        assert a // 300 == (b - 1) // 300
