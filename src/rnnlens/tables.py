"""Table 1 (test cross-entropy grid beside the paper's), Table 2, and the pick of a best model from Table 1.
(The training-curves figure is rnnlens.curves: a figure edit must not look like a table change.)"""

import json
import logging
import math

import pandas as pd

from rnnlens.errors import InputError
from rnnlens.io import atomic_csv, atomic_write_text
from rnnlens.ids import ARCH_ORDER, DYNAMIC_SUFFIX, arch_rank, family_of, is_dynamic  # noqa: F401
from rnnlens.paper import table1_value
from rnnlens.predictions import read_meta

log = logging.getLogger(__name__)

# Table 1's column order: rnnlens.ids.ARCH_ORDER (shared with the figures)

RECALLED_NOTE = ("Paper values are recalled from Karpathy, Johnson & Fei-Fei (2015), Table 1, not re-checked "
                 "against the PDF.")


SEED_INTERVAL_LEVEL = 0.95


def seed_summary(losses, level=SEED_INTERVAL_LEVEL):
    """n, mean, sample standard deviation and the t-interval of the mean (at `level`) of one model's test losses
    over seeds. With one seed there is no spread to measure: sd and the interval are None."""
    losses = [float(x) for x in losses]
    n = len(losses)
    if n == 0:
        raise InputError("no test losses to summarise; give at least one seed's predictions")
    mean = sum(losses) / n
    if n < 2:
        return {"n_seeds": 1, "mean": mean, "sd": None, "ci_lo": None, "ci_hi": None}
    from scipy.stats import t

    sd = math.sqrt(sum((x - mean) ** 2 for x in losses) / (n - 1))
    half = t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return {"n_seeds": n, "mean": mean, "sd": sd, "ci_lo": mean - half, "ci_hi": mean + half}


SEED_COLUMNS = ["n_seeds", "test_loss_mean", "test_loss_sd", "ci95_lo", "ci95_hi", "paper_in_ci"]


def table1(prediction_paths, models_csvs, paper_names=None, seed_prediction_paths=None):
    """One row per (corpus, model): test loss, parameters, hidden size, and the paper's value beside it. With the
    predictions of further training seeds, also the mean, standard deviation and 95% t-interval of the test loss
    over every seed (the documented seed's test_loss is one of them) and whether the paper's value lies inside."""
    paper_names = paper_names or {}
    models = pd.concat([pd.read_csv(p) for p in models_csvs], ignore_index=True)
    rows = []
    for path in prediction_paths:
        meta = read_meta(path)
        selection = meta.get("dropout_selection") or {}
        rows.append({"corpus": meta["corpus"], "model": meta["model"], "base_model": meta.get("base_model", meta["model"]),
                     "test_loss": round(meta["test_loss"], 4),
                     "best_val_loss": meta.get("best_val_loss"), "epochs": meta.get("epochs_run"),
                     "dropout": meta.get("dropout"),
                     "dropout_tried": ",".join(selection.get("val_loss_by_dropout", {})) or None,
                     "converged": meta.get("converged"), "test_loss_exact": meta["test_loss"],
                     "dyn_flag": (meta.get("dynamic") or {}).get("flag")})
    # a dynamic-evaluation predictor (lstm-1x64+dyn) or one under an intervention (lstm-1x64~ablate-L1U3) has its
    # model's row of the models table, and its own arch (lstm+dyn, lstm~ablate-L1U3), so that "the best LSTM" of
    # the analyses stays a plain LSTM
    df = pd.DataFrame(rows).merge(models.rename(columns={"model": "base_model"}), on=["corpus", "base_model"],
                                  how="left")
    derived = df.model != df.base_model
    dynamic = derived & df.model.map(is_dynamic)
    df.loc[derived, "arch"] = [family_of(m) for m in df.loc[derived, "model"]]
    df["dyn_flag"] = [_dynamic_flag(r, df) if d else None for r, d in zip(df.itertuples(), dynamic)]
    paper = [table1_value(paper_names.get(c, c), a, l, s) for c, a, l, s in
             zip(df.corpus, df.arch, df.layers, df["size"])]
    df["paper_test_loss_recalled"] = paper
    df["difference"] = [round(ours - p, 4) if p is not None else None for ours, p in zip(df.test_loss, paper)]
    df = df.sort_values(["corpus", "size", "arch", "layers"], key=lambda s: s.map(arch_rank) if s.name == "arch" else s)
    if "deviation_pct" not in df:  # a models table made before it had one
        df["deviation_pct"] = None
    columns = ["corpus", "model", "arch", "layers", "size", "hidden", "params", "deviation_pct", "test_loss",
               "paper_test_loss_recalled", "difference", "best_val_loss", "epochs", "dropout",
               "dropout_tried", "converged", "dyn_flag"]
    if seed_prediction_paths:
        df = _with_seed_columns(df, seed_prediction_paths)
        columns += SEED_COLUMNS
    return df[columns].reset_index(drop=True)


def _with_seed_columns(df, seed_prediction_paths):
    """Table 1 with SEED_COLUMNS: each model's test loss over its documented seed (the row) and further seeds."""
    extra = {}
    for path in seed_prediction_paths:
        meta = read_meta(path)
        extra.setdefault((meta["corpus"], meta["model"]), []).append(meta["test_loss"])
    unknown = sorted(set(extra) - set(zip(df.corpus, df.model)))
    if unknown:
        raise InputError(f"seed predictions of {unknown} have no documented-seed predictions among --predictions; "
                         f"give the model's predictions too")
    summaries = [seed_summary([loss] + extra.get((c, m), []))
                 for c, m, loss in zip(df.corpus, df.model, df.test_loss_exact)]
    df = df.copy()
    df["n_seeds"] = [s["n_seeds"] for s in summaries]
    for column, key in (("test_loss_mean", "mean"), ("test_loss_sd", "sd"), ("ci95_lo", "ci_lo"),
                        ("ci95_hi", "ci_hi")):
        df[column] = [None if s[key] is None else round(s[key], 4) for s in summaries]
    df["paper_in_ci"] = [None if p is None or pd.isna(p) or s["sd"] is None else bool(s["ci_lo"] <= p <= s["ci_hi"])
                         for p, s in zip(df.paper_test_loss_recalled, summaries)]
    return df


def _dynamic_flag(row, df):
    """Why a dynamic-evaluation row must not be read as a gain, or None: its own flag (no setting beat static on
    validation, or worse than static on test), and whenever its Table 1 value is worse than its model's."""
    notes = [row.dyn_flag] if isinstance(row.dyn_flag, str) and row.dyn_flag else []
    base = df[(df.corpus == row.corpus) & (df.model == row.base_model)]
    if len(base) and row.test_loss > base.test_loss.iloc[0]:
        notes.append(f"worse than {row.base_model} in this table ({row.test_loss:.4f} vs "
                     f"{base.test_loss.iloc[0]:.4f})")
    return "; ".join(notes) or None


def _tried_several(row):
    """Was this model's dropout chosen on validation among several values?"""
    return isinstance(row.dropout_tried, str) and "," in row.dropout_tried


def _deviation(row):
    """params - budget in percent of the budget, e.g. '-0.05%' ('–' for a models table without it)."""
    value = getattr(row, "deviation_pct", None)
    if value is None or pd.isna(value):
        return "–"
    return f"{value:+.2f}%"


def _fmt(value, digits=3):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


UNCONVERGED_MARK = "\u2020"
UNCONVERGED_NOTE = (f"{UNCONVERGED_MARK} not converged: training stopped at training.max_epochs while the validation "
                    "loss still fell by more than training.convergence_tolerance per epoch; raise training.max_epochs "
                    "before drawing conclusions from these numbers.")


DYN_FLAG_MARK = "\u2021"
DYN_FLAG_NOTE = (f"{DYN_FLAG_MARK} dynamic evaluation flagged: it did not beat its static model (on validation, where "
                 "its setting is chosen, or in this table); read it as no gain. The reason per predictor:")


def _dyn_flagged(row):
    return isinstance(getattr(row, "dyn_flag", None), str) and bool(row.dyn_flag)


def _unconverged(row):
    return getattr(row, "converged", None) is False or str(getattr(row, "converged", "")) == "False"


def _several_seeds(row):
    n = getattr(row, "n_seeds", None)
    return n is not None and not pd.isna(n) and n > 1


def _ours(row):
    """A grid cell's own value: the test loss, or with several seeds 'mean ± sd (n=N)'."""
    if _several_seeds(row):
        return f"{_fmt(row.test_loss_mean)} ± {_fmt(row.test_loss_sd)} (n={int(row.n_seeds)})"
    return _fmt(row.test_loss)


SEEDS_NOTE = ("With several training seeds a cell reads mean ± sd (n=seeds): the mean and sample standard "
              "deviation of the test loss over seeds; the long table adds the 95% t-interval of the mean over "
              "seeds, and the CSV whether the paper's value lies inside it (paper_in_ci). The test loss column and "
              "the analyses use the documented seed, the first of training.seeds.")


def table1_markdown(df):
    """Per corpus: a grid like the paper's (rows: size; columns: arch x layers; 'ours (paper)' where the paper
    has values for the corpus), then the long table with parameter counts and their deviation from the budget.
    Unconverged models are marked, and the dropout chosen on validation is shown where several values were tried."""
    lines = ["# Table 1: test cross-entropy (nats per character)", "",
             "Lower is better. d = the dropout chosen on validation where several were tried.", ""]
    seeds = "n_seeds" in df and any(_several_seeds(r) for r in df.itertuples())
    if seeds:
        lines += [SEEDS_NOTE, ""]
    for corpus, group in df.groupby("corpus", sort=False):
        has_paper = group.paper_test_loss_recalled.notna().any()
        cols = [(a, l) for a in sorted(set(group.arch), key=arch_rank) for l in sorted(group.layers.unique())
                if ((group.arch == a) & (group.layers == l)).any()]
        lines += [f"## {corpus}", "",
                  f"Each cell: ours (paper). {RECALLED_NOTE}" if has_paper else
                  "Each cell: ours (the paper has no values for this corpus).", "",
                  "| size | " + " | ".join(f"{a.upper()} {l}" for a, l in cols) + " |",
                  "|---|" + "---|" * len(cols)]
        for size, row_group in group.groupby("size"):
            cells = []
            for a, l in cols:
                hit = row_group[(row_group.arch == a) & (row_group.layers == l)]
                if hit.empty:
                    cells.append("")
                    continue
                r = hit.iloc[0]
                paper = r.paper_test_loss_recalled
                dropout = f" d={r.dropout:g}" if _tried_several(r) else ""
                cells.append(_ours(r) + (UNCONVERGED_MARK if _unconverged(r) else "")
                             + (DYN_FLAG_MARK if _dyn_flagged(r) else "")
                             + (f" ({_fmt(paper)})" if paper is not None and not pd.isna(paper) else "") + dropout)
            lines.append(f"| {size} | " + " | ".join(cells) + " |")
        best = group.loc[group.test_loss.idxmin()]
        unconverged = [r.model for r in group.itertuples() if _unconverged(r)]
        lines += ["", f"Best{' (documented seed)' if seeds else ''}: {best.model} at {best.test_loss:.3f} nats/char"
                  + (f" ({UNCONVERGED_MARK} not converged)" if _unconverged(best) else "")
                  + (f" ({DYN_FLAG_MARK} dynamic evaluation flagged)" if _dyn_flagged(best) else "") + ".", ""]
        if unconverged:
            lines += [f"{UNCONVERGED_NOTE} ({len(unconverged)} of {len(group)} models)", ""]
        flagged = [r for r in group.itertuples() if _dyn_flagged(r)]
        if flagged:
            lines += [DYN_FLAG_NOTE, ""] + [f"- {r.model}: {r.dyn_flag}" for r in flagged] + [""]
        lines += ["| model | hidden | params | vs budget | test loss | paper (recalled) | difference | epochs "
                  "| converged | dropout (tried) |" + (" seeds: mean ± sd (n) | 95% interval |" if seeds else ""),
                  "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if seeds else "")]
        for r in group.itertuples():
            converged = {True: "yes", False: f"no {UNCONVERGED_MARK}"}.get(
                {"True": True, "False": False}.get(str(r.converged), None), "–")
            tried = f" ({r.dropout_tried})" if _tried_several(r) else ""
            dropout = "–" if pd.isna(r.dropout) else f"{r.dropout:g}{tried}"
            mark = DYN_FLAG_MARK if _dyn_flagged(r) else ""
            over_seeds = ""
            if seeds:
                interval = f"{_fmt(r.ci95_lo)}–{_fmt(r.ci95_hi)}" if _several_seeds(r) else "–"
                over_seeds = f" {_ours(r) if _several_seeds(r) else '–'} | {interval} |"
            lines.append(f"| {r.model} | {r.hidden} | {r.params:,} | {_deviation(r)} | {_fmt(r.test_loss, 4)}{mark} | "
                         f"{_fmt(r.paper_test_loss_recalled)} | {_fmt(r.difference, 4)} | {r.epochs} | {converged} "
                         f"| {dropout} |" + over_seeds)
        lines.append("")
    return "\n".join(lines)


def table2(ngram_paths, nnn_paths, table1_csv):
    """Per corpus and n: n-gram and n-NN test loss, the paper's value where known, and the best RNN of Table 1."""
    from rnnlens.paper import NGRAM_CONFIRMED, NGRAM_TEST_LOSS

    rows = {}
    for family, paths in (("ngram", ngram_paths), ("nnn", nnn_paths)):
        for path in paths:
            meta = read_meta(path)
            n = int(meta["n"] if meta.get("n") is not None else str(meta["model"]).split("-")[-1])
            row = rows.setdefault((meta["corpus"], n), {"corpus": meta["corpus"], "n": n})
            row[f"{family}_test_loss"] = round(meta["test_loss"], 4)
            if family == "nnn":
                row["nnn_hidden"] = meta.get("hidden")
    df = pd.DataFrame(sorted(rows.values(), key=lambda r: (r["corpus"], r["n"])))
    for col in ("ngram_test_loss", "nnn_test_loss", "nnn_hidden"):
        if col not in df:
            df[col] = None
    t1 = pd.read_csv(table1_csv) if table1_csv else pd.DataFrame(columns=["corpus", "model", "test_loss"])
    best = t1.loc[t1.groupby("corpus").test_loss.idxmin()].set_index("corpus") if len(t1) else t1.set_index("corpus")
    df["paper_ngram_test_loss"] = [NGRAM_TEST_LOSS.get(c, {}).get(n) for c, n in zip(df.corpus, df.n)]
    df["paper_confirmed"] = [(c, n) in NGRAM_CONFIRMED for c, n in zip(df.corpus, df.n)]
    df["best_rnn"] = df.corpus.map(best.model)
    df["best_rnn_test_loss"] = df.corpus.map(best.test_loss)
    return df


def table2_markdown(df, paper_names=None):
    lines = ["# Table 2: n-gram and n-NN baselines (test nats per character)", "",
             "n counts context bytes, as in the paper: the n-gram predicts from the previous n bytes (KenLM order "
             "n + 1, so the 20-gram is order 21), the n-NN from the one-hot previous n bytes through one tanh hidden "
             "layer. n-gram: unpruned modified Kneser-Ney (KenLM) over bytes. Paper values: the 20-gram is a "
             "confirmed figure of the paper; values marked * are recalled, not re-checked against the PDF.", ""]
    for corpus, group in df.groupby("corpus", sort=False):
        best, best_loss = group.best_rnn.iloc[0], group.best_rnn_test_loss.iloc[0]
        lines += [f"## {corpus}", "", "| n | n-gram | n-NN | n-NN hidden | paper n-gram |", "|---|---|---|---|---|"]
        for r in group.itertuples():
            paper = _fmt(r.paper_ngram_test_loss) + ("" if r.paper_confirmed or pd.isna(r.paper_ngram_test_loss)
                                                     else "*")
            lines.append(f"| {r.n} | {_fmt(r.ngram_test_loss)} | {_fmt(r.nnn_test_loss)} | "
                         f"{'' if pd.isna(r.nnn_hidden) else int(r.nnn_hidden)} | {paper} |")
        if isinstance(best, str):
            lines += ["", f"Reference: best RNN of Table 1, {best}, {best_loss:.3f} nats/char."]
        lines.append("")
    return "\n".join(lines)


# --- commands -------------------------------------------------------------------------------------------------------

def _add_table_outputs(parser):
    parser.add_argument("--out-csv", required=True)
    parser.add_argument("--out-md", required=True)


def add_table1_arguments(parser):
    parser.add_argument("--predictions", nargs="+", required=True)
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--paper-names", default="{}", help="JSON corpus -> paper corpus (warpeace, linux)")
    parser.add_argument("--seed-predictions", nargs="*", default=[],
                        help="predictions of further training seeds of the models (mean, sd and interval over seeds)")
    _add_table_outputs(parser)


def run_table1(args):
    df = table1(args.predictions, args.models, json.loads(args.paper_names), args.seed_predictions)
    atomic_csv(df, args.out_csv)
    atomic_write_text(args.out_md, table1_markdown(df))
    log.info(f"Table 1: {len(df)} models -> {args.out_csv}, {args.out_md}")
    return 0


def add_table2_arguments(parser):
    parser.add_argument("--ngram", nargs="*", default=[])
    parser.add_argument("--nnn", nargs="*", default=[])
    parser.add_argument("--table1", help="Table 1 CSV, for the best RNN of each corpus beside the baselines")
    _add_table_outputs(parser)


def run_table2(args):
    df = table2(args.ngram, args.nnn, args.table1)
    atomic_csv(df, args.out_csv)
    atomic_write_text(args.out_md, table2_markdown(df))
    log.info(f"Table 2: {len(df)} rows -> {args.out_csv}, {args.out_md}")
    return 0
