"""`rnnlens curves`: the training-curves figure of a corpus's models, from their history CSVs.

A model trained with several seeds has several histories: files given with the same label, or one file with a
`seed` column. Its line is the mean over the seeds at each epoch and a band spans their range (lowest to highest),
drawn where at least two seeds reached that epoch. The upper row shows every epoch; the lower row the last third
(at least two epochs, from epoch 2 on), its y-axis fitted to those epochs alone: epoch 1's loss, far above the rest,
would otherwise set the scale and flatten the epochs where the question is whether the loss still falls."""

import math

import numpy as np
import pandas as pd

from rnnlens.errors import InputError
from rnnlens.plots import legend_outside, model_styles, pyplot, save_figures

COLUMNS = ("train_loss", "val_loss")


def read_histories(history_paths, labels):
    """-> {label: [one DataFrame per seed]}, labels in first-seen order. Files sharing a label are its seeds; a
    file with a `seed` column holds one seed per value."""
    if len(history_paths) != len(labels):
        raise InputError(f"{len(labels)} labels for {len(history_paths)} history files; give one label per file "
                         "(the same label for the seeds of one model)")
    runs = {}
    for path, label in zip(history_paths, labels):
        hist = pd.read_csv(path)
        missing = [c for c in ("epoch", *COLUMNS) if c not in hist]
        if missing:
            raise InputError(f"{path} has no {', '.join(missing)} column; is it a history.csv of a training?")
        parts = [part for _, part in hist.groupby("seed", sort=True)] if "seed" in hist else [hist]
        runs.setdefault(label, []).extend(part for part in parts if not part.empty)
    return runs


def seed_summary(seeds, column):
    """One model's seeds -> DataFrame per epoch: mean, lo, hi (range over the seeds) and seeds (how many)."""
    stacked = pd.concat([s[["epoch", column]] for s in seeds], ignore_index=True)
    out = stacked.groupby("epoch")[column].agg(["mean", "min", "max", "count"]).reset_index()
    return out.rename(columns={"min": "lo", "max": "hi", "count": "seeds"})


def zoom_epochs(last_epoch):
    """The epochs of the lower row: the last third, at least two epochs, from epoch 2 on; None below 3 epochs."""
    if last_epoch < 3:
        return None
    return max(2, last_epoch - max(2, math.ceil(last_epoch / 3))), last_epoch


def training_curves(history_paths, labels, out_path, title=None):
    """Training and validation loss per epoch of every model (mean and band over its seeds): a colour per model
    (hue: architecture, shade: size), a line style per depth, the legend beside the axes; below, the last epochs
    on their own scale. Returns the figure."""
    from matplotlib.ticker import MaxNLocator

    runs = read_histories(history_paths, labels)
    summaries = {label: {c: seed_summary(seeds, c) for c in COLUMNS} for label, seeds in runs.items() if seeds}
    last = max((int(s["val_loss"]["epoch"].max()) for s in summaries.values()), default=1)
    zoom = zoom_epochs(last)
    plt = pyplot()
    rows = 2 if zoom else 1
    fig, axes = plt.subplots(rows, 2, figsize=(12, 4.2 * rows), squeeze=False)
    styles = model_styles(list(runs))
    most_seeds = max((len(seeds) for seeds in runs.values()), default=1)
    for label, by_column in summaries.items():
        style = styles[label]
        n_seeds = len(runs[label])
        for row in axes:
            for ax, column in zip(row, COLUMNS):
                s = by_column[column]
                banded = s[s["seeds"] >= 2]
                if len(banded):
                    ax.fill_between(banded["epoch"], banded["lo"], banded["hi"], color=style["color"], alpha=0.2,
                                    linewidth=0, label=f"_band {label}")
                ax.plot(s["epoch"], s["mean"], linestyle=style["linestyle"], color=style["color"],
                        marker=style["marker"], markersize=3,
                        label=f"{label} ({n_seeds} seeds)" if n_seeds > 1 else label)
    for r, row in enumerate(axes):
        for ax, name in zip(row, ("training loss", "validation loss")):
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"{name} (nats/char)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            ax.grid(alpha=0.3)
            if r == 0:
                ax.set_xlim(0.5, last + 0.5)  # whole epochs on the axis, a one-epoch run included
            else:
                ax.set_title(f"{name}, epochs {zoom[0]}-{zoom[1]} on their own scale", fontsize=9)
    if zoom:
        for ax, column in zip(axes[1], COLUMNS):
            fit_to_epochs(ax, [by_column[column] for by_column in summaries.values()], zoom)
    legend_outside(axes[0][1], ncol=1 if len(runs) <= 18 else 2)
    band = ("lines: mean over seeds, bands: their range" if most_seeds > 1
            else "one seed per model: no band over seeds")
    fig.suptitle(f"{title or 'Training curves (colour: architecture and size; line: depth)'}\n({band})", fontsize=11)
    fig.tight_layout()
    save_figures(fig, [out_path], dpi=130)
    return fig


def fit_to_epochs(ax, summaries, epochs):
    """x limited to `epochs` (first, last), y to the bands and lines inside them, with a little room."""
    first, last = epochs
    ax.set_xlim(first - 0.3, last + 0.3)
    inside = [s.loc[s["epoch"].between(first, last), ["lo", "hi", "mean"]].to_numpy().ravel() for s in summaries]
    values = np.concatenate(inside) if inside else np.empty(0)
    values = values[np.isfinite(values)]
    if len(values):
        low, high = values.min(), values.max()
        pad = max(high - low, 1e-3) * 0.08
        ax.set_ylim(low - pad, high + pad)


def add_curves_arguments(parser):
    parser.add_argument("--histories", nargs="+", required=True)
    parser.add_argument("--labels", nargs="+", required=True, help="one per history file; the seeds of one model share "
                        "its label")
    parser.add_argument("--title")
    parser.add_argument("--out", required=True)


def run_curves(args):
    training_curves(args.histories, args.labels, args.out, args.title)
    return 0
