"""Per-character comparison of two models (the paper's Fig. 4: best LSTM vs 20-gram).

For every byte value of the test split: how often it occurs and the mean probability each model gives it
where it is the correct next character, sorted by the difference (A - B, largest gain of A first). And the
overlap of their errors, an error being a test character whose probability is below 0.5 (the paper's
definition): both wrong, only A wrong, only B wrong, neither.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

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


def load_pair(path_a, path_b):
    a, meta_a = read_predictions(path_a, columns=["pos", "target", "p"])
    b, meta_b = read_predictions(path_b, columns=["pos", "target", "p"])
    if len(a) != len(b) or not np.array_equal(a["target"].to_numpy(), b["target"].to_numpy()):
        raise InputError(f"{path_a} and {path_b} do not cover the same test characters "
                         f"({len(a)} vs {len(b)} positions); compare predictions of the same corpus and split")
    return a["target"].to_numpy(), a["p"].to_numpy(np.float64), b["p"].to_numpy(np.float64), meta_a, meta_b


def per_character(target, p_a, p_b):
    """-> DataFrame per byte value present: byte, char, count, mean_p_a, mean_p_b, diff (sorted by diff, desc)."""
    target = np.asarray(target, dtype=np.int64)
    counts = np.bincount(target, minlength=256)
    present = np.flatnonzero(counts)
    mean_a = np.bincount(target, np.asarray(p_a, np.float64), minlength=256)[present] / counts[present]
    mean_b = np.bincount(target, np.asarray(p_b, np.float64), minlength=256)[present] / counts[present]
    df = pd.DataFrame({"byte": present, "char": [readable_byte(b) for b in present], "count": counts[present],
                       "mean_p_a": mean_a, "mean_p_b": mean_b, "diff": mean_a - mean_b})
    return df.sort_values(["diff", "byte"], ascending=[False, True], kind="stable").reset_index(drop=True)


def error_overlap(p_a, p_b, threshold=0.5):
    """Counts of test characters by which model errs (p < threshold)."""
    wrong_a, wrong_b = np.asarray(p_a) < threshold, np.asarray(p_b) < threshold
    counts = {"both_wrong": int((wrong_a & wrong_b).sum()), "only_a_wrong": int((wrong_a & ~wrong_b).sum()),
              "only_b_wrong": int((~wrong_a & wrong_b).sum()), "neither_wrong": int((~wrong_a & ~wrong_b).sum())}
    counts["total"] = int(len(wrong_a))
    counts["a_wrong"], counts["b_wrong"] = int(wrong_a.sum()), int(wrong_b.sum())
    return counts


def plot_per_character(df, label_a, label_b, corpus, out_path, min_count):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = df[df["count"] >= min_count].reset_index(drop=True)
    x = np.arange(len(shown))
    with plt.rc_context({"text.parse_math": False}):  # '$' and '_' are characters here, not markup
        fig, (ax_p, ax_d) = plt.subplots(2, 1, sharex=True, figsize=(max(7.0, 0.16 * len(shown) + 1.5), 6),
                                         gridspec_kw={"height_ratios": [1.3, 1]})
        ax_p.plot(x, shown["mean_p_a"], "o", markersize=3.5, color="tab:blue", label=label_a)
        ax_p.plot(x, shown["mean_p_b"], "s", markersize=3.5, mfc="none", color="0.25", label=label_b)
        ax_p.set_ylabel("mean p(correct char)")
        ax_p.set_ylim(0, 1.02)
        legend_outside(ax_p)  # beside the axes: inside it would hide the characters at either end
        ax_p.grid(alpha=0.3)
        ax_p.set_title(f"{corpus + ': ' if corpus else ''}{label_a} vs {label_b} per character\n(>= {min_count} "
                       "occurrences in test, sorted by the difference)", fontsize=9)
        colors = np.where(shown["diff"] >= 0, "tab:blue", "tab:red")
        ax_d.bar(x, shown["diff"], color=colors)
        ax_d.axhline(0, color="0.3", linewidth=0.8)
        ax_d.set_ylabel(f"{label_a} - {label_b}")
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
    parser.add_argument("--a", help="predictions Parquet of model A (e.g. the best LSTM), or --pick")
    add_pick_options(parser, "model A is the model of ARCH with the lowest test loss")
    parser.add_argument("--b", required=True, help="predictions Parquet of model B (e.g. ngram-20)")
    parser.add_argument("--label-a", help="default: the model id in the file")
    parser.add_argument("--label-b")
    parser.add_argument("--min-count", type=int, default=100, help="the figure shows characters with >= this many "
                        "test occurrences (the CSV has all)")
    parser.add_argument("--threshold", type=float, default=0.5, help="an error is p(correct) < threshold")
    parser.add_argument("--csv-out", required=True)
    parser.add_argument("--fig-out", required=True, help=".png (a .pdf beside it is written too) or .pdf")
    parser.add_argument("--overlap-out", required=True, help=".json or .csv with the error-overlap counts")


def run_perchar(args):
    args.a = one_of(args, "a", args.a)
    target, p_a, p_b, meta_a, meta_b = load_pair(args.a, args.b)
    label_a = args.label_a or meta_a.get("model") or Path(args.a).stem
    label_b = args.label_b or meta_b.get("model") or Path(args.b).stem
    note = convergence.pick_note(label_a, meta_a)
    if note:
        log.info(note)
        label_a = convergence.label(label_a, meta_a)
    corpus = meta_a.get("corpus", "")
    df = per_character(target, p_a, p_b)
    df.insert(0, "corpus", corpus)
    df["label_a"], df["label_b"] = label_a, label_b
    atomic_write_text(args.csv_out, df.to_csv(index=False))
    plot_per_character(df, label_a, label_b, corpus, args.fig_out, args.min_count)
    overlap = {"corpus": corpus, "label_a": label_a, "label_b": label_b, "threshold": args.threshold,
               **error_overlap(p_a, p_b, args.threshold)}
    if str(args.overlap_out).endswith(".csv"):
        atomic_write_text(args.overlap_out, pd.DataFrame([overlap]).to_csv(index=False))
    else:
        atomic_write_text(args.overlap_out, json.dumps(overlap, indent=2) + "\n")
    top = ", ".join(f"{r.char} {r.diff:+.3f}" for r in df[df["count"] >= args.min_count].head(5).itertuples())
    log.info(f"perchar {corpus}: {label_a} vs {label_b}; largest gains: {top}; errors both {overlap['both_wrong']}, "
             f"only {label_a} {overlap['only_a_wrong']}, only {label_b} {overlap['only_b_wrong']}")
    return 0
