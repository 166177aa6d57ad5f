"""The explorer's store of one model: everything the browser shows, precomputed over the whole test split.

A store is a directory results/{corpus}/explore/{model}/ of plain files:
  acts.npy       uint8 (tracks, positions), memory-mapped: every unit of every layer and every kind (LSTM: tanh(c),
                 h, i, f, o, g; GRU: h, r, z, n; RNN: h), one contiguous row per unit, so that one unit's whole
                 test split (a text-view track, a histogram, top contexts) is one sequential read, and a search
                 over a few units reads a few rows. Row of (kind, layer, unit) = (kind_index*layers + layer-1)*hidden
                 + unit. Values are quantised to 256 levels over the kind's range ([0, 1] for sigmoid gates,
                 [-1, 1] for everything else): at most 1/510 (gates) or 1/255 (the rest) from the exact value,
                 far below what a colour shows, and placed so that the saturation thresholds 0.1 and 0.9 fall
                 exactly between levels (saturation fractions computed from the store are exact).
  positions.npy  a structured array, one row per test position: the model's top-5 next bytes and their
                 probabilities (from the model's full distributions, computed here), p of the true byte (from the
                 predictions Parquet when given), the reference n-gram's p, and the oracle step that explains an
                 error (-1: not an error, -2: oracles not run)
  text.bin       the test split's bytes
  scores.parquet the cells stage's feature scores of this model (when given), for ranking units
  store.json     metadata (written last: a store without it is incomplete)
Quantisation, not compression: a 3-layer 512 LSTM on War and Peace's 325,825 test characters is 9,216 tracks x
325,825 bytes = 3.0 GB on disk, and the browser only ever receives one unit's uint8 track (325 KB) at a time.
"""

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rnnlens.errors import InputError, RnnlensError
from rnnlens.io import atomic_path, atomic_write_bytes, write_json, write_parquet

log = logging.getLogger(__name__)

FORMAT = 1
KINDS = {"lstm": ("c", "h", "i", "f", "o", "g"), "gru": ("h", "r", "z", "n"), "rnn": ("h",)}
KIND_LABELS = {"c": "tanh(c) cell", "h": "h hidden", "i": "i input gate", "f": "f forget gate",
               "o": "o output gate", "g": "g candidate", "r": "r reset gate (PyTorch)",
               "z": "z update gate, the paper's (1 - PyTorch's z: weight of the candidate)", "n": "n candidate"}
GATES = {"i", "f", "o", "r", "z"}  # sigmoid: [0, 1]; every other kind is a tanh: [-1, 1]
TOP_K = 5
NOT_ANALYSED, NOT_ERROR = -2, -1
POSITION_DTYPE = np.dtype([("top_byte", np.uint8, (TOP_K,)), ("top_p", np.float32, (TOP_K,)), ("p", np.float32),
                           ("p_ngram", np.float32), ("oracle", np.int8)])


class StoreError(RnnlensError):
    """An explorer store that is missing or does not fit its inputs."""


def kind_range(kind):
    return (0.0, 1.0) if kind in GATES else (-1.0, 1.0)


def quantise(values, kind):
    """Float activations (any shape, torch) -> uint8 levels over the kind's range (tanh applied to c)."""
    if kind == "c":
        values = torch.tanh(values)
    lo, hi = kind_range(kind)
    scale = 255.0 / (hi - lo)
    return ((values.float() - lo) * scale + 0.5).floor_().clamp_(0, 255).to(torch.uint8)


def decode(levels, kind):
    lo, hi = kind_range(kind)
    return lo + np.asarray(levels, dtype=np.float32) * ((hi - lo) / 255.0)


def level_threshold(threshold, kind):
    """The level t with decode(q) > threshold  <=>  q > t, for integer levels q."""
    lo, hi = kind_range(kind)
    return int(np.clip(np.floor((threshold - lo) * 255.0 / (hi - lo)), -1, 255))


class Store:
    """A store opened read-only; acts and positions are memory-mapped (opening costs nothing)."""

    def __init__(self, directory):
        self.dir = Path(directory)
        meta_path = self.dir / "store.json"
        if not meta_path.is_file():
            raise StoreError(f"{self.dir} holds no finished explorer store (no store.json); build it with "
                             f"`snakemake --cores 2 {meta_path}`")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise StoreError(f"{self.dir} is a store of format {self.meta.get('format')}, this rnnlens reads "
                             f"{FORMAT}; rebuild it with `snakemake --cores 2 {meta_path}`")
        self.acts = np.load(self.dir / "acts.npy", mmap_mode="r")
        self.positions = np.load(self.dir / "positions.npy", mmap_mode="r")
        self.text = np.fromfile(self.dir / "text.bin", dtype=np.uint8)
        self.layers, self.hidden, self.kinds = self.meta["layers"], self.meta["hidden"], self.meta["kinds"]
        self.n = self.meta["positions"]
        scores = self.dir / "scores.parquet"
        self.scores = pd.read_parquet(scores) if scores.is_file() else None

    @property
    def model(self):
        return self.meta["model"]

    def row(self, kind, layer, unit):
        if kind not in self.kinds:
            raise StoreError(f"{self.model} has no {kind!r} activations; it has {', '.join(self.kinds)}")
        if not (1 <= layer <= self.layers and 0 <= unit < self.hidden):
            raise StoreError(f"unit {layer}:{unit} is outside {self.model} ({self.layers} layers of {self.hidden} "
                             "units; layers count from 1, units from 0)")
        return (self.kinds.index(kind) * self.layers + layer - 1) * self.hidden + unit

    def kind_block(self, kind):
        """Every unit of every layer of one kind: (layers*hidden, positions), row = (layer-1)*hidden + unit."""
        first = self.row(kind, 1, 0)
        return self.acts[first:first + self.layers * self.hidden]

    def track(self, kind, layer, unit):
        return np.asarray(self.acts[self.row(kind, layer, unit)])

    def values(self, kind, layer, unit):
        return decode(self.track(kind, layer, unit), kind)

    def histogram(self, kind, layer, unit, bins=40):
        lo, hi = kind_range(kind)
        counts, edges = np.histogram(self.values(kind, layer, unit), bins=bins, range=(lo, hi))
        return counts, edges

    def top_contexts(self, kind, layer, unit, count=10, width=40):
        """The `count` highest-activation positions, no two within `width` of each other."""
        track = self.track(kind, layer, unit)
        order = np.argsort(-track.astype(np.int16), kind="stable")
        picked = []
        for pos in order[:max(count * 50, 1000)]:
            if all(abs(int(pos) - p) > width for p in picked):
                picked.append(int(pos))
                if len(picked) == count:
                    break
        return picked

    def saturation(self, layer, unit, left=0.1, right=0.9):
        """Per gate kind of this unit: (fraction < left, fraction > right) over the test split. Exact from the
        quantised levels, because the levels are placed so that 0.1 and 0.9 fall between two of them."""
        out = {}
        for kind in self.kinds:
            if kind in GATES:
                values = self.values(kind, layer, unit)
                out[kind] = (float((values < left).mean()), float((values > right).mean()))
        return out


def _store_files(out_dir):
    return {name: out_dir / name for name in ("acts.npy", "positions.npy", "text.bin", "scores.parquet", "store.json")}


def write_store(out_dir, meta, text, fill_acts, positions, scores=None, started=None):
    """Write a store: `fill_acts(acts)` fills the (tracks, n) uint8 memmap it is given. Every file is written
    under a temporary name and renamed; store.json comes last, so an interrupted build leaves no finished store."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = _store_files(out_dir)
    files["store.json"].unlink(missing_ok=True)
    n = len(text)
    tracks = len(meta["kinds"]) * meta["layers"] * meta["hidden"]
    with atomic_path(files["acts.npy"]) as part:
        acts = np.lib.format.open_memmap(part, mode="w+", dtype=np.uint8, shape=(tracks, n))
        fill_acts(acts)
        acts.flush()
        del acts
    with atomic_path(files["positions.npy"]) as part:  # ends in .npy, so np.save appends nothing
        np.save(part, positions, allow_pickle=False)
    atomic_write_bytes(files["text.bin"], np.asarray(text, dtype=np.uint8).tobytes())
    if scores is not None:
        write_parquet(scores, files["scores.parquet"])
    else:
        files["scores.parquet"].unlink(missing_ok=True)
    sizes = {name: path.stat().st_size for name, path in files.items() if name != "store.json" and path.is_file()}
    meta = {**meta, "format": FORMAT, "positions": n, "bytes": sizes, "total_bytes": sum(sizes.values())}
    if started is not None:
        meta["build_seconds"] = round(time.perf_counter() - started, 2)
    write_json(files["store.json"], meta, indent=1)
    return meta


def base_meta(model_id, corpus_name, arch, layers, hidden):
    kinds = list(KINDS[arch])
    return {"model": model_id, "corpus": corpus_name, "arch": arch, "layers": layers, "hidden": hidden,
            "kinds": kinds, "kind_labels": {k: KIND_LABELS[k] for k in kinds},
            "ranges": {k: list(kind_range(k)) for k in kinds}, "cell_state": "c" if arch == "lstm" else "h",
            "oracle_steps": None, "ngram": None, "error_threshold": 0.5}


def empty_positions(n):
    positions = np.zeros(n, dtype=POSITION_DTYPE)
    positions["p_ngram"] = np.nan
    positions["oracle"] = NOT_ANALYSED
    return positions


def _fill_from_model(model, corpus, streams, warmup, chunk):
    """A fill_acts that streams the exact internals (rnnlens.internals) into the memmap, chunk by chunk."""
    from rnnlens.internals import LayerwiseRunner, stream_test_internals

    spec = model.spec
    kinds = KINDS[spec.arch]
    H = spec.hidden

    def fill(acts):
        runner = LayerwiseRunner(model)
        for chunk_acts in stream_test_internals(model, corpus, streams, warmup, chunk, runner=runner):
            pos = chunk_acts.pos
            for k, kind in enumerate(kinds):
                for layer, layer_acts in enumerate(chunk_acts.acts):
                    # the GRU's z as the paper defines it (weight of the candidate): 1 - PyTorch's z
                    values = 1 - layer_acts[kind] if kind == "z" else layer_acts[kind]
                    levels = quantise(values, kind).cpu().numpy()  # (streams, time, hidden)
                    first = (k * spec.layers + layer) * H
                    for b in range(pos.shape[0]):
                        keep = pos[b] >= 0
                        p = pos[b][keep]
                        if len(p) == 0:
                            continue
                        block = levels[b][keep].T
                        if p[-1] - p[0] + 1 == len(p):  # a stream's chunk is one contiguous run of the split
                            acts[first:first + H, p[0]:p[-1] + 1] = block
                        else:
                            acts[first:first + H, p] = block
    return fill


def model_predictions(model, corpus, streams, warmup):
    """Top-5 next bytes and probabilities, and p of the true byte, from the model's full distributions (the same
    streaming as the evaluation stage, so the numbers match its predictions Parquet)."""
    from rnnlens.evaluate import predict_test

    device = next(model.parameters()).device
    result = predict_test(model, corpus, streams=streams, warmup=warmup, device=device, keep_probs=True)
    probs = torch.from_numpy(result.pop("probs"))
    top_p, top_i = probs.topk(min(TOP_K, probs.shape[1]), dim=1)
    top_byte = np.zeros((len(probs), TOP_K), dtype=np.uint8)
    top_prob = np.zeros((len(probs), TOP_K), dtype=np.float32)
    top_byte[:, :top_i.shape[1]] = corpus.vocab[top_i.numpy()]
    top_prob[:, :top_p.shape[1]] = top_p.numpy()
    return top_byte, top_prob, result["p"]


def _read_p(path, n, what):
    from rnnlens.predictions import read_predictions

    frame, meta = read_predictions(path, columns=["pos", "p"])
    if len(frame) != n:
        raise StoreError(f"{path} has {len(frame)} rows but the test split has {n} positions; {what} was made for "
                         "another corpus or split; regenerate it or pass the matching --data")
    return frame["p"].to_numpy(np.float32), meta


def build_store(model, corpus, out_dir, model_id, predictions=None, ngram=None, oracle_ngrams=(), oracle_settings=None,
                cells=None, eval_streams=100, eval_warmup=2000, streams=50, warmup=1000, chunk=100):
    """Build the store of one model over the corpus's test split; returns its metadata (with sizes and time)."""
    t0 = time.perf_counter()
    spec = model.spec
    text = np.asarray(corpus.split("test"), dtype=np.uint8)
    n = len(text)
    meta = base_meta(model_id, corpus.name, spec.arch, spec.layers, spec.hidden)
    meta["vocab"] = corpus.vocab.tolist()
    meta["evaluation"] = {"streams": eval_streams, "warmup": eval_warmup}
    meta["internals"] = {"streams": streams, "warmup": warmup, "chunk": chunk}
    positions = empty_positions(n)
    log.info(f"{model_id}: top-{TOP_K} predictions over {n:,} test positions")
    top_byte, top_p, p = model_predictions(model, corpus, eval_streams, eval_warmup)
    positions["top_byte"], positions["top_p"], positions["p"] = top_byte, top_p, p
    if predictions:
        positions["p"], pred_meta = _read_p(predictions, n, "the predictions Parquet")
        meta["test_loss"] = pred_meta.get("test_loss")
    else:
        meta["test_loss"] = float(-np.log(np.clip(p.astype(np.float64), 1e-30, None)).mean())
    if ngram:
        positions["p_ngram"], ngram_meta = _read_p(ngram, n, "the n-gram predictions Parquet")
        meta["ngram"] = ngram_meta.get("model") or Path(ngram).stem
    if oracle_settings is not None:
        meta["oracle_steps"], meta["error_threshold"] = _oracle_labels(corpus, positions, oracle_ngrams,
                                                                       oracle_settings)
    scores = None
    if cells:
        scores = pd.read_parquet(cells, columns=["layer", "unit", "feature", "kind", "value", "score", "sign",
                                                 "rank"])
    log.info(f"{model_id}: quantising every activation of {spec.layers} x {spec.hidden} {spec.arch} units "
             f"({len(meta['kinds'])} kinds) into {out_dir}")
    fill = _fill_from_model(model, corpus, streams, warmup, chunk)
    meta = write_store(out_dir, meta, text, fill, positions, scores, started=t0)
    log.info(f"{model_id}: store of {meta['total_bytes'] / 2**20:,.1f} MiB "
             f"({meta['bytes']['acts.npy'] / 2**20:,.1f} MiB activations) in {meta['build_seconds']:.1f} s "
             f"-> {out_dir}")
    return meta


def _oracle_labels(corpus, positions, oracle_ngrams, settings):
    """Per position, the oracle step that explains the model's error (rnnlens.oracles, the paper's peeling)."""
    from rnnlens.oracles import OracleConfig, TextFacts, analyse, load_ngrams

    config = OracleConfig.from_mapping(settings)
    facts = TextFacts.from_corpus(corpus)
    ngram_ps = load_ngrams(list(oracle_ngrams), facts)
    _, labels, steps = analyse(facts, positions["p"].astype(np.float64), ngram_ps, config)
    positions["oracle"] = labels.astype(np.int8)
    names = [f"{category}: {sub}" for category, sub, _, _ in steps] + ["rest"]
    return names, config.error_threshold


def add_explore_store_arguments(parser):
    parser.add_argument("--model", required=True, help="model.pt written by training")
    parser.add_argument("--data", required=True, help="prepared corpus data.json")
    parser.add_argument("--out-dir", required=True, help="the store's directory")
    parser.add_argument("--model-id", default=None)
    parser.add_argument("--predictions", help="the model's predictions Parquet (its p is shown beside the n-gram's)")
    parser.add_argument("--ngram", help="the reference n-gram's predictions Parquet (e.g. ngram-20.parquet)")
    parser.add_argument("--oracle-ngrams", nargs="*", default=[], help="n-gram predictions for the n-gram oracle")
    parser.add_argument("--oracle-settings", help="JSON of the oracle settings (analysis.oracles); given: label errors")
    parser.add_argument("--cells", help="the cells stage's cells.parquet of this model (ranks units by feature)")
    parser.add_argument("--eval-streams", type=int, default=100, help="as evaluation.streams (so p matches the Parquet)")
    parser.add_argument("--eval-warmup", type=int, default=2000, help="as evaluation.warmup")
    parser.add_argument("--streams", type=int, default=50, help="internals streams")
    parser.add_argument("--warmup", type=int, default=1000, help="internals warm-up characters")
    parser.add_argument("--chunk", type=int, default=100, help="internals time steps per chunk (memory)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu, cuda, cuda:N")


def run_explore_store(args):

    from rnnlens.corpus import PreparedCorpus
    from rnnlens.internals import model_id_for
    from rnnlens.model import load_model, pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    given = [("--model", args.model), ("--data", args.data), ("--predictions", args.predictions),
             ("--ngram", args.ngram), ("--cells", args.cells)] + [("--oracle-ngrams", p) for p in args.oracle_ngrams]
    for flag, path in given:
        if path and not Path(path).is_file():
            raise InputError(f"{flag} {path} does not exist; run the stage that makes it first")
    device = pick_device(args.device)
    model, extra = load_model(args.model)
    model = model.to(device)  # predictions and internals run where the weights are
    log.info(f"store on {device}")
    corpus = PreparedCorpus.load(args.data)
    if model.spec.vocab_size != corpus.vocab_size:
        raise InputError(f"model {args.model} has a vocabulary of {model.spec.vocab_size}, corpus "
                         f"{args.data} of {corpus.vocab_size}; give the data.json the model was trained on")
    build_store(model, corpus, args.out_dir, model_id_for(args.model, extra, args.model_id),
                predictions=args.predictions, ngram=args.ngram, oracle_ngrams=args.oracle_ngrams,
                oracle_settings=json.loads(args.oracle_settings) if args.oracle_settings else None,
                cells=args.cells, eval_streams=args.eval_streams, eval_warmup=args.eval_warmup,
                streams=args.streams, warmup=args.warmup, chunk=args.chunk)
    return 0
