"""Corpora as bytes: the vocabulary, the train/val/test split layout and the prepared corpus every stage reads.
(Fetching them is rnnlens.fetch.)

A prepared corpus on disk is two files under results/{corpus}/:
  corpus.bin  the raw bytes (verified copy)
  data.json   {"corpus", "sha256", "size", "vocab": [byte values], "layout": {...},
               "pieces": {"train": [[start, end], ...], "val": [...], "test": [...]}}
data.json depends on the corpus's bytes and its split alone (not on where the bytes came from): re-fetching the
same bytes writes the same data.json, and the workflow, which hashes it as a param of every job that reads it,
reruns nothing downstream (README, "What reruns when").

A split is a list of pieces: [start, end) byte ranges of the corpus. Two layouts:
  contiguous  one piece per split: the first fraction of the corpus trains, the next validates, the rest tests.
  rows        char-rnn's CharSplitLMMinibatchLoader, which the paper used: the corpus is cut to a multiple of
              rows x chunk bytes and viewed as `rows` equal rows; each row is cut into `chunk`-byte columns and the
              first floor(f_train * nb) columns of every row train, the next floor(f_val * nb) validate and the
              rest test (nb = columns per row). So every split has one piece per row, spread through the corpus.
Stages never join text across a seam between pieces: a piece is read (and scored) with the real text before it.
"""

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from rnnlens.errors import CorpusError  # noqa: F401 - its home for callers: rnnlens.corpus.CorpusError
from rnnlens.io import write_json

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
LAYOUTS = ("contiguous", "rows")
SMALL_VOCAB = 10  # fewer distinct bytes than this: prepare warns (a file of digits, a binary mask, a wrong file)


def check_fractions(fractions):
    total = sum(fractions[name] for name in SPLITS)
    if abs(total - 1.0) > 1e-6:
        raise CorpusError(f"split fractions {dict(fractions)} sum to {total:g}, not 1. Fix `split:` in the config.")


def split_bounds(size, fractions):
    """Contiguous [start, end) bounds for train/val/test from fractions that sum to 1."""
    check_fractions(fractions)
    bounds, start = {}, 0
    for name in SPLITS[:-1]:
        end = start + int(round(size * fractions[name]))
        bounds[name] = [start, end]
        start = end
    bounds[SPLITS[-1]] = [start, size]
    return bounds


def row_pieces(size, fractions, rows=100, chunk=100):
    """char-rnn's loader: -> ({split: [[start, end], ...] one piece per row}, bytes used).

    Bytes past the last multiple of rows x chunk are dropped, as char-rnn drops them. The column counts use
    char-rnn's own arithmetic (math.floor of nb * fraction; test takes the rest)."""
    check_fractions(fractions)
    used = size - size % (rows * chunk)
    if used == 0:
        raise CorpusError(f"the corpus has {size} bytes, fewer than split.rows x split.chunk = {rows * chunk}: too "
                          "small for the rows layout. Use a larger corpus, lower split.rows, or layout: contiguous.")
    row_len = used // rows
    columns = row_len // chunk
    n_train = math.floor(columns * fractions["train"])
    n_val = math.floor(columns * fractions["val"])
    counts = {"train": n_train, "val": n_val, "test": columns - n_train - n_val}
    for name, count in counts.items():
        if count < 1:
            raise CorpusError(f"rows layout: {columns} columns of {chunk} bytes per row leave the {name} split no "
                              f"column. Raise its `split:` fraction, lower split.rows or split.chunk, or use "
                              "layout: contiguous.")
    pieces = {name: [] for name in SPLITS}
    for row in range(rows):
        offset = row * row_len
        for name in SPLITS:
            end = offset + counts[name] * chunk
            pieces[name].append([offset, end])
            offset = end
    return pieces, used


def split_pieces(size, split):
    """The pieces of every split for a `split:` config entry -> (pieces, layout summary)."""
    fractions = {name: split[name] for name in SPLITS}
    layout = split.get("layout", "contiguous")
    if layout == "contiguous":
        return {name: [bounds] for name, bounds in split_bounds(size, fractions).items()}, {"kind": "contiguous",
                                                                                            "used_bytes": size}
    if layout == "rows":
        rows, chunk = int(split.get("rows", 100)), int(split.get("chunk", 100))
        pieces, used = row_pieces(size, fractions, rows, chunk)
        return pieces, {"kind": "rows", "rows": rows, "chunk": chunk, "used_bytes": used,
                        "row_bytes": used // rows}
    raise CorpusError(f"split.layout {layout!r} is unknown; use one of {', '.join(LAYOUTS)}")


def prepare(corpus_name, corpus_bin, split, min_train_bytes=2, min_eval_bytes=2):
    """Vocabulary and split pieces of an acquired corpus; checks it is usable for training.

    `split`: {train, val, test} fractions, optionally layout (contiguous | rows), rows and chunk."""
    path = Path(corpus_bin)
    if not path.is_file():
        raise CorpusError(f"corpus {corpus_name!r}: {path} does not exist. Fetch it first (`rnnlens fetch`, or the "
                          "workflow's fetch_corpus rule).")
    data = path.read_bytes()
    if not data:
        raise CorpusError(f"corpus {corpus_name!r} ({corpus_bin}) is empty. Point its config entry at a non-empty "
                          f"file, or delete {path} and rerun to fetch it again.")
    pieces, layout = split_pieces(len(data), split)
    sizes = {name: sum(b - a for a, b in pieces[name]) for name in SPLITS}
    if sizes["train"] < min_train_bytes:
        raise CorpusError(
            f"corpus {corpus_name!r}: the training split has {sizes['train']} bytes, fewer than the {min_train_bytes} "
            "needed for one batch. Use a larger corpus, or lower training.batch_size / training.seq_len.")
    for name in ("val", "test"):
        if sizes[name] < min_eval_bytes:
            raise CorpusError(f"corpus {corpus_name!r}: the {name} split has only {sizes[name]} bytes. "
                              "Raise its `split:` fraction.")
    vocab = sorted(set(data))
    check_vocabulary(corpus_name, path, vocab)
    return {
        "corpus": corpus_name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "vocab_size": len(vocab),
        "vocab": vocab,
        "layout": layout,
        "pieces": pieces,
        "split_sizes": sizes,
    }


def check_vocabulary(corpus_name, path, vocab):
    """One distinct byte: every model predicts it with certainty (loss 0) and every table and figure of the study
    would be meaningless, so refuse it; a handful of bytes is legal but rarely the text one meant, so warn."""
    if len(vocab) == 1:
        raise CorpusError(f"corpus {corpus_name!r} ({path}) holds one distinct byte ({bytes(vocab)!r}) throughout: "
                          "there is nothing to predict. Point its config entry at a text with more than one "
                          "character (is it the file you meant?).")
    if len(vocab) < SMALL_VOCAB:
        log.warning(f"corpus {corpus_name!r} ({path}) has only {len(vocab)} distinct bytes "
                    f"({bytes(vocab)!r}); the study runs, but check that it is the text you meant")


def positions_of(pieces):
    """Corpus offsets of every byte of a list of [start, end) pieces, in piece order."""
    if not pieces:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in pieces])


@dataclass
class PreparedCorpus:
    name: str
    data: np.ndarray  # uint8 bytes of the whole corpus
    vocab: np.ndarray  # sorted byte values
    pieces: dict  # split name -> list of (start, end) corpus ranges, in order
    layout: dict = field(default_factory=lambda: {"kind": "contiguous"})

    @classmethod
    def load(cls, data_json):
        data_json = Path(data_json)
        try:
            meta = json.loads(data_json.read_text())
            pieces = {k: [tuple(p) for p in v] for k, v in meta["pieces"].items()}
        except (OSError, ValueError, KeyError) as err:
            raise CorpusError(f"{data_json} is not a prepared corpus summary ({err}). Delete it and rerun the "
                              "workflow (or `rnnlens prepare`) to rebuild it.") from err
        corpus_bin = data_json.with_name("corpus.bin")
        raw = np.fromfile(corpus_bin, dtype=np.uint8) if corpus_bin.is_file() else np.zeros(0, dtype=np.uint8)
        if len(raw) != meta["size"]:
            raise CorpusError(f"{corpus_bin} has {len(raw)} bytes but {data_json} expects {meta['size']}: the corpus "
                              f"changed or is truncated. Delete {corpus_bin} and {data_json} and rerun the workflow.")
        return cls(meta["corpus"], raw, np.array(meta["vocab"], dtype=np.uint8), pieces,
                   meta.get("layout", {"kind": "contiguous"}))

    @classmethod
    def contiguous(cls, name, data, bounds, vocab=None):
        """A corpus whose splits are single [start, end) ranges (tests, benchmarks)."""
        data = np.asarray(data, dtype=np.uint8)
        vocab = np.unique(data) if vocab is None else np.asarray(vocab, dtype=np.uint8)
        return cls(name, data, vocab, {k: [tuple(v)] for k, v in bounds.items()})

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

    def positions(self, name):
        """Corpus offsets of the split's bytes, piece after piece."""
        return positions_of(self.pieces[name])

    def split(self, name):
        """The split's bytes, piece after piece (seams where piece_starts says)."""
        return self.data[self.positions(name)]

    def split_size(self, name):
        return sum(b - a for a, b in self.pieces[name])

    def piece_starts(self, name):
        """Index, within split(name), of the first byte of every piece: where the seams are."""
        lengths = [b - a for a, b in self.pieces[name]]
        return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)

    def with_split_spread(self, name, count):
        """The same corpus with split `name` cut to about `count` bytes spread over its pieces: the start of
        every piece (analyses on a subset that still sample the whole split)."""
        per_piece = max(1, -(-count // max(1, len(self.pieces[name]))))
        kept = [(a, min(b, a + per_piece)) for a, b in self.pieces[name]]
        return self.with_split_prefix(name, count) if len(kept) == 1 else replace(
            self, pieces={**self.pieces, name: kept})

    def with_split_prefix(self, name, count):
        """The same corpus with split `name` cut to its first `count` bytes (analyses on a subset)."""
        kept, left = [], count
        for a, b in self.pieces[name]:
            if left <= 0:
                break
            kept.append((a, min(b, a + left)))
            left -= kept[-1][1] - a
        return replace(self, pieces={**self.pieces, name: kept})


# --- commands -------------------------------------------------------------------------------------------------------

def add_prepare_arguments(parser):
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--corpus-bin", required=True)
    parser.add_argument("--split", required=True, help='JSON, e.g. {"train": 0.8, "val": 0.1, "test": 0.1}')
    parser.add_argument("--out", required=True)


def run_prepare(args):
    # whether the training split fills one batch is for `rnnlens train` to say: it knows the batch size, and a
    # batch-size change then reruns no baseline that reads this file
    summary = prepare(args.corpus, args.corpus_bin, json.loads(args.split))
    write_json(args.out, summary, indent=1)
    log.info(f"corpus {args.corpus}: {summary['size']} bytes, vocabulary {summary['vocab_size']}, "
             f"splits {summary['split_sizes']}")
    return 0
