"""Training characters/s of every grid point through the workflow's own code (rnnlens.train.train) against a
bare PyTorch loop on the same model, optimizer step, clipping and batch, measured interleaved in one process;
and both against the device's matrix-product ceiling at the model's step shapes (bench_matmul.py).

train() runs one epoch on a synthetic corpus whose training split is exactly `steps` batches of 100 x 100, and
its history gives characters/s over the epoch's steps (validation, checkpoints and file writes excluded). The
bare loop is the same CharRNN, RMSprop(lr 2e-3, alpha 0.95), element-wise clipping at 5 and carried, detached
state over the same streams, with nothing else. Goals: train/bare >= 0.95 at every point; training FLOP/s
(6 x matmul parameters x characters/s) >= 0.75 of the ceiling at sizes >= 256 on CPU.

    python bench/bench_train.py [--grid paper|small] [--points lstm-1x64,...] [--device auto] [--threads 1]
                                [--seconds 0.5] [--steps 50] [--min-steps 1] [--repeats 3] [--max-repeats 8]
                                [--point-seconds 8] [--clock auto|cpu|wall] [--check-cpu] [--max-seconds S]
                                [--out results/bench/train.json]
"""

import argparse
import copy
import csv
import math
import contextlib
import tempfile
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

from bench_matmul import point_ceiling
from common import (CLOCKS, LK_TRAIN_CHARS, PAPER_EPOCHS, PAPER_GRID, RESULTS, SMALL_GRID, WP_TRAIN_CHARS,
                    build_model, clock_name, spec_for, device_info, grid_points, human_seconds, kept_signal_handlers, now,
                    parse_points, pick_device, set_clock, set_threads, sync, synthetic_corpus, write_json)
import rnnlens.train
from rnnlens.model import RNN_ARCHS
from rnnlens.train import PRECISIONS, TrainConfig, train

BATCH, SEQ = 100, 100


@contextlib.contextmanager
def train_clock():
    """Make rnnlens.train time its epochs by the benchmark's clock (it calls time.time(), and nothing else of the
    time module): its history then reports characters per CPU second under --clock cpu. Only the module's
    reference to `time` is swapped, for the duration of the call; the training code itself is untouched."""
    saved = rnnlens.train.time
    rnnlens.train.time = types.SimpleNamespace(time=CLOCKS[clock_name()])
    try:
        yield
    finally:
        rnnlens.train.time = saved


def workflow_run(point, corpus, device, workdir, tf32=False, precision="fp32"):
    """Characters/s of one epoch of rnnlens.train.train over `corpus` (its whole training split)."""
    cfg = TrainConfig(max_epochs=1, device=str(device), tf32=tf32, precision=precision)
    spec = spec_for(point, cfg.dropout)
    workdir = Path(workdir)
    with kept_signal_handlers(), train_clock():
        code = train(cfg, corpus, spec, workdir / "model.pt", workdir / "history.csv", workdir / "checkpoint.pt")
    if code != 0:
        raise RuntimeError(f"rnnlens.train.train returned {code}")
    with open(workdir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    return float(rows[0]["chars_per_s"])


def bare_run(point, indices, steps, device, lr=2e-3, alpha=0.95, clip=5.0, per_step=False, precision="fp32"):
    """Characters/s of `steps` plain training steps on the streams of `indices` (int64 on the device).
    With per_step, also the seconds of each step (synchronised every step: for estimates only).
    precision bf16/fp16: the usual autocast (and, for fp16, loss scaling) recipe."""
    length = (len(indices) - 1) // BATCH
    inputs = indices[: BATCH * length].view(BATCH, length)
    targets = indices[1 : BATCH * length + 1].view(BATCH, length)
    torch.manual_seed(1)
    model = build_model(point, device)
    model.train()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=lr, alpha=alpha)
    dtype = PRECISIONS[precision]
    scaler = torch.amp.GradScaler(torch.device(device).type) if precision == "fp16" else None
    state, times = None, []
    sync(device)
    t0 = last = now()
    for step in range(steps):
        x = inputs[:, step * SEQ : (step + 1) * SEQ]
        y = targets[:, step * SEQ : (step + 1) * SEQ]
        with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
            logits, state = model(x, state)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), clip)
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_value_(model.parameters(), clip)
            scaler.step(optimizer)
            scaler.update()
        if state is not None:  # the transformer carries no state
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        if per_step:
            sync(device)
            t = now()
            times.append(t - last)
            last = t
    sync(device)
    seconds = now() - t0
    rate = steps * BATCH * SEQ / seconds
    return (rate, times) if per_step else rate


def bench_point(point, device, seconds, max_steps, min_steps, repeats, tf32=False, ceiling=True, max_repeats=None,
                point_seconds=0.0, precision="fp32"):
    """Interleaved measurement of one grid point -> result dict. Rounds: `repeats`, raised up to `max_repeats`
    while the point's timed runs stay within `point_seconds` (cheap points get more rounds: a better best-of)."""
    # one warm-up (allocations, kernel selection) shared by both sides, and an estimate of a step's time
    warm_corpus = synthetic_corpus(BATCH * SEQ * 2 + 1, point["vocab"])
    warm_idx = torch.from_numpy(warm_corpus.encode(warm_corpus.split("train"))).to(device)
    _, times = bare_run(point, warm_idx, 2, device, per_step=True, precision=precision)
    step_seconds = min(times[1:])
    steps = min(max_steps, max(min_steps, math.ceil(seconds / step_seconds)))  # --steps is the hard cap
    run_seconds = steps * step_seconds
    rounds = max(repeats, min(max_repeats or repeats, int(point_seconds / (2 * run_seconds))))
    corpus = synthetic_corpus(BATCH * SEQ * steps + 1, point["vocab"], seed=1)
    indices = torch.from_numpy(corpus.encode(corpus.split("train"))).to(device)
    workflow, bare, ceilings = [], [], []
    ceiling = ceiling and point["arch"] in RNN_ARCHS  # the matmul ceiling is defined by the RNN step's products
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for r in range(rounds):
            # alternate the order so that a drift in machine load does not favour one side; the ceiling is
            # measured in every round too (a shared core's speed changes with its neighbours' load)
            for side in (("workflow", "bare") if r % 2 == 0 else ("bare", "workflow")):
                if side == "workflow":
                    workflow.append(workflow_run(point, corpus, device, tmp, tf32, precision))
                else:
                    bare.append(bare_run(point, indices, steps, device, precision=precision))
            # on a GPU the ceiling is steady and only reported: once per point
            if ceiling and (r == 0 or torch.device(device).type == "cpu"):
                ceilings.append(point_ceiling(point, device, repeats=2, min_seconds=0.1))
    row = {**point, "steps": steps, "chars": steps * BATCH * SEQ, "repeats": rounds,
           "workflow_chars_per_s": max(workflow), "bare_chars_per_s": max(bare),
           "workflow_runs": workflow, "bare_runs": bare}
    row["ratio"] = row["workflow_chars_per_s"] / row["bare_chars_per_s"]
    row["ratio_per_round"] = [w / b for w, b in zip(workflow, bare)]
    # how much the same code's speed varies between runs here: a ratio off 1 by less than this is noise
    row["bare_spread"] = max(bare) / min(bare) - 1
    row["workflow_spread"] = max(workflow) / min(workflow) - 1
    row["train_flops"] = 6 * point["matmul_params"] * row["workflow_chars_per_s"]
    if ceilings:
        row["ceiling_flops"] = max(ceilings)
        row["ceiling_runs"] = ceilings
        row["ceiling_fraction"] = row["train_flops"] / row["ceiling_flops"]
        row["bare_ceiling_fraction"] = 6 * point["matmul_params"] * row["bare_chars_per_s"] / row["ceiling_flops"]
    row["wp_epoch_s"] = WP_TRAIN_CHARS / row["workflow_chars_per_s"]
    row["lk_epoch_s"] = LK_TRAIN_CHARS / row["workflow_chars_per_s"]
    return row


def projection(rows):
    """The paper grid at its recipe on both corpora: 50 epochs (no early stopping: an upper bound) of every point.
    Points are measured at vocabulary 87 (WP); Linux's 101 changes hidden sizes by a few cells, ignored here."""
    wp = sum(PAPER_EPOCHS * r["wp_epoch_s"] for r in rows)
    lk = sum(PAPER_EPOCHS * r["lk_epoch_s"] for r in rows)
    return {"models": 2 * len(rows), "epochs": PAPER_EPOCHS, "wp_train_chars": WP_TRAIN_CHARS,
            "lk_train_chars": LK_TRAIN_CHARS, "warpeace_s": wp, "linux_s": lk, "total_s": wp + lk,
            "note": "sequential, one model at a time, 50 epochs each (early stopping would shorten it); "
                    "Linux points use the War and Peace (vocabulary 87) rates"}


def check_against_cpu(device, hidden_size=128, layers=2, vocab=87, log=print):
    """One forward+backward of the same weights and batch on `device` and on the CPU (TF32 off): loss and
    gradient norms must agree to float tolerance."""
    if torch.device(device).type == "cpu":
        return {"skipped": "the device is the CPU"}
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    results, ok = [], True
    try:
        for arch in ("rnn", "lstm", "gru"):
            point = grid_points([(arch, layers, hidden_size)], vocab)[0]
            cpu_model = build_model(point, "cpu", seed=3)
            dev_model = copy.deepcopy(cpu_model).to(device)
            gen = torch.Generator().manual_seed(4)
            batch = torch.randint(0, vocab, (BATCH, SEQ + 1), generator=gen)
            out = {}
            for name, model, x in (("cpu", cpu_model, batch), ("device", dev_model, batch.to(device))):
                logits, _ = model(x[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, vocab), x[:, 1:].reshape(-1))
                loss.backward()
                out[name] = (loss.item(), [p.grad.double().norm().item() for p in model.parameters()],
                             [p.grad.detach().cpu() for p in model.parameters()])
            loss_diff = abs(out["cpu"][0] - out["device"][0])
            norm_rel = max(abs(a - b) / max(a, 1e-12) for a, b in zip(out["cpu"][1], out["device"][1]))
            grad_rel = max(((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()
                           for a, b in zip(out["cpu"][2], out["device"][2]))
            passed = loss_diff <= 1e-4 * max(1.0, out["cpu"][0]) and norm_rel <= 1e-3 and grad_rel <= 1e-3
            ok &= passed
            results.append({"model": point["model"], "hidden": point["hidden"], "loss_cpu": out["cpu"][0],
                            "loss_device": out["device"][0], "loss_abs_diff": loss_diff,
                            "grad_norm_max_rel_diff": norm_rel, "grad_max_rel_diff": grad_rel, "passed": passed})
            log(f"check {point['model']:>10}: loss cpu {out['cpu'][0]:.7f} device {out['device'][0]:.7f} "
                f"|diff| {loss_diff:.1e}; grad norms max rel diff {norm_rel:.1e}; grads max rel diff {grad_rel:.1e} "
                f"-> {'ok' if passed else 'MISMATCH'}", flush=True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return {"passed": ok, "tolerance": "loss 1e-4 relative; gradient norms and elements 1e-3 relative",
            "tf32": False, "results": results}


def print_table(rows, info, log=print):
    log(f"\ntraining on {info['device_name']} ({info['device']}, {info['threads']} threads, torch {info['torch']})")
    log(f"{'model':>12} {'hidden':>6} {'params':>9} {'steps':>5} {'workflow c/s':>13} {'bare c/s':>11} "
        f"{'ratio':>6} {'GFLOP/s':>8} {'ceiling':>8} {'frac':>5} {'WP epoch':>10}")
    for r in rows:
        log(f"{r['model']:>12} {r['hidden']:6d} {r['params']:9,d} {r['steps']:5d} {r['workflow_chars_per_s']:13,.0f} "
            f"{r['bare_chars_per_s']:11,.0f} {r['ratio']:6.3f} {r['train_flops'] / 1e9:8.1f} "
            f"{r.get('ceiling_flops', math.nan) / 1e9:8.1f} {r.get('ceiling_fraction', math.nan):5.2f} "
            f"{human_seconds(r['wp_epoch_s']):>10}", flush=True)


def run(grid, device="auto", threads=1, seconds=0.5, max_steps=50, min_steps=1, repeats=3, tf32=False,
        check_cpu=False, ceiling=True, vocab=87, clock="auto", max_seconds=None, out=None, max_repeats=8,
        point_seconds=8.0, precision="fp32", log=print):
    """Measure every point of `grid`; with `out`, the JSON is rewritten after each point (a run cut short keeps
    what it measured); with `max_seconds`, points that would start after that are skipped."""
    device = pick_device(device)
    threads = set_threads(threads)
    clock = set_clock(clock, device, threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False  # as in training: the default
    info = device_info(device)
    log(f"device {info['device_name']} ({device}); torch {info['torch']}; {info['threads']} CPU threads; "
        f"{clock} clock", flush=True)
    started = time.perf_counter()
    check = check_against_cpu(device, log=log) if check_cpu else None
    rows = []
    points = grid_points(grid, vocab)

    def assemble():
        result = {**info, "clock": clock, "tf32": tf32, "precision": precision, "batch": BATCH, "seq_len": SEQ, "seconds_per_run": seconds,
                  "min_repeats": repeats, "points_planned": len(points), "complete": len(rows) == len(points),
                  "results": rows, "wall_s": time.perf_counter() - started}
        measured = {(r["arch"], r["layers"], r["size"]) for r in rows}
        if measured & set(PAPER_GRID):
            result["projection"] = projection([r for r in rows if (r["arch"], r["layers"], r["size"]) in PAPER_GRID])
            missing = len(set(PAPER_GRID) - measured)
            if missing:
                result["projection"]["note"] += f"; ONLY {len(PAPER_GRID) - missing} of the {len(PAPER_GRID)} grid points measured"
        if check is not None:
            result["check_cpu"] = check
        return result

    overheads = []  # per point: wall seconds beyond its timed runs (start-up, warm-up, ceiling, train()'s files)
    for i, point in enumerate(points, 1):
        elapsed = time.perf_counter() - started
        if max_seconds and elapsed > max_seconds:
            log(f"time budget of {max_seconds:.0f} s spent: skipping the last {len(points) - i + 1} points", flush=True)
            break
        run_seconds = seconds
        if max_seconds:
            # shorten the timed runs so that every remaining point fits in the budget
            share = (max_seconds - elapsed) / (len(points) - i + 1)
            overhead = sorted(overheads)[len(overheads) // 2] if overheads else 2.0
            run_seconds = min(seconds, max(0.05, (share - overhead) / (2 * repeats)))
        point_started = time.perf_counter()
        row = bench_point(point, device, run_seconds, max_steps, min_steps, repeats, tf32, ceiling, max_repeats,
                          point_seconds, precision)
        point_wall = time.perf_counter() - point_started
        timed = sum(row["chars"] / c for c in row["workflow_runs"] + row["bare_runs"])
        overheads.append(max(0.0, point_wall - timed))
        row["point_wall_s"] = round(point_wall, 2)
        rows.append(row)
        log(f"[{i}/{len(points)}] {row['model']:>10} h={row['hidden']:<4} {row['steps']:4d} steps: "
            f"workflow {row['workflow_chars_per_s']:,.0f} c/s, bare {row['bare_chars_per_s']:,.0f} c/s, "
            f"ratio {row['ratio']:.3f} (best of {row['repeats']}; run-to-run spread {row['bare_spread']:.0%})"
            + (f", {row['ceiling_fraction']:.2f} of the matmul ceiling" if "ceiling_fraction" in row else "")
            + f" ({time.perf_counter() - started:.0f} s)", flush=True)
        if out:
            write_json(out, assemble())
    result = assemble()
    if out:
        write_json(out, result)
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", choices=("paper", "small"), default="paper",
                    help="paper: 3 archs x 3 depths x 4 sizes (36 points); small: 5 points")
    ap.add_argument("--points", help="explicit points instead of --grid, e.g. lstm-1x64,gru-2x128 (size = budget)")
    ap.add_argument("--vocab", type=int, default=87, help="vocabulary size (87: War and Peace)")
    ap.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1, ...")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--seconds", type=float, default=0.5,
                    help="target seconds of one timed run (sets the steps per point from a warm-up estimate)")
    ap.add_argument("--steps", type=int, default=50, help="at most this many steps per timed run")
    ap.add_argument("--min-steps", type=int, default=1, help="at least this many steps per timed run")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds of (workflow, bare); best of each")
    ap.add_argument("--max-repeats", type=int, default=8,
                    help="more rounds, up to this many, for points whose runs fit in --point-seconds")
    ap.add_argument("--point-seconds", type=float, default=8.0, help="timed seconds per point that sets the rounds")
    ap.add_argument("--clock", choices=("auto", "wall", "cpu"), default="auto",
                    help="cpu: process CPU seconds (ignores time the shared machine gives to other jobs; needs "
                         "--threads 1 on the CPU); auto: cpu for one CPU thread, wall otherwise")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 on CUDA (both sides; off for paper fidelity)")
    ap.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32",
                    help="training.precision of both sides (autocast; fp16 with loss scaling, CUDA only)")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the matmul ceiling")
    ap.add_argument("--check-cpu", action="store_true",
                    help="first check that the device and the CPU give the same loss and gradients on one batch")
    ap.add_argument("--max-seconds", type=float, help="skip the points that would start after this many seconds")
    ap.add_argument("--out", default=str(RESULTS / "train.json"))
    args = ap.parse_args(argv)
    grid = parse_points(args.points) if args.points else (PAPER_GRID if args.grid == "paper" else SMALL_GRID)
    result = run(grid, args.device, args.threads, args.seconds, args.steps, args.min_steps, args.repeats, args.tf32,
                 args.check_cpu, not args.no_ceiling, args.vocab, args.clock, args.max_seconds, args.out, args.max_repeats,
                 args.point_seconds, args.precision)
    print_table(result["results"], result)
    if "projection" in result:
        p = result["projection"]
        print(f"projected paper grid ({p['models']} models x {p['epochs']} epochs, one at a time): "
              f"{human_seconds(p['total_s'])} (WP {human_seconds(p['warpeace_s'])}, LK {human_seconds(p['linux_s'])})")
    print(f"wrote {args.out}", flush=True)
    if "check_cpu" in result and result["check_cpu"].get("passed") is False:
        print("device and CPU disagree beyond float tolerance (see check_cpu in the JSON)", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
