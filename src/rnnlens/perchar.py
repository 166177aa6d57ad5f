"""Per-character comparison of two models (the paper's Fig. 4: best LSTM vs 20-gram).

For every byte value of the test split: how often it occurs and the mean probability each model gives it
where it is the correct next character, sorted by the difference (A - B, largest gain of A first), each with a
95% bootstrap interval (rnnlens.intervals: the positions of each character resampled, the same ones for A and B,
so the difference's interval is paired; a model given as several files of one model id, its training seeds, is
their mean, and the seeds are resampled too). And the overlap of their errors, an error being a test character
whose probability is below 0.5 (the paper's definition): both wrong, only A wrong, only B wrong, neither.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from rnnlens import intervals
from rnnlens.errors import InputError
from rnnlens.io import atomic_write_text
from rnnlens.picks import add_pick_options, one_of
from rnnlens.predictions import read_predictions
from rnnlens import convergence
from rnnlens.plots import legend_outside, save_figures

log = logging.getLogger(__name__)

NAMED_BYTES = {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", ord(" "): "\u2423"}


def readable_byte(b):
    """'\\n' for newline, '␣' for space, the character for printable ASCII, 0xNN for the rest."""
    b = int(b)
    if b in NAMED_BYTES:
        return NAMED_BYTES[b]
    if 33 <= b <= 126:
        return chr(b)
    return f"0x{b:02X}"


def load_seeds(paths):
    """Predictions files of one model (one per training seed) -> (target, (seeds, positions) p, meta of the first)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    target, ps, metas = None, [], []
    for path in paths:
        df, meta = read_predictions(path, columns=["pos", "target", "p"])
        if target is not None and not np.array_equal(df["target"].to_numpy(), target):
            raise InputError(f"{path} and {paths[0]} do not cover the same test characters; the files of one model "
                             "(its seeds) must be predictions of the same corpus and split")
        target = df["target"].to_numpy()
        ps.append(df["p"].to_numpy(np.float64))
        metas.append(meta)
    models = sorted({str(m.get("model") or Path(p).stem) for m, p in zip(metas, paths)})
    if len(models) > 1:
        raise InputError(f"{', '.join(map(str, paths))} hold the models {', '.join(models)}; several files for one "
                         "side are the seeds of one model: give one model's files")
    return target, np.stack(ps), metas[0]


def load_pair(path_a, path_b):
    """-> (target, p_a, p_b, meta_a, meta_b): p_a and p_b are (positions,) for one file, (seeds, positions) for
    several files of one model."""
    a, p_a, meta_a = load_seeds(path_a)
    b, p_b, meta_b = load_seeds(path_b)
    if len(a) != len(b) or not np.array_equal(a, b):
        raise InputError(f"{path_a} and {path_b} do not cover the same test characters "
                         f"({len(a)} vs {len(b)} positions); compare predictions of the same corpus and split")
    return a, p_a[0] if len(p_a) == 1 else p_a, p_b[0] if len(p_b) == 1 else p_b, meta_a, meta_b


def per_character(target, p_a, p_b):
    """-> DataFrame per byte value present: byte, char, count, mean_p_a, mean_p_b, diff (sorted by diff, desc).
    p_a, p_b: (positions,), or (seeds, positions) for a model trained with several seeds (their mean)."""
    target = np.asarray(target, dtype=np.int64)
    p_a, p_b = intervals.as_seeds(p_a, "p_a").mean(axis=0), intervals.as_seeds(p_b, "p_b").mean(axis=0)
    counts = np.bincount(target, minlength=256)
    present = np.flatnonzero(counts)
    mean_a = np.bincount(target, p_a, minlength=256)[present] / counts[present]
    mean_b = np.bincount(target, p_b, minlength=256)[present] / counts[present]
    df = pd.DataFrame({"byte": present, "char": [readable_byte(b) for b in present], "count": counts[present],
                       "mean_p_a": mean_a, "mean_p_b": mean_b, "diff": mean_a - mean_b})
    return df.sort_values(["diff", "byte"], ascending=[False, True], kind="stable").reset_index(drop=True)


INTERVAL_COLUMNS = ["mean_p_a_ci_lo", "mean_p_a_ci_hi", "mean_p_b_ci_lo", "mean_p_b_ci_hi", "diff_ci_lo",
                    "diff_ci_hi"]


def with_intervals(df, target, p_a, p_b, resamples=intervals.RESAMPLES, level=intervals.LEVEL,
                   seed=intervals.SEED):
    """per_character's table with bootstrap intervals of mean_p_a, mean_p_b and diff (INTERVAL_COLUMNS)."""
    ids, samples = intervals.grouped_means(np.asarray(target, np.int64), {"a": p_a, "b": p_b}, resamples, seed)
    samples["diff"] = samples["a"] - samples["b"]
    table = {}
    for name, column in (("a", "mean_p_a"), ("b", "mean_p_b"), ("diff", "diff")):
        lo, hi = intervals.percentile_interval(samples[name], level)
        table[f"{column}_ci_lo"], table[f"{column}_ci_hi"] = lo, hi
    found = pd.DataFrame(table, index=ids)
    out = df.copy()
    for column in INTERVAL_COLUMNS:
        out[column] = found[column].reindex(out["byte"]).to_numpy()
    return out


def error_overlap(p_a, p_b, threshold=0.5):
    """Counts of test characters by which model errs (p < threshold); for models with several seeds
    ((seeds, positions) p), the mean over every pairing of their seeds."""
    p_a, p_b = intervals.as_seeds(p_a, "p_a"), intervals.as_seeds(p_b, "p_b")
    runs = [_overlap(a, b, threshold) for a in p_a for b in p_b]
    if len(runs) == 1:
        return runs[0]
    return {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}


def _overlap(p_a, p_b, threshold):
    wrong_a, wrong_b = np.asarray(p_a) < threshold, np.asarray(p_b) < threshold
    counts = {"both_wrong": int((wrong_a & wrong_b).sum()), "only_a_wrong": int((wrong_a & ~wrong_b).sum()),
              "only_b_wrong": int((~wrong_a & wrong_b).sum()), "neither_wrong": int((~wrong_a & ~wrong_b).sum())}
    counts["total"] = int(len(wrong_a))
    counts["a_wrong"], counts["b_wrong"] = int(wrong_a.sum()), int(wrong_b.sum())
    return counts


def plot_per_character(df, label_a, label_b, corpus, out_path, min_count, interval_note=None):
    """Top: mean p of every character (>= min_count occurrences) for A and B; bottom: their difference, pale where
    its interval holds 0. With the INTERVAL_COLUMNS in df, every point and bar has its interval (interval_note
    says which, e.g. intervals.describe()). Returns the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = df[df["count"] >= min_count].reset_index(drop=True)
    x = np.arange(len(shown))
    with_ci = all(c in shown for c in INTERVAL_COLUMNS)

    def yerr(column):
        if not with_ci:
            return None
        return np.vstack([shown[column] - shown[f"{column}_ci_lo"], shown[f"{column}_ci_hi"] - shown[column]]).clip(0)

    with plt.rc_context({"text.parse_math": False}):  # '$' and '_' are characters here, not markup
        fig, (ax_p, ax_d) = plt.subplots(2, 1, sharex=True, figsize=(max(7.0, 0.16 * len(shown) + 1.5), 6),
                                         gridspec_kw={"height_ratios": [1.3, 1]})
        bars = {"elinewidth": 0.8, "capsize": 1.5}
        ax_p.errorbar(x, shown["mean_p_a"], yerr=yerr("mean_p_a"), fmt="o", markersize=3.5, color="tab:blue",
                      label=label_a, **bars)
        ax_p.errorbar(x, shown["mean_p_b"], yerr=yerr("mean_p_b"), fmt="s", markersize=3.5, mfc="none",
                      color="0.25", label=label_b, **bars)
        ax_p.set_ylabel("mean p(correct char)")
        ax_p.set_ylim(0, 1.02)
        legend_outside(ax_p)  # beside the axes: inside it would hide the characters at either end
        ax_p.grid(alpha=0.3)
        note = f"; error bars: {interval_note}" if with_ci and interval_note else ""
        ax_p.set_title(f"{corpus + ': ' if corpus else ''}{label_a} vs {label_b} per character\n(>= {min_count} "
                       f"occurrences in test, sorted by the difference{note})", fontsize=9)
        colors = np.where(shown["diff"] >= 0, "tab:blue", "tab:red")
        if with_ci:
            # a difference whose interval holds 0 is drawn pale: the data cannot tell its sign
            unsure = (shown["diff_ci_lo"] <= 0) & (shown["diff_ci_hi"] >= 0)
            colors = [matplotlib.colors.to_rgba(c, 0.35 if u else 1.0) for c, u in zip(colors, unsure)]
        ax_d.bar(x, shown["diff"], color=colors, yerr=yerr("diff"),
                 error_kw={"ecolor": "0.2", **bars})
        ax_d.axhline(0, color="0.3", linewidth=0.8)
        ax_d.set_ylabel(f"{label_a} - {label_b}")
        if with_ci:
            ax_d.text(0.995, 0.97, "pale: interval includes 0", transform=ax_d.transAxes, ha="right", va="top",
                      fontsize=7, color="0.35")
        ax_d.grid(alpha=0.3, axis="y")
        ax_d.set_xticks(x)
        ax_d.set_xticklabels(shown["char"], fontsize=7, fontfamily="DejaVu Sans Mono")
        ax_d.set_xlim(-0.7, len(shown) - 0.3)
        ax_d.set_xlabel("character (\\n newline, \\r carriage return, \u2423 space, 0xNN other bytes)")
        fig.tight_layout()
        out_path = Path(out_path)
        outputs = [out_path] + ([out_path.with_suffix(".pdf")] if out_path.suffix == ".png" else [])
        save_figures(fig, outputs)
    return fig


def add_perchar_arguments(parser):
    parser.add_argument("--a", nargs="+", help="predictions Parquet of model A (e.g. the best LSTM; several files of "
                        "one model id: its training seeds), or --pick")
    add_pick_options(parser, "model A is the model of ARCH with the lowest test loss")
    parser.add_argument("--b", nargs="+", required=True, help="predictions Parquet of model B (e.g. ngram-20; "
                        "several files: its seeds)")
    parser.add_argument("--label-a", help="default: the model id in the file")
    parser.add_argument("--label-b")
    parser.add_argument("--min-count", type=int, default=100, help="the figure shows characters with >= this many "
                        "test occurrences (the CSV has all)")
    parser.add_argument("--threshold", type=float, default=0.5, help="an error is p(correct) < threshold")
    parser.add_argument("--resamples", type=int, default=intervals.RESAMPLES,
                        help=f"bootstrap resamples for the intervals (default {intervals.RESAMPLES})")
    parser.add_argument("--level", type=float, default=intervals.LEVEL, help="interval level (default 0.95)")
    parser.add_argument("--seed", type=int, default=intervals.SEED, help="bootstrap seed (fixed: the same intervals "
                        "every run)")
    parser.add_argument("--csv-out", required=True)
    parser.add_argument("--fig-out", required=True, help=".png (a .pdf beside it is written too) or .pdf")
    parser.add_argument("--overlap-out", required=True, help=".json or .csv with the error-overlap counts")


def run_perchar(args):
    a = one_of(args, "a", args.a, every_seed=True)
    args.a = [a] if isinstance(a, (str, Path)) else list(a)
    if args.resamples < 1:
        raise InputError("--resamples must be >= 1")
    target, p_a, p_b, meta_a, meta_b = load_pair(args.a, args.b)
    label_a = args.label_a or meta_a.get("model") or Path(args.a[0]).stem
    label_b = args.label_b or meta_b.get("model") or Path(args.b[0]).stem
    note = convergence.pick_note(label_a, meta_a)
    if note:
        log.info(note)
        label_a = convergence.label(label_a, meta_a)
    corpus = meta_a.get("corpus", "")
    df = with_intervals(per_character(target, p_a, p_b), target, p_a, p_b, args.resamples, args.level, args.seed)
    df.insert(0, "corpus", corpus)
    df["label_a"], df["label_b"] = label_a, label_b
    seeds_a, seeds_b = len(args.a), len(args.b)
    df["seeds_a"], df["seeds_b"] = seeds_a, seeds_b
    atomic_write_text(args.csv_out, df.to_csv(index=False))
    plot_per_character(df, label_a, label_b, corpus, args.fig_out, args.min_count,
                       intervals.describe(args.resamples, args.level, max(seeds_a, seeds_b)))
    overlap = {"corpus": corpus, "label_a": label_a, "label_b": label_b, "threshold": args.threshold,
               "seeds_a": seeds_a, "seeds_b": seeds_b, **error_overlap(p_a, p_b, args.threshold)}
    if str(args.overlap_out).endswith(".csv"):
        atomic_write_text(args.overlap_out, pd.DataFrame([overlap]).to_csv(index=False))
    else:
        atomic_write_text(args.overlap_out, json.dumps(overlap, indent=2) + "\n")
    top = ", ".join(f"{r.char} {r.diff:+.3f} [{r.diff_ci_lo:+.3f}, {r.diff_ci_hi:+.3f}]"
                    for r in df[df["count"] >= args.min_count].head(5).itertuples())
    log.info(f"perchar {corpus}: {label_a} vs {label_b}; largest gains ({100 * args.level:g}% intervals): {top}; "
             f"errors both {overlap['both_wrong']}, only {label_a} {overlap['only_a_wrong']}, only {label_b} "
             f"{overlap['only_b_wrong']}")
    return 0
