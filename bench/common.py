"""Shared helpers of the benchmarks: devices and threads, timing, the grid, synthetic corpora, JSON output.

Benchmarks are scripts, not tests: each prints its figures and writes one JSON file under results/bench/.
Figures are ratios measured side by side in the same process (interleaved), because the machines are noisy.
"""

import contextlib
import json
import math
import os
import platform
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
if str(SRC) not in sys.path:  # run from a checkout without the package installed
    sys.path.insert(0, str(SRC))

from rnnlens.corpus import PreparedCorpus  # noqa: E402
from rnnlens.model import (  # noqa: E402
    RNN_ARCHS as ARCHS, ModelSpec, count_parameters, match_budget, pick_device)
from rnnlens.recurrent import CharRNN  # noqa: E402

# BENCH_RESULTS moves every output (the tests run the benchmarks into a temporary directory)
RESULTS = Path(os.environ.get("BENCH_RESULTS") or ROOT / "results" / "bench")
PAPER_VOCAB = 87  # War and Peace; Linux has 101, which changes the hidden sizes by a few cells
PAPER_GRID = [(arch, layers, size) for size in (64, 128, 256, 512) for arch in ARCHS for layers in (1, 2, 3)]
SMALL_GRID = [("rnn", 1, 64), ("lstm", 1, 64), ("gru", 1, 64), ("lstm", 2, 128), ("lstm", 1, 256)]
# Characters in one training epoch at batch 100 (the paper's splits of the paper's corpus sizes).
WP_TRAIN_CHARS = 100 * ((round(3_258_246 * 0.8) - 1) // 100)
LK_TRAIN_CHARS = 100 * ((round(6_206_996 * 0.9) - 1) // 100)
PAPER_EPOCHS = 50


def set_threads(threads):
    """0 keeps torch's default; otherwise use exactly this many intra-op threads (1: leave the other cores alone)."""
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def device_info(device):
    device = torch.device(device)
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    else:
        info["device_name"] = cpu_name()
    return info


def cpu_name():
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def grid_points(grid, vocab_size=PAPER_VOCAB):
    """[(arch, layers, size)] -> dicts with the parameter-matched widths (hidden, and inner for an architecture
    with a second width: the workflow's model) and the parameter counts."""
    points = []
    for arch, layers, size in grid:
        hidden, inner, params, _ = match_budget(arch, layers, size, vocab_size)
        points.append({"model": f"{arch}-{layers}x{size}", "arch": arch, "layers": layers, "size": size,
                       "hidden": hidden, "inner": inner, "vocab": vocab_size, "params": params,
                       "matmul_params": matmul_parameters(arch, layers, hidden, vocab_size, inner)})
    return points


def parse_points(text):
    """'lstm-1x64,gru-2x128' -> [(arch, layers, size)]."""
    from rnnlens.model import parse_model_id

    return [parse_model_id(item.strip()) for item in text.split(",") if item.strip()]


def spec_for(point, dropout=0.0):
    """The ModelSpec of a grid point; the transformer reads windows of one training sequence (100 bytes), 4 heads."""
    extra = {"window": 100, "heads": 4} if point["arch"] == "transformer" else {}
    return ModelSpec(point["arch"], point["layers"], point["hidden"], point["vocab"], dropout, **extra,
                     inner=point.get("inner", 0))


def matmul_parameters(arch, layers, hidden, vocab_size, inner=0):
    """Weights that take part in matrix products (all but the biases): each costs 2 FLOPs per character
    forward and 4 backward, hence the 6 x matmul parameters x characters of a training step. For the
    transformer and the LRU: their matrices (the embedding is a lookup; attention's own products not counted)."""
    if arch not in ARCHS:
        from rnnlens.model import build_model as make

        model = make(spec_for({"arch": arch, "layers": layers, "hidden": hidden, "vocab": vocab_size, "inner": inner}))
        return sum(p.numel() for name, p in model.named_parameters() if p.dim() == 2 and not name.startswith("embed"))
    with_biases = count_parameters(arch, layers, hidden, vocab_size)
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[arch]
    return with_biases - 2 * gates * hidden * layers - vocab_size


def build_model(point, device, dropout=0.0, seed=0):
    from rnnlens.model import build_model as make

    torch.manual_seed(seed)
    model = make(spec_for(point, dropout)).to(device)
    model.init_weights(0.08)
    return model


def synthetic_corpus(train_chars, vocab_size, val_chars=201, test_chars=2, seed=0, name="bench"):
    """A PreparedCorpus of random bytes using `vocab_size` symbols; speed does not depend on the text."""
    if not 2 <= vocab_size <= 256:
        raise ValueError(f"vocab_size {vocab_size} must be in 2..256")
    rng = np.random.default_rng(seed)
    n = train_chars + val_chars + test_chars
    data = rng.integers(0, vocab_size, n, dtype=np.int64).astype(np.uint8)
    data[:vocab_size] = np.arange(vocab_size)  # every symbol present, so the vocabulary has exactly vocab_size
    splits = {"train": (0, train_chars), "val": (train_chars, train_chars + val_chars),
              "test": (train_chars + val_chars, n)}
    return PreparedCorpus.contiguous(name, data, splits, vocab=np.arange(vocab_size, dtype=np.uint8))


@contextlib.contextmanager
def kept_signal_handlers():
    """rnnlens.train.train installs SIGTERM/SIGINT handlers for checkpointing; put ours back afterwards so that
    Ctrl-C still stops a benchmark."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = ["wall"]


def set_clock(name, device="cpu", threads=1):
    """The clock of every timing: "wall", or "cpu" (this process's CPU seconds: on a CPU with one torch thread it
    equals the wall time of an idle machine but ignores the time other jobs on a shared machine take the core
    away, the main noise of small shared machines). "auto": cpu for one thread on the CPU, wall otherwise."""
    if name == "auto":
        name = "cpu" if torch.device(device).type == "cpu" and threads == 1 else "wall"
    if name not in CLOCKS:
        raise ValueError(f"clock {name!r}: use one of {', '.join(CLOCKS)} or auto")
    _clock[0] = name
    return name


def clock_name():
    return _clock[0]


def now():
    return CLOCKS[_clock[0]]()


def best_seconds(fn, repeats, device, min_seconds=0.0):
    """Best time of fn() over `repeats` runs (each run repeats fn until min_seconds have passed), by now()."""
    best = math.inf
    for _ in range(repeats):
        sync(device)
        t0 = now()
        calls = 0
        while True:
            fn()
            calls += 1
            sync(device)
            elapsed = now() - t0
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / calls)
    return best


def write_json(path, obj):
    from rnnlens.io import atomic_write_text

    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def human_seconds(seconds):
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
