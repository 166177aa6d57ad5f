"""Gate saturation (the paper's analysis 2): per gate unit, the fraction of test steps on which the gate is
left-saturated (activation < 0.1) and right-saturated (> 0.9).

Gates are the sigmoid gates as PyTorch defines them: LSTM input i, forget f, output o; GRU reset r and update
z, where PyTorch's z weighs the *previous* state (h = (1-z)*n + z*h_prev), so a right-saturated GRU update
gate keeps its memory. The paper's z weighs the candidate: it is 1 - PyTorch's z. Tables keep PyTorch's z; the
figure plots the paper's (its left and right fractions are PyTorch's right and left), labelled so. PyTorch's
reset gate also differs from the paper's: it multiplies the recurrent matrix product, not h_prev before it.

Table (Parquet): model, layer (from 1), gate, unit (from 0), frac_left, frac_right, steps.
Figure: one scatter per gate type, x = fraction right-saturated, y = fraction left-saturated, coloured by
layer, with the diagonal x + y = 1 (gates on it are always saturated one way or the other).
"""

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from rnnlens.errors import InputError
from rnnlens.io import atomic_csv, read_parquet
from rnnlens.predictions import read_meta
from rnnlens.io import write_table as write_arrow_table
from rnnlens.plots import save_figures

LEFT, RIGHT = 0.1, 0.9
# activation key in the internals -> gate name in tables and figures
GATE_NAMES = {"lstm": {"i": "input", "f": "forget", "o": "output"}, "gru": {"r": "reset", "z": "update"}}
GATE_TITLES = {"input": "LSTM input gate", "forget": "LSTM forget gate", "output": "LSTM output gate",
               "reset": "GRU reset gate (PyTorch r, after the matrix product)",
               "update": "GRU update gate, paper's z = 1 - PyTorch z"}
GATE_ORDER = ("input", "forget", "output", "reset", "update")
SCHEMA = pa.schema([("model", pa.string()), ("layer", pa.int16()), ("gate", pa.string()), ("unit", pa.int32()),
                    ("frac_left", pa.float64()), ("frac_right", pa.float64()), ("steps", pa.int64())])
META_KEY = b"rnnlens"


def saturation_fractions(values, left=LEFT, right=RIGHT):
    """values (steps, units) of one gate -> (fraction < left, fraction > right) per unit."""
    values = np.asarray(values)
    return (values < left).mean(axis=0), (values > right).mean(axis=0)


class SaturationCounter:
    """Streaming counts of saturated steps per gate unit; feed it the internals chunk by chunk."""

    def __init__(self, arch, layers, hidden, left=LEFT, right=RIGHT):
        if arch not in GATE_NAMES:
            raise InputError(f"{arch} has no gates; saturation applies to {', '.join(GATE_NAMES)}")
        self.arch, self.layers, self.hidden, self.left, self.right = arch, layers, hidden, left, right
        self.gates = GATE_NAMES[arch]
        self.left_counts = {(k, g): torch.zeros(hidden, dtype=torch.int64) for k in range(layers) for g in self.gates}
        self.right_counts = {key: torch.zeros_like(v) for key, v in self.left_counts.items()}
        self.steps = 0

    def update(self, acts, valid=None):
        """acts: per layer {name: (batch, time, hidden)}; valid: (batch, time) bool mask of real positions."""
        for k, layer in enumerate(acts):
            for g in self.gates:
                values = layer[g]
                if valid is not None:
                    values = values[valid.to(values.device)]
                values = values.reshape(-1, self.hidden)
                self.left_counts[k, g] += (values < self.left).sum(0).cpu()
                self.right_counts[k, g] += (values > self.right).sum(0).cpu()
        n = int(valid.sum()) if valid is not None else int(np.prod(acts[0][next(iter(self.gates))].shape[:-1]))
        self.steps += n

    def table(self, model_id):
        rows = []
        steps = max(self.steps, 1)
        for (k, g), left in self.left_counts.items():
            rows.append(pd.DataFrame({
                "model": model_id, "layer": k + 1, "gate": self.gates[g], "unit": np.arange(self.hidden),
                "frac_left": left.numpy() / steps, "frac_right": self.right_counts[k, g].numpy() / steps,
                "steps": self.steps}))
        return pd.concat(rows, ignore_index=True)


def empty_table():
    return SCHEMA.empty_table().to_pandas()


def write_table(frame, path, meta=None):
    meta = {**(meta or {}), "left_threshold": LEFT, "right_threshold": RIGHT}
    return write_arrow_table(pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False), path, meta)


def read_table(path):
    return read_parquet(path).to_pandas()


def summarize(frame):
    """Per model, gate and layer: units, mean fractions, and the shares of units right/left-saturated more than
    90% of the time (forget gates right-saturated almost always are the paper's integrators) or never
    saturated either way more than 10% of the time."""
    if frame.empty:
        return pd.DataFrame(columns=["model", "gate", "layer", "units", "mean_frac_left", "mean_frac_right",
                                     "share_right_over_90", "share_left_over_90", "share_rarely_saturated"])
    grouped = frame.assign(
        right90=frame.frac_right > 0.9, left90=frame.frac_left > 0.9,
        rarely=(frame.frac_right < 0.1) & (frame.frac_left < 0.1),
    ).groupby(["model", "gate", "layer"], sort=False)
    out = grouped.agg(units=("unit", "size"), mean_frac_left=("frac_left", "mean"),
                      mean_frac_right=("frac_right", "mean"), share_right_over_90=("right90", "mean"),
                      share_left_over_90=("left90", "mean"), share_rarely_saturated=("rarely", "mean")).reset_index()
    out["gate"] = pd.Categorical(out["gate"], GATE_ORDER, ordered=True)
    return out.sort_values(["model", "gate", "layer"]).reset_index(drop=True).assign(gate=lambda d: d.gate.astype(str))


def write_summary(summary, path):
    return atomic_csv(summary, path, float_format="%.4f")


def plot_saturation(frames, out_png, title=None, corpus=None):
    """One row per model, one scatter per gate type of that model; writes out_png and the .pdf beside it.
    The default title names the corpus and the models."""
    fig = draw_saturation(frames, title, corpus)
    out_png = Path(out_png)
    save_figures(fig, [out_png, out_png.with_suffix(".pdf")])
    return out_png


def paper_convention(frame):
    """The table with the GRU update gate as the paper defines it (z' = 1 - PyTorch's z: a step left-saturated
    by one is right-saturated by the other, so the two fractions swap)."""
    frame = frame.copy()
    update = frame.gate == "update"
    frame.loc[update, ["frac_left", "frac_right"]] = frame.loc[update, ["frac_right", "frac_left"]].to_numpy()
    return frame


def draw_saturation(frames, title=None, corpus=None):
    """The saturation figure (unsaved); GRU update gates in the paper's convention (paper_convention)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.concat([f for f in frames if not f.empty], ignore_index=True) if frames else pd.DataFrame()
    if frame.empty:
        raise InputError("no gate saturation rows to plot (RNN models have no gates); give LSTM or GRU tables")
    frame = paper_convention(frame)
    models = list(dict.fromkeys(frame.model))
    gates_by_model = {m: [g for g in GATE_ORDER if g in set(frame.gate[frame.model == m])] for m in models}
    ncols = max(len(g) for g in gates_by_model.values())
    max_layer = int(frame.layer.max())
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, max(max_layer, 1)))
    fig, axes = plt.subplots(len(models), ncols, figsize=(3.3 * ncols, 3.3 * len(models)), squeeze=False)
    for row, m in enumerate(models):
        for col in range(ncols):
            ax = axes[row, col]
            if col >= len(gates_by_model[m]):
                ax.axis("off")
                continue
            gate = gates_by_model[m][col]
            sub = frame[(frame.model == m) & (frame.gate == gate)]
            ax.plot([0, 1], [1, 0], color="0.6", lw=0.8, ls="--", zorder=0)
            for layer in sorted(sub.layer.unique()):
                pts = sub[sub.layer == layer]
                ax.scatter(pts.frac_right, pts.frac_left, s=9, alpha=0.7, color=colors[layer - 1],
                           label=f"layer {layer}", edgecolors="none")
            ax.set_xlim(-0.02, 1.02)
            ax.set_ylim(-0.02, 1.02)
            ax.set_aspect("equal")
            ax.set_title(f"{m}:\n{GATE_TITLES[gate]}", fontsize=8)  # two lines: GRU titles are long
            ax.set_xlabel("fraction right-saturated (> 0.9)", fontsize=8)
            ax.set_ylabel("fraction left-saturated (< 0.1)", fontsize=8)
            ax.tick_params(labelsize=7)
            if col == 0:
                ax.legend(fontsize=7, loc="upper right", markerscale=1.5)
    if title is None and corpus:
        title = f"{corpus}: gate saturation of {', '.join(models)}"
    lines = textwrap.wrap(title, 30 * ncols) if title else []
    if lines:
        fig.suptitle("\n".join(lines), fontsize=10)
    # keep the panels below the title: tight_layout alone lets the first row's titles run into it
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.25 + 0.2 * len(lines)) / fig.get_figheight()))
    return fig


def plot_no_gates(model_id, out_png, arch="rnn"):
    """The saturation figure's stand-in for a model without gates (vanilla RNN, transformer, LRU)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 1.2))
    ax.axis("off")
    what = {"rnn": "a vanilla RNN", "transformer": "a transformer", "lru": "a linear recurrent unit"}.get(arch, arch)
    ax.text(0.5, 0.5, f"{model_id}: {what} has no gates to saturate", ha="center", va="center", fontsize=9)
    out_png = Path(out_png)
    save_figures(fig, [out_png, out_png.with_suffix(".pdf")], dpi=100)
    return out_png


def add_saturation_figure_arguments(parser):
    parser.add_argument("--inputs", nargs="+", required=True, help="saturation.parquet files written by `rnnlens internals`")
    parser.add_argument("--out", required=True, help="figure path (.png; a .pdf is written beside it)")
    parser.add_argument("--summary", default=None, help="optional CSV with the per-model, gate and layer summary")
    parser.add_argument("--title", default=None)


def run_saturation_figure(args):
    missing = [p for p in args.inputs if not Path(p).is_file()]
    if missing:
        raise InputError(f"missing saturation tables {missing}; run `rnnlens internals` for those models")
    frames = [read_table(p) for p in args.inputs]
    corpus = read_meta(args.inputs[0]).get("corpus")
    plot_saturation(frames, args.out, args.title, corpus)
    if args.summary:
        write_summary(summarize(pd.concat(frames, ignore_index=True)), args.summary)
    return 0
