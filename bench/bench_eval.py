"""Evaluation characters/s over a whole test split through the workflow's code (rnnlens.evaluate.predict_test:
streams with warm-up, softmax, target probability, argmax, copies to the host) against the model's bare fused
inference (no_grad forward of the same [streams, columns] tensor in the same chunks, nothing else), measured
interleaved in one process. Goal [ours]: >= 0.9 of the bare rate.

    python bench/bench_eval.py [--corpus ../shared/data/warpeace.txt] [--models lstm-1x64,lstm-2x256]
                               [--device auto] [--threads 1] [--repeats 2] [--out results/bench/eval.json]

Without the corpus file, a random text of War and Peace's size and vocabulary (87) stands in: speed does not
depend on the text. Weights are random (uniform init), which does not change the cost either.
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from common import (ROOT, RESULTS, build_model, device_info, grid_points, now, parse_points, pick_device, set_clock,
                    set_threads, sync, synthetic_corpus, write_json)
from rnnlens.corpus import PreparedCorpus, split_bounds
from rnnlens.evaluate import batch_rows, predict_test, stream_layout

DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "warpeace.txt"
WP_SIZE, WP_VOCAB = 3_258_246, 87


def load_corpus(path, fractions=(0.8, 0.1, 0.1)):
    path = Path(path) if path else None
    if path and path.is_file():
        data = np.fromfile(path, dtype=np.uint8)
        bounds = split_bounds(len(data), dict(zip(("train", "val", "test"), fractions)))
        return PreparedCorpus.contiguous(path.stem, data, bounds), path.name
    n = WP_SIZE
    bounds = split_bounds(n, dict(zip(("train", "val", "test"), fractions)))
    corpus = synthetic_corpus(bounds["val"][0], WP_VOCAB, bounds["test"][0] - bounds["val"][0],
                              n - bounds["test"][0], name="synthetic")
    return corpus, f"synthetic ({n} random bytes, vocabulary {WP_VOCAB})"


def fused_inputs(corpus, streams, warmup):
    """The [streams, columns] input tensor predict_test runs, built the same way."""
    rows = batch_rows(corpus.pieces["test"], streams)
    lookback, _ = stream_layout(rows, warmup)
    width = max(length for _, length in rows)
    encoded = corpus.encode(corpus.data)
    padded = np.concatenate([encoded, np.zeros(width + 1, dtype=encoded.dtype)])
    return torch.from_numpy(np.stack([padded[a - lookback : a + width] for a, _ in rows]))


@torch.no_grad()
def fused_pass(model, x_all, chunk):
    state = None
    for col in range(0, x_all.shape[1], chunk):
        _, state = model(x_all[:, col : col + chunk], state)
    return state


def bench_model(point, corpus, device, streams, warmup, chunk, repeats):
    model = build_model(point, device).eval()
    x_all = fused_inputs(corpus, streams, warmup).to(device)
    fused_pass(model, x_all[:, :200], chunk)  # warm-up
    sync(device)
    workflow, bare = [], []
    for r in range(repeats):
        for side in (("workflow", "bare") if r % 2 == 0 else ("bare", "workflow")):
            sync(device)
            t0 = now()
            if side == "workflow":
                predict_test(model, corpus, streams=streams, warmup=warmup, chunk=chunk, device=device)
            else:
                fused_pass(model, x_all, chunk)
            sync(device)
            (workflow if side == "workflow" else bare).append(now() - t0)
    test_chars = corpus.split_size("test")
    row = {**point, "streams": int(x_all.shape[0]), "columns": int(x_all.shape[1]), "chunk": chunk,
           "test_chars": test_chars, "processed_chars": int(x_all.numel()),
           "workflow_s": min(workflow), "bare_s": min(bare), "workflow_runs_s": workflow, "bare_runs_s": bare}
    row["workflow_test_chars_per_s"] = test_chars / row["workflow_s"]
    row["bare_test_chars_per_s"] = test_chars / row["bare_s"]
    row["ratio"] = row["bare_s"] / row["workflow_s"]
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="text file read as bytes, split 80/10/10")
    ap.add_argument("--models", default="lstm-1x64,lstm-2x256", help="points ARCH-LAYERSxSIZE (size = budget)")
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=2000)
    ap.add_argument("--chunk", type=int, default=2000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--clock", choices=("auto", "wall", "cpu"), default="auto",
                    help="cpu: process CPU seconds (see bench_train.py); auto: cpu for one CPU thread, wall otherwise")
    ap.add_argument("--out", default=str(RESULTS / "eval.json"))
    args = ap.parse_args(argv)
    device = pick_device(args.device)
    clock = set_clock(args.clock, device, set_threads(args.threads))
    corpus, source = load_corpus(args.corpus)
    rows = []
    for point in grid_points(parse_points(args.models), corpus.vocab_size):
        row = bench_model(point, corpus, device, args.streams, args.warmup, args.chunk, args.repeats)
        rows.append(row)
        print(f"{row['model']:>12} h={row['hidden']:<4} {row['test_chars']:,} test chars: predict_test "
              f"{row['workflow_test_chars_per_s']:,.0f} c/s ({row['workflow_s']:.2f} s), bare fused "
              f"{row['bare_test_chars_per_s']:,.0f} c/s ({row['bare_s']:.2f} s), ratio {row['ratio']:.3f}", flush=True)
    write_json(args.out, {**device_info(device), "clock": clock, "corpus": source, "repeats": args.repeats, "results": rows})
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
