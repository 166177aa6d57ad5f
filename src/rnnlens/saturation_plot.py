"""The gate saturation figure (the paper's Fig. 3), drawn from the tables `rnnlens internals` writes: one row per
model, one scatter per gate, x = fraction right-saturated, y = fraction left-saturated, coloured by layer, with the
diagonal x + y = 1 (gates on it are always saturated one way or the other). Gates the paper defines flipped
(its GRU update gate z is 1 - PyTorch's) are drawn in the paper's convention, labelled so.

Drawing lives apart from computing (rnnlens.saturation) so that a figure edit redraws and recomputes nothing.
"""

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from rnnlens import archs
from rnnlens.errors import InputError
from rnnlens.plots import save_figures
from rnnlens.predictions import read_meta
from rnnlens.saturation import GATE_ORDER, read_table, summarize, write_summary

GATE_TITLES = {"input": "LSTM input gate", "forget": "LSTM forget gate", "output": "LSTM output gate",
               "reset": "GRU reset gate (PyTorch r, after the matrix product)",
               "update": "GRU update gate, paper's z = 1 - PyTorch z"}


def plot_saturation(frames, out_png, title=None, corpus=None, flipped=("update",)):
    """One row per model, one scatter per gate type of that model; writes out_png and the .pdf beside it.
    The default title names the corpus and the models."""
    fig = draw_saturation(frames, title, corpus, flipped)
    out_png = Path(out_png)
    save_figures(fig, [out_png, out_png.with_suffix(".pdf")])
    return out_png


def paper_convention(frame, flipped=("update",)):
    """The table with the gates the paper defines flipped as it does (the GRU update gate: z' = 1 - PyTorch's z;
    a step left-saturated by one is right-saturated by the other, so the two fractions swap)."""
    frame = frame.copy()
    update = frame.gate.isin(list(flipped))
    frame.loc[update, ["frac_left", "frac_right"]] = frame.loc[update, ["frac_right", "frac_left"]].to_numpy()
    return frame


def draw_saturation(frames, title=None, corpus=None, flipped=("update",)):
    """The saturation figure (unsaved); GRU update gates in the paper's convention (paper_convention)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.concat([f for f in frames if not f.empty], ignore_index=True) if frames else pd.DataFrame()
    if frame.empty:
        raise InputError("no gate saturation rows to plot (RNN models have no gates); give LSTM or GRU tables")
    frame = paper_convention(frame, flipped)
    models = list(dict.fromkeys(frame.model))
    gates_by_model = {m: [g for g in list(GATE_ORDER) + sorted(set(frame.gate) - set(GATE_ORDER))
                          if g in set(frame.gate[frame.model == m])] for m in models}
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
            ax.set_title(f"{m}:\n{GATE_TITLES.get(gate, gate + ' gate')}", fontsize=8)  # two lines: GRU titles are long
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
    what = archs.describe(arch)
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
    meta = read_meta(args.inputs[0])
    if len(args.inputs) == 1 and frames[0].empty:  # one model without gates: its figure says so
        plot_no_gates(meta.get("model", Path(args.inputs[0]).parent.name), args.out, meta.get("arch", "rnn"))
        return 0
    if all(f.empty for f in frames):
        from rnnlens.plots import note_figure

        out = Path(args.out)
        note_figure(f"{meta.get('corpus', '')}: gate saturation", "none of these models has gates to saturate",
                    [out, out.with_suffix(".pdf")])
        return 0
    flipped = {g for p in args.inputs for g in read_meta(p).get("flipped_gates", ["update"])}
    plot_saturation(frames, args.out, args.title, meta.get("corpus"), tuple(sorted(flipped)))
    if args.summary:
        write_summary(summarize(pd.concat(frames, ignore_index=True)), args.summary)
    return 0
