"""Characters per second of the exact internals (rnnlens.recurrent.LayerwiseRunner: every gate and state of
every layer) against the model's own fused inference (CharRNN.forward under no_grad, decoder included) over the
same streams and chunks, side by side in one run. The goal is a ratio internals/fused >= 0.5.

    python bench/bench_internals.py [--sizes 1x128,2x256,3x512] [--arch lstm] [--streams 50] [--chunk 100]
                                    [--steps 400] [--repeats 3] [--device cpu] [--method auto] [--threads 0]
                                    [--out results/bench/internals.json]
"""

import argparse
import os
import platform
from pathlib import Path

import torch

from common import now, set_clock, write_json
from rnnlens.recurrent import LayerwiseRunner
from rnnlens.model import ModelSpec
from rnnlens.recurrent import CharRNN


def interleaved_best(fns, repeats, sync):
    """Best time of each function over `repeats` rounds, the order alternating per round (a drift in machine
    load favours neither side), by the benchmark clock (CPU time for one thread, else wall)."""
    for fn in fns:
        fn()  # warm-up: allocations, kernel selection
    best = [float("inf")] * len(fns)
    for r in range(repeats):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            sync()
            t0 = now()
            fns[i]()
            sync()
            best[i] = min(best[i], now() - t0)
    return best


def bench_one(arch, layers, hidden, vocab, streams, chunk, steps, repeats, device, method="auto"):
    torch.manual_seed(0)
    model = CharRNN(ModelSpec(arch, layers, hidden, vocab)).to(device).eval()
    model.init_uniform()
    runner = LayerwiseRunner(model, method)
    idx = torch.randint(0, vocab, (streams, steps), device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    @torch.no_grad()
    def fused():
        state = None
        for col in range(0, steps, chunk):
            _, state = model(idx[:, col:col + chunk], state)

    def internals():
        state = None
        for col in range(0, steps, chunk):
            _, state = runner.run(idx[:, col:col + chunk], state)

    chars = streams * steps
    t_fused, t_internals = interleaved_best([fused, internals], repeats, sync)
    return {"arch": arch, "layers": layers, "hidden": hidden, "vocab": vocab, "streams": streams, "chunk": chunk,
            "method": runner.method,
            "chars": chars, "fused_chars_per_s": chars / t_fused, "internals_chars_per_s": chars / t_internals,
            "ratio": t_fused / t_internals}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1x128,2x256,3x512", help="LAYERSxHIDDEN list")
    ap.add_argument("--arch", default="lstm", choices=("lstm", "gru", "rnn"))
    ap.add_argument("--vocab", type=int, default=100)
    ap.add_argument("--streams", type=int, default=50)
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--steps", type=int, default=400, help="time steps per stream per measurement")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--method", default="auto", choices=("auto", "loop", "fused"),
                    help="internals method (auto: fused on CUDA, loop on CPU)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", default=str(Path(os.environ.get("BENCH_RESULTS") or "results/bench") / "internals.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = set_clock("auto", args.device, torch.get_num_threads())
    rows = []
    print(f"{'model':>14} {'fused chars/s':>14} {'internals chars/s':>18} {'ratio':>6}", flush=True)
    for size in args.sizes.split(","):
        layers, hidden = (int(v) for v in size.lower().split("x"))
        row = bench_one(args.arch, layers, hidden, args.vocab, args.streams, args.chunk, args.steps, args.repeats,
                        args.device, args.method)
        rows.append(row)
        print(f"{args.arch}-{layers}x{hidden:<6} {row['fused_chars_per_s']:14,.0f} {row['internals_chars_per_s']:18,.0f} "
              f"{row['ratio']:6.2f}  ({row['method']})", flush=True)
    result = {"device": args.device, "threads": torch.get_num_threads(), "clock": clock, "torch": torch.__version__,
              "machine": platform.machine(), "processor": platform.processor(), "results": rows}
    out = write_json(args.out, result)
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
