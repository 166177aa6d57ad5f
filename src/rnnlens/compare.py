"""The comparison across architectures: the error breakdown by oracle category (the paper's Fig. 6 "peeling the
onion") of the best model of each architecture of Table 1, dynamic-evaluation predictors counted as their own
architecture (lstm+dyn), side by side, and how many of the LSTM's errors of each category each one removes.

Reads only Table 1 and the per-model oracle CSVs (results/{corpus}/oracles/{model}.csv).
"""

import logging
from pathlib import Path

import pandas as pd

from rnnlens.errors import InputError
from rnnlens.io import atomic_csv
from rnnlens.oracles import CATEGORIES, CATEGORY_COLORS, CATEGORY_LABELS, category_totals
from rnnlens.plots import legend_outside, pyplot, save_figures
from rnnlens.tables import DYN_FLAG_MARK, arch_rank

log = logging.getLogger(__name__)


def compare(table1_csv, corpus, oracle_csvs, reference="lstm"):
    """-> DataFrame: one row per (arch, category) with the model, its errors in that category, the share of the
    test bytes, and the change against the reference architecture's best model (removed: fraction of its errors
    in the category that are gone; negative: more errors)."""
    t1 = pd.read_csv(table1_csv)
    t1 = t1[t1.corpus == corpus]
    by_model = {Path(p).stem: p for p in oracle_csvs}
    t1 = t1[t1.model.isin(by_model)]
    if t1.empty:
        raise InputError(f"no model of Table 1 for corpus {corpus!r} has an oracle CSV among the {len(oracle_csvs)} given")
    rows = []
    for arch, group in t1.groupby("arch"):
        best = group.loc[group.test_loss.idxmin()]
        totals = category_totals(pd.read_csv(by_model[best.model]))
        totals = totals[totals["set"] == totals["set"].iloc[0]].set_index("category")
        for category in CATEGORIES:
            count = int(totals["count"].get(category, 0))
            flag = best.get("dyn_flag")
            rows.append({"corpus": corpus, "arch": arch, "model": best.model, "test_loss": best.test_loss,
                         "dyn_flag": flag if isinstance(flag, str) and flag else None,
                         "category": category, "errors": count,
                         "share_of_test": float(totals["share_of_test"].get(category, 0.0))})
    df = pd.DataFrame(rows)
    df = df.sort_values(["arch", "category"], key=lambda s: s.map(arch_rank) if s.name == "arch"
                        else s.map({c: i for i, c in enumerate(CATEGORIES)})).reset_index(drop=True)
    if reference in set(df.arch):
        ref = df[df.arch == reference].set_index("category")["errors"]
        df["reference"] = df[df.arch == reference].model.iloc[0]
        df["errors_vs_reference"] = df.errors - df.category.map(ref)
        df["removed_vs_reference"] = [(-(e - ref[c]) / ref[c]) if ref[c] else None
                                      for e, c in zip(df.errors, df.category)]
    return df


def plot(df, out_png, corpus):
    """Stacked bars of errors per category, one bar per architecture (its best model)."""
    plt = pyplot()
    archs = list(dict.fromkeys(df.arch))
    fig, ax = plt.subplots(figsize=(1.3 * len(archs) + 3.5, 4.6))
    bottom = [0.0] * len(archs)
    for category in CATEGORIES:
        values = [float(df[(df.arch == a) & (df.category == category)].share_of_test.sum()) * 100 for a in archs]
        ax.bar(range(len(archs)), values, bottom=bottom, color=CATEGORY_COLORS[category],
               label=CATEGORY_LABELS[category], edgecolor="white", linewidth=0.5)
        bottom = [b + v for b, v in zip(bottom, values)]
    flagged = {a for a in archs if "dyn_flag" in df and df[df.arch == a].dyn_flag.notna().any()}
    labels = [f"{a}\n{df[df.arch == a].model.iloc[0]}\n{df[df.arch == a].test_loss.iloc[0]:.3f}"
              + (DYN_FLAG_MARK if a in flagged else "") for a in archs]
    ax.set_xticks(range(len(archs)), labels, fontsize=8)
    ax.set_ylabel("errors (% of test bytes, p(true) < threshold)")
    ax.set_title(f"{corpus}: errors by oracle category, best model of each architecture\n"
                 "(label: arch, model, test loss in nats/char"
                 + (f"; {DYN_FLAG_MARK} dynamic evaluation flagged in Table 1: no gain over static)" if flagged
                    else ")"), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    legend_outside(ax)
    fig.tight_layout()
    save_figures(fig, [out_png, Path(out_png).with_suffix(".pdf")])


def add_compare_archs_arguments(parser):
    parser.add_argument("--table1", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--oracles", nargs="+", required=True, help="per-model oracle CSVs ({model}.csv)")
    parser.add_argument("--reference", default="lstm", help="architecture the others are compared with")
    parser.add_argument("--csv-out", required=True)
    parser.add_argument("--fig-out", required=True)


def run_compare_archs(args):
    """Error breakdown by oracle category of the best model of each architecture, and the share of the reference
    architecture's errors in each category that each one removes."""
    df = compare(args.table1, args.corpus, args.oracles, args.reference)
    atomic_csv(df, args.csv_out, float_format="%.6g")
    plot(df, args.fig_out, args.corpus)
    for row in df.itertuples():
        removed = getattr(row, "removed_vs_reference", None)
        log.info(f"  {row.arch:16s} {row.model:20s} {row.category:13s} {row.errors:8,d}"
            + (f"  {100 * removed:+6.1f}% removed vs {args.reference}" if removed is not None and removed == removed
               else ""))
    log.info(f"compare-archs: {df.arch.nunique()} architectures -> {args.csv_out}, {args.fig_out}")
    return 0
