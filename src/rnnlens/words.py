"""What a "word" is for a byte corpus. The one definition every word-based analysis uses.

A word is a maximal run of word bytes, where the word bytes are
  * ASCII letters and digits (A-Z, a-z, 0-9);
  * every byte >= 0x80, so the bytes of a UTF-8 letter (the "ê" of "tête" is C3 AA) stay inside their word
    instead of splitting it in two; the corpora are read as bytes, never decoded;
  * the joiners apostrophe (') and underscore (_), but only inside a word: a run of joiners counts when the
    bytes on both sides of the run are letters/digits/high bytes. So "don't" and "Pierre's" are one word each
    (in War and Peace the apostrophe is mostly this), while in 'Yes,' said... the quoting apostrophes are not
    part of "Yes"; "spin_lock" is one C identifier, while "_emphasis_" (Gutenberg's italics) is the word
    "emphasis" between two non-word bytes, and "__init" is "init".
Everything else (space, CR, LF, tab, quotes, punctuation, operators) separates words.

Two occurrences are the same word when their bytes are equal (case matters: "The" and "the" differ, as they do
for a character model). The helpers are vectorised with numpy; one pass over a few million bytes takes well
under a second, apart from giving each distinct word an id, which builds one Python bytes object per occurrence.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

JOINERS = b"'_"


def _byte_table(members):
    table = np.zeros(256, dtype=bool)
    table[np.frombuffer(bytes(members), dtype=np.uint8)] = True
    return table


_CORE = _byte_table(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" + bytes(range(0x80, 0x100)))
_JOINER = _byte_table(JOINERS)


def as_bytes_array(data):
    """bytes / bytearray / uint8 array -> uint8 numpy array (no copy when already one)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    data = np.asarray(data)
    if data.dtype != np.uint8:
        raise TypeError(f"expected bytes or a uint8 array, got dtype {data.dtype}")
    return data


def word_byte_mask(data):
    """Boolean per byte: is it part of a word (see the module docstring)."""
    data = as_bytes_array(data)
    n = len(data)
    core = _CORE[data]
    joiner = _JOINER[data]
    if not joiner.any():
        return core
    idx = np.arange(n)
    # For every byte: the nearest non-joiner at or before it, and at or after it. A joiner run is inside a
    # word when both of these neighbours exist and are core bytes.
    non_joiner = ~joiner
    prev_nj = np.maximum.accumulate(np.where(non_joiner, idx, -1))
    next_nj = np.minimum.accumulate(np.where(non_joiner, idx, n)[::-1])[::-1]
    core_before = np.zeros(n, dtype=bool)
    has_prev = prev_nj >= 0
    core_before[has_prev] = core[prev_nj[has_prev]]
    core_after = np.zeros(n, dtype=bool)
    has_next = next_nj < n
    core_after[has_next] = core[next_nj[has_next]]
    return core | (joiner & core_before & core_after)


@dataclass
class Words:
    """Segmentation of a byte string into words.

    starts, ends: [start, end) of every word occurrence, in text order (int64).
    ids:          id of each occurrence's byte content; equal words share an id (0 .. n_types-1).
    index:        per byte, the occurrence it belongs to, or -1 outside words.
    """

    starts: np.ndarray
    ends: np.ndarray
    ids: np.ndarray
    n_types: int
    index: np.ndarray

    def __len__(self):
        return len(self.starts)

    def position_in_word(self):
        """Per byte: 0 for a word's first byte, 1 for its second, ...; -1 outside words."""
        pos = np.full(len(self.index), -1, dtype=np.int64)
        inside = self.index >= 0
        pos[inside] = np.flatnonzero(inside) - self.starts[self.index[inside]]
        return pos

    def word_start(self):
        """Per byte: the start offset of its word; -1 outside words."""
        out = np.full(len(self.index), -1, dtype=np.int64)
        inside = self.index >= 0
        out[inside] = self.starts[self.index[inside]]
        return out

    def counts_in(self, start, end):
        """Occurrences of each word type lying entirely inside bytes [start, end) (e.g. the training split);
        array of length n_types."""
        inside = (self.starts >= start) & (self.ends <= end)
        return np.bincount(self.ids[inside], minlength=self.n_types)

    def previous_occurrence(self):
        """Per occurrence: the start of the previous occurrence of the same word, -1 if there is none.
        One sort of (id, start) pairs, so linear-logarithmic, no Python loop."""
        order = np.lexsort((self.starts, self.ids))
        sorted_ids = self.ids[order]
        sorted_starts = self.starts[order]
        prev = np.full(len(order), -1, dtype=np.int64)
        same = np.zeros(len(order), dtype=bool)
        same[1:] = sorted_ids[1:] == sorted_ids[:-1]
        prev_sorted = np.where(same, np.concatenate([[-1], sorted_starts[:-1]]), -1)
        prev[order] = prev_sorted
        return prev


def segment(data):
    """Split a byte string into words (see the module docstring) -> Words."""
    data = as_bytes_array(data)
    mask = word_byte_mask(data)
    edges = np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8))
    starts = np.flatnonzero(edges == 1).astype(np.int64)
    ends = np.flatnonzero(edges == -1).astype(np.int64)
    raw = data.tobytes()
    # One bytes object per occurrence and a hash table: exact (no hash collisions) and fast enough
    # (about half a second per million words).
    ids, uniques = pd.factorize(np.array([raw[s:e] for s, e in zip(starts.tolist(), ends.tolist())], dtype=object))
    index = np.full(len(data), -1, dtype=np.int64)
    if len(starts):
        # Mark each word's first byte with +(k+1) and the byte after its end with -(k+1); a cumulative sum
        # then gives k+1 inside word k and 0 elsewhere.
        marks = np.zeros(len(data) + 1, dtype=np.int64)
        k = np.arange(1, len(starts) + 1)
        marks[starts] += k
        marks[ends] -= k
        index = np.cumsum(marks[:-1]) - 1
    return Words(starts, ends, ids.astype(np.int64), len(uniques), index)


def word_texts(data, words, which):
    """The bytes of the given occurrences (for examples and debugging)."""
    raw = as_bytes_array(data).tobytes()
    return [raw[words.starts[k]:words.ends[k]] for k in np.atleast_1d(which)]
