"""Ablation in the explorer: the model's predictions with one unit held inside the recurrence.

The unit page's toggle holds unit U of layer L's cell state (the runner's `cell_kind`: LSTM c, GRU and RNN h;
always that kind, whichever kind the page shows: a gate or an LSTM's h is not held, its unit's cell is) at zero or
at its mean over the training split, at every step, through rnnlens.interventions.predict_with_intervention: the
same rows, warm-up and clamp as `rnnlens intervene` and `rnnlens cell-effects`, keeping the full distributions for
the top-5. The server computes it on demand over the store's whole test split, with the store's evaluation layout
(its streams and warm-up, so that every row reads the same text before it as the store's own predictions did), and
keeps the last CACHED results per (unit, mode): after the first request, moving the cursor or scrolling costs
nothing.
The loss difference is against the model's own predictions run through the same loop without a clamp (computed
once per model), so that only the ablation differs.

The weights are the store's model as the workflow lays it out: a store results/{corpus}/explore/{model}/ was
built from results/{corpus}/models/{model}/model.pt and the prepared corpus results/{corpus}/data.json (store
format 2 names its model and corpus, not their files). Where these are missing or do not fit the store, or the
architecture's runner has no clamp (runner.supports_clamp, rnnlens.archs), the toggle is disabled and says why.
"""

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnlens.errors import RnnlensError
from rnnlens.explore.store import TOP_K, StoreError

log = logging.getLogger(__name__)

MODES = {"mean": "its training mean", "zero": "zero"}
CACHED = 16  # results kept, most recent first (a 100k-position split: 3.3 MB each)
SCALE_PERCENTILE = 99.5  # the strip's scale: this percentile of |loss difference|, rounded up to 1, 2 or 5
MIN_SCALE = 0.01  # nats: a unit that changes nothing shows white, not noise stretched over the palette


@dataclass
class Ablated:
    """One unit held over the whole test split: top-5 bytes and probabilities, p of the true byte, and the loss
    difference (ablated minus own, nats) per position."""

    top_byte: np.ndarray
    top_p: np.ndarray
    p: np.ndarray
    dloss: np.ndarray
    held: float  # the value the unit is held at
    scale: float
    seconds: float


def nice_scale(dloss):
    """A symmetric scale for the strip: the SCALE_PERCENTILE of |dloss| rounded up to 1, 2 or 5 x 10^k nats."""
    q = max(float(np.percentile(np.abs(dloss), SCALE_PERCENTILE)), MIN_SCALE)
    power = 10.0 ** np.floor(np.log10(q))
    return float(next(step * power for step in (1, 2, 5, 10) if step * power >= q * (1 - 1e-9)))


def loss_levels(dloss, scale):
    """Loss differences -> uint8 levels over [-scale, scale] (127.5: no change), as the loss-difference strip."""
    clipped = np.clip(dloss, -scale, scale)
    return np.floor((clipped + scale) * 255 / (2 * scale) + 0.5).astype(np.uint8)


class Ablations:
    """Ablated predictions of one store's model, computed on demand and cached; thread-safe. One computation at
    a time (each uses every core it is given), and it may take minutes: it holds only `computing`, so that the
    status (every /api/info) and the cached results answer meanwhile."""

    def __init__(self, store, device="cpu", model_path=None, data_path=None):
        root = store.dir.parent.parent
        self.store = store
        self.device = device
        self.model_path = Path(model_path or root / "models" / store.model / "model.pt")
        self.data_path = Path(data_path or root / "data.json")
        self.loading = threading.Lock()  # the first status(): loading the model and corpus
        self.computing = threading.Lock()  # one _compute at a time, and the own predictions and means it fills
        self.cached = threading.Lock()  # the cache's dictionary, held only to look up, insert or reorder
        self.cache = OrderedDict()
        self._status = None
        self._own_p = self._means = None

    def status(self):
        """-> {available, reason (why not), kind (the held kind: the runner's cell_kind), modes}; loads the model
        on the first call. Once known it is returned without a lock: a computation in progress does not hold it up."""
        status = self._status
        if status is not None:
            return status
        with self.loading:
            if self._status is None:
                try:
                    self._load()
                    self._status = {"available": True, "reason": None, "kind": self.runner.cell_kind,
                                    "modes": MODES}
                except RnnlensError as err:
                    self._status = {"available": False, "reason": str(err), "kind": None, "modes": MODES}
                    log.info(f"{self.store.model}: no ablation ({err})")
                except Exception as err:  # a damaged weights file: the rest of the explorer still works
                    log.exception(f"{self.store.model}: loading {self.model_path} for ablation failed")
                    self._status = {"available": False, "reason": f"loading {self.model_path} failed ({err})",
                                    "kind": None, "modes": MODES}
            return self._status

    def _load(self):
        from rnnlens.corpus import PreparedCorpus
        from rnnlens.interventions import clamping_runner
        from rnnlens.model import load_model

        meta = self.store.meta
        for path, what in ((self.model_path, "model weights"), (self.data_path, "prepared corpus")):
            if not path.is_file():
                raise StoreError(f"ablation needs the {what} the store was built from, and {path} does not exist "
                                 f"(the workflow keeps them beside the store's explore/ folder)")
        model, _ = load_model(self.model_path, map_location=self.device)
        spec = model.spec
        runner = clamping_runner(model)
        if (spec.arch, spec.layers, runner.units) != (meta["arch"], meta["layers"], meta["hidden"]):
            raise StoreError(f"{self.model_path} is a {spec.layers} x {runner.units} {spec.arch}, the store's model a "
                             f"{meta['layers']} x {meta['hidden']} {meta['arch']}: rebuild the store")
        corpus = PreparedCorpus.load(self.data_path)
        if meta.get("vocab") is not None and corpus.vocab.tolist() != meta["vocab"] or \
                not np.array_equal(corpus.split("test"), self.store.text):
            raise StoreError(f"{self.data_path} is not the corpus the store was built from (another vocabulary "
                             "or test split): rebuild the store")
        self.model, self.runner, self.corpus = model, runner, corpus
        evaluation = meta.get("evaluation") or {}
        self.layout = {"streams": evaluation.get("streams", 100), "warmup": evaluation.get("warmup", 2000)}

    def get(self, layer, unit, mode):
        """-> Ablated of (layer from 1, unit from 0, mode), from the cache or computed now."""
        if mode not in MODES:
            raise StoreError(f"ablation mode {mode!r}: use {' or '.join(MODES)}")
        status = self.status()
        if not status["available"]:
            raise StoreError(f"{self.store.model} cannot be ablated here: {status['reason']}")
        key = (int(layer), int(unit), mode)
        found = self._cached(key)
        if found is not None:
            return found
        with self.computing:
            found = self._cached(key)  # computed by the request this one waited for
            if found is None:
                found = self._compute(*key)
                with self.cached:
                    self.cache[key] = found
                    while len(self.cache) > CACHED:
                        self.cache.popitem(last=False)
            return found

    def _cached(self, key):
        with self.cached:
            if key in self.cache:
                self.cache.move_to_end(key)
                return self.cache[key]
        return None

    def _compute(self, layer, unit, mode):
        import torch

        from rnnlens.interventions import Intervention, check_intervention, predict_with_intervention, unit_means

        t0 = time.perf_counter()
        intervention = Intervention(layer, [unit], "mean" if mode == "mean" else "value",
                                    values=0.0 if mode == "zero" else None)
        check_intervention(self.runner, self.model.spec.layers, intervention)
        common = dict(device=self.device, runner=self.runner, **self.layout)
        if mode == "mean" and self._means is None:
            self._means = unit_means(self.model, self.corpus, self.runner)
        if self._own_p is None:
            self._own_p = predict_with_intervention(self.model, self.corpus, [], **common)["p"]
        result = predict_with_intervention(self.model, self.corpus, intervention, means=self._means,
                                           keep_probs=True, **common)
        probs = torch.from_numpy(result.pop("probs"))
        top_p, top_i = probs.topk(min(TOP_K, probs.shape[1]), dim=1)
        del probs
        n = len(result["p"])
        top_byte = np.zeros((n, TOP_K), dtype=np.uint8)
        top_prob = np.zeros((n, TOP_K), dtype=np.float32)
        top_byte[:, :top_i.shape[1]] = self.corpus.vocab[top_i.numpy()]
        top_prob[:, :top_p.shape[1]] = top_p.numpy()
        p = result["p"]
        dloss = np.log(np.clip(self._own_p.astype(np.float64), 1e-30, None)) - \
            np.log(np.clip(p.astype(np.float64), 1e-30, None))
        held = 0.0 if mode == "zero" else float(self._means[layer - 1][unit])
        seconds = time.perf_counter() - t0
        log.info(f"{self.store.model}: L{layer}:{unit} held at {held:+.3f} over {n:,} positions in {seconds:.1f} s")
        return Ablated(top_byte, top_prob, p, dloss, held, nice_scale(dloss), seconds)
