"""Hypothesis search as in LSTMVis (Strobelt et al. 2017), over every layer of a model at once.

1. Select: the user marks a span [start, end) of the test split and a threshold. A unit is on where its value is
   above the threshold. Direction `rises` selects the units on at every position of the span and off at the `pad`
   positions on each side (on over the span, off around it); `falls` the opposite (off over the span, on around
   it: a cell that drops over indentation); `either` both. Selected units are ranked by their margin: the gap
   between the span and its surroundings, the lowest value inside minus the highest around (or the reverse).
   The threshold is on the kind's values (scale `kind`) or on each unit's own scale (scale `own`: 0 and 1 are the
   unit's 2nd and 98th percentiles over the test split, raw c for an LSTM cell), which finds units whose values
   sit in a narrow band of their kind's range (a saturated tanh(c)) and ranks them by margins of one common scale.
2. Match: over the whole test split, count at every position how many of the top `max_units` selected units are
   on (each in its own direction: a falling unit counts where it is off); a match is a maximal run of positions
   where at least `min_fraction` of them are. Matches are ranked by the mean share of units on over the run,
   minus how far the run's length is from the span's (relative), so runs that look like the selection come first.
   Every match is counted and reachable: the answer has the total, one page of ranked matches (with each
   unit's share over the match: the match view), and a bit mask of every matched position for the text view.
Everything is uint8 comparisons on the store's unit-major rows: the selection reads (units, span + 2 pad), the
match reads max_units whole rows; both are linear in the test split and independent of the model's size beyond
that.
"""

import base64
import time

import numpy as np

from rnnlens.explore.store import level_thresholds

DIRECTIONS = ("rises", "falls", "either")
SCALES = ("kind", "own")
PLOT_UNITS = 10  # lines in the plot of the selection


def select_units(block, start, end, level, pad=3, direction="rises", step=None):
    """block (units, n) uint8 levels; a unit is on where its level > `level` (one level, or one per row).
    -> (selected rows best first, margin per selected row, falls per selected row). The margin is in levels times
    `step` (per row: the value of one level, so that rows on different scales compare; default 1)."""
    n, rows = block.shape[1], block.shape[0]
    if not 0 <= start < end <= n:
        raise ValueError(f"span [{start}, {end}) is not inside the test split of {n} positions")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r}: use one of {', '.join(DIRECTIONS)}")
    level = np.broadcast_to(np.asarray(level, dtype=np.int16), (rows,))
    step = np.ones(rows) if step is None else np.broadcast_to(np.asarray(step, dtype=np.float64), (rows,))
    inside = np.asarray(block[:, start:end])
    inside_min, inside_max = inside.min(axis=1).astype(np.int16), inside.max(axis=1).astype(np.int16)
    around = [np.asarray(block[:, max(0, start - pad):start]), np.asarray(block[:, end:min(n, end + pad)])]
    around = [a for a in around if a.shape[1]]
    if around:
        around_max = np.max([a.max(axis=1) for a in around], axis=0).astype(np.int16)
        around_min = np.min([a.min(axis=1) for a in around], axis=0).astype(np.int16)
    else:  # pad 0 (or a span covering the split): nothing around, the threshold stands for it
        around_max, around_min = level, level + 1
    rises = (inside_min > level) & (around_max <= level) if direction != "falls" else np.zeros(rows, bool)
    falls = (inside_max <= level) & (around_min > level) if direction != "rises" else np.zeros(rows, bool)
    selected = np.flatnonzero(rises | falls)
    margin = np.where(falls, around_min - inside_max, inside_min - around_max)[selected] * step[selected]
    order = np.lexsort((selected, -margin))  # largest margin first, then by row
    return selected[order], margin[order], falls[selected][order]


def match_runs(rows, level, falls, span_length, min_fraction=1.0):
    """rows (k, n) uint8 levels of the chosen units, their levels and directions -> (starts, ends, scores, share,
    hit mask) of every match, in text order."""
    k, n = rows.shape
    on_count = np.zeros(n, dtype=np.uint8 if k < 256 else np.int32)  # narrow counts: the sums below are the cost
    level = np.broadcast_to(np.asarray(level), (k,))
    falls = np.broadcast_to(np.asarray(falls, dtype=bool), (k,))
    for row, t, down in zip(rows, level, falls):  # one row at a time: k whole-split reads, no (k, n) temporary
        row = np.asarray(row)
        np.add(on_count, (row <= t) if down else (row > t), out=on_count, casting="unsafe")
    need = max(1, int(np.ceil(min_fraction * k - 1e-9)))
    hit = on_count >= need if k else np.zeros(n, dtype=bool)
    padded = np.concatenate([[False], hit, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])  # start, end, start, end, ...
    starts, ends = edges[0::2], edges[1::2]
    lengths = ends - starts
    summed = np.add.reduceat(np.append(on_count, 0), edges, dtype=np.int64)[0::2] if len(edges) else lengths
    share = summed / np.maximum(lengths * k, 1)
    closeness = np.abs(lengths - span_length) / np.maximum(lengths, span_length)
    return starts, ends, share - closeness, share, hit


def find_matches(rows, level, span_length, min_fraction=1.0, limit=100, falls=False):
    """rows (k, n) uint8 levels of the chosen units -> list of (start, end, score), best first (at most limit)."""
    if rows.shape[0] == 0:
        return []
    starts, ends, score, _, _ = match_runs(rows, level, falls, span_length, min_fraction)
    order = np.lexsort((starts, -score))[:limit]
    return [(int(starts[i]), int(ends[i]), float(score[i])) for i in order]


def hypothesis_search(store, kind, start, end, threshold, pad=3, max_units=20, min_fraction=1.0, limit=100,
                      direction="rises", scale="kind", offset=0, context=30):
    """The search over every layer's units of one kind of a store -> dict for the browser (JSON-ready)."""
    t0 = time.perf_counter()
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r}: use kind (the threshold is a value of the kind) or own (a fraction "
                         "of each unit's own 2nd..98th percentile range)")
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction {min_fraction}: use a share of the units in (0, 1]")
    if max_units < 1 or limit < 1 or offset < 0:
        raise ValueError("max_units and limit must be at least 1, offset at least 0")
    # on its own scale an LSTM cell is searched on raw c: the same order as tanh(c), without tanh's flat ends
    source = "c_raw" if scale == "own" and kind == "c" and "c_raw" in store.kinds else kind
    rows = store.kind_rows(source)
    block = store.acts[rows]
    if scale == "kind":
        level = level_thresholds(threshold, store.ranges[rows])
        step = (store.ranges[rows, 1] - store.ranges[rows, 0]) / 255  # value of one level
        lo_level = np.zeros(len(level))
    else:
        lo_level, hi_level = (v.astype(np.float64) for v in store.own_levels(np.arange(rows.start, rows.stop)))
        width = np.maximum(hi_level - lo_level, 1)
        level = np.clip(np.floor(lo_level + threshold * width + 1e-9), -1, 255).astype(np.int16)
        step = 1 / width  # own-scale fraction of one level
    selected, margin, falls = select_units(block, start, end, level, pad, direction, step)
    used = np.sort(selected[:max_units])
    used_falls = dict(zip(selected.tolist(), falls.tolist()))
    chosen = np.asarray(block[used]) if len(used) else np.zeros((0, store.n), np.uint8)
    starts, ends, score, share, hit = match_runs(chosen, level[used], [used_falls[r] for r in used], end - start,
                                                 min_fraction)
    order = np.lexsort((starts, -score))
    page = order[offset:offset + limit]

    def shown(row_levels, r):  # a unit's values as the search saw them: the kind's, or its own 0..1
        if scale == "kind":
            return store.decode_row(rows.start + r, row_levels)
        return (row_levels - lo_level[r]) * step[r]

    matches = []
    for i in page:
        a, b = int(starts[i]), int(ends[i])
        on = [(chosen[j, a:b] <= level[r]) if used_falls[r] else (chosen[j, a:b] > level[r])
              for j, r in enumerate(used)]
        matches.append({"start": a, "end": b, "score": round(float(score[i]), 4), "share": round(float(share[i]), 4),
                        "units_on": [round(float(o.mean()), 3) for o in on]})
    plot_from, plot_to = max(0, start - context), min(store.n, end + context)
    plot = {"start": plot_from, "end": plot_to, "threshold": threshold,
            "series": [{"layer": int(r // store.hidden) + 1, "unit": int(r % store.hidden), "falls": bool(f),
                        "values": np.round(shown(np.asarray(block[r, plot_from:plot_to], dtype=np.float64), r),
                                           4).tolist()}
                       for r, f in zip(selected[:PLOT_UNITS], falls[:PLOT_UNITS])]}
    units = [{"layer": int(r // store.hidden) + 1, "unit": int(r % store.hidden), "margin": round(float(m), 4),
              "falls": bool(f), "used": i < max_units}
             for i, (r, m, f) in enumerate(zip(selected, margin, falls))]
    return {"kind": kind, "source": source, "start": start, "end": end, "threshold": threshold, "pad": pad,
            "direction": direction, "scale": scale, "min_fraction": min_fraction, "max_units": max_units,
            "units": units,
            "used": [{"layer": int(r // store.hidden) + 1, "unit": int(r % store.hidden)} for r in used],
            "total": int(len(starts)), "offset": offset, "limit": limit, "matches": matches,
            "matched_positions": int(hit.sum()), "mask": base64.b64encode(np.packbits(hit).tobytes()).decode(),
            "plot": plot, "candidates": int(block.shape[0]), "positions": int(block.shape[1]),
            "ms": round(1000 * (time.perf_counter() - t0), 1)}
