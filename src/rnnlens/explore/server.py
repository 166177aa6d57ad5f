"""`rnnlens explore <corpus> [<model>...]`: a local server (127.0.0.1 only) for the explorer's stores.

The standard library's ThreadingHTTPServer serves the static front-end shipped in the package (static/) and a
small JSON/binary API over the memory-mapped stores. Why not a web framework: the API is a dozen GET endpoints
without sessions, forms or templates, the server never leaves the local machine, and the standard library adds
no dependency to install or keep up to date. Threads (one per request) keep the page responsive while a search
runs; every request only reads the stores.

API (all GET; errors answer 400 with {"error": "..."}):
  /api/info                                 corpus, positions, models (metadata, kinds, features, sizes)
  /api/text                                 the test split's bytes
  /api/track?model&kind&layer&unit          one unit's uint8 levels over the whole split
  /api/scale?model&kind&layer&unit[&mode]   how that unit is coloured (its kind's range or its own scale)
  /api/feature?model&name                   one text feature over the whole split (0/1, or a count up to 255)
  /api/lossdiff?model&other                 per position loss(model) - loss(other), uint8 levels over [-4, 4] nats
  /api/units?model[&feature][&limit]        units ranked by the cells stage's feature scores (with strength,
                                            partial and whether another feature explains the unit better)
  /api/unit?model&kind&layer&unit[&mode]    unit page: scale, level counts, saturation, features, both extremes
  /api/predict?model&pos                    top-5 prediction of a position, n-gram p, error and oracle step
  /api/ablation?model&layer&unit&mode       the unit held at its training mean or zero (rnnlens.explore.ablation):
                                            computed over the whole split on the first call, then cached; the
                                            held value, the loss-difference strip's scale, mean loss difference
  /api/ablation_lossdiff?model&layer&unit&mode   per position loss(ablated) - loss(own), uint8 levels over
                                            [-scale, scale]
  /api/ablation_predict?model&layer&unit&mode&pos   the ablated top-5 and p of the true byte at a position
  /api/search?model&kind&start&end&threshold[&pad][&max_units][&min_fraction][&direction][&scale][&offset][&limit]
                                            hypothesis search (rnnlens.explore.search)
"""

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd

from rnnlens.explore.ablation import Ablations, loss_levels
from rnnlens.explore.search import hypothesis_search
from rnnlens.explore.store import NOT_ANALYSED, NOT_ERROR, Store, StoreError, quantity

STATIC = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".png": "image/png"}
LOSS_RANGE = 4.0  # nats: the loss-difference track saturates beyond +-4
CONTEXT_BEFORE, CONTEXT_AFTER = 18, 10  # characters shown before and after a unit page's context position


def byte_label(b):
    b = int(b)
    special = {10: "\\n", 9: "\\t", 13: "\\r", 32: "space"}
    if b in special:
        return special[b]
    return chr(b) if 33 <= b < 127 else f"0x{b:02x}"


class Explorer:
    """The stores of one corpus, opened once; every method answers one API call."""

    def __init__(self, stores, device="cpu"):
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
        self.ablations = {s.model: Ablations(s, device) for s in stores}

    def store(self, query):
        name = query.get("model", "")
        if name not in self.stores:
            raise StoreError(f"unknown model {name!r}; this explorer has {', '.join(self.stores)}")
        return self.stores[name]

    def info(self, query):
        models = []
        for s in self.stores.values():
            keep = ("model", "arch", "layers", "hidden", "kinds", "kind_labels", "ranges", "cell_state", "test_loss",
                    "ngram", "oracle_steps", "error_threshold", "total_bytes", "bytes", "build_seconds",
                    "text_features")
            entry = {k: s.meta.get(k) for k in keep}
            entry["features"] = sorted(s.scores.feature.unique().tolist()) if s.scores is not None else []
            entry["quantities"] = {k: quantity(k) for k in s.kinds}
            entry["ablation"] = self.ablations[s.model].status()
            models.append(entry)
        return {"corpus": self.corpus, "positions": int(len(self.text)), "models": models,
                "loss_range": LOSS_RANGE}

    def track(self, query):
        store = self.store(query)
        return store.track(query["kind"], int(query["layer"]), int(query["unit"])).tobytes()

    def scale(self, query):
        store = self.store(query)
        return store.display_scale(query["kind"], int(query["layer"]), int(query["unit"]), query.get("mode", "auto"))

    def feature(self, query):
        return self.store(query).feature_track(query["name"]).tobytes()

    def lossdiff(self, query):
        a, b = self.store(query), self.store({"model": query.get("other", "")})
        pa = np.clip(a.positions["p"].astype(np.float64), 1e-30, None)
        pb = np.clip(b.positions["p"].astype(np.float64), 1e-30, None)
        diff = np.log(pb) - np.log(pa)  # loss(a) - loss(b)
        levels = np.floor((np.clip(diff, -LOSS_RANGE, LOSS_RANGE) + LOSS_RANGE) * 255 / (2 * LOSS_RANGE) + 0.5)
        return levels.astype(np.uint8).tobytes()

    def units(self, query):
        """Units with their scores for one feature (by its rank), or every unit once under the feature that
        explains it best on the common scale (strength: AUC and Spearman scores differ in scale and chance level,
        so a raw score would always favour an AUC feature)."""
        store = self.store(query)
        limit = int(query.get("limit", 200))
        if store.explained is None:
            return {"kind": store.meta["cell_state"], "units": [], "note": "no cell scores in this store"}
        scores = store.scores
        feature = query.get("feature") or ""
        best = store.explained.reset_index()
        if feature:
            if feature not in set(scores.feature):
                raise StoreError(f"{store.model} has no scores for feature {feature!r}")
            ranked = scores[scores.feature == feature].sort_values(["rank", "layer", "unit"])
        else:
            ranked = scores.merge(best[["layer", "unit", "best_feature"]], left_on=["layer", "unit", "feature"],
                                  right_on=["layer", "unit", "best_feature"]).drop(columns="best_feature")
            ranked = ranked.sort_values(["strength", "layer", "unit"], ascending=[False, True, True])
        rows = ranked.head(limit).merge(best, on=["layer", "unit"], how="left", sort=False)
        return {"kind": store.meta["cell_state"], "feature": feature,
                "units": [self._score_row(r) for r in rows.itertuples()]}

    @staticmethod
    def _score_row(r):
        num = (lambda v: None if pd.isna(v) else round(float(v), 4))
        return {"layer": int(r.layer), "unit": int(r.unit), "feature": r.feature, "measure": r.kind,
                "value": num(r.value), "score": num(r.score), "strength": num(r.strength), "partial": num(r.partial),
                "sign": int(r.sign), "rank": int(r.rank), "explained_by": r.best_feature,
                "explained_strength": num(r.best_strength), "confounded": bool(r.best_feature != r.feature),
                "margin": num(r.margin)}

    def unit(self, query):
        store = self.store(query)
        kind, layer, unit = query["kind"], int(query["layer"]), int(query["unit"])
        scale = store.display_scale(kind, layer, unit, query.get("mode", "auto"))
        source = scale["source"]
        counts, (lo, hi) = store.level_counts(source, layer, unit)
        values = store.values(kind, layer, unit)
        raw = store.values("c_raw", layer, unit) if kind == "c" and "c_raw" in store.kinds else None
        extremes = {}
        for side, highest in (("highest", True), ("lowest", False)):
            picked, ties = store.contexts(kind, layer, unit, count=10, width=CONTEXT_BEFORE, highest=highest)
            extremes[side] = {"ties": ties, "contexts": [self._context(store, pos, values, raw) for pos in picked]}
        features = []
        if store.explained is not None:
            own = store.scores[(store.scores.layer == layer) & (store.scores.unit == unit)]
            own = own.sort_values("strength", ascending=False).head(6)
            expl = store.explained.reset_index()
            rows = own.merge(expl, on=["layer", "unit"], how="left", sort=False)
            features = [self._score_row(r) for r in rows.itertuples()]
        own = store.display_scale(kind, layer, unit, "own")
        return {"model": store.model, "kind": kind, "layer": layer, "unit": unit, "scale": scale,
                "own_scale": {k: own[k] for k in ("source", "lo", "hi")},
                "quantity": quantity(source), "kind_quantity": quantity(kind),
                "saturation": {k: {"left": v[0], "right": v[1]} for k, v in store.saturation(layer, unit).items()},
                "scores_of": store.meta["cell_state"], "features": features,
                "explanation": store.explanation(layer, unit),
                "histogram": {"counts": counts.tolist(), "lo": lo, "hi": hi,
                              "mean": store.mean(store.row(source, layer, unit))},
                "mean": store.mean(store.row(kind, layer, unit)), **extremes}

    def _context(self, store, pos, values, raw):
        text = store.text
        before = text[max(0, pos - CONTEXT_BEFORE):pos].tobytes().decode("latin-1")
        after = text[pos + 1:pos + 1 + CONTEXT_AFTER].tobytes().decode("latin-1")
        return {"pos": pos, "before": before, "char": byte_label(text[pos]) if text[pos] in (9, 10, 13) else
                chr(text[pos]), "after": after, "value": round(float(values[pos]), 4),
                "raw": None if raw is None else round(float(raw[pos]), 4)}

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

    def _ablated(self, query):
        store = self.store(query)
        layer, unit, mode = int(query["layer"]), int(query["unit"]), query.get("mode", "mean")
        return store, layer, unit, mode, self.ablations[store.model].get(layer, unit, mode)

    def ablation(self, query):
        store, layer, unit, mode, a = self._ablated(query)
        return {"model": store.model, "layer": layer, "unit": unit, "mode": mode,
                "kind": self.ablations[store.model].runner.cell_kind, "held": a.held, "scale": a.scale,
                "mean_dloss": float(a.dloss.mean()), "max_dloss": float(a.dloss.max()),
                "min_dloss": float(a.dloss.min()), "positions": int(len(a.p)), "seconds": round(a.seconds, 3)}

    def ablation_lossdiff(self, query):
        _, _, _, _, a = self._ablated(query)
        return loss_levels(a.dloss, a.scale).tobytes()

    def ablation_predict(self, query):
        store, layer, unit, mode, a = self._ablated(query)
        pos = int(query["pos"])
        if not 0 <= pos < store.n:
            raise StoreError(f"position {pos} is outside the test split (0..{store.n - 1})")
        target = int(store.text[pos])
        return {"model": store.model, "pos": pos, "layer": layer, "unit": unit, "mode": mode, "held": a.held,
                "target": target, "target_label": byte_label(target),
                "top": [{"byte": int(b), "label": byte_label(b), "p": float(p)}
                        for b, p in zip(a.top_byte[pos], a.top_p[pos]) if p > 0],
                "p": float(a.p[pos]), "dloss": float(a.dloss[pos])}

    def search(self, query):
        store = self.store(query)
        return hypothesis_search(store, query.get("kind") or store.meta["cell_state"], int(query["start"]),
                                 int(query["end"]), float(query["threshold"]), pad=int(query.get("pad", 3)),
                                 max_units=int(query.get("max_units", 20)),
                                 min_fraction=float(query.get("min_fraction", 1.0)),
                                 direction=query.get("direction", "rises"), scale=query.get("scale", "kind"),
                                 offset=int(query.get("offset", 0)), limit=int(query.get("limit", 100)))


JSON_ROUTES = {"/api/info": "info", "/api/units": "units", "/api/unit": "unit", "/api/predict": "predict",
               "/api/search": "search", "/api/scale": "scale", "/api/ablation": "ablation",
               "/api/ablation_predict": "ablation_predict"}
BINARY_ROUTES = {"/api/text": lambda ex, q: ex.text.tobytes(), "/api/track": Explorer.track,
                 "/api/lossdiff": Explorer.lossdiff, "/api/feature": Explorer.feature,
                 "/api/ablation_lossdiff": Explorer.ablation_lossdiff}


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


def existing_stores(results):
    """{corpus: [model, ...]} of every finished store under the results directory."""
    found = {}
    for meta in sorted(Path(results).glob("*/explore/*/store.json")):
        found.setdefault(meta.parent.parent.parent.name, []).append(meta.parent.name)
    return found


def _listing(found):
    return "; ".join(f"{corpus} ({', '.join(models)})" for corpus, models in found.items())


BUILD_HINT = ("list the models under analysis.explore.models in the config and run `snakemake --cores 2 explore` "
              "(or one: `snakemake --cores 2 {target}`)")


def find_stores(results, corpus, models):
    """The stores to serve; a missing corpus or model is named with the stores that do exist."""
    found = existing_stores(results)
    hint = BUILD_HINT.format(target=Path(results) / (corpus or "CORPUS") / "explore" / "MODEL" / "store.json")
    if not corpus:
        if found:
            raise StoreError(f"name a corpus: `rnnlens explore CORPUS [MODEL ...]` (models are optional: default "
                             f"every model with a store); stores under {results}: {_listing(found)}")
        raise StoreError(f"no explorer stores under {results}; {hint}")
    base = Path(results) / corpus / "explore"
    if corpus not in found:
        there = f"; stores exist for {_listing(found)}" if found else ""
        raise StoreError(f"no explorer stores for corpus {corpus!r} under {base}{there}; {hint}")
    missing = [m for m in models if m not in found[corpus]]
    if missing:
        hint = BUILD_HINT.format(target=base / missing[0] / "store.json")
        raise StoreError(f"no explorer store of {', '.join(missing)} for {corpus} (no {base / missing[0]}/store.json); "
                         f"stores of {corpus}: {', '.join(found[corpus])}; to add one, {hint}")
    return [Store(base / m) for m in (models or found[corpus])]


def add_explore_arguments(parser):
    parser.add_argument("corpus", nargs="?", help="corpus id, e.g. warpeace or demo (without it: lists the stores)")
    parser.add_argument("models", nargs="*", help="model ids (optional; default: every model with a store)")
    parser.add_argument("--results", default="results", help="the workflow's results directory (default: results)")
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765; 0: any free port)")
    parser.add_argument("--open", action="store_true", help="also open the page in the default web browser")
    parser.add_argument("--device", default="cpu", help="where the unit page's ablations run: cpu (default), auto (the "
                        "GPU when there is one), cuda, cuda:N")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for ablations (default 1: the fastest "
                        "for small models, whose steps are too small to share; 0: torch's default)")
    parser.add_argument("--verbose", action="store_true", help="log every request")


def run_explore(args):
    import torch

    from rnnlens.model import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    stores = find_stores(args.results, args.corpus, args.models)
    explorer = Explorer(stores, pick_device(args.device))
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
