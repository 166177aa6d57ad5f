"""Figure helpers shared by every stage: a headless pyplot, and saving a figure atomically in several formats."""

import os
from pathlib import Path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # jobs run without a display (cluster nodes, CI)
    import matplotlib.pyplot as plt

    return plt


def save_figures(fig, paths, dpi=150):
    """Save one figure under each path (format from the suffix) under a temporary name, then rename, so a killed
    job never leaves a finished-looking figure; closes the figure."""
    import matplotlib.pyplot as plt

    for path in paths:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
    plt.close(fig)
