"""The paper's recurrent family, the vanilla RNN, LSTM and GRU of Karpathy et al. (2015): one-hot input, a fused
nn.RNN / nn.LSTM / nn.GRU stack, dropout between layers and before the linear decoder; with its exact internals
(every gate and state of every layer).

Internals, with PyTorch's gate definitions (layers numbered from 1, units from 0):
  LSTM  i f o (sigmoid), g (tanh), c, h:   c_t = f*c_{t-1} + i*g,  h_t = o*tanh(c_t)
  GRU   r z (sigmoid), n (tanh), h:        n = tanh(W_in x + b_in + r*(W_hn h_{t-1} + b_hn)),
                                            h_t = (1-z)*n + z*h_{t-1}
        (PyTorch's variant: the reset gate acts after the recurrent matrix product, and z weighs the old
        state; the paper's z weighs the new candidate. Saturation numbers use PyTorch's r and z.)
  RNN   h = tanh(W_ih x + b_ih + W_hh h_{t-1} + b_hh)
`LayerwiseRunner` computes them fast and exactly (see its docstring); `reference_internals` is the plain
step-by-step loop over the equations, for the tests. Both can clamp units inside the recurrence (interventions,
rnnlens.interventions): the LSTM's c_t (then h_t = o*tanh(c_t) is computed from the clamped cell), the GRU's and
RNN's h_t, at every step, so that everything after the step sees the clamped value.

This module is the architecture protocol's implementation for rnn, lstm and gru (rnnlens.archs).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from rnnlens.archs import Kind
from rnnlens.errors import InputError

GATES_PER_ARCH = {"rnn": 1, "lstm": 4, "gru": 3}
RECURRENT_MODULES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
# what `LayerwiseRunner.run` returns per layer, in order, with value ranges; gates are counted by gate saturation
KINDS = {
    "lstm": {"i": Kind(0, 1, True, "input"), "f": Kind(0, 1, True, "forget"), "o": Kind(0, 1, True, "output"),
             "g": Kind(-1, 1), "c": Kind(None, None), "h": Kind(-1, 1)},
    "gru": {"r": Kind(0, 1, True, "reset"), "z": Kind(0, 1, True, "update", flip=True), "n": Kind(-1, 1),
            "h": Kind(-1, 1)},
    "rnn": {"h": Kind(-1, 1)},
}
ACTIVATIONS = {arch: tuple(kinds) for arch, kinds in KINDS.items()}
CELL_STATE = {"lstm": "c", "gru": "h", "rnn": "h"}  # the state the cell analyses and pictures use
STYLES = {"lstm": {"colormap": "Blues", "marker": "o"}, "gru": {"colormap": "Greens", "marker": "^"},
          "rnn": {"colormap": "Oranges", "marker": "s"}}
DESCRIPTIONS = {"rnn": "a vanilla RNN", "lstm": "an LSTM", "gru": "a GRU"}


def count_parameters(arch, layers, hidden, vocab_size):
    """Parameters of the recurrent stack (PyTorch keeps two bias vectors per layer, as char-rnn's i2h and h2h
    linear maps do) plus the decoder; equals sum(p.numel()) of CharRNN."""
    gates = GATES_PER_ARCH[arch]
    total = 0
    for layer in range(layers):
        inputs = vocab_size if layer == 0 else hidden
        total += gates * hidden * (inputs + hidden) + 2 * gates * hidden
    return total + hidden * vocab_size + vocab_size


def build_model(spec):
    return CharRNN(spec)


def internals_runner(model, method="auto"):
    return LayerwiseRunner(model, method)


def style(arch):
    return STYLES[arch]


def describe(arch):
    return DESCRIPTIONS[arch]


class CharRNN(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        rnn_kwargs = dict(
            input_size=spec.vocab_size,
            hidden_size=spec.hidden,
            num_layers=spec.layers,
            dropout=spec.dropout if spec.layers > 1 else 0.0,
            batch_first=True,
        )
        if spec.arch == "rnn":
            rnn_kwargs["nonlinearity"] = "tanh"
        self.rnn = RECURRENT_MODULES[spec.arch](**rnn_kwargs)
        self.drop = nn.Dropout(spec.dropout)
        self.decoder = nn.Linear(spec.hidden, spec.vocab_size)

    def init_uniform(self, scale=0.08):
        # the paper's (and char-rnn's) initialisation of every weight and bias
        for p in self.parameters():
            nn.init.uniform_(p, -scale, scale)

    init_weights = init_uniform  # the interface every architecture shares (train.py calls it)

    def init_state(self, batch, device=None):
        shape = (self.spec.layers, batch, self.spec.hidden)
        h = torch.zeros(shape, device=device)
        return (h, torch.zeros(shape, device=device)) if self.spec.arch == "lstm" else h

    def forward(self, idx, state=None):
        """idx: (batch, time) int64 vocabulary indices -> logits (batch, time, vocab), new state."""
        x = F.one_hot(idx, self.spec.vocab_size).to(self.decoder.weight.dtype)
        out, state = self.rnn(x, state)
        return self.decoder(self.drop(out)), state



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

    run() returns, per layer, {name: (batch, time, hidden)} tensors that may be non-contiguous views. With
    `clamp` it always runs the loop (the clamp acts inside the recurrence), and logits(acts) decodes the last
    layer's h into the model's logits.
    """

    supports_clamp = True

    def __init__(self, model, method="auto"):
        spec = model.spec
        self.arch, self.layers, self.hidden, self.vocab_size = spec.arch, spec.layers, spec.hidden, spec.vocab_size
        self.weights = [tuple(w.detach() for w in layer_weights(model.rnn, k)) for k in range(spec.layers)]
        self.model = model
        self.kinds, self.cell_kind, self.units = KINDS[spec.arch], CELL_STATE[spec.arch], spec.hidden
        device = self.weights[0][0].device
        self.device, self.dtype = device, self.weights[0][0].dtype
        if method not in ("auto", "loop", "fused"):
            raise InputError(f"internals method {method!r}: use auto, loop or fused")
        if method == "auto":
            method = "loop" if device.type == "cpu" and torch.get_num_threads() <= 4 else "fused"
        self.method = "fused" if self.arch == "rnn" else method
        self.loop_weights = None
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
            elif self.arch == "rnn":
                self.loop_weights.append((w_ih.t().contiguous(), w_hh.t().contiguous(), b_ih + b_hh, None))
            else:
                # GRU: r and z take both biases at once; n keeps b_hn inside the reset product
                bias_in = b_ih.clone()
                bias_in[:2 * H] += b_hh[:2 * H]
                bias_rec = b_hh.clone()
                bias_rec[:2 * H] = 0
                self.loop_weights.append((w_ih.t().contiguous(), w_hh.t().contiguous(), bias_in, bias_rec))

    @torch.no_grad()
    def warm(self, idx):
        """The model-format state after reading idx (batch, time), through the fused model."""
        _, state = self.model.rnn(F.one_hot(idx, self.vocab_size).to(self.dtype))
        return state

    @torch.no_grad()
    def run(self, idx, state=None, clamp=None):
        """idx (batch, time) int64 -> (list over layers of {name: (batch, time, hidden)}, new model-format state).

        clamp: {layer (from 0): (units, values)} holds those units of the layer's cell state (LSTM c, GRU/RNN h)
        at `values` at every step: values (len(units),) for constants, or (batch, time, len(units)) per step."""
        batch = idx.shape[0]
        hs, cs = split_state(self.arch, state, self.layers, batch, self.hidden, self.weights[0][0])
        if clamp:
            if self.loop_weights is None:
                self._build_loop()
            return self._run_loop(idx, hs, cs, clamp)
        if self.method == "loop":
            return self._run_loop(idx, hs, cs)
        return self._run_fused(idx, hs, cs)

    @torch.no_grad()
    def logits(self, acts):
        """The model's logits (batch, time, vocab) from run()'s activations (dropout is off in evaluation)."""
        return self.model.decoder(acts[-1]["h"])

    def _run_loop(self, idx, hs, cs, clamp=None):
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
            units, held = clamp_at(clamp, k, pre_in)
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
                    if units is not None:
                        c_prev[:, units] = held(t)
                    h_prev = torch.mul(g[:, 2 * H:3 * H], torch.tanh(c_prev, out=tanh_c), out=h_all[t])
                bt = lambda x: x.transpose(0, 1)  # noqa: E731  time-major buffers -> (batch, time, H) views
                acts.append({"i": bt(gates[..., :H]), "f": bt(gates[..., H:2 * H]), "o": bt(gates[..., 2 * H:3 * H]),
                             "g": bt(gates[..., 3 * H:]), "c": bt(c_all), "h": bt(h_all)})
                new_c.append(c_prev)
            elif self.arch == "rnn":
                for t in range(steps):
                    h_prev = torch.tanh(torch.addmm(pre_in[t], h_prev, w_rec), out=h_all[t])
                    if units is not None:
                        h_prev[:, units] = held(t)
                acts.append({"h": h_all.transpose(0, 1)})
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
                    if units is not None:
                        h_prev[:, units] = held(t)
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


def clamp_at(clamp, layer, like):
    """-> (units LongTensor or None, held(t) -> the clamped values at step t) of one layer of a run's clamp."""
    if not clamp or layer not in clamp:
        return None, None
    units, values = clamp[layer]
    units = torch.as_tensor(units, dtype=torch.long, device=like.device)
    values = torch.as_tensor(values, dtype=like.dtype, device=like.device)
    if values.dim() <= 1:
        return units, lambda t: values
    return units, lambda t: values[:, t]


@torch.no_grad()
def reference_internals(model, idx, state=None, clamp=None):
    """The equations step by step (no fused kernels): the ground truth for the tests. Same output as
    LayerwiseRunner.run, clamp included."""
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
            units, held = clamp_at(clamp, k, x)
            a = x @ w_ih.t() + b_ih
            b = h_prev @ w_hh.t() + b_hh
            if spec.arch == "lstm":
                ai, af, ag, ao = a.chunk(4, dim=-1)
                bi, bf, bg, bo = b.chunk(4, dim=-1)
                i, f = torch.sigmoid(ai + bi), torch.sigmoid(af + bf)
                g, o = torch.tanh(ag + bg), torch.sigmoid(ao + bo)
                c = f * cs[k] + i * g
                if units is not None:
                    c = c.clone()
                    c[:, units] = held(t)
                h = o * torch.tanh(c)
                cs[k] = c
                step = {"i": i, "f": f, "o": o, "g": g, "c": c, "h": h}
            elif spec.arch == "gru":
                ar, az, an = a.chunk(3, dim=-1)
                br, bz, bn = b.chunk(3, dim=-1)
                r, z = torch.sigmoid(ar + br), torch.sigmoid(az + bz)
                n = torch.tanh(an + r * bn)
                h = (1 - z) * n + z * h_prev
                if units is not None:
                    h[:, units] = held(t)
                step = {"r": r, "z": z, "n": n, "h": h}
            else:
                h = torch.tanh(a + b)
                if units is not None:
                    h[:, units] = held(t)
                step = {"h": h}
            hs[k] = h
            for name in names:
                out[k][name].append(step[name])
            x = h
    acts = [{name: torch.stack(vals, dim=1) for name, vals in layer.items()} for layer in out]
    return acts, join_state(spec.arch, hs, cs)


