import numpy as np
import pandas as pd
import pytest

from rnnlens.cli import main
from rnnlens.dynamics import DynamicsError, compare, mean_loss, progression, select_by_loss, symmetric_kl


def _random_distributions(rng, n, v, sharpness=1.0):
    logits = sharpness * rng.normal(size=(n, v))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_symmetric_kl_zero_for_identical_positive_and_symmetric_otherwise():
    rng = np.random.default_rng(0)
    P = _random_distributions(rng, 200, 7)
    Q = _random_distributions(rng, 200, 7)
    assert symmetric_kl(P, P) == 0.0
    assert symmetric_kl(P, Q) > 0
    assert symmetric_kl(P, Q) == pytest.approx(symmetric_kl(Q, P), rel=1e-12)
    # known value: KL(P||Q) + KL(Q||P) for one row
    p, q = np.array([[0.5, 0.5]]), np.array([[0.9, 0.1]])
    expected = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1) + 0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5)
    assert symmetric_kl(p, q) == pytest.approx(expected, rel=1e-6)
    # zeros in a distribution stay finite thanks to the eps clipping
    assert np.isfinite(symmetric_kl(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])))


def test_mean_loss():
    P = np.array([[0.25, 0.75], [0.5, 0.5]])
    assert mean_loss(P, [1, 0]) == pytest.approx(-(np.log(0.75) + np.log(0.5)) / 2)
    with pytest.raises(DynamicsError, match="vocabulary indices"):
        mean_loss(P, [2, 0])


def test_compare_finds_the_nnn_a_snapshot_equals():
    rng = np.random.default_rng(1)
    nnn = {n: _random_distributions(rng, 300, 5, sharpness=n) for n in range(1, 4)}
    targets = rng.integers(0, 5, 300)
    snapshots = [nnn[1], 0.5 * nnn[1] + 0.5 * nnn[3], nnn[3]]
    table = compare(snapshots, [0.1, 0.5, 1.0], nnn, targets)
    assert len(table) == 9 and list(table.columns[:3]) == ["snapshot", "progress", "n"]
    closest = table.loc[table.groupby("snapshot")["sym_kl"].idxmin(), "n"].tolist()
    assert closest[0] == 1 and closest[2] == 3
    same = table[(table["snapshot"] == 2) & (table["n"] == 3)].iloc[0]
    assert same["sym_kl"] == 0.0 and same["loss_diff"] == 0.0
    first = table[(table["snapshot"] == 0) & (table["n"] == 2)].iloc[0]
    assert first["loss_diff"] == pytest.approx(mean_loss(nnn[1], targets) - mean_loss(nnn[2], targets))
    # the paper's sign: loss of the n-NN minus loss of the snapshot (> 0: the snapshot is better)
    np.testing.assert_allclose(table["nnn_minus_snapshot"], table["nnn_loss"] - table["snapshot_loss"])
    np.testing.assert_allclose(table["nnn_minus_snapshot"], -table["loss_diff"])
    assert table.groupby("snapshot")["nearest_n"].first().tolist()[0] == 1
    assert table.groupby("snapshot")["nearest_n"].first().tolist()[2] == 3


def _table(nearest, progress):
    """A compare()-shaped table whose nearest n per snapshot is `nearest`."""
    return pd.DataFrame([{"snapshot": i, "progress": t, "n": n, "sym_kl": 1.0 + abs(n - k)}
                         for i, (k, t) in enumerate(zip(nearest, progress)) for n in (1, 2, 3)])


def test_progression_says_whether_the_paper_s_finding_is_seen():
    seen = progression(_table([1, 1, 2, 3], [0.1, 0.5, 1, 2]))
    assert seen["seen"] and seen["nearest"] == [1, 1, 2, 3] and "1 -> 2 -> 3" in seen["note"]
    flat = progression(_table([1, 1, 1], [0.05, 0.75, 3]))
    assert not flat["seen"]
    assert flat["note"].startswith("Progression not seen: the 1-NN is nearest at every snapshot (epochs 0.05-3)")
    back = progression(_table([1, 3, 2], [0.1, 0.5, 1]))
    assert not back["seen"] and "1, 3, 2" in back["note"]
    assert not progression(_table([2, 3, 3], [0.1, 0.5, 1]))["seen"]  # never nearest to the 1-NN


def test_snapshots_are_chosen_over_the_fall_of_the_loss_not_the_epochs():
    # a deep LSTM's run: a unigram plateau for most of epoch 1, then the fall, then the final weights
    losses = [3.17, 3.14, 3.13, 3.12, 3.12, 3.12, 2.95, 2.64, 2.55, 2.33, 1.45]
    kept = select_by_loss(losses, 6)
    assert kept == [0, 6, 7, 8, 9, 10]  # one plateau point, every point of the fall, the final weights
    assert select_by_loss(losses[:4], 6) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="at least 2"):
        select_by_loss(losses, 1)


def test_compare_rejects_logits():
    logits = np.random.default_rng(2).normal(size=(10, 4))
    with pytest.raises(DynamicsError, match="softmax|logits"):
        compare([logits], [0.0], {1: logits}, np.zeros(10, dtype=int))


def test_cli_reads_npy_and_writes_csv_and_figure(tmp_path):
    rng = np.random.default_rng(3)
    paths = {}
    for n in (1, 2):
        paths[n] = tmp_path / f"nnn-{n}.npy"
        np.save(paths[n], _random_distributions(rng, 100, 6, sharpness=n))
    snaps = []
    for i in range(3):
        snaps.append(tmp_path / f"snap{i}.npy")
        np.save(snaps[-1], _random_distributions(rng, 100, 6))
    np.save(tmp_path / "targets.npy", rng.integers(0, 6, 100))
    out = tmp_path / "out"
    rc = main(["dynamics", "--snapshots", *map(str, snaps), "--progress", "0.25", "0.5", "1", "--nnn", str(paths[2]), str(paths[1]),
              "--targets", str(tmp_path / "targets.npy"), "--model", "lstm-3x512",
              "--csv-out", str(out / "dynamics.csv"), "--fig-out", str(out / "dynamics.png"), str(out / "dynamics.pdf")])
    assert rc == 0
    table = pd.read_csv(out / "dynamics.csv")
    assert sorted(table["n"].unique()) == [1, 2] and sorted(table["progress"].unique()) == [0.25, 0.5, 1.0]
    assert (table["sym_kl"] > 0).all()
    assert (out / "dynamics.png").stat().st_size > 1000 and (out / "dynamics.pdf").exists()


def test_dynamics_models_keeps_snapshots_over_the_loss_and_adds_the_final_weights(prepared, tmp_path):
    import torch

    from conftest import markov_text
    from rnnlens.corpus import PreparedCorpus
    from rnnlens.model import ModelSpec
    from rnnlens.nnn import NNNConfig, save_nnn, train_nnn
    from rnnlens.train import TrainConfig, read_snapshot_manifest, train

    torch.set_num_threads(1)
    data = prepared(markov_text(8000))
    corpus = PreparedCorpus.load(data)
    out = tmp_path / "lstm-1x16"
    out.mkdir()
    cfg = TrainConfig(batch_size=8, seq_len=20, max_epochs=3, patience=5, checkpoint_seconds=1e9, log_seconds=1e9,
                      snapshot_epochs=[0.1, 0.2, 0.3, 0.5, 1, 2])
    assert train(cfg, corpus, ModelSpec("lstm", 1, 16, corpus.vocab_size, 0.0), out / "model.pt",
                 out / "history.csv", out / "checkpoint.pt") == 0
    nnn_files = []
    for n in (1, 2):
        model, stats = train_nnn(corpus, n, [16], NNNConfig(batch_size=200, max_epochs=1))
        save_nnn(tmp_path / f"nnn-{n}.pt", model, {"vocab": corpus.vocab.tolist(), "corpus": corpus.name})
        nnn_files.append(str(tmp_path / f"nnn-{n}.pt"))
    rc = main(["dynamics-models", "--data", str(data), "--model", str(out / "model.pt"), "--nnn", *nnn_files,
               "--positions", "300", "--probe-positions", "200", "--max-snapshots", "4",
               "--csv-out", str(tmp_path / "dynamics.csv"), "--fig-out", str(tmp_path / "dynamics.png")])
    assert rc == 0
    table = pd.read_csv(tmp_path / "dynamics.csv")
    points = table.drop_duplicates("snapshot").sort_values("progress")
    assert len(points) == 4 and len(table) == 4 * 2
    # the first snapshot and the final weights (at the best validation epoch) are always among the four
    history = pd.read_csv(out / "history.csv")
    first = read_snapshot_manifest(out / "snapshots")[0]
    assert points["source"].iloc[0] == first["file"] and points["progress"].iloc[0] == pytest.approx(first["epoch_fraction"])
    assert points["source"].iloc[-1] == "final"
    assert points["progress"].iloc[-1] == history.loc[history["val_loss"].idxmin(), "epoch"]
    np.testing.assert_allclose(table["nnn_minus_snapshot"], table["nnn_loss"] - table["snapshot_loss"], atol=1e-5)
    assert (tmp_path / "dynamics.png").stat().st_size > 1000
