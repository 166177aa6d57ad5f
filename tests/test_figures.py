"""Every figure read back for what a reader sees: legends clear of the data, y-axes fitted to it, titles that
name the corpus and the models, one colour per model, and a note (not an empty plot) where there is no data."""
import json

import matplotlib
import numpy as np
import pandas as pd
import pytest

from rnnlens.cli import main
from rnnlens.agreement import plot_embedding
from rnnlens.brackets import bin_curves, guaranteed_context, plot_curves
from rnnlens.dynamics import plot_dynamics
from rnnlens.perchar import per_character, plot_per_character, with_intervals
from rnnlens.predictions import write_predictions
from rnnlens.saturation_plot import draw_saturation
from rnnlens.curves import training_curves


def boxes(fig):
    """(axes, legend extent, axes extent) in pixels for every axes with a legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # a saved figure is closed (its canvas detached): draw it again as it was saved
    canvas.draw()
    renderer = canvas.get_renderer()
    return [(ax, ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer))
            for ax in fig.axes if ax.get_legend() is not None]


def assert_legends_outside_axes(fig):
    found = boxes(fig)
    assert found, "the figure has no legend"
    for ax, legend, frame in found:
        assert not legend.overlaps(frame), f"legend {legend} overlaps the axes {frame} ({ax.get_title()!r})"


def line_colours(ax):
    return [matplotlib.colors.to_hex(line.get_color()) for line in ax.get_lines() if not line.get_label().startswith("_")]


def texts(fig):
    found = [t.get_text() for t in fig.texts] + ([fig._suptitle.get_text()] if fig._suptitle else [])
    for ax in fig.axes:
        found += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()] + [t.get_text() for t in ax.texts]
    return " ".join(found)


def test_bracket_curve_legend_below_axes_fitted_y_and_ngram_visible(tmp_path):
    rng = np.random.default_rng(0)
    distances = rng.integers(1, 200, 3000)
    probs = {"lstm-2x32": 0.02 + 0.1 * rng.random(3000), "gru-1x32": 0.05 * rng.random(3000),
             "rnn-1x32": 0.04 + 0.02 * rng.random(3000), "ngram-20": 0.15 + 0.02 * rng.random(3000)}
    df = bin_curves(distances, probs, 20)
    fig = plot_curves(df, "demo", "paren", {}, tmp_path / "brackets-demo-paren", 20, min_count=10, max_distance=400)
    assert (tmp_path / "brackets-demo-paren.png").exists()
    ax = next(a for a in fig.axes if a.get_legend() is not None)
    assert_legends_outside_axes(fig)
    top = ax.get_ylim()[1]
    highest = df["mean_p"].max()
    assert highest < top < 0.3  # fitted to the curves (all below 0.2), not 0..1
    ngram = next(line for line in ax.get_lines() if line.get_label() == "ngram-20")
    assert np.nanmax(ngram.get_ydata()) <= top and ngram.get_linestyle() == "--"
    colours = line_colours(ax)
    assert len(colours) == 4 and len(set(colours)) == 4
    title = ax.get_title()
    assert title.startswith("demo: closing )") and all(m in title for m in probs)
    assert "bins with >= 10" in ax.get_xlabel()


def band_limits(collection, x):
    """(lowest, highest) y of a fill_between band at x."""
    vertices = np.concatenate([path.vertices for path in collection.get_paths()])
    at = vertices[np.isclose(vertices[:, 0], x)][:, 1]
    return at.min(), at.max()


def test_bracket_curves_carry_standard_error_bands_counts_and_one_line_per_guaranteed_context(tmp_path):
    rng = np.random.default_rng(4)
    distances = rng.integers(1, 160, 1500)
    probs = {label: rng.random(1500) for label in ("lstm-1x64", "transformer-1x64", "transformer-1x64+dyn",
                                                   "transformer-2x64")}
    df = bin_curves(distances, probs, 20)
    contexts = {"transformer-1x64": guaranteed_context({"window": 128, "evaluation": {"stride": 64}}),
                "transformer-2x64": guaranteed_context({"window": 128, "evaluation": {"stride": 64}}),
                "transformer-1x64+dyn": guaranteed_context({"window": 128, "dynamic": {"segment": 100}})}
    assert contexts["transformer-1x64"]["guaranteed"] == 65 and contexts["transformer-1x64+dyn"]["guaranteed"] == 29
    assert guaranteed_context({"window": 128})["guaranteed"] == 65 and guaranteed_context({"window": None}) is None
    fig = plot_curves(df, "demo", "quote", {}, tmp_path / "b", 20, min_count=10, contexts=contexts)
    ax = next(a for a in fig.axes if a.get_legend() is not None)
    bands = {c.get_label().removeprefix("_band "): c for c in ax.collections if c.get_label().startswith("_band ")}
    assert set(bands) == set(probs)
    for label in probs:  # every bin's band spans mean +- standard error, read off the drawn polygon
        for row in df[df["model"] == label].itertuples():
            lo, hi = band_limits(bands[label], row.bin_start + 10)
            assert lo == pytest.approx(row.mean_p - row.sem_p) and hi == pytest.approx(row.mean_p + row.sem_p)
    assert ax.get_ylim()[1] >= (df["mean_p"] + df["sem_p"]).max()  # no band cut off at the top
    counts = df.drop_duplicates("bin_start")["count"].astype(str).tolist()
    assert [t.get_text() for t in ax.texts] == counts  # the number of closers over every bin
    lines = {line.get_label(): line.get_xdata()[0] for line in ax.get_lines() if "opener surely read" in line.get_label()}
    # the two stride-64 transformers share one line at 65, the segment-100 predictor has its own at 29
    assert sorted(lines.values()) == [29, 65] and len(lines) == 2
    assert any(label.startswith("transformer-1x64, transformer-2x64:") and "window 128, stride 64" in label
               for label in lines)
    assert "bands: +-1 standard error" in ax.get_xlabel()


def test_per_character_points_and_differences_carry_their_intervals(tmp_path):
    rng = np.random.default_rng(5)
    target = rng.integers(97, 101, 4000)
    p_a, p_b = rng.random(4000), rng.random(4000)
    df = with_intervals(per_character(target, p_a, p_b), target, p_a, p_b, resamples=300)
    assert (df["diff_ci_lo"] < df["diff"]).all() and (df["diff"] < df["diff_ci_hi"]).all()
    fig = plot_per_character(df, "lstm-1x8", "ngram-3", "demo", tmp_path / "pc.png", 10, "95% bootstrap intervals")
    ax_p, ax_d = fig.axes
    assert "95% bootstrap intervals" in ax_p.get_title()
    bars = [c for c in ax_p.containers if isinstance(c, matplotlib.container.ErrorbarContainer)]
    assert [c.get_label() for c in bars] == ["lstm-1x8", "ngram-3"]
    for container, column in zip(bars, ("mean_p_a", "mean_p_b")):
        segments = container.lines[2][0].get_segments()  # one vertical segment per character, lo to hi
        np.testing.assert_allclose([s[:, 1].min() for s in segments], df[f"{column}_ci_lo"])
        np.testing.assert_allclose([s[:, 1].max() for s in segments], df[f"{column}_ci_hi"])
    diff_bars = next(c for c in ax_d.containers if isinstance(c, matplotlib.container.BarContainer))
    segments = diff_bars.errorbar.lines[2][0].get_segments()
    np.testing.assert_allclose([s[:, 1].min() for s in segments], df["diff_ci_lo"])


def test_bracket_figure_without_data_is_a_note(tmp_path):
    df = bin_curves(np.array([5, 7, 300]), {"lstm-1x8": np.array([0.1, 0.2, 0.3])}, 20)
    fig = plot_curves(df, "demo", "brace", {}, tmp_path / "brackets-demo-brace", 20, min_count=10)
    assert fig.axes == []  # no empty axes in the report
    text = texts(fig)
    assert "demo: closing }" in text and "Nothing to plot" in text and "analysis.bracket_min_count" in text
    assert (tmp_path / "brackets-demo-brace.png").stat().st_size > 1000


def test_per_character_legend_beside_the_axes_and_title_names_corpus_and_models(tmp_path):
    rng = np.random.default_rng(1)
    target = rng.integers(97, 107, 5000)
    df = per_character(target, rng.random(5000), rng.random(5000))
    fig = plot_per_character(df, "lstm-2x32 (unconverged)", "ngram-20", "demo", tmp_path / "perchar.png", 50)
    assert_legends_outside_axes(fig)
    title = fig.axes[0].get_title()
    assert "demo" in title and "lstm-2x32 (unconverged)" in title and "ngram-20" in title
    assert fig.axes[0].get_ylabel() == "mean p(correct char)" and fig.axes[1].get_ylabel() == "lstm-2x32 (unconverged) - ngram-20"


def test_training_curves_one_colour_per_model_legend_outside(tmp_path):
    labels = [f"{a}-{l}x{s}" for a in ("rnn", "lstm", "gru") for l in (1, 2) for s in (16, 32)]
    paths = []
    for i, label in enumerate(labels):
        path = tmp_path / f"{label}.csv"
        pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [3 - 0.1 * i, 2.8 - 0.1 * i, 2.6 - 0.1 * i],
                      "val_loss": [3.1, 2.9 - 0.01 * i, 2.7 - 0.02 * i]}).to_csv(path, index=False)
        paths.append(path)
    fig = training_curves(paths, labels, tmp_path / "curves.png", title="Training curves on demo: 12 models")
    assert_legends_outside_axes(fig)
    for ax in fig.axes:
        assert len(set(line_colours(ax))) == 12  # the issue: two RNNs shared one colour
        styles = {(line.get_label(), line.get_linestyle()) for line in ax.get_lines()}
        assert {s for label, s in styles if "-1x" in label} == {"-"} and {s for label, s in styles if "-2x" in label} == {"--"}
        assert all(float(t).is_integer() for t in ax.get_xticks())  # epochs are whole numbers
    assert "demo" in fig._suptitle.get_text()


def test_training_curves_band_over_seeds_and_last_epochs_on_their_own_scale(tmp_path):
    epochs = np.arange(1, 10)
    loss = lambda floor, shift: floor + 2.0 * np.exp(-epochs) + 0.02 * np.sin(epochs) + shift  # noqa: E731
    paths, labels = [], []
    for seed, shift in ((1, 0.0), (2, 0.05)):  # two training seeds of lstm-1x8, one history file each
        path = tmp_path / f"lstm-seed{seed}.csv"
        pd.DataFrame({"epoch": epochs, "train_loss": loss(1.2, shift), "val_loss": loss(1.3, shift)}).to_csv(path, index=False)
        paths.append(path)
        labels.append("lstm-1x8")
    # gru-1x8's two seeds in one file with a seed column; rnn-1x8 has one seed
    both = pd.concat([pd.DataFrame({"seed": s, "epoch": epochs, "train_loss": loss(1.5, d), "val_loss": loss(1.6, d)})
                      for s, d in ((1, 0.0), (2, -0.03))])
    both.to_csv(tmp_path / "gru.csv", index=False)
    pd.DataFrame({"epoch": epochs, "train_loss": loss(1.8, 0), "val_loss": loss(1.9, 0)}).to_csv(tmp_path / "rnn.csv", index=False)
    fig = training_curves([*paths, tmp_path / "gru.csv", tmp_path / "rnn.csv"], labels + ["gru-1x8", "rnn-1x8"],
                          tmp_path / "curves.png", title="demo")
    assert len(fig.axes) == 4 and "mean over seeds, bands: their range" in fig._suptitle.get_text()
    top_val, zoom_val = fig.axes[1], fig.axes[3]
    bands = {c.get_label(): c for c in top_val.collections}
    assert set(bands) == {"_band lstm-1x8", "_band gru-1x8"}  # one seed: no band
    for label, (lo, hi) in (("lstm-1x8", (loss(1.3, 0.0), loss(1.3, 0.05))), ("gru-1x8", (loss(1.6, -0.03), loss(1.6, 0)))):
        for epoch in (1, 5, 9):
            assert band_limits(bands[f"_band {label}"], epoch) == pytest.approx((lo[epoch - 1], hi[epoch - 1]))
        line = next(line for line in top_val.get_lines() if line.get_label() == f"{label} (2 seeds)")
        np.testing.assert_allclose(line.get_ydata(), (lo + hi) / 2)
    # the lower row: epochs 6-9 (the last third, at least two), y fitted to them, not to epoch 1's loss
    assert zoom_val.get_xlim() == pytest.approx((5.7, 9.3))
    low, high = zoom_val.get_ylim()
    shown = np.concatenate([loss(f, d)[5:] for f, d in ((1.3, 0), (1.3, 0.05), (1.6, 0), (1.6, -0.03), (1.9, 0))])
    assert low <= shown.min() and high >= shown.max() and high - low < 1.2 * np.ptp(shown)
    assert high < loss(1.9, 0)[0]  # epoch 1 is off this scale
    one = training_curves([tmp_path / "rnn.csv"], ["rnn-1x8"], tmp_path / "one.png", title="demo")
    assert "one seed per model: no band" in one._suptitle.get_text() and not one.axes[0].collections


def test_saturation_title_names_corpus_and_models():
    rows = [{"model": m, "gate": g, "layer": 1, "unit": u, "frac_left": 0.1, "frac_right": 0.5}
            for m in ("lstm-1x8", "gru-1x8")
            for g in (("input", "forget", "output") if m.startswith("lstm") else ("reset", "update"))
            for u in range(3)]
    fig = draw_saturation([pd.DataFrame(rows)], corpus="demo")
    title = fig._suptitle.get_text()
    assert title.startswith("demo: gate saturation of") and "lstm-1x8" in title and "gru-1x8" in title
    # the legend sits in the upper right, where no point can be: a unit's two fractions sum to at most 1
    for ax, legend, frame in boxes(fig):
        corner = ax.transData.inverted().transform([[legend.x0, legend.y0]])[0]
        assert corner.sum() > 1.0


def _svg_text(path):
    return path.read_text()


@pytest.fixture
def svg_text():
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text in the SVG, to be read back
        yield _svg_text


def test_tsne_legend_beside_the_map_and_title_names_the_corpus(tmp_path, svg_text):
    rng = np.random.default_rng(2)
    target = rng.integers(0, 20, 400).astype(np.uint8)
    paths = []
    for mid in ("lstm-1x8", "lstm-2x8", "gru-1x8", "rnn-1x8"):
        write_predictions(tmp_path / f"{mid}.parquet", target, np.full(400, 0.3),
                          argmax=rng.integers(0, 20, 400).astype(np.uint8), p_argmax=np.full(400, 0.4),
                          meta={"model": mid, "corpus": "demo"})
        paths.append(str(tmp_path / f"{mid}.parquet"))
    assert main(["agreement", "--predictions", *paths, "--csv-out", str(tmp_path / "a.csv"), "--embedding-out",
                          str(tmp_path / "e.csv"), "--fig-out", str(tmp_path / "tsne.svg")]) == 0
    assert "demo: t-SNE of 4 models" in svg_text(tmp_path / "tsne.svg")
    embedding = pd.read_csv(tmp_path / "e.csv")
    assert_legends_outside_axes(plot_embedding(embedding, [tmp_path / "again.png"], title="demo"))


def test_dynamics_legend_outside():
    table = pd.DataFrame([{"n": n, "progress": t, "sym_kl": 1.0 / (n + t), "loss_diff": 0.5 / (n + t)}
                          for n in (1, 2, 3) for t in (0.1, 0.5, 1.0)])
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        fig = plot_dynamics(table, [Path(d) / "dyn.png"], title="demo: snapshots of lstm-1x32 vs 1-NN, 2-NN, 3-NN")
    assert_legends_outside_axes(fig)
    assert len(set(line_colours(fig.axes[1]))) == 3


def test_error_breakdown_titles_name_corpus_and_mark_an_unconverged_pick(tmp_path, svg_text):
    data = (b"the cat sat on the mat. " * 40)
    (tmp_path / "corpus.bin").write_bytes(data)
    n = len(data)
    meta = {"corpus": "demo", "size": n, "vocab": sorted(set(data)),
            "pieces": {"train": [[0, n // 2]], "val": [[n // 2, 3 * n // 4]], "test": [[3 * n // 4, n]]}}
    (tmp_path / "data.json").write_text(json.dumps(meta))
    target = np.frombuffer(data[3 * n // 4:], np.uint8)
    rng = np.random.default_rng(3)
    write_predictions(tmp_path / "small.parquet", target, rng.random(len(target)),
                      meta={"model": "lstm-1x8", "corpus": "demo", "converged": False,
                            "convergence": {"improvement_per_epoch": 0.05}})
    write_predictions(tmp_path / "large.parquet", target, rng.random(len(target)),
                      meta={"model": "lstm-1x64", "corpus": "demo", "converged": True})
    write_predictions(tmp_path / "ngram-2.parquet", target, rng.random(len(target)), meta={"model": "ngram-2", "n": 2})
    common = ["--data", str(tmp_path / "data.json"), "--ngram", str(tmp_path / "ngram-2.parquet")]
    assert main(["oracles", *common, "--predictions", str(tmp_path / "small.parquet"), "--csv-out",
                        str(tmp_path / "o.csv"), "--fig-out", str(tmp_path / "o.svg")]) == 0
    assert "demo: lstm-1x8 (unconverged):" in svg_text(tmp_path / "o.svg")
    assert main(["small-vs-large", *common, "--small", str(tmp_path / "small.parquet"), "--large",
                               str(tmp_path / "large.parquet"), "--csv-out", str(tmp_path / "s.csv"),
                               "--fig-out", str(tmp_path / "s.svg")]) == 0
    assert "demo: small lstm-1x8 (unconverged) vs large lstm-1x64" in svg_text(tmp_path / "s.svg")
