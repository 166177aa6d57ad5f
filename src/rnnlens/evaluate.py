"""Test-set predictions of a trained model: every test position exactly once, each predicted after the model
has read the characters before it.

The test split is cut into `streams` contiguous pieces run as one batch. Each stream first reads the `warmup`
characters before its piece (reaching back into the validation and training text), so its first predictions
already have a settled state. The warm-up is clamped to the test split's offset so that all streams read the same
number of characters; with one stream and warmup >= that offset, the result is exactly one sequential pass over
the whole corpus. A warm-up far beyond the model's memory (the paper's longest-range cells track a few hundred
characters) makes the streamed predictions equal to the sequential ones to float precision (tests check both).
"""

from dataclasses import replace

import numpy as np
import torch

from rnnlens.corpus import PreparedCorpus
from rnnlens.predictions import write_predictions


def stream_layout(test_start, test_len, streams, warmup):
    """-> (piece_starts, piece_len, warmup) in corpus offsets; the last piece may run past the test end."""
    streams = max(1, min(streams, test_len))
    piece_len = -(-test_len // streams)
    warmup = min(warmup, test_start)  # cannot read before the corpus start
    starts = test_start + piece_len * np.arange(streams)
    starts = starts[starts < test_start + test_len]
    return starts, piece_len, warmup


@torch.no_grad()
def predict_test(model, corpus: PreparedCorpus, streams=100, warmup=2000, chunk=2000, device="cpu", log=print,
                 keep_probs=False):
    """-> dict of numpy arrays (target, p, argmax, p_argmax) over the test split, in position order; with
    keep_probs also `probs`, the full (positions, V) distributions (for small subsets: training dynamics)."""
    test_start, test_end = corpus.splits["test"]
    test_len = test_end - test_start
    starts, piece_len, warmup = stream_layout(test_start, test_len, streams, warmup)
    # Each row reads corpus[s - warmup - 1 : s + piece_len - 1] to predict corpus[s - warmup : s + piece_len];
    # pad the text so the last stream may run past the end (its extra outputs are dropped).
    encoded = corpus.encode(corpus.data)
    lookback = warmup + 1 if test_start >= warmup + 1 else warmup
    pad = piece_len + 1
    padded = np.concatenate([encoded, np.zeros(pad, dtype=encoded.dtype)])
    first_input = starts - lookback
    span = lookback + piece_len
    rows = np.stack([padded[a : a + span] for a in first_input])  # inputs
    x_all = torch.from_numpy(rows).to(device)
    vocab = torch.from_numpy(corpus.vocab.astype(np.int64)).to(device)

    model = model.to(device).eval()
    state = None
    n_rows = len(starts)
    p_out = np.empty((n_rows, piece_len), dtype=np.float32)
    am_out = np.empty((n_rows, piece_len), dtype=np.uint8)
    pam_out = np.empty((n_rows, piece_len), dtype=np.float32)
    probs_out = np.empty((n_rows, piece_len, corpus.vocab_size), dtype=np.float32) if keep_probs else None
    # output at input column j predicts corpus[first_input + j + 1]; the piece starts at column lookback - 1
    keep_from = lookback - 1
    targets_idx = np.stack([padded[a + 1 : a + 1 + span] for a in first_input])
    targets_t = torch.from_numpy(targets_idx).to(device)
    for col in range(0, span, chunk):
        x = x_all[:, col : col + chunk]
        logits, state = model(x, state)
        lo, hi = max(col, keep_from), min(col + x.shape[1], keep_from + piece_len)
        if hi <= lo:
            continue
        probs = torch.softmax(logits[:, lo - col : hi - col].float(), dim=-1)
        tgt = targets_t[:, lo:hi]
        p = probs.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        pam, am = probs.max(dim=-1)
        p_out[:, lo - keep_from : hi - keep_from] = p.cpu().numpy()
        pam_out[:, lo - keep_from : hi - keep_from] = pam.cpu().numpy()
        am_out[:, lo - keep_from : hi - keep_from] = vocab[am].cpu().numpy().astype(np.uint8)
        if keep_probs:
            probs_out[:, lo - keep_from : hi - keep_from] = probs.cpu().numpy()
    p = p_out.reshape(-1)[:test_len]
    extra = {"probs": probs_out.reshape(-1, corpus.vocab_size)[:test_len]} if keep_probs else {}
    return {
        **extra,
        "target": corpus.split("test"),
        "p": p,
        "argmax": am_out.reshape(-1)[:test_len],
        "p_argmax": pam_out.reshape(-1)[:test_len],
        "layout": {"streams": int(n_rows), "piece_len": int(piece_len), "warmup": int(warmup)},
    }


def test_prefix(corpus, count):
    """The same corpus with its test split cut to the first `count` positions (analyses on a subset)."""
    start, end = corpus.splits["test"]
    return replace(corpus, splits={**corpus.splits, "test": (start, min(end, start + count))})


def evaluate(model, extra, corpus, out_path, model_id, streams=100, warmup=2000, device="cpu", log=print):
    result = predict_test(model, corpus, streams=streams, warmup=warmup, device=device, log=log)
    meta = {
        "model": model_id,
        "corpus": corpus.name,
        "family": model.spec.arch,
        "arch": model.spec.arch,
        "layers": model.spec.layers,
        "hidden": model.spec.hidden,
        "params": int(sum(p.numel() for p in model.parameters())),
        "best_val_loss": extra.get("best_val_loss"),
        "epochs_run": extra.get("epochs_run"),
        "converged": extra.get("converged"), "convergence": extra.get("convergence"),
        "evaluation": result["layout"],
    }
    meta = write_predictions(out_path, result["target"], result["p"], result["argmax"], result["p_argmax"], meta)
    log(f"{model_id} on {corpus.name}: test loss {meta['test_loss']:.4f} nats/char over {meta['n_positions']} positions")
    return meta
