"""Exact per-character internals of a trained model, for any architecture: its runner (rnnlens.archs protocol)
yields named per-layer activations; this module streams them over the test split and turns them into tables.

Streaming: `stream_test_internals` cuts the test split into contiguous streams (as evaluation does), warms each
stream up on the characters before it, and yields the activations chunk by chunk with carried state, so statistics
are accumulated without ever holding a whole split's activations. A runner for a model without state streams
itself (runner.stream: the transformer's windows).

Command line (`rnnlens internals`): one streaming pass that writes the numbers of one model: the gate saturation
table, the cell score table and activation excerpts. The pictures are drawn from them by `rnnlens cell-pictures`
and `rnnlens saturation-figure`, so that a figure edit recomputes nothing.
"""

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rnnlens import archs
from rnnlens.cells import parse_cells  # noqa: F401 - the command's --cells, also imported from here
from rnnlens.errors import InputError
from rnnlens.features import split_features

log = logging.getLogger(__name__)


def runner_for(model, method="auto"):
    """The internals runner of the model's architecture (rnnlens.archs protocol)."""
    return archs.load(model.spec.arch).internals_runner(model, method)


@dataclass
class Chunk:
    """Activations of one slice of time across all streams. pos (streams, time): offset in the test split,
    -1 where a stream ran past the end of the split (padding: ignore those entries)."""

    pos: np.ndarray
    acts: list

    @property
    def valid(self):
        return self.pos >= 0


def stream_test_internals(model, corpus, streams=50, warmup=1000, chunk=100, split="test", runner=None):
    """Yield Chunk after Chunk covering every position of the split exactly once, each activation computed
    with the row's state carried from the characters before it. The split's pieces are cut into batch rows as
    evaluation cuts them (never across a seam); each row first reads `warmup` characters of the real text
    before it through the fused model. Chunk.pos is the index in the split (piece after piece), -1 for padding."""
    from rnnlens.evaluate import batch_rows

    n = corpus.split_size(split)
    if n <= 0:
        raise InputError(f"the {split} split of corpus {corpus.name!r} is empty; re-prepare the corpus with a {split} fraction")
    runner = runner or runner_for(model)
    rows = batch_rows(corpus.pieces[split], streams)
    if hasattr(runner, "stream"):  # a model without state reads its own windows
        for pos, acts in runner.stream(corpus, rows, warmup, chunk):
            yield Chunk(pos, acts)
        return
    starts = np.array([a for a, _ in rows], dtype=np.int64)
    lengths = np.array([length for _, length in rows], dtype=np.int64)
    width = int(lengths.max())
    warm = int(min(warmup, starts.min()))
    encoded = corpus.encode(corpus.data)
    if (encoded < 0).any():
        raise InputError("the corpus holds bytes outside its own vocabulary; re-prepare it (rnnlens prepare)")
    padded = np.concatenate([encoded, np.zeros(width, dtype=np.int64)])
    x_rows = np.stack([padded[a - warm: a + width] for a in starts])
    # index in the split of each row's first byte: rows follow the split's order, each its own length
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pos = first[:, None] + np.arange(width)[None, :]
    pos[np.arange(width)[None, :] >= lengths[:, None]] = -1
    x_all = torch.from_numpy(x_rows).to(runner.device)
    state = None
    with torch.no_grad():
        if warm > 0:
            state = runner.warm(x_all[:, :warm])
    t0 = time.time()
    for col in range(0, width, chunk):
        idx = x_all[:, warm + col: warm + col + chunk]
        acts, state = runner.run(idx, state)
        yield Chunk(pos[:, col: col + chunk], acts)
        if (col // chunk) % 20 == 0:
            done = min(col + chunk, width) / width
            log.info(f"  internals: {done:6.1%} of {n} positions ({time.time() - t0:.0f} s)")


def excerpt_windows(n, count, width, piece_starts=None):
    """`count` evenly spaced, non-overlapping windows [a, a+width) inside a split of n positions (narrower when
    the split is too short for `count` full windows). With `piece_starts` (indices where the split's pieces
    begin), every window lies inside one piece: it is moved back to end before the next seam."""
    width = min(width, n // max(count, 1))
    if count <= 0 or width <= 0:
        return []
    starts = np.linspace(0, n - width, count).round().astype(int) if count > 1 else np.array([(n - width) // 2])
    if piece_starts is not None and len(piece_starts) > 1:
        seams = np.append(np.asarray(piece_starts, dtype=np.int64), n)
        fitted = []
        for a in starts:
            k = np.searchsorted(seams, a, side="right") - 1
            lo, hi = seams[k], seams[k + 1]
            fitted.append(max(lo, min(a, hi - width)))
        starts = np.array(fitted)
        width = min(width, int(np.diff(seams).min()))
    windows = sorted({(int(a), int(a) + width) for a in starts})
    # keep them disjoint after the moves
    return [w for i, w in enumerate(windows) if i == 0 or w[0] >= windows[i - 1][1]]


def analyse_model(model, corpus, model_id, out_dir, cells=(), max_positions=100_000, streams=50, warmup=1000,
                  chunk=100, windows=4, window_chars=500, comment_style="auto", feature_context=20_000,
                  method="auto"):
    """The whole per-model analysis in one streaming pass over the test split; returns the output paths."""
    from rnnlens import cells as cellscore
    from rnnlens import saturation as sat

    spec = model.spec
    runner = runner_for(model, method)
    units, state_name = runner.units, runner.cell_kind
    stream = stream_test_internals(model, corpus, streams, warmup, chunk, runner=runner)
    for layer, unit in cells:
        if not (1 <= layer <= spec.layers and 0 <= unit < units):
            raise InputError(f"cell {layer}:{unit} is outside {model_id} ({spec.layers} layers of {units} units; "
                             "layers count from 1, units from 0)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = corpus.split_size("test")
    t0 = time.time()
    log.info(f"{model_id}: features of {n} test characters in {len(corpus.pieces['test'])} piece(s)")
    feature_table = split_features(corpus, "test", context=feature_context, style=comment_style)
    log.info(f"{model_id}: features done ({time.time() - t0:.1f} s); streaming internals")

    gates, flipped = sat.gates_of(runner.kinds)
    counter = sat.SaturationCounter(gates, spec.layers, spec.hidden) if gates else None
    if counter is None:
        log.info(f"{model_id}: {archs.describe(spec.arch)} has no gates: gate saturation skipped (its table is "
                 "empty; the saturation figure of the corpus leaves it out)")
    sample_pos = cellscore.sample_positions(n, max_positions)
    collector = cellscore.CellCollector(sample_pos, n, spec.layers, units)
    wins = excerpt_windows(n, windows, window_chars, corpus.piece_starts("test"))
    excerpts = cellscore.CellCollector(np.concatenate([np.arange(a, b) for a, b in wins]) if wins else np.array([], int),
                                       n, spec.layers, units)
    log.info(f"{model_id}: internals method {runner.method}, {torch.get_num_threads()} torch threads")
    for chunk_acts in stream:
        valid = torch.from_numpy(chunk_acts.valid)
        if counter is not None:
            counter.update(chunk_acts.acts, valid)
        cell_values = [layer[state_name] for layer in chunk_acts.acts]
        collector.update(chunk_acts.pos, cell_values)
        excerpts.update(chunk_acts.pos, cell_values)
    log.info(f"{model_id}: streaming done ({time.time() - t0:.1f} s)")

    paths = {}
    meta = {"model": model_id, "corpus": corpus.name, "arch": spec.arch, "layers": spec.layers,
            "hidden": spec.hidden, "units": units, "test_positions": int(n), "cell_state": state_name,
            "unit_layout": getattr(runner, "unit_layout", None), "flipped_gates": flipped,
            "kinds": {name: {"low": k.low, "high": k.high, "gate": k.gate, "label": k.label}
                      for name, k in runner.kinds.items()}}
    sat_table = counter.table(model_id) if counter is not None else sat.empty_table()
    paths["saturation"] = sat.write_table(sat_table, out_dir / "saturation.parquet", meta)
    paths["saturation_summary"] = sat.write_summary(sat.summarize(sat_table), out_dir / "saturation_summary.csv")

    scores = cellscore.score_cells(collector.values(), feature_table.iloc[collector.positions], spec.layers, units)
    scores.insert(0, "model", model_id)
    scores.insert(1, "corpus", corpus.name)
    paths["cells"] = cellscore.write_scores(scores, out_dir / "cells.parquet", meta)
    paths["cells_top"] = cellscore.write_top(scores, out_dir / "cells_top.csv", per_feature=5)
    log.info(f"{model_id}: scored {spec.layers * units} cells against {scores['feature'].nunique()} features "
             f"on {len(collector.positions)} positions ({time.time() - t0:.1f} s)")

    test_bytes = corpus.split("test")
    paths["excerpts"] = cellscore.write_excerpts(out_dir / "excerpts.parquet", excerpts.positions, test_bytes,
                                                 excerpts.values(), wins, spec.layers, units, meta)
    log.info(f"{model_id}: wrote {', '.join(str(p) for p in paths.values())} ({time.time() - t0:.1f} s)")
    return paths


def model_id_for(path, extra, given=None):
    if given:
        return given
    for key in ("model", "model_id"):
        if isinstance(extra.get(key), str):
            return extra[key]
    path = Path(path)
    return path.parent.name if path.stem == "model" else path.stem


def add_internals_arguments(parser):
    parser.add_argument("--model", required=True, help="model.pt written by training")
    parser.add_argument("--data", required=True, help="prepared corpus data.json")
    parser.add_argument("--out-dir", required=True, help="directory for this model's outputs")
    parser.add_argument("--model-id", default=None, help="id written into the tables (default: from the model file)")
    parser.add_argument("--cells", default="", help="extra cells to draw, LAYER:UNIT (layer from 1, unit from 0), e.g. 1:17,2:5")
    parser.add_argument("--max-positions", type=int, default=100_000,
                    help="evenly spaced test positions used to score cells (bounds memory; default 100000)")
    parser.add_argument("--streams", type=int, default=50, help="contiguous test streams run as one batch")
    parser.add_argument("--warmup", type=int, default=1000, help="characters each stream reads before its piece")
    parser.add_argument("--chunk", type=int, default=100, help="time steps per streamed chunk")
    parser.add_argument("--windows", type=int, default=4, help="excerpt windows kept for pictures")
    parser.add_argument("--window-chars", type=int, default=500, help="characters per excerpt window")
    parser.add_argument("--comment-style", choices=("auto", "c", "hash", "none"), default="auto",
                    help="comment syntax for the in_comment feature (auto: C if the text has /* ... */)")
    parser.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default; 1-4 run the "
                    "exact internals at >= half the fused model's speed)")
    parser.add_argument("--method", choices=("auto", "loop", "fused"), default="auto",
                    help="how the recurrent family computes them (rnnlens.recurrent.LayerwiseRunner); same numbers "
                         "either way")


def run_internals(args):
    from rnnlens.corpus import PreparedCorpus
    from rnnlens.model import load_model, pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    for what, path in (("model", args.model), ("data", args.data)):
        if not Path(path).is_file():
            raise InputError(f"--{what} {path} does not exist; run the stage that makes it first")
    cells = parse_cells(args.cells)
    device = pick_device(args.device)
    model, extra = load_model(args.model)
    model = model.to(device)  # the internals run where the weights are
    log.info(f"internals on {device}")
    corpus = PreparedCorpus.load(args.data)
    if model.spec.vocab_size != corpus.vocab_size:
        raise InputError(f"model {args.model} has a vocabulary of {model.spec.vocab_size}, corpus {args.data} of "
                         f"{corpus.vocab_size}; give the data.json the model was trained on")
    if "vocab" in extra and list(extra["vocab"]) != corpus.vocab.tolist():
        raise InputError(f"model {args.model} was trained on another vocabulary than {args.data}; give the data.json "
                         "the model was trained on")
    analyse_model(model, corpus, model_id_for(args.model, extra, args.model_id), args.out_dir, cells=cells,
                  max_positions=args.max_positions, streams=args.streams, warmup=args.warmup, chunk=args.chunk,
                  windows=args.windows, window_chars=args.window_chars, comment_style=args.comment_style,
                  method=args.method)
    return 0
