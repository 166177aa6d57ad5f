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
     or results.optional("file.csv") (None when missing), and put the markers where the text goes;
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
    return f"{span(df.epochs.dropna().astype(int), str)} epochs"


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
    """What the 3-seed cells (table1_seeds.csv) say: the seeds' spread, whether the documented seed is the
    reference run's model again, and how the gap to the paper compares with the spread."""
    seeds = results.optional("table1_seeds.csv")
    if seeds is None:
        return "(no multi-seed run is committed yet)"
    t1 = results.required("table1.csv").set_index(["corpus", "model"])
    same = [m for m in seeds.itertuples() if (m.corpus, m.model) in t1.index
            and round(t1.loc[(m.corpus, m.model), "test_loss"], 4) == round(m.test_loss, 4)]
    gap = (seeds.test_loss_mean - seeds.paper_test_loss_recalled).abs()
    ratio = gap / seeds.test_loss_sd
    inside = seeds.paper_in_ci.dropna().astype(bool)
    return (f"Over {span(seeds.n_seeds.astype(int), str)} seeds the {len(seeds)} models' test losses have standard "
            f"deviations of {span(seeds.test_loss_sd, lambda x: f'{x:.4f}')} nats "
            f"({and_list(f'{m.model} {m.test_loss_sd:.4f}' for m in seeds.itertuples())}). The documented seed, "
            f"retrained here, gives the reference run's test loss to the 4th decimal for {len(same)} of "
            f"{len(seeds)} models (training is deterministic on the CPU). The means are "
            f"{span(gap, loss)} from the paper's values, {span(ratio, lambda x: f'{x:.0f}')} times the seeds' "
            f"standard deviation; the paper's value is inside the 95% interval of the mean for {int(inside.sum())} "
            f"of {len(inside)} models: the gap is not the luck of one seed (the 30 of the paper's 50 epochs are the "
            f"first suspect).")


@block("cell_effect_findings")
def cell_effect_findings(results, corpus):
    """Per model and feature of cell_effects_{corpus}.csv: the best cell's loss change on its targets and elsewhere,
    beside the controls' range on the targets."""
    effects = results.optional(f"cell_effects_{corpus}.csv")
    if effects is None:
        return f"(no cell-effects table of {corpus} is committed yet)"
    lines = []
    for (model, feature), part in effects.groupby(["model", "feature"], sort=False):
        best = part[part.role == "best"].iloc[0]
        controls = part[part.role == "control"]
        target = f"`{best.target_chars}`" if isinstance(best.target_chars, str) else "its targets"
        lines.append(f"- {model}, {feature}: its best cell L{int(best.layer)}U{int(best.unit)} (score "
                     f"{best.score:.3f}), held at its mean, costs {best.dloss_target:+.3f} nats on the "
                     f"{count(best.targets)} {target} where the feature holds and {best.dloss_other:+.3f} elsewhere; "
                     f"{len(controls)} random units of its layer cost {signed_range(controls.dloss_target)} on "
                     f"those {target} and {signed_range(controls.dloss_other)} elsewhere.")
    return "\n".join(lines)


@block("brace_curve")
def brace_curve(results, corpus, delimiter, near, far):
    """Mean p of the closer below `near` characters from its opener and at `far` or beyond, per predictor of the
    bracket curves (weighted by the closers of each bin), with the closer counts."""
    frames = [t for t in map(results.optional, BRACKET_CSVS) if t is not None]
    df = pd.concat(frames) if frames else pd.DataFrame(columns=["corpus", "delimiter_name"])
    df = df[(df.corpus == corpus) & (df.delimiter_name == delimiter)]
    if not len(df):
        return f"(no {delimiter} curve of {corpus} is committed yet)"
    near, far = int(near), int(far)
    parts = []
    for model, part in df.groupby("model", sort=False):
        low, high = part[part.bin_end <= near], part[part.bin_start >= far]
        mean = lambda rows: float((rows.mean_p * rows["count"]).sum() / rows["count"].sum())  # noqa: E731
        parts.append(f"{model} {mean(low):.3f} / {mean(high):.3f}")
    counts = df.groupby("model")["count"].sum().max()
    low_n = int(df[df.bin_end <= near].groupby("model")["count"].sum().max())
    high_n = int(df[df.bin_start >= far].groupby("model")["count"].sum().max())
    return (f"{count(counts)} {CLOSER_NAMES.get(delimiter, delimiter)}; mean p of the closer within {near} characters "
            f"of its opener ({count(low_n)} closers) / {far} or more away ({count(high_n)}): {and_list(parts)}")


@block("perchar_top")
def perchar_top(results, name, k, min_count):
    """The k characters (of at least min_count in the test split) with the largest gain of model A over model B
    (perchar CSV), with their counts."""
    df = results.optional(name)
    if df is None:
        return f"(no {name} is committed yet)"
    top = df[df["count"] >= int(min_count)].sort_values("diff", ascending=False).head(int(k))
    first = top.iloc[0]
    return (f"{first.label_a} over {first.label_b}, mean p(true) higher by " +
            and_list(f"{r['diff']:+.3f} on `{r['char']}` ({count(r['count'])})" for _, r in top.iterrows()))


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
    parts = []
    for feature in features:
        rows = df[(df.feature == feature)].sort_values("score", ascending=False)
        if len(rows):
            r = rows.iloc[0]
            parts.append(f"{feature} {r.model} L{int(r.layer)}U{int(r.unit)} ({r.kind} {r.score:.3f})")
    return and_list(parts)


@block("ngram_vs_paper")
def ngram_vs_paper(results, corpus, n):
    """'0.883 vs the paper's 0.889': one n-gram of Table 2 beside the paper's value."""
    t2 = results.required("table2.csv")
    row = t2[(t2.corpus == corpus) & (t2.n == int(n))]
    if not len(row):
        raise RenderError(f"table2.csv has no {n}-gram of {corpus}")
    row = row.iloc[0]
    return f"{loss(row.ngram_test_loss)} vs the paper's {paper_text(row.paper_ngram_test_loss, not row.paper_confirmed)}"


# -------------------------------------------------------------------------------------- README: beyond the paper

def beyond_errors(results):
    """beyond_arch_errors.csv with the errors of each predictor (its categories partition them) and the test size."""
    df = results.required("beyond_arch_errors.csv")
    n_test = round((df.errors / df.share_of_test).median())
    return df, df.groupby("model", sort=False).errors.sum(), n_test


@block("beyond_table")
def beyond_table(results):
    t1 = results.required("beyond_table1.csv")
    _, errors, n_test = beyond_errors(results)
    rows = []
    for r in t1.itertuples():
        base = r.model.removesuffix("+dyn")
        derived = base != r.model
        gain = "" if not derived else loss(r.test_loss - t1.set_index("model").test_loss[base])
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
    counts = ", ".join(f"{CATEGORY_NAMES.get(r.category, r.category)} {count(r.errors)}" for r in own.itertuples())
    return f"the reference {reference} makes {counts} errors in {count(n_test)} test bytes"


@block("beyond_errors_table")
def beyond_errors_table(results):
    df, _, _ = beyond_errors(results)
    categories = list(dict.fromkeys(df.category))
    rows = []
    for arch, group in df[df.model != df.reference].groupby("arch", sort=False):
        removed = group.set_index("category").removed_vs_reference
        rows.append([arch] + [pct(removed[c]) for c in categories])
    return table([""] + [CATEGORY_NAMES.get(c, c) for c in categories], rows)


def dyn_removals(results, category):
    """[(share removed, model, its +dyn predictor)] of one oracle category, largest first: what dynamic evaluation
    removes of its own model's errors."""
    df, _, _ = beyond_errors(results)
    errors = df[df.category == category].set_index("model").errors
    pairs = [(m.removesuffix("+dyn"), m) for m in errors.index if m.endswith("+dyn")
             and m.removesuffix("+dyn") in errors.index]
    if not pairs:
        raise RenderError(f"beyond_arch_errors.csv has no {category} errors of a +dyn predictor and its model")
    return sorted(((1 - errors[dyn] / errors[base], base, dyn) for base, dyn in pairs), reverse=True), errors


@block("dyn_removed")
def dyn_removed(results, category):
    """'transformer 2.8% (21,996 -> 21,385), LRU 1.4% (...), ...'"""
    removals, errors = dyn_removals(results, category)
    arch = results.required("beyond_table1.csv").set_index("model").arch
    return ", ".join(f"{ARCH_NAMES.get(arch[base], arch[base])} {pct(share)} ({count(errors[base])} -> "
                     f"{count(errors[dyn])})" for share, base, dyn in removals)


@block("dyn_removed_at_most")
def dyn_removed_at_most(results, category):
    """'at most 0.4%'"""
    removals, _ = dyn_removals(results, category)
    return f"at most {pct(removals[0][0])}"


@block("beyond_models")
def beyond_models(results):
    """'lstm-1x64, transformer-1x64 and lru-1x64 (30 epochs each)'"""
    t1 = results.required("beyond_table1.csv")
    trained = t1[t1.model == t1.model.str.removesuffix("+dyn")]
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
    parts = []
    for i, (model, group) in enumerate(df.groupby("model", sort=False)):
        counts = ", ".join(f"{r.definition} {count(r.memory)}" for r in group.itertuples())
        name = f"the reference {model}" if i == 0 else predictor_name(model)
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
    theirs = breakdown[(breakdown.model == model) & (breakdown.category == "memory")]["count"].sum()
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
        return f"{float(t.loc[step, 'seconds']) / 60:.0f} min"

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
