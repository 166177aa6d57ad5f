"""What every architecture shares: the model spec, the width for a parameter budget, the models table, saving and
loading. What an architecture *is* lives in its own module, found through the registry (rnnlens.archs): the
paper's rnn, lstm and gru in rnnlens.recurrent, the transformer and the LRU beyond the paper, and your own.

Size is a parameter budget: every (arch, layers) gets the hidden size whose parameter count is closest to that of
the 1-layer LSTM with `size` cells on the same vocabulary.
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

    def to_dict(self):
        return asdict(self)


def model_id(arch, layers, size):
    return format_model_id(arch, layers, size)


def budget_of(size, vocab_size):
    """The parameter budget of size label `size`: the parameters of the paper's 1-layer LSTM with `size` cells
    (PyTorch's four gates with two bias vectors each, then the decoder), whatever architecture is matched to it."""
    return 4 * size * (vocab_size + size) + 8 * size + size * vocab_size + vocab_size


def count_parameters(arch, layers, hidden, vocab_size):
    """Parameters of `arch` at that width: equals sum(p.numel()) of its model (its module's count_parameters)."""
    return int(archs.load(arch).count_parameters(arch, layers, hidden, vocab_size))


def match_hidden_size(arch, layers, size, vocab_size, max_hidden=8192):
    """Hidden size of (arch, layers) whose parameter count is closest to the 1-layer LSTM with
    `size` cells; ties go to the smaller network. Returns (hidden, params, budget)."""
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
    return best[1], best[2], budget


def models_table(corpus, vocab_size, arch_names, layers_list, sizes):
    rows = []
    for size in sizes:
        for arch in arch_names:
            for layers in layers_list:
                hidden, params, budget = match_hidden_size(arch, layers, size, vocab_size)
                rows.append({"corpus": corpus, "model": model_id(arch, layers, size), "arch": arch,
                             "layers": layers, "size": size, "hidden": hidden, "params": params,
                             "budget": budget, "params_vs_budget": round(params / budget, 4)})
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
