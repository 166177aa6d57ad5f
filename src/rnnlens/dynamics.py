"""Training dynamics (paper, Fig. 5 middle and right): how close a model is, over training, to the n-NN
baselines (n = 1..5), measured on the same test positions.

For every training snapshot and every n:
  sym_kl    mean over positions of KL(P || Q) + KL(Q || P), P = snapshot's predictive distribution,
            Q = n-NN's; both clipped to >= eps and renormalised, so the value is finite; 0 iff identical.
  loss_diff mean loss of the snapshot minus mean loss of the n-NN (nats/char; negative = snapshot better).
The paper's finding: early snapshots are closest to 1-NN, then 2-NN, 3-NN, ... (short dependencies first).

The driver works on plain numpy arrays: distributions are (positions, V) float arrays over the vocabulary
(rows sum to 1, column j = the j-th vocabulary byte), targets are vocabulary indices (int, length positions).
"""

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from rnnlens.errors import InputError, RnnlensError
from rnnlens.io import atomic_write_text
from rnnlens.plots import legend_outside, pyplot, save_figures

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
        for n in sorted(nnn):
            rows.append({"snapshot": i, "progress": float(prog), "n": n,
                         "sym_kl": symmetric_kl(P, nnn[n], eps),
                         "snapshot_loss": loss, "nnn_loss": nnn_loss[n], "loss_diff": loss - nnn_loss[n]})
        log.info(f"dynamics: snapshot {i} (progress {prog:g}) loss {loss:.4f} compared with {len(nnn)} n-NN models")
    return pd.DataFrame(rows)


def plot_dynamics(table, paths, xlabel="training progress (epochs)", title=None):
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    orders = sorted(table["n"].unique())
    cmap = plt.get_cmap("viridis")
    for i, n in enumerate(orders):
        t = table[table["n"] == n].sort_values("progress")
        color = cmap(i / max(1, len(orders) - 1))
        left.plot(t["progress"], t["sym_kl"], marker="o", ms=3, color=color, label=f"{n}-NN")
        right.plot(t["progress"], t["loss_diff"], marker="o", ms=3, color=color, label=f"{n}-NN")
    left.set_ylabel("symmetric KL (nats)")
    right.set_ylabel("loss of snapshot - loss of n-NN (nats/char)")
    right.axhline(0.0, color="black", lw=0.8)
    for ax in (left, right):
        ax.set_xlabel(xlabel)
    legend_outside(right)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figures(fig, paths)
    return fig


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
    parser.add_argument("--csv-out", required=True)
    parser.add_argument("--fig-out", nargs="+", required=True)


def run_dynamics_models(args):
    """rnnlens dynamics-models: load the training snapshots of one model and the trained n-NN models, compute their
    predictive distributions on the first --positions test positions, and compare them (CSV + figure)."""
    import json

    import torch

    from rnnlens.corpus import PreparedCorpus
    from rnnlens.evaluate import predict_test
    from rnnlens.model import load_model
    from rnnlens.nnn import load_nnn, nnn_distributions
    from rnnlens.train import MANIFEST, read_snapshot_manifest

    if args.threads:
        torch.set_num_threads(args.threads)
    # about --positions test positions, taken from the start of every test piece so they sample the whole split
    corpus = PreparedCorpus.load(args.data).with_split_spread("test", args.positions)
    # the manifest names the snapshots of the training that made this model; other files in the folder are not read
    snapshot_dir = Path(args.model).parent / "snapshots"
    entries = read_snapshot_manifest(snapshot_dir)
    if not entries:
        raise InputError(f"{snapshot_dir / MANIFEST} lists no snapshots: the training ended before the first of "
                         "analysis.dynamics.snapshot_epochs; use smaller fractions there and retrain that model")
    snapshots, progress = [], []
    for entry in entries:
        model, _ = load_model(entry["path"])
        snapshots.append(predict_test(model, corpus, streams=20, warmup=args.warmup, keep_probs=True)["probs"])
        progress.append(entry["epoch_fraction"])
        log.info(f"snapshot {entry['file']}: epoch {entry['epoch_fraction']:.3f}")
    positions = corpus.positions("test")
    nnn = {}
    for path in args.nnn:
        model, extra = load_nnn(path)
        nnn[model.spec.n] = nnn_distributions(model, corpus.data, corpus.vocab, positions)
    targets = corpus.encode(corpus.data[positions])
    table = compare(snapshots, progress, nnn, targets)
    table.insert(0, "model", json.loads(Path(args.data).read_text())["corpus"] + ":" + Path(args.model).parent.name)
    atomic_write_text(args.csv_out, table.to_csv(index=False, float_format="%.6g"))
    plot_dynamics(table, args.fig_out, xlabel="training progress (epochs)",
                  title=f"{corpus.name}: snapshots of {Path(args.model).parent.name} during training vs the "
                  f"{', '.join(f'{n}-NN' for n in sorted(nnn))} models")
    return 0
