"""Render the documentation's numbers from the committed results in docs/results/, so that none is typed by hand.

README.md, docs/results/README.md and docs/slurm.md mark each part this script owns:

    <!-- rendered: NAME [ARG ...] -->...<!-- end rendered -->

Between the markers is output, rewritten from the block NAME (a function below, registered with @block) over the
CSVs of docs/results/; everything outside them is hand-written prose, edited as usual. A block whose text starts on
the line after its marker is a paragraph or a table; one whose text follows the marker on the same line is inline
(a number or a phrase inside a sentence or a table cell) and renders to one line. ARGs go to the block's function
(`<!-- rendered: closers warpeace quote -->` calls closers(results, "warpeace", "quote")); a block may be used
in several places.

    python scripts/render_docs.py            # rewrite the marked parts of the three files in place
    python scripts/render_docs.py --check    # exit 1 with a diff for every file that differs from its rendering

Adding a result, e.g. a 3-seed Table 1 (table1_seeds.csv) or a Linux bracket curve (brackets_linux.csv):
  1. commit the CSV under docs/results/ and have make_reference.sh (or its own script) write it;
  2. if an existing block should take it, list it in that block's sources: the paper table reads TABLE1_CSVS and the
     bracket counts BRACKET_CSVS, each file optional (a missing one is skipped), so committing table1_seeds.csv or
     table1_linux.csv (Table 1 CSVs, src/rnnlens/tables.py; several seeds read "mean ± sd") already adds its rows
     and its summary sentence to the README's "How close to the paper";
  3. for a new table or sentence: write a function `def name(results, *args) -> str` under @block("name"), reading
     its files with results.required("file.csv") (a missing file stops the rendering with a one-line error naming it)
     or results.optional("file.csv") (None when missing), and put the markers where the text goes; word what the
     numbers say from the numbers (inside or outside, above or below, all or some), and raise RenderError when the
     rows it selects are empty rather than render "nan";
  4. run this script and commit the CSV with the re-rendered files; tests/test_docs.py fails until they agree.
A new document with markers goes into DOCS.
"""

import argparse
import difflib
import inspect
import re
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "docs/results/README.md", "docs/slurm.md"]
RESULTS = "docs/results"

# Table 1 CSVs the paper table reads, in its order; each optional but the first
TABLE1_CSVS = ["table1.csv", "table1_linux.csv", "table1_seeds.csv"]
BRACKET_CSVS = ["brackets.csv", "brackets_linux.csv"]

MARKER = re.compile(r"<!-- rendered: ([\w-]+)((?: [^ >]+)*) -->(.*?)<!-- end rendered -->", re.S)
START = re.compile(r"<!-- rendered: [\w-]+")  # a start marker (prose may name "<!-- rendered: ... -->")

CORPUS_NAMES = {"warpeace": "War and Peace", "linux": "Linux"}
CORPUS_ORDER = ["warpeace", "linux"]
ARCH_NAMES = {"lstm": "LSTM", "rnn": "RNN", "gru": "GRU", "lru": "LRU", "transformer": "transformer"}
CATEGORY_NAMES = {"ngram": "n-gram", "memory": "dynamic memory", "rare_words": "rare words",
                  "word_initial": "word-initial", "punctuation": "punctuation", "boost": "boost", "rest": "rest"}
CLOSER_NAMES = {"quote": "closing quotes", "paren": "closing parentheses", "brace": "closing braces",
                "bracket": "closing brackets"}


class RenderError(Exception):
    """A problem with the documents or the results: one line naming it and the fix."""


class Results:
    """The committed result files, read once each."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self._cache = {}

    def optional(self, name):
        path = self.folder / name
        if not path.is_file():
            return None
        if name not in self._cache:
            self._cache[name] = (yaml.safe_load(path.read_text()) if name.endswith((".yaml", ".json"))
                                 else pd.read_csv(path))
        return self._cache[name]

    def required(self, name):
        table = self.optional(name)
        if table is None:
            raise RenderError(f"{self.folder / name} is missing; it is a committed result: restore it "
                              f"(git checkout) or remake it as docs/results/README.md says")
        return table


BLOCKS = {}


def block(name):
    def register(function):
        BLOCKS[name] = function
        return function
    return register


# ---------------------------------------------------------------------------------------------------- formatting

def loss(x):
    return f"{x:.3f}"


def count(n):
    return f"{int(n):,}"


def pct(x):
    text = f"{100 * x:.1f}%"
    return "0.0%" if text == "-0.0%" else text


def span(values, fmt):
    lo, hi = fmt(min(values)), fmt(max(values))
    return lo if lo == hi else f"{lo}-{hi}"


def signed_range(values):
    lo, hi = f"{min(values):+.3f}", f"{max(values):+.3f}"
    return lo if lo == hi else f"from {lo} to {hi}"


def and_list(items):
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def whole(arg, what):
    """A block's argument that must be a whole number."""
    if not arg.isdigit():
        raise RenderError(f"its {what} {arg!r} is not a whole number")
    return int(arg)


def models(n):
    return f"{n} model{'' if n == 1 else 's'}"


def every(n):
    """'all 3 models', or 'the one model'."""
    return "the one model" if n == 1 else f"all {n} models"


def corpus_name(corpus):
    return CORPUS_NAMES.get(corpus, corpus)


def predictor_name(model):
    """'lstm-2x64' as it is; 'ngram-20' as 'the 20-gram'."""
    return f"the {model.split('-', 1)[1]}-gram" if model.startswith("ngram-") else model


def by_corpus(df):
    order = {c: i for i, c in enumerate(CORPUS_ORDER)}
    corpora = sorted(df.corpus.unique(), key=lambda c: (order.get(c, len(order)), c))
    return [(c, df[df.corpus == c]) for c in corpora]


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(v) for v in row) + " |" for row in rows])


# ------------------------------------------------------------------------------------- README: close to the paper

def table1_frames(results):
    """The Table 1 CSVs present, in TABLE1_CSVS order (table1.csv required)."""
    frames = [results.required(TABLE1_CSVS[0])]
    frames += [t for t in map(results.optional, TABLE1_CSVS[1:]) if t is not None]
    return frames


def several_seeds(row):
    return "n_seeds" in row and pd.notna(row["n_seeds"]) and row["n_seeds"] > 1


def ours(row):
    """Our value of a Table 1 row: the test loss, or the mean over seeds where there are several."""
    return row["test_loss_mean"] if several_seeds(row) else row["test_loss"]


def ours_text(row):
    if not several_seeds(row):
        return loss(row["test_loss"])
    # a spread under 0.001 would print as 0.000: then both at four decimals
    fmt = loss if row["test_loss_sd"] >= 0.0005 else (lambda x: f"{x:.4f}")
    return f"{fmt(row['test_loss_mean'])} ± {fmt(row['test_loss_sd'])}"


def paper_text(value, recalled):
    return "–" if pd.isna(value) else loss(value) + ("*" if recalled else "")


def epochs_text(df):
    epochs = df.epochs.dropna().astype(int)
    return f"{span(epochs, str)} epochs" if len(epochs) else "epochs not recorded"


def seeds_text(df):
    n = df.n_seeds.dropna().astype(int) if "n_seeds" in df else []
    return f", {span(n, str)} seeds" if len(n) and n.max() > 1 else ""


@block("paper_table")
def paper_table(results):
    """The README's "How close to the paper": Table 2's baselines that have a paper value, then every Table 1
    CSV by corpus, architecture and size (layers side by side), and a sentence per source on the gaps."""
    t2 = results.required("table2.csv")
    rows, sentences = [], []
    for corpus, df in by_corpus(t2[t2.paper_ngram_test_loss.notna()]):
        name = corpus_name(corpus)
        for r in df[df.paper_confirmed].itertuples():
            rows.append([f"{name} {r.n}-gram (KenLM order {r.n + 1})", loss(r.ngram_test_loss),
                         paper_text(r.paper_ngram_test_loss, False)])
        recalled = df[~df.paper_confirmed]
        if len(recalled):
            rows.append([f"{name} n-gram n = " + " / ".join(str(n) for n in recalled.n),
                         " / ".join(map(loss, recalled.ngram_test_loss)),
                         " / ".join(paper_text(p, True) for p in recalled.paper_ngram_test_loss)])
    baselines = t2[t2.paper_ngram_test_loss.notna()]
    if len(baselines):
        gaps = (baselines.ngram_test_loss - baselines.paper_ngram_test_loss).abs()
        worst = baselines.loc[gaps.idxmax()]
        sentences.append(f"The n-gram baselines are within {loss(gaps.max())} of the paper (the largest gap: "
                         f"{corpus_name(worst.corpus)} {worst.n}-gram).")
    for t1 in table1_frames(results):
        for corpus, df in by_corpus(t1):
            for (arch, size), group in df.groupby(["arch", "size"], sort=False):
                group = group.sort_values("layers")
                seeds = seeds_text(group)
                layers = f"{' / '.join(map(str, group.layers))} layer{'' if list(group.layers) == [1] else 's'}"
                rows.append([f"{corpus_name(corpus)} {ARCH_NAMES.get(arch, arch)} {layers}, size {size} "
                             f"({epochs_text(group)}{seeds})",
                             " / ".join(ours_text(r) for _, r in group.iterrows()),
                             " / ".join(paper_text(p, True) for p in group.paper_test_loss_recalled)])
        sentences.append(table1_summary(t1))
    header = ["cell", "ours", "paper"]
    return table(header, rows) + "\n\n" + " ".join(s for s in sentences if s)


def table1_summary(t1):
    """'Table 1, War and Peace, size 64 (30 epochs): of 9 models, 7 are 0.008-0.027 above and 2 (...) 0.006-0.008
    below the paper.' With several seeds, of the means, and how often the paper's value is inside the interval."""
    t1 = t1[t1.paper_test_loss_recalled.notna()]
    if not len(t1):
        return ""
    difference = pd.Series([round(ours(r) - r.paper_test_loss_recalled, 4) for _, r in t1.iterrows()],
                           index=t1.index)
    where = (f"Table 1, {and_list(corpus_name(c) for c, _ in by_corpus(t1))}, size "
             f"{and_list(str(s) for s in sorted(t1['size'].unique()))} ({epochs_text(t1)}{seeds_text(t1)})")
    value = " (their mean over seeds)" if seeds_text(t1) else ""
    sides = []  # (how many, which models when few, the gaps and side)
    for side, chosen in (("above", difference > 0), ("below", difference < 0), ("equal to", difference == 0)):
        if chosen.any():
            models = "" if chosen.sum() > len(t1) / 2 else f" ({', '.join(t1.model[chosen])})"
            gap = "" if side == "equal to" else f"{span(difference[chosen].abs(), loss)} "
            sides.append((chosen.sum(), models, gap + side))
    if len(sides) == 1:
        text = f"{where}: all {len(t1)} models{value} are {sides[0][2]} the paper."
    else:
        parts = [f"{n}{models}{' are' if i == 0 else ''} {where_}" for i, (n, models, where_) in enumerate(sides)]
        text = f"{where}: of {len(t1)} models{value}, {and_list(parts)} the paper."
    if "paper_in_ci" in t1 and t1.paper_in_ci.notna().any():
        inside = t1.paper_in_ci.dropna().astype(bool)
        text += (f" The paper's value is inside the 95% interval of the mean for {inside.sum()} of {len(inside)} "
                 f"models.")
    return text


@block("seed_findings")
def seed_findings(results):
    """What the multi-seed cells (table1_seeds.csv) say: the seeds' spread, whether the documented seed gives the
    reference run's test losses (table1.csv), where the paper's values lie against the intervals of the means, and,
    for the cells the seeds do not explain, whether training ran into training.max_epochs (reference.yaml)."""
    seeds = results.optional("table1_seeds.csv")
    if seeds is None:
        return "(no multi-seed run is committed yet)"
    seeds = seeds[seeds.n_seeds.fillna(1) > 1] if "n_seeds" in seeds else seeds.iloc[:0]
    if not len(seeds):
        raise RenderError("table1_seeds.csv has no model of several seeds; remake it with two or more "
                          "training.seeds (seeds.yaml)")
    sds = and_list(f"{m.model} {m.test_loss_sd:.4f}" for m in seeds.itertuples())
    text = [f"Over {span(seeds.n_seeds.astype(int), str)} seeds the {models(len(seeds))}' test losses have standard "
            f"deviations of {span(seeds.test_loss_sd, lambda x: f'{x:.4f}')} nats ({sds})."]

    # the documented seed (the first of training.seeds) is the row's test_loss; the reference run made it too
    t1 = results.required("table1.csv").set_index(["corpus", "model"])
    shared = [m for m in seeds.itertuples() if (m.corpus, m.model) in t1.index]
    differ = [(m.model, m.test_loss, t1.loc[(m.corpus, m.model), "test_loss"]) for m in shared
              if round(t1.loc[(m.corpus, m.model), "test_loss"], 4) != round(m.test_loss, 4)]
    if shared and not differ:
        text.append(f"The documented seed gives the reference run's test loss (table1.csv) to the 4th decimal for "
                    f"{every(len(shared))}.")
    elif shared:
        text.append(f"The documented seed gives the reference run's test loss (table1.csv) to the 4th decimal for "
                    f"{len(shared) - len(differ)} of {len(shared)} models; "
                    f"{and_list(f'{m} {a:.4f} against {b:.4f}' for m, a, b in differ)} "
                    f"differ{'s' if len(differ) == 1 else ''}.")

    paper = seeds[seeds.paper_test_loss_recalled.notna()]
    if not len(paper):
        return " ".join(text)
    gap = (paper.test_loss_mean - paper.paper_test_loss_recalled).abs()
    spread = paper.test_loss_sd > 0
    times = (f", {span(gap[spread] / paper.test_loss_sd[spread], lambda x: f'{x:.0f}')} times the seeds' standard "
             f"deviation" if spread.any() else "")
    inside = (paper.ci95_lo <= paper.paper_test_loss_recalled) & (paper.paper_test_loss_recalled <= paper.ci95_hi)
    where = f"The means are {span(gap, loss)} from the paper's values{times}; the paper's value is "
    if not inside.any():
        text.append(where + f"outside the 95% interval of the mean for {every(len(paper))}: the gap is not the luck "
                    f"of the seed.")
    elif inside.all():
        text.append(where + f"inside the 95% interval of the mean for {every(len(paper))}: over these seeds the "
                    f"gap could be the luck of the seed.")
    else:
        text.append(where + f"inside the 95% interval of the mean for {inside.sum()} of {len(paper)} models "
                    f"({and_list(paper.model[inside])}), whose gap could be the luck of the seed, and outside it for "
                    f"{and_list(paper.model[~inside])}, whose gap is not.")
    outside = paper[~inside]
    reference = results.optional("reference.yaml") or {}
    limit = reference.get("training", {}).get("max_epochs")
    if len(outside) and limit and (outside.epochs == limit).all():
        them = {1: "It", 2: "Both"}.get(len(outside), f"All {len(outside)}")
        if inside.any():
            them = f"Of those outside, {them.lower()}"
        converged = outside.converged.dropna().astype(bool) if "converged" in outside else pd.Series([], dtype=bool)
        if len(converged) == len(outside) and converged.all():
            after = ", and count as converged by the README's convergence rule"
        elif len(converged) == len(outside) and not converged.any():
            after = ", unconverged by the README's convergence rule: longer training is the first thing to try"
        else:
            after = ""
        text.append(f"{them} stopped at training.max_epochs ({limit}, reference.yaml) rather than by early "
                    f"stopping{after}.")
    return " ".join(text)


@block("cell_effect_findings")
def cell_effect_findings(results, corpus):
    """Per model and feature of cell_effects_{corpus}.csv: the best cell's loss change on its targets and elsewhere,
    beside the controls' range on the targets."""
    effects = results.optional(f"cell_effects_{corpus}.csv")
    if effects is None:
        return f"(no cell-effects table of {corpus} is committed yet)"
    if not len(effects):
        raise RenderError(f"cell_effects_{corpus}.csv has no rows; remake it (docs/results/README.md)")
    lines = []
    for (model, feature), part in effects.groupby(["model", "feature"], sort=False):
        best = part[part.role == "best"]
        if not len(best):
            raise RenderError(f"cell_effects_{corpus}.csv has no best cell of {model}, {feature}; remake it")
        best = best.iloc[0]
        controls = part[part.role == "control"]
        target = f"`{best.target_chars}`" if isinstance(best.target_chars, str) else "its targets"
        line = (f"- {model}, {feature}, over {count(best.positions)} test positions: its best cell "
                f"L{int(best.layer)}U{int(best.unit)} (score {best.score:.3f}), "
                f"held at its mean, changes the loss by {best.dloss_target:+.3f} nats on the {count(best.targets)} "
                f"{target} where the feature holds and by {best.dloss_other:+.3f} elsewhere; ")
        if len(controls):
            line += (f"{len(controls)} random units of its layer, held the same way: "
                     f"{signed_range(controls.dloss_target)} on those {target} and "
                     f"{signed_range(controls.dloss_other)} elsewhere.")
        else:
            line += "no random unit of its layer was held beside it."
        lines.append(line)
    return "\n".join(lines)


@block("brace_curve")
def brace_curve(results, corpus, delimiter, near, far):
    """Mean p of the closer below `near` characters from its opener and at `far` or beyond, per predictor of the
    bracket curves (weighted by the closers of each bin), with the closer counts."""
    frames = [results.optional(name).assign(source=name) for name in BRACKET_CSVS
              if results.optional(name) is not None]
    df = pd.concat(frames) if frames else pd.DataFrame(columns=["corpus", "delimiter_name"])
    df = df[(df.corpus == corpus) & (df.delimiter_name == delimiter)]
    if not len(df):
        return f"(no {delimiter} curve of {corpus} is committed yet)"
    files = and_list(sorted(set(df.source)))
    near, far = whole(near, "near distance"), whole(far, "far distance")
    widths = set(df.bin_end - df.bin_start)
    if len(widths) != 1 or near % min(widths) or far % min(widths):
        raise RenderError(f"{near} and {far} are not both bin edges of the {delimiter} curve of {corpus} in {files} "
                          f"(bins of {and_list(str(w) for w in sorted(widths))}); use multiples of the bin")
    parts, low_n, high_n = [], 0, 0
    for model, part in df.groupby("model", sort=False):
        low, high = part[part.bin_end <= near], part[part.bin_start >= far]
        for rows, what in ((low, f"within {near} characters of its opener"), (high, f"{far} or more away")):
            if not rows["count"].sum():
                raise RenderError(f"{files}: {model} has no {delimiter} closer of {corpus} {what}; choose distances "
                                  f"that the curve covers")
        mean = lambda rows: float((rows.mean_p * rows["count"]).sum() / rows["count"].sum())  # noqa: E731
        parts.append(f"{model} {mean(low):.3f} / {mean(high):.3f}")
        low_n, high_n = max(low_n, low["count"].sum()), max(high_n, high["count"].sum())
    counts = df.groupby("model")["count"].sum().max()
    return (f"{count(counts)} {CLOSER_NAMES.get(delimiter, delimiter)}; mean p of the closer within {near} characters "
            f"of its opener ({count(low_n)} closers) / {far} or more away ({count(high_n)}): {and_list(parts)}")


@block("perchar_top")
def perchar_top(results, name, k, min_count):
    """The k characters (of at least min_count in the test split) with the largest gain of model A over model B
    (perchar CSV), with their counts."""
    df = results.optional(name)
    if df is None:
        return f"(no {name} is committed yet)"
    k, min_count = whole(k, "number of characters"), whole(min_count, "min_count")
    top = df[df["count"] >= min_count].sort_values("diff", ascending=False).head(k)
    if not len(top):
        raise RenderError(f"{name} has no character of at least {min_count} in the test split; lower the block's "
                          f"min_count or remake {name}")
    first = top.iloc[0]
    gains = top[top["diff"] > 0]
    if not len(gains):
        return (f"{first.label_a} over {first.label_b}: mean p(true) higher on no character of at least "
                f"{count(min_count)} (the closest, `{first['char']}`, {first['diff']:+.3f})")
    return (f"{first.label_a} over {first.label_b}, mean p(true) higher by " +
            and_list(f"{r['diff']:+.3f} on `{r['char']}` ({count(r['count'])})" for _, r in gains.iterrows()))


@block("error_overlap")
def error_overlap(results, name):
    """Which test bytes the two predictors of `rnnlens perchar` get wrong (p(true) < threshold), from its JSON."""
    o = results.optional(name)
    if o is None:
        return f"(no {name} is committed yet)"
    return (f"of {count(o['total'])} test bytes, {count(o['both_wrong'])} are errors (p(true) < {o['threshold']}) of "
            f"both {o['label_a']} and {o['label_b']}, {count(o['only_a_wrong'])} of {o['label_a']} only and "
            f"{count(o['only_b_wrong'])} of {o['label_b']} only")


@block("best_cell_scores")
def best_cell_scores(results, corpus, *features):
    """The best cell of each named feature in best_cells_{corpus}.csv: model, unit and score."""
    df = results.optional(f"best_cells_{corpus}.csv")
    if df is None:
        return f"(no best cells of {corpus} are committed yet)"
    if not features:
        raise RenderError("name the features after the corpus, e.g. best_cell_scores linux brace_depth")
    missing = [f for f in features if f not in set(df.feature)]
    if missing:
        raise RenderError(f"best_cells_{corpus}.csv has no cell of {', '.join(missing)}; drop it from the block's "
                          f"features or remake the file")
    parts = []
    for feature in features:
        r = df[df.feature == feature].sort_values("score", ascending=False).iloc[0]
        parts.append(f"{feature} {r.model} L{int(r.layer)}U{int(r.unit)} ({r.kind} {r.score:.3f})")
    return and_list(parts)


@block("ngram_vs_paper")
def ngram_vs_paper(results, corpus, n):
    """'0.883 vs the paper's 0.889': one n-gram of Table 2 beside the paper's value."""
    t2 = results.required("table2.csv")
    row = t2[(t2.corpus == corpus) & (t2.n == whole(n, "n"))]
    if not len(row):
        raise RenderError(f"table2.csv has no {n}-gram of {corpus}")
    row = row.iloc[0]
    if pd.isna(row.paper_ngram_test_loss):
        raise RenderError(f"table2.csv has no paper value for the {n}-gram of {corpus}; name one the paper reports")
    return f"{loss(row.ngram_test_loss)} vs the paper's {paper_text(row.paper_ngram_test_loss, not row.paper_confirmed)}"


# ------------------------------------------------------------------------------ README: parameters against budget

INNER_NAMES = {"transformer": "MLP", "lru": "state"}


def params_match(results):
    """params_match.csv with each row's vocabulary, recovered from its budget: the budget of size s on v bytes is the
    1-layer LSTM of s cells, 4s(v + s) + 8s + sv + v parameters (README, "Size is a parameter budget")."""
    df = results.required("params_match.csv")
    if not len(df):
        raise RenderError("params_match.csv has no rows; remake it with make_params_match.sh")
    s = df["size"]
    vocab = (df.budget - 4 * s * s - 8 * s) / (5 * s + 1)
    if (vocab != vocab.round()).any() or vocab.groupby(df.corpus).nunique().max() > 1:
        raise RenderError("params_match.csv: some budgets are not a 1-layer LSTM's on one vocabulary per corpus; "
                          "remake it with make_params_match.sh")
    return df.assign(vocab=vocab.astype(int))


def vocab_name(row):
    """'War and Peace's 87 bytes' for a named corpus, '10 bytes' for the others."""
    return f"{corpus_name(row.corpus)}'s {row.vocab} bytes" if row.corpus in CORPUS_NAMES else f"{row.vocab} bytes"


def params_row(results, corpus, model):
    df = params_match(results)
    row = df[(df.corpus == corpus) & (df.model == model)]
    if not len(row):
        raise RenderError(f"params_match.csv has no {model} of {corpus}; name one it holds")
    return row.iloc[0]


@block("params_grid")
def params_grid(results):
    """'sizes 32-512, 1-3 layers and vocabularies of 10, 87 (War and Peace) and 200 bytes'"""
    df = params_match(results)
    vocabs = df.drop_duplicates("corpus").sort_values("vocab")
    names = [f"{r.vocab}" + (f" ({corpus_name(r.corpus)})" if r.corpus in CORPUS_NAMES else "")
             for r in vocabs.itertuples()]
    return (f"sizes {span(df['size'], str)}, {span(df.layers, str)} layers and "
            f"vocabular{'y' if len(names) == 1 else 'ies'} of {and_list(names)} bytes")


@block("params_outside")
def params_outside(results):
    """'4 of its 225 models outside 2%, all of size 32: ...': the models of params_match.csv further from their
    budget than the tolerance (the smallest tolerance_pct), by vocabulary, furthest first."""
    df = params_match(results)
    tolerance = df.tolerance_pct.min()
    outside = df[df.deviation_pct.abs() > tolerance]
    if not len(outside):
        return f"all {len(df)} of its models within {tolerance:g}%"
    sizes = sorted(outside["size"].unique())
    sizes = f"all of size {sizes[0]}" if len(sizes) == 1 else f"of sizes {and_list(map(str, sizes))}"
    groups = []
    for _, group in outside.groupby("vocab"):
        group = group.reindex(group.deviation_pct.abs().sort_values(ascending=False).index)
        groups.append(and_list(f"{r.model} ({r.deviation_pct:+.2f}%)" for r in group.itertuples()) +
                      f" on {vocab_name(group.iloc[0])}")
    beyond = outside[outside.deviation_pct.abs() > outside.tolerance_pct]
    beyond = "" if not len(beyond) else f"; {and_list(beyond.model)} beyond even the exception's tolerance"
    return (f"{len(outside)} of its {len(df)} models outside {tolerance:g}%, {sizes}: "
            f"{'; '.join(groups)}{beyond}")


@block("params_within")
def params_within(results, *archs):
    """'all 90 of theirs within 0.95% of their budget': the largest deviation of the named architectures."""
    df = params_match(results)
    df = df[df.arch.isin(archs)]
    if not len(df):
        raise RenderError(f"params_match.csv has no model of {', '.join(archs) or 'the architectures'}; name "
                          f"architectures it holds")
    return f"all {len(df)} of theirs within {df.deviation_pct.abs().max():.2f}% of their budget"


@block("params_model")
def params_model(results, corpus, model):
    """'width 56, MLP 193, 44,800 parameters against the budget's 44,823'"""
    r = params_row(results, corpus, model)
    inner = f", {INNER_NAMES.get(r.arch, 'inner width')} {r.inner}" if r.inner else ""
    return f"width {r.hidden}{inner}, {count(r.params)} parameters against the budget's {count(r.budget)}"


@block("params_inner")
def params_inner(results, corpus, *models):
    """'MLP 193, state 73': the second width of each named model."""
    rows = [params_row(results, corpus, m) for m in models]
    return ", ".join(f"{INNER_NAMES.get(r.arch, 'inner width')} {r.inner}" for r in rows)


@block("beyond_vs_budget")
def beyond_vs_budget(results, model):
    """'48,303 parameters, 7.8% above the LSTM's 44,823': a model of beyond_table1.csv against its LSTM."""
    t1 = results.required("beyond_table1.csv")
    row, lstm = t1[t1.model == model], t1[t1.arch == "lstm"]
    if not len(row) or not len(lstm):
        raise RenderError(f"beyond_table1.csv has no {model if not len(row) else 'LSTM'}; name a model it holds")
    params, budget = row.params.iloc[0], lstm.params.iloc[0]
    side = "above" if params > budget else "below"
    return (f"{count(params)} parameters, " + ("as many as" if params == budget else f"{pct(abs(params / budget - 1))} "
            f"{side}") + f" the LSTM's {count(budget)}")


@block("beyond_hidden")
def beyond_hidden(results, model):
    t1 = results.required("beyond_table1.csv")
    row = t1[t1.model == model]
    if not len(row):
        raise RenderError(f"beyond_table1.csv has no {model}; name a model it holds")
    return str(int(row.hidden.iloc[0]))


# -------------------------------------------------------------------------------------- README: beyond the paper

def beyond_errors(results):
    """beyond_arch_errors.csv with the errors of each predictor (its categories partition them) and the test size."""
    df = results.required("beyond_arch_errors.csv")
    if not len(df):
        raise RenderError("beyond_arch_errors.csv has no rows; remake it (docs/results/README.md)")
    n_test = round((df.errors / df.share_of_test).median())
    return df, df.groupby("model", sort=False).errors.sum(), n_test


@block("beyond_table")
def beyond_table(results):
    t1 = results.required("beyond_table1.csv")
    _, errors, n_test = beyond_errors(results)
    if not len(t1):
        raise RenderError("beyond_table1.csv has no rows; remake it (docs/results/README.md)")
    losses = t1.set_index("model").test_loss
    rows = []
    for r in t1.itertuples():
        base = r.model.removesuffix("+dyn")
        derived = base != r.model
        if derived and base not in losses:
            raise RenderError(f"beyond_table1.csv has {r.model} but not its model {base}; remake it")
        gain = "" if not derived else loss(r.test_loss - losses[base])
        made = errors.get(r.model)
        made = "–" if made is None else f"{count(made)} ({pct(made / n_test)})"
        rows.append([r.model, "" if derived else r.hidden, "" if derived else count(r.params), loss(r.test_loss),
                     gain, made])
    return table(["predictor", "hidden", "params", "test nats/char", "dyn gain", "errors (p(true) < 0.5)"], rows)


@block("beyond_reference_counts")
def beyond_reference_counts(results):
    """'the reference lstm-1x64 makes n-gram 66,698, ..., rest 15,803 errors in 330,000 test bytes'"""
    df, _, n_test = beyond_errors(results)
    reference = df.reference.iloc[0]
    own = df[df.model == reference]
    if not len(own):
        raise RenderError(f"beyond_arch_errors.csv has no errors of its reference {reference}; remake it")
    counts = ", ".join(f"{CATEGORY_NAMES.get(r.category, r.category)} {count(r.errors)}" for r in own.itertuples())
    return f"the reference {reference} makes {counts} errors in {count(n_test)} test bytes"


@block("beyond_errors_table")
def beyond_errors_table(results):
    df, _, _ = beyond_errors(results)
    categories = list(dict.fromkeys(df.category))
    others = df[df.model != df.reference]
    if not len(others):
        raise RenderError("beyond_arch_errors.csv has no predictor beside its reference; remake it")
    rows = []
    for arch, group in others.groupby("arch", sort=False):
        removed = group.set_index("category").removed_vs_reference
        rows.append([arch] + [pct(removed[c]) for c in categories])
    return table([""] + [CATEGORY_NAMES.get(c, c) for c in categories], rows)


def dyn_removals(results, category):
    """[(share removed, model, its +dyn predictor)] of one oracle category, largest first: what dynamic evaluation
    removes of its own model's errors."""
    df, _, _ = beyond_errors(results)
    errors = df[df.category == category].set_index("model").errors
    # a model with no errors of the category has no share to remove
    pairs = [(m.removesuffix("+dyn"), m) for m in errors.index if m.endswith("+dyn")
             and m.removesuffix("+dyn") in errors.index and errors[m.removesuffix("+dyn")] > 0]
    if not pairs:
        raise RenderError(f"beyond_arch_errors.csv has no {category} errors of a +dyn predictor and its model")
    return sorted(((1 - errors[dyn] / errors[base], base, dyn) for base, dyn in pairs), reverse=True), errors


@block("dyn_removed")
def dyn_removed(results, category):
    """'transformer 2.8% (21,996 -> 21,385), LRU 1.4% (...), ...'"""
    removals, errors = dyn_removals(results, category)
    arch = results.required("beyond_table1.csv").set_index("model").arch
    missing = [base for _, base, _ in removals if base not in arch]
    if missing:
        raise RenderError(f"beyond_table1.csv has no row of {', '.join(missing)}; remake it")
    return ", ".join(f"{ARCH_NAMES.get(arch[base], arch[base])} {pct(share)} ({count(errors[base])} -> "
                     f"{count(errors[dyn])})" for share, base, dyn in removals)


@block("dyn_removed_at_most")
def dyn_removed_at_most(results, category):
    """'at most 0.4%', or 'none' where dynamic evaluation adds errors of the category to every model."""
    removals, _ = dyn_removals(results, category)
    return f"at most {pct(removals[0][0])}" if removals[0][0] > 0 else "none"


@block("beyond_models")
def beyond_models(results):
    """'lstm-1x64, transformer-1x64 and lru-1x64 (30 epochs each)'"""
    t1 = results.required("beyond_table1.csv")
    trained = t1[t1.model == t1.model.str.removesuffix("+dyn")]
    if not len(trained):
        raise RenderError("beyond_table1.csv has no trained model; remake it (docs/results/README.md)")
    return f"{and_list(trained.model)} ({epochs_text(trained)} each)"


@block("closers")
def closers(results, corpus, *delimiters):
    """'829 closing quotes and 64 closing parentheses': the closers of the test split in the bracket curves."""
    frames = [t for t in map(results.optional, BRACKET_CSVS) if t is not None]
    if not frames:
        raise RenderError(f"no bracket curves: {results.folder / BRACKET_CSVS[0]} is missing")
    df = pd.concat(frames)
    df = df[df.corpus == corpus]
    counts = df.groupby(["delimiter_name", "model"], sort=False)["count"].sum().groupby(level=0, sort=False).max()
    missing = [d for d in delimiters if d not in counts]
    if missing or not len(counts):
        raise RenderError(f"the bracket CSVs ({', '.join(BRACKET_CSVS)}) have no {', '.join(missing) or 'curve'} "
                          f"of {corpus}")
    return and_list(f"{count(counts[d])} {CLOSER_NAMES.get(d, d)}" for d in (delimiters or counts.index))


# ------------------------------------------------------------------------------------ the dynamic-memory oracle

def memory_row(results, model, definition):
    df = results.required("memory_definitions.csv")
    row = df[(df.model == model) & (df.definition == definition)]
    if not len(row):
        raise RenderError(f"memory_definitions.csv has no row for {model} under {definition}")
    return row.iloc[0]


@block("memory_definitions")
def memory_definitions(results):
    """Per predictor: its errors and the dynamic-memory errors under every definition."""
    df = results.required("memory_definitions.csv")
    if not len(df):
        raise RenderError("memory_definitions.csv has no rows; remake it with make_memory_definitions.sh")
    t1 = results.optional("table1.csv")
    reference = set() if t1 is None else set(t1.model)
    parts = []
    for model, group in df.groupby("model", sort=False):
        counts = ", ".join(f"{r.definition} {count(r.memory)}" for r in group.itertuples())
        name = f"the reference {model}" if model in reference else predictor_name(model)
        parts.append(f"{name} ({count(group.n_errors.iloc[0])} errors): {counts}")
    return ("The definitions count (`docs/results/memory_definitions.csv`, made by "
            f"`docs/results/make_memory_definitions.sh`) for {'; for '.join(parts)}.")


@block("memory_count")
def memory_count(results, model, definition):
    return count(memory_row(results, model, definition).memory)


@block("memory_errors")
def memory_errors(results, model):
    return f"{count(memory_row(results, model, 'error').n_errors)} errors"


@block("memory_second_byte")
def memory_second_byte(results, model, definition):
    """'8,126 of its 14,091': the memory oracle's errors at a word's second byte."""
    row = memory_row(results, model, definition)
    return f"{count(row.memory_at_second_byte)} of its {count(row.memory)}"


@block("memory_vs_breakdown")
def memory_vs_breakdown(results, model):
    """Whether the memory oracle as first defined (`error`) gives error_breakdown.csv's count."""
    breakdown = results.required("error_breakdown.csv")
    theirs = breakdown[(breakdown.model == model) & (breakdown.category == "memory")]["count"]
    if not len(theirs):
        raise RenderError(f"error_breakdown.csv has no dynamic-memory errors of {model}; name a model it breaks down")
    theirs = theirs.sum()
    mine = memory_row(results, model, "error").memory
    if mine == theirs:
        return f"`error` reproduces the {count(mine)} of `error_breakdown.csv`"
    return f"`error` counts {count(mine)}, `error_breakdown.csv` {count(theirs)}"


# ------------------------------------------------------------------------------ docs/results: the reference run

@block("demo_time")
def demo_time(results):
    """The README's two commands timed from a clean clone (bench/bench_demo.sh -> demo_time.csv)."""
    t = results.required("demo_time.csv").set_index("step")

    def minutes(step):
        seconds = float(t.loc[step, "seconds"])
        return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"

    jobs = str(t.loc["workflow", "note"]).rsplit(": ", 1)[-1]
    text = (f"`make demo` took {minutes('make_demo')} from a clean clone on {int(t.loc['cores', 'seconds'])} cores: "
            f"set-up {minutes('setup')}, the workflow {minutes('workflow')} ({jobs}), the report {minutes('report')}")
    test = t.loc["make_test"]
    if pd.notna(test["seconds"]):
        text += f"; `make test` after it, in the same clone, {str(test['note']).rsplit(': ', 1)[-1]} in {minutes('make_test')}"
    return text + "."


@block("reference_epochs")
def reference_epochs(results):
    """'all 9 models stopped at max_epochs (30)', max_epochs from reference.yaml."""
    t1 = results.required("table1.csv")
    limit = results.required("reference.yaml")["training"]["max_epochs"]
    if not len(t1):
        raise RenderError("table1.csv has no rows; remake it (docs/results/README.md)")
    at_limit = int((t1.epochs == limit).sum())
    if at_limit == len(t1):
        return f"all {len(t1)} models stopped at max_epochs ({limit})"
    return f"{at_limit} of {len(t1)} models stopped at max_epochs ({limit}), the others earlier"


@block("reference_findings")
def reference_findings(results):
    """The reference run's reference n-gram against the RNNs, and the best LSTM's error breakdown."""
    t1, t2 = results.required("table1.csv"), results.required("table2.csv")
    breakdown = results.required("error_breakdown.csv")
    n = results.required("reference.yaml")["analysis"]["reference_ngram"]
    for name, rows in (("table1.csv", t1), ("error_breakdown.csv", breakdown)):
        if not len(rows):
            raise RenderError(f"{name} has no rows; remake it (docs/results/README.md)")
    ngram = t2[(t2.corpus == t1.corpus.iloc[0]) & (t2.n == n)]
    if not len(ngram):
        raise RenderError(f"table2.csv has no {n}-gram (reference.yaml's analysis.reference_ngram) of "
                          f"{t1.corpus.iloc[0]}")
    ngram = ngram.iloc[0]
    best = t1.loc[t1.test_loss.idxmin()]
    beats = "beats" if ngram.ngram_test_loss < best.test_loss else "does not beat"
    model = breakdown.model.iloc[0]
    own = breakdown[breakdown.model == model]
    n_errors, n_test = own.n_errors.iloc[0], own.n_test.iloc[0]
    shares = own.groupby("category", sort=False).share_of_errors.sum().sort_values(ascending=False)
    parts = ", ".join(f"{CATEGORY_NAMES.get(c, c)} {pct(s)}" for c, s in shares.items() if c != "rest")
    lstms = t1[t1.arch == "lstm"]
    which = " (the best LSTM)" if len(lstms) and lstms.model[lstms.test_loss.idxmin()] == model else ""
    return (f"At this size ({span(t1.params, lambda p: f'{p / 1000:.1f}k')} parameters, {epochs_text(t1)}) the "
            f"{n}-gram ({loss(ngram.ngram_test_loss)}) {beats} every RNN of Table 1 (best {best.model}, "
            f"{loss(best.test_loss)}). The error breakdown of {model}{which}: {count(n_errors)} errors "
            f"(p(true) < 0.5) in {count(n_test)} test bytes ({pct(n_errors / n_test)}), of which {parts}, "
            f"rest {pct(shares.get('rest', 0))}.")


# ---------------------------------------------------------------------------- docs/slurm.md: what runs where

def plan_totals(results):
    plan = results.required("paper_plan.csv")
    if not len(plan):
        raise RenderError("paper_plan.csv has no rows; remake it (docs/results/README.md)")
    jobs = plan.set_index("rule").jobs
    where = plan["where"]
    return {"total": int(plan.jobs.sum()), "submitted": int(plan.jobs[where == "Slurm job"].sum()),
            "host": int(plan.jobs[where == "host"].sum()),
            "runnable": int(plan.jobs[plan.rule != "all"].sum()),
            "models": int(jobs.get("model_spec", 0)), "train": int(jobs.get("train", 0))}


@block("rule_costs_table")
def rule_costs_table(results):
    """One row per measured rule (rule_costs.csv) with its jobs on the paper's grid (paper_plan.csv), then the
    rules of the grid that were not measured."""
    costs, plan = results.required("rule_costs.csv"), results.required("paper_plan.csv").set_index("rule")
    rows = []
    for r in costs.itertuples():
        jobs = int(plan.jobs[r.rule]) if r.rule in plan.index else "–"
        rows.append([f"`{r.rule}`", jobs, f"{r.median_s:.1f}", r.max_rss_mb, "host" if r.local else "Slurm job"])
    for rule, p in plan.iterrows():
        if rule not in set(costs.rule) and rule != "all":
            rows.append([f"`{rule}`", p["jobs"], "(not measured)", "", p["where"]])
    return table(["rule", "jobs, paper grid", "seconds (median)", "peak MB", "runs as"], rows)


@block("slurm_plan")
def slurm_plan(results):
    t = plan_totals(results)
    return (f"{count(t['total'])} jobs: a Slurm run submits {count(t['submitted'])} of them and runs "
            f"{count(t['host'])} on the host")


@block("slurm_plan_short")
def slurm_plan_short(results):
    t = plan_totals(results)
    return f"{count(t['total'])} jobs make {count(t['submitted'])} Slurm jobs"


@block("slurm_plan_without_local")
def slurm_plan_without_local(results):
    return count(plan_totals(results)["runnable"])


@block("paper_plan")
def paper_plan(results):
    t = plan_totals(results)
    return f"{count(t['models'])} models, {count(t['train'])} training jobs and {count(t['total'])} jobs in all"


# ------------------------------------------------------------------------------------------------- rendering

def render_text(text, results, where):
    """The text with every marked part rendered."""
    def replace(match):
        name, args, old = match.group(1), match.group(2).split(), match.group(3)
        if name not in BLOCKS:
            raise RenderError(f"{where}: unknown block {name!r} in its markers; known: {', '.join(sorted(BLOCKS))}")
        if START.search(old):
            raise RenderError(f"{where}: block {name!r} has no '<!-- end rendered -->' before the next marker")
        try:
            inspect.signature(BLOCKS[name]).bind(results, *args)
        except TypeError as e:
            raise RenderError(f"{where}: block {name} {' '.join(args)}: wrong arguments ({e})") from None
        try:
            new = BLOCKS[name](results, *args)
        except RenderError as e:
            raise RenderError(f"{where}, block {name}: {e}") from None
        marker = match.group(0)[:match.start(3) - match.start(0)]
        before = text[text.rfind("\n", 0, match.start()) + 1:match.start()]
        if old.startswith("\n"):
            # blank lines around the text: a table or paragraph of its own, apart from the markers' HTML blocks;
            # indented as the marker is (inside a list item)
            indent = before if not before.strip() else ""
            lines = [indent + line if line.strip() else "" for line in new.strip().splitlines()]
            return f"{marker}\n\n" + "\n".join(lines) + f"\n\n{indent}<!-- end rendered -->"
        if "\n" in new:
            raise RenderError(f"{where}: block {name!r} renders several lines; start its text on the line after "
                              f"the marker")
        if not before.strip():
            raise RenderError(f"{where}: inline block {name!r} starts a line, where Markdown takes the marker for "
                              f"an HTML block; put text before it on its line")
        return f"{marker}{new}<!-- end rendered -->"

    rendered = MARKER.sub(replace, text)
    unmatched = len(START.findall(text)) - len(MARKER.findall(text))
    if unmatched:
        raise RenderError(f"{where}: {unmatched} '<!-- rendered: ... -->' marker(s) without an "
                          f"'<!-- end rendered -->'")
    return rendered


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 with a diff where a file differs from what it would render")
    ap.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this script's)")
    args = ap.parse_args(argv)
    results = Results(args.root / RESULTS)
    stale = []
    try:
        for name in DOCS:
            path = args.root / name
            if not path.is_file():
                raise RenderError(f"{path} is missing")
            text = path.read_text()
            new = render_text(text, results, name)
            if new == text:
                continue
            if args.check:
                stale.append(name)
                sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True),
                                                           f"{name} (committed)", f"{name} (rendered)"))
            else:
                path.write_text(new)
                print(f"render_docs: rendered {name}")
    except RenderError as e:
        print(f"render_docs: {e}", file=sys.stderr)
        return 2
    if stale:
        print(f"render_docs: out of date with the results in {RESULTS}/: {', '.join(stale)}; run "
              f"`python scripts/render_docs.py` (edit the prose outside the markers, the numbers in the CSVs)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
