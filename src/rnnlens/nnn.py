"""The n-NN baseline of the paper's Table 2: one tanh hidden layer over the concatenated one-hot
encodings of the previous n bytes (n*V inputs), then a linear decoder to the V bytes of the vocabulary.

The first layer is a sum of per-slot embedding lookups (slot k of the context reads row k*V + byte of
an (n*V, hidden) table), which is exactly W @ concat(one_hot(x_1), ..., one_hot(x_n)) without building
the n*V-wide input. Training uses the RNNs' optimizer (RMSProp lr 2e-3, alpha 0.95, uniform(-0.08, 0.08)
init, element-wise gradient clipping, lr x0.95 per epoch after epoch 10) on batches of random target
positions, early stopping on validation loss; the hidden size is picked on validation from a list.

Positions are absolute offsets into the corpus bytes: the target at position t is predicted from the
bytes t-n .. t-1, so the first test positions read their context from the end of the validation split.
"""

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rnnlens.corpus import PreparedCorpus
from rnnlens.errors import InputError
from rnnlens.io import atomic_write_text, torch_load, torch_save
from rnnlens.predictions import write_predictions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NNNSpec:
    n: int
    hidden: int
    vocab_size: int

    def to_dict(self):
        return asdict(self)


class NNN(nn.Module):
    def __init__(self, spec: NNNSpec):
        super().__init__()
        if spec.n < 1 or spec.hidden < 1 or spec.vocab_size < 1:
            raise ValueError(f"n-NN needs n, hidden and vocab_size >= 1, got {spec}")
        self.spec = spec
        self.context = nn.EmbeddingBag(spec.n * spec.vocab_size, spec.hidden, mode="sum")
        self.hidden_bias = nn.Parameter(torch.zeros(spec.hidden))
        self.decoder = nn.Linear(spec.hidden, spec.vocab_size)
        self.register_buffer("slot_offset", torch.arange(spec.n) * spec.vocab_size, persistent=False)

    def init_uniform(self, scale=0.08):
        for p in self.parameters():
            nn.init.uniform_(p, -scale, scale)

    def forward(self, context):
        """context: (batch, n) vocabulary indices, oldest byte first -> logits (batch, V)."""
        h = torch.tanh(self.context(context + self.slot_offset) + self.hidden_bias)
        return self.decoder(h)


def count_parameters(n, hidden, vocab_size):
    return n * vocab_size * hidden + hidden + hidden * vocab_size + vocab_size


def context_indices(encoded, positions, n):
    """(len(positions), n) vocabulary indices of the n bytes before each target position."""
    return encoded[positions.unsqueeze(1) - n + torch.arange(n, device=positions.device)]


def check_positions(positions, n, size):
    if len(positions) and (int(positions.min()) < n or int(positions.max()) >= size):
        raise ValueError(
            f"n-NN positions must lie in [{n}, {size}) so that each has n={n} bytes of context inside the corpus; "
            f"got min {int(positions.min())}, max {int(positions.max())}. Drop the first {n} positions.")


@dataclass
class NNNConfig:
    seed: int = 1
    batch_size: int = 1000
    learning_rate: float = 2e-3
    rmsprop_alpha: float = 0.95
    init_scale: float = 0.08
    grad_clip: float = 5.0  # element-wise, as the RNNs (0 = off)
    max_epochs: int = 20
    max_steps: int = 0  # total optimizer steps per candidate (0 = no cap)
    max_train_chars: int = 0  # training positions per epoch, a fresh random sample each epoch (0 = all)
    patience: int = 3
    min_delta: float = 0.0  # an epoch counts as an improvement when val loss drops by more than this
    lr_decay: float = 0.95
    lr_decay_after: int = 10
    eval_chunk: int = 16384
    log_seconds: float = 10.0


@torch.no_grad()
def mean_loss(model, encoded, positions, chunk=16384):
    """Mean cross-entropy in nats over target positions (absolute offsets)."""
    model.eval()
    total, n = 0.0, model.spec.n
    for start in range(0, len(positions), chunk):
        pos = positions[start : start + chunk]
        logits = model(context_indices(encoded, pos, n))
        total += F.cross_entropy(logits, encoded[pos], reduction="sum").double().item()
    return total / max(1, len(positions))


def train_one(spec, cfg, encoded, train_pos, val_pos):
    """Train one n-NN; returns (model with the best validation weights, summary dict)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = NNN(spec)
    model.init_uniform(cfg.init_scale)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=cfg.learning_rate, alpha=cfg.rmsprop_alpha)
    per_epoch = len(train_pos) if cfg.max_train_chars <= 0 else min(cfg.max_train_chars, len(train_pos))
    best_val, best_state, bad_epochs, history, step = math.inf, None, 0, [], 0
    started = time.time()
    for epoch in range(1, cfg.max_epochs + 1):
        lr = cfg.learning_rate * cfg.lr_decay ** max(0, epoch - cfg.lr_decay_after)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        order = train_pos[torch.from_numpy(rng.permutation(len(train_pos))[:per_epoch])]
        epoch_start = last_log = time.time()
        loss_sum, seen = 0.0, 0
        for start in range(0, per_epoch, cfg.batch_size):
            pos = order[start : start + cfg.batch_size]
            loss = F.cross_entropy(model(context_indices(encoded, pos, spec.n)), encoded[pos])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_value_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            loss_sum += loss.item() * len(pos)
            seen += len(pos)
            step += 1
            if time.time() - last_log >= cfg.log_seconds:
                last_log = time.time()
                log.info(f"  n={spec.n} hidden={spec.hidden} epoch {epoch} {seen}/{per_epoch} "
                         f"loss {loss_sum / seen:.4f} {seen / (last_log - epoch_start):,.0f} chars/s")
            if cfg.max_steps and step >= cfg.max_steps:
                break
        seconds = time.time() - epoch_start
        train_loss = loss_sum / max(1, seen)
        val_loss = mean_loss(model, encoded, val_pos, cfg.eval_chunk)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise RuntimeError(f"n-NN n={spec.n} hidden={spec.hidden} diverged at epoch {epoch} "
                               f"(train {train_loss}, val {val_loss}); lower --lr.")
        is_best = val_loss < best_val
        # patience resets only on a gain larger than min_delta; the best weights are kept either way
        bad_epochs = 0 if val_loss < best_val - cfg.min_delta else bad_epochs + 1
        if is_best:
            best_val = val_loss
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history.append({"epoch": epoch, "train_loss": round(train_loss, 6), "val_loss": round(val_loss, 6),
                        "lr": lr, "chars": seen, "seconds": round(seconds, 3),
                        "chars_per_s": round(seen / max(seconds, 1e-9), 1)})
        log.info(f"  n={spec.n} hidden={spec.hidden} epoch {epoch}: train {train_loss:.4f} val {val_loss:.4f}"
                 f"{' (best)' if is_best else ''} {seconds:.1f}s {seen / max(seconds, 1e-9):,.0f} chars/s")
        if bad_epochs >= cfg.patience:
            log.info(f"  early stopping: no validation improvement for {cfg.patience} epochs")
            break
        if cfg.max_steps and step >= cfg.max_steps:
            log.info(f"  stopping: reached max_steps={cfg.max_steps}")
            break
    model.load_state_dict(best_state)
    model.eval()
    return model, {"hidden": spec.hidden, "best_val_loss": best_val, "epochs_run": len(history), "steps": step,
                   "params": count_parameters(spec.n, spec.hidden, spec.vocab_size),
                   "train_seconds": round(time.time() - started, 3), "history": history}


def split_positions(corpus, name, n):
    """Training and validation positions whose n context bytes lie in the same piece: no example is built
    across a seam (for the rows layout, the bytes before a piece belong to another split)."""
    return torch.cat([torch.arange(a + n, b, dtype=torch.int64) for a, b in corpus.pieces[name]])


def train_nnn(corpus: PreparedCorpus, n, hidden_sizes, cfg: NNNConfig):
    """Train one n-NN per hidden size, keep the best on validation. -> (model, stats dict)."""
    if not hidden_sizes:
        raise ValueError("give at least one hidden size (--hidden 64,128,256)")
    encoded = torch.from_numpy(corpus.encode(corpus.data))
    train_pos, val_pos = split_positions(corpus, "train", n), split_positions(corpus, "val", n)
    if len(train_pos) == 0 or len(val_pos) == 0:
        raise ValueError(f"corpus {corpus.name!r} has no training or validation positions with {n} bytes of "
                         "context; use a smaller n or a larger corpus.")
    started = time.time()
    models, candidates = {}, []
    for hidden in hidden_sizes:
        log.info(f"n-NN n={n} hidden={hidden} on {corpus.name}: {len(train_pos)} training positions, "
                 f"{len(val_pos)} validation positions")
        model, summary = train_one(NNNSpec(n, hidden, corpus.vocab_size), cfg, encoded, train_pos, val_pos)
        candidates.append(summary)
        models[hidden] = model
    chosen = min(candidates, key=lambda c: (c["best_val_loss"], c["hidden"]))
    best_model = models[chosen["hidden"]]
    stats = {"model": f"nnn-{n}", "corpus": corpus.name, "n": n, "chosen_hidden": chosen["hidden"],
             "best_val_loss": chosen["best_val_loss"], "params": chosen["params"],
             "val_loss_by_hidden": {str(c["hidden"]): c["best_val_loss"] for c in candidates},
             "candidates": candidates, "train_seconds": round(time.time() - started, 3),
             "config": asdict(cfg), "torch_threads": torch.get_num_threads()}
    return best_model, stats


@torch.no_grad()
def predict_positions(model, encoded, positions, chunk=16384):
    """-> (p of the target, argmax vocabulary index, p of the argmax), each numpy over positions."""
    model.eval()
    out_p, out_am, out_pam = [], [], []
    for start in range(0, len(positions), chunk):
        pos = positions[start : start + chunk]
        probs = torch.softmax(model(context_indices(encoded, pos, model.spec.n)), dim=-1)
        out_p.append(probs.gather(1, encoded[pos].unsqueeze(1)).squeeze(1))
        pam, am = probs.max(dim=1)
        out_am.append(am)
        out_pam.append(pam)
    return (torch.cat(out_p).numpy(), torch.cat(out_am).numpy(), torch.cat(out_pam).numpy())


def write_test_predictions(model, corpus, path, stats):
    # every test byte is predicted from the n bytes of real text before it, which may lie before its piece
    positions = corpus.positions("test")
    check_positions(positions[[0, -1]], model.spec.n, len(corpus.data))
    encoded = torch.from_numpy(corpus.encode(corpus.data))
    p, am, pam = predict_positions(model, encoded, torch.from_numpy(positions))
    meta = {"model": stats["model"], "corpus": corpus.name, "family": "nnn", "n": model.spec.n,
            "hidden": model.spec.hidden, "params": stats["params"], "best_val_loss": stats["best_val_loss"]}
    return write_predictions(path, corpus.split("test"), p, corpus.vocab[am], pam, meta)


def save_nnn(path, model, extra=None):
    torch_save({"kind": "nnn", "spec": model.spec.to_dict(), "state_dict": model.state_dict(), "extra": extra or {}},
               path)


def load_nnn(path, map_location="cpu"):
    """-> (NNN in eval mode, extra dict with at least `vocab` and `corpus`)."""
    payload = torch_load(path, map_location)
    if payload.get("kind") != "nnn":
        raise InputError(f"{path} is not an n-NN model file (made by `rnnlens nnn --model-out`)")
    model = NNN(NNNSpec(**payload["spec"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload.get("extra", {})


@torch.no_grad()
def nnn_distributions(model, corpus_data_uint8, vocab, positions, chunk=16384):
    """Full predictive distributions: (len(positions), V) float32 probabilities over `vocab` (sorted byte
    values, as in data.json) for the bytes at `positions`, absolute offsets into corpus_data_uint8, each
    predicted from the n bytes before it."""
    data = np.asarray(corpus_data_uint8, dtype=np.uint8)
    vocab = np.asarray(vocab, dtype=np.uint8)
    if len(vocab) != model.spec.vocab_size:
        raise ValueError(f"vocab has {len(vocab)} bytes but the n-NN was trained on {model.spec.vocab_size}")
    table = np.full(256, -1, dtype=np.int64)
    table[vocab] = np.arange(len(vocab))
    positions = np.asarray(positions, dtype=np.int64)
    check_positions(positions, model.spec.n, len(data))
    n = model.spec.n
    # encode only the bytes the contexts read, so a small subset of a large corpus stays cheap
    window = positions[:, None] - n + np.arange(n)
    ctx = table[data[window]]
    if (ctx < 0).any():
        raise ValueError("the corpus has bytes outside `vocab`; pass the vocabulary the n-NN was trained with")
    model.eval()
    out = np.empty((len(positions), len(vocab)), dtype=np.float32)
    ctx = torch.from_numpy(ctx)
    for start in range(0, len(positions), chunk):
        out[start : start + chunk] = torch.softmax(model(ctx[start : start + chunk]), dim=-1).numpy()
    return out


def parse_int_list(text):
    try:
        values = [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers, e.g. 64,128,256")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers, e.g. 64,128,256")
    return values


def add_nnn_arguments(parser):
    parser.add_argument("--data", required=True, help="prepared corpus results/{corpus}/data.json")
    parser.add_argument("--n", type=int, required=True, help="context length in bytes")
    parser.add_argument("--hidden", type=parse_int_list, default=[64, 128, 256],
                        help="candidate hidden sizes, picked on validation loss (default 64,128,256)")
    defaults = NNNConfig()
    parser.add_argument("--epochs", type=int, default=defaults.max_epochs, help="maximum epochs per candidate")
    parser.add_argument("--max-steps", type=int, default=defaults.max_steps,
                        help="maximum optimizer steps per candidate (0: no cap)")
    parser.add_argument("--max-train-chars", type=int, default=defaults.max_train_chars,
                        help="training positions per epoch, a fresh random sample each epoch (0: the whole split)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--patience", type=int, default=defaults.patience,
                        help="stop after this many epochs without a validation improvement larger than --min-delta")
    parser.add_argument("--min-delta", type=float, default=defaults.min_delta,
                        help="smallest validation-loss drop (nats) that counts as an improvement (default 0)")
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--model-out", required=True, help="trained model (.pt), read by load_nnn")
    parser.add_argument("--predictions-out", required=True, help="test predictions Parquet")
    parser.add_argument("--stats-out", required=True, help="JSON: chosen hidden size, val loss per candidate, times")


def run_nnn(args):
    if args.n < 1:
        raise InputError("--n must be >= 1")
    if args.batch_size < 1 or args.epochs < 1 or args.patience < 1:
        raise InputError("--batch-size, --epochs and --patience must be >= 1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = NNNConfig(seed=args.seed, batch_size=args.batch_size, learning_rate=args.lr, max_epochs=args.epochs,
                    max_steps=args.max_steps, max_train_chars=args.max_train_chars, patience=args.patience,
                    min_delta=args.min_delta)
    corpus = PreparedCorpus.load(args.data)
    model, stats = train_nnn(corpus, args.n, args.hidden, cfg)
    meta = write_test_predictions(model, corpus, args.predictions_out, stats)
    stats["test_loss"] = meta["test_loss"]
    save_nnn(args.model_out, model, {"vocab": corpus.vocab.tolist(), "corpus": corpus.name, "model": stats["model"],
                                     "best_val_loss": stats["best_val_loss"], "params": stats["params"]})
    atomic_write_text(args.stats_out, json.dumps(stats, indent=2) + "\n")
    log.info(f"nnn-{args.n} on {corpus.name}: hidden {stats['chosen_hidden']} (val {stats['best_val_loss']:.4f}), "
             f"test loss {meta['test_loss']:.4f} nats/char, {stats['train_seconds']:.0f}s")
    return 0
