"""`rnnlens explore <corpus> [<model>...]`: a local server (127.0.0.1 only) for the explorer's stores.

The standard library's ThreadingHTTPServer serves the static front-end shipped in the package (static/) and a
small JSON/binary API over the memory-mapped stores. Why not a web framework: the API is a dozen GET endpoints
without sessions, forms or templates, the server never leaves the local machine, and the standard library adds
no dependency to install or keep up to date. Threads (one per request) keep the page responsive while a search
runs; every request only reads the stores.

API (all GET; errors answer 400 with {"error": "..."}):
  /api/info                                 corpus, positions, models (metadata, features, sizes)
  /api/text                                 the test split's bytes
  /api/track?model&kind&layer&unit          one unit's uint8 levels over the whole split
  /api/lossdiff?model&other                 per position loss(model) - loss(other), uint8 levels over [-4, 4] nats
  /api/units?model[&feature][&limit]        units ranked by the cells stage's feature scores
  /api/unit?model&kind&layer&unit           unit page: saturation, best features, histogram, top contexts
  /api/predict?model&pos                    top-5 prediction of a position, n-gram p, error and oracle step
  /api/search?model&kind&start&end&threshold[&pad][&max_units][&min_fraction]   hypothesis search
"""

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

from rnnlens.explore.search import hypothesis_search
from rnnlens.explore.store import NOT_ANALYSED, NOT_ERROR, Store, StoreError, decode

STATIC = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".png": "image/png"}
LOSS_RANGE = 4.0  # nats: the loss-difference track saturates beyond +-4


def byte_label(b):
    b = int(b)
    special = {10: "\\n", 9: "\\t", 13: "\\r", 32: "space"}
    if b in special:
        return special[b]
    return chr(b) if 33 <= b < 127 else f"0x{b:02x}"


class Explorer:
    """The stores of one corpus, opened once; every method answers one API call."""

    def __init__(self, stores):
        if not stores:
            raise StoreError("no stores given")
        self.stores = {s.model: s for s in stores}
        first = stores[0]
        for s in stores[1:]:
            if s.meta["corpus"] != first.meta["corpus"] or not np.array_equal(s.text, first.text):
                raise StoreError(f"stores {first.model} and {s.model} hold different test texts; rebuild them from "
                                 "the same prepared corpus")
        self.text = first.text
        self.corpus = first.meta["corpus"]

    def store(self, query):
        name = query.get("model", "")
        if name not in self.stores:
            raise StoreError(f"unknown model {name!r}; this explorer has {', '.join(self.stores)}")
        return self.stores[name]

    def info(self, query):
        models = []
        for s in self.stores.values():
            keep = ("model", "arch", "layers", "hidden", "kinds", "kind_labels", "ranges", "cell_state", "test_loss",
                    "ngram", "oracle_steps", "error_threshold", "total_bytes", "bytes", "build_seconds")
            entry = {k: s.meta.get(k) for k in keep}
            entry["features"] = sorted(s.scores.feature.unique().tolist()) if s.scores is not None else []
            models.append(entry)
        return {"corpus": self.corpus, "positions": int(len(self.text)), "models": models,
                "loss_range": LOSS_RANGE}

    def track(self, query):
        store = self.store(query)
        return store.track(query["kind"], int(query["layer"]), int(query["unit"])).tobytes()

    def lossdiff(self, query):
        a, b = self.store(query), self.store({"model": query.get("other", "")})
        pa = np.clip(a.positions["p"].astype(np.float64), 1e-30, None)
        pb = np.clip(b.positions["p"].astype(np.float64), 1e-30, None)
        diff = np.log(pb) - np.log(pa)  # loss(a) - loss(b)
        levels = np.floor((np.clip(diff, -LOSS_RANGE, LOSS_RANGE) + LOSS_RANGE) * 255 / (2 * LOSS_RANGE) + 0.5)
        return levels.astype(np.uint8).tobytes()

    def units(self, query):
        store = self.store(query)
        limit = int(query.get("limit", 200))
        if store.scores is None:
            return {"kind": store.meta["cell_state"], "units": [], "note": "no cell scores in this store"}
        scores = store.scores
        feature = query.get("feature") or ""
        if feature:
            ranked = scores[scores.feature == feature].sort_values(["rank", "layer", "unit"])
        else:  # every unit once, under its best feature
            ranked = scores.loc[scores.groupby(["layer", "unit"])["score"].idxmax()].sort_values(
                ["score", "layer", "unit"], ascending=[False, True, True])
        rows = ranked.head(limit)
        return {"kind": store.meta["cell_state"], "feature": feature,
                "units": [{"layer": int(r.layer), "unit": int(r.unit), "feature": r.feature, "score": round(float(r.score), 4),
                           "sign": int(r.sign), "measure": r.kind} for r in rows.itertuples()]}

    def unit(self, query):
        store = self.store(query)
        kind, layer, unit = query["kind"], int(query["layer"]), int(query["unit"])
        counts, edges = store.histogram(kind, layer, unit)
        contexts = []
        width = 40
        values = store.track(kind, layer, unit)
        for pos in store.top_contexts(kind, layer, unit, count=10, width=width):
            a, b = max(0, pos - width), min(store.n, pos + 10)
            contexts.append({"pos": pos, "start": a, "end": b, "value": float(decode(values[pos], kind)),
                             "text": store.text[a:b].tobytes().decode("latin-1")})
        best = []
        if store.scores is not None:
            own = store.scores[(store.scores.layer == layer) & (store.scores.unit == unit)]
            best = [{"feature": r.feature, "score": round(float(r.score), 4), "sign": int(r.sign), "measure": r.kind,
                     "value": round(float(r.value), 4), "rank": int(r.rank)}
                    for r in own.sort_values("score", ascending=False).head(6).itertuples()]
        return {"model": store.model, "kind": kind, "layer": layer, "unit": unit,
                "saturation": {k: {"left": v[0], "right": v[1]} for k, v in store.saturation(layer, unit).items()},
                "scores_of": store.meta["cell_state"], "features": best,
                "histogram": {"counts": counts.tolist(), "edges": [round(float(e), 4) for e in edges]},
                "mean": float(decode(values, kind).mean()), "contexts": contexts}

    def predict(self, query):
        store = self.store(query)
        pos = int(query["pos"])
        if not 0 <= pos < store.n:
            raise StoreError(f"position {pos} is outside the test split (0..{store.n - 1})")
        row = store.positions[pos]
        target = int(store.text[pos])
        oracle = int(row["oracle"])
        steps = store.meta.get("oracle_steps") or []
        p_ngram = float(row["p_ngram"])
        return {"model": store.model, "pos": pos, "target": target, "target_label": byte_label(target),
                "top": [{"byte": int(b), "label": byte_label(b), "p": float(p)}
                        for b, p in zip(row["top_byte"], row["top_p"]) if p > 0],
                "p": float(row["p"]), "p_ngram": None if np.isnan(p_ngram) else p_ngram, "ngram": store.meta.get("ngram"),
                "error": bool(row["p"] < store.meta.get("error_threshold", 0.5)),
                "oracle": None if oracle in (NOT_ANALYSED, NOT_ERROR) else steps[oracle],
                "oracles_ran": oracle != NOT_ANALYSED}

    def search(self, query):
        store = self.store(query)
        return hypothesis_search(store, query.get("kind") or store.meta["cell_state"], int(query["start"]),
                                 int(query["end"]), float(query["threshold"]), pad=int(query.get("pad", 3)),
                                 max_units=int(query.get("max_units", 20)),
                                 min_fraction=float(query.get("min_fraction", 1.0)))


JSON_ROUTES = {"/api/info": "info", "/api/units": "units", "/api/unit": "unit", "/api/predict": "predict",
               "/api/search": "search"}
BINARY_ROUTES = {"/api/text": lambda ex, q: ex.text.tobytes(), "/api/track": Explorer.track,
                 "/api/lossdiff": Explorer.lossdiff}


def make_handler(explorer, quiet=True):
    class Handler(BaseHTTPRequestHandler):
        server_version = "rnnlens-explore"

        def do_GET(self):  # noqa: N802 (the standard library's name)
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            try:
                if url.path in JSON_ROUTES:
                    body = json.dumps(getattr(explorer, JSON_ROUTES[url.path])(query)).encode()
                    return self.reply(body, "application/json")
                if url.path in BINARY_ROUTES:
                    return self.reply(BINARY_ROUTES[url.path](explorer, query), "application/octet-stream")
            except (StoreError, ValueError, KeyError) as err:
                message = f"missing parameter {err}" if isinstance(err, KeyError) else str(err)
                return self.reply(json.dumps({"error": message}).encode(), "application/json", HTTPStatus.BAD_REQUEST)
            name = "index.html" if url.path in ("/", "/index.html") else url.path.removeprefix("/static/")
            path = (STATIC / name).resolve()
            if path.parent != STATIC or not path.is_file():
                return self.reply(b"not found", "text/plain", HTTPStatus.NOT_FOUND)
            return self.reply(path.read_bytes(), CONTENT_TYPES.get(path.suffix, "application/octet-stream"))

        def reply(self, body, content_type, status=HTTPStatus.OK):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # noqa: A002
            if not quiet:
                super().log_message(format, *args)

    return Handler


def open_server(explorer, port=8765, quiet=True):
    """A bound server on 127.0.0.1 (port 0: any free port). Local only: the API has no authentication."""
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(explorer, quiet))
    except OSError as err:
        raise StoreError(f"cannot listen on 127.0.0.1:{port} ({err.strerror}); pass another --port "
                         "(0 picks a free one)") from None
    server.daemon_threads = True
    return server


def serve_in_thread(explorer, port=0):
    """For tests and benchmarks: (server, url); stop with server.shutdown(); server.server_close()."""
    server = open_server(explorer, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/"


def find_stores(results, corpus, models):
    base = Path(results) / corpus / "explore"
    if not models:
        models = sorted(p.parent.name for p in base.glob("*/store.json"))
        if not models:
            raise StoreError(f"no explorer stores under {base}; list models under analysis.explore.models in the "
                             f"config and run `snakemake --cores 2 explore` (or one: `snakemake --cores 2 "
                             f"{base}/MODEL/store.json`)")
    return [Store(base / m) for m in models]


def add_explore_arguments(parser):
    parser.add_argument("corpus", help="corpus id, e.g. warpeace or demo")
    parser.add_argument("models", nargs="*", help="model ids (default: every model with a store)")
    parser.add_argument("--results", default="results", help="the workflow's results directory (default: results)")
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765; 0: any free port)")
    parser.add_argument("--open", action="store_true", help="also open the page in the default web browser")
    parser.add_argument("--verbose", action="store_true", help="log every request")


def run_explore(args):
    stores = find_stores(args.results, args.corpus, args.models)
    explorer = Explorer(stores)
    server = open_server(explorer, args.port, quiet=not args.verbose)
    url = f"http://127.0.0.1:{server.server_port}/"
    for s in stores:
        print(f"  {s.model}: {s.meta['layers']} x {s.meta['hidden']} {s.meta['arch']}, store "
              f"{s.meta['total_bytes'] / 2**20:,.1f} MiB", flush=True)
    print(f"rnnlens explore: {explorer.corpus} ({len(explorer.text):,} test characters) at {url}  (Ctrl-C stops)",
          flush=True)
    if args.open:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("rnnlens explore: stopped", flush=True)
    finally:
        server.server_close()
    return 0
