"""What every architecture shares: the model spec, the width for a parameter budget, the models table, saving and
loading. What an architecture *is* lives in its own module, found through the registry (rnnlens.archs): the
paper's rnn, lstm and gru in rnnlens.recurrent, the transformer and the LRU beyond the paper, and your own.

Size is a parameter budget: every (arch, layers) gets the hidden size whose parameter count is closest to that of
the 1-layer LSTM with `size` cells on the same vocabulary. An architecture whose width alone cannot come within
TOLERANCE of the budget (the transformer's steps by 8) owns a second width, spec.inner, which its module chooses for
the budget (archs: inner_width). The models table refuses a built-in model outside the tolerance before training,
and warns for one of your own architectures.
"""

import logging
from dataclasses import asdict, dataclass

import torch

from rnnlens import archs
from rnnlens.errors import InputError
from rnnlens.ids import format_model_id, parse_model_id  # noqa: F401 - parse_model_id: its old home
from rnnlens.io import torch_load, torch_save

log = logging.getLogger(__name__)

# the paper's recurrent family (rnnlens.recurrent); every other name is resolved by the registry
RNN_ARCHS = ("rnn", "lstm", "gru")


@dataclass(frozen=True)
class ModelSpec:
    arch: str
    layers: int
    hidden: int
    vocab_size: int
    dropout: float = 0.0
    window: int = 0  # a windowed model's context in bytes (the transformer's); 0: none
    heads: int = 0  # the transformer's attention heads
    inner: int = 0  # the architecture's second width (the transformer's MLP width, the LRU's state size); 0: default

    def to_dict(self):
        spec = asdict(self)
        if not spec["inner"]:
            del spec["inner"]  # a model without a second width stores the spec it stored before there was one
        return spec


def model_id(arch, layers, size):
    return format_model_id(arch, layers, size)


def budget_of(size, vocab_size):
    """The parameter budget of size label `size`: the parameters of the paper's 1-layer LSTM with `size` cells
    (PyTorch's four gates with two bias vectors each, then the decoder), whatever architecture is matched to it."""
    return 4 * size * (vocab_size + size) + 8 * size + size * vocab_size + vocab_size


def count_parameters(arch, layers, hidden, vocab_size, inner=0):
    """Parameters of `arch` at that width (and second width `inner`, 0: the architecture's default): equals
    sum(p.numel()) of its model (its module's count_parameters)."""
    module = archs.load(arch)
    if inner:
        return int(module.count_parameters(arch, layers, hidden, vocab_size, inner))
    return int(module.count_parameters(arch, layers, hidden, vocab_size))


# Every model's parameter count is within this fraction of its budget, or, where one unit of its finest width moves
# the count by more than twice that (a single integer width at a small budget: the paper's recurrent models), as
# close as that width can come (README, "Size is a parameter budget").
TOLERANCE = 0.02


def match_hidden_size(arch, layers, size, vocab_size, max_hidden=8192):
    """(hidden, params, budget): the width of (arch, layers) whose count at the architecture's default shape is
    closest to the budget of `size` (ties: the smaller), and that count, the parameters of ModelSpec(arch, layers,
    hidden, vocab_size). An architecture with a second width (the transformer, the LRU) is matched to the budget only
    with the inner width of match_budget, which the model matched to the budget is built with."""
    hidden, _, _, budget = match_budget(arch, layers, size, vocab_size, max_hidden)
    return hidden, count_parameters(arch, layers, hidden, vocab_size), budget


def closest_inner(count, budget):
    """The second width n (at least 1) whose parameter count count(n) is closest to the budget; ties: the smaller.
    count(n) is linear in n (base + per-unit x n), so the closest is one of the two around the exact solution."""
    per_unit = count(2) - count(1)
    base = count(1) - per_unit
    low = max(1, (budget - base) // per_unit)
    return min((low, low + 1), key=lambda n: (abs(count(n) - budget), n))


def match_budget(arch, layers, size, vocab_size, max_hidden=8192):
    """(hidden, inner, params, budget) of (arch, layers) at budget `size`: the width whose count at the
    architecture's default shape is closest to the budget (ties: the smaller), then, for an architecture with
    a second width, the one its module chooses for the rest of the budget (inner 0 for one without)."""
    budget = budget_of(size, vocab_size)
    best = None
    step = archs.width_step(arch)  # e.g. the transformer's widths are multiples of 8 for its heads
    for hidden in range(step, max_hidden + 1, step):
        params = count_parameters(arch, layers, hidden, vocab_size)
        key = (abs(params - budget), hidden)
        if best is None or key < best[0]:
            best = (key, hidden, params)
        if params > budget and best[1] < hidden:
            break  # counts grow with hidden: nothing further can be closer
    hidden, params = best[1], best[2]
    inner = archs.inner_width(arch, layers, hidden, vocab_size, budget)
    if inner:
        params = count_parameters(arch, layers, hidden, vocab_size, inner)
    return hidden, inner, params, budget


def allowed_deviation(arch, layers, hidden, vocab_size, budget, inner=0):
    """The largest |params - budget| accepted: TOLERANCE of the budget, or half of what one unit of the finest
    width (inner where the architecture has one, else hidden) changes the count by, if that is more."""
    def count(h, i=0):
        return count_parameters(arch, layers, h, vocab_size, i)

    if inner:
        unit = count(hidden, inner + 1) - count(hidden, inner)
    else:
        unit = max(count(hidden + 1) - count(hidden), count(hidden) - count(hidden - 1) if hidden > 1 else 0)
    return max(TOLERANCE * budget, unit / 2)


def models_table(corpus, vocab_size, arch_names, layers_list, sizes):
    """One row per grid point: its widths, parameters, budget and deviation (params - budget, and in percent of
    the budget). A built-in model outside the tolerance is an InputError; one of your own architectures, a
    warning (its module may have no way to come closer; the deviation column shows it)."""
    rows = []
    for size in sizes:
        for arch in arch_names:
            for layers in layers_list:
                hidden, inner, params, budget = match_budget(arch, layers, size, vocab_size)
                deviation = params - budget
                allowed = allowed_deviation(arch, layers, hidden, vocab_size, budget, inner)
                model = model_id(arch, layers, size)
                if abs(deviation) > allowed:
                    problem = (f"{model}: {params:,} parameters, {100 * deviation / budget:+.1f}% off its budget of "
                               f"{budget:,} (tolerance {100 * allowed / budget:.1f}%) on a vocabulary of {vocab_size}")
                    if arch in archs.BUILTIN:
                        raise InputError(f"{problem}: no width of {arch} comes closer at this size; use a larger "
                                         "size or fewer layers")
                    log.warning(f"{problem}: its parameters are not matched to the others'; give its module "
                                "a finer width_step or an inner_width (README, 'Your own architecture')")
                rows.append({"corpus": corpus, "model": model, "arch": arch,
                             "layers": layers, "size": size, "hidden": hidden, "inner": inner, "params": params,
                             "budget": budget, "params_vs_budget": round(params / budget, 4),
                             "deviation": deviation, "deviation_pct": round(100 * deviation / budget, 2),
                             "tolerance_pct": round(100 * allowed / budget, 2)})
    return rows


def build_model(spec: ModelSpec):
    """The model of spec.arch, built by its architecture's module."""
    return archs.load(spec.arch).build_model(spec)


def pick_device(name):
    """'auto' (CUDA when there is one), 'cpu', 'cuda', 'cuda:1'...; a CUDA device this torch cannot see is an
    InputError rather than a failure deep inside the first tensor copy."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name}: this torch ({torch.__version__}) sees no CUDA device; use cpu or auto "
                         "(training.device in the config, --device on the command line)")
    return device


def detach_state(state):
    if state is None:  # a transformer carries nothing between batches
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def save_model(path, model, extra=None):
    torch_save({"spec": model.spec.to_dict(), "state_dict": model.state_dict(), "extra": extra or {}}, path)


def load_model(path, map_location="cpu"):
    """-> (model in eval mode, extra metadata dict)."""
    payload = torch_load(path, map_location)
    model = build_model(ModelSpec(**payload["spec"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload.get("extra", {})


def add_models_table_arguments(parser):
    parser.add_argument("--data", required=True)
    parser.add_argument("--archs", default="rnn,lstm,gru")
    parser.add_argument("--layers", default="1,2,3")
    parser.add_argument("--sizes", default="64,128,256,512")
    parser.add_argument("--out", required=True)


def run_models_table(args):
    import json
    from pathlib import Path

    import pandas as pd

    from rnnlens.io import atomic_csv

    meta = json.loads(Path(args.data).read_text())
    df = pd.DataFrame(models_table(meta["corpus"], meta["vocab_size"], args.archs.split(","),
                                   [int(x) for x in args.layers.split(",")], [int(x) for x in args.sizes.split(",")]))
    atomic_csv(df, args.out)
    log.info(f"models table for {meta['corpus']} (vocabulary {meta['vocab_size']}): {len(df)} models -> "
             f"{args.out}")
    return 0
