import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from rnnlens.cells import (CellCollector, best_cells, explain_cells, read_excerpts, read_scores, sample_positions,
                           score_cells, score_matrix)
from rnnlens.corpus import PreparedCorpus
from rnnlens.features import compute_features
from rnnlens.cli import main
from rnnlens.internals import stream_test_internals
from rnnlens.model import ModelSpec, save_model
from rnnlens.recurrent import CharRNN


def test_auc_and_spearman_match_sklearn_and_scipy():
    rng = np.random.default_rng(0)
    n = 500
    y = rng.random(n) < 0.3
    depth = rng.integers(0, 4, n)
    values = np.column_stack([y + rng.normal(0, 1, n), -depth + rng.normal(0, 2, n), rng.normal(0, 1, n),
                              np.round(rng.normal(0, 1, n), 1)])  # the last one has ties
    features = pd.DataFrame({"in_dquote": y, "paren_depth": depth})
    scores = score_matrix(values, features, block=3)  # blocks that do not divide the cells
    kind, auc, prevalence = scores["in_dquote"]
    assert kind == "auc" and prevalence == pytest.approx(y.mean())
    np.testing.assert_allclose(auc, [roc_auc_score(y, values[:, j]) for j in range(4)], atol=1e-12)
    kind, rho, _ = scores["paren_depth"]
    assert kind == "spearman"
    np.testing.assert_allclose(rho, [spearmanr(depth, values[:, j])[0] for j in range(4)], atol=1e-12)
    table = score_cells(values, features, layers=2, hidden=2)
    top = table[table["rank"] == 1].set_index("feature")
    assert (top.loc["in_dquote", "layer"], top.loc["in_dquote", "unit"]) == (1, 0)
    assert (top.loc["paren_depth", "layer"], top.loc["paren_depth", "unit"]) == (1, 1)
    assert top.loc["paren_depth", "sign"] == -1
    assert top.loc["in_dquote", "score"] == pytest.approx(max(auc[0], 1 - auc[0]))


def test_features_without_variation_are_left_out():
    features = pd.DataFrame({"in_comment": np.zeros(20, bool), "indent": np.zeros(20, int),
                             "is_letter": np.arange(20) % 2 == 0})
    assert list(score_matrix(np.random.default_rng(0).normal(size=(20, 3)), features)) == ["is_letter"]


def test_sample_positions_and_collector():
    assert list(sample_positions(5, 100)) == [0, 1, 2, 3, 4]
    picked = sample_positions(1000, 10)
    assert len(picked) == 10 and picked[0] == 0 and picked[-1] == 999
    collector = CellCollector(np.array([1, 4]), n=6, layers=2, hidden=3)
    pos = np.array([[0, 1, 2], [3, 4, -1]])
    layer_values = [torch.arange(18.0).reshape(2, 3, 3), -torch.arange(18.0).reshape(2, 3, 3)]
    collector.update(pos, layer_values)
    np.testing.assert_array_equal(collector.values(), [[3, 4, 5, -3, -4, -5], [12, 13, 14, -12, -13, -14]])


def test_best_cells_across_models():
    def table(model, corpus, rows):
        return pd.DataFrame([{"model": model, "corpus": corpus, "layer": l, "unit": u, "feature": f, "kind": "auc",
                              "value": s, "score": s, "sign": 1, "rank": 0, "prevalence": 0.1, "positions": 10}
                             for f, l, u, s in rows])

    a = table("lstm-1x8", "wp", [("in_dquote", 1, 3, 0.97), ("in_dquote", 1, 4, 0.8), ("is_letter", 1, 0, 0.7)])
    b = table("gru-1x8", "wp", [("in_dquote", 1, 5, 0.9), ("is_letter", 1, 2, 0.75)])
    best = best_cells([a, b])
    assert len(best) == 4
    winner = best[best.best_in_corpus].set_index("feature")
    assert winner.loc["in_dquote", "model"] == "lstm-1x8" and winner.loc["in_dquote", "unit"] == 3
    assert winner.loc["is_letter", "model"] == "gru-1x8"
    assert list(best.feature) == ["in_dquote", "in_dquote", "is_letter", "is_letter"]  # feature order, best first


def quoted_corpus(n, seed=0):
    """Random words with double-quoted spans of 20-60 characters; inside quotes letters come mostly from a-m,
    outside mostly from n-z, so predicting the next letter pays for remembering whether a quote is open (the
    current letter alone is a weak clue)."""
    rng = np.random.default_rng(seed)
    first, second = np.frombuffer(b"abcdefghijklm", np.uint8), np.frombuffer(b"nopqrstuvwxyz", np.uint8)
    out = bytearray()

    def words(length, common, rare):
        chunk = bytearray()
        while len(chunk) < length:
            letters = [int(rng.choice(common)) if rng.random() < 0.75 else int(rng.choice(rare))
                       for _ in range(rng.integers(2, 8))]
            chunk += bytes(letters) + b" "
        return chunk[:length]

    while len(out) < n:
        out += words(int(rng.integers(10, 60)), second, first)
        out += b' "' + words(int(rng.integers(20, 60)), first, second).strip() + b'" '
    return np.frombuffer(bytes(out[:n]), dtype=np.uint8)


def write_corpus(tmp_path, data):
    n = len(data)
    a, b = int(n * 0.8), int(n * 0.9)
    (tmp_path / "corpus.bin").write_bytes(data.tobytes())
    meta = {"corpus": "quotes", "size": n, "vocab": sorted(set(data.tolist())),
            "pieces": {"train": [[0, a]], "val": [[a, b]], "test": [[b, n]]}}
    (tmp_path / "data.json").write_text(json.dumps(meta))
    return PreparedCorpus.load(tmp_path / "data.json")


def train_tbptt(model, train_idx, steps, batch=32, seq_len=50, lr=5e-3):
    """The paper's recipe in miniature: RMSProp, truncated BPTT with the state carried between steps."""
    opt = torch.optim.RMSprop(model.parameters(), lr=lr, alpha=0.95)
    per_stream = (len(train_idx) - 1) // batch
    inputs = train_idx[: batch * per_stream].view(batch, per_stream)
    targets = train_idx[1: batch * per_stream + 1].view(batch, per_stream)
    state, col, losses = None, 0, []
    model.train()
    for _ in range(steps):
        if col + seq_len > per_stream:
            state, col = None, 0
        logits, state = model(inputs[:, col:col + seq_len], state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[:, col:col + seq_len].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 5.0)
        opt.step()
        state = tuple(s.detach() for s in state)
        col += seq_len
        losses.append(loss.item())
    model.eval()
    return losses


@pytest.mark.slow
def test_trained_lstm_has_an_inside_quotes_cell(tmp_path, one_thread):
    corpus = write_corpus(tmp_path, quoted_corpus(120_000))
    torch.manual_seed(0)
    model = CharRNN(ModelSpec("lstm", 1, 24, corpus.vocab_size))
    model.init_uniform(0.08)
    losses = train_tbptt(model, torch.from_numpy(corpus.encode(corpus.split("train"))), steps=450)
    assert np.mean(losses[-20:]) < np.mean(losses[:20]) - 0.2

    start, end = corpus.pieces["test"][0]
    features = compute_features(corpus.data, start, end)
    assert 0.3 < features["in_dquote"].mean() < 0.7
    collector = CellCollector(sample_positions(end - start, 5000), end - start, 1, 24)
    for chunk in stream_test_internals(model, corpus, streams=10, warmup=300, chunk=100):
        collector.update(chunk.pos, [layer["c"] for layer in chunk.acts])
    table = score_cells(collector.values(), features.iloc[collector.positions], layers=1, hidden=24)
    quote = table[table.feature == "in_dquote"]
    best = quote.iloc[0]
    assert best["rank"] == 1 and best["score"] == quote.score.max()
    assert best["score"] > 0.9, f"best inside-quotes cell AUC {best['score']:.3f}"
    # a cell that only echoed the current letter would do worse: the letters alone tell inside from outside
    # with AUC about 0.75
    letters_only = features["is_letter"].to_numpy()
    test_bytes = corpus.split("test")
    first_half = (test_bytes >= ord("a")) & (test_bytes <= ord("m"))
    echo_auc = roc_auc_score(features["in_dquote"][letters_only], first_half[letters_only])
    assert echo_auc < best["score"] - 0.05

    # the whole command on the same model: every output written, the quote cell found again
    save_model(tmp_path / "model.pt", model, {"model": "lstm-1x24"})
    out = tmp_path / "internals"
    assert main(["internals", "--model", str(tmp_path / "model.pt"), "--data", str(tmp_path / "data.json"),
                          "--out-dir", str(out), "--cells", "1:0,1:5", "--streams", "10", "--warmup", "300",
                          "--windows", "2", "--window-chars", "300"]) == 0
    scores = read_scores(out / "cells.parquet")
    assert set(scores.model) == {"lstm-1x24"} and set(scores.corpus) == {"quotes"}
    assert scores[scores.feature == "in_dquote"].score.max() > 0.9
    sat = pd.read_parquet(out / "saturation.parquet")
    assert len(sat) == 3 * 24 and sat.frac_left.between(0, 1).all()
    assert {"gate", "layer", "share_right_over_90"} <= set(pd.read_csv(out / "saturation_summary.csv").columns)
    frame, values, meta = read_excerpts(out / "excerpts.parquet")
    assert values.shape == (600, 1, 24) and meta["windows"] == [[0, 300], [end - start - 300, end - start]]
    # internals computes; the pictures are drawn from its outputs by their own commands
    assert not (out / "cells.html").exists() and not (out / "saturation.png").exists()
    assert main(["cell-pictures", "--dir", str(out), "--data", str(tmp_path / "data.json"), "--cells", "1:0,1:5"]) == 0
    assert main(["saturation-figure", "--inputs", str(out / "saturation.parquet"), "--out",
                 str(out / "saturation.png")]) == 0
    html = (out / "cells.html").read_text()
    assert "in_dquote" in html and "layer 1, unit 5" in html and "<script" not in html and "http" not in html
    pngs = sorted(p.name for p in (out / "cells").glob("*.png"))
    assert "user__L1_U5.png" in pngs and any(p.startswith("in_dquote__") for p in pngs)
    assert (out / "saturation.png").exists() and (out / "saturation.pdf").exists() and (out / "cells.pdf").exists()
    assert not list(out.rglob("*.part*"))


def test_internals_cli_rejects_bad_input(tmp_path, capsys):
    corpus = write_corpus(tmp_path, quoted_corpus(3000))
    model = CharRNN(ModelSpec("rnn", 1, 4, corpus.vocab_size + 1))
    save_model(tmp_path / "model.pt", model)
    assert main(["internals", "--model", str(tmp_path / "model.pt"), "--data", str(tmp_path / "data.json"),
                          "--out-dir", str(tmp_path / "o")]) == 2
    assert "vocabulary" in capsys.readouterr().err
    model = CharRNN(ModelSpec("rnn", 1, 4, corpus.vocab_size))
    save_model(tmp_path / "model.pt", model)
    assert main(["internals", "--model", str(tmp_path / "model.pt"), "--data", str(tmp_path / "data.json"),
                          "--out-dir", str(tmp_path / "o"), "--cells", "2:0"]) == 2
    assert "outside" in capsys.readouterr().err


def test_internals_cli_on_a_vanilla_rnn_writes_the_same_outputs(tmp_path):
    corpus = write_corpus(tmp_path, quoted_corpus(4000))
    torch.manual_seed(0)
    model = CharRNN(ModelSpec("rnn", 2, 6, corpus.vocab_size))
    model.init_uniform(0.5)
    save_model(tmp_path / "model.pt", model)
    out = tmp_path / "o"
    assert main(["internals", "--model", str(tmp_path / "model.pt"), "--data", str(tmp_path / "data.json"),
                          "--out-dir", str(out), "--windows", "1", "--window-chars", "80"]) == 0
    assert len(pd.read_parquet(out / "saturation.parquet")) == 0
    assert main(["cell-pictures", "--dir", str(out), "--data", str(tmp_path / "data.json")]) == 0
    # one model without gates: its saturation figure says so, like every model's
    assert main(["saturation-figure", "--inputs", str(out / "saturation.parquet"), "--out",
                 str(out / "saturation.png")]) == 0
    for name in ("saturation.png", "saturation.pdf", "saturation_summary.csv", "cells.parquet", "cells_top.csv",
                 "excerpts.parquet", "cells.html", "cells.pdf"):
        assert (out / name).is_file(), name
    scores = read_scores(out / "cells.parquet")
    assert set(scores.layer) == {1, 2} and set(scores.unit) == set(range(6))


def dialogue_prose(n, seed=0):
    """Narration in lowercase words (a capitalised name now and then) with quoted speech whose words are mostly
    UPPERCASE, the way the issue's synthetic prose was: inside quotes and "the last letter was uppercase"
    nearly coincide, but not quite (names outside quotes, a few lowercase words inside)."""
    rng = np.random.default_rng(seed)
    lower = [b"the", b"said", b"and", b"walked", b"into", b"room", b"of", b"old", b"house", b"slowly"]
    upper = [b"NO", b"WHERE", b"IS", b"IT", b"COME", b"HERE", b"NOW", b"WHY", b"YES", b"STOP"]
    names = [b"Anna", b"Pierre", b"Natasha"]
    out = bytearray()
    while len(out) < n:
        words = [names[rng.integers(3)] if rng.random() < 0.12 else lower[rng.integers(10)]
                 for _ in range(rng.integers(4, 14))]
        out += b" ".join(words) + b' "'
        speech = [lower[rng.integers(10)] if rng.random() < 0.1 else upper[rng.integers(10)]
                  for _ in range(rng.integers(2, 8))]
        out += b" ".join(speech) + (b'," ' if rng.random() < 0.5 else b'." ')
        if rng.random() < 0.2:
            out += b"\n"
    return np.frombuffer(bytes(out[:n]), dtype=np.uint8)


def test_planted_quote_and_case_cells_are_ranked_under_their_own_features():
    data = dialogue_prose(30_000)
    features = compute_features(data, 0, len(data))
    quote, case = features["in_dquote"].to_numpy(float), features["upper_recent"].to_numpy(float)
    assert 0.2 < quote.mean() < 0.6 and np.corrcoef(quote, case)[0, 1] > 0.6  # the two really are confounded
    rng = np.random.default_rng(1)
    n = len(data)
    values = np.column_stack([
        quote + rng.normal(0, 0.8, n),             # unit 0: a (noisy) inside-quotes cell
        case + rng.normal(0, 0.1, n),              # unit 1: a letter-case cell
        features["line_pos"] * 0.05 + rng.normal(0, 0.3, n),  # unit 2: a line-position counter
        rng.normal(0, 1, (n, 3)),                  # units 3-5: noise
    ])
    table = score_cells(values, features, layers=1, hidden=6)
    table.insert(0, "model", "lstm-1x6")
    table.insert(1, "corpus", "dialogue")

    explained = explain_cells(table).set_index("unit")
    assert explained.loc[0, "best_feature"] == "in_dquote"
    assert explained.loc[1, "best_feature"] == "upper_recent"
    assert explained.loc[2, "best_feature"] in ("line_pos", "line_words")
    assert explained.loc[1, "margin"] > 0.02 and explained.loc[0, "runner_up"] in ("is_upper", "upper_recent")

    best = best_cells([table]).set_index("feature")
    # the raw winner for in_dquote is the case cell (it separates quotes better than the noisy quote cell) ...
    assert best.loc["in_dquote", "unit"] == 1
    assert best.loc["in_dquote", "confounded"] and best.loc["in_dquote", "explained_by"] == "upper_recent"
    # ... but the best cell whose own best explanation is in_dquote is the planted quote cell
    assert best.loc["in_dquote", "own_unit"] == 0
    assert best.loc["upper_recent", "unit"] == 1 and not best.loc["upper_recent", "confounded"]
    assert best.loc["upper_recent", "own_unit"] == 1
    # the control: given the other features, the case cell says little about quotes, the quote cell a lot
    partial = table.set_index(["feature", "unit"])["partial"]
    assert partial["in_dquote", 0] > 0.2 > partial["in_dquote", 1] * 2
    assert partial["upper_recent", 1] > 0.5


def test_partial_correlation_matches_regressing_out_the_other_features():
    from rnnlens.cells import partial_correlations
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    x[:, 2] += x[:, 0]
    y = x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=400)

    def std(a):
        a = a - a.mean(axis=0)
        return a / np.sqrt((a ** 2).sum(axis=0))

    xs, ys = std(x), std(y[:, None])
    partial = partial_correlations(xs.T @ xs, xs.T @ ys)
    for f in range(3):
        others = np.column_stack([np.ones(400), np.delete(x, f, axis=1)])
        res_x = x[:, f] - others @ np.linalg.lstsq(others, x[:, f], rcond=None)[0]
        res_y = y - others @ np.linalg.lstsq(others, y, rcond=None)[0]
        assert partial[f, 0] == pytest.approx(np.corrcoef(res_x, res_y)[0, 1], abs=1e-6)
    # a feature that the others determine exactly has no part of its own ...
    collinear = np.column_stack([xs, std((x[:, 0] + x[:, 1])[:, None])])
    assert partial_correlations(collinear.T @ collinear, collinear.T @ ys)[3, 0] == 0
    # ... except a character class, which is then controlled for the features that are not classes only
    upper = rng.random(400) < 0.3
    classes = np.column_stack([upper, ~upper, x[:, 0]]).astype(float)
    cs = std(classes)
    y2 = std((upper + 0.3 * x[:, 0] + rng.normal(0, 0.5, 400))[:, None])
    partial = partial_correlations(cs.T @ cs, cs.T @ y2, ["is_upper", "is_lower", "line_pos"])
    res_x = upper - np.column_stack([np.ones(400), x[:, 0]]) @ np.linalg.lstsq(
        np.column_stack([np.ones(400), x[:, 0]]), upper.astype(float), rcond=None)[0]
    res_y = y2[:, 0] - np.column_stack([np.ones(400), x[:, 0]]) @ np.linalg.lstsq(
        np.column_stack([np.ones(400), x[:, 0]]), y2[:, 0], rcond=None)[0]
    assert partial[0, 0] == pytest.approx(np.corrcoef(res_x, res_y)[0, 1], abs=1e-6) and partial[0, 0] > 0.5
    assert partial[1, 0] == pytest.approx(-partial[0, 0], abs=1e-6)
