"""Character n-gram baselines: unpruned modified Kneser-Ney models over bytes, built with KenLM (the paper's Table 2).

Bytes become KenLM words. Every byte value has its own whitespace-free token: the graphic ASCII bytes 0x21..0x7e
stand for themselves (so ARPA files stay readable), every other byte (space, newline, CR, control bytes, bytes
>= 0x80) is written `x` + two hex digits (`x20`, `x0a`, `x0d`). A one-character token can never equal a
three-character one, so the mapping is one-to-one, and no token is one of KenLM's reserved <s>, </s>, <unk>.

n counts context, as in the paper: the paper's "n-gram" conditions on the n previous bytes, so `ngram-{n}` is a
KenLM model of order n + 1 (its 1-gram column is KenLM's bigram, its 20-gram KenLM's order 21).

The text has no sentences, so none are invented: every piece of the training split (one for a contiguous
split, one per row for char-rnn's rows layout) is one KenLM "sentence" (one line; lmplz handles lines of
millions of tokens), so no n-gram spans a seam between pieces. lmplz adds <s> and </s> around each line, one
boundary per piece. Test bytes are scored piece by piece with bos=False, eos=False on the stream of the n bytes
of real text before the piece (they may reach into another split) followed by the piece, so every test byte
gets its full n-byte context.

KenLM keeps a little probability mass for two words that are not bytes: </s> (seen once, at the end of the
training line) and <unk>. Bytes of the corpus vocabulary that the training split lacks are all <unk> to KenLM;
they share p(<unk>) equally. The reported p are KenLM's own, not renormalised over the bytes (the held-out
mass averages ~3e-6 per test byte for the 20-grams of both corpora), as a KenLM baseline reports them.

Needs lmplz, build_binary and the kenlm Python module built with KENLM_MAX_ORDER >= n + 1:
scripts/setup_kenlm.sh (run by `make`) builds them with order 21.
"""

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from rnnlens.errors import RnnlensError
from rnnlens.io import atomic_path

log = logging.getLogger(__name__)

MAX_ORDER = 21  # the KENLM_MAX_ORDER scripts/setup_kenlm.sh builds with; raise both together
MAX_CONTEXT = MAX_ORDER - 1  # the largest paper n (context bytes)
SETUP_HINT = "Run `make` (or scripts/setup_kenlm.sh) to build KenLM with maximum order 21 into the virtualenv."


def kenlm_order(n):
    """The KenLM order of the paper's n-gram with n context bytes."""
    return n + 1


class NgramError(RnnlensError):
    """A bad n-gram order or input, or a missing KenLM build."""


# --- bytes <-> KenLM tokens ---------------------------------------------------------------------------------------

def byte_token(b):
    return chr(b) if 0x21 <= b <= 0x7E else f"x{b:02x}"


TOKENS = [byte_token(b) for b in range(256)]
TOKEN_TO_BYTE = {token: b for b, token in enumerate(TOKENS)}


def encode_tokens(data):
    """bytes (or a uint8 array) -> space-separated KenLM tokens, one per byte."""
    return " ".join(map(TOKENS.__getitem__, bytes(data)))


def decode_tokens(text):
    """The inverse of encode_tokens."""
    return bytes(TOKEN_TO_BYTE[token] for token in text.split())


# --- the KenLM tools ----------------------------------------------------------------------------------------------

def check_order(order):
    if not isinstance(order, (int, np.integer)) or order < 1:
        raise NgramError(f"n-gram order must be a positive integer, got {order!r}")
    if order > MAX_ORDER:
        raise NgramError(
            f"n-gram order {order} is larger than the KenLM build's maximum order {MAX_ORDER}. Use n <= {MAX_ORDER}, "
            "or rebuild KenLM with a larger KENLM_MAX_ORDER (scripts/setup_kenlm.sh) and raise ngram.MAX_ORDER."
        )


def find_tool(name):
    """A KenLM program: the virtualenv's bin (where the set-up installs it) first, then PATH."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which(name)
    if not found:
        raise NgramError(f"KenLM's `{name}` was not found in {beside_python.parent} or on PATH. {SETUP_HINT}")
    return found


def import_kenlm():
    try:
        import kenlm
    except ImportError as err:
        raise NgramError(f"the kenlm Python module is not installed ({err}). {SETUP_HINT}") from err
    return kenlm


def run_measured(command, stdin_path=None, stdout_path=None):
    """Run a program; its stderr goes to ours line by line and is returned. -> (seconds, peak RSS bytes, stderr).

    os.wait4 gives this child's own peak RSS (getrusage(RUSAGE_CHILDREN) would give the max over all children).
    Linux counts the parent's RSS at fork in it, so a figure near this process's own size (~100 MB) is a bound."""
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    stdout = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
    started = time.perf_counter()
    try:
        proc = subprocess.Popen(command, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
        captured = []

        def drain():  # keeps the pipe from filling while the main thread waits on the child
            for raw in proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip()
                captured.append(line)
                if line.strip() and not set(line.strip()) <= set("*-|0123456789 "):  # skip progress bars
                    log.info(f"  {Path(command[0]).name}: {line}")

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        reader.join()
        proc.stderr.close()
    finally:
        for handle in (stdin, stdout):
            if hasattr(handle, "close"):
                handle.close()
    seconds = time.perf_counter() - started
    stderr = "\n".join(captured)
    if proc.returncode != 0:
        raise NgramError(f"{' '.join(map(str, command))} failed with exit status {proc.returncode}:\n"
                         + "\n".join(captured[-20:]))
    return seconds, usage.ru_maxrss * 1024, stderr  # ru_maxrss is in KiB on Linux


def arpa_counts(arpa_path):
    """The n-gram counts of the ARPA header's \\data\\ section: {order: count}."""
    counts = {}
    with open(arpa_path, "rb") as f:
        for raw in f:
            line = raw.decode("ascii", "replace").strip()
            if line.startswith("ngram "):
                n, count = line[len("ngram "):].split("=")
                counts[int(n)] = int(count)
            elif line.startswith("\\1-grams:"):
                break
    return counts


def add_empty_bigrams(arpa_path):
    """KenLM's binary formats need order >= 2, so a unigram model is stored as a bigram model with no bigrams:
    every backoff is 0, so each query falls through to the same unigram probabilities."""
    text = Path(arpa_path).read_text(encoding="ascii")
    text = re.sub(r"^(ngram 1=\d+)$", r"\1\nngram 2=0", text, count=1, flags=re.M)
    text = text.replace("\\end\\", "\\2-grams:\n\n\\end\\")
    Path(arpa_path).write_text(text, encoding="ascii")


# --- training -----------------------------------------------------------------------------------------------------

def train(train_bytes, order, model_out, memory="1G", binary_type="trie", tmp_dir=None):
    """lmplz (unpruned modified Kneser-Ney, KenLM order `order`) on the training bytes, then build_binary.
    -> stats dict. `train_bytes`: bytes, or a list of pieces (each its own line: no n-gram spans a seam).

    --discount_fallback is always passed: it only replaces the closed-form Kneser-Ney discounts for an order
    where they cannot be computed (no n-grams seen exactly 1, 2 or 3+ times, as in tiny or highly repetitive
    corpora), using lmplz's defaults D1=0.5 D2=1 D3+=1.5; the orders where that happened are recorded."""
    check_order(order)
    if binary_type not in ("trie", "probing"):
        raise NgramError(f"binary type must be 'trie' or 'probing', got {binary_type!r}")
    lmplz, build_binary = find_tool("lmplz"), find_tool("build_binary")
    pieces = [bytes(train_bytes)] if isinstance(train_bytes, (bytes, bytearray, np.ndarray)) else \
        [bytes(piece) for piece in train_bytes]
    n_bytes = sum(map(len, pieces))
    if n_bytes < 2:
        raise NgramError(f"the training split has {n_bytes} bytes; an n-gram model needs at least 2")
    model_out = Path(model_out)
    model_out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{model_out.name}.", dir=tmp_dir or model_out.parent))
    try:
        text_path, arpa_path = work / "train.tokens", work / "model.arpa"
        with open(text_path, "w", encoding="ascii") as text:
            for piece in pieces:
                text.write(encode_tokens(piece) + "\n")
        log.info(f"lmplz -o {order} on {n_bytes:,} training bytes ({len(pieces)} line(s), one per piece), -S {memory}")
        lmplz_s, lmplz_rss, lmplz_err = run_measured(
            [lmplz, "-o", str(order), "-S", memory, "-T", str(work / "lmplz-"), "--discount_fallback"],
            stdin_path=text_path, stdout_path=arpa_path)
        counts = arpa_counts(arpa_path)
        if order == 1:
            add_empty_bigrams(arpa_path)
        fallback_orders = sorted(int(i) + 1 for i in re.findall(r"Substituting fallback discounts for order (\d+)",
                                                                lmplz_err))
        arpa_bytes = arpa_path.stat().st_size
        text_path.unlink()
        log.info(f"build_binary {binary_type}: {sum(counts.values()):,} n-grams, ARPA {arpa_bytes / 2**20:.1f} MiB")
        options = ["-T", str(work / "trie-"), "-S", memory] if binary_type == "trie" else []
        with atomic_path(model_out) as part:
            build_s, build_rss, _ = run_measured([build_binary, *options, binary_type, str(arpa_path), str(part)])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "order": int(order),
        "kenlm_max_order": MAX_ORDER,
        "train_bytes": n_bytes,
        "train_pieces": len(pieces),
        "ngram_counts": {str(n): c for n, c in sorted(counts.items())},
        "n_ngrams": sum(counts.values()),
        "discount_fallback_orders": fallback_orders,
        "memory_option": memory,
        "binary_type": binary_type,
        "lmplz_seconds": round(lmplz_s, 3),
        "lmplz_peak_rss_bytes": lmplz_rss,
        "build_binary_seconds": round(build_s, 3),
        "build_binary_peak_rss_bytes": build_rss,
        "build_seconds": round(lmplz_s + build_s, 3),
        "peak_rss_bytes": max(lmplz_rss, build_rss),
        "arpa_bytes": arpa_bytes,
        "model_bytes": model_out.stat().st_size,
    }


# --- querying -----------------------------------------------------------------------------------------------------

def load(model_path):
    model_path = Path(model_path)
    if not model_path.is_file():
        raise NgramError(f"n-gram model {model_path} does not exist. Build it first (rnnlens ngram ...).")
    return import_kenlm().Model(str(model_path))


def unseen_bytes(model, vocab):
    """The corpus-vocabulary bytes the model never saw in training (KenLM's <unk>)."""
    return [int(b) for b in vocab if TOKENS[b] not in model]


def score(model, context, target, vocab):
    """p of every byte of `target`, each given the bytes before it (the tail of `context`, then `target`).
    Bytes unseen in training get an equal share of p(<unk>). -> float64 array of len(target)."""
    context = bytes(context)[-(model.order - 1):] if model.order > 1 else b""
    target = bytes(target)
    share = max(len(unseen_bytes(model, vocab)), 1)
    stream = encode_tokens(context + target)
    log10p = np.fromiter((s[0] for s in model.full_scores(stream, bos=False, eos=False)), dtype=np.float64,
                         count=len(context) + len(target))[len(context):]
    p = np.power(10.0, log10p)
    # which byte values are <unk>, looked up once per value rather than once per test byte
    unknown = np.array([token not in model for token in TOKENS], dtype=bool)
    p[unknown[np.frombuffer(target, dtype=np.uint8)]] /= share
    return p


def score_pieces(model, corpus, split="test"):
    """p of every byte of a split's pieces, each piece scored after the real text before it."""
    context = max(model.order - 1, 0)
    return np.concatenate([score(model, corpus.data[max(0, a - context):a], corpus.data[a:b], corpus.vocab)
                           for a, b in corpus.pieces[split]])


def _state_after(model, context):
    kenlm = import_kenlm()
    state, scratch = kenlm.State(), kenlm.State()
    model.NullContextWrite(state)
    for b in bytes(context)[-(model.order - 1):] if model.order > 1 else b"":
        model.BaseScore(state, TOKENS[b], scratch)
        state, scratch = scratch, state
    return state


def next_byte_distribution(model, context, vocab):
    """p(b | context) for every byte b of the corpus vocabulary (float64 array, in vocab order).
    Sums to 1 - held_out_mass(model, context, vocab)."""
    kenlm = import_kenlm()
    state, out = _state_after(model, context), kenlm.State()
    share = max(len(unseen_bytes(model, vocab)), 1)
    p = np.array([10.0 ** model.BaseScore(state, TOKENS[b], out) for b in vocab], dtype=np.float64)
    unknown = np.array([TOKENS[b] not in model for b in vocab], dtype=bool)
    p[unknown] /= share
    return p


def held_out_mass(model, context, vocab):
    """The probability KenLM gives, after `context`, to outcomes that are not corpus bytes: </s> (the end of the
    one training 'sentence'), plus <unk> when every vocabulary byte was seen in training (otherwise the unseen
    bytes share it). next_byte_distribution(...).sum() + held_out_mass(...) == 1."""
    kenlm = import_kenlm()
    state, out = _state_after(model, context), kenlm.State()
    mass = 10.0 ** model.BaseScore(state, "</s>", out)
    if not unseen_bytes(model, vocab):
        mass += 10.0 ** model.BaseScore(state, "<unk>", out)
    return mass


# --- the pipeline step ----------------------------------------------------------------------------------------------

def add_ngram_arguments(parser):
    parser.add_argument("--data", required=True, help="results/{corpus}/data.json of the prepared corpus")
    parser.add_argument("--n", type=int, required=True,
                        help=f"context bytes n, as in the paper (0..{MAX_CONTEXT}); the KenLM order is n + 1")
    parser.add_argument("--model-out", required=True, help="KenLM binary model to write")
    parser.add_argument("--predictions-out", required=True, help="predictions Parquet to write")
    parser.add_argument("--stats-out", required=True, help="JSON with build time, peak memory, model size, loss")
    parser.add_argument("--memory", default="1G", help="lmplz/build_binary sorting memory (-S), e.g. 4G or 80%%")
    parser.add_argument("--binary-type", default="trie", choices=("trie", "probing"),
                        help="KenLM binary format (trie: smallest; probing: fastest queries)")
    parser.add_argument("--tmp-dir", default=None, help="directory for lmplz's temporary files "
                                                        "(default: beside --model-out)")


def run_ngram(args):
    from rnnlens.corpus import PreparedCorpus
    from rnnlens.io import atomic_write_text
    from rnnlens.predictions import write_predictions

    order = kenlm_order(args.n)
    check_order(order)
    corpus = PreparedCorpus.load(args.data)
    stats = train([corpus.data[a:b] for a, b in corpus.pieces["train"]], order, args.model_out,
                  memory=args.memory, binary_type=args.binary_type, tmp_dir=args.tmp_dir)
    test = corpus.split("test")
    started = time.perf_counter()
    model = load(args.model_out)
    p = score_pieces(model, corpus, "test")
    import resource

    stats.update({
        "model": f"ngram-{args.n}",
        "n": args.n,
        "n_note": "n = context bytes, as in the paper; KenLM order n + 1",
        "corpus": corpus.name,
        "test_bytes": len(test),
        "unseen_vocab_bytes": unseen_bytes(model, corpus.vocab),
        "score_seconds": round(time.perf_counter() - started, 3),
        "score_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    })
    meta = write_predictions(args.predictions_out, test, p, meta={
        **stats, "family": "ngram", "params": stats["n_ngrams"],
        "params_note": "number of n-grams (each with a probability and a backoff)"})
    stats["test_loss"] = meta["test_loss"]
    atomic_write_text(args.stats_out, json.dumps(stats, indent=2) + "\n")
    log.info(f"ngram-{args.n} (KenLM order {order}) on {corpus.name}: test loss {stats['test_loss']:.4f} nats/char, "
             f"built in {stats['build_seconds']:.1f} s, peak {stats['peak_rss_bytes'] / 2**20:.0f} MiB, "
             f"model {stats['model_bytes'] / 2**20:.1f} MiB")
    return 0
