"""Interventions: the model's predictions with chosen units held inside the recurrence.

The cell analyses (rnnlens.cells) find cells that correlate with a feature; an intervention asks whether the
model uses them. It holds units of one layer of the cell analyses (the runner's `cell_kind`) at every step, so that
everything after the step, later steps and higher layers, reads the held value. What a unit is, per architecture:

  rnn, gru, lstm  the cell state (GRU and RNN h, LSTM c), held inside the recurrence
  lru             the real or imaginary part of one unit of the state x_t, held inside the step loop: the layer's
                  output and every later step read it
  transformer     a unit of the residual stream after a block, or an MLP neuron; a transformer has no recurrence,
                  so a clamp holds the unit's activation at every position of each window it is evaluated in
                  (later positions read it through attention, later blocks through the residual stream)

The kinds of intervention (all apply to every built-in architecture):

  value   a constant per unit (zero: `Intervention(layer, units, "value", values=0)`)
  mean    the unit's mean over (a spread sample of) the training split: the unit says "nothing unusual"
  patch   the unit's trajectory from another run of the same model over another text of the same length (the
          text with its quotes replaced by spaces, say; a windowed model reads the other text's same window); a
          patch from the same text is the identity

`predict_with_intervention` gives the same result dict as rnnlens.evaluate.predict_test, computed by the same
batch rows and warm-up (the intervention acts during the warm-up too: it is a different model, not an edit of a
few predictions), or for a windowed model the same windows. An architecture supports interventions when its
internals runner has `supports_clamp` (the optional part of the protocol, rnnlens.archs): run(idx, state,
clamp=...) and logits(acts).

Layers count from 1 and units from 0, as in the cell tables.
"""

import logging
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from rnnlens.errors import InputError
from rnnlens.ids import INTERVENTION_PATTERN, default_intervention_name

log = logging.getLogger(__name__)

MODES = ("value", "mean", "patch")


@dataclass
class Intervention:
    layer: int  # from 1
    units: tuple  # from 0
    mode: str = "mean"
    values: object = None  # value: one number, or one per unit
    source: np.ndarray = field(default=None, repr=False)  # patch: the other text's bytes, as long as the corpus
    name: str = ""  # the predictor's suffix, {model}~{name}

    def __post_init__(self):
        self.units = tuple(int(u) for u in np.atleast_1d(self.units))
        if self.mode not in MODES:
            raise InputError(f"intervention mode {self.mode!r}: use one of {', '.join(MODES)}")
        if not self.units:
            raise InputError("an intervention names at least one unit")
        if self.mode == "value" and self.values is None:
            raise InputError("a value intervention needs values (one number, or one per unit)")
        if self.mode == "patch" and self.source is None:
            raise InputError("a patch intervention needs the source text (bytes as long as the corpus)")
        if not self.name:
            held = None if self.mode != "value" else float(np.abs(np.asarray(self.values, dtype=float)).max())
            self.name = default_intervention_name(self.mode, self.layer, self.units, held)
        if not re.fullmatch(INTERVENTION_PATTERN, self.name):
            raise InputError(f"intervention name {self.name!r}: letters, digits, '.', '_' and '-'")


def clamping_runner(model, runner=None):
    from rnnlens.internals import runner_for

    runner = runner or runner_for(model)
    if not getattr(runner, "supports_clamp", False):
        raise InputError(f"interventions are not supported for the {model.spec.arch} architecture yet (its "
                         "internals runner has no clamp; rnnlens.archs describes the optional runner.run(..., "
                         "clamp=...))")
    return runner


def check_intervention(runner, layers, intervention):
    if not 1 <= intervention.layer <= layers:
        raise InputError(f"intervention {intervention.name}: layer {intervention.layer} is outside the model's "
                         f"{layers} layer(s) (layers count from 1)")
    bad = [u for u in intervention.units if not 0 <= u < runner.units]
    if bad:
        raise InputError(f"intervention {intervention.name}: units {bad} outside 0..{runner.units - 1}")


@torch.no_grad()
def unit_means(model, corpus, runner=None, split="train", max_positions=200_000, streams=50, warmup=200,
               chunk=100):
    """Mean over the split of every unit of the runner's `cell_kind` (the units an intervention holds: the RNNs'
    cell state, the LRU's state real and imaginary parts, the transformer's residual stream and MLP neurons) ->
    (layers, runner.units) float64 array. The split's rows are streamed in parallel and stopped after about
    max_positions positions: a sample spread over the whole split."""
    from dataclasses import replace

    from rnnlens.evaluate import batch_rows
    from rnnlens.internals import stream_test_internals

    runner = runner or clamping_runner(model)
    if hasattr(runner, "stream"):
        # a windowed runner reads its rows one after the other: cut every row short, so that a sample stays
        # spread; and its windows start after the corpus's first byte (nothing comes before it), so leave that out
        pieces = [(max(a, 1), b) for a, b in corpus.pieces[split] if b > max(a, 1)]
        if max_positions:
            rows = batch_rows(pieces, streams)
            per_row = -(-max_positions // max(len(rows), 1))
            pieces = [(a, a + min(n, per_row)) for a, n in rows]
        corpus = replace(corpus, pieces={**corpus.pieces, split: pieces})
    total = np.zeros((model.spec.layers, runner.units))
    count = 0
    for part in stream_test_internals(model, corpus, streams, warmup, chunk, split=split, runner=runner):
        for k, layer in enumerate(part.acts):
            values = layer[runner.cell_kind]
            valid = torch.from_numpy(part.valid).to(values.device)
            total[k] += values[valid].double().sum(0).cpu().numpy()
        count += int(part.valid.sum())
        if max_positions and count >= max_positions:
            break
    return total / max(count, 1)


def clamp_forward(runner, corpus, interventions, means=None):
    """forward(idx, state, positions) for rnnlens.evaluate.predict_rows: the runner with the interventions'
    units clamped. A patch runs the source text alongside (its own state) and clamps to its trajectory."""
    constants, patches = {}, []
    for iv in interventions:
        units = torch.tensor(iv.units, dtype=torch.long)
        if iv.mode == "value":
            values = torch.as_tensor(np.broadcast_to(np.asarray(iv.values, dtype=np.float64), (len(iv.units),)).copy())
            constants[iv.layer - 1] = (units, values)
        elif iv.mode == "mean":
            if means is None:
                raise ValueError("mean interventions need unit_means")
            constants[iv.layer - 1] = (units, torch.as_tensor(means[iv.layer - 1][list(iv.units)]))
        else:
            source = np.asarray(iv.source, dtype=np.uint8)
            if len(source) != len(corpus.data):
                raise InputError(f"intervention {iv.name}: the patch source has {len(source)} bytes, the corpus "
                                 f"{len(corpus.data)}; patch from a text of the same length (replace, do not delete)")
            encoded = corpus.encode(source)
            if (encoded < 0).any():
                raise InputError(f"intervention {iv.name}: the patch source has bytes outside the corpus's vocabulary")
            patches.append((iv.layer - 1, units, torch.from_numpy(encoded)))
    sources, padded = {}, {}
    for layer, units, encoded in patches:  # each patch's source text runs alongside, with its own state
        sources[id(encoded)] = encoded

    def forward(idx, state, positions):
        own, others = state if state is not None else (None, {})
        clamp = dict(constants)
        new_others = {}
        if patches:
            source_acts = {}
            for key, encoded in sources.items():
                if padded.get(key) is None or len(padded[key]) <= int(positions.max()):
                    # rows run past the corpus end into padding, as predict_rows pads the text itself
                    padded[key] = torch.cat([encoded, encoded.new_zeros(int(positions.max()) + 1)])
                acts, new_others[key] = runner.run(padded[key][positions.cpu()].to(idx.device), others.get(key))
                source_acts[key] = acts
            for layer, units, encoded in patches:
                trajectory = source_acts[id(encoded)][layer][runner.cell_kind][..., units.to(idx.device)]
                clamp[layer] = (units, trajectory)
        acts, own = runner.run(idx, own, clamp=clamp)
        return runner.logits(acts), (own, new_others)

    return forward


@torch.no_grad()
def predict_with_intervention(model, corpus, interventions, streams=100, warmup=2000, chunk=2000, device="cpu",
                              split="test", means=None, runner=None, keep_probs=False):
    """The model's predictions on the split with `interventions` (one Intervention or a list, at most one per
    layer) in force -> the dict of rnnlens.evaluate.predict_test (target, p, argmax, p_argmax, layout), with
    keep_probs also `probs`, every position's full distribution (positions, vocab) float32 (the explorer's top-5)."""
    from rnnlens.evaluate import batch_rows, predict_rows

    if isinstance(interventions, Intervention):
        interventions = [interventions]
    model = model.to(device).eval()
    runner = clamping_runner(model, runner)
    for iv in interventions:
        check_intervention(runner, model.spec.layers, iv)
    layers = [iv.layer for iv in interventions]
    if len(set(layers)) != len(layers):
        raise InputError("at most one intervention per layer: put the units of one layer into one intervention")
    if means is None and any(iv.mode == "mean" for iv in interventions):
        means = unit_means(model, corpus, runner)
    rows = batch_rows(corpus.pieces[split], streams)
    encoded = torch.from_numpy(corpus.encode(corpus.data))
    result = predict_rows(model, encoded, rows, warmup=warmup, chunk=chunk, device=device, vocab=corpus.vocab,
                          keep_probs=keep_probs, forward=clamp_forward(runner, corpus, interventions, means))
    result["p"] = np.exp(result.pop("logp")).astype(np.float32)
    result["target"] = corpus.split(split)
    result["interventions"] = [iv.name for iv in interventions]
    return result


def add_intervene_arguments(parser):
    parser.add_argument("--model", required=True, help="model.pt written by training")
    parser.add_argument("--data", required=True, help="prepared corpus data.json")
    parser.add_argument("--out", required=True, help="predictions Parquet of the predictor MODEL~NAME")
    parser.add_argument("--model-id", required=True, help="the trained model's id (the predictor is ID~NAME)")
    parser.add_argument("--layer", type=int, required=True, help="layer of the held units (from 1)")
    parser.add_argument("--units", required=True, help="held units (from 0), comma-separated: 40 or 3,17")
    parser.add_argument("--mode", choices=("value", "mean"), default="mean",
                        help="hold at --value, or at each unit's mean over the training split")
    parser.add_argument("--value", type=float, default=0.0, help="the held value of mode value")
    parser.add_argument("--name", default="", help="the predictor's suffix (default: ablate-L2U40, zero-L2U40, ...)")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu, cuda, ...")
    parser.add_argument("--threads", type=int, default=0)


def run_intervene(args):
    """Test predictions of a trained model with units held inside its recurrence at every step, written as the
    predictor MODEL~NAME: Table 1, per-character gains, bracket curves and the error breakdown read it as they
    read any model's predictions."""
    from pathlib import Path

    from rnnlens.corpus import PreparedCorpus
    from rnnlens.ids import intervention_id
    from rnnlens.model import load_model, pick_device
    from rnnlens.predictions import write_predictions

    if args.threads:
        torch.set_num_threads(args.threads)
    for path in (args.model, args.data):
        if not Path(path).is_file():
            raise InputError(f"{path} does not exist; run the stage that makes it first")
    try:
        units = [int(u) for u in args.units.split(",") if u.strip()]
    except ValueError:
        raise InputError(f"--units {args.units!r}: unit numbers from 0, comma-separated, e.g. 3,17") from None
    intervention = Intervention(args.layer, units, args.mode, values=args.value if args.mode == "value" else None,
                                name=args.name)
    device = pick_device(args.device)
    model, extra = load_model(args.model, map_location=device)
    corpus = PreparedCorpus.load(args.data)
    result = predict_with_intervention(model, corpus, intervention, streams=args.streams, warmup=args.warmup,
                                       device=device)
    spec = model.spec
    predictor = intervention_id(args.model_id, intervention.name)
    meta = {"model": predictor, "base_model": args.model_id, "corpus": corpus.name, "family": spec.arch,
            "arch": spec.arch, "layers": spec.layers, "hidden": spec.hidden,
            "params": int(sum(p.numel() for p in model.parameters())), "best_val_loss": extra.get("best_val_loss"),
            "epochs_run": extra.get("epochs_run"), "dropout": (extra.get("train_config") or {}).get("dropout"),
            "converged": extra.get("converged"), "convergence": extra.get("convergence"),
            "evaluation": {**result["layout"], "streams": args.streams}, "split_layout": corpus.layout,
            "intervention": {"layer": intervention.layer, "units": list(intervention.units), "mode": intervention.mode,
                             "value": args.value if args.mode == "value" else None}}
    meta = write_predictions(Path(args.out), result["target"], result["p"], result["argmax"], result["p_argmax"], meta)
    log.info(f"{predictor} on {corpus.name}: test loss {meta['test_loss']:.4f} nats/char over "
             f"{meta['n_positions']} positions")
    return 0
