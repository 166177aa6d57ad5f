"""KenLM n-gram baselines: lmplz + build_binary time and peak memory per order, and scoring characters/s.

Builds each order with the workflow's own code (rnnlens.ngram.train: byte tokens, one training line, lmplz
--discount_fallback, trie binary) on the first --train-bytes of War and Peace's training split, then scores the
test split two ways, side by side: rnnlens.ngram.score (what the workflow runs: token encoding, KenLM's
full_scores, p(<unk>) sharing) against KenLM's bare full_scores over the same pre-encoded token stream.

    python bench/bench_kenlm.py [--corpus ../shared/data/warpeace.txt] [--train-bytes 1000000]
                                [--orders 1,2,3,5,9,20] [--memory 1G] [--out results/bench/kenlm.json]

The paper-size builds (the whole 2.6 MB WP training split, order 20: ~3 minutes, 1.7 GiB) are in the issue
notes; this benchmark uses a slice so that `make bench` stays short. Without KenLM built (scripts/setup_kenlm.sh)
it writes a JSON that says so and exits 0.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Not bench/common.py: it imports torch, and the peak RSS of a program started from here counts this process's own
# RSS at fork, so the smaller this process, the tighter the small figures.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from rnnlens import ngram  # noqa: E402
from rnnlens.corpus import split_bounds  # noqa: E402
from rnnlens.io import atomic_write_text
from synthetic import synthetic_prose  # noqa: E402

RESULTS = Path(os.environ.get("BENCH_RESULTS") or ROOT / "results" / "bench")


def write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")

DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "warpeace.txt"


def load_text(path, train_bytes, test_bytes):
    """-> (train slice, test split bytes, context before test, source label); random bytes stand in without a file."""
    path = Path(path) if path else None
    if path and path.is_file():
        data = np.fromfile(path, dtype=np.uint8)
        label = path.name
    else:
        data, label = synthetic_prose(3_258_246), "synthetic prose (War and Peace's size)"
    bounds = split_bounds(len(data), {"train": 0.8, "val": 0.1, "test": 0.1})
    t0, t1 = bounds["train"]
    s0, s1 = bounds["test"]
    s1 = min(s1, s0 + test_bytes) if test_bytes else s1
    return data[t0 : min(t1, t0 + train_bytes)], data[s0:s1], data[max(0, s0 - 19) : s0], data, label


def bare_scores(model, tokens, count):
    """KenLM's own full_scores over an already encoded stream: the ceiling of scoring."""
    return np.fromiter((s[0] for s in model.full_scores(tokens, bos=False, eos=False)), dtype=np.float64, count=count)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="text read as bytes, split 80/10/10")
    ap.add_argument("--train-bytes", type=int, default=1_000_000, help="training bytes per model (a slice)")
    ap.add_argument("--test-bytes", type=int, default=0, help="test bytes scored (0: the whole test split)")
    ap.add_argument("--orders", default="1,2,3,5,9,20")
    ap.add_argument("--memory", default="1G", help="lmplz/build_binary -S")
    ap.add_argument("--repeats", type=int, default=2, help="scoring: best of this many interleaved runs")
    ap.add_argument("--out", default=str(RESULTS / "kenlm.json"))
    args = ap.parse_args(argv)

    orders = [int(x) for x in args.orders.split(",") if x.strip()]
    try:
        for n in orders:
            ngram.check_order(n)
        ngram.find_tool("lmplz"), ngram.find_tool("build_binary"), ngram.import_kenlm()
    except ngram.NgramError as err:
        print(f"bench_kenlm: skipped: {err}", flush=True)
        write_json(args.out, {"skipped": str(err)})
        return 0

    train, test, context, data, label = load_text(args.corpus, args.train_bytes, args.test_bytes)
    vocab = np.unique(data)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="bench_kenlm_"))
    try:
        print(f"{label}: {len(train):,} training bytes, {len(test):,} test bytes; orders {orders}", flush=True)
        for n in orders:
            model_path = work / f"ngram-{n}.binary"
            stats = ngram.train(train, n, model_path, memory=args.memory)
            model = ngram.load(model_path)
            ctx = bytes(context[len(context) - (n - 1):]) if n > 1 else b""
            tokens = ngram.encode_tokens(ctx + bytes(test))
            ours, bare = [], []
            for r in range(args.repeats):
                for side in (("ours", "bare") if r % 2 == 0 else ("bare", "ours")):
                    t0 = time.perf_counter()
                    if side == "ours":
                        p = ngram.score(model, context, test, vocab)
                    else:
                        bare_scores(model, tokens, len(ctx) + len(test))
                    (ours if side == "ours" else bare).append(time.perf_counter() - t0)
            loss = float(-np.log(np.clip(p, 1e-30, None)).mean())
            row = {"order": n, "train_bytes": len(train), "n_ngrams": stats["n_ngrams"],
                   "lmplz_s": stats["lmplz_seconds"], "build_binary_s": stats["build_binary_seconds"],
                   "build_s": stats["build_seconds"],
                   "lmplz_peak_mib": round(stats["lmplz_peak_rss_bytes"] / 2**20, 1),
                   "build_binary_peak_mib": round(stats["build_binary_peak_rss_bytes"] / 2**20, 1),
                   "arpa_mib": round(stats["arpa_bytes"] / 2**20, 2), "binary_mib": round(stats["model_bytes"] / 2**20, 2),
                   "test_bytes": len(test), "score_chars_per_s": len(test) / min(ours),
                   "bare_score_chars_per_s": len(test) / min(bare), "score_ratio": min(bare) / min(ours),
                   "test_loss_nats": round(loss, 4)}
            rows.append(row)
            print(f"order {n:2d}: {row['n_ngrams']:>10,} n-grams, lmplz {row['lmplz_s']:6.1f} s "
                  f"({row['lmplz_peak_mib']:,.0f} MiB peak), build_binary {row['build_binary_s']:5.1f} s "
                  f"({row['build_binary_peak_mib']:,.0f} MiB), binary {row['binary_mib']:.1f} MiB; scoring "
                  f"{row['score_chars_per_s']:,.0f} chars/s (bare KenLM {row['bare_score_chars_per_s']:,.0f}, "
                  f"ratio {row['score_ratio']:.2f}); test loss {loss:.3f} nats/char", flush=True)
            model_path.unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_json(args.out, {"corpus": label, "train_bytes": len(train), "test_bytes": len(test),
                          "memory_option": args.memory, "binary_type": "trie",
                          "note": "each program's own peak RSS (os.wait4); the parent's RSS at fork "
                                  "is counted in it, so small figures are bounds",
                          "results": rows})
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
