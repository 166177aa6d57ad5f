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


def test_family_means_within_and_between_and_printed_beside_the_map(tmp_path):
    from rnnlens.agreement import family_means, plot_embedding

    ids = ["lstm-1x8", "lstm-2x8", "gru-1x8", "gru-2x8", "lstm-1x8+dyn", "nnn-2"]
    m = pd.DataFrame(np.eye(6), index=ids, columns=ids)
    pairs = {("lstm-1x8", "lstm-2x8"): 0.8, ("gru-1x8", "gru-2x8"): 0.7, ("lstm-1x8", "gru-1x8"): 0.6,
             ("lstm-1x8", "gru-2x8"): 0.5, ("lstm-2x8", "gru-1x8"): 0.4, ("lstm-2x8", "gru-2x8"): 0.3}
    for (a, b), v in pairs.items():
        m.loc[a, b] = m.loc[b, a] = v
    means = family_means(m).set_index(["family_a", "family_b"])
    assert means.loc[("lstm", "lstm"), "mean"] == pytest.approx(0.8) and means.loc[("lstm", "lstm"), "pairs"] == 1
    assert means.loc[("gru", "gru"), "mean"] == pytest.approx(0.7)
    assert means.loc[("lstm", "gru"), "mean"] == pytest.approx(0.45) and means.loc[("lstm", "gru"), "pairs"] == 4
    assert means.loc[("lstm", "gru"), "kind"] == "between"
    # a dynamic-evaluation predictor is its own family; an id of another form is "other"
    assert ("lstm+dyn", "lstm+dyn") not in means.index and ("lstm", "lstm+dyn") in means.index
    assert ("other", "other") not in means.index and ("lstm", "other") in means.index
    embedding = embed(m, seed=0)
    fig = plot_embedding(embedding, [tmp_path / "tsne.png"], title="demo", agreement=m)
    tsne, matrix = fig.axes[0], fig.axes[1]
    drawn = matrix.get_images()[0].get_array()
    assert drawn.shape == (6, 6) and np.ma.getmaskarray(np.diag(drawn)).all()  # the diagonal does not set the scale
    # by family (a predictor beside its architecture), then depth and size; other ids last
    assert [t.get_text() for t in matrix.get_yticklabels()] == ["lstm-1x8", "lstm-2x8", "lstm-1x8+dyn", "gru-1x8",
                                                                "gru-2x8", "nnn-2"]
    note = " ".join(t.get_text() for t in fig.texts)
    assert "within: LSTM 0.800 (1 pair), GRU 0.700 (1 pair)" in note and "LSTM-GRU 0.450" in note
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # the saved figure's canvas is detached: draw it again as it was saved
    canvas.draw()
    renderer = canvas.get_renderer()
    legend = tsne.get_legend().get_window_extent(renderer)
    assert not legend.overlaps(matrix.get_window_extent(renderer)) and not legend.overlaps(tsne.get_window_extent(renderer))
