"""Corpora as bytes: fetching and verifying them, the vocabulary, contiguous splits.

A prepared corpus on disk is two files under results/{corpus}/:
  corpus.bin  the raw bytes (verified copy)
  data.json   {"corpus", "sha256", "size", "vocab": [byte values], "splits": {"train": [start, end], ...}}
"""

import hashlib
import json
import os
import shutil
import sys
import sysconfig
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")


class CorpusError(Exception):
    """Bad corpus input; the message names the problem and the fix."""


def sha256_of(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path, data):
    """Write to a temporary name, then rename: a killed job never leaves a finished-looking file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_csv(frame, path, **to_csv):
    """A pandas DataFrame as CSV, written under a temporary name and renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    frame.to_csv(tmp, index=False, **to_csv)
    os.replace(tmp, path)
    return path


def verify_sha256(path, expected, what):
    actual = sha256_of(path)
    if expected and actual != expected.lower():
        raise CorpusError(
            f"{what}: sha256 mismatch for {path}\n  expected {expected}\n  got      {actual}\n"
            "The file is corrupt or a different version. Fix the file, or set the corpus's sha256 in the "
            "config to the hash of the file you mean to use."
        )
    return actual


def download(url, dest, log=print):
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    log(f"downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CorpusError(
            f"could not download {url}: {err}\n"
            "Check the address and the network, or download the file yourself and give it as `path:` in the config."
        ) from err
    os.replace(tmp, dest)
    return dest


def stdlib_corpus(max_bytes):
    """The demo corpus: the Python standard library's own .py source, in sorted path order, capped.
    Present on every machine with Python, so the demo runs offline."""
    root = Path(sysconfig.get_paths()["stdlib"])
    chunks, total = [], 0
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("site-packages/", "test/", "idlelib/", "lib2to3/tests/")) or "/test" in rel:
            continue
        data = path.read_bytes()
        chunks.append(data)
        total += len(data)
        if total >= max_bytes:
            break
    return b"".join(chunks)[:max_bytes]


def acquire(spec, dest, log=print):
    """Materialise one configured corpus as raw bytes at `dest` and return a provenance dict.

    spec keys: path | url (+ sha256) | stdlib (+ max_bytes) | tarball (kernel-style source builder)."""
    dest = Path(dest)
    provenance = {}
    if "path" in spec:
        src = Path(spec["path"])
        if not src.is_file():
            raise CorpusError(f"corpus file {src} does not exist. Fix `path:` in the config or put the file there.")
        actual = verify_sha256(src, spec.get("sha256"), f"corpus {src}")
        tmp = dest.with_name(dest.name + ".part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        provenance = {"source": str(src), "sha256": actual}
    elif "url" in spec:
        download(spec["url"], dest.with_name(dest.name + ".download"), log)
        fetched = dest.with_name(dest.name + ".download")
        try:
            actual = verify_sha256(fetched, spec.get("sha256"), f"download of {spec['url']}")
        except CorpusError:
            fetched.unlink(missing_ok=True)
            raise
        if not spec.get("sha256"):
            log(f"WARNING: no sha256 given for {spec['url']}; recorded the downloaded file's sha256 {actual}. "
                "Put it in the config to pin this version.")
        os.replace(fetched, dest)
        provenance = {"source": spec["url"], "sha256": actual, "sha256_pinned": bool(spec.get("sha256"))}
    elif "stdlib" in spec:
        data = stdlib_corpus(int(spec.get("max_bytes", 1_000_000)))
        atomic_write_bytes(dest, data)
        provenance = {"source": f"python {sys.version.split()[0]} standard library", "sha256": sha256_of(dest)}
    elif "tarball" in spec:
        from rnnlens.kernel import build_from_tarball

        provenance = build_from_tarball(spec["tarball"], dest, log=log)
    else:
        raise CorpusError("a corpus needs one of `path`, `url` (+ `sha256`), `stdlib` or `tarball` in the config")
    if "sha256" in spec and "path" not in spec and "url" not in spec:
        provenance["sha256"] = verify_sha256(dest, spec["sha256"], "built corpus")
    return provenance


def split_bounds(size, fractions):
    """Contiguous [start, end) bounds for train/val/test from fractions that sum to 1."""
    total = sum(fractions[name] for name in SPLITS)
    if abs(total - 1.0) > 1e-6:
        raise CorpusError(f"split fractions {dict(fractions)} sum to {total:g}, not 1. Fix `split:` in the config.")
    bounds, start = {}, 0
    for name in SPLITS[:-1]:
        end = start + int(round(size * fractions[name]))
        bounds[name] = [start, end]
        start = end
    bounds[SPLITS[-1]] = [start, size]
    return bounds


def prepare(corpus_name, corpus_bin, fractions, min_train_bytes, min_eval_bytes=2):
    """Vocabulary and splits of an acquired corpus; checks it is usable for training."""
    data = Path(corpus_bin).read_bytes()
    if not data:
        raise CorpusError(f"corpus {corpus_name!r} ({corpus_bin}) is empty. Point its config entry at a non-empty file.")
    bounds = split_bounds(len(data), fractions)
    train_len = bounds["train"][1] - bounds["train"][0]
    if train_len < min_train_bytes:
        raise CorpusError(
            f"corpus {corpus_name!r}: the training split has {train_len} bytes, fewer than batch x (seq_len + 1) = "
            f"{min_train_bytes}. Use a larger corpus, or lower training.batch_size / training.seq_len."
        )
    for name in ("val", "test"):
        n = bounds[name][1] - bounds[name][0]
        if n < min_eval_bytes:
            raise CorpusError(f"corpus {corpus_name!r}: the {name} split has only {n} bytes. Raise its `split:` fraction.")
    vocab = sorted(set(data))
    return {
        "corpus": corpus_name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "vocab_size": len(vocab),
        "vocab": vocab,
        "splits": bounds,
        "split_sizes": {name: b - a for name, (a, b) in bounds.items()},
    }


@dataclass
class PreparedCorpus:
    name: str
    data: np.ndarray  # uint8 bytes of the whole corpus
    vocab: np.ndarray  # sorted byte values
    splits: dict  # name -> (start, end)

    @classmethod
    def load(cls, data_json):
        data_json = Path(data_json)
        meta = json.loads(data_json.read_text())
        raw = np.fromfile(data_json.with_name("corpus.bin"), dtype=np.uint8)
        return cls(meta["corpus"], raw, np.array(meta["vocab"], dtype=np.uint8),
                   {k: tuple(v) for k, v in meta["splits"].items()})

    @property
    def vocab_size(self):
        return len(self.vocab)

    def byte_to_index(self):
        table = np.full(256, -1, dtype=np.int64)
        table[self.vocab] = np.arange(len(self.vocab))
        return table

    def encode(self, raw):
        """bytes (uint8 array) -> vocabulary indices (int64)."""
        return self.byte_to_index()[raw]

    def split(self, name):
        start, end = self.splits[name]
        return self.data[start:end]
