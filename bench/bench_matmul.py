"""The matrix-product ceiling of a device at the step shapes of a character model.

A training step of a recurrent layer multiplies, per time step, the batch's [input; hidden] rows by the gate
weights: forward [B, I+H] x [I+H, G*H], backward [B, G*H] x [G*H, I+H] (input gradient) and
[I+H, B] x [B, G*H] (weight gradient), so 6 FLOPs per weight and character in all; the decoder adds
[B, H] x [H, V] and its two backward products. The ceiling is the FLOP/s the device achieves on exactly these
products, run back to back; training at `6 x matmul parameters x characters/s` is then compared with it.

    python bench/bench_matmul.py [--device cpu] [--threads 1] [--sizes 64,128,256,512] [--out results/bench/matmul.json]
"""

import argparse

import torch

from common import RESULTS, best_seconds, device_info, grid_points, pick_device, set_threads, write_json

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def step_shapes(arch, layers, hidden, vocab_size, batch=100):
    """(m, k, n) of every matrix product of one time step, forward and backward, decoder included."""
    gates = GATES[arch] * hidden
    shapes = []
    for layer in range(layers):
        fan_in = (vocab_size if layer == 0 else hidden) + hidden
        shapes += [(batch, fan_in, gates), (batch, gates, fan_in), (fan_in, batch, gates)]
    shapes += [(batch, hidden, vocab_size), (batch, vocab_size, hidden), (hidden, batch, vocab_size)]
    return shapes


def matmul_ceiling(shapes, device, dtype=torch.float32, repeats=3, min_seconds=0.2):
    """Achieved FLOP/s of the products `shapes`, run back to back (best of `repeats`)."""
    gen = torch.Generator().manual_seed(0)
    pairs = [(torch.rand(m, k, generator=gen, dtype=dtype).to(device), torch.rand(k, n, generator=gen, dtype=dtype).to(device))
             for m, k, n in shapes]
    outs = [torch.empty(m, n, dtype=dtype, device=device) for m, _, n in shapes]
    flops = sum(2 * m * k * n for m, k, n in shapes)

    def run():
        for (a, b), out in zip(pairs, outs):
            torch.mm(a, b, out=out)

    run()  # warm-up: library initialisation, kernel choice
    seconds = best_seconds(run, repeats, device, min_seconds)
    return flops / seconds


def point_ceiling(point, device, batch=100, repeats=3, min_seconds=0.2):
    return matmul_ceiling(step_shapes(point["arch"], point["layers"], point["hidden"], point["vocab"], batch),
                          device, repeats=repeats, min_seconds=min_seconds)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--sizes", default="64,128,256,512", help="1-layer LSTM sizes")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--out", default=str(RESULTS / "matmul.json"))
    args = ap.parse_args(argv)
    device = pick_device(args.device)
    set_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    for point in grid_points([("lstm", 1, int(s)) for s in args.sizes.split(",")]):
        flops = point_ceiling(point, device, args.batch)
        rows.append({**point, "ceiling_flops": flops})
        print(f"{point['model']:>12} hidden {point['hidden']:4d}: {flops / 1e9:8.1f} GFLOP/s", flush=True)
    write_json(args.out, {**device_info(device), "batch": args.batch, "results": rows})
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
