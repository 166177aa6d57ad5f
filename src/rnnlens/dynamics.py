"""Training dynamics (paper, Fig. 5 middle and right): how close a model is, over training, to the n-NN
baselines (n = 1..5), measured on the same test positions.

For every training snapshot and every n:
  sym_kl              mean over positions of KL(P || Q) + KL(Q || P), P = snapshot's predictive distribution,
                      Q = n-NN's; both clipped to >= eps and renormalised, so the value is finite; 0 iff identical.
  nnn_minus_snapshot  mean loss of the n-NN minus mean loss of the snapshot (nats/char; positive = the snapshot
                      is better): the paper's sign, the one the figure draws.
  loss_diff           the same difference the other way round (snapshot - n-NN), kept for older readers.
  nearest_n           the n whose n-NN is nearest to the snapshot (smallest sym_kl).
The paper's finding: early snapshots are closest to 1-NN, then 2-NN, 3-NN, ... (short dependencies first). The
figure says in words whether this run shows that progression (progression()).

Which snapshots: the training saves weights at fixed epoch fractions (analysis.dynamics.snapshot_epochs), and
where the loss falls depends on the run (a deep LSTM can sit on a unigram plateau for most of its first epoch).
So the stage takes the snapshots of the manifest plus the final weights (the model itself, at its best epoch)
and, when there are more than --max-snapshots, keeps those spread most evenly over the fall of the run's own
loss, measured on a few validation positions (select_by_loss), not those spread over epochs.

The driver works on plain numpy arrays: distributions are (positions, V) float arrays over the vocabulary
(rows sum to 1, column j = the j-th vocabulary byte), targets are vocabulary indices (int, length positions).
"""

import argparse
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from rnnlens.errors import InputError, RnnlensError
from rnnlens.io import atomic_write_text
from rnnlens.plots import pyplot, save_figures

log = logging.getLogger(__name__)

EPS = 1e-8
ROWS_PER_CHUNK = 1 << 16


class DynamicsError(RnnlensError):
    """Snapshot or n-NN distributions that do not fit together."""


def _clip_normalise(P, eps):
    P = np.clip(np.asarray(P, dtype=np.float64), eps, None)
    return P / P.sum(axis=1, keepdims=True)


def check_distributions(P, name, rtol=1e-3):
    P = np.asarray(P)
    if P.ndim != 2:
        raise DynamicsError(f"{name} has shape {P.shape}; expected (positions, vocabulary) probabilities")
    if not np.all(np.isfinite(P)) or np.any(P < 0):
        raise DynamicsError(f"{name} has negative or non-finite entries; pass probabilities, not logits")
    sums = P.sum(axis=1)
    if len(sums) and np.max(np.abs(sums - 1)) > rtol:
        raise DynamicsError(f"{name}: rows sum to {sums.min():.4g}..{sums.max():.4g}, not 1; apply softmax first")
    return P


def symmetric_kl(P, Q, eps=EPS, per_position=False):
    """KL(P||Q) + KL(Q||P) per row, as sum (p - q)(ln p - ln q); mean over rows unless per_position."""
    P, Q = np.asarray(P), np.asarray(Q)
    if P.shape != Q.shape:
        raise DynamicsError(f"distributions of different shapes {P.shape} and {Q.shape}; "
                            "compute both on the same test positions and vocabulary")
    out = np.empty(len(P))
    for a in range(0, len(P), ROWS_PER_CHUNK):
        p = _clip_normalise(P[a:a + ROWS_PER_CHUNK], eps)
        q = _clip_normalise(Q[a:a + ROWS_PER_CHUNK], eps)
        out[a:a + ROWS_PER_CHUNK] = np.sum((p - q) * (np.log(p) - np.log(q)), axis=1)
    return out if per_position else float(out.mean())


def mean_loss(P, targets, eps=EPS):
    """Mean -ln P[t, target_t] in nats."""
    P = np.asarray(P)
    targets = np.asarray(targets, dtype=np.int64)
    if len(targets) != len(P):
        raise DynamicsError(f"{len(targets)} targets for {len(P)} positions")
    if len(targets) and (targets.min() < 0 or targets.max() >= P.shape[1]):
        raise DynamicsError(f"targets must be vocabulary indices in [0, {P.shape[1]}); got {targets.min()}..{targets.max()}")
    return float(-np.log(np.clip(P[np.arange(len(P)), targets], eps, None)).mean())


def compare(snapshots, progress, nnn, targets, eps=EPS):
    """snapshots: list of (positions, V) arrays in training order; progress: matching floats (e.g. epochs);
    nnn: {n: (positions, V) array}; targets: vocabulary indices. -> DataFrame with one row per (snapshot, n)."""
    if len(snapshots) != len(progress):
        raise DynamicsError(f"{len(snapshots)} snapshots but {len(progress)} progress values")
    if not nnn:
        raise DynamicsError("no n-NN distributions given")
    nnn = {int(n): check_distributions(Q, f"{n}-NN distributions") for n, Q in nnn.items()}
    nnn_loss = {n: mean_loss(Q, targets, eps) for n, Q in nnn.items()}
    rows = []
    for i, (P, prog) in enumerate(zip(snapshots, progress)):
        P = check_distributions(P, f"snapshot {i}")
        loss = mean_loss(P, targets, eps)
        kl = {n: symmetric_kl(P, nnn[n], eps) for n in sorted(nnn)}
        nearest = min(kl, key=kl.get)
        for n in sorted(nnn):
            rows.append({"snapshot": i, "progress": float(prog), "n": n, "sym_kl": kl[n],
                         "snapshot_loss": loss, "nnn_loss": nnn_loss[n], "loss_diff": loss - nnn_loss[n],
                         "nnn_minus_snapshot": nnn_loss[n] - loss, "nearest_n": nearest})
        log.info(f"dynamics: snapshot {i} (progress {prog:g}) loss {loss:.4f}, nearest to the {nearest}-NN "
                 f"(of {len(nnn)} n-NN models)")
    return pd.DataFrame(rows)


def nearest_by_snapshot(table):
    """-> DataFrame per snapshot (one progress value each) in training order: progress, nearest_n (smallest
    sym_kl)."""
    best = table.loc[table.groupby("progress")["sym_kl"].idxmin(), ["progress", "n"]]
    return best.rename(columns={"n": "nearest_n"}).sort_values("progress").reset_index(drop=True)


def progression(table):
    """Does the run show the paper's progression: nearest to the smallest n first, then to larger n, never back?
    -> {"seen": bool, "nearest": [n per snapshot], "note": one line for the figure}."""
    nearest = nearest_by_snapshot(table)
    ns, progress = nearest["nearest_n"].tolist(), nearest["progress"].tolist()
    orders = sorted(table["n"].unique())
    span = f"epochs {progress[0]:g}-{progress[-1]:g}" if len(progress) > 1 else f"epoch {progress[0]:g}"
    rising = all(b >= a for a, b in zip(ns, ns[1:]))
    if len(set(ns)) == 1:
        return {"seen": False, "nearest": ns,
                "note": f"Progression not seen: the {ns[0]}-NN is nearest at every snapshot ({span}); the paper "
                        f"found the nearest n rising from {orders[0]} during training."}
    if rising and ns[0] == orders[0]:
        return {"seen": True, "nearest": ns,
                "note": f"The paper's progression: nearest n goes {' -> '.join(map(str, dict.fromkeys(ns)))} ({span})."}
    return {"seen": False, "nearest": ns,
            "note": f"Progression not seen as in the paper: nearest n per snapshot {', '.join(map(str, ns))} ({span})."}


def plot_dynamics(table, paths, xlabel="training progress (epochs)", title=None):
    """Left: symmetric KL of every snapshot to every n-NN, the nearest n ringed; right: loss of the n-NN minus loss
    of the snapshot (the paper's sign: above 0 the snapshot is better). A line under the title says whether the
    paper's progression (nearest n rising over training) is seen. Returns the figure."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    orders = sorted(table["n"].unique())
    cmap = plt.get_cmap("viridis")
    colours = {n: cmap(i / max(1, len(orders) - 1)) for i, n in enumerate(orders)}
    difference = (table["nnn_minus_snapshot"] if "nnn_minus_snapshot" in table
                  else table["nnn_loss"] - table["snapshot_loss"] if "nnn_loss" in table else -table["loss_diff"])
    table = table.assign(nnn_minus_snapshot=difference)
    for n in orders:
        t = table[table["n"] == n].sort_values("progress")
        left.plot(t["progress"], t["sym_kl"], marker="o", ms=3, color=colours[n], label=f"{n}-NN")
        right.plot(t["progress"], t["nnn_minus_snapshot"], marker="o", ms=3, color=colours[n], label=f"{n}-NN")
    nearest = table.loc[table.groupby("progress")["sym_kl"].idxmin()]
    left.scatter(nearest["progress"], nearest["sym_kl"], s=70, facecolors="none", edgecolors="black", linewidths=1.0,
                 zorder=3, label="nearest n-NN")
    if "source" in table and (table["source"] == "final").any():
        final = table[table["source"] == "final"]["progress"].iloc[0]
        for ax in (left, right):
            ax.axvline(final, color="0.6", lw=0.8, ls="--")
            ax.annotate("final weights", (final, 1.0), xycoords=("data", "axes fraction"), xytext=(-3, -3),
                        textcoords="offset points", ha="right", va="top", fontsize=7, color="0.4")
    left.set_ylabel("symmetric KL to the n-NN (nats)")
    right.set_ylabel("loss of n-NN - loss of snapshot (nats/char)\n> 0: snapshot better")
    right.axhline(0.0, color="black", lw=0.8)
    progress = table["progress"]
    for ax in (left, right):
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if progress.min() > 0 and progress.max() / progress.min() > 20:
            ax.set_xscale("log")  # snapshots crowd the first epoch: a log axis keeps them apart
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    handles, labels = right.get_legend_handles_labels()
    handles.append(Line2D([], [], marker="o", ms=8, mfc="none", mec="black", ls="none"))
    labels.append("nearest n-NN (left)")
    right.legend(handles, labels, fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                 borderaxespad=0.0)
    verdict = progression(table)
    fig.suptitle((f"{title}\n" if title else "") + verdict["note"], fontsize=9,
                 color="black" if verdict["seen"] else "firebrick")
    fig.tight_layout()
    save_figures(fig, paths)
    return fig


def select_by_loss(losses, keep):
    """Indices (in training order) of `keep` of the snapshots whose losses are `losses` (training order): the
    first and the last, then again and again the one farthest in loss from all kept so far, so the kept ones
    spread over the fall of the loss instead of crowding a plateau."""
    losses = np.asarray(losses, dtype=np.float64)
    if keep < 2:
        raise InputError("keep at least 2 snapshots (the first and the last)")
    if len(losses) <= keep:
        return list(range(len(losses)))
    chosen = [0, len(losses) - 1]
    while len(chosen) < keep:
        gaps = np.min(np.abs(losses[:, None] - losses[chosen][None, :]), axis=1)
        gaps[chosen] = -1.0
        chosen.append(int(np.argmax(gaps)))  # ties: the earliest
    return sorted(chosen)


def _order_from_name(path):
    match = re.search(r"nnn-(\d+)", Path(path).stem)
    return int(match.group(1)) if match else None


def add_dynamics_arguments(parser):
    parser.add_argument("--snapshots", nargs="+", required=True)
    parser.add_argument("--progress", nargs="+", type=float)
    parser.add_argument("--nnn", nargs="+", required=True)
    parser.add_argument("--nnn-orders", nargs="+", type=int)
    parser.add_argument("--targets", required=True)
    parser.add_argument("--model", default="", help="model id for the figure title")
    parser.add_argument("--csv-out", required=True)
    parser.add_argument("--fig-out", nargs="+", required=True, metavar="PATH", help="figure paths (png, pdf)")


def run_dynamics(args):
    """rnnlens dynamics: compare training snapshots with n-NN models (CSV + figure).

    Expects .npy files, all over the same test positions (in the same order) and vocabulary:
      --snapshots   one (positions, V) float array of probabilities per snapshot, in training order
      --progress    one number per snapshot (epochs, or fraction of training); default 0, 1, 2, ...
      --nnn         one (positions, V) array per n-NN model; n from --nnn-orders, else from 'nnn-N' in the
                    file name, else 1, 2, ...
      --targets     (positions,) int array of target vocabulary indices
    """
    progress = args.progress if args.progress is not None else list(range(len(args.snapshots)))
    orders = args.nnn_orders or [_order_from_name(p) for p in args.nnn]
    if None in orders:
        orders = list(range(1, len(args.nnn) + 1))
    if len(orders) != len(args.nnn) or len(set(orders)) != len(orders):
        raise DynamicsError(f"--nnn-orders {orders} must give one distinct n per --nnn file")
    nnn = {n: np.load(path, mmap_mode="r") for n, path in zip(orders, args.nnn)}
    targets = np.load(args.targets)
    snapshots = [np.load(path, mmap_mode="r") for path in args.snapshots]
    table = compare(snapshots, progress, nnn, targets)
    atomic_write_text(args.csv_out, table.to_csv(index=False, float_format="%.6g"))
    title = f"{args.model}: snapshots vs n-NN" if args.model else None
    plot_dynamics(table, args.fig_out, title=title)
    log.info(f"dynamics: wrote {args.csv_out}, {', '.join(args.fig_out)}")
    return 0


def add_dynamics_models_arguments(parser):
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", required=True, help="the trained model.pt; its snapshots/ folder is read")
    parser.add_argument("--nnn", nargs="+", required=True, help="n-NN model files (nnn-N.pt)")
    parser.add_argument("--positions", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--max-snapshots", type=int, default=8, help="compare at most this many of the snapshots "
                        "(and the final weights), chosen to spread over the fall of the loss (default 8)")
    parser.add_argument("--probe-positions", type=int, default=2000, help="validation positions on which the "
                        "snapshots' losses are measured to choose them (default 2000)")
    parser.add_argument("--final", action=argparse.BooleanOptionalAction, default=True,
                        help="include the final weights (the model itself, at its best epoch) as the last point")
    parser.add_argument("--csv-out", required=True)
    parser.add_argument("--fig-out", nargs="+", required=True)


def best_epoch(model_path, extra):
    """The epoch of the final weights: the best validation epoch of history.csv beside the model, else the
    number of epochs run."""
    history = Path(model_path).with_name("history.csv")
    if history.is_file():
        hist = pd.read_csv(history)
        if len(hist) and "val_loss" in hist:
            return float(hist.loc[hist["val_loss"].idxmin(), "epoch"])
    return float(extra.get("epochs_run") or 0) or None


def candidates(model_path, with_final=True):
    """The points the figure can show, in training order: the manifest's snapshots and the final weights.
    -> list of {"source", "path", "progress"}."""
    from rnnlens.model import load_model
    from rnnlens.train import MANIFEST, read_snapshot_manifest

    # the manifest names the snapshots of the training that made this model; other files in the folder are not read
    snapshot_dir = Path(model_path).parent / "snapshots"
    entries = read_snapshot_manifest(snapshot_dir)
    if not entries:
        raise InputError(f"{snapshot_dir / MANIFEST} lists no snapshots: the training ended before the first of "
                         "analysis.dynamics.snapshot_epochs; use smaller fractions there and retrain that model")
    points = [{"source": e["file"], "path": e["path"], "progress": float(e["epoch_fraction"])} for e in entries]
    if with_final:
        _, extra = load_model(model_path)
        epoch = best_epoch(model_path, extra)
        if epoch is not None and epoch > points[-1]["progress"]:
            points.append({"source": "final", "path": Path(model_path), "progress": epoch})
    return sorted(points, key=lambda point: point["progress"])


def run_dynamics_models(args):
    """rnnlens dynamics-models: load the training snapshots of one model (and its final weights) and the trained
    n-NN models, keep at most --max-snapshots of the snapshots, spread over the fall of the loss, compute their
    predictive distributions on the first --positions test positions, and compare them (CSV + figure)."""
    import json

    import torch

    from rnnlens.corpus import PreparedCorpus
    from rnnlens.evaluate import predict_test
    from rnnlens.model import load_model
    from rnnlens.nnn import load_nnn, nnn_distributions

    if args.threads:
        torch.set_num_threads(args.threads)
    base = PreparedCorpus.load(args.data)
    # about --positions test positions, taken from the start of every test piece so they sample the whole split
    corpus = base.with_split_spread("test", args.positions)
    points = candidates(args.model, args.final)
    if len(points) > args.max_snapshots:
        probe = base.with_split_spread("val", args.probe_positions)
        losses = []
        for point in points:
            model, _ = load_model(point["path"])
            p = predict_test(model, probe, streams=20, warmup=args.warmup, split="val")["p"]
            losses.append(float(-np.log(np.clip(p.astype(np.float64), EPS, None)).mean()))
            log.info(f"{point['source']}: epoch {point['progress']:.3f}, validation probe loss {losses[-1]:.4f}")
        kept = select_by_loss(losses, args.max_snapshots)
        epochs = ", ".join(f"{points[i]['progress']:g}" for i in kept)
        log.info(f"dynamics: kept {len(kept)} of {len(points)} snapshots, spread over the loss "
                 f"{max(losses):.3f} -> {min(losses):.3f}: epochs {epochs}")
        points = [points[i] for i in kept]
    snapshots = []
    for point in points:
        model, _ = load_model(point["path"])
        snapshots.append(predict_test(model, corpus, streams=20, warmup=args.warmup, keep_probs=True)["probs"])
        log.info(f"snapshot {point['source']}: epoch {point['progress']:.3f}")
    positions = corpus.positions("test")
    nnn = {}
    for path in args.nnn:
        model, extra = load_nnn(path)
        nnn[model.spec.n] = nnn_distributions(model, corpus.data, corpus.vocab, positions)
    targets = corpus.encode(corpus.data[positions])
    table = compare(snapshots, [point["progress"] for point in points], nnn, targets)
    table["source"] = table["snapshot"].map(lambda i: points[i]["source"])
    table.insert(0, "model", json.loads(Path(args.data).read_text())["corpus"] + ":" + Path(args.model).parent.name)
    atomic_write_text(args.csv_out, table.to_csv(index=False, float_format="%.6g"))
    log.info(f"dynamics: {progression(table)['note']}")
    plot_dynamics(table, args.fig_out, xlabel="training progress (epochs)",
                  title=f"{corpus.name}: snapshots of {Path(args.model).parent.name} during training vs the "
                  f"{', '.join(f'{n}-NN' for n in sorted(nnn))} models")
    return 0
