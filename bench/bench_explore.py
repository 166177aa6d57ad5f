"""The activation explorer: store size and build time, time to first render, scrolling, hypothesis-search latency.

    python bench/bench_explore.py [--corpus ../shared/data/warpeace.txt] [--arch lstm --layers 3 --hidden 512]
                                  [--train-steps 10] [--threads 2] [--out results/bench/explore.json]

War and Peace (80/10/10 contiguous: 325,825 test characters) when present, else a stand-in prose text of the same
size. The model is trained for --train-steps steps of the paper's recipe (batch 100 x 100, RMSProp) so that its
cells are not random (a few steps on a CPU; the figures depend on the model's shape, not on its quality). Then:
  store     rnnlens.explore.store.build_store over the whole test split: seconds and bytes
  browser   headless Chromium (when installed) against the real server: navigation to first coloured render;
            scrolling 10,000 characters a third of a screen per frame (sum of the frames' draw times, the
            slowest frame); skipped without chromium
  search    hypothesis search over every layer's cells at spans inside quotes (threshold 0.3), through HTTP:
            server-side and round-trip milliseconds, first (cold page cache) and the rest
  ablation  the unit page's ablation toggle through HTTP (rnnlens.explore.ablation): the first unit (the model's
            training means and own predictions too), another unit, another mode (one pass over the split each),
            then the cached loss-difference strip and predictions under the cursor; not with --synthetic
--synthetic skips the model: the store gets the shape of the given model (every kind of every unit) and
activations from a slowly varying random process per unit (on and off in runs, as cells are), so the size,
render, scroll and search figures of a 3x512 store can be measured on a machine that cannot train or run one
quickly; its "build" time is then only the time to write the store.
The store is written under --work (default results/bench/explore_store) and removed afterwards unless --keep.
"""

import argparse
import json
import shutil
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import RESULTS, ROOT, device_info, set_threads, write_json
from synthetic import synthetic_prose

from rnnlens import log
from rnnlens.corpus import PreparedCorpus, prepare
from rnnlens.explore.server import Explorer, serve_in_thread
from rnnlens.explore.store import Store, build_store
from rnnlens.model import ModelSpec, save_model
from rnnlens.recurrent import CharRNN

DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "warpeace.txt"


def prepared_corpus(path, work):
    data = Path(path).read_bytes() if path and Path(path).is_file() else None
    name = "warpeace" if data is not None else "stand-in prose"
    if data is None:
        data = synthetic_prose(3_258_246).tobytes()
    d = work / "bench"  # the workflow's layout: bench/data.json, bench/models/ID/model.pt, bench/explore/ID/
    d.mkdir(parents=True, exist_ok=True)
    (d / "corpus.bin").write_bytes(data)
    (d / "data.json").write_text(json.dumps(prepare(name, d / "corpus.bin", {"train": 0.8, "val": 0.1, "test": 0.1}, 2)))
    return PreparedCorpus.load(d / "data.json"), name


def quick_train(model, corpus, steps, batch=100, seq_len=100, lr=2e-3):
    if steps <= 0:
        return None
    train = torch.from_numpy(corpus.encode(corpus.split("train")))
    per_stream = (len(train) - 1) // batch
    inputs = train[:batch * per_stream].view(batch, per_stream)
    targets = train[1:batch * per_stream + 1].view(batch, per_stream)
    opt = torch.optim.RMSprop(model.parameters(), lr=lr, alpha=0.95)
    state, loss = None, None
    model.train()
    for step in range(steps):
        col = step * seq_len
        logits, state = model(inputs[:, col:col + seq_len], state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[:, col:col + seq_len].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 5.0)
        opt.step()
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
    model.eval()
    return float(loss)


def quote_spans(text, count, min_len=8, max_len=40):
    """Spans strictly inside double quotes (where a quote cell is on and off around), spread over the split."""
    quotes = np.flatnonzero(text == ord('"'))
    spans = [(int(a) + 1, int(b)) for a, b in zip(quotes[0::2], quotes[1::2]) if min_len <= b - a - 1 <= max_len]
    if len(spans) < count:  # no quotes (stand-in text): evenly spaced 12-character spans
        spans = [(int(a), int(a) + 12) for a in np.linspace(100, len(text) - 200, count)]
    return [spans[i] for i in np.linspace(0, len(spans) - 1, count).astype(int)]


def synthetic_build(corpus, out_dir, arch, layers, hidden, seed=0):
    """A store of a model's shape with made-up activations (see --synthetic): every unit holds piecewise-constant
    levels over runs of geometric length (mean 5-500 characters, unit by unit), so units switch on and off as cells
    do and searches find matches."""
    from rnnlens.explore.store import base_meta, empty_positions, write_store

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    text = np.asarray(corpus.split("test"), dtype=np.uint8)
    n = len(text)
    meta = base_meta(f"{arch}-{layers}x{hidden}h", corpus.name, arch, layers, hidden)

    def fill(acts):
        for row in range(acts.shape[0]):
            mean = rng.uniform(5, 500)
            lengths = rng.geometric(1 / mean, size=int(3 * n / mean) + 10)
            while lengths.sum() < n:
                lengths = np.concatenate([lengths, rng.geometric(1 / mean, size=len(lengths))])
            levels = rng.integers(0, 256, size=len(lengths), dtype=np.uint8)
            acts[row] = np.repeat(levels, lengths)[:n]

    positions = empty_positions(n)
    return write_store(out_dir, {**meta, "synthetic": True}, text, fill, positions, started=t0)


def unit_run_spans(store, kind, count, seed=0, min_len=8, max_len=40):
    """Spans where some unit is on (> 0.3) throughout: runs of randomly chosen units (for synthetic stores)."""
    rng = np.random.default_rng(seed)
    block, spans = store.kind_block(kind), []
    while len(spans) < count:
        on = np.asarray(block[rng.integers(block.shape[0])]) > 166  # level of 0.3 in [-1, 1]
        edges = np.diff(np.concatenate([[0], on.astype(np.int8), [0]]))
        runs = [(a, b) for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)) if min_len <= b - a <= max_len]
        if runs:
            a, b = runs[rng.integers(len(runs))]
            spans.append((int(a), int(b)))
    return spans


def browser_figures(url, chars):
    from rnnlens.explore import browser

    if browser.find_chromium() is None:
        return {"skipped": "chromium/chromedriver not installed"}
    with browser.headless_chromium() as driver:
        t0 = time.perf_counter()
        driver.get(url)
        browser.wait_until_ready(driver, timeout=120)
        wall = time.perf_counter() - t0
        first = driver.execute_script("return window.rnnlensExplorer.state.firstRenderMs")
        draw = driver.execute_script("const e = window.rnnlensExplorer; e.draw(); return e.state.lastRenderMs")
        scroll = driver.execute_script("return window.rnnlensExplorer.scrollBench(arguments[0])", chars)
        errors = browser.severe_console_messages(driver)
    return {"first_render_ms": round(first, 1), "ready_wall_s": round(wall, 3), "one_screen_draw_ms": round(draw, 2),
            "scroll_chars": scroll["chars"], "scroll_ms": round(scroll["ms"], 1), "scroll_frames": scroll["frames"],
            "scroll_max_frame_ms": round(scroll["max_frame_ms"], 2), "console_errors": len(errors)}


def search_figures(url, model_id, kind, spans):
    rows = []
    for start, end in spans:
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"{url}api/search?model={model_id}&kind={kind}&start={start}&end={end}"
                                    "&threshold=0.3&pad=3", timeout=60) as response:
            result = json.loads(response.read())
        rows.append({"start": start, "end": end, "server_ms": result["ms"],
                     "round_trip_ms": round(1000 * (time.perf_counter() - t0), 1), "units": len(result["units"]),
                     "matches": len(result["matches"])})
    rest = [r["round_trip_ms"] for r in rows[1:]] or [rows[0]["round_trip_ms"]]
    return {"queries": rows, "first_round_trip_ms": rows[0]["round_trip_ms"], "median_round_trip_ms": statistics.median(rest),
            "max_round_trip_ms": max(r["round_trip_ms"] for r in rows), "candidates": None}


def ablation_figures(url, model_id, store, positions=20):
    """Seconds to the first answer of each ablation (round trip), then the cached strip and predictions (ms)."""
    def get(path):
        t0 = time.perf_counter()
        with urllib.request.urlopen(url + path, timeout=3600) as response:
            body = response.read()
        return body, time.perf_counter() - t0

    passes = []
    for layer, unit, mode in ((1, 0, "mean"), (store.layers, 1, "mean"), (store.layers, 1, "zero")):
        body, wall = get(f"api/ablation?model={model_id}&layer={layer}&unit={unit}&mode={mode}")
        summary = json.loads(body)
        passes.append({"layer": layer, "unit": unit, "mode": mode, "round_trip_s": round(wall, 3),
                       "server_s": summary["seconds"], "mean_dloss": round(summary["mean_dloss"], 5)})
    q = f"model={model_id}&layer={store.layers}&unit=1&mode=zero"
    _, strip = get(f"api/ablation_lossdiff?{q}")
    predict = [1000 * get(f"api/ablation_predict?{q}&pos={int(pos)}")[1]
               for pos in np.linspace(0, store.n - 1, positions)]
    return {"positions": store.n, "passes": passes, "first_s": passes[0]["round_trip_s"],
            "next_unit_s": passes[1]["round_trip_s"], "next_mode_s": passes[2]["round_trip_s"],
            "strip_ms": round(1000 * strip, 1), "predict_median_ms": round(statistics.median(predict), 2),
            "predict_max_ms": round(max(predict), 2)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    ap.add_argument("--arch", default="lstm", choices=("rnn", "lstm", "gru"))
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--searches", type=int, default=8)
    ap.add_argument("--synthetic", action="store_true", help="no model: made-up activations of the model's shape")
    ap.add_argument("--scroll-chars", type=int, default=10_000)
    ap.add_argument("--work", default=str(RESULTS / "explore_store"))
    ap.add_argument("--keep", action="store_true", help="keep the store (3 GB for an LSTM 3x512 on War and Peace)")
    ap.add_argument("--out", default=str(RESULTS / "explore.json"))
    args = ap.parse_args(argv)
    log.configure()  # build_store's progress lines, as in a rule log
    set_threads(args.threads)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        corpus, corpus_name = prepared_corpus(args.corpus, work)
        model_id = f"{args.arch}-{args.layers}x{args.hidden}h"
        loss, train_s = None, 0.0
        store_dir = work / "bench" / "explore" / model_id
        if args.synthetic:
            args.train_steps = 0
            meta = synthetic_build(corpus, store_dir, args.arch, args.layers, args.hidden)
        else:
            torch.manual_seed(0)
            model = CharRNN(ModelSpec(args.arch, args.layers, args.hidden, corpus.vocab_size))
            model.init_uniform(0.08)
            t0 = time.perf_counter()
            loss = quick_train(model, corpus, args.train_steps)
            train_s = time.perf_counter() - t0
            print(f"{model_id}: {args.train_steps} training steps in {train_s:.0f} s (last loss {loss}); building the "
                  f"store over {len(corpus.split('test')):,} test positions", flush=True)
            meta = build_store(model, corpus, store_dir, model_id, oracle_settings={}, eval_streams=100,
                               eval_warmup=2000)
            save_model(work / "bench" / "models" / model_id / "model.pt", model)  # what ablation loads
        store = Store(store_dir)
        kind = store.meta["cell_state"]
        spans = unit_run_spans(store, kind, args.searches) if args.synthetic else quote_spans(store.text, args.searches)
        server, url = serve_in_thread(Explorer([store]))
        try:
            page = browser_figures(url, args.scroll_chars)
            search = search_figures(url, model_id, kind, spans)
            ablation = None if args.synthetic else ablation_figures(url, model_id, store)
        finally:
            server.shutdown()
            server.server_close()
        search["candidates"] = store.layers * store.hidden
        result = {**device_info("cpu"), "corpus": corpus_name, "model": model_id, "synthetic": args.synthetic,
                  "arch": args.arch,
                  "layers": args.layers, "hidden": args.hidden, "train_steps": args.train_steps,
                  "train_s": round(train_s, 1), "last_train_loss": loss, "test_positions": store.n,
                  "store_bytes": meta["total_bytes"], "activation_bytes": meta["bytes"]["acts.npy"],
                  "tracks": int(store.acts.shape[0]), "build_s": meta["build_seconds"], "browser": page,
                  "search": search, "ablation": ablation}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    write_json(Path(args.out), result)
    print(json.dumps({k: v for k, v in result.items() if k != "search"}, indent=1))
    print(f"search: first {search['first_round_trip_ms']} ms, median {search['median_round_trip_ms']} ms, max "
          f"{search['max_round_trip_ms']} ms over {len(search['queries'])} spans ({search['candidates']} candidate cells)")
    if ablation:
        print(f"ablation: first {ablation['first_s']} s, another unit {ablation['next_unit_s']} s, another mode "
              f"{ablation['next_mode_s']} s; cached strip {ablation['strip_ms']} ms, predictions median "
              f"{ablation['predict_median_ms']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
