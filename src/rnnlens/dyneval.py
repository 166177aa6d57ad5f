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

The setting is chosen per model on validation, as dropout is: every (lr, decay) of the grid
`evaluation.dynamic.lr` x `decay` adapts over the same validation pieces (at most `val_bytes` bytes, whole pieces
spread evenly through the split), and the one with the lowest adapted validation loss wins, but only if it beats the
static reading of the same pieces. When none does, dynamic evaluation cannot help this model here: the predictor
is then the static reading of the test split (no adaptation), and it is flagged. The test split is also read once
statically; an adapted test loss worse than that is flagged too (validation chose the setting, the test disagrees).
A flag is a WARNING in the log and `dynamic.flag` in the predictions' metadata, which also holds the chosen
setting, every candidate's validation loss and the static one; Table 1 and the figures repeat it.

The result is a predictor `{model}+dyn` with the same Parquet schema as any model.
"""

import itertools
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rnnlens.errors import InputError
from rnnlens.ids import DYNAMIC_SUFFIX
from rnnlens.predictions import mean_nats, write_predictions

log = logging.getLogger(__name__)


def _forward(model, x, state):
    # with gradients on, every architecture runs its training-time path (the LRU its parallel scan)
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


def _rule_scales(model, corpus, encoded, rule, segment, warmup, ms_bytes):
    """Per parameter: (step scale, pull scale per unit decay). sgd: 1 and 1 for every weight; rms: Krause et al.'s
    RMS rule, from the mean squared gradients on training text (taken once, with the trained weights)."""
    params = list(model.parameters())
    if rule == "sgd":
        return [1.0] * len(params), [1.0] * len(params)
    roots = [ms.sqrt() for ms in gradient_ms(model, corpus, encoded, segment, warmup, ms_bytes)]
    mean_root = torch.cat([r.flatten() for r in roots]).mean()
    # a weight whose gradient was ~0 in training must not take a huge step on test text
    return [1.0 / (r + 1e-3 * mean_root) for r in roots], [r / mean_root for r in roots]


def _read(model, encoded, pieces, segment, warmup, lr=0.0, decay=0.0, scales=None, stop_if_nonfinite=False,
          progress=False):
    """One reading of `pieces` in text order. lr == 0: the weights as they are (static, no gradients); lr > 0:
    adapt after each segment (the weights change in place). -> dict of numpy arrays over the pieces' positions:
    logp, argmax, p_argmax, and `updates`. With stop_if_nonfinite, a reading whose loss stops being finite ends
    there (`finite` False): the weights have diverged and the rest cannot be better."""
    params = list(model.parameters())
    adapt = lr > 0
    step_scale, pull_scale = scales or ([1.0] * len(params), [1.0] * len(params))
    trained = [p.detach().clone() for p in params] if adapt and decay else None
    pulls = [(decay * s).clamp(max=1.0) if torch.is_tensor(s) else min(decay * s, 1.0) for s in pull_scale]
    total = sum(b - a for a, b in pieces)
    logp, argmax, p_argmax = (np.empty(total, np.float64), np.empty(total, np.int64), np.empty(total, np.float32))
    out, t0, steps, finite = 0, time.time(), 0, True
    with torch.set_grad_enabled(adapt):
        for p, q, logprobs, y in _segments(model, encoded, pieces, segment, warmup):
            # record the predictions first: they are made before the segment has taught the model anything
            with torch.no_grad():
                logp[out : out + q - p] = logprobs.gather(-1, y[:, None])[:, 0].double().cpu().numpy()
                best, arg = logprobs.max(-1)
                p_argmax[out : out + q - p] = best.exp().cpu().numpy()
                argmax[out : out + q - p] = arg.cpu().numpy()
            if stop_if_nonfinite and not np.isfinite(logp[out : out + q - p]).all():
                finite = False
                break
            if adapt:
                grads = torch.autograd.grad(F.nll_loss(logprobs, y), params, allow_unused=True)
                with torch.no_grad():
                    for i, (param, grad) in enumerate(zip(params, grads)):
                        if grad is not None:
                            param.sub_(lr * step_scale[i] * grad)
                        if decay:
                            param.add_(pulls[i] * (trained[i] - param))
                steps += 1
            out += q - p
            if progress and steps % 500 == 0:
                log.info(f"  dynamic evaluation: {out / total:6.1%} of {total} positions, {steps} updates "
                         f"({time.time() - t0:.0f} s)")
    return {"logp": logp[:out], "argmax": argmax[:out], "p_argmax": p_argmax[:out], "updates": steps,
            "finite": finite and bool(np.isfinite(logp[:out]).all())}


def _check(model, rule, segment, lrs=(), decays=()):
    if rule not in ("sgd", "rms"):
        raise InputError(f"evaluation.dynamic.rule {rule!r}: use sgd or rms")
    window = getattr(model, "window", 0)
    if window and segment > window:
        raise InputError(f"evaluation.dynamic.segment {segment} is longer than the model's window {window}")
    if segment < 1 or any(not lr > 0 for lr in lrs) or any(not 0 <= d < 1 for d in decays):
        raise InputError(f"dynamic evaluation needs segment >= 1 (got {segment}), every lr > 0 (got {list(lrs)}) "
                         f"and every decay in [0, 1) (got {list(decays)}); fix evaluation.dynamic in the config")


def dynamic_predict(model, corpus, lr=1e-4, decay=0.0, segment=100, warmup=2000, split="test", device="cpu",
                    rule="sgd", ms_bytes=100_000):
    """One fixed setting, no selection -> dict of numpy arrays over the split in position order: logp (true byte),
    argmax (vocabulary index), p_argmax. The model's weights are adapted in place (reload it to get the trained
    weights back).

    rule "sgd": theta -= lr * grad; decay pulls every weight back alike. rule "rms" (Krause et al.'s RMS rule):
    the step of each weight is divided by the root of its mean squared gradient on training text (gradient_ms), so
    every weight moves in units of its own usual gradient, and the pull back is proportional to that root over its
    mean (capped at 1): the weights whose gradients were large in training are held closest to their trained
    values."""
    _check(model, rule, segment, [lr], [decay])
    model = model.to(device).eval()  # no dropout while adapting
    encoded = torch.from_numpy(corpus.encode(corpus.data)).to(device)
    scales = _rule_scales(model, corpus, encoded, rule, segment, warmup, ms_bytes)
    pieces = [(int(a), int(b)) for a, b in corpus.pieces[split] if b > a]
    return _read(model, encoded, pieces, segment, warmup, lr, decay, scales, progress=True)


def validation_pieces(pieces, max_bytes):
    """At most `max_bytes` of a split for choosing the setting: all of it when it is that small; else whole pieces
    spread evenly through the split (so the choice sees the whole text, as the test split does, and adapts across
    pieces as the test reading does), the last one cut to fit; a single piece is cut to its first max_bytes."""
    pieces = [(int(a), int(b)) for a, b in pieces if b > a]
    total = sum(b - a for a, b in pieces)
    if total <= max_bytes:
        return pieces
    if len(pieces) > 1:
        k = min(len(pieces), math.ceil(max_bytes * len(pieces) / total))
        pieces = [pieces[i] for i in sorted(set(np.linspace(0, len(pieces) - 1, k).round().astype(int).tolist()))]
    out, left = [], max_bytes
    for a, b in pieces:
        if left <= 0:
            break
        out.append((a, min(b, a + left)))
        left -= out[-1][1] - a
    return out


def _loss(result):
    return float(-result["logp"].mean()) if result["finite"] and len(result["logp"]) else math.inf


def _setting(lr, decay):
    return f"lr={lr:g}, decay={decay:g}"


def select_and_predict(model, corpus, lrs, decays, segment=100, warmup=2000, device="cpu", rule="sgd",
                       ms_bytes=100_000, val_bytes=50_000, name="model"):
    """Choose (lr, decay) among lrs x decays on validation pieces, then read the test split with it; fall back to
    the static reading when no setting beats it on validation. -> (result over the test split as from
    dynamic_predict, selection dict for the metadata). The trained weights are restored between readings."""
    lrs, decays = [float(x) for x in lrs], [float(x) for x in decays]
    _check(model, rule, segment, lrs, decays)
    model = model.to(device).eval()  # no dropout while adapting
    encoded = torch.from_numpy(corpus.encode(corpus.data)).to(device)
    trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    scales = _rule_scales(model, corpus, encoded, rule, segment, warmup, ms_bytes)
    val = validation_pieces(corpus.pieces["val"], val_bytes)
    n_val = sum(b - a for a, b in val)
    static_val = _loss(_read(model, encoded, val, segment, warmup))
    log.info(f"{name}: choosing the {rule} setting on {n_val:,} validation bytes ({len(val)} pieces): static "
             f"{static_val:.4f} nats/char")
    candidates = []
    for lr, decay in itertools.product(lrs, decays):
        model.load_state_dict(trained)
        loss = _loss(_read(model, encoded, val, segment, warmup, lr, decay, scales, stop_if_nonfinite=True))
        candidates.append({"lr": lr, "decay": decay, "val_loss": round(loss, 6) if math.isfinite(loss) else None})
        log.info(f"  {_setting(lr, decay)}: {loss:.4f}" + ("  (diverged)" if not math.isfinite(loss) else ""))
    best = min(candidates, key=lambda c: math.inf if c["val_loss"] is None else c["val_loss"])
    chosen = best if best["val_loss"] is not None and best["val_loss"] < static_val else None
    model.load_state_dict(trained)
    static = _read(model, encoded, [(int(a), int(b)) for a, b in corpus.pieces["test"] if b > a], segment, warmup)
    static_test = mean_nats(np.exp(static["logp"]).astype(np.float32))
    selection = {"rule": rule, "lr": None, "decay": None, "candidates": candidates,
                 "static_val_loss": round(static_val, 6), "val_bytes": n_val, "val_pieces": len(val),
                 "static_test_loss": round(static_test, 6), "adapted_test_loss": None, "fallback": None,
                 "flag": None}
    if chosen is None:
        result = static
        selection["fallback"] = "validation"
        best_text = ("every setting diverged" if best["val_loss"] is None else
                     f"best {_setting(best['lr'], best['decay'])} at {best['val_loss']:.4f}")
        selection["flag"] = (f"no adaptation: no setting beat static on validation ({best_text}, static "
                             f"{static_val:.4f})")
    else:
        selection.update(lr=chosen["lr"], decay=chosen["decay"])
        log.info(f"{name}: chose {_setting(chosen['lr'], chosen['decay'])} (validation {chosen['val_loss']:.4f} "
                 f"vs static {static_val:.4f})")
        model.load_state_dict(trained)
        result = _read(model, encoded, [(int(a), int(b)) for a, b in corpus.pieces["test"] if b > a], segment,
                       warmup, chosen["lr"], chosen["decay"], scales, progress=True)
        if not result["finite"]:
            # a test reading must not silently hold NaN probabilities: the static reading replaces it, flagged
            result = static
            selection["fallback"] = "diverged"
            selection["flag"] = f"no adaptation: {_setting(chosen['lr'], chosen['decay'])} diverged on the test split"
        else:
            adapted = mean_nats(np.exp(result["logp"]).astype(np.float32))
            selection["adapted_test_loss"] = round(adapted, 6)
            if adapted > static_test:
                selection["flag"] = (f"worse than static on test: {adapted:.4f} vs {static_test:.4f} nats/char "
                                     f"(validation chose {_setting(chosen['lr'], chosen['decay'])})")
    if selection["flag"]:
        log.warning(f"{name}: dynamic evaluation flagged: {selection['flag']}")
    model.load_state_dict(trained)
    return result, selection


def add_dyneval_arguments(parser):
    parser.add_argument("--model", required=True, help="model.pt written by training")
    parser.add_argument("--data", required=True, help="prepared corpus data.json")
    parser.add_argument("--out", required=True, help="predictions Parquet of the {model}+dyn predictor")
    parser.add_argument("--model-id", required=True, help="the trained model's id (the predictor is ID+dyn)")
    parser.add_argument("--lr", type=float, nargs="+", required=True,
                        help="learning rates of the adaptation to choose from on validation")
    parser.add_argument("--decay", type=float, nargs="+", default=[0.0],
                        help="pulls back towards the trained weights per step, to choose from (with each --lr)")
    parser.add_argument("--val-bytes", type=int, default=50_000,
                        help="validation bytes over which each setting and the static model are scored")
    parser.add_argument("--rule", choices=("sgd", "rms"), default="sgd",
                        help="sgd, or Krause et al.'s RMS rule (steps scaled by training gradients)")
    parser.add_argument("--ms-bytes", type=int, default=100_000,
                        help="rms: training bytes over which the mean squared gradient is taken")
    parser.add_argument("--segment", type=int, default=100, help="bytes predicted before each update")
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu, cuda, cuda:N")


def run_dyneval(args):
    """Test predictions of a trained model under dynamic evaluation (adapting on each test segment after
    predicting it) with the setting chosen on validation, written as the predictor {model}+dyn."""
    from rnnlens.corpus import PreparedCorpus
    from rnnlens.model import load_model, pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.val_bytes < 1:
        raise InputError(f"--val-bytes {args.val_bytes}: need at least 1 (evaluation.dynamic.val_bytes)")
    device = pick_device(args.device)
    model, extra = load_model(args.model)
    corpus = PreparedCorpus.load(args.data)
    t0 = time.time()
    log.info(f"dynamic evaluation on {device}")
    predictor = args.model_id + DYNAMIC_SUFFIX
    result, selection = select_and_predict(model, corpus, args.lr, args.decay, args.segment, args.warmup,
                                           device=device, rule=args.rule, ms_bytes=args.ms_bytes,
                                           val_bytes=args.val_bytes, name=predictor)
    spec = model.spec
    meta = {"model": predictor, "base_model": args.model_id, "corpus": corpus.name, "family": spec.arch,
            "arch": spec.arch + DYNAMIC_SUFFIX, "layers": spec.layers, "hidden": spec.hidden,
            "params": int(sum(p.numel() for p in model.parameters())), "best_val_loss": extra.get("best_val_loss"),
            "epochs_run": extra.get("epochs_run"), "dropout": (extra.get("train_config") or {}).get("dropout"),
            "converged": extra.get("converged"), "convergence": extra.get("convergence"),
            "window": getattr(model, "window", None) or None, "split_layout": corpus.layout,
            "dynamic": {**selection, "segment": args.segment, "warmup": args.warmup, "ms_bytes": args.ms_bytes,
                        "updates": result["updates"], "seconds": round(time.time() - t0, 1)}}
    meta = write_predictions(Path(args.out), corpus.split("test"), np.exp(result["logp"]).astype(np.float32),
                             corpus.vocab[result["argmax"]], result["p_argmax"], meta)
    setting = ("static (no adaptation)" if selection["lr"] is None
               else _setting(selection["lr"], selection["decay"]))
    log.info(f"{predictor} on {corpus.name}: test loss {meta['test_loss']:.4f} nats/char over "
             f"{meta['n_positions']} positions ({setting}; static {selection['static_test_loss']:.4f}), "
             f"{result['updates']} updates in {time.time() - t0:.0f} s")
    return 0
