"""Character-level recurrent models as in Karpathy et al. (2015): one-hot input, a fused
nn.RNN / nn.LSTM / nn.GRU stack, dropout between layers and before the linear decoder. Beyond the paper,
`transformer` (rnnlens.transformer) and `lru` (rnnlens.lru) share the interface: forward(idx, state) ->
(logits, state), init_weights(scale), spec; `build_model(spec)` picks the class.

Size is a parameter budget: every (arch, layers) gets the hidden size whose parameter count
is closest to that of the 1-layer LSTM with `size` cells on the same vocabulary.
"""

import logging
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from rnnlens.errors import InputError
from rnnlens.io import torch_load, torch_save

log = logging.getLogger(__name__)

ARCHS = ("rnn", "lstm", "gru", "transformer", "lru")
RNN_ARCHS = ("rnn", "lstm", "gru")
DYNAMIC_SUFFIX = "+dyn"  # predictor id of a model under dynamic evaluation: lstm-2x128+dyn
GATES_PER_ARCH = {"rnn": 1, "lstm": 4, "gru": 3}
RECURRENT_MODULES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


@dataclass(frozen=True)
class ModelSpec:
    arch: str
    layers: int
    hidden: int
    vocab_size: int
    dropout: float = 0.0
    window: int = 0  # transformer: context window in bytes
    heads: int = 0  # transformer: attention heads

    def to_dict(self):
        return asdict(self)


def model_id(arch, layers, size):
    return f"{arch}-{layers}x{size}"


def parse_model_id(mid):
    """'lstm-2x128' -> ('lstm', 2, 128) (also for its dynamic-evaluation predictor 'lstm-2x128+dyn'); raises
    ValueError with the expected form otherwise."""
    mid = mid.removesuffix(DYNAMIC_SUFFIX)
    try:
        arch, rest = mid.split("-", 1)
        layers, size = rest.split("x", 1)
        layers, size = int(layers), int(size)
    except ValueError:
        raise ValueError(f"model id {mid!r} is not of the form ARCH-LAYERSxSIZE, e.g. lstm-2x128") from None
    if arch not in ARCHS:
        raise ValueError(f"model id {mid!r}: unknown architecture {arch!r}; allowed: {', '.join(ARCHS)}")
    return arch, layers, size


def count_parameters(arch, layers, hidden, vocab_size):
    """Parameters of the recurrent stack (PyTorch keeps two bias vectors per layer, as char-rnn's
    i2h and h2h linear maps do) plus the decoder; equals sum(p.numel()) of CharRNN (and of the transformer and
    the LRU for those archs)."""
    if arch == "transformer":
        from rnnlens.transformer import count_parameters as transformer_parameters

        return transformer_parameters(layers, hidden, vocab_size)
    if arch == "lru":
        from rnnlens.lru import count_parameters as lru_parameters

        return lru_parameters(layers, hidden, vocab_size)
    gates = GATES_PER_ARCH[arch]
    total = 0
    for layer in range(layers):
        inputs = vocab_size if layer == 0 else hidden
        total += gates * hidden * (inputs + hidden) + 2 * gates * hidden
    return total + hidden * vocab_size + vocab_size


def match_hidden_size(arch, layers, size, vocab_size, max_hidden=8192):
    """Hidden size of (arch, layers) whose parameter count is closest to the 1-layer LSTM with
    `size` cells; ties go to the smaller network. Returns (hidden, params, budget)."""
    budget = count_parameters("lstm", 1, size, vocab_size)
    best = None
    # transformer widths step by 8 so that the configured heads divide them into even head sizes
    step = 8 if arch == "transformer" else 1
    for hidden in range(step, max_hidden + 1, step):
        params = count_parameters(arch, layers, hidden, vocab_size)
        key = (abs(params - budget), hidden)
        if best is None or key < best[0]:
            best = (key, hidden, params)
        if params > budget and best[1] < hidden:
            break  # counts grow with hidden: nothing further can be closer
    return best[1], best[2], budget


def models_table(corpus, vocab_size, archs, layers_list, sizes):
    rows = []
    for size in sizes:
        for arch in archs:
            for layers in layers_list:
                hidden, params, budget = match_hidden_size(arch, layers, size, vocab_size)
                rows.append({"corpus": corpus, "model": model_id(arch, layers, size), "arch": arch,
                             "layers": layers, "size": size, "hidden": hidden, "params": params,
                             "budget": budget, "params_vs_budget": round(params / budget, 4)})
    return rows



class CharRNN(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        rnn_kwargs = dict(
            input_size=spec.vocab_size,
            hidden_size=spec.hidden,
            num_layers=spec.layers,
            dropout=spec.dropout if spec.layers > 1 else 0.0,
            batch_first=True,
        )
        if spec.arch == "rnn":
            rnn_kwargs["nonlinearity"] = "tanh"
        self.rnn = RECURRENT_MODULES[spec.arch](**rnn_kwargs)
        self.drop = nn.Dropout(spec.dropout)
        self.decoder = nn.Linear(spec.hidden, spec.vocab_size)

    def init_uniform(self, scale=0.08):
        # the paper's (and char-rnn's) initialisation of every weight and bias
        for p in self.parameters():
            nn.init.uniform_(p, -scale, scale)

    init_weights = init_uniform  # the interface every architecture shares (train.py calls it)

    def init_state(self, batch, device=None):
        shape = (self.spec.layers, batch, self.spec.hidden)
        h = torch.zeros(shape, device=device)
        return (h, torch.zeros(shape, device=device)) if self.spec.arch == "lstm" else h

    def forward(self, idx, state=None):
        """idx: (batch, time) int64 vocabulary indices -> logits (batch, time, vocab), new state."""
        x = F.one_hot(idx, self.spec.vocab_size).to(self.decoder.weight.dtype)
        out, state = self.rnn(x, state)
        return self.decoder(self.drop(out)), state


def build_model(spec: ModelSpec):
    """The model class of spec.arch."""
    if spec.arch == "transformer":
        from rnnlens.transformer import ByteTransformer

        return ByteTransformer(spec)
    if spec.arch == "lru":
        from rnnlens.lru import ByteLRU

        return ByteLRU(spec)
    return CharRNN(spec)


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
