import hashlib
import io
import json
import logging
import tarfile

import numpy as np
import pytest

from rnnlens.corpus import CorpusError, PreparedCorpus, prepare, split_bounds
from rnnlens.fetch import acquire, stdlib_corpus
from rnnlens.kernel import build_corpus_from_tar


def test_splits_are_contiguous_and_cover_everything():
    b = split_bounds(1001, {"train": 0.8, "val": 0.1, "test": 0.1})
    assert b["train"][0] == 0 and b["train"][1] == b["val"][0] and b["val"][1] == b["test"][0]
    assert b["test"][1] == 1001
    assert b["train"][1] == 801  # round(800.8)
    lk = split_bounds(6_206_996, {"train": 0.9, "val": 0.05, "test": 0.05})
    assert lk["test"][1] - lk["test"][0] == pytest.approx(310_350, abs=1)


def test_split_must_sum_to_one():
    with pytest.raises(CorpusError, match="sum to 1.1"):
        split_bounds(100, {"train": 0.9, "val": 0.1, "test": 0.1})


def test_prepare_vocab_is_bytes_of_whole_corpus(tmp_path, prepared):
    data = "héllo\r\n wörld".encode("utf-8") * 50
    corpus = PreparedCorpus.load(prepared(data, min_train=2))
    assert corpus.vocab.tolist() == sorted(set(data))
    assert bytes(corpus.data) == data
    assert (corpus.vocab[corpus.encode(corpus.split("test"))] == corpus.split("test")).all()


def test_empty_and_too_short_corpora(tmp_path):
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(CorpusError, match="is empty"):
        prepare("e", tmp_path / "empty.bin", {"train": 0.8, "val": 0.1, "test": 0.1}, 10)
    (tmp_path / "short.bin").write_bytes(b"abc" * 100)
    with pytest.raises(CorpusError, match="batch_size / training.seq_len"):
        prepare("s", tmp_path / "short.bin", {"train": 0.8, "val": 0.1, "test": 0.1}, 10100)


def test_a_corpus_of_one_distinct_byte_is_refused_and_a_tiny_vocabulary_warned(tmp_path, caplog):
    split = {"train": 0.8, "val": 0.1, "test": 0.1}
    (tmp_path / "one.bin").write_bytes(b"a" * 5000)
    with pytest.raises(CorpusError, match=r"one distinct byte \(b'a'\).*nothing to predict") as err:
        prepare("one", tmp_path / "one.bin", split)
    assert "\n" not in str(err.value)
    (tmp_path / "three.bin").write_bytes(b"ab\n" * 2000)
    with caplog.at_level(logging.WARNING, logger="rnnlens.corpus"):
        assert prepare("three", tmp_path / "three.bin", split)["vocab_size"] == 3
    assert "only 3 distinct bytes" in caplog.text
    caplog.clear()
    (tmp_path / "text.bin").write_bytes(b"the quick brown fox\n" * 300)
    with caplog.at_level(logging.WARNING, logger="rnnlens.corpus"):
        prepare("text", tmp_path / "text.bin", split)
    assert "distinct bytes" not in caplog.text


def test_path_corpus_checksum(tmp_path):
    src = tmp_path / "c.txt"
    src.write_bytes(b"some text\n" * 20)
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    prov = acquire({"path": str(src), "sha256": good}, tmp_path / "out" / "corpus.bin")
    assert prov["sha256"] == good and (tmp_path / "out" / "corpus.bin").read_bytes() == src.read_bytes()
    with pytest.raises(CorpusError, match="sha256 mismatch"):
        acquire({"path": str(src), "sha256": "0" * 64}, tmp_path / "bad" / "corpus.bin")
    assert not (tmp_path / "bad" / "corpus.bin").exists()
    with pytest.raises(CorpusError, match="does not exist"):
        acquire({"path": str(tmp_path / "missing.txt")}, tmp_path / "m" / "corpus.bin")


def test_url_corpus_verified_or_hash_recorded(tmp_path, caplog):
    src = tmp_path / "remote.txt"
    src.write_bytes(b"downloaded bytes\r\n" * 10)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    with caplog.at_level(logging.INFO, logger="rnnlens"):
        prov = acquire({"url": src.as_uri()}, tmp_path / "a" / "corpus.bin")
    assert prov["sha256"] == digest and not prov["sha256_pinned"]
    assert any(r.levelname == "WARNING" and "no sha256" in r.getMessage() for r in caplog.records)
    with pytest.raises(CorpusError, match="sha256 mismatch"):
        acquire({"url": src.as_uri(), "sha256": "f" * 64}, tmp_path / "b" / "corpus.bin")
    assert not list((tmp_path / "b").glob("corpus.bin*"))  # nothing half-written left behind
    with pytest.raises(CorpusError, match="could not download"):
        acquire({"url": (tmp_path / "nope.txt").as_uri()}, tmp_path / "c" / "corpus.bin")


def test_stdlib_demo_corpus_is_deterministic_and_capped():
    a, b = stdlib_corpus(50_000), stdlib_corpus(50_000)
    assert a == b and len(a) == 50_000 and b"def " in a


def _tarball(path, files):
    with tarfile.open(path, "w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"linux-9.9/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_kernel_tarball_builder(tmp_path):
    files = {
        "kernel/b.c": b"int b;\n",
        "kernel/a.c": b"int a;\n",
        "kernel/sub/z.h": b"#define Z\n",
        "kernel/readme.txt": b"not code\n",
        "mm/m.c": b"int m;\n",
        "fs/f.c": b"int f;\n",
    }
    tar = tmp_path / "linux.tar.xz"
    _tarball(tar, files)
    data, used = build_corpus_from_tar(tar, ["kernel", "mm", "fs"], ["*.c", "*.h"], max_bytes=0)
    assert used == ["kernel/a.c", "kernel/b.c", "kernel/sub/z.h", "mm/m.c", "fs/f.c"]
    assert data == b"".join(files[u] for u in used)
    # the byte budget: files are taken whole until the total first exceeds it
    data, used = build_corpus_from_tar(tar, ["kernel", "mm", "fs"], ["*.c", "*.h"], max_bytes=10)
    assert used == ["kernel/a.c", "kernel/b.c"] and len(data) == 14
    prov = acquire({"tarball": {"path": str(tar), "include_dirs": ["mm"], "patterns": ["*.c"]}},
                   tmp_path / "k" / "corpus.bin")
    assert (tmp_path / "k" / "corpus.bin").read_bytes() == b"int m;\n" and prov["files"] == 1
    # the files used are in the provenance (a declared output), not in an undeclared file beside the corpus
    assert prov["file_list"] == ["mm/m.c"] and sorted(p.name for p in (tmp_path / "k").iterdir()) == ["corpus.bin"]
    with pytest.raises(CorpusError, match="no file"):
        build_corpus_from_tar(tar, ["drivers"], ["*.c"], 0)
