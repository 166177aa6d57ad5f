"""A minimal gated unit (Zhou et al. 2016, a GRU with one gate) as your own rnnlens architecture.

    f_t = sigmoid(W_f x_t + U_f h_{t-1} + b_f)
    h_t = (1 - f_t) * h_{t-1} + f_t * tanh(W_h x_t + U_h (f_t * h_{t-1}) + b_h)

Register it in the workflow config with `architectures: {mgu: myarchs.mgu}` (this file as myarchs/mgu.py beside
the Snakefile) and use `grid: {arch: [lstm, mgu], ...}`.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from rnnlens.archs import Kind


def count_parameters(arch, layers, hidden, vocab_size):
    inputs = [vocab_size] + [hidden] * (layers - 1)
    return sum(2 * hidden * (n + hidden + 1) for n in inputs) + hidden * vocab_size + vocab_size


class MGU(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        sizes = [spec.vocab_size] + [spec.hidden] * (spec.layers - 1)
        self.inp = nn.ModuleList(nn.Linear(n, 2 * spec.hidden) for n in sizes)  # W_f, W_h with their biases
        self.rec = nn.ModuleList(nn.Linear(spec.hidden, 2 * spec.hidden, bias=False) for _ in sizes)  # U_f, U_h
        self.drop = nn.Dropout(spec.dropout)
        self.decoder = nn.Linear(spec.hidden, spec.vocab_size)

    def init_weights(self, scale=0.08):
        for p in self.parameters():
            nn.init.uniform_(p, -scale, scale)

    def layers(self, idx, state=None):
        """idx (batch, time) -> ([{"f", "h"} (batch, time, hidden) per layer], state (layers, batch, hidden))."""
        x = F.one_hot(idx, self.spec.vocab_size).to(self.decoder.weight.dtype)
        if state is None:
            state = x.new_zeros(self.spec.layers, idx.shape[0], self.spec.hidden)
        acts, last = [], []
        for k in range(self.spec.layers):
            wx_f, wx_h = self.inp[k](x).chunk(2, dim=-1)
            u_f, u_h = self.rec[k].weight.chunk(2, dim=0)
            h, fs, hs = state[k], [], []
            for t in range(idx.shape[1]):
                f = torch.sigmoid(wx_f[:, t] + h @ u_f.t())
                h = (1 - f) * h + f * torch.tanh(wx_h[:, t] + (f * h) @ u_h.t())
                fs.append(f)
                hs.append(h)
            acts.append({"f": torch.stack(fs, dim=1), "h": torch.stack(hs, dim=1)})
            last.append(h)
            x = self.drop(acts[-1]["h"])
        return acts, torch.stack(last)

    def forward(self, idx, state=None):
        acts, state = self.layers(idx, state)
        return self.decoder(self.drop(acts[-1]["h"])), state


class Runner:
    """What the analyses read per layer: the gate (saturation) and the hidden state (the cells)."""

    kinds = {"f": Kind(0, 1, gate=True, label="MGU gate f"), "h": Kind(-1, 1)}
    cell_kind, method = "h", "step"

    def __init__(self, model):
        self.model, self.units = model.eval(), model.spec.hidden
        self.device, self.dtype = model.decoder.weight.device, model.decoder.weight.dtype

    @torch.no_grad()
    def run(self, idx, state=None):
        return self.model.layers(idx, state)

    @torch.no_grad()
    def warm(self, idx):
        return self.model.layers(idx)[1]


def build_model(spec):
    return MGU(spec)


def internals_runner(model, method="auto"):
    return Runner(model)


def style(arch):
    return {"colormap": "PuRd", "marker": "X"}
