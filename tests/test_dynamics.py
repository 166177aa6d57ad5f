import numpy as np
import pandas as pd
import pytest

from rnnlens.cli import main
from rnnlens.dynamics import DynamicsError, compare, mean_loss, symmetric_kl


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
