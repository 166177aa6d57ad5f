"""The predictions Parquet contract shared by every model family (see DESIGN.md).

One row per test position, sorted by `pos`: pos int32, target uint8, p float32,
argmax uint8 (nullable), p_argmax float32 (nullable). File metadata under the key b"rnnlens"
(JSON): model id, corpus, parameter count, test loss in nats/char, and anything stage-specific.
"""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from rnnlens.io import META_KEY, parquet_schema, read_parquet, write_table

SCHEMA = pa.schema(
    [
        ("pos", pa.int32()),
        ("target", pa.uint8()),
        ("p", pa.float32()),
        ("argmax", pa.uint8()),
        ("p_argmax", pa.float32()),
    ]
)


def model_id_of(meta, path):
    """The model id of a predictions file: from its metadata, else the file name."""
    for key in ("model", "model_id", "id", "name"):
        if meta.get(key):
            return str(meta[key])
    return Path(path).stem


def mean_nats(p):
    p = np.asarray(p, dtype=np.float64)
    return float(-np.log(np.clip(p, 1e-30, None)).mean())


def write_predictions(path, target, p, argmax=None, p_argmax=None, meta=None):
    """Write one model's test predictions; pos is 0..len-1 by construction (every position once).
    `test_loss` (nats/char) is computed here and added to the metadata."""
    target = np.asarray(target, dtype=np.uint8)
    n = len(target)
    p = np.asarray(p, dtype=np.float32)
    if p.shape != (n,):
        raise ValueError(f"p has shape {p.shape}, expected ({n},)")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p > 1.000001):
        raise ValueError("probabilities must be finite and in [0, 1]")
    columns = {
        "pos": pa.array(np.arange(n, dtype=np.int32)),
        "target": pa.array(target),
        "p": pa.array(p),
        "argmax": pa.nulls(n, pa.uint8()) if argmax is None else pa.array(np.asarray(argmax, dtype=np.uint8)),
        "p_argmax": pa.nulls(n, pa.float32())
        if p_argmax is None
        else pa.array(np.asarray(p_argmax, dtype=np.float32)),
    }
    meta = dict(meta or {})
    meta["test_loss"] = mean_nats(p)
    meta["n_positions"] = n
    write_table(pa.table(columns, schema=SCHEMA), path, meta)
    return meta


def read_meta(path):
    return json.loads(parquet_schema(path).metadata[META_KEY])


def read_predictions(path, columns=None):
    """-> (pandas DataFrame, metadata dict)."""
    table = read_parquet(path, columns=columns)
    meta = read_meta(path)
    return table.to_pandas(), meta
