"""Pictures of single cells as in the paper's Fig. 2: a text excerpt with every character's background coloured
by the cell's value after reading it, tanh(c) for an LSTM cell (h itself for GRU/RNN, already in -1..1), from
-1 red through 0 white to +1 blue.

Where that scale is saturated (a counter cell whose c runs from 1.4 to 6.8 has tanh(c) between 0.88 and 1.00,
one flat blue), the picture colours the cell on its own scale instead: its 2nd..98th percentiles over the
excerpts map to red..blue (see `colour_scale`), and the figure states which scale it uses.

Newlines end a row and are drawn as a coloured `↵`; tabs as `→`; other control and non-ASCII bytes as `·`.
Outputs per model: cells/<feature>__L<layer>_U<unit>.png for each picture, cells.pdf (one page per picture),
cells.html (self-contained: inline CSS, a section per cell with its caption, the value on hover).
"""

import html
from pathlib import Path

import numpy as np
import pandas as pd

from rnnlens.errors import InputError
from rnnlens.io import atomic_dir, atomic_path, atomic_write_text
from rnnlens.cells import parse_cells

RED = np.array([0.84, 0.19, 0.15])
BLUE = np.array([0.13, 0.40, 0.76])
WHITE = np.ones(3)
GLYPHS = {10: "\u21b5", 9: "\u2192", 32: " "}


def glyph(byte):
    byte = int(byte)
    if byte in GLYPHS:
        return GLYPHS[byte]
    return chr(byte) if 33 <= byte < 127 else "\u00b7"


def colour(values):
    """values in [-1, 1] -> RGB rows: -1 red, 0 white, +1 blue (linear in between)."""
    v = np.clip(np.asarray(values, dtype=np.float64), -1, 1)[..., None]
    return np.where(v < 0, WHITE + (RED - WHITE) * (-v), WHITE + (BLUE - WHITE) * v)


def hex_colour(rgb):
    return "#" + "".join(f"{int(round(c * 255)):02x}" for c in rgb)


def layout(data, width=100):
    """Grid positions (row, col) of each byte: newlines end a row after their own glyph, long rows wrap."""
    rows, cols = np.empty(len(data), dtype=np.int64), np.empty(len(data), dtype=np.int64)
    row = col = 0
    for t, byte in enumerate(data):
        if col >= width:
            row, col = row + 1, 0
        rows[t], cols[t] = row, col
        col += 1
        if byte == 10:
            row, col = row + 1, 0
    return rows, cols


def display_values(raw, cell_state):
    """What the picture shows: tanh of an LSTM cell c; h (already squashed) for GRU/RNN."""
    return np.tanh(raw) if cell_state == "c" else np.asarray(raw)


# tanh(c) is the paper's scale; below this spread (5th to 95th percentile, of the -1..1 range's 2) it is too flat
# to read and the cell gets its own scale
MIN_SPREAD = 0.5
OWN_QUANTILES = (2, 98)


def _ordinal(n):
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def colour_scale(raw, cell_state):
    """-> (function raw values -> display values in [-1, 1], sentence naming the scale for the figure).

    The paper's scale (tanh(c), or h) unless it is saturated on this cell's values (spread < MIN_SPREAD); then
    the cell's own percentiles OWN_QUANTILES map linearly to -1 and +1, and values beyond them are clipped."""
    raw = np.asarray(raw, dtype=np.float64)
    name = "tanh(c)" if cell_state == "c" else "h"
    base = display_values(raw, cell_state)
    spread = float(np.subtract(*np.percentile(base, [95, 5]))) if len(base) else 2.0
    lo, hi = np.percentile(raw, OWN_QUANTILES) if len(raw) else (0.0, 0.0)
    if spread >= MIN_SPREAD or hi - lo < 1e-6:
        return (lambda r: display_values(r, cell_state)), f"colour: {name}, -1 red, 0 white, +1 blue"
    state = "c" if cell_state == "c" else "h"
    flat = "saturates" if cell_state == "c" else "spans only"  # h of a GRU/RNN cannot saturate past tanh's
    sentence = (f"colour: this cell's own scale ({name} {flat}: {display_values(lo, cell_state):+.2f} to "
                f"{display_values(hi, cell_state):+.2f}): {state} = {lo:+.2f} red (its {_ordinal(OWN_QUANTILES[0])} "
                f"percentile), {(lo + hi) / 2:+.2f} white, {hi:+.2f} blue ({_ordinal(OWN_QUANTILES[1])})")
    return (lambda r: np.clip(2 * (np.asarray(r, dtype=np.float64) - lo) / (hi - lo) - 1, -1, 1)), sentence


FONT_SIZE = 10
# DejaVu Sans Mono advances every glyph by 1233/2048 em, so one character cell that wide lets each row be drawn as
# one text (a few dozen artists per picture instead of one per character, which made drawing the slowest step)
CHAR_WIDTH = FONT_SIZE * 1233 / 2048 / 72  # inches
ROW_HEIGHT = 0.19  # inches


def row_strings(data, rows, cols, n_rows, width, grey):
    """Per row, the row's glyphs at their columns (spaces elsewhere): grey=False the printable ASCII, grey=True
    the drawn glyphs of newlines, tabs and other bytes."""
    lines = [[" "] * width for _ in range(n_rows)]
    for r, c, byte in zip(rows, cols, data):
        if (int(byte) in GLYPHS or not 33 <= byte < 127) == grey:
            lines[r][c] = glyph(byte)
    return ["".join(line).rstrip() for line in lines]


def draw_cell_figure(data, values, caption, width=100, scale_note=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    rows, cols = layout(data, width)
    n_rows = int(rows.max()) + 1 if len(rows) else 1
    cw, rh = CHAR_WIDTH, ROW_HEIGHT
    top = 0.95 if scale_note else 0.6  # inches above the text for the caption (and the scale)
    height = n_rows * rh + top + 0.1
    fig = plt.figure(figsize=(width * cw + 0.4, height))
    ax = fig.add_axes([0.2 / (width * cw + 0.4), 0.1 / height, width * cw / (width * cw + 0.4), n_rows * rh / height])
    ax.set_xlim(0, width)
    ax.set_ylim(n_rows, 0)
    ax.axis("off")
    rects = [Rectangle((c, r), 1, 1) for r, c in zip(rows, cols)]
    ax.add_collection(PatchCollection(rects, facecolors=colour(values), edgecolors="none"))
    for grey in (False, True):
        for r, line in enumerate(row_strings(data, rows, cols, n_rows, width, grey)):
            if line.strip():
                ax.text(0, r + 0.55, line, ha="left", va="center", family="DejaVu Sans Mono", fontsize=FONT_SIZE,
                        color="0.35" if grey else "black")
    fig.text(0.5, 1 - 0.25 / height, caption, ha="center", va="center", fontsize=9)
    if scale_note:
        fig.text(0.5, 1 - 0.6 / height, scale_note, ha="center", va="center", fontsize=8, color="0.25")
    return fig


def save_cell_figure(fig, path, dpi=110):
    """PNG of a cell figure with its glyphs where their cells are: Agg's default hinting rounds each glyph's
    advance to whole pixels (9 px instead of 9.2 at this dpi), which puts column 100's character two cells left of
    its colour."""
    import matplotlib

    with matplotlib.rc_context({"text.hinting": "no_hinting"}):
        fig.savefig(path, dpi=dpi)


def pick_window(frame, values_by_window, feature_values=None, kind=None):
    """The excerpt window that shows the most: where the feature varies most (binary: closest to half on), else
    where the cell itself varies most."""
    best, best_key = None, None
    for w in sorted(frame.window.unique()):
        if w < 0:
            continue
        mask = (frame.window == w).to_numpy()
        if feature_values is not None:
            fv = feature_values[mask]
            key = min(fv.mean(), 1 - fv.mean()) if kind == "binary" else fv.std()
        else:
            key = np.std(values_by_window[mask])
        if best_key is None or key > best_key:
            best, best_key = w, key
    return best


def select_cells(scores, user_cells=(), features=None):
    """Pictures to draw: the top cell of each feature (in table order) with what explains it best, and, where
    another feature explains that cell better, also the best cell whose own best explanation is the feature;
    then the user's (layer, unit) cells. -> list of dicts with feature, kind, score, sign, layer, unit (and
    explained_by, explained_strength, own)."""
    from rnnlens.cells import explain_cells, strength_of

    picks = []
    explained = explain_cells(scores).set_index(["layer", "unit"]) if len(scores) else None
    top = scores[scores["rank"] == 1]
    if features:
        top = top[top.feature.isin(features)]
    for row in top.itertuples():
        entry = {"feature": row.feature, "kind": row.kind, "score": float(row.score), "sign": int(row.sign),
                 "layer": int(row.layer), "unit": int(row.unit), "own": False}
        why = explained.loc[(row.layer, row.unit)]
        if why.best_feature != row.feature:
            entry.update(explained_by=why.best_feature, explained_strength=float(why.best_strength),
                         strength=float(strength_of(row.kind, row.value)))
            picks.append(entry)
            owners = explained[explained.best_feature == row.feature].index
            own = scores[(scores.feature == row.feature)
                         & pd.MultiIndex.from_frame(scores[["layer", "unit"]]).isin(owners)].head(1)
            if len(own):
                o = own.iloc[0]
                picks.append({"feature": row.feature, "kind": o.kind, "score": float(o.score), "sign": int(o.sign),
                              "layer": int(o.layer), "unit": int(o.unit), "own": True})
        else:
            picks.append(entry)
    for layer, unit in user_cells:
        best = scores[(scores.layer == layer) & (scores.unit == unit)].sort_values("score", ascending=False).head(1)
        entry = {"feature": None, "kind": None, "score": np.nan, "sign": 0, "layer": layer, "unit": unit}
        if len(best):
            b = best.iloc[0]
            entry.update(best_feature=b.feature, best_kind=b.kind, best_score=float(b.score), best_sign=int(b.sign))
        picks.append(entry)
    return picks


def caption_of(pick, model_id):
    where = f"layer {pick['layer']}, unit {pick['unit']}"
    if pick["feature"]:
        if pick["kind"] == "auc":
            how = f"AUC {pick['score']:.3f}, {'higher' if pick['sign'] > 0 else 'lower'} where it holds"
        else:
            how = f"Spearman |rho| {pick['score']:.3f}, {'rises' if pick['sign'] > 0 else 'falls'} with it"
        if pick.get("own"):
            return f"{model_id} {where}: best cell whose own best explanation is {pick['feature']} ({how})"
        text = f"{model_id} {where}: best cell for {pick['feature']} ({how})"
        if pick.get("explained_by"):
            text += (f"; better explained by {pick['explained_by']} (strength {pick['explained_strength']:.3f} vs "
                     f"{pick['strength']:.3f})")
        return text
    if "best_feature" in pick:
        return f"{model_id} {where} (user's cell; best feature {pick['best_feature']}, score {pick['best_score']:.3f})"
    return f"{model_id} {where} (user's cell)"


def html_section(data, values, raw, caption, cell_state, layer, unit, scale_note=""):
    spans = []
    for byte, v, r in zip(data, values, raw):
        g = html.escape(glyph(byte))
        title = f"L{layer} U{unit} byte 0x{int(byte):02x}: {'c' if cell_state == 'c' else 'h'}={r:+.3f}"
        if cell_state == "c":
            title += f" (tanh(c)={np.tanh(r):+.3f})"
        cls = ' class="ctl"' if byte in (9, 10) or not 32 <= byte < 127 else ""
        spans.append(f'<span{cls} style="background:{hex_colour(colour(v))}" title="{title}">{g}</span>')
        if byte == 10:
            spans.append("\n")
    note = f'<p class="scale">{html.escape(scale_note)}</p>' if scale_note else ""
    return (f'<section><h2>{html.escape(caption)}</h2>\n{note}<div class="text">' + "".join(spans)
            + "</div></section>\n")


HTML_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 72em; }}
h2 {{ font-size: 1em; font-weight: normal; margin-top: 2em; }}
.text {{ font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; line-height: 1.35;
        white-space: pre-wrap; word-break: break-all; border: 1px solid #ccc; padding: 0.5em; }}
.text span:hover {{ outline: 1px solid black; }}
.ctl {{ color: #777; }}
.legend span {{ display: inline-block; width: 3em; text-align: center; font-size: 12px; }}
.scale {{ font-size: 0.9em; color: #444; margin: 0.2em 0; }}
</style></head><body>
<h1>{title}</h1>
<p>Each character's background is the cell's value right after reading it: {what}, from -1 (red) through 0
(white) to +1 (blue); where that scale is saturated (a counter cell), the cell is coloured on its own scale,
stated above its excerpt. Hover a character for its value. Scores: ROC AUC (max(AUC, 1-AUC)) for binary features,
Spearman |rho| for counts, on the test split. Layers count from 1, units from 0.</p>
<p class="legend">{legend}</p>
"""


def draw_model_cells(out_dir, scores, excerpts_path, feature_table=None, user_cells=(), model_id="model",
                     width=100, max_chars=None):
    """All pictures of one model from its score table and excerpts -> {name: path}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    from rnnlens.cells import read_excerpts
    from rnnlens.features import FEATURE_KINDS

    out_dir = Path(out_dir)
    png_dir = out_dir / "cells"
    frame, values, meta = read_excerpts(excerpts_path)
    if len(frame) == 0:
        raise InputError(f"{excerpts_path} holds no excerpt positions; rerun internals with --windows >= 1")
    cell_state = meta.get("cell_state", "c")
    data = frame.byte.to_numpy()
    feats_at = feature_table.iloc[frame.pos.to_numpy()].reset_index(drop=True) if feature_table is not None else None
    picks = select_cells(scores, user_cells)
    legend = "".join(f'<span style="background:{hex_colour(colour(v))}">{v:+.1f}</span>' for v in np.linspace(-1, 1, 9))
    what = ("tanh(c) of the LSTM cell" if cell_state == "c" else
            f"the unit ({meta['unit_layout']})" if meta.get("unit_layout") else "the hidden unit h")
    corpus = meta.get("corpus")
    label = f"{model_id} on {corpus}" if corpus else model_id
    sections = [HTML_HEAD.format(title=html.escape(f"Cells of {label}"), what=what, legend=legend)]
    pdf_path = out_dir / "cells.pdf"
    written = []
    # cells/ is replaced whole: the pictures of an earlier run may name other cells
    with atomic_dir(png_dir) as png_tmp_dir, atomic_path(pdf_path) as pdf_tmp, PdfPages(pdf_tmp) as pdf:
        for pick in picks:
            raw = values[:, pick["layer"] - 1, pick["unit"]]
            scale, scale_note = colour_scale(raw, cell_state)  # over every excerpt: one scale per cell
            shown = scale(raw)
            fv = None
            if pick["feature"] and feats_at is not None:
                fv = feats_at[pick["feature"]].to_numpy().astype(np.float64)
            w = pick_window(frame, shown, fv, FEATURE_KINDS.get(pick["feature"]))
            mask = (frame.window == w).to_numpy()
            if max_chars:
                mask = mask & (np.cumsum(mask) <= max_chars)
            caption = caption_of(pick, label)
            fig = draw_cell_figure(data[mask], shown[mask], caption, width, scale_note)
            name = f"{pick['feature'] or 'user'}__L{pick['layer']}_U{pick['unit']}.png"
            save_cell_figure(fig, png_tmp_dir / name)
            pdf.savefig(fig)
            plt.close(fig)
            written.append(png_dir / name)
            sections.append(html_section(data[mask], shown[mask], raw[mask], caption, cell_state, pick["layer"],
                                         pick["unit"], scale_note))
    sections.append("</body></html>\n")
    html_path = out_dir / "cells.html"
    atomic_write_text(html_path, "".join(sections))
    return {"cells_html": html_path, "cells_pdf": pdf_path, "cells_png_dir": png_dir}


def add_cell_pictures_arguments(parser):
    parser.add_argument("--dir", required=True, help="the model's internals output directory (cells.parquet, excerpts.parquet)")
    parser.add_argument("--data", default=None, help="data.json, to pick each feature's most telling excerpt window")
    parser.add_argument("--cells", default="", help="extra cells LAYER:UNIT (layer from 1, unit from 0), e.g. 1:17,2:5")
    parser.add_argument("--model-id", default=None)
    parser.add_argument("--width", type=int, default=100, help="characters per row")


def run_cell_pictures(args):
    from rnnlens.cells import read_scores

    d = Path(args.dir)
    for name in ("cells.parquet", "excerpts.parquet"):
        if not (d / name).is_file():
            raise InputError(f"{d / name} is missing; run `rnnlens internals --out-dir {d}` first")
    scores = read_scores(d / "cells.parquet")
    feature_table = None
    if args.data:
        from rnnlens.corpus import PreparedCorpus
        from rnnlens.features import split_features

        feature_table = split_features(PreparedCorpus.load(args.data), "test")
    model_id = args.model_id or (scores.model.iloc[0] if len(scores) else d.name)
    draw_model_cells(d, scores, d / "excerpts.parquet", feature_table, parse_cells(args.cells), model_id,
                     width=args.width)
    return 0
