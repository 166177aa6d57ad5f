"""Figure helpers shared by every stage: a headless pyplot, saving a figure atomically in several formats, one
style per model, legends kept off the data, y-axes fitted to the data, and a note where a plot would be empty."""

import numpy as np

from rnnlens.io import save_figures


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # jobs run without a display (cluster nodes, CI)
    import matplotlib.pyplot as plt

    return plt


# One hue per architecture (rnnlens.archs: each architecture's module names its colour family; a baseline gets a
# neutral one), a shade per model within it, a line style per depth: every model of a grid gets its own colour,
# and models of one architecture stay recognisable as a family.
BASELINE_STYLES = {"nnn": {"colormap": "Purples", "marker": "D"}, "ngram": {"colormap": "Greys", "marker": "x"}}
DEPTH_LINESTYLES = {1: "-", 2: "--", 3: ":", 4: "-."}


def family_style(family):
    """{"colormap", "marker"} of an architecture or a baseline family (ngram, nnn)."""
    if family in BASELINE_STYLES:
        return BASELINE_STYLES[family]
    from rnnlens import archs

    return archs.style(family)


def _parse(label):
    import re

    from rnnlens.ids import find_model_id

    found = find_model_id(label)
    if found and label.startswith(f"{found.arch}-"):
        return found.arch, found.layers, found.size
    for family in ("ngram", "nnn"):
        if label.startswith(family):
            return family, 1, int(re.sub(r"\D", "", label.split("-", 1)[-1]) or 0)
    return None, 1, 0


def model_styles(labels):
    """{label: {color, linestyle, marker}} for model ids (`lstm-2x128`, `ngram-20`, ...), each colour distinct."""
    import matplotlib

    parsed = {label: _parse(label) for label in labels}
    styles = {}
    others = [label for label, (family, _, _) in parsed.items() if family is None]
    for family in dict.fromkeys(f for f, _, _ in parsed.values() if f is not None):
        members = sorted((label for label, p in parsed.items() if p[0] == family),
                         key=lambda label: (parsed[label][2], parsed[label][1]))
        if family == "ngram":
            greys = [str(round(g, 2)) for g in np.linspace(0.0, 0.5, max(len(members), 1))]
            shades = greys
        else:
            cmap = matplotlib.colormaps[family_style(family)["colormap"]]
            shades = [cmap(x) for x in np.linspace(0.45, 0.95, len(members))] if len(members) > 1 else [cmap(0.75)]
        for label, shade in zip(members, shades):
            layers = parsed[label][1]
            styles[label] = {"color": shade, "linestyle": "--" if family == "ngram" else
                             DEPTH_LINESTYLES.get(layers, "-"), "marker": family_style(family)["marker"]}
    cycle = matplotlib.colormaps["tab10"]
    for i, label in enumerate(others):
        styles[label] = {"color": cycle(i % 10), "linestyle": "-", "marker": "o"}
    return styles


def legend_outside(ax, where="right", **kwargs):
    """The legend outside the axes, where it can hide no data (saved with bbox_inches='tight'): to the right, or
    below the x-axis label (for axes that have a second y-axis on the right)."""
    kwargs = {"fontsize": 8, "frameon": False, **kwargs}
    if where == "below":
        labels = len(ax.get_legend_handles_labels()[1])
        kwargs.setdefault("ncol", min(4, max(1, labels)))
        return ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), borderaxespad=0.0, **kwargs)
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kwargs)


def fit_ylim(ax, values, floor=0.0, pad=0.08):
    """y from `floor` to just above the largest of `values` (every curve stays visible, none is squashed)."""
    values = np.asarray([v for v in np.ravel(values) if np.isfinite(v)], dtype=np.float64)
    top = values.max() if len(values) else 1.0
    ax.set_ylim(floor, top + (top - floor) * pad if top > floor else floor + 1.0)


def note_figure(title, note, paths, dpi=150):
    """A figure that is only a titled note: what stands in for a plot that would have no data."""
    plt = pyplot()
    fig = plt.figure(figsize=(7, 1.4))
    fig.text(0.5, 0.72, title, ha="center", va="center", fontsize=11)
    fig.text(0.5, 0.32, note, ha="center", va="center", fontsize=9, color="0.3", wrap=True)
    save_figures(fig, paths, dpi=dpi)
    return fig
