import numpy as np
import pytest

from rnnlens.features import (BINARY_FEATURES, COUNT_FEATURES, compute_features, detect_comment_style,
                              features_of)


def marks(text, column, style="c"):
    """The feature as a string: the characters where it is on, '.' elsewhere."""
    frame = features_of(text.encode(), style)
    return "".join(ch if on else "." for ch, on in zip(text, frame[column].to_numpy()))


def values(text, column, style="c"):
    return features_of(text.encode(), style)[column].tolist()


def test_double_quotes_with_escapes_and_single_quotes_inside():
    text = 'a "b \\"c\\" \'d\'" e'
    assert marks(text, "in_dquote") == marks_expected(text, 2, 14)
    assert not features_of(text.encode())["in_squote"].any()  # ' inside "..." is plain text


def marks_expected(text, opened_at, closed_at):
    return "".join(ch if opened_at <= i < closed_at else "." for i, ch in enumerate(text))


def test_quote_state_is_after_reading_the_character():
    text = 'x="ab"y'
    assert values(text, "in_dquote") == [False, False, True, True, True, False, False]


def test_single_quotes_char_literals_apostrophes_and_prefixes():
    assert marks("c = '\"'; d", "in_squote") == "....'\"...."  # a quote char literal
    assert marks("c = '\\''; d", "in_squote") == "....'\\'...."  # escaped single quote
    assert not features_of(b"don't stop, Pierre's hat")["in_squote"].any()  # apostrophes
    assert marks("x = r'a(b' + y", "in_squote") == ".....'a(b....."  # string prefix r'...'
    assert marks("'open\nnext", "in_squote") == "'open....."  # '...' ends at a newline


def test_double_quotes_span_lines_as_dialogue_does():
    text = 'He said "well,\nthen" and left'
    assert marks(text, "in_dquote") == marks_expected(text, 8, 19)


def test_nested_quotes_and_brackets_inside_strings_do_not_count():
    text = 'f("(", \'[\', "{\\"}") + [x]'
    f = features_of(text.encode())
    i_close = text.index(")")
    assert f["paren_depth"][i_close - 1] == 1 and f["paren_depth"][i_close] == 0
    assert f["bracket_depth"].max() == 1 and f["bracket_depth"][text.index("x")] == 1
    assert f["brace_depth"].max() == 0
    assert marks(text, "in_dquote") == "".join(ch if (2 <= i < 4 or 12 <= i < 17) else "." for i, ch in enumerate(text))
    assert marks(text, "in_squote") == marks_expected(text, 7, 9)


def test_comments_c_style():
    text = 'a = "// not" ; // yes "q\nb /* c\n(d */ e("/*")'
    line_on, line_off = text.index("// yes") + 1, text.index("\n")
    block_on, block_off = text.index("/* c") + 1, text.index("*/") + 1
    # a line comment from its second '/' to before the newline, a block comment from its '*' to its last '*'
    expected = "".join(ch if (line_on <= i < line_off or block_on <= i < block_off) else "." for i, ch in enumerate(text))
    assert marks(text, "in_comment") == expected
    f = features_of(text.encode())
    assert f["paren_depth"][text.index("(d")] == 0  # '(' inside a comment
    assert f["paren_depth"][text.index('"/*"')] == 1 and not f["in_comment"][len(text) - 5:].any()
    assert marks("/*/ x */y", "in_comment") == ".*/ x *.."  # '/*/' does not close


def test_comments_hash_style_and_detection():
    text = 'x = "#no" # yes\ny'
    assert marks(text, "in_comment", "hash") == marks_expected(text, 10, 15)
    assert not features_of(text.encode(), "c")["in_comment"].any()
    assert detect_comment_style(b"int x; /* a */\n" * 10) == "c"
    assert detect_comment_style(b"def f():\n    # hi\n    return 1\n" * 10) == "hash"


def test_line_position_indent_word_position_and_depth_clamping():
    text = "ab\n\t  x(y\n  }"
    assert values(text, "line_pos") == [1, 2, 0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3]
    assert values(text, "indent") == [0, 0, 0, 8, 9, 10, 10, 10, 10, 0, 1, 2, 2]
    assert values(text, "word_pos") == [1, 2, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0]
    assert values(text, "paren_depth") == [0] * 7 + [1] * 3 + [1] * 3
    assert values(")}(", "paren_depth") == [0, 0, 1]  # closing at depth 0 stays at 0


def test_character_classes():
    f = features_of(b"aZ3 \t\n;\x01")
    assert f["is_letter"].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    assert f["is_upper"].tolist() == [0, 1, 0, 0, 0, 0, 0, 0]
    assert f["is_digit"].tolist() == [0, 0, 1, 0, 0, 0, 0, 0]
    assert f["is_space"].tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
    assert f["is_newline"].tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    assert f["is_punct"].tolist() == [0, 0, 0, 0, 0, 0, 1, 0]
    assert list(f.columns) == list(COUNT_FEATURES) + list(BINARY_FEATURES)


def test_confound_features_case_of_last_letter_indentation_and_words_in_line():
    f = features_of(b'He said "NO, go." ok\n  Hi there')
    #                 H e _ s a i d _ " N O , _ g o . " _ o k \n _ _ H i _ t h e r e
    assert f["upper_recent"].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                          1, 0, 0, 0, 0, 0, 0, 0]
    assert f["is_lower"].tolist()[:3] == [0, 1, 0]
    assert f["in_indent"].tolist()[20:24] == [0, 1, 1, 0]  # the newline itself is not indentation
    assert f["line_words"].tolist() == [1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 5, 5, 0, 0, 0,
                                        1, 1, 1, 2, 2, 2, 2, 2]


def test_context_before_the_split_is_used():
    data = np.frombuffer(b'x = "long string (still' + b" inside" * 5 + b'" (y)', dtype=np.uint8)
    start = 30
    with_context = compute_features(data, start, len(data), context=1000, style="c")
    without = compute_features(data, start, len(data), context=0, style="c")
    assert with_context["in_dquote"][0] and not without["in_dquote"][0]
    assert len(with_context) == len(data) - start
    with pytest.raises(ValueError, match="outside the corpus"):
        compute_features(data, 0, len(data) + 1)


def test_a_few_hundred_thousand_bytes_give_one_row_each():
    """(Their speed is measured by bench/bench_features.py: a wall-clock limit here would fail on a loaded machine.)"""
    rng = np.random.default_rng(0)
    pieces = [b'if (x[i] > 0) { s = "a \\" b"; } /* note */\n', b"\tint y = 'c'; // it's\n", b"He said \"no.\"\n"]
    data = b"".join(pieces[i] for i in rng.integers(0, 3, 10_000))[:300_000]
    frame = features_of(data, "c")
    assert len(frame) == len(data)
