"""A small causal byte-level transformer decoder, in the manner of nanoGPT: token embedding, `layers` pre-norm
blocks (LayerNorm -> multi-head causal self-attention -> residual; LayerNorm -> GELU MLP -> residual), a final
LayerNorm and a linear decoder.

The MLP's width is the model's second width (spec.inner; 0: 4 x hidden, nanoGPT's). The width steps by 8 so that
the heads divide it, and at small budgets one step moves the count too far (with a 4x MLP, transformer-1x64 on War
and Peace was 7.8% over its budget), so `inner_width` sets the MLP width that brings the count to the budget: the
widths matched to a budget keep the MLP near 4x and come within a fraction of a percent of it.

Positions are given by rotary embeddings (RoPE) on queries and keys: no parameters, so the parameter count (and
the width matched to a budget) does not depend on the context window, and the model reads any input of at most
`window` bytes. Attention is torch's scaled_dot_product_attention with is_causal=True.

The model keeps no state between calls: `forward(idx, state)` ignores `state` and returns None for it, so it
trains on the same truncated-BPTT batches as the recurrent models (each batch a fresh context). Evaluation gives
every byte up to `window` bytes of real preceding text with strided windows
(rnnlens.evaluate.predict_rows_windowed), as it does any model with a `window`.

Interventions (rnnlens.interventions) clamp the internals' units: a unit of the residual stream after a block
(0..H-1) or an MLP neuron after its GELU (H..H+M-1, M its MLP width), held at every position of every window it
is evaluated in. There is no recurrence to clamp: a held unit acts on every position's activation in its window, and
every later position reads it through attention, every later block through the residual stream.
"""

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rnnlens.archs import Kind
from rnnlens.errors import InputError
from rnnlens.evaluate import window_blocks
from rnnlens.model import closest_inner

MLP_RATIO = 4
WIDTH_MULTIPLE = 8  # widths are multiples of 8, so 1, 2, 4 (and for multiples of 16, 8) heads of even size fit
WINDOW_PER_SEQ_LEN = 4  # the default context window: this many training sequences


# --- the architecture protocol (rnnlens.archs) ---------------------------------------------------------------------

def build_model(spec):
    return ByteTransformer(spec)


def internals_runner(model, method="auto"):
    return WindowedRunner(model)


def training_defaults(arch, settings):
    """AdamW with a short warm-up and norm clipping (the paper's RMSProp recipe is for the RNNs), and a context
    window of a few training sequences unless one is set."""
    defaults = {"optimizer": "adamw", "learning_rate": 3e-3, "lr_warmup_steps": 200, "grad_clip_mode": "norm",
                "grad_clip": 1.0}
    if not settings.get("window"):
        defaults["window"] = WINDOW_PER_SEQ_LEN * int(settings.get("seq_len", 100))
    return defaults


def spec_options(arch, settings):
    return {"window": int(settings.get("window") or 0), "heads": int(settings.get("heads") or 4)}


def width_step(arch):
    return WIDTH_MULTIPLE


def inner_width(arch, layers, hidden, vocab_size, budget):
    """The MLP width (at least 1) whose count at this width is closest to the budget; ties: the smaller. Any
    integer: its neurons are not split among the heads."""
    return closest_inner(lambda m: count_parameters(arch, layers, hidden, vocab_size, m), budget)


def mlp_width(spec):
    return spec.inner or MLP_RATIO * spec.hidden


def style(arch):
    return {"colormap": "Reds", "marker": "P"}


def describe(arch):
    return "a transformer"


def count_parameters(arch, layers, hidden, vocab_size, inner=0):
    """Equals sum(p.numel()) of ByteTransformer: embedding, per block two LayerNorms, qkv and output projections,
    the MLP (width `inner`; 0: 4 x hidden), then the final LayerNorm and the decoder (all with biases)."""
    d, m = hidden, inner or MLP_RATIO * hidden
    block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * m + m) + (m * d + d)
    return vocab_size * d + layers * block + 2 * d + d * vocab_size + vocab_size


def rotary(x, base=10000.0):
    """Rotary position embedding of x (batch, heads, time, head_dim): pairs of channels rotated by angles that
    grow with the position, so that q.k depends on the positions only through their difference."""
    _, _, steps, dim = x.shape
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, device=x.device, dtype=torch.float32) / dim))
    angles = torch.arange(steps, device=x.device, dtype=torch.float32)[:, None] * inv_freq[None, :]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, hidden, heads, dropout, mlp):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden)
        self.fc = nn.Linear(hidden, mlp)
        self.out = nn.Linear(mlp, hidden)
        self.drop = nn.Dropout(dropout)
        self.dropout = dropout

    def attention(self, x):
        batch, steps, hidden = x.shape
        q, k, v = self.qkv(x).view(batch, steps, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(rotary(q), rotary(k), v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.drop(self.proj(y.transpose(1, 2).reshape(batch, steps, hidden)))

    def forward(self, x, keep=None, hold=None):
        """keep: a list that receives the MLP neurons (after GELU), for internals. hold: (units, values) of a
        clamp in the internals' layout (residual stream after the block 0..H-1, MLP neurons H..H+M-1), values (units,)
        or (batch, time, units), written in at every position before anything reads them."""
        x = x + self.attention(self.ln1(x))
        neurons = F.gelu(self.fc(self.ln2(x)))
        if hold is not None:
            hold_units(neurons, *hold, first=x.shape[-1])
        if keep is not None:
            keep.append(neurons)
        x = x + self.drop(self.out(neurons))
        if hold is not None:
            hold_units(x, *hold, first=0)
        return x


def hold_units(acts, units, values, first):
    """Write `values` in place into the units of acts (batch, time, width) numbered first..first+width-1 in the
    internals' layout; units outside that range are left to the other part."""
    units = torch.as_tensor(units, dtype=torch.long, device=acts.device)
    values = torch.as_tensor(values, dtype=acts.dtype, device=acts.device)
    mine = (units >= first) & (units < first + acts.shape[-1])
    if mine.any():
        acts[..., units[mine] - first] = values[..., mine]


class ByteTransformer(nn.Module):
    def __init__(self, spec):
        super().__init__()
        if spec.window < 1:
            raise InputError("a transformer needs a context window: set training.window (e.g. in "
                             "training_overrides.transformer)")
        if spec.hidden % spec.heads or (spec.hidden // spec.heads) % 2:
            raise InputError(f"transformer width {spec.hidden} is not a multiple of 2 x heads ({spec.heads}); "
                             "use training.heads 1, 2 or 4")
        self.spec = spec
        self.window = spec.window
        self.embed = nn.Embedding(spec.vocab_size, spec.hidden)
        self.mlp = mlp_width(spec)
        self.blocks = nn.ModuleList(Block(spec.hidden, spec.heads, spec.dropout, self.mlp)
                                    for _ in range(spec.layers))
        self.ln_f = nn.LayerNorm(spec.hidden)
        self.drop = nn.Dropout(spec.dropout)
        self.decoder = nn.Linear(spec.hidden, spec.vocab_size)

    def init_weights(self, scale=None):
        """GPT-2's initialisation (the paper's uniform(-0.08, 0.08) suits LSTMs, not residual stacks): normal(0,
        0.02) weights, zero biases, LayerNorms at identity, residual projections scaled by 1/sqrt(2 layers)."""
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif ".ln" in name or name.startswith("ln_"):
                nn.init.ones_(p)
            else:
                std = 0.02 / math.sqrt(2 * self.spec.layers) if name.endswith(("proj.weight", "out.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def init_state(self, batch, device=None):
        return None

    def forward(self, idx, state=None, keep=None, clamp=None):
        """idx (batch, time) with time <= window -> logits (batch, time, vocab), None (no carried state).
        keep: a list that receives per block {"resid": (batch, time, hidden), "mlp": (batch, time, MLP width)}.
        clamp: {block (from 0): (units, values)} held at every position (Block.forward's hold)."""
        if idx.shape[1] > self.window:
            raise ValueError(f"input of {idx.shape[1]} bytes is longer than the transformer's window {self.window}; "
                             "set training.seq_len <= training.window")
        x = self.drop(self.embed(idx))
        for k, block in enumerate(self.blocks):
            neurons = [] if keep is not None else None
            x = block(x, neurons, (clamp or {}).get(k))
            if keep is not None:
                keep.append({"resid": x, "mlp": neurons[0]})
        return self.decoder(self.drop(self.ln_f(x))), None


@torch.no_grad()
def windowed_internals(model, corpus, rows, stride=None, batch=64):
    """Per-layer activations (residual stream after the block, then its MLP neurons: hidden + MLP width units) after
    reading each position of the rows (rows in split order), each from at most `window` bytes ending at it, with
    the windows of evaluation moved one byte on. Yields (pos, acts): pos (windows, stride) split indices (-1:
    padding), acts a list over layers of (windows, stride, hidden + MLP width)."""
    window = model.window
    stride = stride or max(1, window // 2)
    blocks = window_blocks(rows, window, stride)
    encoded = torch.from_numpy(corpus.encode(corpus.data))
    by_length = {}
    for block in blocks:
        by_length.setdefault(block[1], []).append(block)
    for length, group in by_length.items():
        for i in range(0, len(group), batch):
            part = group[i : i + batch]
            starts = torch.tensor([b[0] for b in part])
            index = starts[:, None] + 1 + torch.arange(length)[None, :]  # column c reads byte a + 1 + c
            keep = []
            model(encoded[index].to(next(model.parameters()).device), keep=keep)
            pos = np.full((len(part), stride), -1, dtype=np.int64)
            acts = [torch.zeros(len(part), stride, model.spec.hidden + model.mlp) for _ in keep]
            for row, (_, _, first, n, out) in enumerate(part):
                pos[row, :n] = out + np.arange(n)
                for k, layer in enumerate(keep):
                    acts[k][row, :n] = torch.cat([layer["resid"][row, first : first + n],
                                                  layer["mlp"][row, first : first + n]], dim=-1).cpu()
            yield pos, acts


class WindowedRunner:
    """Internals of a ByteTransformer for rnnlens.internals: per layer the residual stream after the block (units
    0..H-1) then its M MLP neurons (H..H+M-1), each position read from the windows of evaluation moved one byte
    on.

    For interventions, run(idx, None, clamp) reads one window (batch, time <= window) from its start, with the
    held units written in at every position of it; there is no state to carry (it returns None), and logits()
    decodes the last block's residual stream."""

    method = "windowed"
    supports_clamp = True
    kinds = {"cells": Kind(None, None)}
    cell_kind = "cells"

    def __init__(self, model):
        self.model = model.eval()
        self.units = model.spec.hidden + model.mlp
        hidden = model.spec.hidden
        self.unit_layout = f"residual stream 0..{hidden - 1}, MLP neurons {hidden}..{self.units - 1}"

    def stream(self, corpus, rows, warmup=0, chunk=0):
        for pos, acts in windowed_internals(self.model, corpus, rows):
            yield pos, [{"cells": a} for a in acts]

    @torch.no_grad()
    def run(self, idx, state=None, clamp=None):
        """clamp: {layer (from 0): (units, values)}, values (len(units),) or (batch, time, len(units))."""
        keep = []
        self.model(idx, keep=keep, clamp=clamp)
        return [{"cells": torch.cat([k["resid"], k["mlp"]], dim=-1)} for k in keep], None

    @torch.no_grad()
    def logits(self, acts):
        """The model's logits (batch, time, vocab) from run()'s activations (dropout is off in evaluation)."""
        return self.model.decoder(self.model.ln_f(acts[-1]["cells"][..., : self.model.spec.hidden]))
