import json

import numpy as np
import pandas as pd
import pytest

from rnnlens.corpus import prepare
from rnnlens.cli import main
from rnnlens.oracles import (MEMORY_DEFINITIONS, OracleConfig, OracleError, TextFacts, analyse, peel,
                             small_vs_large)
from rnnlens.predictions import write_predictions
from rnnlens.words import segment, word_byte_mask, word_texts


# ------------------------------------------------------------------------------------------------ words


def test_words_keep_apostrophes_underscores_and_utf8_inside_words():
    text = "'Yes,' said Pierre's friend; spin_lock __init _emph_ t\u00eate x86 a--b".encode()
    words = segment(text)
    assert word_texts(text, words, range(len(words))) == [
        b"Yes", b"said", b"Pierre's", b"friend", b"spin_lock", b"init", b"emph", "t\u00eate".encode(), b"x86",
        b"a", b"b"]
    # Equal bytes share an id, different words do not.
    again = segment(b"cat dog cat Cat")
    assert again.ids[0] == again.ids[2] and len(set(again.ids.tolist())) == 3 and again.n_types == 3


def test_word_positions_starts_counts_and_previous_occurrence():
    text = b"ab cd ab. ab"
    words = segment(text)
    assert word_byte_mask(text).tolist() == [c not in b" ." for c in text]
    assert words.position_in_word().tolist() == [0, 1, -1, 0, 1, -1, 0, 1, -1, -1, 0, 1]
    assert words.word_start().tolist() == [0, 0, -1, 3, 3, -1, 6, 6, -1, -1, 10, 10]
    assert words.previous_occurrence().tolist() == [-1, -1, 0, 6]
    counts = words.counts_in(0, 8)  # "ab", "cd", "ab" lie inside; the third "ab" does not
    assert counts[words.ids[0]] == 2 and counts[words.ids[1]] == 1


# ------------------------------------------------------------------------------------------------ oracles

TRAIN = b"mat the mat " + b"-" * 200 + b"\n"
VAL = b"=" * 50 + b"\n"
TEST = b'zebra ran home. zebra mat xylo "quux" ' + b"\r\n" * 10 + b"zebra hop"
CONFIG = OracleConfig(memory_windows=(20, 60), rare_counts=(0, 1, 2), boosts=(0.1, 0.2, 0.3, 0.4))


def _corpus():
    data = np.frombuffer(TRAIN + VAL + TEST, dtype=np.uint8)
    train = (0, len(TRAIN))
    test = (len(TRAIN) + len(VAL), len(data))
    return data, train, test


def _at(word_index, offset, occurrence=0):
    """Test-split position of the offset-th byte of the occurrence-th occurrence of word_index."""
    start = -1
    for _ in range(occurrence + 1):
        start = TEST.index(word_index, start + 1)
    return start + offset


def _hand_made():
    """Predictions where every error's category is known. Returns p, ngram ps, {position: (category, sub)}."""
    n = len(TEST)
    p = np.full(n, 0.99)
    ngram = {1: np.full(n, 0.1), 3: np.full(n, 0.1), 5: np.full(n, 0.1)}
    expected = {}

    def error(pos, category, sub, prob=0.3):
        p[pos] = prob
        expected[pos] = (category, sub)

    # n-gram: peeled first, by the smallest n that knows the byte, although "ran" is also a rare word
    error(_at(b"ran", 1), "ngram", "n=3")
    ngram[3][_at(b"ran", 1)] = 0.9
    ngram[5][_at(b"ran", 1)] = 0.9
    # the 3rd byte of the 2nd zebra is also in the 20-byte memory: n-gram wins
    error(_at(b"zebra", 2, 1), "ngram", "n=5")
    ngram[5][_at(b"zebra", 2, 1)] = 0.7
    # a non-error stays out even where an n-gram would help
    ngram[1][_at(b"zebra", 3, 1)] = 0.9
    # memory: 2nd zebra, 17 bytes after the 1st; it is also in the 60-byte set and a rare word
    error(_at(b"zebra", 1, 1), "memory", "n=20")
    # 3rd zebra, more than 20 but at most 60 bytes after the 2nd
    error(_at(b"zebra", 1, 2), "memory", "n=60")
    # first byte of a repeated word is not memory: it follows a newline -> word-initial
    error(_at(b"zebra", 0, 2), "word_initial", "after space/quote/newline")
    # rare words: "mat" occurs twice in training (last more than 60 bytes back); "xylo" never
    error(_at(b"mat", 1), "rare_words", "count<=2")
    error(_at(b"xylo", 1), "rare_words", "count<=0")
    error(_at(b"xylo", 3), "rare_words", "count<=0")
    # word-initial: after a quote and after a space
    error(_at(b"quux", 0), "word_initial", "after space/quote/newline")
    error(_at(b"home", 0), "word_initial", "after space/quote/newline")
    # punctuation: the full stop after "home", and the closing quote after "quux"
    error(_at(b".", 0), "punctuation", "punctuation")
    error(_at(b'" ', 0), "punctuation", "punctuation")
    # boost bins and rest: spaces after a letter (not in a word, not punctuation, not after a separator)
    error(_at(b"ran ", 3), "boost", "p>=0.4", prob=0.45)
    error(_at(b"zebra ", 5), "boost", "p>=0.2", prob=0.25)
    error(_at(b"mat ", 3), "rest", "rest", prob=0.01)
    return p, ngram, expected


def test_each_oracle_and_the_peeling_order_on_hand_made_text():
    data, train, test = _corpus()
    facts = TextFacts(data, test, train)
    # the construction does what the comments say
    assert 20 < facts.memory_distance[_at(b"zebra", 1, 2)] <= 60
    assert facts.memory_distance[_at(b"zebra", 1, 1)] <= 20
    assert facts.train_count[_at(b"mat", 1)] == 2
    p, ngram, expected = _hand_made()
    table, labels, steps = analyse(facts, p, ngram, CONFIG, model="hand")
    names = [(c, s) for c, s, _, _ in steps] + [("rest", "rest")]
    got = {int(i): names[labels[i]] for i in np.flatnonzero(labels >= 0)}
    assert got == expected
    # each error counted once; the counts and shares add up
    assert table["count"].sum() == len(expected) == table["n_errors"].iloc[0]
    assert table["share_of_errors"].sum() == pytest.approx(1.0)
    assert table["share_of_test"].sum() == pytest.approx(len(expected) / len(TEST))
    # table in peeling order: n-gram by n, memory by increasing window, rare by increasing count, ..., rest
    assert list(table["category"].drop_duplicates()) == ["ngram", "memory", "rare_words", "word_initial",
                                                          "punctuation", "boost", "rest"]
    assert list(table[table["category"] == "memory"]["param"]) == [20, 60]
    assert list(table[table["category"] == "ngram"]["subcategory"]) == ["n=1", "n=3", "n=5"]


def test_rare_words_can_include_first_bytes():
    data, train, test = _corpus()
    facts = TextFacts(data, test, train)
    p = np.full(len(TEST), 0.99)
    first = _at(b"xylo", 0)  # after a space: word-initial by default
    p[first] = 0.2
    config = OracleConfig(memory_windows=(20,), rare_counts=(0,))
    _, labels, steps = analyse(facts, p, {}, config)
    assert steps[labels[first]][0] == "word_initial"
    config = OracleConfig(memory_windows=(20,), rare_counts=(0,), rare_include_first=True)
    _, labels, steps = analyse(facts, p, {}, config)
    assert steps[labels[first]][0] == "rare_words"


def test_boost_bins():
    # bytes 0x01: no words, no punctuation, no separators before them -> only the boost oracles apply
    data = np.frombuffer(b"a" * 20 + b"\x01" * 8, dtype=np.uint8)
    facts = TextFacts(data, (20, 28), (0, 20))
    p = np.array([0.45, 0.4, 0.35, 0.25, 0.15, 0.05, 0.5, 0.9])
    table, labels, steps = analyse(facts, p, {}, OracleConfig())
    names = [s for _, s, _, _ in steps] + ["rest"]
    assert [names[k] if k >= 0 else None for k in labels] == [
        "p>=0.4", "p>=0.4", "p>=0.3", "p>=0.2", "p>=0.1", "rest", None, None]
    boost = table[table["category"] == "boost"]
    assert list(boost["param"]) == [0.1, 0.2, 0.3, 0.4] and list(boost["count"]) == [2, 1, 1, 1]


def test_peel_counts_each_error_once_in_the_first_matching_step():
    errors = np.array([1, 1, 1, 0, 1], dtype=bool)
    steps = [("a", "a", None, np.array([1, 0, 0, 1, 0], bool)),
             ("b", "b", None, np.array([1, 1, 0, 1, 0], bool)),
             ("c", "c", None, np.array([1, 1, 1, 0, 0], bool))]
    assert peel(errors, steps).tolist() == [0, 1, 2, -1, 3]


def test_memory_window_reaches_back_before_the_test_split_only_where_the_definition_says():
    data = np.frombuffer(b"qwerty " + b"." * 30 + b" qwerty", dtype=np.uint8)
    facts = TextFacts(data, (37, len(data)), (0, 7))
    # 'w' of the second qwerty (global 39) looks back to the first at 0: distance 39 from the error, 38 from the
    # word's start; the first lies outside the test split, so the test-text definitions never find it
    assert facts.memory_distances("error")[2] == 39 and facts.memory_distances("word")[2] == 38
    assert facts.memory_distances("piece")[2] == facts.memory_distances("test")[2] == np.iinfo(np.int64).max
    p = np.full(len(data) - 37, 0.99)
    p[2] = 0.1
    _, labels, steps = analyse(facts, p, {}, OracleConfig(memory_windows=(10, 50), rare_counts=(),
                                                          memory_definition="error"))
    assert steps[labels[2]][:2] == ("memory", "n=50")
    _, labels, steps = analyse(facts, p, {}, OracleConfig(memory_windows=(10, 50), rare_counts=()))
    assert steps[labels[2]][0] == "boost"  # the default ("piece"): not a memory error, left for the later oracles


# Two test pieces with a validation gap between them, after training text: which earlier occurrence each
# definition of the dynamic-memory oracle finds for the words of the second piece.
MEM_TRAIN, MEM_T1, MEM_GAP, MEM_T2 = b"apple kiwi ", b"fig plum ", b"===== ", b"plum figs kiwi fig"


def _memory_facts():
    data = np.frombuffer(MEM_TRAIN + MEM_T1 + MEM_GAP + MEM_T2, dtype=np.uint8)
    a = len(MEM_TRAIN)
    t1 = (a, a + len(MEM_T1))
    t2 = (t1[1] + len(MEM_GAP), len(data))
    return data, TextFacts(data, [t1, t2], [(0, a)]), len(MEM_T1)


@pytest.mark.parametrize("word,offset,expected", [
    # "plum" (corpus 26) after "plum" at 15 in the first test piece: 12 back from its 'l' (27), 11 from its start;
    # 5 test bytes back when the pieces are joined; not in its own piece
    (b"plum", 1, {"error": 12, "word": 11, "substring": 11, "piece": None, "test": 5}),
    (b"plum", 2, {"error": 13, "word": 11, "substring": 11, "piece": None, "test": 5}),  # anchored at the error: +1
    # "figs": never before, not even as a substring
    (b"figs", 1, {"error": None, "word": None, "substring": None, "piece": None, "test": None}),
    # "kiwi" (36) after "kiwi" at 6 in the training text: only the definitions that read the real text find it
    (b"kiwi", 1, {"error": 31, "word": 30, "substring": 30, "piece": None, "test": None}),
    # "fig" (41): the whole word last at 11 (first piece); as a substring inside "figs" at 31
    (b"fig", 1, {"error": 31, "word": 30, "substring": 10, "piece": None, "test": 24}),
])
def test_each_memory_definition_finds_exactly_its_earlier_occurrence(word, offset, expected):
    data, facts, n_t1 = _memory_facts()
    i = n_t1 + MEM_T2.rindex(word + (b"" if word == b"fig" else b" ")) + offset  # test-split index
    assert bytes(data[facts._pos[i] - offset : facts._pos[i] - offset + len(word)]) == word
    never = np.iinfo(np.int64).max
    got = {d: facts.memory_distances(d)[i] for d in expected}
    assert got == {d: never if v is None else v for d, v in expected.items()}


def test_piece_counts_earlier_words_of_its_own_piece_and_the_error_counts_per_definition():
    data, facts, n_t1 = _memory_facts()
    # "plum plum" inside one piece: every definition finds the first from the second
    text = np.frombuffer(b"x plum plum", dtype=np.uint8)
    inner = TextFacts(text, (1, len(text)), (0, 1))
    assert {d: int(inner.memory_distances(d)[7]) for d in ("error", "word", "substring", "piece", "test")} == {
        "error": 6, "word": 5, "substring": 5, "piece": 5, "test": 5}
    # every 2nd byte of the second piece's words an error: what the memory oracle takes, per definition, at n=12
    p = np.full(facts.n, 0.9)
    seconds = [n_t1 + MEM_T2.index(w) + 1 for w in (b"plum", b"figs", b"kiwi")] + [n_t1 + MEM_T2.rindex(b"fig") + 1]
    p[seconds] = 0.1
    taken = {}
    for definition in ("error", "word", "substring", "piece", "test"):
        _, labels, steps = analyse(facts, p, {}, OracleConfig(memory_windows=(12,), rare_counts=(),
                                                              memory_definition=definition))
        taken[definition] = [bytes(data[facts._pos[i] - 1 : facts._pos[i] + 2]) for i in seconds
                             if steps[labels[i]][0] == "memory"]
    assert taken == {"error": [b"plu"], "word": [b"plu"], "substring": [b"plu", b"fig"], "piece": [],
                     "test": [b"plu"]}
    with pytest.raises(OracleError, match="memory_definition"):
        OracleConfig(memory_definition="nearby")


def test_small_vs_large_peels_only_the_extra_errors():
    data, train, test = _corpus()
    facts = TextFacts(data, test, train)
    p_small, ngram, expected = _hand_made()
    p_large = p_small.copy()
    fixed = [_at(b"ran", 1), _at(b"xylo", 1), _at(b"mat ", 3)]  # n-gram, rare, rest errors fixed by large
    p_large[fixed] = 0.8
    worse = _at(b"hop", 1)
    p_large[worse] = 0.2  # an error of large only: not part of the small model's extra errors
    table, large_only = small_vs_large(facts, p_small, p_large, ngram, CONFIG, "lstm-1x64", "lstm-1x512")
    assert large_only == 1
    extra = table[table["set"] == "small_only"]
    assert extra["n_errors"].iloc[0] == 3
    counts = extra.groupby("category")["count"].sum()
    assert counts["ngram"] == 1 and counts["rare_words"] == 1 and counts["rest"] == 1
    assert table[table["set"] == "small"]["n_errors"].iloc[0] == len(expected)
    assert table[table["set"] == "large"]["n_errors"].iloc[0] == len(expected) - 3 + 1


# ------------------------------------------------------------------------------------------------ command line


def _prepared(tmp_path):
    data, train, test = _corpus()
    corpus_bin = tmp_path / "corpus.bin"
    corpus_bin.write_bytes(data.tobytes())
    meta = prepare("hand", corpus_bin, {"train": 0.5, "val": 0.25, "test": 0.25}, 0)
    meta["pieces"] = {"train": [list(train)], "val": [[train[1], test[0]]], "test": [list(test)]}
    (tmp_path / "data.json").write_text(json.dumps(meta))
    return tmp_path / "data.json", data[test[0]:test[1]]


def test_cli_writes_csv_and_figures(tmp_path):
    data_json, target = _prepared(tmp_path)
    p, ngram, expected = _hand_made()
    write_predictions(tmp_path / "lstm-2x64.parquet", target, p, meta={"model": "lstm-2x64"})
    ngram_files = []
    for n, q in ngram.items():
        write_predictions(tmp_path / f"ngram-{n}.parquet", target, q, meta={"model": f"ngram-{n}"})
        ngram_files.append(str(tmp_path / f"ngram-{n}.parquet"))
    config = tmp_path / "config.yaml"
    config.write_text("oracles:\n  memory_windows: [60, 20]\n  rare_counts: [0, 1, 2]\n")
    out = tmp_path / "out"
    rc = main(["oracles", "--data", str(data_json), "--predictions", str(tmp_path / "lstm-2x64.parquet"), "--ngram", *ngram_files,
              "--config", str(config), "--csv-out", str(out / "oracles.csv"),
              "--fig-out", str(out / "oracles.png"), str(out / "oracles.pdf")])
    assert rc == 0
    table = pd.read_csv(out / "oracles.csv")
    assert table["count"].sum() == len(expected)
    totals = table.groupby("category", sort=False)["count"].sum()
    assert totals["ngram"] == 2 and totals["memory"] == 2 and totals["rare_words"] == 3
    assert (table["model"] == "lstm-2x64").all()
    assert (out / "oracles.png").stat().st_size > 1000 and (out / "oracles.pdf").read_bytes()[:4] == b"%PDF"

    p_large = p.copy()
    p_large[_at(b"ran", 1)] = 0.9
    write_predictions(tmp_path / "lstm-2x512.parquet", target, p_large, meta={"model": "lstm-2x512"})
    rc = main(["small-vs-large", "--data", str(data_json), "--small", str(tmp_path / "lstm-2x64.parquet"),
                             "--large", str(tmp_path / "lstm-2x512.parquet"), "--ngram", *ngram_files,
                             "--config", str(config), "--csv-out", str(out / "svl.csv"), "--fig-out", str(out / "svl.png")])
    assert rc == 0
    svl = pd.read_csv(out / "svl.csv")
    extra = svl[svl["set"] == "small_only"]
    assert extra["count"].sum() == 1 and extra.loc[extra["count"] == 1, "category"].item() == "ngram"
    assert (out / "svl.png").exists()


def test_cli_breakdown_has_bootstrap_intervals_and_takes_the_seeds_of_a_model(tmp_path, capsys):
    import matplotlib

    from rnnlens.oracles import plot_breakdown

    data_json, target = _prepared(tmp_path)
    p, ngram, expected = _hand_made()
    ngram_files = []
    for n, q in ngram.items():
        write_predictions(tmp_path / f"ngram-{n}.parquet", target, q, meta={"model": f"ngram-{n}"})
        ngram_files.append(str(tmp_path / f"ngram-{n}.parquet"))
    # a second seed of the model gets the "rest" error right and makes one more error of its own (rest)
    p2 = p.copy()
    p2[_at(b"mat ", 3)] = 0.99
    p2[_at(b"ran ", 3)] = 0.01
    write_predictions(tmp_path / "seed1.parquet", target, p, meta={"model": "lstm-2x64"})
    write_predictions(tmp_path / "seed2.parquet", target, p2, meta={"model": "lstm-2x64"})

    def oracles(*files, name, rc=0):
        assert main(["oracles", "--data", str(data_json), "--predictions", *map(str, files), "--ngram", *ngram_files,
                     "--memory-windows", "20", "60", "--rare-counts", "0", "1", "2", "--resamples", "500",
                     "--csv-out", str(tmp_path / f"{name}.csv"), "--fig-out", str(tmp_path / f"{name}.png")]) == rc
        return pd.read_csv(tmp_path / f"{name}.csv") if rc == 0 else None

    one = oracles(tmp_path / "seed1.parquet", name="one")
    assert one["seeds"].eq(1).all() and one["count"].sum() == len(expected)
    assert (one["count_ci_lo"] <= one["count"]).all() and (one["count"] <= one["count_ci_hi"]).all()
    assert (one["share_ci_lo"] <= one["share_of_errors"] + 1e-12).all()
    assert (one["share_of_errors"] <= one["share_ci_hi"] + 1e-12).all()
    # a step with errors has a real interval (test positions resampled); one without errors stays at 0
    assert (one.loc[one["count"] > 0, "count_ci_hi"] > one.loc[one["count"] > 0, "count_ci_lo"]).all()
    assert (one.loc[one["count"] == 0, ["count_ci_lo", "count_ci_hi"]] == 0).all().all()
    again = oracles(tmp_path / "seed1.parquet", name="again")
    pd.testing.assert_frame_equal(one, again)  # a fixed bootstrap seed: the same intervals every run
    two = oracles(tmp_path / "seed1.parquet", tmp_path / "seed2.parquet", name="two")
    assert two["seeds"].eq(2).all()
    rest = two[two["category"] == "rest"].iloc[0]
    assert rest["count"] == 1.0  # one error in each seed
    boost = two[two["subcategory"] == "p>=0.4"].iloc[0]
    assert boost["count"] == 0.5 and boost["count_ci_lo"] == 0  # seed 2 moved that error into the rest
    # the figure draws what the table says: one error bar per step, from ci_lo to ci_hi
    fig = plot_breakdown(one, [tmp_path / "again.png"], interval_note="95% bootstrap intervals")
    ax = fig.axes[0]
    bars = next(c for c in ax.containers if isinstance(c, matplotlib.container.BarContainer))
    segments = bars.errorbar.lines[2][0].get_segments()
    ordered = one.sort_values("order")
    np.testing.assert_allclose([s[:, 0].min() for s in segments], ordered["count_ci_lo"])
    np.testing.assert_allclose([s[:, 0].max() for s in segments], ordered["count_ci_hi"])
    assert "95% bootstrap intervals" in ax.get_xlabel()
    write_predictions(tmp_path / "other.parquet", target, p, meta={"model": "gru-2x64"})
    capsys.readouterr()
    oracles(tmp_path / "seed1.parquet", tmp_path / "other.parquet", name="bad", rc=2)
    assert "seeds of one model" in capsys.readouterr().err


def test_memory_definitions_command_reruns_the_peeling_per_definition(tmp_path):
    data_json, target = _prepared(tmp_path)
    p, ngram, _ = _hand_made()
    write_predictions(tmp_path / "lstm-2x64.parquet", target, p, meta={"model": "lstm-2x64"})
    config = tmp_path / "config.yaml"
    config.write_text("oracles:\n  memory_windows: [60, 20]\n  rare_counts: [0, 1, 2]\n")
    rc = main(["memory-definitions", "--data", str(data_json), "--predictions", str(tmp_path / "lstm-2x64.parquet"),
               "--config", str(config), "--csv-out", str(tmp_path / "defs.csv")])
    assert rc == 0
    table = pd.read_csv(tmp_path / "defs.csv").set_index("definition")
    assert list(table.index) == list(MEMORY_DEFINITIONS)
    data, train, test = _corpus()
    facts = TextFacts(data, test, train)
    for definition, row in table.iterrows():
        expected, _, _ = analyse(facts, p, {}, OracleConfig(memory_windows=(20, 60), rare_counts=(0, 1, 2),
                                                            memory_definition=definition))
        memory = expected[expected.category == "memory"]["count"].tolist()
        assert [row.memory_n20, row.memory_n60] == memory and row.memory == sum(memory)
        assert 0 <= row.memory_at_second_byte <= row.memory
        assert row.rare_words == expected[expected.category == "rare_words"]["count"].sum()
    assert table.loc["substring", "memory"] >= table.loc["word", "memory"] >= table.loc["piece", "memory"]


def test_cli_rejects_predictions_of_another_corpus(tmp_path, capsys):
    data_json, target = _prepared(tmp_path)
    write_predictions(tmp_path / "short.parquet", target[:-1], np.full(len(target) - 1, 0.5), meta={"model": "x"})
    rc = main(["oracles", "--data", str(data_json), "--predictions", str(tmp_path / "short.parquet"),
              "--csv-out", str(tmp_path / "o.csv"), "--fig-out", str(tmp_path / "o.png")])
    assert rc == 2 and "test split" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


def test_config_rejects_unknown_settings():
    with pytest.raises(OracleError, match="memory_window"):
        OracleConfig.from_mapping({"oracles": {"memory_window": [100]}})


def test_byte_after_an_apostrophe_inside_a_word_is_not_word_initial():
    data = np.frombuffer(b"x" * 10 + b" don't 'go'", dtype=np.uint8)
    facts = TextFacts(data, (10, len(data)), (0, 10))
    p = np.full(len(data) - 10, 0.99)
    t, g = 5, 8  # the "t" of don't; the "g" after the opening quote
    p[[t, g]] = 0.01
    _, labels, steps = analyse(facts, p, {}, OracleConfig(rare_counts=()))
    assert steps[labels[g]][0] == "word_initial"
    assert labels[t] == len(steps)  # rest: not word-initial, not punctuation


def test_command_line_options_override_the_config_file(tmp_path):
    data_json, target = _prepared(tmp_path)
    p, _, _ = _hand_made()
    write_predictions(tmp_path / "m.parquet", target, p, meta={"model": "lstm-1x64"})
    config = tmp_path / "config.yaml"
    config.write_text("analysis:\n  oracles:\n    memory_windows: [20, 60]\n    rare_counts: [0]\n")
    rc = main(["oracles", "--data", str(data_json), "--predictions", str(tmp_path / "m.parquet"), "--config", str(config),
              "--rare-counts", "0", "2", "--csv-out", str(tmp_path / "o.csv"), "--fig-out", str(tmp_path / "o.png")])
    assert rc == 0
    table = pd.read_csv(tmp_path / "o.csv")
    assert list(table[table["category"] == "memory"]["param"]) == [20, 60]
    assert list(table[table["category"] == "rare_words"]["param"]) == [0, 2]
