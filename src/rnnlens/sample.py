"""Generate text from a trained model, as char-rnn's sample.lua: priming text, temperature, length, seed."""

import sys

import numpy as np
import torch

from rnnlens.errors import InputError
from rnnlens.io import atomic_write_bytes
from rnnlens.model import load_model


@torch.no_grad()
def sample(model, vocab, length=500, temperature=1.0, prime=b"", seed=1, argmax=False):
    """-> bytes: the priming text followed by `length` sampled bytes."""
    if temperature <= 0:
        raise InputError("temperature must be > 0 (use --argmax for greedy decoding)")
    vocab = np.asarray(vocab, dtype=np.uint8)
    index = {int(b): i for i, b in enumerate(vocab)}
    unknown = sorted({b for b in prime if b not in index})
    if unknown:
        raise InputError(f"priming text has bytes the model never saw: {[bytes([b]) for b in unknown]}")
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    state = None
    # an empty prime starts from a newline when the corpus has one, else from the first vocabulary byte
    start = list(prime) or [10 if 10 in index else int(vocab[0])]
    logits, state = model(torch.tensor([[index[b] for b in start]]), state)
    out = bytearray(prime)
    for _ in range(length):
        last = logits[0, -1].float()
        if argmax:
            nxt = int(last.argmax())
        else:
            probs = torch.softmax(last / temperature, dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=generator))
        out.append(int(vocab[nxt]))
        logits, state = model(torch.tensor([[nxt]]), state)
    return bytes(out)


def add_sample_arguments(parser):
    parser.add_argument("model", help="a trained model.pt")
    parser.add_argument("-n", "--length", type=int, default=500)
    parser.add_argument("-t", "--temperature", type=float, default=1.0)
    parser.add_argument("-p", "--prime", default="", help="priming text (backslash escapes such as \\n allowed)")
    parser.add_argument("-s", "--seed", type=int, default=1)
    parser.add_argument("--argmax", action="store_true", help="greedy decoding instead of sampling")
    parser.add_argument("-o", "--out", help="write to this file instead of stdout")


def run_sample(args):
    model, extra = load_model(args.model)
    prime = args.prime.encode("utf-8").decode("unicode_escape").encode("latin-1") if args.prime else b""
    text = sample(model, extra["vocab"], args.length, args.temperature, prime, args.seed, args.argmax)
    if args.out:
        atomic_write_bytes(args.out, text)
    else:
        sys.stdout.buffer.write(text + b"\n")
        sys.stdout.flush()
    return 0
