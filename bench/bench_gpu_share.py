"""Several trainings sharing one GPU (issue: the whole grid on one GPU).

A char model at batch 100 leaves most of a modern GPU idle. This starts K training processes at once (what
`snakemake --resources gpu=K` does with the workflow's `gpu: 1` training jobs), each running rnnlens.train.train
for one epoch of synthetic data, all released at the same moment after their CUDA start-up, and reports the
aggregate characters/s against one process alone, for each K. Prints a table and writes JSON.

    python bench/bench_gpu_share.py --device cuda --model lstm-2x256 --ks 1,4,8 --steps 600
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def worker(args):
    import torch

    from rnnlens.corpus import PreparedCorpus
    from rnnlens.model import ModelSpec, match_budget, parse_model_id
    from rnnlens.train import TrainConfig, train

    arch, layers, size = parse_model_id(args.model)
    vocab = 87
    hidden, inner = match_budget(arch, layers, size, vocab)[:2]
    n_train = args.steps * 100 * 100 + 1
    rng = np.random.default_rng(args.seed)
    data = rng.integers(0, vocab, n_train + 20_002).astype(np.uint8)
    corpus = PreparedCorpus.contiguous("synthetic", data, {"train": (0, n_train), "val": (n_train, n_train + 10_001),
                                                           "test": (n_train + 10_001, len(data))},
                                       vocab=np.arange(vocab, dtype=np.uint8))
    cfg = TrainConfig(max_epochs=1, device=args.device, log_seconds=1e9, checkpoint_seconds=1e9)
    torch.ones(1, device=args.device).sum().item()  # CUDA start-up before the common start signal
    while time.time() < args.start_at:
        time.sleep(0.01)
    out = Path(args.out_dir)
    started = time.time()
    train(cfg, corpus, ModelSpec(arch, layers, hidden, vocab, inner=inner), out / "m.pt", out / "h.csv", out / "c.pt")
    seconds = time.time() - started
    chars = args.steps * 100 * 100
    print(json.dumps({"seconds": seconds, "chars": chars}), flush=True)


def run_k(k, args):
    start_at = time.time() + args.startup
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(k):
            out = Path(tmp) / str(i)
            out.mkdir()
            cmd = [sys.executable, __file__, "--worker", "--device", args.device, "--model", args.model,
                   "--steps", str(args.steps), "--seed", str(i), "--start-at", str(start_at), "--out-dir", str(out)]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                                          env={**os.environ, "OMP_NUM_THREADS": "1"}))
        results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    wall = max(r["seconds"] for r in results)
    chars = sum(r["chars"] for r in results)
    return {"k": k, "wall_s": round(wall, 2), "aggregate_chars_per_s": round(chars / wall),
            "per_process_chars_per_s": round(chars / k / wall)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="lstm-2x256")
    ap.add_argument("--ks", default="1,4,8")
    ap.add_argument("--steps", type=int, default=600, help="training steps of 100x100 characters per process")
    ap.add_argument("--startup", type=float, default=15.0, help="seconds allowed for every process's start-up")
    ap.add_argument("--out", default="results/bench/gpu_share.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    rows = []
    for k in [int(x) for x in args.ks.split(",")]:
        rows.append(run_k(k, args))
        print(f"K={k}: wall {rows[-1]['wall_s']} s, aggregate {rows[-1]['aggregate_chars_per_s']:,} chars/s, "
              f"per process {rows[-1]['per_process_chars_per_s']:,}", flush=True)
    base = rows[0]["aggregate_chars_per_s"]
    print(f"\n{args.model} on {args.device}, {args.steps} steps of 100x100 per process")
    print(f"{'K':>3} {'wall s':>8} {'aggregate chars/s':>18} {'x one process':>14}")
    for r in rows:
        r["speedup"] = round(r["aggregate_chars_per_s"] / base, 2)
        print(f"{r['k']:>3} {r['wall_s']:>8} {r['aggregate_chars_per_s']:>18,} {r['speedup']:>14}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"model": args.model, "device": args.device, "steps": args.steps,
                                          "rows": rows}, indent=1))
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
