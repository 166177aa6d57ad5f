"""A stack of linear recurrent units (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long
Sequences"), byte-level.

Each layer (pre-norm, residual):  u = LayerNorm(h);  x_t = lambda * x_{t-1} + gamma * (B u_t)  (diagonal, complex);
y_t = Re(C x_t) + D * u_t;  h <- h + GLU(GELU(y_t)), GLU(z) = W1 z * sigmoid(W2 z).
lambda = exp(-exp(nu_log) + i exp(theta_log)) keeps |lambda| < 1 for any parameters (stable exponential
parametrisation), and gamma = sqrt(1 - |lambda|^2) (stored as gamma_log) normalises the input so that the
state's scale does not grow as |lambda| -> 1. The state has N complex units: the model's second width (spec.inner;
0: N = H), which `inner_width` sets within a few units of H so that the count comes to the budget where one unit
of H moves it too far (a small budget with several layers).

Training runs the recurrence as a parallel scan over the time axis (`scan`: log2(T) doubling steps, each an
element-wise multiply-add with lambda^(2^k), all |.| <= 1, so it is stable); evaluation and internals run it step
by step (`step_states`), carrying the state from chunk to chunk like an RNN. Both give the same states to float
precision (tests check 1e-5).

Interventions (rnnlens.interventions) clamp the state x_t: a unit is the real or the imaginary part of one complex
state unit (the internals' layout), held at every step inside the step loop, so that the layer's output at that
step and every later step (x_{t+1} = lambda x_t + ...) read the held value.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from rnnlens.archs import Kind
from rnnlens.model import closest_inner


# --- the architecture protocol (rnnlens.archs) ---------------------------------------------------------------------

def build_model(spec):
    return ByteLRU(spec)


def internals_runner(model, method="auto"):
    return LRURunner(model)


def training_defaults(arch, settings):
    """AdamW with a short warm-up and norm clipping: the paper's RMSProp recipe is for the RNNs."""
    return {"optimizer": "adamw", "learning_rate": 3e-3, "lr_warmup_steps": 200, "grad_clip_mode": "norm",
            "grad_clip": 1.0}


def style(arch):
    return {"colormap": "YlOrBr", "marker": "v"}


def describe(arch):
    return "a linear recurrent unit"


def inner_width(arch, layers, hidden, vocab_size, budget):
    """The state size N (at least 1) whose count at this width is closest to the budget; ties: the smaller."""
    return closest_inner(lambda n: count_parameters(arch, layers, hidden, vocab_size, n), budget)


def count_parameters(arch, layers, hidden, vocab_size, inner=0):
    """Equals sum(p.numel()) of ByteLRU: embedding; per layer a LayerNorm, nu/theta/gamma (N each), B and C
    (complex: 2 N H each), D (H) and the GLU (2 x H x H + biases); final LayerNorm and decoder. N = `inner`
    (0: H)."""
    h, n = hidden, inner or hidden
    layer = 2 * h + 3 * n + 2 * n * h + 2 * h * n + h + 2 * (h * h + h)
    return vocab_size * h + layers * layer + 2 * h + h * vocab_size + vocab_size


def scan(lam, b, x0):
    """x_t = lam * x_{t-1} + b_t for t = 0..T-1 from x_{-1} = x0, all at once. lam (N,) complex, b (batch, T, N)
    complex, x0 (batch, N) complex -> (batch, T, N). Hillis-Steele doubling: after the step with offset d, entry t
    holds sum_{s=t-2d+1..t} lam^(t-s) b_s; then the carried state enters as lam^(t+1) x0."""
    steps = b.shape[1]
    power = lam
    offset = 1
    while offset < steps:
        b = torch.cat([b[:, :offset], b[:, offset:] + power * b[:, :-offset]], dim=1)
        power = power * power
        offset *= 2
    powers = torch.exp(torch.arange(1, steps + 1, device=b.device, dtype=lam.real.dtype)[:, None] * torch.log(lam))
    return b + powers[None] * x0[:, None]


class LRULayer(nn.Module):
    def __init__(self, hidden, state, dropout, r_min=0.5, r_max=0.999, max_phase=math.pi / 10):
        super().__init__()
        self.hidden, self.state = hidden, state
        self.r_min, self.r_max, self.max_phase = r_min, r_max, max_phase
        self.norm = nn.LayerNorm(hidden)
        self.nu_log = nn.Parameter(torch.empty(state))
        self.theta_log = nn.Parameter(torch.empty(state))
        self.gamma_log = nn.Parameter(torch.empty(state))
        self.B_re = nn.Parameter(torch.empty(state, hidden))
        self.B_im = nn.Parameter(torch.empty(state, hidden))
        self.C_re = nn.Parameter(torch.empty(hidden, state))
        self.C_im = nn.Parameter(torch.empty(hidden, state))
        self.D = nn.Parameter(torch.empty(hidden))
        self.glu = nn.Linear(hidden, 2 * hidden)
        self.drop = nn.Dropout(dropout)

    @torch.no_grad()
    def init_weights(self):
        # eigenvalues uniform on the ring r_min <= |lambda| <= r_max with phases in [0, max_phase] (Orvieto et al.)
        h, n = self.hidden, self.state
        u1, u2 = torch.rand(n), torch.rand(n)
        radius_sq = u1 * (self.r_max ** 2 - self.r_min ** 2) + self.r_min ** 2
        self.nu_log.copy_(torch.log(-0.5 * torch.log(radius_sq)))
        self.theta_log.copy_(torch.log(self.max_phase * u2).clamp_min(-20))
        self.gamma_log.copy_(torch.log(torch.sqrt(1 - radius_sq)))
        for w in (self.B_re, self.B_im):
            nn.init.normal_(w, 0.0, 1 / math.sqrt(2 * h))  # over its inputs, u (H)
        for w in (self.C_re, self.C_im):
            nn.init.normal_(w, 0.0, 1 / math.sqrt(n))  # over its inputs, the state (N)
        nn.init.normal_(self.D, 0.0, 1.0)
        nn.init.normal_(self.glu.weight, 0.0, 1 / math.sqrt(h))
        nn.init.zeros_(self.glu.bias)
        self.norm.reset_parameters()

    def eigenvalues(self):
        return torch.exp(torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log)))

    def inputs(self, h):
        """-> (u = LayerNorm(h), gamma * B u as complex (batch, T, N))."""
        u = self.norm(h)
        gamma = torch.exp(self.gamma_log)
        bu = torch.complex(u @ self.B_re.t(), u @ self.B_im.t()) * gamma
        return u, bu

    def output(self, h, u, states):
        y = (states @ torch.complex(self.C_re, self.C_im).t()).real + self.D * u
        a, b = self.glu(F.gelu(y)).chunk(2, dim=-1)
        return h + self.drop(a * torch.sigmoid(b))

    def step_states(self, bu, x, hold=None):
        """The recurrence one step at a time (inference and internals). hold: (units, values) of a clamp, the
        units in the internals' layout (real parts 0..N-1, imaginary N..2N-1), values (units,) or (batch, T, units):
        written into the state after each step, before the next step reads it."""
        lam = self.eigenvalues()
        out = torch.empty_like(bu)
        if hold is not None:
            units, values = hold
            units = torch.as_tensor(units, dtype=torch.long, device=bu.device)
            values = torch.as_tensor(values, dtype=bu.real.dtype, device=bu.device)
            slot, part = units % self.state, units // self.state  # part 0: real, 1: imaginary
        for t in range(bu.shape[1]):
            x = lam * x + bu[:, t]
            if hold is not None:
                torch.view_as_real(x)[:, slot, part] = values if values.dim() <= 1 else values[:, t]
            out[:, t] = x
        return out

    def forward(self, h, x0, parallel=True, hold=None):
        """h (batch, T, H) real, x0 (batch, N) complex -> (new h, states (batch, T, N) complex). hold: a clamp
        of step_states (step by step only)."""
        u, bu = self.inputs(h)
        if hold is not None and parallel:
            raise ValueError("a clamp acts inside the step loop: run the layer with parallel=False")
        states = scan(self.eigenvalues(), bu, x0) if parallel else self.step_states(bu, x0, hold)
        return self.output(h, u, states), states


class ByteLRU(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.embed = nn.Embedding(spec.vocab_size, spec.hidden)
        self.state = spec.inner or spec.hidden
        self.layers = nn.ModuleList(LRULayer(spec.hidden, self.state, spec.dropout) for _ in range(spec.layers))
        self.ln_f = nn.LayerNorm(spec.hidden)
        self.drop = nn.Dropout(spec.dropout)
        self.decoder = nn.Linear(spec.hidden, spec.vocab_size)

    def init_weights(self, scale=None):
        """Orvieto et al.'s initialisation of each LRU; normal(0, 0.02) embedding and decoder (the paper's
        uniform(-0.08, 0.08) is for the RNNs)."""
        nn.init.normal_(self.embed.weight, 0.0, 0.02)
        nn.init.normal_(self.decoder.weight, 0.0, 0.02)
        nn.init.zeros_(self.decoder.bias)
        self.ln_f.reset_parameters()
        for layer in self.layers:
            layer.init_weights()

    def init_state(self, batch, device=None):
        return torch.zeros(self.spec.layers, batch, self.state, dtype=torch.complex64, device=device)

    def forward(self, idx, state=None, parallel=None, keep=None, clamp=None):
        """idx (batch, T) -> logits (batch, T, vocab), state (layers, batch, N) complex. parallel: the scan
        (default when gradients are recorded: training, dynamic evaluation) or the step loop (default without:
        evaluation, internals). keep: a list receiving each layer's (states (batch, T, N) complex, output
        (batch, T, H)), for internals. clamp: {layer (from 0): (units, values)} held in the layers' states at every
        step (LRULayer.step_states; runs the step loop)."""
        parallel = torch.is_grad_enabled() if parallel is None else parallel
        parallel = parallel and not clamp
        if state is None:
            state = self.init_state(idx.shape[0], idx.device)
        h = self.drop(self.embed(idx))
        new_state = []
        for k, layer in enumerate(self.layers):
            h, states = layer(h, state[k], parallel, (clamp or {}).get(k))
            new_state.append(states[:, -1])
            if keep is not None:
                keep.append((states, h))
        return self.decoder(self.drop(self.ln_f(h))), torch.stack(new_state)


class LRURunner:
    """Internals of a ByteLRU for rnnlens.internals: per layer the state after each byte, run step by step with
    the state carried from chunk to chunk; units 0..N-1 are its real parts, N..2N-1 its imaginary parts.

    run() also gives each layer's output (the residual stream after it, "out", not a kind of the analyses), from
    which logits() decodes; with `clamp` the held units are written into the state inside the step loop."""

    supports_clamp = True

    def __init__(self, model):
        self.model = model.eval()
        self.method = "step"
        self.kinds = {"cells": Kind(None, None)}
        self.cell_kind = "cells"
        n = model.state  # the state size N, not the width H (they differ where inner_width sets N)
        self.unit_layout = f"state real parts 0..{n - 1}, imaginary parts {n}..{2 * n - 1}"
        self.units = 2 * n
        self.device, self.dtype = model.decoder.weight.device, model.decoder.weight.dtype

    @torch.no_grad()
    def warm(self, idx):
        return self.model(idx, None, parallel=False)[1]

    @torch.no_grad()
    def run(self, idx, state=None, clamp=None):
        """clamp: {layer (from 0): (units, values)} holds those state units at `values` at every step: values
        (len(units),) for constants, or (batch, time, len(units)) per step."""
        keep = []
        _, state = self.model(idx, state, parallel=False, keep=keep, clamp=clamp)
        return [{"cells": torch.cat([s.real, s.imag], dim=-1), "out": h} for s, h in keep], state

    @torch.no_grad()
    def logits(self, acts):
        """The model's logits (batch, time, vocab) from run()'s activations (dropout is off in evaluation)."""
        return self.model.decoder(self.model.ln_f(acts[-1]["out"]))
