"""Interpretable-cell discovery: score every cell (LSTM c, GRU/RNN h; all layers) against every text feature,
then rank each cell against the simpler explanations.

Binary features get the ROC AUC of the cell's activation for telling the feature's positives from its negatives
(Mann-Whitney from average ranks, all cells at once); count features get the Spearman rank correlation. The
score is direction-free, max(AUC, 1 - AUC) or |rho|, and `sign` says which way the cell goes (+1: the cell is
higher where the feature is on / larger). Positions may be subsampled evenly to bound memory.

Scores of different kinds are put on one scale to say which feature explains a cell best: `strength` is the
rank-biserial correlation |2 AUC - 1| for a binary feature and |rho| for a count (both 0 for no relation and 1
for a perfectly monotone one). `partial` is the partial rank correlation of the cell with the feature given
all the other features (Pearson on ranks, the other features regressed out of both): near 0 when what the cell
shares with the feature is already explained by the others, e.g. an "in_dquote" cell that follows letter case.

Per-model table (Parquet, ranked within each feature): model, corpus, layer (from 1), unit (from 0), feature,
kind (auc | spearman), value (AUC or rho), score, sign, rank, prevalence (share of positives; binary only),
positions, strength, partial. `explain_cells` gives every cell its best feature and the margin over the
runner-up; `best_cells` joins several tables into the best cell per feature and model, both the best raw score
(flagged when another feature explains that cell better) and the best cell whose own best explanation is the
feature.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from scipy.stats import rankdata

from rnnlens.errors import InputError
from rnnlens.features import CHARACTER_CLASSES, FEATURE_KINDS
from rnnlens.io import atomic_csv, atomic_write_text, read_parquet, write_table

log = logging.getLogger(__name__)

META_KEY = b"rnnlens"
SCORE_COLUMNS = ["layer", "unit", "feature", "kind", "value", "score", "sign", "rank", "prevalence", "positions",
                 "strength", "partial"]


def parse_cells(text):
    """'1:17,2:5' -> [(1, 17), (2, 5)] (layer from 1, unit from 0)."""
    cells = []
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        try:
            layer, unit = (int(v) for v in item.split(":"))
        except ValueError:
            raise InputError(f"cell {item!r} is not LAYER:UNIT (layer from 1, unit from 0), e.g. --cells 1:17,2:5") from None
        cells.append((layer, unit))
    return cells


def sample_positions(n, max_positions):
    """Up to max_positions evenly spaced positions of 0..n-1 (all when n is small enough or max <= 0)."""
    if max_positions is None or max_positions <= 0 or n <= max_positions:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_positions).round().astype(np.int64))


class CellCollector:
    """Keeps the cell values of chosen positions out of a stream of chunks: (positions, layers * hidden)."""

    def __init__(self, positions, n, layers, hidden):
        self.positions = np.asarray(positions, dtype=np.int64)
        self.layers, self.hidden = layers, hidden
        self.lookup = np.full(n, -1, dtype=np.int64)
        self.lookup[self.positions] = np.arange(len(self.positions))
        self.buffer = np.zeros((len(self.positions), layers * hidden), dtype=np.float32)
        self.filled = np.zeros(len(self.positions), dtype=bool)

    def update(self, pos, layer_values):
        """pos (batch, time) test offsets (-1: padding); layer_values: per layer (batch, time, hidden) tensors."""
        if len(self.positions) == 0:
            return
        flat = pos.reshape(-1)
        rows = np.where(flat >= 0, self.lookup[np.maximum(flat, 0)], -1)
        keep = rows >= 0
        if not keep.any():
            return
        rows = rows[keep]
        keep_t = torch.from_numpy(keep)
        for k, values in enumerate(layer_values):
            picked = values.reshape(-1, self.hidden)[keep_t.to(values.device)]
            self.buffer[rows, k * self.hidden:(k + 1) * self.hidden] = picked.float().cpu().numpy()
        self.filled[rows] = True

    def values(self):
        if not self.filled.all():
            raise RuntimeError(f"{(~self.filled).sum()} chosen positions never arrived from the stream")
        return self.buffer


def _standardize(columns):
    centred = columns - columns.mean(axis=0)
    norm = np.sqrt((centred ** 2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return centred / norm


def score_matrix(values, features, block=128):
    """values (N, cells), features DataFrame (N rows, columns in FEATURE_KINDS) -> {feature: (kind, value[cells],
    prevalence)}. Features without variation (no positives, or constant) are left out."""
    return _scores_and_partials(values, features, block)[0]


def _scores_and_partials(values, features, block=128):
    """score_matrix's scores, and {feature: partial rank correlation[cells]} given the other scored features."""
    values = np.asarray(values)
    n, cells = values.shape
    binary = [f for f in features.columns if FEATURE_KINDS.get(f) == "binary" and 0 < features[f].sum() < n]
    counts = [f for f in features.columns if FEATURE_KINDS.get(f) == "count" and features[f].nunique() > 1]
    scored = [f for f in features.columns if f in binary or f in counts]
    y = features[binary].to_numpy(dtype=np.float64)
    n1 = y.sum(axis=0)
    n0 = n - n1
    # every scored feature as standardized ranks (a binary feature's ranks are a linear map of the indicator)
    feature_ranks = (_standardize(rankdata(features[scored].to_numpy(dtype=np.float64), axis=0)) if scored
                     else np.zeros((n, 0)))
    count_cols = [scored.index(f) for f in counts]
    auc = np.empty((len(binary), cells))
    rho = np.empty((len(scored), cells))  # rank correlation of every feature with every cell
    for lo in range(0, cells, block):
        ranks = rankdata(values[:, lo:lo + block], axis=0)  # average ranks: ties count half, as AUC requires
        if binary:
            auc[:, lo:lo + block] = (y.T @ ranks - (n1 * (n1 + 1) / 2)[:, None]) / (n1 * n0)[:, None]
        if scored:
            rho[:, lo:lo + block] = feature_ranks.T @ _standardize(ranks)
    rho = np.nan_to_num(rho)  # a constant cell correlates with nothing
    out = {f: ("auc", auc[j], float(n1[j] / n)) for j, f in enumerate(binary)}
    out.update({f: ("spearman", rho[count_cols[j]], np.nan) for j, f in enumerate(counts)})
    partial = partial_correlations(feature_ranks.T @ feature_ranks, rho, scored)
    return ({f: out[f] for f in features.columns if f in out},
            {f: partial[j] for j, f in enumerate(scored)})


def partial_correlations(gram, corr, names=None):
    """Partial correlation of every cell with every feature given the other features.

    gram (F, F): correlations among the standardized features; corr (F, cells): feature-cell correlations.
    For feature f with the others o: the part of f they do not explain has variance 1 - g_of' P g_of (P the
    pseudo-inverse of their gram), the cell's covariance with it is corr_f - g_of' P corr_o, and the cell's
    variance left after the others is 1 - corr_o' P corr_o. A feature the others determine exactly has no part of
    its own: a character class (they partition the bytes, so each is the rest's complement) is then controlled
    for the features that are not classes; any other such feature gets 0."""
    k = len(gram)
    if k == 0:
        return np.zeros_like(corr)
    names = list(names) if names is not None else [None] * k
    classes = [j for j, name in enumerate(names) if name in CHARACTER_CLASSES]
    out = np.zeros_like(corr)
    for f in range(k):
        others = [j for j in range(k) if j != f]
        own, cov, left = _partial_parts(gram, corr, f, others)
        if own < 1e-6 and f in classes:
            own, cov, left = _partial_parts(gram, corr, f, [j for j in others if j not in classes])
        if own < 1e-6:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f] = cov / np.sqrt(own * np.clip(left, 1e-12, None))
    return np.clip(np.nan_to_num(out), -1.0, 1.0)


def _partial_parts(gram, corr, f, others):
    """(variance of feature f left after `others`, the cells' covariance with that part, their variance left)."""
    if not others:
        return 1.0, corr[f], np.ones(corr.shape[1])
    pinv = np.linalg.pinv(gram[np.ix_(others, others)], rcond=1e-10, hermitian=True)
    g = gram[others, f]
    own = float(1.0 - g @ pinv @ g)
    cov = corr[f] - g @ pinv @ corr[others]
    left = 1.0 - np.einsum("oc,oc->c", corr[others], pinv @ corr[others])
    return own, cov, left


def strength_of(kind, value):
    """The common scale of both kinds: |2 AUC - 1| (rank-biserial) or |rho|."""
    value = np.asarray(value, dtype=np.float64)
    return np.where(np.asarray(kind) == "auc", np.abs(2 * value - 1), np.abs(value))


def score_cells(values, features, layers, hidden):
    """The ranked per-cell table (without model/corpus columns) from sampled values (N, layers*hidden)."""
    if values.shape[1] != layers * hidden:
        raise ValueError(f"values have {values.shape[1]} columns, expected layers*hidden = {layers * hidden}")
    if len(features) != len(values):
        raise ValueError(f"{len(features)} feature rows for {len(values)} value rows")
    layer = np.repeat(np.arange(1, layers + 1), hidden)
    unit = np.tile(np.arange(hidden), layers)
    parts = []
    scores, partials = _scores_and_partials(values, features.reset_index(drop=True))
    for feature, (kind, value, prevalence) in scores.items():
        centred = value - 0.5 if kind == "auc" else value
        score = np.abs(centred) + (0.5 if kind == "auc" else 0.0)
        order = np.argsort(-score, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(1, len(order) + 1)
        parts.append(pd.DataFrame({"layer": layer, "unit": unit, "feature": feature, "kind": kind, "value": value,
                                   "score": score, "sign": np.where(centred >= 0, 1, -1), "rank": rank,
                                   "prevalence": prevalence, "positions": len(values),
                                   "strength": strength_of(kind, value),
                                   "partial": np.abs(partials[feature])}).iloc[order])
    if not parts:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    return pd.concat(parts, ignore_index=True)


CELL_KEYS = ["corpus", "model", "layer", "unit"]


def _with_strength(frame):
    """Older score tables have no strength/partial columns: derive strength, leave partial unknown."""
    if "strength" not in frame:
        frame = frame.assign(strength=strength_of(frame["kind"].to_numpy(), frame["value"].to_numpy()))
    if "partial" not in frame:
        frame = frame.assign(partial=np.nan)
    if "corpus" not in frame:
        frame = frame.assign(corpus="")
    if "model" not in frame:
        frame = frame.assign(model="")
    return frame


def explain_cells(scores):
    """Every scored cell's best explanation: best_feature (highest strength), its strength, kind and partial,
    the runner_up feature and its strength, and the margin between them."""
    frame = _with_strength(scores)
    ranked = frame.sort_values(CELL_KEYS + ["strength"], ascending=[True] * 4 + [False], kind="stable")
    first = ranked.groupby(CELL_KEYS, sort=False).nth(0).set_index(CELL_KEYS)
    second = ranked.groupby(CELL_KEYS, sort=False).nth(1).set_index(CELL_KEYS)
    out = pd.DataFrame({"best_feature": first["feature"], "best_kind": first["kind"],
                        "best_strength": first["strength"], "best_partial": first["partial"]})
    out["runner_up"] = second["feature"].reindex(out.index)
    out["runner_up_strength"] = second["strength"].reindex(out.index)
    out["margin"] = out["best_strength"] - out["runner_up_strength"].fillna(0.0)
    return out.reset_index()


def _atomic_parquet(frame, path, meta):
    return write_table(pa.Table.from_pandas(frame, preserve_index=False), path, meta)


def _atomic_csv(frame, path):
    return atomic_csv(frame, path, float_format="%.4f")


def write_scores(scores, path, meta=None):
    scores = scores.astype({"layer": "int16", "unit": "int32", "sign": "int8", "rank": "int32", "positions": "int64"})
    return _atomic_parquet(scores, path, meta)


def write_top(scores, path, per_feature=5):
    return _atomic_csv(scores[scores["rank"] <= per_feature], path)


def read_scores(path):
    return read_parquet(path).to_pandas()


def write_excerpts(path, positions, test_bytes, values, windows, layers, hidden, meta=None):
    """Cell values of the excerpt windows: rows (window, pos, byte) and one list column per layer."""
    positions = np.asarray(positions, dtype=np.int64)
    window = np.full(len(positions), -1, dtype=np.int16)
    for w, (a, b) in enumerate(windows):
        window[(positions >= a) & (positions < b)] = w
    columns = {"window": pa.array(window), "pos": pa.array(positions.astype(np.int32)),
               "byte": pa.array(np.asarray(test_bytes)[positions].astype(np.uint8))}
    for k in range(layers):
        flat = np.ascontiguousarray(values[:, k * hidden:(k + 1) * hidden], dtype=np.float32).reshape(-1)
        columns[f"layer{k + 1}"] = pa.FixedSizeListArray.from_arrays(pa.array(flat), hidden)
    meta = {**(meta or {}), "windows": [list(map(int, w)) for w in windows], "layers": layers, "hidden": hidden}
    return write_table(pa.table(columns), path, meta)


def read_excerpts(path):
    """-> (DataFrame window/pos/byte, values (rows, layers, hidden) float32, metadata)."""
    table = read_parquet(path)
    meta = json.loads(table.schema.metadata[META_KEY])
    layers, hidden = meta["layers"], meta["hidden"]
    values = np.stack([table.column(f"layer{k + 1}").combine_chunks().flatten().to_numpy().reshape(-1, hidden)
                       for k in range(layers)], axis=1) if len(table) else np.zeros((0, layers, hidden), np.float32)
    frame = table.select(["window", "pos", "byte"]).to_pandas()
    return frame, values, meta


def best_cells(tables):
    """Per-model score tables -> one row per (corpus, feature, model):

    the cell with the best raw score for the feature (layer, unit, score, sign, value, prevalence, strength,
    partial), what explains that cell best overall (explained_by, explained_by_strength, margin) and
    `confounded` when that is another feature; then `own_*`: the best-scoring cell whose own best explanation
    IS this feature (empty when no cell of the model has it as its best); `best_in_corpus` marks the model
    whose raw best cell scores highest for the feature on the corpus."""
    frame = pd.concat([t for t in tables if len(t)], ignore_index=True) if tables else pd.DataFrame()
    if frame.empty:
        raise InputError("no cell scores given; run `rnnlens internals` for the models first")
    frame = _with_strength(frame)
    explained = explain_cells(frame)
    frame = frame.merge(explained[CELL_KEYS + ["best_feature", "best_strength", "margin"]], on=CELL_KEYS)
    groups = ["corpus", "feature", "model"]
    best = frame.loc[frame.groupby(groups, sort=False)["score"].idxmax()]
    top = best.groupby(["corpus", "feature"])["score"].transform("max")
    best = best.assign(best_in_corpus=best["score"] == top, explained_by=best["best_feature"],
                       explained_by_strength=best["best_strength"], confounded=best["best_feature"] != best["feature"])
    own = frame[frame["best_feature"] == frame["feature"]]
    own = own.loc[own.groupby(groups, sort=False)["score"].idxmax()] if len(own) else own
    own = own[groups + ["layer", "unit", "score", "sign", "strength", "partial", "margin"]].rename(
        columns={c: f"own_{c}" for c in ("layer", "unit", "score", "sign", "strength", "partial", "margin")})
    best = best.merge(own, on=groups, how="left")
    for column in ("own_layer", "own_unit", "own_sign"):
        best[column] = best[column].astype("Int64")
    feature_order = {f: i for i, f in enumerate(FEATURE_KINDS)}
    best = best.assign(_f=best.feature.map(feature_order)).sort_values(["corpus", "_f", "score"],
                                                                         ascending=[True, True, False])
    return best[BEST_COLUMNS].reset_index(drop=True)


BEST_COLUMNS = ["corpus", "feature", "kind", "model", "layer", "unit", "score", "sign", "value", "prevalence",
                "strength", "partial", "explained_by", "explained_by_strength", "confounded",
                "own_layer", "own_unit", "own_score", "own_sign", "own_strength", "own_partial", "own_margin",
                "best_in_corpus"]


def add_best_cells_arguments(parser):
    parser.add_argument("--tables", nargs="+", required=True, help="cells.parquet files written by `rnnlens internals`")
    parser.add_argument("--out", required=True, help="output table (.csv, .parquet or .md)")
    parser.add_argument("--explanations-out", default=None,
                    help="CSV with every cell's best feature, runner-up and margin (all models)")


def run_best_cells(args):
    missing = [p for p in args.tables if not Path(p).is_file()]
    if missing:
        raise InputError(f"missing cell tables {missing}; run `rnnlens internals` for those models")
    tables = [read_scores(p) for p in args.tables]
    best = best_cells(tables)
    out = Path(args.out)
    if out.suffix == ".parquet":
        _atomic_parquet(best, out, {"tables": [str(p) for p in args.tables]})
    elif out.suffix == ".md":
        shown = best[best.best_in_corpus].drop(columns="best_in_corpus")
        text = shown.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else shown.to_string(index=False)
        atomic_write_text(out, text + "\n")
    else:
        _atomic_csv(best, out)
    if args.explanations_out:
        _atomic_csv(explain_cells(pd.concat([t for t in tables if len(t)], ignore_index=True)), args.explanations_out)
    winners = best[best.best_in_corpus]
    for row in winners[winners.confounded].itertuples():
        log.info(f"note: the best {row.feature} cell ({row.model} layer {row.layer} unit {row.unit}, strength "
                 f"{row.strength:.3f}) is better explained by {row.explained_by} ({row.explained_by_strength:.3f})")
    log.info(f"best cells of {best.model.nunique()} models, {best.feature.nunique()} features -> {out}; "
             f"{int(winners.confounded.sum())} of {len(winners)} features' best cells are better explained by "
             "another feature (column confounded)")
    return 0
def _has_tabulate():
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
