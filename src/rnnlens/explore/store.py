"""The explorer's store of one model: everything the browser shows, precomputed over the whole test split.

A store is a directory results/{corpus}/explore/{model}/ of plain files:
  acts.npy       uint8 (tracks, positions), memory-mapped: every unit of every layer and every kind (LSTM: tanh(c),
                 raw c, h, i, f, o, g; GRU: h, r, z, n; RNN: h), one contiguous row per unit, so that one unit's
                 whole test split (a text-view track, a histogram, top contexts) is one sequential read, and a
                 search over a few units reads a few rows. Row of (kind, layer, unit) = (kind_index*layers +
                 layer-1)*hidden + unit. Values are quantised to 256 levels over the row's range: the kind's ([0, 1]
                 for sigmoid gates, [-1, 1] for tanh(c), h and the candidates: at most 1/510 or 1/255 from the exact
                 value, placed so that the saturation thresholds 0.1 and 0.9 fall exactly between levels), except
                 raw c, which each unit has over its own min..max. Raw c is there because tanh(c) saturates: a cell
                 whose c stays below -4 is -1.00 at nearly every position, one flat colour, while its c still moves
                 with the text; the explorer colours such a unit on its own scale from the raw row.
  stats.npz      per row: `ranges` (the value range its 256 levels span) and `hist` (how many positions sit at
                 each level), so percentiles, means, histograms and own scales never re-read the rows
  positions.npy  a structured array, one row per test position: the model's top-5 predictions for the byte at that
                 position and their probabilities (from the model's full distributions, computed here), p of the
                 true byte (from the predictions Parquet when given), the reference n-gram's p, and the oracle step
                 that explains an error (-1: not an error, -2: oracles not run)
  features.npy   uint8 (features, positions): the text features the cells stage scores against (rnnlens.features;
                 counts clipped at 255), shown as annotation strips
  text.bin       the test split's bytes
  scores.parquet the cells stage's feature scores of this model (when given), for ranking units
  store.json     metadata (written last: a store without it is incomplete); `format` says which layout it has, and
                 a store of another format is refused with the command that rebuilds it
Quantisation, not compression: a 3-layer 512 LSTM on War and Peace's 325,825 test characters is 10,752 tracks x
325,825 bytes = 3.5 GB on disk, and the browser only ever receives one unit's uint8 track (325 KB) at a time.
"""

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rnnlens.errors import InputError, RnnlensError
from rnnlens.io import atomic_path, atomic_write_bytes, write_json, write_parquet

log = logging.getLogger(__name__)

FORMAT = 2  # 2: raw c per unit, stats.npz, features.npy
KINDS = {"lstm": ("c", "c_raw", "h", "i", "f", "o", "g"), "gru": ("h", "r", "z", "n"), "rnn": ("h",)}
KIND_LABELS = {"c": "tanh(c) cell", "c_raw": "c raw cell state (each unit's own min..max)", "h": "h hidden",
               "i": "i input gate", "f": "f forget gate", "o": "o output gate", "g": "g candidate",
               "r": "r reset gate (PyTorch)",
               "z": "z update gate, the paper's (1 - PyTorch's z: weight of the candidate)", "n": "n candidate"}
# what a value of each kind is called in a scale's note
QUANTITY = {"c": "tanh(c)", "c_raw": "c"}
GATES = {"i", "f", "o", "r", "z"}  # sigmoid: [0, 1]; every other fixed kind is a tanh: [-1, 1]
OWN_RANGE = {"c_raw"}  # quantised over each unit's own min..max
# As the cell pictures (rnnlens.cellviz): a unit whose 5th..95th percentiles span less than a quarter of its kind's
# range is too flat to read on it and is coloured on its own scale, its 2nd..98th percentiles at the two ends
# (in mode auto, not for gates).
FLAT_SPREAD = 0.25
OWN_PERCENTILES = (2, 98)  # display_scale's note names them
TOP_K = 5
NOT_ANALYSED, NOT_ERROR = -2, -1
POSITION_DTYPE = np.dtype([("top_byte", np.uint8, (TOP_K,)), ("top_p", np.float32, (TOP_K,)), ("p", np.float32),
                           ("p_ngram", np.float32), ("oracle", np.int8)])
GOLDEN = 0.6180339887498949
SCORE_COLUMNS = ["layer", "unit", "feature", "kind", "value", "score", "sign", "rank", "prevalence", "strength",
                 "partial"]


class StoreError(RnnlensError):
    """An explorer store that is missing or does not fit its inputs."""


def kind_range(kind):
    return (0.0, 1.0) if kind in GATES else (-1.0, 1.0)


def quantity(kind):
    return QUANTITY.get(kind, kind)


def quantise(values, kind):
    """Float activations (any shape, torch) -> uint8 levels over the kind's range (tanh applied to c)."""
    if kind == "c":
        values = torch.tanh(values)
    lo, hi = kind_range(kind)
    scale = 255.0 / (hi - lo)
    return ((values.float() - lo) * scale + 0.5).floor_().clamp_(0, 255).to(torch.uint8)


def quantise_own(values):
    """Float rows (rows, n) -> (uint8 levels over each row's own min..max, ranges (rows, 2))."""
    values = np.asarray(values, dtype=np.float64)
    lo, hi = values.min(axis=1), values.max(axis=1)
    scale = 255.0 / np.where(hi > lo, hi - lo, 1.0)
    levels = np.floor((values - lo[:, None]) * scale[:, None] + 0.5).clip(0, 255).astype(np.uint8)
    return levels, np.stack([lo, hi], axis=1)


def decode(levels, kind):
    lo, hi = kind_range(kind)
    return lo + np.asarray(levels, dtype=np.float32) * ((hi - lo) / 255.0)


def decode_range(levels, lo, hi):
    """Levels of a row whose 256 levels span [lo, hi] -> values (float64)."""
    return lo + np.asarray(levels, dtype=np.float64) * ((hi - lo) / 255.0)


def level_threshold(threshold, kind):
    """The level t with decode(q) > threshold  <=>  q > t, for integer levels q."""
    lo, hi = kind_range(kind)
    return int(np.clip(np.floor((threshold - lo) * 255.0 / (hi - lo)), -1, 255))


def level_thresholds(threshold, ranges):
    """Per row of ranges (rows, 2): the level t with value > threshold <=> level > t."""
    lo, hi = ranges[:, 0], ranges[:, 1]
    width = np.where(hi > lo, hi - lo, 1.0)
    t = np.floor((threshold - lo) * 255.0 / width)
    t = np.where(hi > lo, t, np.where(threshold < lo, -1, 255))
    return np.clip(t, -1, 255).astype(np.int16)


def spread_order(levels, highest=True):
    """Positions ordered from the most extreme level to the least; positions that tie on a level come spread over
    the text (a golden-ratio sequence over the tie's positions), so that a unit at its maximum on 1,000 positions
    does not show its first ten."""
    key = -levels.astype(np.int16) if highest else levels.astype(np.int16)
    order = np.argsort(key, kind="stable")
    ranked = key[order]
    group_start = np.flatnonzero(np.concatenate([[True], ranked[1:] != ranked[:-1]]))
    rank_in_group = np.arange(len(order)) - np.repeat(group_start, np.diff(np.append(group_start, len(order))))
    spread = (rank_in_group * GOLDEN) % 1.0
    return order[np.lexsort((spread, ranked))]


class Store:
    """A store opened read-only; acts and positions are memory-mapped (opening costs nothing)."""

    def __init__(self, directory):
        self.dir = Path(directory)
        meta_path = self.dir / "store.json"
        if not meta_path.is_file():
            raise StoreError(f"{self.dir} holds no finished explorer store (no store.json); build it with "
                             f"`snakemake --cores 2 {meta_path}`")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise StoreError(f"{self.dir} is an explorer store of format {self.meta.get('format')}, this rnnlens "
                             f"reads format {FORMAT} (it adds each unit's raw c and level counts); rebuild it with "
                             f"`snakemake --cores 2 --forcerun explore_store -- {meta_path}`")
        self.acts = np.load(self.dir / "acts.npy", mmap_mode="r")
        self.positions = np.load(self.dir / "positions.npy", mmap_mode="r")
        self.text = np.fromfile(self.dir / "text.bin", dtype=np.uint8)
        with np.load(self.dir / "stats.npz") as stats:
            self.ranges, self.hist = stats["ranges"], stats["hist"]
        self.cum = np.cumsum(self.hist, axis=1)
        self.layers, self.hidden, self.kinds = self.meta["layers"], self.meta["hidden"], self.meta["kinds"]
        self.n = self.meta["positions"]
        feature_path = self.dir / "features.npy"
        self.features = np.load(feature_path, mmap_mode="r") if feature_path.is_file() else None
        self.feature_info = {f["name"]: dict(f, row=i) for i, f in enumerate(self.meta.get("text_features", []))}
        scores = self.dir / "scores.parquet"
        self.scores = with_strength(pd.read_parquet(scores)) if scores.is_file() else None
        self.explained = None
        if self.scores is not None and len(self.scores):
            from rnnlens.cells import explain_cells

            self.explained = explain_cells(self.scores).set_index(["layer", "unit"])

    @property
    def model(self):
        return self.meta["model"]

    def row(self, kind, layer, unit):
        if kind not in self.kinds:
            raise StoreError(f"{self.model} has no {kind!r} activations; it has {', '.join(self.kinds)}")
        if not (1 <= layer <= self.layers and 0 <= unit < self.hidden):
            raise StoreError(f"unit {layer}:{unit} is outside {self.model} ({self.layers} layers of {self.hidden} "
                             "units; layers count from 1, units from 0)")
        return (self.kinds.index(kind) * self.layers + layer - 1) * self.hidden + unit

    def kind_rows(self, kind):
        first = self.row(kind, 1, 0)
        return slice(first, first + self.layers * self.hidden)

    def kind_block(self, kind):
        """Every unit of every layer of one kind: (layers*hidden, positions), row = (layer-1)*hidden + unit."""
        return self.acts[self.kind_rows(kind)]

    def track(self, kind, layer, unit):
        return np.asarray(self.acts[self.row(kind, layer, unit)])

    def decode_row(self, row, levels):
        lo, hi = self.ranges[row]
        return decode_range(levels, lo, hi)

    def values(self, kind, layer, unit):
        row = self.row(kind, layer, unit)
        return self.decode_row(row, self.acts[row])

    def percentile_levels(self, rows, q):
        """Per row, the level at the q-th percentile of its positions (from the level counts)."""
        cum = self.cum[rows]
        target = np.maximum(1, np.ceil(q / 100 * self.n - 1e-9))
        return (cum < target).sum(axis=-1).astype(np.int16)

    def extreme_levels(self, rows):
        """Per row: (lowest, highest) level that any position has."""
        filled = self.hist[rows] > 0
        return filled.argmax(axis=-1).astype(np.int16), (255 - filled[..., ::-1].argmax(axis=-1)).astype(np.int16)

    def own_levels(self, rows):
        """Per row, its own scale in levels: the 2nd and 98th percentiles, or min and max where those coincide."""
        a, b = (self.percentile_levels(rows, q) for q in OWN_PERCENTILES)
        lo, hi = self.extreme_levels(rows)
        narrow = b <= a
        return np.where(narrow, lo, a), np.where(narrow, hi, b)

    def mean(self, row):
        return float(self.decode_row(row, np.arange(256)) @ self.hist[row] / self.n)

    def display_scale(self, kind, layer, unit, mode="auto"):
        """How a unit is coloured: on its kind's range, or on its own (mode auto: where it is flat on its kind's).
        -> dict: source (the kind whose row is coloured: raw c for an LSTM cell on its own scale), lo_level and
        hi_level (the source's levels at the palette's two ends), lo and hi (their values), own, flat, note."""
        if mode not in ("auto", "kind", "own"):
            raise StoreError(f"scale {mode!r}: use auto, kind or own")
        row = self.row(kind, layer, unit)
        p5, p95 = int(self.percentile_levels(row, 5)), int(self.percentile_levels(row, 95))
        lo, hi = (float(v) for v in self.ranges[row])
        v5, v95 = self.decode_row(row, p5), self.decode_row(row, p95)
        # a gate's saturation is what its colour should show; a flat cell state, h or candidate hides its signal
        flat = kind not in OWN_RANGE and kind not in GATES and (p95 - p5) / 255 < FLAT_SPREAD
        name = quantity(kind)
        spread = f"{name} spans only {v5:+.2f} to {v95:+.2f} between its 5th and 95th percentiles"
        own = mode == "own" or (mode == "auto" and flat)
        if not own:
            what = "its own min..max" if kind in OWN_RANGE else "the kind's range"
            return {"source": kind, "own": False, "flat": bool(flat), "lo_level": 0, "hi_level": 255, "lo": lo,
                    "hi": hi, "note": f"{name} on {what}: {lo:+.3g} to {hi:+.3g}" + (f" ({spread})" if flat else "")}
        source = "c_raw" if kind == "c" and "c_raw" in self.kinds else kind
        srow = self.row(source, layer, unit)
        a, b = (int(v) for v in self.own_levels(srow))
        percentiles = tuple(int(self.percentile_levels(srow, q)) for q in OWN_PERCENTILES)
        which = "its 2nd..98th percentiles" if (a, b) == percentiles else "its min..max"
        if b <= a:  # one level everywhere: nothing to stretch
            b, which = a + 1, "constant"
        va, vb = self.decode_row(srow, a), self.decode_row(srow, b)
        note = f"own scale: {quantity(source)} {va:+.3g} to {vb:+.3g} ({which})"
        if flat:
            note += f"; {spread}"
        return {"source": source, "own": True, "flat": bool(flat), "lo_level": a, "hi_level": b, "lo": float(va),
                "hi": float(vb), "note": note}

    def level_counts(self, kind, layer, unit):
        """-> (counts per level (256), (lo, hi) values the levels span)."""
        row = self.row(kind, layer, unit)
        return self.hist[row], tuple(float(v) for v in self.ranges[row])

    def contexts(self, kind, layer, unit, count=10, width=40, highest=True):
        """The `count` most extreme positions (highest or lowest), no two within `width` of each other, ties
        spread over the text; -> (positions, how many positions share the most extreme level). For tanh(c), the
        raw c row orders them (tanh(c) ties at +-1 where c does not)."""
        source = "c_raw" if kind == "c" and "c_raw" in self.kinds else kind
        levels = self.track(source, layer, unit)
        extreme = levels.max() if highest else levels.min()
        ties = int((levels == extreme).sum())
        blocked = np.zeros(self.n + 2 * width + 1, dtype=bool)
        picked = []
        for pos in spread_order(levels, highest):
            if not blocked[pos + width]:
                picked.append(int(pos))
                blocked[pos:pos + 2 * width + 1] = True
                if len(picked) == count:
                    break
        return picked, ties

    def saturation(self, layer, unit, left=0.1, right=0.9):
        """Per gate kind of this unit: (fraction < left, fraction > right) over the test split. Exact from the
        quantised levels, because the levels are placed so that 0.1 and 0.9 fall between two of them."""
        out = {}
        for kind in self.kinds:
            if kind in GATES:
                row = self.row(kind, layer, unit)
                values = self.decode_row(row, np.arange(256))
                counts = self.hist[row]
                out[kind] = (float(counts[values < left].sum() / self.n), float(counts[values > right].sum() / self.n))
        return out

    def explanation(self, layer, unit):
        """The unit's best feature on the common scale (strength), its partial and margin over the runner-up."""
        if self.explained is None or (layer, unit) not in self.explained.index:
            return None
        e = self.explained.loc[(layer, unit)]
        return {"feature": e.best_feature, "strength": _num(e.best_strength), "partial": _num(e.best_partial),
                "runner_up": None if pd.isna(e.runner_up) else e.runner_up, "margin": _num(e.margin)}

    def feature_track(self, name):
        if name not in self.feature_info:
            known = ", ".join(self.feature_info) or "none (rebuild the store)"
            raise StoreError(f"{self.model}'s store has no text feature {name!r}; it has {known}")
        return np.asarray(self.features[self.feature_info[name]["row"]])


def _num(value):
    return None if value is None or pd.isna(value) else round(float(value), 4)


def with_strength(scores):
    """The cells stage's scores with `strength` and `partial` (older tables have neither: strength is derived,
    partial unknown)."""
    from rnnlens.cells import strength_of

    if "strength" not in scores:
        scores = scores.assign(strength=strength_of(scores["kind"].to_numpy(), scores["value"].to_numpy()))
    if "partial" not in scores:
        scores = scores.assign(partial=np.nan)
    return scores


def _store_files(out_dir):
    return {name: out_dir / name for name in ("acts.npy", "stats.npz", "positions.npy", "features.npy", "text.bin",
                                              "scores.parquet", "store.json")}


def feature_strips(frame):
    """Text features (rnnlens.features) -> (uint8 (features, n): 0/1, or counts clipped at 255; descriptions)."""
    from rnnlens.features import FEATURE_KINDS

    names = [name for name in FEATURE_KINDS if name in frame]
    strips = np.zeros((len(names), len(frame)), dtype=np.uint8)
    info = []
    for i, name in enumerate(names):
        values = frame[name].to_numpy()
        strips[i] = np.clip(values, 0, 255)
        info.append({"name": name, "kind": FEATURE_KINDS[name], "max": int(values.max()) if len(values) else 0})
    return strips, info


def write_store(out_dir, meta, text, fill_acts, positions, scores=None, features=None, started=None):
    """Write a store: `fill_acts(acts)` fills the (tracks, n) uint8 memmap it is given, and returns {kind: ranges
    (units, 2)} for the kinds it quantised over each unit's own range (or None: every row on its kind's range).
    `features`: the text features (a DataFrame of rnnlens.features). Every file is written under a temporary name
    and renamed; store.json comes last, so an interrupted build leaves no finished store."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = _store_files(out_dir)
    files["store.json"].unlink(missing_ok=True)
    n = len(text)
    units = meta["layers"] * meta["hidden"]
    tracks = len(meta["kinds"]) * units
    ranges = np.array([kind_range(kind) for kind in meta["kinds"] for _ in range(units)], dtype=np.float64)
    with atomic_path(files["acts.npy"]) as part:
        acts = np.lib.format.open_memmap(part, mode="w+", dtype=np.uint8, shape=(tracks, n))
        own = fill_acts(acts) or {}
        for kind, kind_ranges in own.items():
            first = meta["kinds"].index(kind) * units
            ranges[first:first + units] = kind_ranges
        acts.flush()
        hist = np.stack([np.bincount(acts[r], minlength=256) for r in range(tracks)]) if tracks else \
            np.zeros((0, 256), dtype=np.int64)
        del acts
    with atomic_path(files["stats.npz"]) as part:
        np.savez(part, ranges=ranges, hist=hist.astype(np.int64))
    with atomic_path(files["positions.npy"]) as part:  # ends in .npy, so np.save appends nothing
        np.save(part, positions, allow_pickle=False)
    if features is not None:
        strips, meta["text_features"] = feature_strips(features)
        meta["comment_style"] = features.attrs.get("comment_style")
        with atomic_path(files["features.npy"]) as part:
            np.save(part, strips, allow_pickle=False)
    else:
        meta["text_features"] = []
        files["features.npy"].unlink(missing_ok=True)
    atomic_write_bytes(files["text.bin"], np.asarray(text, dtype=np.uint8).tobytes())
    if scores is not None:
        write_parquet(scores, files["scores.parquet"])
    else:
        files["scores.parquet"].unlink(missing_ok=True)
    sizes = {name: path.stat().st_size for name, path in files.items() if name != "store.json" and path.is_file()}
    meta = {**meta, "format": FORMAT, "positions": n, "bytes": sizes, "total_bytes": sum(sizes.values())}
    if started is not None:
        meta["build_seconds"] = round(time.perf_counter() - started, 2)
    write_json(files["store.json"], meta, indent=1)
    return meta


def base_meta(model_id, corpus_name, arch, layers, hidden, kinds=None):
    """kinds: {name: rnnlens.archs.Kind} of an architecture beyond the paper's family (its runner's); the paper's
    rnn, lstm and gru keep KINDS (with raw c)."""
    if kinds is None:
        names, labels = list(KINDS[arch]), {k: KIND_LABELS[k] for k in KINDS[arch]}
        ranges = {k: list(kind_range(k)) for k in names if k not in OWN_RANGE}
        cell_state = "c" if "c" in names else "h"
    else:
        names = list(kinds)
        labels = {k: f"{k} {kind.label}".strip() if kind.label != k else k for k, kind in kinds.items()}
        ranges = {k: [kind.low, kind.high] for k, kind in kinds.items() if kind.low is not None}
        cell_state = next((k for k, kind in kinds.items() if not kind.gate), names[0])
    return {"model": model_id, "corpus": corpus_name, "arch": arch, "layers": layers, "hidden": hidden,
            "kinds": names, "kind_labels": labels, "ranges": ranges, "cell_state": cell_state, "oracle_steps": None,
            "ngram": None, "error_threshold": 0.5}


def runner_kinds(model):
    """The runner of a model beyond the paper's family, and its kinds; (None, None) for rnn, lstm and gru."""
    if model.spec.arch in KINDS:
        return None, None
    from rnnlens.internals import runner_for

    runner = runner_for(model)
    return runner, runner.kinds


def empty_positions(n):
    positions = np.zeros(n, dtype=POSITION_DTYPE)
    positions["p_ngram"] = np.nan
    positions["oracle"] = NOT_ANALYSED
    return positions


def _put(target, rows, pos, block):
    """block (time, units) of one stream at split positions pos -> target[rows, pos]."""
    if pos[-1] - pos[0] + 1 == len(pos):  # a stream's chunk is one contiguous run of the split: a slice
        target[rows, pos[0]:pos[-1] + 1] = block.T
    else:
        target[rows, pos] = block.T


def _fill_from_model(model, corpus, streams, warmup, chunk, scratch):
    """A fill_acts that streams the exact internals (rnnlens.internals) into the memmap, chunk by chunk. Raw c goes
    to a float32 scratch file first (a unit's own range is known only at the end), then into its rows."""
    from rnnlens.internals import runner_for, stream_test_internals

    spec = model.spec
    runner, arch_kinds = runner_kinds(model)
    if runner is not None:
        return _fill_generic(model, runner, corpus, streams, warmup, chunk, scratch)
    kinds = KINDS[spec.arch]
    H, units = spec.hidden, spec.layers * spec.hidden
    n = corpus.split_size("test")

    def fill(acts):
        runner = runner_for(model)
        raw_path, raw = Path(scratch) / ".c_raw.scratch.npy", None
        raw = (np.lib.format.open_memmap(raw_path, mode="w+", dtype=np.float32, shape=(units, n))
               if "c_raw" in kinds else None)
        try:
            for chunk_acts in stream_test_internals(model, corpus, streams, warmup, chunk, runner=runner):
                pos = chunk_acts.pos
                for layer, layer_acts in enumerate(chunk_acts.acts):
                    for k, kind in enumerate(kinds):
                        if kind == "c_raw":
                            values = layer_acts["c"].float().cpu().numpy()
                            target, first = raw, layer * H
                        else:
                            # the GRU's z as the paper defines it (weight of the candidate): 1 - PyTorch's z
                            tensor = 1 - layer_acts[kind] if kind == "z" else layer_acts[kind]
                            values = quantise(tensor, kind).cpu().numpy()  # (streams, time, hidden)
                            target, first = acts, (k * spec.layers + layer) * H
                        for b in range(pos.shape[0]):
                            keep = pos[b] >= 0
                            if keep.any():
                                _put(target, slice(first, first + H), pos[b][keep], values[b][keep])
            if raw is None:
                return None
            first = kinds.index("c_raw") * units
            ranges = np.zeros((units, 2))
            for a in range(0, units, 64):  # 64 rows at a time bounds the float64 temporary
                b = min(a + 64, units)
                acts[first + a:first + b], ranges[a:b] = quantise_own(raw[a:b])
            return {"c_raw": ranges}
        finally:
            del raw
            raw_path.unlink(missing_ok=True)
    return fill


def _fill_generic(model, runner, corpus, streams, warmup, chunk, scratch):
    """fill_acts for any architecture's runner: a kind with a range is quantised over it (a gate the paper defines
    flipped as 1 - it), an unbounded one over each unit's own min..max (through a float32 scratch file)."""
    from rnnlens.internals import stream_test_internals

    layers, H, n = model.spec.layers, runner.units, corpus.split_size("test")
    kinds = list(runner.kinds)
    unbounded = [k for k in kinds if runner.kinds[k].low is None or runner.kinds[k].high is None]

    def fill(acts):
        raw_path = Path(scratch) / ".raw.scratch.npy"
        raw = (np.lib.format.open_memmap(raw_path, mode="w+", dtype=np.float32, shape=(len(unbounded) * layers * H, n))
               if unbounded else None)
        try:
            for chunk_acts in stream_test_internals(model, corpus, streams, warmup, chunk, runner=runner):
                pos = chunk_acts.pos
                for layer, layer_acts in enumerate(chunk_acts.acts):
                    for k, name in enumerate(kinds):
                        kind = runner.kinds[name]
                        if name in unbounded:
                            values = layer_acts[name].float().cpu().numpy()
                            target, first = raw, (unbounded.index(name) * layers + layer) * H
                        else:
                            tensor = layer_acts[name].float()
                            tensor = kind.low + kind.high - tensor if kind.flip else tensor
                            scaled = (tensor - kind.low) * (255.0 / (kind.high - kind.low)) + 0.5
                            values = scaled.floor_().clamp_(0, 255).to(torch.uint8).cpu().numpy()
                            target, first = acts, (k * layers + layer) * H
                        for b in range(pos.shape[0]):
                            keep = pos[b] >= 0
                            if keep.any():
                                _put(target, slice(first, first + H), pos[b][keep], values[b][keep])
            ranges = {name: np.tile([runner.kinds[name].low, runner.kinds[name].high], (layers * H, 1))
                      for name in kinds if name not in unbounded}
            for u, name in enumerate(unbounded):
                first, own = kinds.index(name) * layers * H, np.zeros((layers * H, 2))
                for a in range(0, layers * H, 64):
                    b = min(a + 64, layers * H)
                    acts[first + a:first + b], own[a:b] = quantise_own(raw[u * layers * H + a:u * layers * H + b])
                ranges[name] = own
            return ranges
        finally:
            del raw
            raw_path.unlink(missing_ok=True)
    return fill


def model_predictions(model, corpus, streams, warmup):
    """Top-5 next bytes and probabilities, and p of the true byte, from the model's full distributions (the same
    streaming as the evaluation stage, so the numbers match its predictions Parquet)."""
    from rnnlens.evaluate import predict_test

    device = next(model.parameters()).device
    result = predict_test(model, corpus, streams=streams, warmup=warmup, device=device, keep_probs=True)
    probs = torch.from_numpy(result.pop("probs"))
    top_p, top_i = probs.topk(min(TOP_K, probs.shape[1]), dim=1)
    top_byte = np.zeros((len(probs), TOP_K), dtype=np.uint8)
    top_prob = np.zeros((len(probs), TOP_K), dtype=np.float32)
    top_byte[:, :top_i.shape[1]] = corpus.vocab[top_i.numpy()]
    top_prob[:, :top_p.shape[1]] = top_p.numpy()
    return top_byte, top_prob, result["p"]


def _read_p(path, n, what):
    from rnnlens.predictions import read_predictions

    frame, meta = read_predictions(path, columns=["pos", "p"])
    if len(frame) != n:
        raise StoreError(f"{path} has {len(frame)} rows but the test split has {n} positions; {what} was made for "
                         "another corpus or split; regenerate it or pass the matching --data")
    return frame["p"].to_numpy(np.float32), meta


def build_store(model, corpus, out_dir, model_id, predictions=None, ngram=None, oracle_ngrams=(), oracle_settings=None,
                cells=None, eval_streams=100, eval_warmup=2000, streams=50, warmup=1000, chunk=100,
                comment_style="auto"):
    """Build the store of one model over the corpus's test split; returns its metadata (with sizes and time)."""
    t0 = time.perf_counter()
    spec = model.spec
    text = np.asarray(corpus.split("test"), dtype=np.uint8)
    n = len(text)
    runner, arch_kinds = runner_kinds(model)
    meta = base_meta(model_id, corpus.name, spec.arch, spec.layers, runner.units if runner else spec.hidden, arch_kinds)
    meta["vocab"] = corpus.vocab.tolist()
    meta["evaluation"] = {"streams": eval_streams, "warmup": eval_warmup}
    meta["internals"] = {"streams": streams, "warmup": warmup, "chunk": chunk}
    positions = empty_positions(n)
    log.info(f"{model_id}: top-{TOP_K} predictions over {n:,} test positions")
    top_byte, top_p, p = model_predictions(model, corpus, eval_streams, eval_warmup)
    positions["top_byte"], positions["top_p"], positions["p"] = top_byte, top_p, p
    if predictions:
        positions["p"], pred_meta = _read_p(predictions, n, "the predictions Parquet")
        meta["test_loss"] = pred_meta.get("test_loss")
    else:
        meta["test_loss"] = float(-np.log(np.clip(p.astype(np.float64), 1e-30, None)).mean())
    if ngram:
        positions["p_ngram"], ngram_meta = _read_p(ngram, n, "the n-gram predictions Parquet")
        meta["ngram"] = ngram_meta.get("model") or Path(ngram).stem
    if oracle_settings is not None:
        meta["oracle_steps"], meta["error_threshold"] = _oracle_labels(corpus, positions, oracle_ngrams,
                                                                       oracle_settings)
    scores = None
    if cells:
        scores = pd.read_parquet(cells)
        scores = with_strength(scores[[c for c in SCORE_COLUMNS if c in scores]])
    from rnnlens.features import split_features

    features = split_features(corpus, "test", style=comment_style)
    log.info(f"{model_id}: quantising every activation of {spec.layers} x {spec.hidden} {spec.arch} units "
             f"({len(meta['kinds'])} kinds) into {out_dir}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    fill = _fill_from_model(model, corpus, streams, warmup, chunk, scratch=out_dir)
    meta = write_store(out_dir, meta, text, fill, positions, scores, features=features, started=t0)
    log.info(f"{model_id}: store of {meta['total_bytes'] / 2**20:,.1f} MiB "
             f"({meta['bytes']['acts.npy'] / 2**20:,.1f} MiB activations) in {meta['build_seconds']:.1f} s "
             f"-> {out_dir}")
    return meta


def _oracle_labels(corpus, positions, oracle_ngrams, settings):
    """Per position, the oracle step that explains the model's error (rnnlens.oracles, the paper's peeling)."""
    from rnnlens.oracles import OracleConfig, TextFacts, analyse, load_ngrams

    config = OracleConfig.from_mapping(settings)
    facts = TextFacts.from_corpus(corpus)
    ngram_ps = load_ngrams(list(oracle_ngrams), facts)
    _, labels, steps = analyse(facts, positions["p"].astype(np.float64), ngram_ps, config)
    positions["oracle"] = labels.astype(np.int8)
    names = [f"{category}: {sub}" for category, sub, _, _ in steps] + ["rest"]
    return names, config.error_threshold


def add_explore_store_arguments(parser):
    parser.add_argument("--model", required=True, help="model.pt written by training")
    parser.add_argument("--data", required=True, help="prepared corpus data.json")
    parser.add_argument("--out-dir", required=True, help="the store's directory")
    parser.add_argument("--model-id", default=None)
    parser.add_argument("--predictions", help="the model's predictions Parquet (its p is shown beside the n-gram's)")
    parser.add_argument("--ngram", help="the reference n-gram's predictions Parquet (e.g. ngram-20.parquet)")
    parser.add_argument("--oracle-ngrams", nargs="*", default=[], help="n-gram predictions for the n-gram oracle")
    parser.add_argument("--oracle-settings", help="JSON of the oracle settings (analysis.oracles); given: label errors")
    parser.add_argument("--cells", help="the cells stage's cells.parquet of this model (ranks units by feature)")
    parser.add_argument("--eval-streams", type=int, default=100, help="as evaluation.streams (so p matches the Parquet)")
    parser.add_argument("--eval-warmup", type=int, default=2000, help="as evaluation.warmup")
    parser.add_argument("--streams", type=int, default=50, help="internals streams")
    parser.add_argument("--warmup", type=int, default=1000, help="internals warm-up characters")
    parser.add_argument("--chunk", type=int, default=100, help="internals time steps per chunk (memory)")
    parser.add_argument("--comment-style", default="auto", help="text features' comment style, as the internals "
                        "stage's (auto, c, hash, none)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu, cuda, cuda:N")


def run_explore_store(args):

    from rnnlens.corpus import PreparedCorpus
    from rnnlens.internals import model_id_for
    from rnnlens.model import load_model, pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    given = [("--model", args.model), ("--data", args.data), ("--predictions", args.predictions),
             ("--ngram", args.ngram), ("--cells", args.cells)] + [("--oracle-ngrams", p) for p in args.oracle_ngrams]
    for flag, path in given:
        if path and not Path(path).is_file():
            raise InputError(f"{flag} {path} does not exist; run the stage that makes it first")
    device = pick_device(args.device)
    model, extra = load_model(args.model)
    model = model.to(device)  # predictions and internals run where the weights are
    log.info(f"store on {device}")
    corpus = PreparedCorpus.load(args.data)
    if model.spec.vocab_size != corpus.vocab_size:
        raise InputError(f"model {args.model} has a vocabulary of {model.spec.vocab_size}, corpus "
                         f"{args.data} of {corpus.vocab_size}; give the data.json the model was trained on")
    build_store(model, corpus, args.out_dir, model_id_for(args.model, extra, args.model_id),
                predictions=args.predictions, ngram=args.ngram, oracle_ngrams=args.oracle_ngrams,
                oracle_settings=json.loads(args.oracle_settings) if args.oracle_settings else None,
                cells=args.cells, eval_streams=args.eval_streams, eval_warmup=args.eval_warmup,
                streams=args.streams, warmup=args.warmup, chunk=args.chunk, comment_style=args.comment_style)
    return 0
