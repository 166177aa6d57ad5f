"""Training with the paper's recipe: uniform(-0.08, 0.08) init, RMSProp (lr 2e-3, alpha 0.95), batch 100,
stateful truncated BPTT over 100 steps, lr x0.95 per epoch after epoch 10, early stopping on validation loss.

Resumable: a checkpoint (weights, optimizer, RNG states, carried hidden state, data position, best weights,
history) is written every `checkpoint_seconds`, at every epoch end and on SIGTERM (what Slurm sends at a
time limit or scancel). A rerun resumes from it and ends with the same weights as an uninterrupted run.
"""

import contextlib
import csv
import argparse
import json
import math
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rnnlens.log import progress
from rnnlens.errors import InputError, RnnlensError
from rnnlens import convergence
from rnnlens.corpus import PreparedCorpus
from rnnlens.evaluate import batch_rows, split_loss
from rnnlens.io import atomic_copy, atomic_path, torch_load, torch_save, write_json
from rnnlens.model import CharRNN, ModelSpec, detach_state, pick_device, save_model

EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: stopped on request with a checkpoint; rerun to resume


class TrainingDiverged(RnnlensError):
    exit_code = 3  # the rule log says why; distinct from a bad argument (2)
    """The loss became NaN or infinite; the message names the settings to lower."""


@dataclass
class TrainConfig:
    seed: int = 1
    batch_size: int = 100
    seq_len: int = 100
    learning_rate: float = 2e-3
    rmsprop_alpha: float = 0.95
    init_scale: float = 0.08
    max_epochs: int = 50
    lr_decay: float = 0.95
    lr_decay_after: int = 10
    patience: int = 5
    grad_clip_mode: str = "value"  # "value": element-wise clamp as char-rnn; "norm": global L2 norm; "none"
    grad_clip: float = 5.0
    dropout: float = 0.0
    checkpoint_seconds: float = 300.0
    log_seconds: float = 10.0
    device: str = "auto"
    tf32: bool = False
    precision: str = "fp32"  # "bf16" / "fp16": autocast (fp16 with loss scaling, CUDA only); fp32 for paper fidelity
    val_warmup: int = 500  # characters of real text each validation piece reads before it is scored
    val_streams: int = 100  # validation pieces are run as about this many batch rows
    snapshot_epochs: list = field(default_factory=list)  # epoch fractions at which to save weights (training dynamics)
    convergence_tolerance: float = 0.01  # max_epochs with the val loss still falling faster (per epoch): unconverged

    @classmethod
    def from_dict(cls, settings):
        known = {k: v for k, v in settings.items() if k in cls.__dataclass_fields__}
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise InputError(f"unknown training settings {unknown}; allowed: {sorted(cls.__dataclass_fields__)}")
        return cls(**known)


def training_streams(encoded, pieces, batch_size):
    """The training split as `batch_size` streams of inputs and next-byte targets, each read in order by
    stateful truncated BPTT. -> (inputs, targets), both (batch_size, length).

    As char-rnn: with the rows layout and batch_size == rows, stream b is row b's training text. When
    batch_size is a multiple of the number of pieces, each piece is cut into batch_size / pieces equal streams;
    otherwise (or when the pieces differ in length) the pieces are joined in order and cut into batch_size
    equal streams, so a few streams carry their state across a seam."""
    lengths = {b - a for a, b in pieces}
    if batch_size % len(pieces) == 0 and len(lengths) == 1:
        per_piece = batch_size // len(pieces)
        cut = [tbptt_streams(encoded[a:b], per_piece) for a, b in pieces]
        return torch.cat([i for i, _ in cut]), torch.cat([t for _, t in cut])
    joined = torch.cat([encoded[a:b] for a, b in pieces])
    return tbptt_streams(joined, batch_size)


def tbptt_streams(indices, batch_size):
    """Cut a token sequence into `batch_size` contiguous streams of inputs and next-token targets.

    Stream b covers inputs indices[b*L : (b+1)*L] and targets indices[b*L+1 : (b+1)*L+1], so every
    position 1..B*L is a target exactly once per epoch; the last (len-1) % B positions are dropped."""
    length = (len(indices) - 1) // batch_size
    if length < 1:
        raise InputError(f"the training split ({len(indices)} bytes) is too small for {batch_size} streams: use a larger corpus or split.train, or lower training.batch_size")
    inputs = indices[: batch_size * length].reshape(batch_size, length)
    targets = indices[1 : batch_size * length + 1].reshape(batch_size, length)
    return inputs, targets


def steps_per_epoch(stream_length, seq_len):
    return math.ceil(stream_length / seq_len)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def mixed_precision(precision, device):
    """-> (autocast context factory, GradScaler or None) for training.precision on `device`."""
    if precision not in PRECISIONS:
        raise InputError(f"training.precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise InputError(f"training.precision fp16 needs a CUDA device (this run is on {device}); use bf16 or fp32")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext, None
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


def clip_gradients(model, mode, limit):
    if mode == "value":
        torch.nn.utils.clip_grad_value_(model.parameters(), limit)
    elif mode == "norm":
        torch.nn.utils.clip_grad_norm_(model.parameters(), limit)


def rng_state(device):
    # numpy's key as a list, so the checkpoint holds only what torch.load(weights_only=True) reads
    name, key, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": [name, key.tolist(), pos, has_gauss, cached],
             "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state, device):
    torch.set_rng_state(state["torch"])
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def write_history(path, rows):
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()) if rows else ["epoch"])
        writer.writeheader()
        writer.writerows(rows)


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop checkpoints at the next step boundary and exits."""

    def __init__(self):
        self.signal = None

    def __call__(self, signum, frame):
        self.signal = signum

    def install(self):
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)


def train(cfg, corpus: PreparedCorpus, spec: ModelSpec, out_model, out_history, checkpoint_path,
          meta=None, stop_after_steps=None, log=progress(__name__)):
    """Train (or resume) one model. Writes out_model (best validation weights) and out_history only on success.

    `stop_after_steps` simulates a preemption after that many optimizer steps of this process (tests)."""
    device = pick_device(cfg.device)
    torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
    torch.backends.cudnn.allow_tf32 = cfg.tf32
    checkpoint_path = Path(checkpoint_path)
    # the convergence tolerance only judges the run afterwards: changing it must not void a checkpoint
    weights_settings = {k: v for k, v in asdict(cfg).items() if k != "convergence_tolerance"}
    run_key = json.dumps({"spec": spec.to_dict(), "train": weights_settings, "corpus": corpus.name,
                          "code": (meta or {}).get("code_fingerprint")}, sort_keys=True, default=str)

    encoded = torch.from_numpy(corpus.encode(corpus.data)).to(device)
    inputs, targets = training_streams(encoded, corpus.pieces["train"], cfg.batch_size)
    val_rows = batch_rows(corpus.pieces["val"], cfg.val_streams)
    n_steps = steps_per_epoch(inputs.shape[1], cfg.seq_len)
    chars_per_epoch = inputs.numel()

    autocast, scaler = mixed_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    model = CharRNN(spec).to(device)
    model.init_uniform(cfg.init_scale)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=cfg.learning_rate, alpha=cfg.rmsprop_alpha)

    progress = {"epoch": 1, "step": 0, "global_step": 0, "best_val": math.inf, "bad_epochs": 0,
                "history": [], "epoch_loss_sum": 0.0, "epoch_seconds": 0.0}
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state = None

    if checkpoint_path.exists():
        ckpt = torch_load(checkpoint_path, map_location=device)
        if ckpt.get("run_key") != run_key:
            log(f"ignoring checkpoint {checkpoint_path}: it was made with other settings or code; starting afresh")
        else:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if scaler is not None and ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            best_state = ckpt["best_state"]
            progress = ckpt["progress"]
            state = ckpt["state"]
            set_rng_state(ckpt["rng"], device)
            log(f"resuming from checkpoint: epoch {progress['epoch']} step {progress['step']}/{n_steps} "
                f"(checkpoint reason: {ckpt.get('reason', 'periodic')})")

    def save_checkpoint(reason):
        torch_save({"run_key": run_key, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "best_state": best_state, "progress": progress, "state": state,
                           "rng": rng_state(device), "reason": reason,
                           "scaler": scaler.state_dict() if scaler is not None else None}, checkpoint_path)
        log(f"checkpoint ({reason}): epoch {progress['epoch']} step {progress['step']}/{n_steps} -> {checkpoint_path}")

    stop = StopFlag()
    stop.install()
    log(f"training {spec.arch} layers={spec.layers} hidden={spec.hidden} params={sum(p.numel() for p in model.parameters())} "
        f"on {device}" + (f" with {torch.get_num_threads()} CPU thread(s)" if device.type == "cpu" else "")
        + f"; {chars_per_epoch} chars/epoch, {n_steps} steps of {cfg.batch_size}x{cfg.seq_len}; "
        f"gradient clipping: {cfg.grad_clip_mode} {cfg.grad_clip}; precision {cfg.precision}"
        + (", TF32 allowed" if cfg.tf32 and device.type == "cuda" else ""))
    snapshot_dir = Path(out_model).parent / "snapshots"
    snapshot_steps = {max(1, round(f * n_steps)) for f in cfg.snapshot_epochs}
    last_checkpoint = last_log = time.time()
    steps_this_process = 0

    while progress["epoch"] <= cfg.max_epochs:
        epoch = progress["epoch"]
        lr = cfg.learning_rate * cfg.lr_decay ** max(0, epoch - cfg.lr_decay_after)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        epoch_start = time.time()
        while progress["step"] < n_steps:
            start = progress["step"] * cfg.seq_len
            x, y = inputs[:, start : start + cfg.seq_len], targets[:, start : start + cfg.seq_len]
            with autocast():
                logits, state = model(x, state)
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                clip_gradients(model, cfg.grad_clip_mode, cfg.grad_clip)
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                clip_gradients(model, cfg.grad_clip_mode, cfg.grad_clip)
                scaler.step(optimizer)  # skips the step when the scaled gradients overflowed
                scaler.update()
            state = detach_state(state)
            loss_sum += loss.detach().double() * y.numel()
            progress["step"] += 1
            progress["global_step"] += 1
            steps_this_process += 1
            if progress["global_step"] in snapshot_steps:
                snapshot_dir.mkdir(parents=True, exist_ok=True)
                save_model(snapshot_dir / f"step{progress['global_step']:07d}.pt", model,
                           {**(meta or {}), "global_step": progress["global_step"],
                            "epoch_fraction": progress["global_step"] / n_steps})
            now = time.time()
            if now - last_log >= cfg.log_seconds or progress["step"] == n_steps:
                # the only host sync of the loop, at most every log_seconds
                done = progress["epoch_loss_sum"] + loss_sum.item()
                seen = progress["step"] * cfg.batch_size * cfg.seq_len
                running = done / max(1, min(seen, chars_per_epoch))
                if not math.isfinite(running):
                    raise TrainingDiverged(
                        f"training loss is {running} at epoch {epoch} step {progress['step']}: the run diverged. "
                        "Lower training.learning_rate or training.grad_clip in the config.")
                elapsed = progress["epoch_seconds"] + now - epoch_start
                log(f"epoch {epoch} step {progress['step']}/{n_steps} loss {running:.4f} lr {lr:.2e} "
                    f"{seen / max(elapsed, 1e-9):,.0f} chars/s", flush=True)
                last_log = now
            interrupted = stop.signal is not None or (stop_after_steps and steps_this_process >= stop_after_steps)
            if interrupted or now - last_checkpoint >= cfg.checkpoint_seconds:
                progress["epoch_loss_sum"] += loss_sum.item()
                progress["epoch_seconds"] += now - epoch_start
                loss_sum.zero_()
                epoch_start = now
                save_checkpoint("interrupted" if interrupted else "periodic")
                last_checkpoint = now
                if interrupted:
                    log("stopped on request; rerun the same command to resume from the checkpoint")
                    return EXIT_INTERRUPTED

        train_loss = (progress["epoch_loss_sum"] + loss_sum.item()) / chars_per_epoch
        seconds = progress["epoch_seconds"] + time.time() - epoch_start
        val_loss = split_loss(model, encoded, val_rows, cfg.val_warmup, device=device)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise TrainingDiverged(
                f"loss is not finite after epoch {epoch} (train {train_loss}, val {val_loss}): the run diverged. "
                "Lower training.learning_rate or training.grad_clip in the config.")
        improved = val_loss < progress["best_val"]
        if improved:
            progress["best_val"] = val_loss
            progress["bad_epochs"] = 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            progress["bad_epochs"] += 1
        progress["history"].append({"epoch": epoch, "train_loss": round(train_loss, 6), "val_loss": round(val_loss, 6),
                                    "lr": lr, "seconds": round(seconds, 3),
                                    "chars_per_s": round(chars_per_epoch / max(seconds, 1e-9), 1),
                                    "best": improved})
        log(f"epoch {epoch} done: train {train_loss:.4f} val {val_loss:.4f} {'(best)' if improved else ''} "
            f"{seconds:.1f}s {chars_per_epoch / max(seconds, 1e-9):,.0f} chars/s", flush=True)
        progress.update(epoch=epoch + 1, step=0, epoch_loss_sum=0.0, epoch_seconds=0.0)
        state = None  # each epoch starts its streams from a zero state
        stop_early = progress["bad_epochs"] >= cfg.patience
        if stop_early:
            log(f"early stopping: no validation improvement for {cfg.patience} epochs")
            break
        save_checkpoint("epoch end")
        last_checkpoint = time.time()

    model.load_state_dict(best_state)
    verdict = convergence.assess([row["val_loss"] for row in progress["history"]], cfg.max_epochs,
                                 progress["bad_epochs"] >= cfg.patience, cfg.convergence_tolerance,
                                 initial_loss=math.log(corpus.vocab_size))
    if not verdict["converged"]:
        log(convergence.warning((meta or {}).get("model_id", spec.arch), verdict))
    extra = {**(meta or {}), "vocab": corpus.vocab.tolist(), "best_val_loss": progress["best_val"],
             "converged": verdict["converged"], "convergence": verdict,
             "epochs_run": len(progress["history"]), "train_config": asdict(cfg),
             "params": sum(p.numel() for p in model.parameters()),
             "grad_clip_rule": f"{cfg.grad_clip_mode} {cfg.grad_clip}"}
    write_history(out_history, progress["history"])
    model.cpu()
    torch_save({"spec": spec.to_dict(), "state_dict": model.state_dict(), "extra": extra}, out_model)
    checkpoint_path.unlink(missing_ok=True)
    log(f"done: best val {progress['best_val']:.4f} after {len(progress['history'])} epochs -> {out_model}")
    return 0


def select_dropout(trials, out_model, out_history, out_selection, log=progress(__name__)):
    """The model of a grid point from its dropout trials: the one with the best validation loss, as the paper
    chose dropout on validation. Copies its model (with the choice recorded), history and snapshots."""
    import shutil

    candidates = []
    for path in map(Path, trials):
        payload = torch_load(path)
        extra = payload["extra"]
        candidates.append((extra["best_val_loss"], extra["train_config"]["dropout"], path, payload))
        log(f"trial {path.parent.name}: best validation loss {extra['best_val_loss']:.4f}")
    best_val, dropout, path, payload = min(candidates, key=lambda c: (c[0], c[1]))
    selection = {"dropout": dropout, "best_val_loss": best_val, "trial": path.parent.name,
                 "val_loss_by_dropout": {f"{c[1]:g}": c[0] for c in candidates}}
    payload["extra"]["dropout_selection"] = selection
    out_model = Path(out_model)
    torch_save(payload, out_model)
    atomic_copy(path.with_name("history.csv"), out_history)
    snapshots, target = path.with_name("snapshots"), out_model.with_name("snapshots")
    shutil.rmtree(target, ignore_errors=True)
    if snapshots.is_dir():
        shutil.copytree(snapshots, target)
    write_json(out_selection, selection)
    log(f"chose dropout {dropout:g} (validation loss {best_val:.4f}) of {len(candidates)} trial(s) -> {out_model}")
    return selection


# --- commands -------------------------------------------------------------------------------------------------------

def add_train_arguments(parser):
    parser.add_argument("--data", required=True)
    parser.add_argument("--models-table", required=True)
    parser.add_argument("--model", required=True, help="model id, e.g. lstm-2x128")
    parser.add_argument("--settings", default="{}", help="training settings as JSON (see TrainConfig)")
    parser.add_argument("--out-model", required=True)
    parser.add_argument("--out-history", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--code-fingerprint", default="")
    parser.add_argument("--stop-after-steps", type=int, default=None, help=argparse.SUPPRESS)


def run_train(args):
    import pandas as pd

    from rnnlens.model import parse_model_id

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig.from_dict(json.loads(args.settings))
    corpus = PreparedCorpus.load(args.data)
    arch, layers, size = parse_model_id(args.model)
    table = pd.read_csv(args.models_table).set_index("model")
    if args.model not in table.index:
        raise InputError(f"model {args.model} is not in {args.models_table}; add its arch/layers/size to the grid")
    spec = ModelSpec(arch, layers, int(table.loc[args.model, "hidden"]), corpus.vocab_size, cfg.dropout)
    meta = {"model_id": args.model, "corpus": corpus.name, "size_label": size,
            "code_fingerprint": args.code_fingerprint}
    return train(cfg, corpus, spec, args.out_model, args.out_history, args.checkpoint, meta=meta,
                 stop_after_steps=args.stop_after_steps)


def add_select_dropout_arguments(parser):
    parser.add_argument("--trials", nargs="+", required=True, help="model.pt of every dropout trial")
    parser.add_argument("--out-model", required=True)
    parser.add_argument("--out-history", required=True)
    parser.add_argument("--out-selection", required=True)


def run_select_dropout(args):
    select_dropout(args.trials, args.out_model, args.out_history, args.out_selection)
    return 0
