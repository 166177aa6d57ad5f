"""Bracket matching and the closing-bracket distance curves on the Linux test split (~310K characters).

Times what the workflow's brackets rule does, from its files: rnnlens.brackets.brackets() on a prepared corpus
(whole-corpus stack matching of {} () [] and quotes, the closers of the test split, per-bin means for every
model) with --models predictions Parquets of random p (speed does not depend on the values), figures excluded.
Also the matching alone per delimiter. Goal: a few seconds.

    python bench/bench_brackets.py [--corpus ../shared/data/linux.txt] [--models 8] [--repeats 3]
                                   [--out results/bench/brackets.json]

Without the corpus file, a synthetic C-like text of the same size stands in.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from rnnlens.brackets import DELIMITERS, brackets, match_delimiter  # noqa: E402
from rnnlens.corpus import prepare  # noqa: E402
from rnnlens.io import atomic_write_bytes, atomic_write_text  # noqa: E402
from rnnlens.predictions import write_predictions  # noqa: E402
from synthetic import synthetic_code  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "linux.txt"
LINUX_SPLIT = {"train": 0.9, "val": 0.05, "test": 0.05}


def best_of(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="text read as bytes, split 90/5/5 (Linux's)")
    ap.add_argument("--models", type=int, default=8, help="predictions files (models) in the curves")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quote-scope", default="line")
    ap.add_argument("--synthetic-bytes", type=int, default=6_215_875, help="size of the stand-in text without --corpus")
    ap.add_argument("--out", default=str(Path(os.environ.get("BENCH_RESULTS") or ROOT / "results" / "bench") / "brackets.json"))
    args = ap.parse_args(argv)

    path = Path(args.corpus)
    raw = path.read_bytes() if path.is_file() else synthetic_code(args.synthetic_bytes)
    label = path.name if path.is_file() else "synthetic C-like text"
    with tempfile.TemporaryDirectory(prefix="bench_brackets_") as tmp:
        tmp = Path(tmp)
        atomic_write_bytes(tmp / "corpus.bin", raw)
        meta = prepare("bench", tmp / "corpus.bin", LINUX_SPLIT, 2)
        atomic_write_text(tmp / "data.json", json.dumps(meta))
        data = np.frombuffer(raw, dtype=np.uint8)
        test = np.concatenate([data[a:b] for a, b in meta["pieces"]["test"]])
        rng = np.random.default_rng(0)
        paths = []
        for k in range(args.models):
            paths.append(tmp / f"model{k}.parquet")
            write_predictions(paths[-1], test, rng.random(len(test), dtype=np.float32), meta={"model": f"m{k}"})

        per_delimiter = {name: best_of(lambda name=name: match_delimiter(data, name, args.quote_scope), args.repeats)
                         for name in DELIMITERS}
        summary = {}

        def pipeline():
            summary.update(brackets(tmp / "data.json", paths, quote_scope=args.quote_scope)[1])

        seconds = best_of(pipeline, args.repeats)
    counts = {name: d["matched_closers"] for name, d in summary["delimiters"].items()}
    report = {"corpus": label, "corpus_bytes": len(raw), "test_bytes": len(test), "models": args.models,
              "quote_scope": args.quote_scope, "repeats": args.repeats, "pipeline_s": round(seconds, 4),
              "matching_s": {k: round(v, 4) for k, v in per_delimiter.items()}, "matched_closers_in_test": counts,
              "python": platform.python_version()}
    print(f"{label}: {len(raw):,} bytes, test split {len(test):,}; brackets() with {args.models} models: "
          f"{seconds:.2f} s (best of {args.repeats})", flush=True)
    for name, s in per_delimiter.items():
        print(f"  matching {name:8s} over the whole corpus: {s:.3f} s; {counts[name]:,} matched closers in test",
              flush=True)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
