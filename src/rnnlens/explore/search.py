"""Hypothesis search as in LSTMVis (Strobelt et al. 2017), over every layer of a model at once.

1. Select: the user marks a span [start, end) of the test split and a threshold. A unit is selected when its
   activation is above the threshold at every position of the span and at or below it at the `pad` positions on
   each side (on over the span, off around it). Selected units are ranked by their margin: the lowest value inside
   minus the highest value around (in quantised levels).
2. Match: over the whole test split, count at every position how many of the top `max_units` selected units are
   on; a match is a maximal run of positions where at least `min_fraction` of them are on. Matches are ranked by
   the mean share of units on over the run, minus how far the run's length is from the span's (relative), so
   runs that look like the selection come first.
Everything is uint8 comparisons on the store's unit-major rows: the selection reads (units, span + 2 pad), the
match reads max_units whole rows; both are linear in the test split and independent of the model's size beyond
that.
"""

import time

import numpy as np

from rnnlens.explore.store import decode, level_threshold


def select_units(block, start, end, level, pad=3):
    """block (units, n) uint8 levels -> (selected row indices best first, margin per selected row in levels)."""
    n = block.shape[1]
    if not 0 <= start < end <= n:
        raise ValueError(f"span [{start}, {end}) is not inside the test split of {n} positions")
    inside_min = np.asarray(block[:, start:end]).min(axis=1).astype(np.int16)
    around = [np.asarray(block[:, max(0, start - pad):start]), np.asarray(block[:, end:min(n, end + pad)])]
    around = [a for a in around if a.shape[1]]
    around_max = (np.max([a.max(axis=1) for a in around], axis=0).astype(np.int16) if around
                  else np.full(block.shape[0], -1, dtype=np.int16))
    selected = np.flatnonzero((inside_min > level) & (around_max <= level))
    margin = inside_min[selected] - around_max[selected]
    order = np.lexsort((selected, -margin))  # largest margin first, then by row
    return selected[order], margin[order]


def find_matches(rows, level, span_length, min_fraction=1.0, limit=100):
    """rows (k, n) uint8 levels of the chosen units -> list of (start, end, score), best first."""
    k, n = rows.shape
    if k == 0:
        return []
    on_count = np.zeros(n, dtype=np.int32)
    for row in rows:  # one row at a time: k whole-split reads, no (k, n) boolean temporary
        on_count += np.asarray(row) > level
    need = max(1, int(np.ceil(min_fraction * k - 1e-9)))
    hit = on_count >= need
    edges = np.diff(np.concatenate([[0], hit.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if len(starts) == 0:
        return []
    summed = np.concatenate([[0], np.cumsum(on_count, dtype=np.int64)])
    lengths = ends - starts
    share = (summed[ends] - summed[starts]) / (lengths * k)
    closeness = np.abs(lengths - span_length) / np.maximum(lengths, span_length)
    score = share - closeness
    order = np.lexsort((starts, -score))[:limit]
    return [(int(starts[i]), int(ends[i]), float(score[i])) for i in order]


def hypothesis_search(store, kind, start, end, threshold, pad=3, max_units=20, min_fraction=1.0, limit=100):
    """The search over every layer's units of one kind of a store -> dict for the browser (JSON-ready)."""
    t0 = time.perf_counter()
    block = store.kind_block(kind)
    level = level_threshold(threshold, kind)
    selected, margin = select_units(block, start, end, level, pad)
    used = selected[:max_units]
    rows = block[np.sort(used)] if len(used) else block[:0]
    matches = find_matches(rows, level, end - start, min_fraction, limit)
    units = [{"layer": int(r // store.hidden) + 1, "unit": int(r % store.hidden),
              "margin": float(decode(m, kind) - decode(0, kind)), "used": i < max_units}
             for i, (r, m) in enumerate(zip(selected, margin))]
    return {"kind": kind, "start": start, "end": end, "threshold": threshold, "pad": pad, "units": units,
            "matches": [{"start": a, "end": b, "score": round(s, 4)} for a, b, s in matches],
            "candidates": int(block.shape[0]), "positions": int(block.shape[1]),
            "ms": round(1000 * (time.perf_counter() - t0), 1)}
