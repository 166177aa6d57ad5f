"""`rnnlens curves`: the training-curves figure of a corpus's models, from their history CSVs."""

import pandas as pd

from rnnlens.plots import legend_outside, model_styles, pyplot, save_figures


def training_curves(history_paths, labels, out_path, title=None):
    """Training and validation loss per epoch of every model: a colour per model (hue: architecture, shade:
    size), a line style per depth, the legend beside the axes. Returns the figure."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=False)
    styles = model_styles(labels)
    for path, label in zip(history_paths, labels):
        hist = pd.read_csv(path)
        if hist.empty:
            continue
        style = styles[label]
        for ax, column in zip(axes, ("train_loss", "val_loss")):
            ax.plot(hist.epoch, hist[column], linestyle=style["linestyle"], color=style["color"],
                    marker=style["marker"], markersize=3, label=label)
    for ax, name in zip(axes, ("training loss", "validation loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{name} (nats/char)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    legend_outside(axes[1], ncol=1 if len(labels) <= 18 else 2)
    fig.suptitle(title or "Training curves (colour: architecture and size; line: depth)")
    fig.tight_layout()
    save_figures(fig, [out_path], dpi=130)
    return fig


def add_curves_arguments(parser):
    parser.add_argument("--histories", nargs="+", required=True)
    parser.add_argument("--labels", nargs="+", required=True)
    parser.add_argument("--title")
    parser.add_argument("--out", required=True)


def run_curves(args):
    training_curves(args.histories, args.labels, args.out, args.title)
    return 0
