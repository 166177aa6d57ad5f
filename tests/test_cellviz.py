"""Cell pictures read back from their pixels: a counter cell must show a gradient, not one flat colour."""
import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from rnnlens.cells import score_cells, write_excerpts
from rnnlens.cellviz import CHAR_WIDTH as CW, ROW_HEIGHT as RH, colour, colour_scale, draw_model_cells, layout
from rnnlens.features import compute_features

DPI = 110  # draw_model_cells saves at this resolution


def nested_code(repeats=12):
    block = b"f {\n  if (a) {\n    while (b) {\n      g(c);\n      {\n        x;\n      }\n    }\n  }\n}\n"
    return np.frombuffer(block * repeats, dtype=np.uint8)


def pixel_colours(png, data, width, top):
    """RGB of each character's background, sampled in the corner of its box (away from the glyph)."""
    image = imread(png)[..., :3]
    rows, cols = layout(data, width)
    x = ((0.2 + (cols + 0.12) * CW) * DPI).astype(int)
    y = ((top + (rows + 0.12) * RH) * DPI).astype(int)
    return image[y, x]


def draw_first_unit(out, data, values, features, corpus, max_chars):
    """The picture of unit L1:0 of a one-layer LSTM with these cell values, as the workflow draws it -> its PNG."""
    n, hidden = values.shape
    model = f"lstm-1x{hidden}"
    scores = score_cells(values, features, layers=1, hidden=hidden)
    scores.insert(0, "model", model)
    scores.insert(1, "corpus", corpus)
    write_excerpts(out / "excerpts.parquet", np.arange(n), data, values, [(0, n)], 1, hidden,
                   {"cell_state": "c", "corpus": corpus})
    draw_model_cells(out, scores, out / "excerpts.parquet", features, user_cells=[(1, 0)], model_id=model,
                     width=100, max_chars=max_chars)
    return out / "cells" / "user__L1_U0.png"


def test_saturated_counter_cell_is_drawn_on_its_own_scale_with_a_gradient(tmp_path):
    data = nested_code()
    features = compute_features(data, 0, len(data), style="c")
    depth = features["brace_depth"].to_numpy()
    assert depth.max() == 4
    n = len(data)
    rng = np.random.default_rng(0)
    counter = 1.35 + 1.35 * depth + rng.normal(0, 0.02, n)  # c from 1.35 to 6.8, as the Linux brace cell
    values = np.column_stack([counter, np.tanh(rng.normal(0, 1, n)), rng.normal(0, 0.5, n)]).astype(np.float32)
    # with tanh(c) the counter would be one colour: every depth lands within 0.13 of full blue
    assert np.ptp(colour(np.tanh(counter)), axis=0).max() < 0.15

    png = draw_first_unit(tmp_path, data, values, features, "code", max_chars=250)
    shown = data[:250]
    rgb = pixel_colours(png, shown, 100, top=0.95)
    by_depth = pd.DataFrame(rgb, columns=["r", "g", "b"]).groupby(depth[:250]).median()
    assert list(by_depth.index) == [0, 1, 2, 3, 4]
    # a gradient: depth 0 reddest, depth 4 bluest, blue minus red rising with every level
    blueness = (by_depth.b - by_depth.r).to_numpy()
    assert np.all(np.diff(blueness) > 0.05), blueness
    assert by_depth.r[0] > 0.75 and by_depth.b[0] < 0.4  # red
    assert by_depth.b[4] > 0.7 and by_depth.r[4] < 0.3  # blue
    html = (tmp_path / "cells.html").read_text()
    assert "own scale" in html and "Cells of lstm-1x3 on code" in html


def test_unsaturated_cells_keep_the_papers_tanh_scale():
    raw = np.linspace(-2, 2, 200)
    scale, note = colour_scale(raw, "c")
    np.testing.assert_allclose(scale(raw), np.tanh(raw))
    assert note.startswith("colour: tanh(c)")
    scale, note = colour_scale(np.linspace(1.35, 6.8, 200), "c")
    assert "own scale" in note and "c = +1.46 red (its 2nd percentile)" in note and "+6.69 blue (98th)" in note
    # the percentiles map to -1 and +1, the midpoint to 0 (white), values beyond are clipped
    assert scale(np.array([1.35, 1.46, 4.075, 6.69, 9.0])).tolist() == pytest.approx([-1, -1, 0, 1, 1], abs=0.01)


def test_every_glyph_sits_in_its_coloured_cell(tmp_path):
    # rows of 100 bars: drawn as one text per row, a glyph drifts from its cell if the font's advance is rounded
    data = np.frombuffer((b"|" * 99 + b"\n") * 3, dtype=np.uint8)
    n = len(data)
    values = np.random.default_rng(0).normal(0, 0.05, (n, 1)).astype(np.float32)  # near white: the ink stands out
    features = compute_features(data, 0, n, style="c")
    image = imread(draw_first_unit(tmp_path, data, values, features, "bars", max_chars=n))[..., :3]
    top = next(t for t in (0.6, 0.95) if image.shape[0] == round((3 * RH + t + 0.1) * DPI))
    rows = slice(int((top + 0.35 * RH) * DPI), int((top + 0.75 * RH) * DPI))  # the first row's bars
    grey = image[rows].mean(axis=(0, 2))
    centres = []
    for k in range(99):  # the ink-weighted centre of what is drawn inside character cell k
        lo, hi = int((0.2 + k * CW) * DPI), int(np.ceil((0.2 + (k + 1) * CW) * DPI))
        ink = grey[lo:hi].max() - grey[lo:hi]
        assert ink.sum() > 0.3, f"no bar in cell {k}"
        centres.append((np.arange(lo, hi) + 0.5) @ ink / ink.sum() / DPI)
    offset = (np.array(centres) - 0.2) / CW - (np.arange(99) + 0.5)  # in cells, from each cell's middle
    assert np.abs(offset).max() < 0.25, offset.round(2)
