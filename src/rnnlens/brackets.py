"""Bracket-distance curves (the paper's Fig. 5, left): how well each model predicts a closing delimiter as a
function of the distance back to its opener.

Matching runs over the WHOLE corpus, so a closer early in a test piece still finds its opener in the real
text before the piece (the training or validation part, for char-rnn's rows layout the same row's columns). Each pair type has its own stack (a `)` only closes a `(`): an unmatched
closer (empty stack) is skipped and counted, and so is an opener that is never closed.

Double quotes open and close with the same byte, so they pair by toggling: the 1st, 3rd, ... quote of a
scope opens and the next one closes it. The scope (--quote-scope) keeps one stray quote from flipping
every later pair:
  line       pairing restarts at each newline (C and Python strings do not span lines);
  paragraph  restarts at each blank line (prose: a speech running over several paragraphs reopens its
             quote at each paragraph start without closing the previous one; those openers count as unmatched);
  text       one toggle over the whole corpus.
A quote preceded by a backslash (`\\"`, but not `\\\\"`) is an escape, not a delimiter. Known limit: a `'"'`
character literal in code is taken as a quote (with line scope the damage stays on its line).

Distance = position of the closer - position of its opener (>= 1). Distances are binned (default 20
characters, [0, 20), [20, 40), ...) and for every predictions file the mean probability of the closer is
taken per bin, with its standard error (the figure draws +-1 standard error as a band and prints the number of
closers per bin: the far bins hold few). A windowed predictor (the transformer) is sure to have read a closer's
opener only up to the distance guaranteed_context gives, less than its window: the figure marks that distance.
"""

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rnnlens import convergence
from rnnlens.errors import InputError
from rnnlens.corpus import PreparedCorpus
from rnnlens.io import atomic_write_text
from rnnlens.picks import add_pick_options, picked
from rnnlens.predictions import read_predictions
from rnnlens.plots import save_figures

log = logging.getLogger(__name__)

DELIMITERS = {  # name -> (opener byte, closer byte)
    "brace": (ord("{"), ord("}")),
    "paren": (ord("("), ord(")")),
    "bracket": (ord("["), ord("]")),
    "quote": (ord('"'), ord('"')),
}
QUOTE_SCOPES = ("line", "paragraph", "text")
BACKSLASH, NEWLINE, CR = ord("\\"), ord("\n"), ord("\r")


def match_pairs(data, opener, closer):
    """Stack matching of one bracket type over `data` (uint8 array), vectorised.

    -> dict of int64 arrays: open_pos, close_pos (matched pairs, sorted by close_pos),
    unmatched_close, unmatched_open (positions)."""
    data = np.asarray(data, dtype=np.uint8)
    opens, closes = np.flatnonzero(data == opener), np.flatnonzero(data == closer)
    pos = np.concatenate([opens, closes])
    step = np.concatenate([np.ones(len(opens), np.int64), -np.ones(len(closes), np.int64)])
    order = np.argsort(pos, kind="stable")
    pos, step = pos[order], step[order]
    depth = np.cumsum(step)
    # A closer met with an empty stack is skipped, which is the same as clamping the depth at 0: it is
    # unmatched exactly when the raw running sum reaches a new minimum below 0.
    running_min = np.minimum.accumulate(np.minimum(depth, 0))
    prev_min = np.concatenate([[0], running_min[:-1]])
    unmatched_close = (step < 0) & (depth < prev_min)
    clamped = depth - running_min
    # level of an event = the stack depth of its pair (depth after an opener, before a closer); within a
    # level the events alternate opener, closer, opener, ... so each closer pairs with the event before it
    level = np.where(step > 0, clamped, clamped + 1)
    keep = ~unmatched_close
    pos, step, level = pos[keep], step[keep], level[keep]
    by_level = np.lexsort((pos, level))
    pos, step, level = pos[by_level], step[by_level], level[by_level]
    is_close = np.flatnonzero(step < 0)
    if len(is_close) and (is_close.min() == 0 or np.any(step[is_close - 1] < 0)
                          or np.any(level[is_close - 1] != level[is_close])):
        raise AssertionError("bracket matching invariant broken")  # cannot happen for any input
    open_pos, close_pos = pos[is_close - 1], pos[is_close]
    matched_open = np.zeros(len(pos), bool)
    matched_open[is_close - 1] = True
    unmatched_open = np.sort(pos[(step > 0) & ~matched_open])
    by_close = np.argsort(close_pos, kind="stable")
    return {"open_pos": open_pos[by_close], "close_pos": close_pos[by_close],
            "unmatched_close": np.sort(np.concatenate([opens, closes])[order][unmatched_close]),
            "unmatched_open": unmatched_open}


def scope_boundaries(data, scope):
    """Positions that end a quote scope (a quote after such a position starts a fresh toggle)."""
    if scope == "text":
        return np.empty(0, np.int64)
    newlines = np.flatnonzero(data == NEWLINE)
    if scope == "line":
        return newlines
    if scope == "paragraph":
        # a blank line: "\n\n" or "\n\r\n"; the boundary is the second newline
        n = len(data)
        blank = np.zeros(len(newlines), bool)
        after1 = newlines + 1
        ok1 = after1 < n
        blank[ok1] = data[after1[ok1]] == NEWLINE
        after2 = newlines + 2
        ok2 = after2 < n
        blank[ok2] |= (data[after1[ok2]] == CR) & (data[after2[ok2]] == NEWLINE)
        first = newlines[blank]
        return np.where(data[np.minimum(first + 1, n - 1)] == NEWLINE, first + 1, first + 2)
    raise InputError(f"unknown quote scope {scope!r}; choose one of {', '.join(QUOTE_SCOPES)}")


def match_quotes(data, quote=ord('"'), scope="paragraph"):
    """Toggle pairing of a symmetric delimiter within scopes; same return shape as match_pairs."""
    data = np.asarray(data, dtype=np.uint8)
    q = np.flatnonzero(data == quote)
    # drop escaped quotes: \" but not \\"
    before1 = np.where(q >= 1, data[np.maximum(q - 1, 0)], 0)
    before2 = np.where(q >= 2, data[np.maximum(q - 2, 0)], 0)
    q = q[~((before1 == BACKSLASH) & (before2 != BACKSLASH))]
    segment = np.searchsorted(scope_boundaries(data, scope), q, side="left")
    index = np.arange(len(q))
    starts = np.concatenate([[True], segment[1:] != segment[:-1]]) if len(q) else np.zeros(0, bool)
    rank = index - np.maximum.accumulate(np.where(starts, index, 0)) if len(q) else index
    is_close = np.flatnonzero(rank % 2 == 1)
    last_in_segment = np.concatenate([segment[1:] != segment[:-1], [True]]) if len(q) else np.zeros(0, bool)
    unmatched_open = q[(rank % 2 == 0) & last_in_segment]
    return {"open_pos": q[is_close - 1], "close_pos": q[is_close],
            "unmatched_close": np.empty(0, np.int64), "unmatched_open": unmatched_open}


def match_delimiter(data, name, quote_scope="paragraph"):
    opener, closer = DELIMITERS[name]
    if opener == closer:
        return match_quotes(data, opener, quote_scope)
    return match_pairs(data, opener, closer)


def split_index(positions, pieces):
    """For corpus offsets: -> (inside any piece mask, index in the split's piece-after-piece order, piece start)."""
    positions = np.asarray(positions, dtype=np.int64)
    starts = np.array([a for a, _ in pieces], dtype=np.int64)
    ends = np.array([b for _, b in pieces], dtype=np.int64)
    before = np.concatenate([[0], np.cumsum(ends - starts)[:-1]])
    k = np.clip(np.searchsorted(starts, positions, side="right") - 1, 0, len(starts) - 1)
    inside = (positions >= starts[k]) & (positions < ends[k])
    return inside, before[k] + positions - starts[k], starts[k]


def closers_in_test(data, test_pieces, name, quote_scope="paragraph"):
    """Matched closers inside the test pieces. -> (offsets in the test split, distances, counts dict).
    `test_pieces`: [(start, end), ...] corpus ranges, or one (start, end)."""
    if np.ndim(test_pieces) == 1:
        test_pieces = [tuple(test_pieces)]
    m = match_delimiter(data, name, quote_scope)
    inside, index, piece_start = split_index(m["close_pos"], test_pieces)
    close, open_ = m["close_pos"][inside], m["open_pos"][inside]

    def count_in(a):
        return int(split_index(a, test_pieces)[0].sum()) if len(a) else 0

    counts = {"matched_closers": int(inside.sum()),
              "openers_before_test": int((open_ < piece_start[inside]).sum()),
              "unmatched_closers": count_in(m["unmatched_close"]),
              "unmatched_openers": count_in(m["unmatched_open"]),
              "unmatched_closers_corpus": int(len(m["unmatched_close"])),
              "unmatched_openers_corpus": int(len(m["unmatched_open"]))}
    return index[inside], close - open_, counts


def bin_curves(distances, probabilities, bin_width=20):
    """Per bin of distance: count, and for every model mean and standard error of p.

    probabilities: {label: p array aligned with distances}. -> DataFrame, one row per (bin, model),
    only bins that hold at least one closer."""
    if bin_width < 1:
        raise InputError("the bin width must be >= 1 character")
    distances = np.asarray(distances, dtype=np.int64)
    rows = []
    if len(distances) == 0:
        return pd.DataFrame(columns=["bin_start", "bin_end", "count", "model", "mean_p", "sem_p"])
    bins = distances // bin_width
    counts = np.bincount(bins)
    filled = np.flatnonzero(counts)
    for label, p in probabilities.items():
        p = np.asarray(p, dtype=np.float64)
        sums, squares = np.bincount(bins, p), np.bincount(bins, p * p)
        for b in filled:
            c = counts[b]
            mean = sums[b] / c
            var = max(0.0, squares[b] / c - mean * mean) * c / (c - 1) if c > 1 else np.nan
            rows.append({"bin_start": int(b * bin_width), "bin_end": int((b + 1) * bin_width), "count": int(c),
                         "model": label, "mean_p": mean, "sem_p": np.sqrt(var / c) if c > 1 else np.nan})
    return pd.DataFrame(rows)


def family_of(label, meta):
    family = (meta or {}).get("family") or label.split("-")[0]  # a model's meta names it; a baseline: ngram-20
    return "ngram" if label.startswith("ngram") else family


SHOWN = {"brace": "}", "paren": ")", "bracket": "]", "quote": '"'}


def guaranteed_context(meta):
    """For a windowed predictor (the transformer): {window, stride, guaranteed}, where `guaranteed` is the
    distance up to which every closer's opener lies inside what the model read; None for other models.
    Strided evaluation predicts `stride` positions from each window, so the first of them reads only
    window - stride + 1 bytes (window // 2 + 1 at the default stride); dynamic evaluation's segments play the
    stride's part. Between that distance and the window some closers see their opener and some do not."""
    window = (meta or {}).get("window")
    if not window:
        return None
    stride = ((meta.get("evaluation") or {}).get("stride") or (meta.get("dynamic") or {}).get("segment")
              or max(1, int(window) // 2))
    return {"window": int(window), "stride": int(stride), "guaranteed": int(window) - int(stride) + 1}


def plot_curves(df, corpus, name, families, out_base, bin_width, min_count=10, max_distance=400, unconverged=(),
                contexts=None):
    """One figure: mean p of the closer per distance bin for every model, with a band of +-1 standard error of
    that mean; the closers per bin as light bars behind, their number on each bar; the legend below the axes, y
    fitted to the highest band; a dotted vertical line at the distance up to which a windowed model is sure to
    have read the opener (contexts: {label: guaranteed_context(meta)}), one line per distinct distance. Without
    a bin to show, a note stands in for the figure. Returns the figure."""
    from rnnlens.plots import fit_ylim, legend_outside, model_styles, note_figure, pyplot

    out_base = Path(out_base)
    paths = [out_base.with_name(f"{out_base.name}.{ext}") for ext in ("png", "pdf")]
    shown = df[(df["count"] >= min_count) & (df["bin_start"] < max_distance)] if len(df) else df
    title = f"{corpus}: closing {SHOWN[name]} vs distance to its opener"
    if not len(shown):
        total = int(df.drop_duplicates("bin_start")["count"].sum()) if len(df) else 0
        return note_figure(title, f"Nothing to plot: {total} matched {SHOWN[name]} in the test split, no distance bin "
                           f"below {max_distance} with >= {min_count} (analysis.bracket_min_count).", paths)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    counts = shown.drop_duplicates("bin_start")
    ax_counts = ax.twinx()
    ax_counts.bar(counts["bin_start"] + bin_width / 2, counts["count"], width=bin_width * 0.9, color="0.9", zorder=0)
    ax_counts.set_ylabel("closers per bin (grey bars)", color="0.45")
    ax_counts.tick_params(axis="y", colors="0.45")
    ax.set_zorder(ax_counts.get_zorder() + 1)
    ax.patch.set_visible(False)
    all_bins = np.arange(0, shown["bin_start"].max() + 1, bin_width)
    labels = list(dict.fromkeys(shown["model"]))
    styles = model_styles(labels)
    x = all_bins + bin_width / 2
    for label in labels:
        curve = shown[shown["model"] == label].set_index("bin_start")
        # NaN where a bin is missing or too thin, so the line breaks there instead of bridging the gap
        mean_p = curve["mean_p"].reindex(all_bins).to_numpy(np.float64)
        sem_p = curve["sem_p"].reindex(all_bins).to_numpy(np.float64)
        style = styles[label]
        ax.fill_between(x, mean_p - sem_p, mean_p + sem_p, color=style["color"], alpha=0.16, linewidth=0,
                        label=f"_band {label}")
        ax.plot(x, mean_p, linestyle=style["linestyle"], color=style["color"],
                marker=style["marker"], markersize=3.5, linewidth=1.6,
                label=f"{label} (unconverged)" if label in unconverged else label)
    # every curve and its band visible, the n-gram included; not squashed into a 0-1 axis
    fit_ylim(ax, (shown["mean_p"] + shown["sem_p"].fillna(0)).to_numpy())
    by_distance = {}
    for label, context in (contexts or {}).items():
        if label in styles and context:
            by_distance.setdefault((context["guaranteed"], context["window"], context["stride"]), []).append(label)
    for (guaranteed, window, stride), members in sorted(by_distance.items()):
        # beyond this distance the model cannot be sure to have read the opener: where its curve may fall
        ax.axvline(guaranteed, color=styles[members[0]]["color"] if len(members) == 1 else "0.2", linestyle=":",
                   linewidth=1.3, label=f"{', '.join(members)}: opener surely read up to {guaranteed} "
                                        f"(window {window}, stride {stride})")
    right = max([all_bins.max() + bin_width] + [g + bin_width for g, _, _ in by_distance])
    ax.set_xlim(0, right)
    for x_bin, c in zip(counts["bin_start"] + bin_width / 2, counts["count"]):
        # the number itself, above the axes where no curve runs: a bin of 12 closers carries a standard error as
        # large as the gaps between the curves
        ax.text(x_bin, 1.01, f"{int(c)}", transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                fontsize=6.5, color="0.4")
    ax.set_xlabel(f"distance to the matching opener (characters, bins of {bin_width}; bins with >= {min_count}; "
                  "bands: +-1 standard error)", fontsize=9)
    ax.set_ylabel(f"mean probability of {SHOWN[name]}")
    ax.set_title(f"{title}\n{', '.join(labels)}\n(numbers above the axes: closers per bin)", fontsize=9, pad=12)
    ax.grid(alpha=0.3)
    legend_outside(ax, "below", ncol=2 if by_distance else min(4, len(labels)))
    fig.tight_layout()
    save_figures(fig, paths)
    return fig


def load_test_p(path, test_len, test_bytes):
    df, meta = read_predictions(path, columns=["pos", "target", "p"])
    if len(df) != test_len:
        raise InputError(f"{path} has {len(df)} positions but the test split has {test_len}; "
                         "was it made on another corpus or split?")
    if not np.array_equal(df["target"].to_numpy(), test_bytes):
        raise InputError(f"{path}: its targets differ from the corpus test split; wrong --data for this file?")
    return df["p"].to_numpy(), meta


def brackets(data_json, prediction_paths, labels=None, delimiters=tuple(DELIMITERS), bin_width=20,
             quote_scope="paragraph"):
    """-> (curves DataFrame for all delimiters, summary dict, families {label: family})."""
    corpus = PreparedCorpus.load(data_json)
    test_bytes = corpus.split("test")
    if labels and len(labels) != len(prediction_paths):
        raise InputError(f"{len(labels)} labels for {len(prediction_paths)} predictions files; give one each")
    probs, families, unconverged, windows, contexts = {}, {}, [], {}, {}
    for i, path in enumerate(prediction_paths):
        p, meta = load_test_p(path, len(test_bytes), test_bytes)
        label = labels[i] if labels else meta.get("model") or Path(path).stem
        if label in probs:
            raise InputError(f"label {label!r} is used twice; give distinct --labels")
        probs[label], families[label] = p, family_of(label, meta)
        if meta.get("window"):
            windows[label] = int(meta["window"])
            contexts[label] = guaranteed_context(meta)
        if convergence.is_unconverged(meta):
            unconverged.append(label)
            log.info(convergence.pick_note(label, meta, "one of the compared models"))
    frames, summary = [], {"corpus": corpus.name, "bin_width": bin_width, "quote_scope": quote_scope,
                           "test_pieces": len(corpus.pieces["test"]), "test_bytes": len(test_bytes),
                           "delimiters": {}, "unconverged": unconverged, "windows": windows,
                           "contexts": contexts}
    for name in delimiters:
        t0 = time.time()
        offsets, distances, counts = closers_in_test(corpus.data, corpus.pieces["test"], name, quote_scope)
        curves = bin_curves(distances, {k: v[offsets] for k, v in probs.items()}, bin_width)
        curves.insert(0, "delimiter", SHOWN[name])
        curves.insert(0, "delimiter_name", name)
        curves.insert(0, "corpus", corpus.name)
        curves["family"] = curves["model"].map(families)
        frames.append(curves)
        counts["median_distance"] = float(np.median(distances)) if len(distances) else None
        counts["seconds"] = round(time.time() - t0, 4)
        summary["delimiters"][name] = counts
        log.info(f"{corpus.name} {SHOWN[name]}: {counts['matched_closers']} matched closers in test "
                 f"({counts['openers_before_test']} opened before it), skipped {counts['unmatched_closers']} unmatched "
                 f"closers and {counts['unmatched_openers']} unclosed openers; {counts['seconds']:.3f}s")
    return pd.concat(frames, ignore_index=True), summary, families


def add_brackets_arguments(parser):
    parser.add_argument("--data", required=True, help="prepared corpus results/{corpus}/data.json")
    parser.add_argument("--predictions", nargs="*", default=[], help="predictions Parquet files, one per model "
                        "(after the picked ones, if --pick)")
    add_pick_options(parser, "the best model of every architecture, and the best model of ARCH of every depth at "
                     "the largest size")
    parser.add_argument("--labels", nargs="+", help="one label per predictions file (default: the model id in it)")
    parser.add_argument("--delimiters", default=",".join(DELIMITERS),
                        help=f"comma-separated subset of {','.join(DELIMITERS)} (default: all)")
    parser.add_argument("--bin", type=int, default=20, help="bin width in characters (default 20)")
    parser.add_argument("--quote-scope", choices=QUOTE_SCOPES, default="paragraph",
                        help="where double-quote pairing restarts: line (code), paragraph (prose, default), text")
    parser.add_argument("--min-count", type=int, default=10, help="figures show bins with at least this many closers")
    parser.add_argument("--max-distance", type=int, default=400, help="figures show bins starting below this")
    parser.add_argument("--csv-out", required=True)
    parser.add_argument("--summary-out", help="JSON with matched/unmatched counts per delimiter")
    parser.add_argument("--fig-dir", required=True,
                        help="writes brackets-{corpus}-{delimiter}.png and .pdf for every delimiter")


def run_brackets(args):
    delimiters = [d for d in args.delimiters.split(",") if d]
    unknown = [d for d in delimiters if d not in DELIMITERS]
    if unknown or not delimiters:
        raise InputError(f"unknown delimiters {unknown}; choose from {','.join(DELIMITERS)}")
    if args.bin < 1:
        raise InputError("--bin must be >= 1")
    if args.pick:
        args.predictions = picked(args, every_arch=True) + args.predictions
    if not args.predictions:
        raise InputError("give --predictions PARQUET..., or --pick ARCH with --table1 and --candidates")
    t0 = time.time()
    curves, summary, families = brackets(args.data, args.predictions, args.labels, delimiters, args.bin,
                                         args.quote_scope)
    corpus = summary["corpus"]
    for name in delimiters:
        plot_curves(curves[curves["delimiter_name"] == name], corpus, name, families,
                    Path(args.fig_dir) / f"brackets-{corpus}-{name}", args.bin, args.min_count, args.max_distance,
                    summary["unconverged"], summary["contexts"])
    atomic_write_text(args.csv_out, curves.to_csv(index=False))
    if args.summary_out:
        atomic_write_text(args.summary_out, json.dumps(summary, indent=2) + "\n")
    log.info(f"brackets on {corpus}: {len(args.predictions)} models, {len(delimiters)} delimiters in "
             f"{time.time() - t0:.2f}s -> {args.csv_out}, {args.fig_dir}")
    return 0
