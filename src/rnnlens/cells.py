"""Interpretable-cell discovery: score every cell (LSTM c, GRU/RNN h; all layers) against every text feature.

Binary features get the ROC AUC of the cell's activation for telling the feature's positives from its negatives
(Mann-Whitney from average ranks, all cells at once); count features get the Spearman rank correlation. The
score is direction-free, max(AUC, 1 - AUC) or |rho|, and `sign` says which way the cell goes (+1: the cell is
higher where the feature is on / larger). Positions may be subsampled evenly to bound memory.

Per-model table (Parquet, ranked within each feature): model, corpus, layer (from 1), unit (from 0), feature,
kind (auc | spearman), value (AUC or rho), score, sign, rank, prevalence (share of positives; binary only),
positions. `best_cells` joins several such tables into the best cell per feature and model.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from scipy.stats import rankdata

from rnnlens.corpus import atomic_csv
from rnnlens.features import FEATURE_KINDS
from rnnlens.predictions import write_table

META_KEY = b"rnnlens"
SCORE_COLUMNS = ["layer", "unit", "feature", "kind", "value", "score", "sign", "rank", "prevalence", "positions"]


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
    values = np.asarray(values)
    n, cells = values.shape
    binary = [f for f in features.columns if FEATURE_KINDS.get(f) == "binary" and 0 < features[f].sum() < n]
    counts = [f for f in features.columns if FEATURE_KINDS.get(f) == "count" and features[f].nunique() > 1]
    y = features[binary].to_numpy(dtype=np.float64)
    n1 = y.sum(axis=0)
    n0 = n - n1
    count_ranks = _standardize(rankdata(features[counts].to_numpy(), axis=0)) if counts else np.zeros((n, 0))
    auc = np.empty((len(binary), cells))
    rho = np.empty((len(counts), cells))
    for lo in range(0, cells, block):
        ranks = rankdata(values[:, lo:lo + block], axis=0)  # average ranks: ties count half, as AUC requires
        if binary:
            auc[:, lo:lo + block] = (y.T @ ranks - (n1 * (n1 + 1) / 2)[:, None]) / (n1 * n0)[:, None]
        if counts:
            rho[:, lo:lo + block] = count_ranks.T @ _standardize(ranks)
    out = {f: ("auc", auc[j], float(n1[j] / n)) for j, f in enumerate(binary)}
    out.update({f: ("spearman", np.nan_to_num(rho[j]), np.nan) for j, f in enumerate(counts)})
    return {f: out[f] for f in features.columns if f in out}


def score_cells(values, features, layers, hidden):
    """The ranked per-cell table (without model/corpus columns) from sampled values (N, layers*hidden)."""
    if values.shape[1] != layers * hidden:
        raise ValueError(f"values have {values.shape[1]} columns, expected layers*hidden = {layers * hidden}")
    if len(features) != len(values):
        raise ValueError(f"{len(features)} feature rows for {len(values)} value rows")
    layer = np.repeat(np.arange(1, layers + 1), hidden)
    unit = np.tile(np.arange(hidden), layers)
    parts = []
    for feature, (kind, value, prevalence) in score_matrix(values, features.reset_index(drop=True)).items():
        centred = value - 0.5 if kind == "auc" else value
        score = np.abs(centred) + (0.5 if kind == "auc" else 0.0)
        order = np.argsort(-score, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(1, len(order) + 1)
        parts.append(pd.DataFrame({"layer": layer, "unit": unit, "feature": feature, "kind": kind, "value": value,
                                   "score": score, "sign": np.where(centred >= 0, 1, -1), "rank": rank,
                                   "prevalence": prevalence, "positions": len(values)}).iloc[order])
    if not parts:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    return pd.concat(parts, ignore_index=True)


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
    return pq.read_table(path).to_pandas()


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
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[META_KEY])
    layers, hidden = meta["layers"], meta["hidden"]
    values = np.stack([table.column(f"layer{k + 1}").combine_chunks().flatten().to_numpy().reshape(-1, hidden)
                       for k in range(layers)], axis=1) if len(table) else np.zeros((0, layers, hidden), np.float32)
    frame = table.select(["window", "pos", "byte"]).to_pandas()
    return frame, values, meta


def best_cells(tables):
    """Per-model score tables -> the best cell of every (corpus, feature, model), with `best_in_corpus` marking
    the model whose best cell scores highest for that feature on that corpus."""
    frame = pd.concat([t for t in tables if len(t)], ignore_index=True) if tables else pd.DataFrame()
    if frame.empty:
        raise ValueError("no cell scores given; run `rnnlens internals` for the models first")
    if "corpus" not in frame:
        frame["corpus"] = ""
    best = frame.loc[frame.groupby(["corpus", "feature", "model"], sort=False)["score"].idxmax()]
    top = best.groupby(["corpus", "feature"])["score"].transform("max")
    best = best.assign(best_in_corpus=best["score"] == top)
    feature_order = {f: i for i, f in enumerate(FEATURE_KINDS)}
    best = best.assign(_f=best.feature.map(feature_order)).sort_values(["corpus", "_f", "score"],
                                                                         ascending=[True, True, False])
    columns = ["corpus", "feature", "kind", "model", "layer", "unit", "score", "sign", "value", "prevalence",
               "best_in_corpus"]
    return best[columns].reset_index(drop=True)


def cli(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="rnnlens best-cells",
                                 description="Cross-model table of the best cell per feature from per-model cell tables.")
    ap.add_argument("--tables", nargs="+", required=True, help="cells.parquet files written by `rnnlens internals`")
    ap.add_argument("--out", required=True, help="output table (.csv, .parquet or .md)")
    args = ap.parse_args(argv)
    missing = [p for p in args.tables if not Path(p).is_file()]
    if missing:
        print(f"error: missing cell tables {missing}; run `rnnlens internals` for those models", file=sys.stderr)
        return 2
    try:
        best = best_cells([read_scores(p) for p in args.tables])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.suffix == ".parquet":
        _atomic_parquet(best, out, {"tables": [str(p) for p in args.tables]})
    elif out.suffix == ".md":
        shown = best[best.best_in_corpus].drop(columns="best_in_corpus")
        text = shown.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else shown.to_string(index=False)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".part")
        tmp.write_text(text + "\n")
        os.replace(tmp, out)
    else:
        _atomic_csv(best, out)
    print(f"best cells of {best.model.nunique()} models, {best.feature.nunique()} features -> {out}", flush=True)
    return 0


def _has_tabulate():
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(cli())
