"""Training with the paper's recipe: uniform(-0.08, 0.08) init, RMSProp (lr 2e-3, alpha 0.95), batch 100,
stateful truncated BPTT over 100 steps, lr x0.95 per epoch after epoch 10, early stopping on validation loss.

Resumable: a checkpoint (TrainState: weights, optimizer, RNG states, carried hidden state, data position, best
weights, history) is written every `checkpoint_seconds`, at every epoch end and on SIGTERM (what Slurm sends at a
time limit or scancel). A rerun resumes from it and ends with the same weights as an uninterrupted run.

`train()` reads as the loop it is: setup, start_or_resume, then run_epoch and end_epoch until the last epoch or
early stopping, then final_save. Snapshots for the training-dynamics figure (`snapshot_epochs`) go to
snapshots/ beside the model, listed in snapshots/manifest.json, which only the finished training writes; a fresh
start clears the folder, a resume keeps what was written before the interruption.
"""

import argparse
import contextlib
import csv
import json
import logging
import math
import random
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rnnlens.errors import InputError, RnnlensError
from rnnlens import convergence
from rnnlens.corpus import PreparedCorpus
from rnnlens.evaluate import batch_rows, split_loss
from rnnlens.io import atomic_copy, atomic_path, torch_load, torch_save, write_json
from rnnlens.model import ModelSpec, build_model, detach_state, pick_device, save_model

log = logging.getLogger(__name__)

EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: stopped on request with a checkpoint; rerun to resume
MANIFEST = "manifest.json"  # in snapshots/: the snapshot files of the training that wrote it


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
    # beyond the paper (set per architecture through training_overrides)
    optimizer: str = "rmsprop"  # "adamw" suits the transformer and the LRU
    weight_decay: float = 0.0  # adamw only
    lr_warmup_steps: int = 0  # linear warm-up of the learning rate over the first optimizer steps
    window: int = 0  # a windowed model's context in bytes (the transformer's default: rnnlens.transformer)
    heads: int = 4  # transformer: attention heads

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


def make_optimizer(cfg, model):
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(model.parameters(), lr=cfg.learning_rate, alpha=cfg.rmsprop_alpha)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    raise InputError(f"training.optimizer {cfg.optimizer!r}: use rmsprop or adamw")


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
    """Set by SIGTERM/SIGINT; the loop checkpoints at the next step boundary and exits. `after_steps` stops after
    that many optimizer steps of this process instead (the tests' simulated preemption)."""

    def __init__(self, after_steps=None):
        self.signal = None
        self.after_steps = after_steps
        self.steps = 0

    def __call__(self, signum, frame):
        self.signal = signum

    def install(self):
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)

    def requested(self):
        return self.signal is not None or bool(self.after_steps and self.steps >= self.after_steps)


@dataclass
class Run:
    """What stays fixed while one model trains: settings, the data on the device, where outputs go."""

    cfg: TrainConfig
    spec: ModelSpec
    corpus: PreparedCorpus
    device: torch.device
    encoded: torch.Tensor  # the whole corpus as vocabulary indices (validation reads its pieces)
    inputs: torch.Tensor  # (batch_size, length) training streams, and their next-byte targets
    targets: torch.Tensor
    val_rows: list
    steps_per_epoch: int
    out_model: Path
    out_history: Path
    checkpoint: Path
    meta: dict
    run_key: str  # a checkpoint made under another key (settings, code) is not resumed
    autocast: object  # a context factory

    @property
    def chars_per_epoch(self):
        return self.inputs.numel()

    @property
    def snapshot_dir(self):
        return self.out_model.parent / "snapshots"

    @property
    def snapshot_steps(self):
        return {max(1, round(f * self.steps_per_epoch)) for f in self.cfg.snapshot_epochs}


# Part of the run key: a checkpoint written by an older TrainState is ignored (training starts afresh), not misread.
CHECKPOINT_FORMAT = 2


@dataclass
class TrainState:
    """Where one training stands. `to_dict()` is the checkpoint: tensors and plain data only, so torch_load reads
    it with weights_only=True; `restore()` puts a checkpoint back into a freshly built state."""

    model: torch.nn.Module  # any architecture's (rnnlens.archs)
    optimizer: torch.optim.Optimizer
    scaler: object  # torch.amp.GradScaler with fp16, else None
    best_weights: dict
    hidden: object = None  # the state carried between TBPTT steps; None at the start of an epoch
    epoch: int = 1
    step: int = 0  # optimizer steps done in this epoch
    global_step: int = 0
    best_val: float = math.inf
    bad_epochs: int = 0  # epochs since the validation loss last improved
    epoch_loss_sum: float = 0.0  # summed training loss of the steps of this epoch already folded in
    epoch_seconds: float = 0.0
    history: list = field(default_factory=list)  # one dict per finished epoch (history.csv)
    snapshots: list = field(default_factory=list)  # the snapshots this training wrote (the manifest's entries)

    LIVE = ("model", "optimizer", "scaler")  # objects whose state_dict goes into the checkpoint

    def to_dict(self, run_key, device):
        ckpt = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.LIVE}
        ckpt.update(run_key=run_key, rng=rng_state(device), model=self.model.state_dict(),
                    optimizer=self.optimizer.state_dict(),
                    scaler=self.scaler.state_dict() if self.scaler is not None else None)
        return ckpt

    def restore(self, ckpt, device):
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and ckpt["scaler"]:
            self.scaler.load_state_dict(ckpt["scaler"])
        for f in fields(self):
            if f.name not in self.LIVE:
                setattr(self, f.name, ckpt[f.name])
        set_rng_state(ckpt["rng"], device)


def setup(cfg, corpus, spec, out_model, out_history, checkpoint_path, meta=None):
    """The fixed part of a training: device, data streams, run key."""
    device = pick_device(cfg.device)
    torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
    torch.backends.cudnn.allow_tf32 = cfg.tf32
    meta = meta or {}
    # the convergence tolerance only judges the run afterwards: changing it must not void a checkpoint
    weights_settings = {k: v for k, v in asdict(cfg).items() if k != "convergence_tolerance"}
    run_key = json.dumps({"spec": spec.to_dict(), "train": weights_settings, "corpus": corpus.name,
                          "code": meta.get("code_fingerprint"), "format": CHECKPOINT_FORMAT},
                         sort_keys=True, default=str)
    encoded = torch.from_numpy(corpus.encode(corpus.data)).to(device)
    inputs, targets = training_streams(encoded, corpus.pieces["train"], cfg.batch_size)
    autocast, _ = mixed_precision(cfg.precision, device)  # checks the precision before any work
    return Run(cfg, spec, corpus, device, encoded, inputs, targets, batch_rows(corpus.pieces["val"], cfg.val_streams),
               steps_per_epoch(inputs.shape[1], cfg.seq_len), Path(out_model), Path(out_history),
               Path(checkpoint_path), meta, run_key, autocast)


def start_or_resume(run):
    """A fresh state (seeded, uniform init), or the checkpoint's when it was made by this run. A fresh start
    clears the snapshots of an earlier training; a resume keeps the ones written before the interruption."""
    cfg = run.cfg
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    model = build_model(run.spec).to(run.device)
    model.init_weights(cfg.init_scale)
    optimizer = make_optimizer(cfg, model)
    _, scaler = mixed_precision(cfg.precision, run.device)  # a fresh loss scaler (fp16); its state is checkpointed
    state = TrainState(model, optimizer, scaler, {k: v.detach().clone() for k, v in model.state_dict().items()})
    if run.checkpoint.exists():
        ckpt = torch_load(run.checkpoint, map_location=run.device)
        if ckpt.get("run_key") == run.run_key:
            state.restore(ckpt, run.device)
            log.info(f"resuming from checkpoint: epoch {state.epoch} step {state.step}/{run.steps_per_epoch} "
                     f"(checkpoint reason: {ckpt.get('reason', 'periodic')})")
            return state
        log.info(f"ignoring checkpoint {run.checkpoint}: it was made with other settings or code; starting afresh")
    shutil.rmtree(run.snapshot_dir, ignore_errors=True)
    return state


def save_checkpoint(run, state, reason):
    torch_save({**state.to_dict(run.run_key, run.device), "reason": reason}, run.checkpoint)
    log.info(f"checkpoint ({reason}): epoch {state.epoch} step {state.step}/{run.steps_per_epoch} -> {run.checkpoint}")


def epoch_lr(cfg, epoch):
    return cfg.learning_rate * cfg.lr_decay ** max(0, epoch - cfg.lr_decay_after)


def train_step(run, state):
    """One optimizer step on the next seq_len columns of every stream. -> its summed loss (a device tensor)."""
    cfg = run.cfg
    start = state.step * cfg.seq_len
    x, y = run.inputs[:, start : start + cfg.seq_len], run.targets[:, start : start + cfg.seq_len]
    if cfg.lr_warmup_steps and state.global_step <= cfg.lr_warmup_steps:
        # linear warm-up over the first optimizer steps (transformer, LRU), then the epoch's rate again
        for group in state.optimizer.param_groups:
            group["lr"] = epoch_lr(cfg, state.epoch) * min(1.0, (state.global_step + 1) / cfg.lr_warmup_steps)
    with run.autocast():
        logits, hidden = state.model(x, state.hidden)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
    state.optimizer.zero_grad(set_to_none=True)
    if state.scaler is None:
        loss.backward()
        clip_gradients(state.model, cfg.grad_clip_mode, cfg.grad_clip)
        state.optimizer.step()
    else:
        state.scaler.scale(loss).backward()
        state.scaler.unscale_(state.optimizer)  # clip the true gradients, not the scaled ones
        clip_gradients(state.model, cfg.grad_clip_mode, cfg.grad_clip)
        state.scaler.step(state.optimizer)  # skips the step when the scaled gradients overflowed
        state.scaler.update()
    state.hidden = detach_state(hidden)
    state.step += 1
    state.global_step += 1
    return loss.detach().double() * y.numel()


def save_snapshot(run, state):
    """The weights at this step, for the training-dynamics figure; listed in the state, so the manifest names it."""
    name = f"step{state.global_step:07d}.pt"
    fraction = state.global_step / run.steps_per_epoch
    save_model(run.snapshot_dir / name, state.model, {**run.meta, "global_step": state.global_step,
                                                      "epoch_fraction": fraction})
    # a file written after the last checkpoint is not listed in it: a resumed run replays that step and rewrites it
    state.snapshots.append({"file": name, "global_step": state.global_step, "epoch_fraction": fraction})


def run_epoch(run, state, stop):
    """Train from state.step to the end of the epoch, checkpointing every checkpoint_seconds.
    -> False when stopped on request (a checkpoint is written), True at the end of the epoch."""
    cfg, n_steps = run.cfg, run.steps_per_epoch
    lr = epoch_lr(cfg, state.epoch)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    state.model.train()
    loss_sum = torch.zeros((), device=run.device, dtype=torch.float64)
    epoch_start = last_log = last_checkpoint = time.time()
    snapshot_steps = run.snapshot_steps
    while state.step < n_steps:
        loss_sum += train_step(run, state)
        stop.steps += 1
        if state.global_step in snapshot_steps:
            save_snapshot(run, state)
        now = time.time()
        if now - last_log >= cfg.log_seconds or state.step == n_steps:
            # the only host sync of the loop, at most every log_seconds
            seen = state.step * cfg.batch_size * cfg.seq_len
            running = (state.epoch_loss_sum + loss_sum.item()) / max(1, min(seen, run.chars_per_epoch))
            if not math.isfinite(running):
                raise TrainingDiverged(
                    f"training loss is {running} at epoch {state.epoch} step {state.step}: the run diverged. "
                    "Lower training.learning_rate or training.grad_clip in the config.")
            elapsed = state.epoch_seconds + now - epoch_start
            log.info(f"epoch {state.epoch} step {state.step}/{n_steps} loss {running:.4f} lr {lr:.2e} "
                     f"{seen / max(elapsed, 1e-9):,.0f} chars/s")
            last_log = now
        interrupted = stop.requested()
        if interrupted or now - last_checkpoint >= cfg.checkpoint_seconds:
            state.epoch_loss_sum += loss_sum.item()
            state.epoch_seconds += now - epoch_start
            loss_sum.zero_()
            epoch_start = last_checkpoint = now
            save_checkpoint(run, state, "interrupted" if interrupted else "periodic")
            if interrupted:
                return False
    state.epoch_loss_sum += loss_sum.item()
    state.epoch_seconds += time.time() - epoch_start
    return True


def end_epoch(run, state):
    """Validate, record the epoch, keep the best weights, move on to the next epoch.
    -> True when early stopping ends the training."""
    cfg, epoch = run.cfg, state.epoch
    train_loss = state.epoch_loss_sum / run.chars_per_epoch
    seconds = state.epoch_seconds
    val_loss = split_loss(state.model, run.encoded, run.val_rows, cfg.val_warmup, device=run.device)
    if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
        raise TrainingDiverged(
            f"loss is not finite after epoch {epoch} (train {train_loss}, val {val_loss}): the run diverged. "
            "Lower training.learning_rate or training.grad_clip in the config.")
    improved = val_loss < state.best_val
    if improved:
        state.best_val, state.bad_epochs = val_loss, 0
        state.best_weights = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
    else:
        state.bad_epochs += 1
    chars_per_s = run.chars_per_epoch / max(seconds, 1e-9)
    state.history.append({"epoch": epoch, "train_loss": round(train_loss, 6), "val_loss": round(val_loss, 6),
                          "lr": epoch_lr(cfg, epoch), "seconds": round(seconds, 3),
                          "chars_per_s": round(chars_per_s, 1), "best": improved})
    log.info(f"epoch {epoch} done: train {train_loss:.4f} val {val_loss:.4f} {'(best)' if improved else ''} "
             f"{seconds:.1f}s {chars_per_s:,.0f} chars/s")
    state.epoch, state.step, state.epoch_loss_sum, state.epoch_seconds = epoch + 1, 0, 0.0, 0.0
    state.hidden = None  # each epoch starts its streams from a zero state
    if state.bad_epochs >= cfg.patience:
        log.info(f"early stopping: no validation improvement for {cfg.patience} epochs")
        return True
    return False


def write_snapshot_manifest(run, state):
    """snapshots/manifest.json: the snapshot files of this training and the settings that placed them. The
    dynamics stage reads exactly these, never a file left over from another training."""
    if not run.cfg.snapshot_epochs:
        return
    write_json(run.snapshot_dir / MANIFEST, {
        "model_id": run.meta.get("model_id"), "corpus": run.corpus.name,
        "settings": {"snapshot_epochs": run.cfg.snapshot_epochs, "steps_per_epoch": run.steps_per_epoch,
                     "batch_size": run.cfg.batch_size, "seq_len": run.cfg.seq_len, "seed": run.cfg.seed},
        "snapshots": state.snapshots})


def final_save(run, state):
    """The best weights as out_model with the run's metadata, the history and the snapshot manifest; the
    checkpoint is removed last."""
    cfg, model = run.cfg, state.model
    model.load_state_dict(state.best_weights)
    verdict = convergence.assess([row["val_loss"] for row in state.history], cfg.max_epochs,
                                 state.bad_epochs >= cfg.patience, cfg.convergence_tolerance,
                                 initial_loss=math.log(run.corpus.vocab_size))
    if not verdict["converged"]:
        log.warning(convergence.warning(run.meta.get("model_id", run.spec.arch), verdict))
    extra = {**run.meta, "vocab": run.corpus.vocab.tolist(), "best_val_loss": state.best_val,
             "converged": verdict["converged"], "convergence": verdict,
             "epochs_run": len(state.history), "train_config": asdict(cfg),
             "params": sum(p.numel() for p in model.parameters()),
             "grad_clip_rule": f"{cfg.grad_clip_mode} {cfg.grad_clip}"}
    write_history(run.out_history, state.history)
    write_snapshot_manifest(run, state)
    model.cpu()
    torch_save({"spec": run.spec.to_dict(), "state_dict": model.state_dict(), "extra": extra}, run.out_model)
    run.checkpoint.unlink(missing_ok=True)
    log.info(f"done: best val {state.best_val:.4f} after {len(state.history)} epochs -> {run.out_model}")


def log_start(run, state):
    cfg, device = run.cfg, run.device
    log.info(f"training {run.spec.arch} layers={run.spec.layers} hidden={run.spec.hidden} "
             f"params={sum(p.numel() for p in state.model.parameters())} on {device}"
             + (f" with {torch.get_num_threads()} CPU thread(s)" if device.type == "cpu" else "")
             + f"; {run.chars_per_epoch} chars/epoch, {run.steps_per_epoch} steps of {cfg.batch_size}x{cfg.seq_len}; "
             f"gradient clipping: {cfg.grad_clip_mode} {cfg.grad_clip}; precision {cfg.precision}"
             + (", TF32 allowed" if cfg.tf32 and device.type == "cuda" else ""))


def train(cfg, corpus: PreparedCorpus, spec: ModelSpec, out_model, out_history, checkpoint_path,
          meta=None, stop_after_steps=None):
    """Train (or resume) one model. Writes out_model (best validation weights) and out_history only on success.

    `stop_after_steps` simulates a preemption after that many optimizer steps of this process (tests)."""
    run = setup(cfg, corpus, spec, out_model, out_history, checkpoint_path, meta)
    state = start_or_resume(run)
    stop = StopFlag(stop_after_steps)
    stop.install()
    log_start(run, state)
    while state.epoch <= cfg.max_epochs:
        if not run_epoch(run, state, stop):
            log.info("stopped on request; rerun the same command to resume from the checkpoint")
            return EXIT_INTERRUPTED
        if end_epoch(run, state):
            break
        save_checkpoint(run, state, "epoch end")
    final_save(run, state)
    return 0


def read_snapshot_manifest(snapshot_dir):
    """-> the manifest's snapshot entries ({"file", "global_step", "epoch_fraction"}) with "path" added, after
    checking that the manifest exists and every file it names is there."""
    snapshot_dir = Path(snapshot_dir)
    manifest = snapshot_dir / MANIFEST
    if not manifest.is_file():
        raise InputError(f"no snapshot manifest {manifest}: its model was trained without snapshots (or before "
                         "they had a manifest); set analysis.dynamics.snapshot_epochs and analysis.dynamics.model "
                         "in the config and retrain that model (delete its model.pt and rerun)")
    entries = json.loads(manifest.read_text())["snapshots"]
    missing = [e["file"] for e in entries if not (snapshot_dir / e["file"]).is_file()]
    if missing:
        raise InputError(f"{manifest} names snapshots that are missing ({', '.join(missing)}); they were moved "
                         "or deleted: delete the model.pt beside that folder and rerun to retrain it")
    return [{**e, "path": snapshot_dir / e["file"]} for e in entries]


def copy_snapshots(src_dir, dest_dir):
    """Replace dest_dir's snapshots by exactly those of src_dir's manifest (none when src_dir has no manifest);
    the manifest is copied last, so a copy cut short has none."""
    dest_dir = Path(dest_dir)
    shutil.rmtree(dest_dir, ignore_errors=True)
    if not (Path(src_dir) / MANIFEST).is_file():
        return
    for entry in read_snapshot_manifest(src_dir):
        atomic_copy(entry["path"], dest_dir / entry["file"])
    atomic_copy(Path(src_dir) / MANIFEST, dest_dir / MANIFEST)


def select_dropout(trials, out_model, out_history, out_selection):
    """The model of a grid point from its dropout trials: the one with the best validation loss, as the paper
    chose dropout on validation. Copies its model (with the choice recorded), history and snapshots."""
    candidates = []
    for path in map(Path, trials):
        payload = torch_load(path)
        extra = payload["extra"]
        candidates.append((extra["best_val_loss"], extra["train_config"]["dropout"], path, payload))
        log.info(f"trial {path.parent.name}: best validation loss {extra['best_val_loss']:.4f}")
    best_val, dropout, path, payload = min(candidates, key=lambda c: (c[0], c[1]))
    selection = {"dropout": dropout, "best_val_loss": best_val, "trial": path.parent.name,
                 "val_loss_by_dropout": {f"{c[1]:g}": c[0] for c in candidates}}
    write_selected(path, payload, selection, out_model, out_history, out_selection)
    log.info(f"chose dropout {dropout:g} (validation loss {best_val:.4f}) of {len(candidates)} trial(s) -> {out_model}")
    return selection


def write_selected(trial, payload, selection, out_model, out_history, out_selection):
    """The chosen trial becomes the grid point's model: its weights with the choice recorded, history, snapshots."""
    payload["extra"]["dropout_selection"] = selection
    out_model = Path(out_model)
    copy_snapshots(trial.with_name("snapshots"), out_model.with_name("snapshots"))
    atomic_copy(trial.with_name("history.csv"), out_history)
    write_json(out_selection, selection)
    torch_save(payload, out_model)


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

    from rnnlens import archs
    from rnnlens.ids import parse_model_id

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig.from_dict(json.loads(args.settings))
    corpus = PreparedCorpus.load(args.data)
    arch, layers, size = parse_model_id(args.model)
    table = pd.read_csv(args.models_table).set_index("model")
    if args.model not in table.index:
        raise InputError(f"model {args.model} is not in {args.models_table}; add its arch/layers/size to the grid")
    row = table.loc[args.model]
    inner = int(row["inner"]) if "inner" in row and pd.notna(row["inner"]) else 0  # a table without: none
    spec = ModelSpec(arch, layers, int(row["hidden"]), corpus.vocab_size, cfg.dropout,
                     **archs.spec_options(arch, asdict(cfg)), inner=inner)
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
