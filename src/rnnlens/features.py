"""Features of every character computed from the bytes alone, to score cells against.

Every feature describes the state *after reading* the character, from the characters up to it (causal, like
the cell that has just read it): the opening `"` is inside the string, the closing one is outside; a newline
has line position 0 and the first character of a line position 1.

  count features   line_pos (characters since the last newline), word_pos (letters since the last non-letter),
                   indent (leading whitespace width of the current line so far; tab = 8),
                   paren_depth, bracket_depth, brace_depth (for () [] {}, outside strings and comments;
                   a closing bracket at depth 0 leaves it at 0),
                   line_words (words begun on the current line so far: position in the line counted in words)
  binary features  in_dquote, in_squote (inside "..." / '...'; backslash escapes respected; '...' ends at a
                   newline, "..." may span lines as dialogue in prose does; a ' after a letter or digit is an
                   apostrophe, except after a string prefix such as r' b' f'), in_comment (C: /* */ and //;
                   hash: # to the end of the line; quotes inside comments and comment marks inside strings
                   are plain text), is_letter, is_upper, is_digit, is_space (space, tab), is_newline,
                   is_punct (ASCII punctuation)

The string/comment state is one pass of a small state machine in Python (about 1 s per million bytes);
everything else is numpy.
"""

import string

import numpy as np
import pandas as pd

from rnnlens.errors import InputError

COUNT_FEATURES = ("line_pos", "word_pos", "indent", "paren_depth", "bracket_depth", "brace_depth", "line_words")
BINARY_FEATURES = ("in_dquote", "in_squote", "in_comment", "is_letter", "is_upper", "is_digit", "is_space",
                   "is_newline", "is_punct", "is_lower", "upper_recent", "in_indent")
# the classes of the byte just read: they partition the bytes (with "other"), so each is fixed by the rest
CHARACTER_CLASSES = ("is_letter", "is_upper", "is_lower", "is_digit", "is_space", "is_newline", "is_punct")
FEATURE_KINDS = {**{name: "count" for name in COUNT_FEATURES}, **{name: "binary" for name in BINARY_FEATURES}}

CODE, DQUOTE, SQUOTE, LINE_COMMENT, BLOCK_COMMENT = range(5)
COMMENT_STYLES = ("auto", "c", "hash", "none")
STRING_PREFIXES = frozenset(b"bBrRfFuU")


def _byte_table(chars):
    table = np.zeros(256, dtype=bool)
    table[list(chars.encode("ascii"))] = True
    return table


LETTER = _byte_table(string.ascii_letters)
UPPER = _byte_table(string.ascii_uppercase)
LOWER = _byte_table(string.ascii_lowercase)
DIGIT = _byte_table(string.digits)
SPACE = _byte_table(" \t")
PUNCT = _byte_table(string.punctuation)
ALNUM = LETTER | DIGIT


def detect_comment_style(raw):
    """'c' when the text has C block comments (at least one /* per 20 KB), else 'hash' (Python-like; for
    prose either style marks almost nothing)."""
    raw = bytes(raw)
    return "c" if raw.count(b"/*") * 20_000 >= max(len(raw), 1) else "hash"


def lexical_modes(raw, style="c"):
    """Per byte, the lexical mode after reading it: CODE, DQUOTE, SQUOTE, LINE_COMMENT or BLOCK_COMMENT."""
    if style not in ("c", "hash", "none"):
        raise InputError(f"comment style {style!r}: use one of c, hash, none (or auto via compute_features)")
    data = bytes(raw)
    n = len(data)
    modes = bytearray(n)
    c_style, hash_style = style == "c", style == "hash"
    mode = CODE
    escaped = False
    slash_pending = False  # the previous byte was a '/' read as code: '/' or '*' now opens a comment
    block_opened_at = -2
    prev = prev2 = 10
    quote, apos, backslash, newline, slash, star, hash_ = 34, 39, 92, 10, 47, 42, 35
    alnum = ALNUM.tolist()
    for t in range(n):
        b = data[t]
        if mode == CODE:
            if slash_pending and c_style and b == slash:
                mode = LINE_COMMENT
                slash_pending = False
            elif slash_pending and c_style and b == star:
                mode = BLOCK_COMMENT
                block_opened_at = t
                slash_pending = False
            elif b == quote:
                mode = DQUOTE
                slash_pending = False
            elif b == apos:
                # an apostrophe (don't, Pierre's) is not a string; a string prefix (r'..', b'..') is
                if not alnum[prev] or (prev in STRING_PREFIXES and not alnum[prev2]):
                    mode = SQUOTE
                slash_pending = False
            elif b == hash_ and hash_style:
                mode = LINE_COMMENT
                slash_pending = False
            else:
                slash_pending = b == slash
        elif mode == DQUOTE:
            if escaped:
                escaped = False
            elif b == backslash:
                escaped = True
            elif b == quote:
                mode = CODE
        elif mode == SQUOTE:
            if escaped:
                escaped = False
            elif b == backslash:
                escaped = True
            elif b == apos or b == newline:
                mode = CODE
        elif mode == LINE_COMMENT:
            if b == newline:
                mode = CODE
        else:  # BLOCK_COMMENT: the '*' of the opening '/*' cannot also close it
            if b == slash and prev == star and t - block_opened_at >= 2:
                mode = CODE
        modes[t] = mode
        prev2, prev = prev, b
    return np.frombuffer(bytes(modes), dtype=np.uint8)


def _since_last(mask):
    """Per index t, t minus the last index s <= t where mask[s] (or t + 1 when there is none)."""
    idx = np.arange(len(mask))
    last = np.maximum.accumulate(np.where(mask, idx, -1))
    return idx - last


def _clamped_depth(opens, closes):
    """Depth counter that ignores a close at depth 0: the running sum reflected at zero."""
    walk = np.cumsum(opens.astype(np.int32) - closes.astype(np.int32))
    return walk - np.minimum(np.minimum.accumulate(walk), 0)


def features_of(raw, style="c"):
    """All features of a byte string (no context before it) -> DataFrame with one row per byte."""
    data = np.frombuffer(bytes(raw), dtype=np.uint8)
    modes = lexical_modes(data, style)
    newline = data == 10
    code = modes == CODE
    out = {}
    out["line_pos"] = _since_last(newline)
    out["word_pos"] = np.where(LETTER[data], _since_last(~LETTER[data]), 0)
    # indent: widths of the whitespace read since the line start while nothing else has been read yet
    space = SPACE[data]
    nonblank_seen = np.cumsum(~space)  # newlines count as non-blank: they close a line
    line_start = np.maximum.accumulate(np.where(newline, np.arange(len(data)), -1))
    before = np.where(line_start >= 0, nonblank_seen[np.maximum(line_start, 0)], 0)
    leading = space & (nonblank_seen == before)
    width = np.where(data == 9, 8, 1) * leading
    cum_width = np.cumsum(width)
    out["indent"] = cum_width - np.where(line_start >= 0, cum_width[np.maximum(line_start, 0)], 0)
    for name, (o, c) in {"paren_depth": b"()", "bracket_depth": b"[]", "brace_depth": b"{}"}.items():
        out[name] = _clamped_depth(code & (data == o), code & (data == c))
    out["in_dquote"] = modes == DQUOTE
    out["in_squote"] = modes == SQUOTE
    out["in_comment"] = (modes == LINE_COMMENT) | (modes == BLOCK_COMMENT)
    out["is_letter"] = LETTER[data]
    out["is_upper"] = UPPER[data]
    out["is_digit"] = DIGIT[data]
    out["is_space"] = space
    out["is_newline"] = newline
    out["is_punct"] = PUNCT[data]
    out["is_lower"] = LOWER[data]
    letter = LETTER[data]
    last_letter = np.maximum.accumulate(np.where(letter, np.arange(len(data)), -1))
    out["upper_recent"] = (last_letter >= 0) & UPPER[data[np.maximum(last_letter, 0)]]
    out["in_indent"] = leading
    # words begun on this line: a letter after a non-letter (or at the line start) begins a word
    word_start = letter & ~np.concatenate([[False], letter[:-1]])
    starts = np.cumsum(word_start)
    out["line_words"] = starts - np.where(line_start >= 0, starts[np.maximum(line_start, 0)], 0)
    frame = pd.DataFrame({name: out[name] for name in FEATURE_KINDS})
    for name in COUNT_FEATURES:
        frame[name] = frame[name].astype(np.int32)
    return frame


def compute_features(data, start, end, context=20_000, style="auto"):
    """Features of data[start:end] (a slice of a corpus as uint8), read after `context` bytes before it so
    that strings, comments and brackets opened earlier are known. Rows are positions 0..end-start-1."""
    data = np.asarray(data, dtype=np.uint8)
    if not 0 <= start <= end <= len(data):
        raise InputError(f"feature range [{start}, {end}) is outside the corpus of {len(data)} bytes")
    if style not in COMMENT_STYLES:
        raise InputError(f"comment style {style!r}: use one of {', '.join(COMMENT_STYLES)}")
    lo = max(0, start - context)
    if style == "auto":
        style = detect_comment_style(data[lo:end])
    frame = features_of(data[lo:end], style).iloc[start - lo:].reset_index(drop=True)
    frame.attrs["comment_style"] = style
    return frame


def split_features(corpus, split="test", context=20_000, style="auto"):
    """Text features of a split, piece after piece, each piece read after `context` bytes of the real text
    before it (so strings, comments and brackets opened earlier are known). One comment style for all."""
    if style == "auto":
        style = detect_comment_style(corpus.split(split))
    frames = [compute_features(corpus.data, a, b, context=context, style=style) for a, b in corpus.pieces[split]]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    frame.attrs["comment_style"] = style
    return frame
