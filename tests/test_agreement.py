import numpy as np
import pandas as pd
import pytest

from rnnlens.cli import main
from rnnlens.agreement import AgreementError, agreement_matrix, embed, tsne_perplexity
from rnnlens.predictions import write_predictions


def test_agreement_matrix_values_symmetry_and_diagonal():
    a = np.array([1, 2, 3, 4])
    b = np.array([1, 2, 0, 0])
    c = np.array([1, 2, 3, 0])
    m = agreement_matrix([a, b, c], ["lstm-1x64", "gru-1x64", "rnn-1x64"])
    assert list(m.index) == list(m.columns) == ["lstm-1x64", "gru-1x64", "rnn-1x64"]
    assert np.allclose(m.to_numpy(), m.to_numpy().T)
    assert np.all(np.diag(m.to_numpy()) == 1.0)
    assert m.loc["lstm-1x64", "gru-1x64"] == 0.5
    assert m.loc["lstm-1x64", "rnn-1x64"] == 0.75
    assert m.loc["rnn-1x64", "gru-1x64"] == 0.75


def test_agreement_rejects_mismatched_lengths_and_repeated_ids():
    with pytest.raises(AgreementError, match="different numbers"):
        agreement_matrix([np.zeros(3), np.zeros(4)], ["a", "b"])
    with pytest.raises(AgreementError, match="repeat"):
        agreement_matrix([np.zeros(3), np.zeros(3)], ["a", "a"])


def _two_families(rng, n_positions=2000):
    """Two groups of 3 models: within a group argmaxes agree on ~95% of positions, across groups on ~30%."""
    bases = [rng.integers(0, 50, n_positions), rng.integers(0, 50, n_positions)]
    bases[1][: int(0.3 * n_positions)] = bases[0][: int(0.3 * n_positions)]
    argmaxes, ids = [], []
    for g, (arch, base) in enumerate(zip(("lstm", "rnn"), bases)):
        for layers in (1, 2, 3):
            noisy = base.copy()
            flip = rng.random(n_positions) < 0.05
            noisy[flip] = rng.integers(0, 50, flip.sum())
            argmaxes.append(noisy)
            ids.append(f"{arch}-{layers}x128")
    return argmaxes, ids


def test_tsne_runs_on_three_models_and_is_reproducible():
    rng = np.random.default_rng(0)
    argmaxes, ids = _two_families(rng)
    m = agreement_matrix(argmaxes[:3], ids[:3])
    e1, e2 = embed(m, seed=3), embed(m, seed=3)
    assert list(e1["model"]) == ids[:3] and np.isfinite(e1[["x", "y"]].to_numpy()).all()
    pd.testing.assert_frame_equal(e1, e2)
    assert tsne_perplexity(3) < 3 and tsne_perplexity(2) > 0 and tsne_perplexity(100) == 30
    assert embed(agreement_matrix(argmaxes[:1], ids[:1]))[["x", "y"]].to_numpy().tolist() == [[0.0, 0.0]]
    assert len(embed(agreement_matrix(argmaxes[:2], ids[:2]))) == 2


def test_tsne_keeps_agreeing_models_together():
    argmaxes, ids = _two_families(np.random.default_rng(1))
    e = embed(agreement_matrix(argmaxes, ids), seed=0).set_index("model")
    xy = e[["x", "y"]].to_numpy()
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    within = max(d[:3, :3].max(), d[3:, 3:].max())
    between = d[:3, 3:].min()
    assert within < between


def test_cli_skips_ngrams_and_writes_matrix_embedding_and_figure(tmp_path, capsys):
    rng = np.random.default_rng(2)
    argmaxes, ids = _two_families(rng, 500)
    target = rng.integers(0, 50, 500).astype(np.uint8)
    paths = []
    for a, mid in zip(argmaxes, ids):
        path = tmp_path / f"{mid}.parquet"
        write_predictions(path, target, np.full(500, 0.3), argmax=a, p_argmax=np.full(500, 0.4), meta={"model": mid})
        paths.append(str(path))
    write_predictions(tmp_path / "ngram-3.parquet", target, np.full(500, 0.2), meta={"model": "ngram-3"})
    write_predictions(tmp_path / "nnn-2.parquet", target, np.full(500, 0.2), argmax=argmaxes[0],
                      p_argmax=np.full(500, 0.4), meta={"model": "nnn-2"})
    paths += [str(tmp_path / "ngram-3.parquet"), str(tmp_path / "nnn-2.parquet")]
    out = tmp_path / "out"
    rc = main(["agreement", "--predictions", *paths, "--csv-out", str(out / "agreement.csv"),
              "--embedding-out", str(out / "tsne.csv"), "--fig-out", str(out / "tsne.png"), str(out / "tsne.pdf")])
    assert rc == 0
    assert "skipped ngram-3" in capsys.readouterr().out
    m = pd.read_csv(out / "agreement.csv", index_col="model")
    assert list(m.index) == list(m.columns) == ids + ["nnn-2"]
    assert m.loc["nnn-2", ids[0]] == 1.0 and np.allclose(m.to_numpy(), m.to_numpy().T)
    e = pd.read_csv(out / "tsne.csv")
    assert list(e["model"]) == ids + ["nnn-2"]
    assert (out / "tsne.png").stat().st_size > 1000 and (out / "tsne.pdf").exists()
