"""Dynamic evaluation (Krause et al. 2018): a trained model keeps learning from the test text it has already
predicted. The test split is read once, piece after piece in text order, in segments of `segment` bytes; each
segment is predicted with the current weights, then one gradient step on that segment's loss adapts them:

    theta <- theta - lr * grad + decay * (theta_trained - theta)

(plain SGD with decay towards the trained weights, Krause et al.'s simplest rule), or with `rule: rms` Krause et
al.'s RMS rule: each weight's step divided by the root of its mean squared gradient on training text, and its pull
back towards the trained value proportional to that root. A byte is therefore used for
learning only after it has been predicted, and only bytes earlier in the text have adapted the weights that
predict it. Recurrent models carry their state through a piece (each piece first reads `warmup` bytes of the real
text before it, as in evaluation); the transformer reads each segment with the window of text before it.

The result is a predictor `{model}+dyn` with the same Parquet schema as any model.
"""

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rnnlens.errors import InputError
from rnnlens.model import DYNAMIC_SUFFIX
from rnnlens.predictions import write_predictions

log = logging.getLogger(__name__)


def _forward(model, x, state):
    from rnnlens.lru import ByteLRU

    if isinstance(model, ByteLRU):
        return model(x, state, parallel=True)  # the scan: same numbers as the step loop, and fast backward
    return model(x, state)


def _segments(model, encoded, pieces, segment, warmup):
    """Walk the pieces in text order, segment after segment. Yields (p, q, log-probabilities of the targets p..q-1
    with the graph attached, the targets); the recurrent state is carried through a piece, detached between
    segments, and was computed before the caller adapts the weights on the segment just yielded."""
    window = getattr(model, "window", 0)
    for a, b in pieces:
        if a < 1:
            raise InputError("a piece starting at the corpus's first byte has no input to predict it from")
        state = None
        if not window:
            warm = min(warmup, a - 1)
            if warm > 0:
                with torch.no_grad():
                    _, state = _forward(model, encoded[None, a - 1 - warm : a - 1], None)
        for p in range(a, b, segment):
            q = min(p + segment, b)  # targets p .. q-1 read inputs from p-1 (or the window before) to q-2
            start = max(0, q - 1 - window) if window else p - 1
            logits, new_state = _forward(model, encoded[None, start : q - 1], state)
            yield p, q, F.log_softmax(logits[0, p - 1 - start :].float(), dim=-1), encoded[p:q]
            state = None if new_state is None else (tuple(s.detach() for s in new_state)
                                                    if isinstance(new_state, tuple) else new_state.detach())


def gradient_ms(model, corpus, encoded, segment=100, warmup=2000, max_bytes=100_000):
    """Krause et al.'s MS: the mean squared gradient of a segment's loss, per weight, over the first `max_bytes` of
    the training split (read like the test split, no update); `encoded` is the corpus encoded on the model's
    device. -> a tensor per parameter."""
    params = list(model.parameters())
    pieces, left = [], max_bytes
    for a, b in corpus.pieces["train"]:
        if left <= 0:
            break
        a = max(a, 1)
        pieces.append((a, min(b, a + left)))
        left -= pieces[-1][1] - a
    sums, n = [torch.zeros_like(p) for p in params], 0
    for _, _, logprobs, y in _segments(model, encoded, pieces, segment, warmup):
        grads = torch.autograd.grad(F.nll_loss(logprobs, y), params, allow_unused=True)
        for total, grad in zip(sums, grads):
            if grad is not None:
                total += grad.detach() ** 2
        n += 1
    return [total / max(n, 1) for total in sums]


def dynamic_predict(model, corpus, lr=1e-4, decay=0.0, segment=100, warmup=2000, split="test", device="cpu",
                    rule="sgd", ms_bytes=100_000):
    """-> dict of numpy arrays over the split in position order: logp (true byte), argmax (vocabulary index),
    p_argmax. The model's weights are adapted in place (reload it to get the trained weights back).

    rule "sgd": theta -= lr * grad; decay pulls every weight back alike. rule "rms" (Krause et al.'s RMS rule):
    the step of each weight is divided by the root of its mean squared gradient on training text (gradient_ms), so
    every weight moves in units of its own usual gradient, and the pull back is proportional to that root over its
    mean (capped at 1): the weights whose gradients were large in training are held closest to their trained
    values."""
    if rule not in ("sgd", "rms"):
        raise InputError(f"evaluation.dynamic.rule {rule!r}: use sgd or rms")
    window = getattr(model, "window", 0)
    if window and segment > window:
        raise InputError(f"evaluation.dynamic.segment {segment} is longer than the transformer's window {window}")
    model = model.to(device).eval()  # no dropout while adapting
    params = list(model.parameters())
    trained = [p.detach().clone() for p in params]
    step_scale, decay_scale = [1.0] * len(params), [decay] * len(params)
    encoded = torch.from_numpy(corpus.encode(corpus.data)).to(device)
    if rule == "rms":
        roots = [ms.sqrt() for ms in gradient_ms(model, corpus, encoded, segment, warmup, ms_bytes)]
        mean_root = torch.cat([r.flatten() for r in roots]).mean()
        # a weight whose gradient was ~0 in training must not take a huge step on test text
        step_scale = [1.0 / (r + 1e-3 * mean_root) for r in roots]
        decay_scale = [(decay * r / mean_root).clamp(max=1.0) for r in roots]
    pieces = [(int(a), int(b)) for a, b in corpus.pieces[split] if b > a]
    total = sum(b - a for a, b in pieces)
    logp, argmax, p_argmax = (np.empty(total, np.float64), np.empty(total, np.int64), np.empty(total, np.float32))
    out, t0, steps = 0, time.time(), 0
    for p, q, logprobs, y in _segments(model, encoded, pieces, segment, warmup):
        # record the predictions first: they are made before the segment has taught the model anything
        with torch.no_grad():
            logp[out : out + q - p] = logprobs.gather(-1, y[:, None])[:, 0].double().cpu().numpy()
            best, arg = logprobs.max(-1)
            p_argmax[out : out + q - p] = best.exp().cpu().numpy()
            argmax[out : out + q - p] = arg.cpu().numpy()
        grads = torch.autograd.grad(F.nll_loss(logprobs, y), params, allow_unused=True)
        with torch.no_grad():
            for param, grad, theta0, scale, pull in zip(params, grads, trained, step_scale, decay_scale):
                if grad is not None:
                    param.sub_(lr * scale * grad)
                if decay:
                    param.add_(pull * (theta0 - param))
        out += q - p
        steps += 1
        if steps % 500 == 0:
            log.info(f"  dynamic evaluation: {out / total:6.1%} of {total} positions, {steps} updates "
                     f"({time.time() - t0:.0f} s)")
    return {"logp": logp, "argmax": argmax, "p_argmax": p_argmax, "updates": steps}


def add_dyneval_arguments(parser):
    parser.add_argument("--model", required=True, help="model.pt written by training")
    parser.add_argument("--data", required=True, help="prepared corpus data.json")
    parser.add_argument("--out", required=True, help="predictions Parquet of the {model}+dyn predictor")
    parser.add_argument("--model-id", required=True, help="the trained model's id (the predictor is ID+dyn)")
    parser.add_argument("--lr", type=float, required=True, help="learning rate of the adaptation")
    parser.add_argument("--rule", choices=("sgd", "rms"), default="sgd",
                        help="sgd, or Krause et al.'s RMS rule (steps scaled by training gradients)")
    parser.add_argument("--ms-bytes", type=int, default=100_000,
                        help="rms: training bytes over which the mean squared gradient is taken")
    parser.add_argument("--decay", type=float, default=0.0, help="pull back towards the trained weights per step")
    parser.add_argument("--segment", type=int, default=100, help="bytes predicted before each update")
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu, cuda, cuda:N")


def run_dyneval(args):
    """Test predictions of a trained model under dynamic evaluation (adapting on each test segment after
    predicting it), written as the predictor {model}+dyn."""
    from rnnlens.corpus import PreparedCorpus
    from rnnlens.model import load_model, pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.segment < 1 or args.lr <= 0 or not 0 <= args.decay < 1:
        raise InputError("need --segment >= 1, --lr > 0 and 0 <= --decay < 1 (evaluation.dynamic in the config)")
    device = pick_device(args.device)
    model, extra = load_model(args.model)
    corpus = PreparedCorpus.load(args.data)
    t0 = time.time()
    log.info(f"dynamic evaluation on {device}")
    result = dynamic_predict(model, corpus, args.lr, args.decay, args.segment, args.warmup, device=device,
                             rule=args.rule, ms_bytes=args.ms_bytes)
    predictor = args.model_id + DYNAMIC_SUFFIX
    spec = model.spec
    meta = {"model": predictor, "base_model": args.model_id, "corpus": corpus.name, "family": spec.arch,
            "arch": spec.arch + DYNAMIC_SUFFIX, "layers": spec.layers, "hidden": spec.hidden,
            "params": int(sum(p.numel() for p in model.parameters())), "best_val_loss": extra.get("best_val_loss"),
            "epochs_run": extra.get("epochs_run"), "dropout": (extra.get("train_config") or {}).get("dropout"),
            "converged": extra.get("converged"), "convergence": extra.get("convergence"),
            "window": getattr(model, "window", None) or None, "split_layout": corpus.layout,
            "dynamic": {"rule": args.rule, "lr": args.lr, "decay": args.decay, "segment": args.segment, "warmup": args.warmup,
                        "updates": result["updates"], "seconds": round(time.time() - t0, 1)}}
    meta = write_predictions(Path(args.out), corpus.split("test"), np.exp(result["logp"]).astype(np.float32),
                             corpus.vocab[result["argmax"]], result["p_argmax"], meta)
    log.info(f"{predictor} on {corpus.name}: test loss {meta['test_loss']:.4f} nats/char over "
             f"{meta['n_positions']} positions, {result['updates']} updates in {time.time() - t0:.0f} s")
    return 0
