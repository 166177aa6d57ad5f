import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def markov_text(n, order=2, alphabet=b"ab c\n", seed=0):
    """Bytes from a random order-`order` Markov source with peaked transitions: known, learnable structure."""
    rng = np.random.default_rng(seed)
    k = len(alphabet)
    table = rng.dirichlet(np.full(k, 0.2), size=k ** order)
    out = list(rng.integers(0, k, order))
    for _ in range(n - order):
        ctx = 0
        for s in out[-order:]:
            ctx = ctx * k + s
        out.append(rng.choice(k, p=table[ctx]))
    return bytes(alphabet[i] for i in out)


@pytest.fixture
def one_thread():
    """torch on one thread for the test, restored after it: the same float sums on every machine, and no
    contention with the other processes."""
    import torch  # here, not at the top: most tests never load torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def prepared(tmp_path):
    """A prepared corpus (corpus.bin + data.json) of a small Markov text, as the workflow would make it."""
    from rnnlens.corpus import prepare

    def make(data=None, split=(0.8, 0.1, 0.1), name="toy", min_train=2, **layout):
        """layout: e.g. layout="rows", rows=10, chunk=20 (default: contiguous)."""
        data = markov_text(6000) if data is None else data
        d = tmp_path / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "corpus.bin").write_bytes(data)
        summary = prepare(name, d / "corpus.bin", {**dict(zip(("train", "val", "test"), split)), **layout},
                          min_train)
        (d / "data.json").write_text(json.dumps(summary))
        return d / "data.json"

    return make


def run_env():
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


def workflow_view(dest):
    """The workflow (Snakefile, rules, package, profiles, config) linked into a folder of its own: Snakemake run
    there plans from nothing, whatever this checkout's results/ and .snakemake/ hold (a finished demo included)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "src", "profiles", "envs", "config.yaml"):
        (dest / name).symlink_to(ROOT / name, target_is_directory=(ROOT / name).is_dir())
    return dest
