"""Which models make the same predictions: agreement matrix and t-SNE of models (paper, Table 1 right).

The similarity of two models is the share of test positions on which their most likely byte (argmax) is the
same. The matrix is symmetric with ones on the diagonal. t-SNE (scikit-learn, exact method, fixed seed, random
init) embeds the models from the distances 1 - agreement. t-SNE needs perplexity < number of models, so the
perplexity is min(30, (n - 1) / 3), at least 0.5; one model is drawn at the origin without t-SNE.

Models without an argmax column (n-grams, whose predictions only give p of the target) are skipped with a note.

t-SNE draws clusters however small the differences behind them: families can look far apart while their
agreements differ in the second decimal. So the figure puts the agreement matrix beside the map and prints the
mean agreement within every family (architecture; a dynamic-evaluation predictor is its own family) and between
every two families (family_means).
"""


import logging

import numpy as np
import pandas as pd

from rnnlens.errors import RnnlensError
from rnnlens.io import atomic_write_text, parquet_schema
from rnnlens import ids
from rnnlens.ids import parse_model_id
from rnnlens.plots import family_style, pyplot, save_figures
from rnnlens.predictions import model_id_of, read_meta, read_predictions

log = logging.getLogger(__name__)

OTHER_MARKER, OTHER_COLOR = "D", "#555555"


class AgreementError(RnnlensError):
    """Predictions that cannot be compared (different test sets, repeated or missing models)."""


def agreement_matrix(argmaxes, ids):
    """argmaxes: list of equal-length arrays of predicted bytes -> DataFrame of agreement shares (ids x ids)."""
    if len(argmaxes) != len(ids):
        raise AgreementError(f"{len(argmaxes)} argmax arrays for {len(ids)} model ids")
    if len(set(ids)) != len(ids):
        raise AgreementError(f"model ids repeat: {ids}. Pass each model once (ids come from the files' metadata).")
    lengths = {len(a) for a in argmaxes}
    if len(lengths) > 1:
        raise AgreementError(f"the models cover different numbers of test positions {sorted(lengths)}; "
                             "compare models of one corpus only")
    if lengths == {0}:
        raise AgreementError("the predictions have no test positions")
    n = len(ids)
    matrix = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            matrix[i, j] = matrix[j, i] = float(np.mean(argmaxes[i] == argmaxes[j]))
    return pd.DataFrame(matrix, index=list(ids), columns=list(ids))


def tsne_perplexity(n_models):
    return max(0.5, min(30.0, (n_models - 1) / 3))


def embed(agreement, seed=0):
    """t-SNE of the models from 1 - agreement -> DataFrame(model, x, y)."""
    ids = list(agreement.index)
    n = len(ids)
    if n == 0:
        raise AgreementError("no models to embed")
    if n == 1:
        xy = np.zeros((1, 2))
    else:
        from sklearn.manifold import TSNE

        distance = np.clip(1.0 - agreement.to_numpy(dtype=np.float64), 0.0, None)
        distance = (distance + distance.T) / 2
        np.fill_diagonal(distance, 0.0)
        tsne = TSNE(n_components=2, metric="precomputed", init="random", random_state=seed,
                    perplexity=tsne_perplexity(n), method="exact")
        xy = tsne.fit_transform(distance)
    return pd.DataFrame({"model": ids, "x": xy[:, 0], "y": xy[:, 1]})


def family_of(mid):
    """The architecture of a model id, with its predictor suffix ('lstm+dyn'); 'other' for ids of other forms."""
    try:
        return ids.family_of(mid)
    except ValueError:
        return "other"


def family_means(agreement):
    """Mean agreement over the pairs of distinct models within each family and between each two families.
    -> DataFrame(family_a, family_b, kind: within/between, mean, pairs), within first, then between."""
    ids = list(agreement.index)
    families = [family_of(mid) for mid in ids]
    order = list(dict.fromkeys(sorted(families, key=_family_rank)))
    m = agreement.to_numpy(dtype=np.float64)
    rows = []
    for i, a in enumerate(order):
        for b in order[i:]:
            ia = [k for k, f in enumerate(families) if f == a]
            ib = [k for k, f in enumerate(families) if f == b]
            pairs = [(x, y) for x in ia for y in ib if (x < y if a == b else True)]
            if pairs:
                rows.append({"family_a": a, "family_b": b, "kind": "within" if a == b else "between",
                             "mean": float(np.mean([m[x, y] for x, y in pairs])), "pairs": len(pairs)})
    out = pd.DataFrame(rows, columns=["family_a", "family_b", "kind", "mean", "pairs"])
    return out.sort_values("kind", ascending=False, kind="stable").reset_index(drop=True)


def _family_rank(family):
    return (ids.arch_rank(family), family)  # Table 1's order of architectures


def _model_rank(mid):
    try:
        _, layers, size = parse_model_id(mid)
    except ValueError:
        layers, size = 0, 0
    return (_family_rank(family_of(mid)), layers, size, mid)


def means_text(means):
    """'within RNN 0.773 (3 pairs), ...; between GRU-LSTM 0.768 (9 pairs), ...' on two lines."""
    def name(f):
        return f.upper().replace("+DYN", "+dyn")

    within = [f"{name(r.family_a)} {r.mean:.3f} ({r.pairs} pair{'s' if r.pairs > 1 else ''})"
              for r in means.itertuples() if r.kind == "within"]
    between = [f"{name(r.family_a)}-{name(r.family_b)} {r.mean:.3f}" for r in means.itertuples() if r.kind == "between"]
    lines = []
    if within:
        lines.append("mean agreement within: " + ", ".join(within))
    if between:
        lines.append("between: " + ", ".join(between))
    return "\n".join(lines)


def marker_area(size, sizes):
    """Marker area growing with the budget's rank among the budgets shown (mid-sized when there is one)."""
    if len(sizes) <= 1:
        return 100.0
    return 30.0 + 170.0 * sizes.index(size) / (len(sizes) - 1)


def depth_shade(layers, depths):
    """Colormap position: light for shallow, dark for deep."""
    return 0.7 if len(depths) <= 1 else 0.45 + 0.5 * depths.index(layers) / (len(depths) - 1)


def model_style(mid, sizes, depths):
    """Marker, colour, marker area for one model id; ids that are not ARCH-LxS get a neutral style."""
    import matplotlib

    try:
        arch, layers, size = parse_model_id(mid)
    except ValueError:
        return OTHER_MARKER, OTHER_COLOR, 40.0
    style = family_style(arch)  # the one colour family of each architecture, as in every figure
    color = matplotlib.colormaps[style["colormap"]](depth_shade(layers, depths))
    return style["marker"], color, marker_area(size, sizes)


def plot_embedding(embedding, paths, title="t-SNE of models (argmax agreement)", agreement=None):
    """The t-SNE map; with `agreement`, the agreement matrix beside it (models ordered by family, depth, size) and
    the mean agreement within and between families printed under both. Returns the figure."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    parsed = {}
    for mid in embedding["model"]:
        try:
            parsed[mid] = parse_model_id(mid)
        except ValueError:
            pass
    sizes = sorted({s for _, _, s in parsed.values()})
    depths = sorted({layer for _, layer, _ in parsed.values()})
    if agreement is None:
        fig, ax = plt.subplots(figsize=(7, 6))
    else:
        n = len(agreement)
        fig, (ax, ax_m) = plt.subplots(1, 2, figsize=(13.5, 6.8), gridspec_kw={"width_ratios": [1, 1.1]})
    for _, row in embedding.iterrows():
        marker, color, area = model_style(row["model"], sizes, depths)
        ax.scatter(row["x"], row["y"], marker=marker, color=color, s=area, edgecolors="black", linewidths=0.5)
        ax.annotate(row["model"], (row["x"], row["y"]), xytext=(4, 3), textcoords="offset points", fontsize=7)
    handles = [Line2D([], [], marker=family_style(a)["marker"], color="w",
                      markerfacecolor=plt.get_cmap(family_style(a)["colormap"])(0.7),
                      markeredgecolor="black", markersize=8, label=a.upper())
               for a in dict.fromkeys(p[0] for p in parsed.values())]
    handles += [Line2D([], [], marker="o", color="w", markerfacecolor="0.6", markeredgecolor="black",
                       markersize=np.sqrt(marker_area(s, sizes)), label=f"budget {s}")
                for s in sizes]
    handles += [Line2D([], [], marker="o", color="w",
                       markerfacecolor=plt.get_cmap("Greys")(depth_shade(d, depths)),
                       markeredgecolor="black", markersize=8, label=f"{d} layer{'s' if d > 1 else ''} (shade)")
                for d in depths]
    if len(parsed) < len(embedding):
        handles.append(Line2D([], [], marker=OTHER_MARKER, color="w", markerfacecolor=OTHER_COLOR, markersize=7,
                              label="other"))
    if agreement is None:
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                  frameon=False, labelspacing=1.0)  # beside the map: inside, it covered models
    else:  # under the map: beside it stands the matrix
        ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.02), borderaxespad=0.0,
                  frameon=False, ncol=min(4, max(1, len(handles))))
    ax.margins(0.15)
    ax.set_xticks([])
    ax.set_yticks([])
    if agreement is None:
        ax.set_title(title, fontsize=10)
        save_figures(fig, paths)
        return fig
    ax.set_title("t-SNE map (distances stretch small differences)", fontsize=9)
    order = sorted(agreement.index, key=_model_rank)
    matrix = agreement.loc[order, order].to_numpy(dtype=np.float64).copy()
    np.fill_diagonal(matrix, np.nan)  # the ones on the diagonal would set the colour scale
    off = matrix[np.isfinite(matrix)]
    image = ax_m.imshow(matrix, cmap="viridis", vmin=off.min() if len(off) else 0, vmax=off.max() if len(off) else 1)
    ax_m.set_xticks(range(n), order, rotation=90, fontsize=7)
    ax_m.set_yticks(range(n), order, fontsize=7)
    if n <= 12:
        mid = (np.nanmin(matrix) + np.nanmax(matrix)) / 2 if len(off) else 0.5
        for i in range(n):
            for j in range(n):
                if i != j:
                    ax_m.text(j, i, f"{matrix[i, j]:.3f}", ha="center", va="center", fontsize=6,
                              color="black" if matrix[i, j] > mid else "white")
    fig.colorbar(image, ax=ax_m, fraction=0.046, pad=0.03, label="share of test positions with the same argmax")
    ax_m.set_title("agreement matrix (colour scale: off-diagonal range)", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.text(0.5, 0.01, means_text(family_means(agreement)), ha="center", va="bottom", fontsize=8.5)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    save_figures(fig, paths)
    return fig


def load_argmaxes(paths):
    """-> (ids, argmax arrays, skipped ids). Files whose argmax is null (n-grams) are skipped."""
    ids, argmaxes, skipped, targets = [], [], [], None
    for path in paths:
        if "argmax" not in parquet_schema(path).names:
            raise AgreementError(f"{path} has no argmax column; is it a predictions Parquet?")
        df, meta = read_predictions(path, columns=["target", "argmax"])
        mid = model_id_of(meta, path)
        if df["argmax"].isna().any():
            skipped.append(mid)
            continue
        target = df["target"].to_numpy()
        if targets is not None and not np.array_equal(target, targets):
            raise AgreementError(f"{path}: its test targets differ from the other files'; compare models of one "
                                 "corpus only")
        targets = target
        ids.append(mid)
        argmaxes.append(df["argmax"].to_numpy(dtype=np.int16))
    return ids, argmaxes, skipped


def add_agreement_arguments(parser):
    parser.add_argument("--predictions", nargs="+", required=True, help="predictions Parquets of one corpus")
    parser.add_argument("--csv-out", required=True, help="agreement matrix CSV (model ids as index and columns)")
    parser.add_argument("--embedding-out", required=True, help="t-SNE coordinates CSV (model, x, y)")
    parser.add_argument("--fig-out", nargs="+", required=True, metavar="PATH", help="figure paths (png, pdf)")
    parser.add_argument("--seed", type=int, default=0)


def run_agreement(args):
    """rnnlens agreement: agreement matrix CSV, t-SNE embedding CSV and figure."""
    ids, argmaxes, skipped = load_argmaxes(args.predictions)
    if skipped:
        log.info(f"agreement: skipped {', '.join(skipped)} (no argmax, e.g. n-gram predictions)")
    if not ids:
        raise AgreementError("none of the given predictions has an argmax; pass neural models' predictions")
    agreement = agreement_matrix(argmaxes, ids)
    embedding = embed(agreement, seed=args.seed)
    log.info(f"agreement: {len(ids)} models, perplexity {tsne_perplexity(len(ids)):.2f}")
    atomic_write_text(args.csv_out, agreement.to_csv(index_label="model", float_format="%.6f"))
    atomic_write_text(args.embedding_out, embedding.to_csv(index=False, float_format="%.6f"))
    corpus = read_meta(args.predictions[0]).get("corpus", "")
    for row in family_means(agreement).itertuples():
        which = row.family_a if row.kind == "within" else f"{row.family_a}-{row.family_b}"
        log.info(f"agreement {row.kind} {which}: {row.mean:.4f} over {row.pairs} pairs")
    plot_embedding(embedding, args.fig_out, title=f"{corpus}: t-SNE of {len(ids)} models by argmax agreement "
                   "(each point labelled with its model), beside their agreement matrix", agreement=agreement)
    log.info(f"agreement: wrote {args.csv_out}, {args.embedding_out}, {', '.join(args.fig_out)}")
    return 0
