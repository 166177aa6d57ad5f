"""Exact per-character internals of a trained CharRNN: every gate and state of every layer.

What is computed (layers numbered from 1, units from 0), with PyTorch's gate definitions:
  LSTM  i f o (sigmoid), g (tanh), c, h:   c_t = f*c_{t-1} + i*g,  h_t = o*tanh(c_t)
  GRU   r z (sigmoid), n (tanh), h:        n = tanh(W_in x + b_in + r*(W_hn h_{t-1} + b_hn)),
                                            h_t = (1-z)*n + z*h_{t-1}
        (PyTorch's variant: the reset gate acts after the recurrent matrix product, and z weighs the old
        state; the paper's z weighs the new candidate. Saturation numbers use PyTorch's r and z.)
  RNN   h = tanh(W_ih x + b_ih + W_hh h_{t-1} + b_hh)

How (fast, exact): each layer runs as its own fused one-layer module with the model's weights, which gives
its hidden sequence h_1..h_T. Every gate pre-activation then follows from [x_t; h_{t-1}] in one matrix
product over all time steps; only the LSTM cell needs a loop over time, of element-wise ops on (batch,
hidden). `reference_internals` is the plain step-by-step loop over the equations, for the tests.

Streaming: `stream_test_internals` cuts the test split into contiguous streams (as evaluation does),
warms each stream up on the characters before it, and yields the activations chunk by chunk with carried
state, so statistics are accumulated without ever holding a whole split's activations.

Command line (`rnnlens internals`): one streaming pass that writes the saturation table, the cell score
table, activation excerpts and the cell pictures of one model.
"""

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rnnlens.errors import InputError
from rnnlens.cellviz import parse_cells
from rnnlens.features import split_features

log = logging.getLogger(__name__)

# names of what `LayerwiseRunner.run` returns per layer, in order
ACTIVATIONS = {"lstm": ("i", "f", "o", "g", "c", "h"), "gru": ("r", "z", "n", "h"), "rnn": ("h",)}
# the state that the cell analyses and pictures use; beyond the paper, units of "cells" per layer are the
# transformer's residual stream (hidden) then its MLP neurons (4 hidden), and the LRU state's real then imaginary
# parts (2 hidden)
CELL_STATE = {"lstm": "c", "gru": "h", "rnn": "h", "transformer": "cells", "lru": "cells"}
CELL_UNITS = {"transformer": "residual stream 0..H-1, MLP neurons H..5H-1", "lru": "state real 0..N-1, imaginary N..2N-1"}


def layer_weights(rnn, layer):
    """(W_ih, W_hh, b_ih, b_hh) of 0-based `layer` of a fused nn.RNN/LSTM/GRU."""
    return tuple(getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def split_state(arch, state, layers, batch, hidden, like):
    """Model-format state (h or (h, c), each (layers, batch, hidden)) -> per-layer lists; None -> zeros."""
    if state is None:
        zeros = like.new_zeros(layers, batch, hidden)
        state = (zeros, zeros.clone()) if arch == "lstm" else zeros
    if arch == "lstm":
        return [state[0][k] for k in range(layers)], [state[1][k] for k in range(layers)]
    return [state[k] for k in range(layers)], None


def join_state(arch, hs, cs):
    h = torch.stack(hs)
    return (h, torch.stack(cs)) if arch == "lstm" else h


class LayerwiseRunner:
    """Exact activations of every layer of a CharRNN, two ways (same numbers to float rounding):

    method="loop": the recurrence as a loop over time of a few fused ops on (batch, 4*hidden), with the input
      projections of all steps precomputed in one matrix product and every output written in place into
      time-major buffers. On CPU this runs at about the model's own speed, because the fused CPU kernels do
      the same per-step work.
    method="fused": each layer runs as its own fused one-layer module (cuDNN on GPU) for its hidden sequence;
      the gate pre-activations then follow from [x_t; h_{t-1}] in one matrix product over all steps, and only
      the LSTM cell c needs a loop (of one element-wise op per step). Best on GPU, where a per-step loop would
      be bound by kernel launches.
    method="auto": loop on a CPU with at most 4 torch threads, fused otherwise. A vanilla RNN has only h, so it
      always runs fused.

    Measured (bench/bench_internals.py, LSTM 1x128 / 2x256 / 3x512, 50 streams x 100-step chunks; ratio =
    internals chars/s over the model's own no_grad forward): CPU 1 thread loop 0.73-0.87/0.68-0.69/0.70-0.71
    (two runs of make bench); earlier, before the recurrent product was added in place: 4 threads loop
    0.62/0.52/0.66, fused 0.43/0.41/0.56; 16 threads loop 0.31/0.21/0.32, fused 0.45/0.35/0.38 (oneDNN's
    fused LSTM scales with threads better than a per-step loop); H100 fused 0.13/0.48/0.52 (cuDNN is so fast
    on a tiny model that launches dominate). So run it with a few threads per job.

    run() returns, per layer, {name: (batch, time, hidden)} tensors that may be non-contiguous views.
    """

    def __init__(self, model, method="auto"):
        spec = model.spec
        self.arch, self.layers, self.hidden, self.vocab_size = spec.arch, spec.layers, spec.hidden, spec.vocab_size
        self.weights = [tuple(w.detach() for w in layer_weights(model.rnn, k)) for k in range(spec.layers)]
        device = self.weights[0][0].device
        if method not in ("auto", "loop", "fused"):
            raise InputError(f"internals method {method!r}: use auto, loop or fused")
        if method == "auto":
            method = "loop" if device.type == "cpu" and torch.get_num_threads() <= 4 else "fused"
        self.method = "fused" if self.arch == "rnn" else method
        if self.method == "fused":
            self._build_fused(type(model.rnn), getattr(model.rnn, "nonlinearity", None))
        else:
            self._build_loop()

    def _build_fused(self, kind, nonlinearity):
        self.fused = []
        for w_ih, w_hh, b_ih, b_hh in self.weights:
            kwargs = dict(input_size=w_ih.shape[1], hidden_size=self.hidden, num_layers=1, batch_first=True)
            if self.arch == "rnn":
                kwargs["nonlinearity"] = nonlinearity
            one = kind(**kwargs).to(device=w_ih.device, dtype=w_ih.dtype).eval()
            with torch.no_grad():
                for name, w in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), (w_ih, w_hh, b_ih, b_hh)):
                    getattr(one, name).copy_(w)
            self.fused.append(one)

    def _build_loop(self):
        H = self.hidden
        self.loop_weights = []
        for w_ih, w_hh, b_ih, b_hh in self.weights:
            if self.arch == "lstm":
                # reorder PyTorch's i, f, g, o to i, f, o, g: one sigmoid over the first 3H columns
                perm = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)])
                perm = perm.to(w_ih.device)
                self.loop_weights.append((w_ih[perm].t().contiguous(), w_hh[perm].t().contiguous(),
                                          (b_ih + b_hh)[perm], None))
            else:
                # GRU: r and z take both biases at once; n keeps b_hn inside the reset product
                bias_in = b_ih.clone()
                bias_in[:2 * H] += b_hh[:2 * H]
                bias_rec = b_hh.clone()
                bias_rec[:2 * H] = 0
                self.loop_weights.append((w_ih.t().contiguous(), w_hh.t().contiguous(), bias_in, bias_rec))

    @torch.no_grad()
    def run(self, idx, state=None):
        """idx (batch, time) int64 -> (list over layers of {name: (batch, time, hidden)}, new model-format state)."""
        batch = idx.shape[0]
        hs, cs = split_state(self.arch, state, self.layers, batch, self.hidden, self.weights[0][0])
        if self.method == "loop":
            return self._run_loop(idx, hs, cs)
        return self._run_fused(idx, hs, cs)

    def _run_loop(self, idx, hs, cs):
        H = self.hidden
        batch, steps = idx.shape
        acts, new_h, new_c = [], [], []
        layer_input = None  # time-major (steps, batch, H)
        idx_t = idx.t()
        for k, (w_in, w_rec, bias_in, bias_rec) in enumerate(self.loop_weights):
            if k == 0:
                pre_in = w_in[idx_t] + bias_in  # one-hot input: a row lookup
            else:
                pre_in = torch.addmm(bias_in, layer_input.reshape(-1, H), w_in).view(steps, batch, -1)
            h_prev = hs[k]
            h_all = pre_in.new_empty(steps, batch, H)
            if self.arch == "lstm":
                gates = pre_in  # i, f, o (sigmoid), g (tanh), computed in place over the input projections
                c_all = torch.empty_like(h_all)
                tanh_c = pre_in.new_empty(batch, H)
                c_prev = cs[k]
                for t in range(steps):
                    g = gates[t].addmm_(h_prev, w_rec)  # in place: no copy of the input projection per step
                    torch.sigmoid(g[:, :3 * H], out=g[:, :3 * H])
                    torch.tanh(g[:, 3 * H:], out=g[:, 3 * H:])
                    c_prev = torch.addcmul(g[:, :H] * g[:, 3 * H:], g[:, H:2 * H], c_prev, out=c_all[t])
                    h_prev = torch.mul(g[:, 2 * H:3 * H], torch.tanh(c_prev, out=tanh_c), out=h_all[t])
                bt = lambda x: x.transpose(0, 1)  # noqa: E731  time-major buffers -> (batch, time, H) views
                acts.append({"i": bt(gates[..., :H]), "f": bt(gates[..., H:2 * H]), "o": bt(gates[..., 2 * H:3 * H]),
                             "g": bt(gates[..., 3 * H:]), "c": bt(c_all), "h": bt(h_all)})
                new_c.append(c_prev)
            else:
                rz_all = pre_in.new_empty(steps, batch, 2 * H)
                n_all = torch.empty_like(h_all)
                rec = pre_in.new_empty(batch, 3 * H)
                for t in range(steps):
                    torch.addmm(bias_rec, h_prev, w_rec, out=rec)
                    rz = torch.add(pre_in[t, :, :2 * H], rec[:, :2 * H], out=rz_all[t])
                    torch.sigmoid(rz, out=rz)
                    n = torch.addcmul(pre_in[t, :, 2 * H:], rz[:, :H], rec[:, 2 * H:], out=n_all[t])
                    torch.tanh(n, out=n)
                    # h = (1 - z) * n + z * h_prev = n + z * (h_prev - n)
                    h_prev = torch.addcmul(n, rz[:, H:], h_prev - n, out=h_all[t])
                bt = lambda x: x.transpose(0, 1)  # noqa: E731
                acts.append({"r": bt(rz_all[..., :H]), "z": bt(rz_all[..., H:]), "n": bt(n_all), "h": bt(h_all)})
            new_h.append(h_prev)
            layer_input = h_all
        return acts, join_state(self.arch, new_h, new_c if self.arch == "lstm" else None)

    def _run_fused(self, idx, hs, cs):
        batch, steps = idx.shape
        w0 = self.weights[0][0]
        acts, new_h, new_c = [], [], []
        layer_input = None
        for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.weights):
            h0 = hs[k]
            if k == 0:
                x = F.one_hot(idx, self.vocab_size).to(w0.dtype)
            else:
                x = layer_input
            if self.arch == "lstm":
                h_seq, (h_last, c_last) = self.fused[k](x, (h0[None], cs[k][None]))
            else:
                h_seq, h_last = self.fused[k](x, h0[None])
            new_h.append(h_last[0])
            layer_input = h_seq
            if self.arch == "rnn":
                acts.append({"h": h_seq})
                continue
            # one-hot input times W_ih is a column lookup
            pre_in = w_ih.t()[idx] + b_ih if k == 0 else \
                torch.addmm(b_ih, x.reshape(-1, x.shape[-1]), w_ih.t()).view(batch, steps, -1)
            h_prev = torch.cat([h0[:, None], h_seq[:, :-1]], dim=1)
            pre_rec = torch.addmm(b_hh, h_prev.reshape(-1, self.hidden), w_hh.t()).view(batch, steps, -1)
            if self.arch == "lstm":
                # PyTorch packs the gates as i, f, g, o
                pi, pf, pg, po = (pre_in + pre_rec).chunk(4, dim=-1)
                i, f, o, g = torch.sigmoid(pi), torch.sigmoid(pf), torch.sigmoid(po), torch.tanh(pg)
                ig = (i * g).transpose(0, 1).contiguous()
                f_t = f.transpose(0, 1).contiguous()
                c = torch.empty_like(ig)
                c_t = cs[k]
                for t in range(steps):
                    c_t = torch.addcmul(ig[t], f_t[t], c_t, out=c[t])
                acts.append({"i": i, "f": f, "o": o, "g": g, "c": c.transpose(0, 1), "h": h_seq})
                new_c.append(c_last[0])
            else:
                ir, iz, in_ = pre_in.chunk(3, dim=-1)
                hr, hz, hn = pre_rec.chunk(3, dim=-1)
                r = torch.sigmoid(ir + hr)
                z = torch.sigmoid(iz + hz)
                n = torch.tanh(in_ + r * hn)
                acts.append({"r": r, "z": z, "n": n, "h": h_seq})
        return acts, join_state(self.arch, new_h, new_c if self.arch == "lstm" else None)


@torch.no_grad()
def reference_internals(model, idx, state=None):
    """The equations step by step (no fused kernels): the ground truth for the tests. Same output as
    LayerwiseRunner.run."""
    spec = model.spec
    batch, steps = idx.shape
    weights = [layer_weights(model.rnn, k) for k in range(spec.layers)]
    hs, cs = split_state(spec.arch, state, spec.layers, batch, spec.hidden, weights[0][0])
    hs, cs = list(hs), list(cs) if cs is not None else None
    names = ACTIVATIONS[spec.arch]
    out = [{name: [] for name in names} for _ in range(spec.layers)]
    x_all = F.one_hot(idx, spec.vocab_size).to(weights[0][0].dtype)
    for t in range(steps):
        x = x_all[:, t]
        for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(weights):
            h_prev = hs[k]
            a = x @ w_ih.t() + b_ih
            b = h_prev @ w_hh.t() + b_hh
            if spec.arch == "lstm":
                ai, af, ag, ao = a.chunk(4, dim=-1)
                bi, bf, bg, bo = b.chunk(4, dim=-1)
                i, f = torch.sigmoid(ai + bi), torch.sigmoid(af + bf)
                g, o = torch.tanh(ag + bg), torch.sigmoid(ao + bo)
                c = f * cs[k] + i * g
                h = o * torch.tanh(c)
                cs[k] = c
                step = {"i": i, "f": f, "o": o, "g": g, "c": c, "h": h}
            elif spec.arch == "gru":
                ar, az, an = a.chunk(3, dim=-1)
                br, bz, bn = b.chunk(3, dim=-1)
                r, z = torch.sigmoid(ar + br), torch.sigmoid(az + bz)
                n = torch.tanh(an + r * bn)
                h = (1 - z) * n + z * h_prev
                step = {"r": r, "z": z, "n": n, "h": h}
            else:
                h = torch.tanh(a + b)
                step = {"h": h}
            hs[k] = h
            for name in names:
                out[k][name].append(step[name])
            x = h
    acts = [{name: torch.stack(vals, dim=1) for name, vals in layer.items()} for layer in out]
    return acts, join_state(spec.arch, hs, cs)


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
    runner = runner or LayerwiseRunner(model)
    rows = batch_rows(corpus.pieces[split], streams)
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
    dtype = runner.weights[0][0].dtype
    device = runner.weights[0][0].device
    x_all = torch.from_numpy(x_rows).to(device)
    state = None
    with torch.no_grad():
        if warm > 0 and hasattr(runner, "warm"):
            state = runner.warm(x_all[:, :warm])
        elif warm > 0:
            warm_x = F.one_hot(x_all[:, :warm], model.spec.vocab_size).to(dtype)
            _, state = model.rnn(warm_x)
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
                  pictures=True, method="auto"):
    """The whole per-model analysis in one streaming pass over the test split; returns the output paths."""
    from rnnlens import cells as cellscore
    from rnnlens import saturation as sat

    spec = model.spec
    if spec.arch == "transformer":
        from rnnlens.evaluate import batch_rows
        from rnnlens.transformer import windowed_internals

        units, method_name = 5 * spec.hidden, "windowed"
        stream = (Chunk(pos, [{"cells": a} for a in acts])
                  for pos, acts in windowed_internals(model.eval(), corpus, batch_rows(corpus.pieces["test"], streams)))
    else:
        if spec.arch == "lru":
            from rnnlens.lru import LRURunner

            runner = LRURunner(model)
        else:
            runner = LayerwiseRunner(model, method)
        units, method_name = getattr(runner, "units", spec.hidden), runner.method
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

    counter = sat.SaturationCounter(spec.arch, spec.layers, spec.hidden) if spec.arch in sat.GATE_NAMES else None
    if counter is None and spec.arch != "rnn":
        log.info(f"{model_id}: a {spec.arch} has no gates: gate saturation skipped (its table is empty; the saturation "
                 "figure of the corpus leaves it out)")
    sample_pos = cellscore.sample_positions(n, max_positions)
    collector = cellscore.CellCollector(sample_pos, n, spec.layers, units)
    wins = excerpt_windows(n, windows, window_chars, corpus.piece_starts("test"))
    excerpts = cellscore.CellCollector(np.concatenate([np.arange(a, b) for a, b in wins]) if wins else np.array([], int),
                                       n, spec.layers, units)
    state_name = CELL_STATE[spec.arch]
    log.info(f"{model_id}: internals method {method_name}, {torch.get_num_threads()} torch threads")
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
            "unit_layout": CELL_UNITS.get(spec.arch),
            "gate_variant": "pytorch" if spec.arch == "gru" else "standard"}
    sat_table = counter.table(model_id) if counter is not None else sat.empty_table()
    paths["saturation"] = sat.write_table(sat_table, out_dir / "saturation.parquet", meta)
    paths["saturation_summary"] = sat.write_summary(sat.summarize(sat_table), out_dir / "saturation_summary.csv")
    if pictures:
        # a vanilla RNN has no gates; its figure says so, so that every model has the same outputs
        paths["saturation_figure"] = (sat.plot_saturation([sat_table], out_dir / "saturation.png", corpus=corpus.name)
                                      if counter is not None
                                      else sat.plot_no_gates(model_id, out_dir / "saturation.png", spec.arch))

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
    if pictures:
        from rnnlens import cellviz

        paths.update(cellviz.draw_model_cells(out_dir, scores, out_dir / "excerpts.parquet", feature_table,
                                              user_cells=cells, model_id=model_id))
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
    parser.add_argument("--no-pictures", action="store_true", help="tables only")
    parser.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default; 1-4 run the "
                    "exact internals at >= half the fused model's speed)")
    parser.add_argument("--method", choices=("auto", "loop", "fused"), default="auto",
                    help="how the internals are computed (see LayerwiseRunner); same numbers either way")


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
                  pictures=not args.no_pictures, method=args.method)
    return 0
