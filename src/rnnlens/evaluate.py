"""Predictions of a trained model on a split: every position exactly once, each predicted after the model
has read the real text before it.

A split is a list of pieces (one for the contiguous layout, one per row for char-rnn's rows layout). The pieces
are cut into batch rows (`streams` in all, never across a seam) and run as one batch; each row first reads the
`warmup` characters of the real text before it (reaching back into other splits), so its first predictions
already have a settled state. The warm-up is clamped to the earliest row's offset so that all rows read the same
number of characters; with one row and warmup >= that offset, the result is exactly one sequential pass over
the corpus. A warm-up far beyond the model's memory (the paper's longest-range cells track a few hundred
characters) makes the batched predictions equal to the sequential ones to float precision (tests check both).
"""

import logging

import numpy as np
import torch
import torch.nn.functional as F

from rnnlens.corpus import PreparedCorpus
from rnnlens.errors import InputError
from rnnlens.predictions import write_predictions

log = logging.getLogger(__name__)


def batch_rows(pieces, streams):
    """Cut a split's pieces into batch rows -> list of (corpus start, length).

    With at least `streams` pieces, every piece is one row; otherwise each piece is cut into equal rows in
    proportion to its length, so that there are about `streams` rows, none crossing a seam."""
    pieces = [(int(a), int(b)) for a, b in pieces if b > a]
    total = sum(b - a for a, b in pieces)
    if not pieces:
        return []
    if len(pieces) >= streams:
        return [(a, b - a) for a, b in pieces]
    rows = []
    for a, b in pieces:
        count = max(1, min(b - a, round(streams * (b - a) / total)))
        length = -(-(b - a) // count)
        rows += [(start, min(length, b - start)) for start in range(a, b, length)]
    return rows


def stream_layout(rows, warmup):
    """-> (lookback, warmup) shared by all rows: a row starting at s reads from s - lookback, and predicts from
    s - warmup on (its first `warmup` predictions are discarded)."""
    first = min(start for start, _ in rows)
    if first < 1:
        raise ValueError("a row starting at the corpus's first byte has no input to predict it from")
    warmup = max(0, min(warmup, first - 1))
    return warmup + 1, warmup


@torch.no_grad()
def predict_rows(model, encoded, rows, warmup=2000, chunk=2000, device="cpu", keep_probs=False, vocab=None,
                 forward=None):
    """Run batch rows (corpus start, length) over the encoded corpus (int64 tensor of vocabulary indices).

    -> dict of numpy arrays over the rows' positions, in row order: logp (float64, log-probability of the true
    byte), argmax (vocabulary index, or byte when `vocab` is given), p_argmax, and with keep_probs `probs`.
    A model with a `window` (no carried state: the transformer) reads each position's window of real text
    instead of a warm-up (predict_rows_windowed). `forward(idx, state, positions) -> (logits, state)` replaces
    the model's own forward (an intervention, rnnlens.interventions); positions (rows, time) are the corpus
    offsets of idx's bytes (a windowed model's forward reads one window each time, with state None)."""
    if getattr(model, "window", None):
        return predict_rows_windowed(model, encoded, rows, device=device, keep_probs=keep_probs, vocab=vocab,
                                     forward=forward)
    lookback, warmup = stream_layout(rows, warmup)
    starts = np.array([start for start, _ in rows], dtype=np.int64)
    lengths = np.array([length for _, length in rows], dtype=np.int64)
    span = lookback + int(lengths.max())
    # input column j of a row is corpus[start - lookback + j] and predicts corpus[start - lookback + j + 1];
    # past the corpus end a row reads padding whose outputs are dropped
    padded = torch.cat([encoded, torch.zeros(span + 1, dtype=encoded.dtype, device=encoded.device)])
    index = (torch.from_numpy(starts - lookback)[:, None] + torch.arange(span)[None, :]).to(encoded.device)
    x_all = padded[index].to(device)
    targets_all = padded[index + 1].to(device)
    keep_from = lookback - 1  # the column whose output predicts the row's first byte
    n_rows, width = len(rows), int(lengths.max())
    logp_out = np.empty((n_rows, width), dtype=np.float64)
    am_out = np.empty((n_rows, width), dtype=np.int64)
    pam_out = np.empty((n_rows, width), dtype=np.float32)
    probs_out = np.empty((n_rows, width, model.spec.vocab_size), dtype=np.float32) if keep_probs else None
    model = model.to(device).eval()
    state = None
    for col in range(0, span, chunk):
        if forward is None:
            logits, state = model(x_all[:, col : col + chunk], state)
        else:
            logits, state = forward(x_all[:, col : col + chunk], state, index[:, col : col + chunk])
        lo, hi = max(col, keep_from), min(col + logits.shape[1], keep_from + width)
        if hi <= lo:
            continue
        logprobs = F.log_softmax(logits[:, lo - col : hi - col].float(), dim=-1)
        out = slice(lo - keep_from, hi - keep_from)
        logp_out[:, out] = logprobs.gather(-1, targets_all[:, lo:hi].unsqueeze(-1)).squeeze(-1).double().cpu().numpy()
        lpam, am = logprobs.max(dim=-1)
        pam_out[:, out] = lpam.exp().cpu().numpy()
        am_out[:, out] = am.cpu().numpy()
        if keep_probs:
            probs_out[:, out] = logprobs.exp().cpu().numpy()
    keep = np.arange(width)[None, :] < lengths[:, None]  # row-major: row after row, each its own length
    result = {"logp": logp_out[keep], "argmax": am_out[keep], "p_argmax": pam_out[keep],
              "layout": {"rows": n_rows, "row_len": width, "warmup": int(warmup)}}
    if vocab is not None:
        result["argmax"] = np.asarray(vocab, dtype=np.uint8)[result["argmax"]]
    if keep_probs:
        result["probs"] = probs_out[keep]
    return result


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
                          batch=64, forward=None):
    """predict_rows for a model without state: every position of the rows once, from at most model.window bytes
    of the real text before it (strided windows, stride window // 2 by default). Same result dict as
    rnnlens.evaluate.predict_rows; `forward` as there, called once per batch of windows."""
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
            if forward is None:
                logits, _ = model(window_bytes[:, :-1])
            else:
                logits, _ = forward(window_bytes[:, :-1], None, index[:, :-1])
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


def predict_test(model, corpus: PreparedCorpus, streams=100, warmup=2000, chunk=2000, device="cpu",
                 keep_probs=False, split="test"):
    """-> dict of numpy arrays (target, p, argmax, p_argmax) over the split, in position order (piece after
    piece); with keep_probs also `probs`, the full (positions, V) distributions (small subsets: dynamics)."""
    rows = batch_rows(corpus.pieces[split], streams)
    encoded = torch.from_numpy(corpus.encode(corpus.data))
    result = predict_rows(model, encoded, rows, warmup=warmup, chunk=chunk, device=device, keep_probs=keep_probs,
                          vocab=corpus.vocab)
    result["p"] = np.exp(result.pop("logp")).astype(np.float32)
    result["target"] = corpus.split(split)
    return result


def split_loss(model, encoded, rows, warmup, device="cpu"):
    """Mean cross-entropy (nats/char) over batch rows, each warmed up on the text before it (validation)."""
    return float(-predict_rows(model, encoded, rows, warmup=warmup, device=device)["logp"].mean())


def evaluate(model, extra, corpus, out_path, model_id, streams=100, warmup=2000, device="cpu"):
    result = predict_test(model, corpus, streams=streams, warmup=warmup, device=device)
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
        "dropout": (extra.get("train_config") or {}).get("dropout"),
        "dropout_selection": extra.get("dropout_selection"),
        "evaluation": {**result["layout"], "streams": streams},
        "window": getattr(model, "window", None),
        "split_layout": corpus.layout,
        "converged": extra.get("converged"), "convergence": extra.get("convergence"),
    }
    meta = write_predictions(out_path, result["target"], result["p"], result["argmax"], result["p_argmax"], meta)
    log.info(f"{model_id} on {corpus.name}: test loss {meta['test_loss']:.4f} nats/char "
             f"over {meta['n_positions']} positions")
    return meta


def add_evaluate_arguments(parser):
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--model-id")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)


def run_evaluate(args):
    from pathlib import Path

    from rnnlens.model import load_model, pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    model, extra = load_model(args.model)
    corpus = PreparedCorpus.load(args.data)
    model_id = args.model_id or extra.get("model_id", Path(args.model).parent.name)
    evaluate(model, extra, corpus, args.out, model_id, streams=args.streams, warmup=args.warmup,
             device=pick_device(args.device))
    return 0
