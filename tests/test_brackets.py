"""Bracket matching over the whole text, distances of test closers, binning, the CLI's CSV and figures."""

import json

import numpy as np
import pandas as pd
import pytest

from rnnlens.cli import run
from rnnlens.brackets import bin_curves, closers_in_test, match_pairs, match_quotes
from rnnlens.io import atomic_write_bytes, atomic_write_text
from rnnlens.predictions import write_predictions


def as_bytes(text):
    return np.frombuffer(text.encode() if isinstance(text, str) else text, dtype=np.uint8)


def stack_reference(data, opener, closer):
    """The plain stack algorithm, one byte at a time."""
    stack, pairs, unmatched_close = [], [], []
    for i, b in enumerate(data.tolist()):
        if b == opener:
            stack.append(i)
        elif b == closer:
            if stack:
                pairs.append((stack.pop(), i))
            else:
                unmatched_close.append(i)
    pairs.sort(key=lambda pair: pair[1])
    return pairs, unmatched_close, sorted(stack)


def test_vectorised_matching_equals_the_stack_on_random_text():
    rng = np.random.default_rng(0)
    alphabet = as_bytes("(){}[]x")
    for _ in range(500):
        data = rng.choice(alphabet, size=int(rng.integers(0, 80)))
        for opener, closer in (b"()", b"{}", b"[]"):
            m = match_pairs(data, opener, closer)
            pairs, unmatched_close, unmatched_open = stack_reference(data, opener, closer)
            assert list(zip(m["open_pos"].tolist(), m["close_pos"].tolist())) == pairs
            assert m["unmatched_close"].tolist() == unmatched_close
            assert m["unmatched_open"].tolist() == unmatched_open


def test_nested_unmatched_and_interleaved_types():
    #            0123456789012345678
    data = as_bytes("{a(b[c)d]e}}f{(g)")
    braces = match_pairs(data, ord("{"), ord("}"))
    assert list(zip(braces["open_pos"], braces["close_pos"])) == [(0, 10)]
    assert braces["unmatched_close"].tolist() == [11]  # one } too many
    assert braces["unmatched_open"].tolist() == [13]  # never closed
    # each type has its own stack: ( [ ) ] pairs ( with ) and [ with ]
    parens = match_pairs(data, ord("("), ord(")"))
    assert list(zip(parens["open_pos"], parens["close_pos"])) == [(2, 6), (14, 16)]
    brackets = match_pairs(data, ord("["), ord("]"))
    assert list(zip(brackets["open_pos"], brackets["close_pos"])) == [(4, 8)]


def test_test_closers_use_openers_before_the_split_and_count_the_skipped():
    # train/val: "{ ( {" and filler; test starts at 10
    text = "{x(y{zzzz" + "_" + "})}}]" + "{" + "(a)"
    data = as_bytes(text)
    start = 10
    offsets, distances, counts = closers_in_test(data, (start, len(data)), "brace")
    # test offsets 0 and 2 close the { at 4 and the { at 0; the } at offset 3 has no opener left
    assert offsets.tolist() == [0, 2] and distances.tolist() == [10 - 4, 12 - 0]
    assert counts["matched_closers"] == 2 and counts["openers_before_test"] == 2
    assert counts["unmatched_closers"] == 1 and counts["unmatched_openers"] == 1  # the { at offset 5
    offsets, distances, counts = closers_in_test(data, (start, len(data)), "paren")
    assert offsets.tolist() == [1, 8] and distances.tolist() == [11 - 2, 18 - 16]
    offsets, distances, counts = closers_in_test(data, (start, len(data)), "bracket")
    assert len(offsets) == 0 and counts["unmatched_closers"] == 1


def test_quote_pairing_scopes_and_escapes():
    data = as_bytes('a"b"c"\n"x\\"y" "\\\\"\r\n\r\n"q')
    # quotes at 1 3 5 | 7 (10 is escaped) 12 14 17 (after an escaped backslash) | 22
    line = match_quotes(data, scope="line")
    assert list(zip(line["open_pos"], line["close_pos"])) == [(1, 3), (7, 12), (14, 17)]
    assert line["unmatched_open"].tolist() == [5, 22]
    paragraph = match_quotes(data, scope="paragraph")  # the blank line is \r\n\r\n
    assert list(zip(paragraph["open_pos"], paragraph["close_pos"])) == [(1, 3), (5, 7), (12, 14)]
    assert paragraph["unmatched_open"].tolist() == [17, 22]
    text = match_quotes(data, scope="text")
    assert list(zip(text["open_pos"], text["close_pos"])) == [(1, 3), (5, 7), (12, 14), (17, 22)]


def test_binning_counts_and_means():
    distances = np.array([1, 19, 20, 45, 59, 61])
    p = np.array([0.1, 0.3, 0.5, 0.2, 0.4, 0.9])
    df = bin_curves(distances, {"m": p, "k": 1 - p}, bin_width=20)
    m = df[df["model"] == "m"].set_index("bin_start")
    assert m.index.tolist() == [0, 20, 40, 60]  # bin [start, start + 20)
    assert m.loc[0, "count"] == 2 and m.loc[0, "mean_p"] == pytest.approx(0.2)
    assert m.loc[20, "count"] == 1 and m.loc[20, "mean_p"] == pytest.approx(0.5)
    assert m.loc[40, "count"] == 2 and m.loc[40, "mean_p"] == pytest.approx(0.3)
    assert m.loc[60, "bin_end"] == 80 and m.loc[60, "mean_p"] == pytest.approx(0.9)
    assert df[df["model"] == "k"].set_index("bin_start").loc[0, "mean_p"] == pytest.approx(0.8)
    sem = df[(df["model"] == "m") & (df["bin_start"] == 0)]["sem_p"].item()
    assert sem == pytest.approx(np.std([0.1, 0.3], ddof=1) / np.sqrt(2))


def make_corpus(tmp_path, data, splits):
    atomic_write_bytes(tmp_path / "corpus.bin", data)
    vocab = sorted(set(data))
    atomic_write_text(tmp_path / "data.json", json.dumps({"corpus": "handmade", "size": len(data), "vocab": vocab,
                                                          "pieces": {k: [v] for k, v in splits.items()}}))
    return tmp_path / "data.json"


def test_cli_writes_csv_summary_and_a_figure_per_delimiter(tmp_path):
    code = b"int f(int a) {\n  if (a) {\n    return g(a[0], \"x\");\n  }\n  return 0;\n}\n"
    data = code * 30
    start = len(code) * 20 + 16  # the test split begins just after a function's {: its } closes an earlier {
    data_json = make_corpus(tmp_path, data, {"train": [0, len(code) * 15], "val": [len(code) * 15, start],
                                             "test": [start, len(data)]})
    target = np.frombuffer(data[start:], np.uint8)
    closers = np.isin(target, list(b"})]\""))
    # a model that knows closers (p 0.9) and a "ngram" that does not (p 0.2)
    write_predictions(tmp_path / "rnn.parquet", target, np.where(closers, 0.9, 0.5).astype(np.float32),
                      meta={"model": "lstm-1x8", "family": "lstm"})
    write_predictions(tmp_path / "ng.parquet", target, np.where(closers, 0.2, 0.5).astype(np.float32),
                      meta={"model": "ngram-3", "family": "ngram"})
    figs = tmp_path / "figs"
    rc = run(["brackets", "--data", str(data_json), "--predictions", str(tmp_path / "rnn.parquet"), str(tmp_path / "ng.parquet"),
              "--labels", "lstm", "ngram-3", "--bin", "10", "--quote-scope", "line", "--min-count", "1",
              "--csv-out", str(tmp_path / "brackets.csv"), "--summary-out", str(tmp_path / "summary.json"),
              "--fig-dir", str(figs)])
    assert rc == 0
    df = pd.read_csv(tmp_path / "brackets.csv")
    assert {"corpus", "delimiter", "bin_start", "bin_end", "count", "model", "mean_p", "family"} <= set(df.columns)
    assert set(df["model"]) == {"lstm", "ngram-3"}
    np.testing.assert_allclose(df.loc[df["model"] == "lstm", "mean_p"], 0.9, rtol=1e-6)
    assert df.loc[df["model"] == "ngram-3", "family"].eq("ngram").all()
    summary = json.loads((tmp_path / "summary.json").read_text())
    braces = summary["delimiters"]["brace"]
    assert braces["matched_closers"] == 20 and braces["openers_before_test"] == 1  # 10 functions x 2 }
    per_bin = df[(df["delimiter_name"] == "brace") & (df["model"] == "lstm")]
    assert per_bin["count"].sum() == 20
    # the function's closing } is 54 characters after its {, the if's } 29 after its {
    assert sorted(per_bin["bin_start"]) == [20, 50]
    for name in ("brace", "paren", "bracket", "quote"):
        for ext in ("png", "pdf"):
            assert (figs / f"brackets-handmade-{name}.{ext}").stat().st_size > 1000


def test_cli_rejects_predictions_of_another_split(tmp_path):
    data_json = make_corpus(tmp_path, b"{ab}" * 10, {"train": [0, 20], "val": [20, 30], "test": [30, 40]})
    write_predictions(tmp_path / "short.parquet", np.frombuffer(b"{ab}", np.uint8), np.full(4, 0.5, np.float32))
    with pytest.raises(ValueError, match="test split has 10"):
        run(["brackets", "--data", str(data_json), "--predictions", str(tmp_path / "short.parquet"),
             "--csv-out", str(tmp_path / "x.csv"), "--fig-dir", str(tmp_path)])
