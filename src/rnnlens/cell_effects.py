"""Do the best cells matter? Ablate each feature's best cell and measure what the model loses, beside random
units of the same layer as a control.

For each model and feature, the best cell of the best-cells table (rnnlens.cells.best_cells: the raw best score)
is held at its mean over the training split (rnnlens.interventions, "mean") and the test split is predicted
again. The loss change (nats, ablated minus own, per position) is averaged over:

  holds    positions predicted while the feature holds (binary: on; count: above 0), read from the state the
           model has when it predicts: the features after the byte before the predicted one
  not      the other positions
  target   the characters the feature should help predict, where it holds: the closing `"` inside a
           double-quoted string (in_dquote), `'` (in_squote), the line break (line_pos: `\n`, or `\r` where lines end in
           CRLF), `}` inside braces
           (brace_depth), `)` (paren_depth), `]` (bracket_depth)
  other    every position but the targets

A cell that is used costs clearly more on its targets than the controls do; a cell that correlates but is not used
(the model reads the same information from other units) costs about what a random unit costs.

Command line (`rnnlens cell-effects`): one or more models of one corpus, their best-cells table -> one CSV row
per (model, feature, ablated unit) with role best or control, and a figure.
"""

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rnnlens.errors import InputError
from rnnlens.features import FEATURE_KINDS, compute_features

log = logging.getLogger(__name__)

TARGETS = {"in_dquote": '"', "in_squote": "'", "line_pos": "\n", "brace_depth": "}", "paren_depth": ")",
           "bracket_depth": "]"}
DEFAULT_FEATURES = ("in_dquote", "line_pos", "brace_depth")
COLUMNS = ["corpus", "model", "feature", "role", "layer", "unit", "score", "target_chars", "positions", "holds",
           "targets", "dloss_all", "dloss_holds", "dloss_not", "dloss_target", "dloss_other"]


def features_before(corpus, split="test", context=20_000, style="auto"):
    """Features of the state each prediction of the split is made from: those after the byte before it."""
    frames = []
    for a, b in corpus.pieces[split]:
        if a < 1:
            raise InputError("the split starts at the corpus's first byte, which nothing predicts from")
        frames.append(compute_features(corpus.data, a - 1, b, context=context, style=style).iloc[:-1])
    return pd.concat(frames, ignore_index=True)


def target_char(feature, data):
    """The character `feature` should help predict in this corpus. For line_pos, the line break's first byte: in a
    corpus with CRLF line ends (War and Peace's) the `\n` after `\r` is certain whatever the cells hold, so the
    `\r` is the prediction that needs the line position."""
    target = TARGETS.get(feature, "")
    if target == "\n":
        data = np.asarray(data)
        newlines = np.flatnonzero(data[1:] == ord("\n")) + 1
        if len(newlines) and np.mean(data[newlines - 1] == ord("\r")) > 0.5:
            return "\r"
    return target


def printable(char):
    """A target character as the table and the figure write it: line ends escaped (a raw \r would split its CSV row)."""
    return char.encode("unicode_escape").decode("ascii") if char and not char.isprintable() else char


def masks(feature, before, target_bytes, target=None):
    """-> (holds, target) boolean arrays over the split's predictions; target: the character (target_char)."""
    value = before[feature].to_numpy()
    holds = value.astype(bool) if FEATURE_KINDS[feature] == "binary" else value > 0
    target = TARGETS.get(feature, "") if target is None else target
    is_target = np.zeros(len(holds), dtype=bool)
    if target:
        is_target = holds & (np.asarray(target_bytes) == ord(target))
    return holds, is_target


def summarize(dloss, holds, target):
    mean = lambda m: float(dloss[m].mean()) if m.any() else np.nan  # noqa: E731
    return {"positions": len(dloss), "holds": int(holds.sum()), "targets": int(target.sum()),
            "dloss_all": float(dloss.mean()), "dloss_holds": mean(holds), "dloss_not": mean(~holds),
            "dloss_target": mean(target), "dloss_other": mean(~target)}


def model_effects(model, corpus, model_id, cells, controls=5, seed=0, streams=100, warmup=2000, chunk=500,
                  device="cpu", mean_positions=200_000, features=None):
    """Rows of the table for one model. cells: {feature: (layer, unit, score)} -> DataFrame (COLUMNS)."""
    from rnnlens.interventions import Intervention, clamping_runner, predict_with_intervention, unit_means

    model = model.to(device).eval()
    runner = clamping_runner(model)
    before = features if features is not None else features_before(corpus)
    target_bytes = corpus.split("test")
    t0 = time.time()
    means = unit_means(model, corpus, runner, max_positions=mean_positions)
    common = dict(streams=streams, warmup=warmup, chunk=chunk, device=device, means=means, runner=runner)
    # the model's own predictions through the same loop, so that only the intervention differs
    own = np.log(predict_with_intervention(model, corpus, [], **common)["p"].astype(np.float64))
    ablated = {}

    def dloss(layer, unit):
        if (layer, unit) not in ablated:
            p = predict_with_intervention(model, corpus, Intervention(layer, [unit], "mean"), **common)["p"]
            ablated[layer, unit] = own - np.log(p.astype(np.float64))
        return ablated[layer, unit]

    rows = []
    for feature, (layer, unit, score) in cells.items():
        char = target_char(feature, corpus.data)
        holds, target = masks(feature, before, target_bytes, char)
        rng = np.random.default_rng([seed, layer, unit])
        others = np.array([u for u in range(runner.units) if u != unit])
        chosen = rng.choice(others, size=min(controls, len(others)), replace=False)
        for role, u, s in [("best", unit, score)] + [("control", int(c), np.nan) for c in chosen]:
            rows.append({"corpus": corpus.name, "model": model_id, "feature": feature, "role": role, "layer": layer,
                         "unit": u, "score": s, "target_chars": printable(char),
                         **summarize(dloss(layer, u), holds, target)})
        best = rows[-len(chosen) - 1]
        control_max = max((r["dloss_target"] for r in rows[-len(chosen):] if not np.isnan(r["dloss_target"])),
                          default=np.nan)
        log.info(f"{model_id} {feature}: best cell L{layer}U{unit} costs {best['dloss_target']:.4f} nats on its "
                 f"{best['targets']} targets, {best['dloss_other']:.4f} elsewhere; controls {control_max:.4f} at "
                 f"most on targets ({time.time() - t0:.0f} s)")
    return pd.DataFrame(rows, columns=COLUMNS)


def cells_of(best, model_id, features):
    """{feature: (layer, unit, score)} of one model from the best-cells table."""
    rows = best[best.model == model_id]
    if rows.empty:
        raise InputError(f"the best-cells table has no rows of model {model_id}; give the table made from its "
                         "internals (rnnlens best-cells)")
    chosen = rows[rows.feature.isin(features)] if features else rows
    return {r.feature: (int(r.layer), int(r.unit), float(r.score)) for r in chosen.itertuples()}


def plot_effects(table, paths, title=None):
    """One panel per feature: the loss change of the best cell (large) and of each control unit (small), on the
    positions where the feature holds, where it does not, and on its target characters; one colour per model."""
    from rnnlens.io import save_figures
    from rnnlens.plots import model_styles, pyplot

    plt = pyplot()
    feats = list(dict.fromkeys(table.feature))
    models = list(dict.fromkeys(table.model))
    styles = model_styles(models)
    fig, axes = plt.subplots(1, max(len(feats), 1), figsize=(3.6 * max(len(feats), 1), 3.4), squeeze=False)
    groups = [("dloss_holds", "holds"), ("dloss_not", "not"), ("dloss_target", "target")]
    for ax, feature in zip(axes[0], feats):
        part = table[table.feature == feature]
        for m, model in enumerate(models):
            rows = part[part.model == model]
            colour = styles[model]["color"]
            offset = (m - (len(models) - 1) / 2) * 0.12
            for g, (column, _) in enumerate(groups):
                ctrl = rows[rows.role == "control"][column].to_numpy()
                ax.scatter(np.full(len(ctrl), g + offset), ctrl, s=12, color="0.6", zorder=2)
                ax.scatter([g + offset], rows[rows.role == "best"][column].to_numpy()[:1], s=60, color=colour,
                           zorder=3, label=model if g == 0 else None, edgecolor="k", linewidth=0.5)
        ax.axhline(0, color="0.3", linewidth=0.6)
        ax.set_xticks(range(len(groups)), [label for _, label in groups])
        target = next(iter(part.target_chars.dropna()), "") if "target_chars" in part else TARGETS.get(feature, "")
        ax.set_title(f"{feature}" + (f" (target {printable(target)})" if target else ""), fontsize=9)
        ax.set_ylabel("loss change when ablated (nats/char)")
    if models:
        axes[0][0].legend(fontsize=7, title="best cell (grey: controls)", title_fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figures(fig, paths)


def add_cell_effects_arguments(parser):
    parser.add_argument("--models", nargs="+", required=True, help="model.pt files of one corpus")
    parser.add_argument("--model-ids", nargs="*", default=None, help="their ids (default: from each model file)")
    parser.add_argument("--data", required=True, help="the corpus's prepared data.json")
    parser.add_argument("--best-cells", required=True, help="best-cells table (.csv or .parquet, rnnlens best-cells)")
    parser.add_argument("--out", required=True, help="output CSV")
    parser.add_argument("--figure", default=None, help="figure (.png; a .pdf beside it)")
    parser.add_argument("--features", default=",".join(DEFAULT_FEATURES),
                        help="features whose best cells are ablated, comma-separated ('all': every one in the table)")
    parser.add_argument("--controls", type=int, default=5, help="random units of the same layer per best cell")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=500,
                        help="characters each row reads before its part of the split (the cells track a few hundred)")
    parser.add_argument("--max-positions", type=int, default=0,
                        help="predict only about this many test positions, spread over the split (0: all)")
    parser.add_argument("--mean-positions", type=int, default=200_000,
                        help="training positions the units' means are taken over (a spread sample)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu, cuda, ...")
    parser.add_argument("--threads", type=int, default=0)


def run_cell_effects(args):
    """Ablate each feature's best cell of each model (held at its training mean at every step) and random units
    of the same layer; write the loss changes where the feature holds, where it does not and on its targets."""
    import torch

    from rnnlens import archs
    from rnnlens.corpus import PreparedCorpus
    from rnnlens.internals import model_id_for
    from rnnlens.io import atomic_csv
    from rnnlens.model import load_model, pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    for path in [args.data, args.best_cells, *args.models]:
        if not Path(path).is_file():
            raise InputError(f"{path} does not exist; run the stage that makes it first")
    if args.model_ids and len(args.model_ids) != len(args.models):
        raise InputError(f"{len(args.models)} models but {len(args.model_ids)} --model-ids; give one id per model")
    best = pd.read_parquet(args.best_cells) if args.best_cells.endswith(".parquet") else pd.read_csv(args.best_cells)
    features = None if args.features == "all" else [f for f in args.features.split(",") if f]
    unknown = [f for f in features or [] if f not in FEATURE_KINDS]
    if unknown:
        raise InputError(f"unknown features {unknown}: choose from {', '.join(FEATURE_KINDS)}")
    corpus = PreparedCorpus.load(args.data)
    if args.max_positions:
        corpus = corpus.with_split_spread("test", args.max_positions)
    before = features_before(corpus)
    frames = [pd.DataFrame(columns=COLUMNS)]
    for k, path in enumerate(args.models):
        model, extra = load_model(path, map_location=device)
        model_id = model_id_for(path, extra, args.model_ids[k] if args.model_ids else None)
        runner = archs.load(model.spec.arch).internals_runner(model, "auto")
        if not getattr(runner, "supports_clamp", False):
            log.info(f"{model_id}: skipped, interventions are not supported for {archs.describe(model.spec.arch)} yet")
            continue
        cells = cells_of(best[best.corpus == corpus.name] if "corpus" in best else best, model_id, features)
        frames.append(model_effects(model, corpus, model_id, cells, controls=args.controls, seed=args.seed,
                                    streams=args.streams, warmup=args.warmup, device=device,
                                    mean_positions=args.mean_positions, features=before))
    table = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
    atomic_csv(table, args.out, float_format="%.6f")
    if args.figure:
        figure = Path(args.figure)
        plot_effects(table, [figure, figure.with_suffix(".pdf")], title=f"cell ablations on {corpus.name}")
    log.info(f"cell effects of {len(args.models)} model(s), {table.feature.nunique()} feature(s) -> {args.out}")
    return 0
