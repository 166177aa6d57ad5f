"""A small causal byte-level transformer decoder, in the manner of nanoGPT: token embedding, `layers` pre-norm
blocks (LayerNorm -> multi-head causal self-attention -> residual; LayerNorm -> 4x GELU MLP -> residual), a final
LayerNorm and a linear decoder.

Positions are given by rotary embeddings (RoPE) on queries and keys: no parameters, so the parameter count (and
the width matched to a budget) does not depend on the context window, and the model reads any input of at most
`window` bytes. Attention is torch's scaled_dot_product_attention with is_causal=True.

The model keeps no state between calls: `forward(idx, state)` ignores `state` and returns None for it, so it
trains on the same truncated-BPTT batches as the recurrent models (each batch a fresh context). Evaluation gives
every byte up to `window` bytes of real preceding text with strided windows (`predict_rows_windowed`).
"""

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rnnlens.errors import InputError

MLP_RATIO = 4
WIDTH_MULTIPLE = 8  # widths are multiples of 8, so 1, 2, 4 (and for multiples of 16, 8) heads of even size fit


def count_parameters(layers, hidden, vocab_size):
    """Equals sum(p.numel()) of ByteTransformer: embedding, per block two LayerNorms, qkv and output projections,
    the MLP, then the final LayerNorm and the decoder (all with biases)."""
    d, m = hidden, MLP_RATIO * hidden
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
    def __init__(self, hidden, heads, dropout):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden)
        self.fc = nn.Linear(hidden, MLP_RATIO * hidden)
        self.out = nn.Linear(MLP_RATIO * hidden, hidden)
        self.drop = nn.Dropout(dropout)
        self.dropout = dropout

    def attention(self, x):
        batch, steps, hidden = x.shape
        q, k, v = self.qkv(x).view(batch, steps, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(rotary(q), rotary(k), v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.drop(self.proj(y.transpose(1, 2).reshape(batch, steps, hidden)))

    def forward(self, x, keep=None):
        """keep: a list that receives the MLP neurons (after GELU), for internals."""
        x = x + self.attention(self.ln1(x))
        neurons = F.gelu(self.fc(self.ln2(x)))
        if keep is not None:
            keep.append(neurons)
        return x + self.drop(self.out(neurons))


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
        self.blocks = nn.ModuleList(Block(spec.hidden, spec.heads, spec.dropout) for _ in range(spec.layers))
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

    def forward(self, idx, state=None, keep=None):
        """idx (batch, time) with time <= window -> logits (batch, time, vocab), None (no carried state).
        keep: a list that receives per block {"resid": (batch, time, hidden), "mlp": (batch, time, 4 hidden)}."""
        if idx.shape[1] > self.window:
            raise ValueError(f"input of {idx.shape[1]} bytes is longer than the transformer's window {self.window}; "
                             "set training.seq_len <= training.window")
        x = self.drop(self.embed(idx))
        for block in self.blocks:
            neurons = [] if keep is not None else None
            x = block(x, neurons)
            if keep is not None:
                keep.append({"resid": x, "mlp": neurons[0]})
        return self.decoder(self.drop(self.ln_f(x))), None


def window_blocks(rows, window, stride):
    """Strided windows covering batch rows (corpus start, length): every position of every row is predicted
    exactly once, by the window whose last `stride` outputs cover it, from at most `window` bytes of real text
    before it (at least window - stride + 1 where the corpus allows).

    -> list of (input start, input length, first target column, targets, out offset): the window reads the
    corpus from `input start` for `input length` bytes; its outputs from `first target column` on predict
    `targets` consecutive positions, stored at `out offset` in the rows' concatenated output."""
    blocks, offset = [], 0
    for start, length in rows:
        for p in range(start, start + length, stride):
            end = min(p + stride, start + length)  # targets p .. end-1, read from inputs a .. end-2
            a = max(0, end - 1 - window)
            if p - 1 < a or p < 1:
                raise InputError("a row starting at the corpus's first byte has no input to predict it from")
            blocks.append((a, end - 1 - a, p - 1 - a, end - p, offset + p - start))
        offset += length
    return blocks


@torch.no_grad()
def predict_rows_windowed(model, encoded, rows, device="cpu", keep_probs=False, vocab=None, stride=None,
                          batch=64):
    """predict_rows for a model without state: every position of the rows once, from at most model.window bytes
    of the real text before it (strided windows, stride window // 2 by default). Same result dict as
    rnnlens.evaluate.predict_rows."""
    window = model.window
    stride = stride or max(1, window // 2)
    blocks = window_blocks(rows, window, stride)
    total = sum(length for _, length in rows)
    logp_out = np.empty(total, dtype=np.float64)
    am_out = np.empty(total, dtype=np.int64)
    pam_out = np.empty(total, dtype=np.float32)
    probs_out = np.empty((total, model.spec.vocab_size), dtype=np.float32) if keep_probs else None
    model = model.to(device).eval()
    encoded = encoded.to(device)
    by_length = {}
    for block in blocks:  # windows of one length run as one batch (all but a few have the full window)
        by_length.setdefault(block[1], []).append(block)
    for length, group in by_length.items():
        for i in range(0, len(group), batch):
            part = group[i : i + batch]
            starts = torch.tensor([b[0] for b in part], device=device)
            index = starts[:, None] + torch.arange(length + 1, device=device)[None, :]
            window_bytes = encoded[index]
            logits, _ = model(window_bytes[:, :-1])
            logprobs = F.log_softmax(logits.float(), dim=-1)
            for row, (_, _, first, n, out) in enumerate(part):
                lp = logprobs[row, first : first + n]
                target = window_bytes[row, first + 1 : first + 1 + n]
                logp_out[out : out + n] = lp.gather(-1, target[:, None])[:, 0].double().cpu().numpy()
                best, arg = lp.max(dim=-1)
                pam_out[out : out + n] = best.exp().cpu().numpy()
                am_out[out : out + n] = arg.cpu().numpy()
                if keep_probs:
                    probs_out[out : out + n] = lp.exp().cpu().numpy()
    result = {"logp": logp_out, "argmax": am_out, "p_argmax": pam_out,
              "layout": {"rows": len(rows), "window": window, "stride": stride, "windows": len(blocks)}}
    if vocab is not None:
        result["argmax"] = np.asarray(vocab, dtype=np.uint8)[result["argmax"]]
    if keep_probs:
        result["probs"] = probs_out
    return result


@torch.no_grad()
def windowed_internals(model, corpus, rows, stride=None, batch=64):
    """Per-layer activations (residual stream after the block, then its MLP neurons: 5 x hidden units) after
    reading each position of the rows (rows in split order), each from at most `window` bytes ending at it, with
    the windows of evaluation moved one byte on. Yields (pos, acts): pos (windows, stride) split indices (-1:
    padding), acts a list over layers of (windows, stride, 5 hidden)."""
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
            acts = [torch.zeros(len(part), stride, 5 * model.spec.hidden) for _ in keep]
            for row, (_, _, first, n, out) in enumerate(part):
                pos[row, :n] = out + np.arange(n)
                for k, layer in enumerate(keep):
                    acts[k][row, :n] = torch.cat([layer["resid"][row, first : first + n],
                                                  layer["mlp"][row, first : first + n]], dim=-1).cpu()
            yield pos, acts
