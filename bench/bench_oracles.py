"""Time the oracle error analysis on War and Peace's test split with synthetic predictions.

    python bench/bench_oracles.py [--corpus ../shared/data/warpeace.txt] [--out results/bench/oracles.json]

The corpus is split 80/10/10 (the paper's WP split); the model's p and nine n-gram files (n = 1..9) are random,
written as real predictions Parquets, so the figure includes reading them. Prints seconds and writes JSON.
"""

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from rnnlens.corpus import split_bounds
from rnnlens.io import atomic_write_text
from rnnlens.oracles import OracleConfig, TextFacts, analyse, load_model_predictions, load_ngrams, oracle_steps, peel
from rnnlens.predictions import write_predictions
from synthetic import synthetic_prose

DEFAULT_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "warpeace.txt"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="a text file read as bytes")
    parser.add_argument("--out", default=str(Path(os.environ.get("BENCH_RESULTS") or "results/bench") / "oracles.json"))
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = parser.parse_args(argv)

    if Path(args.corpus).is_file():
        data, label = np.fromfile(args.corpus, dtype=np.uint8), Path(args.corpus).name
    else:
        data, label = synthetic_prose(3_258_246), "synthetic prose (War and Peace's size)"
        print(f"{args.corpus} not found: timing on {label}", flush=True)
    bounds = split_bounds(len(data), {"train": 0.8, "val": 0.1, "test": 0.1})
    start, end = bounds["test"]
    n = end - start
    rng = np.random.default_rng(0)
    target = data[start:end]
    # Beta(1.2, 1) puts about 42% of p below 0.5, like the paper's best LSTM.
    p_model = rng.beta(1.2, 1.0, n).astype(np.float32)
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_predictions(tmp / "model.parquet", target, p_model, meta={"model": "lstm-3x512"})
        ngram_paths = []
        for k in range(1, 10):
            path = tmp / f"ngram-{k}.parquet"
            write_predictions(path, target, rng.beta(0.5 + 0.05 * k, 1.0, n).astype(np.float32),
                              meta={"model": f"ngram-{k}"})
            ngram_paths.append(path)
        config = OracleConfig()

        def pipeline():
            facts = TextFacts(data, bounds["test"], bounds["train"])
            ngram_ps = load_ngrams(ngram_paths, facts)
            _, p = load_model_predictions(tmp / "model.parquet", facts)
            return analyse(facts, p, ngram_ps, config)[0]

        def memory_5000():
            # Everything the n=5000 memory oracle needs from scratch: segmentation, previous occurrences, one mask.
            facts = TextFacts(data, bounds["test"], bounds["train"])
            mask = (facts.position_in_word >= 1) & (facts.memory_distance <= 5000)
            return int((mask & (p_model < 0.5)).sum())

        prepared_facts = TextFacts(data, bounds["test"], bounds["train"])
        prepared_ngrams = load_ngrams(ngram_paths, prepared_facts)

        def peel_only():
            # The oracles' masks and the peeling, with the words and files already loaded.
            steps = oracle_steps(prepared_facts, p_model, prepared_ngrams, config)
            return peel(p_model < 0.5, steps)

        for name, fn in (("pipeline_s", pipeline), ("memory_oracle_n5000_s", memory_5000), ("peeling_only_s", peel_only)):
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t0)
            timings[name] = round(best, 4)
            print(f"{name:24s} {best:8.3f} s", flush=True)
        table = pipeline()
    report = {
        "corpus": label,
        "corpus_bytes": int(len(data)),
        "test_bytes": int(n),
        "errors": int(table["n_errors"].iloc[0]),
        "memory_windows": list(config.memory_windows),
        "ngram_files": 9,
        "repeats": args.repeats,
        **timings,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
    }
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
