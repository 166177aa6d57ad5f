"""Damaged inputs (a job killed mid-copy, a full disk) give one line naming the file and the fix, not a traceback."""
import numpy as np
import pytest
import torch

from conftest import markov_text
from rnnlens.cli import main
from rnnlens.corpus import PreparedCorpus
from rnnlens.model import ModelSpec, save_model
from rnnlens.recurrent import CharRNN
from rnnlens.predictions import write_predictions


def one_line_error(capsys, argv, path):
    """Run `rnnlens argv`: it must fail with a single error line naming `path` and saying to delete it and rerun."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"rnnlens {argv[0]}: error: ") and str(path) in err and "delete" in err.lower(), err
    return err


def cut(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture
def toy(prepared, tmp_path):
    """data.json of a tiny corpus, a model trained on nothing and two predictions files of its test split."""
    data = prepared(markov_text(3000))
    corpus = PreparedCorpus.load(data)
    torch.manual_seed(0)
    save_model(tmp_path / "model.pt", CharRNN(ModelSpec("lstm", 1, 8, corpus.vocab_size)), {"model": "lstm-1x8"})
    target = corpus.split("test")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_predictions(tmp_path / f"{name}.parquet", target, rng.uniform(0.05, 1, len(target)),
                          rng.integers(0, 256, len(target)), meta={"model": name, "corpus": "toy"})
    return data, tmp_path


def test_a_truncated_model_file(toy, capsys):
    data, d = toy
    cut(d / "model.pt")
    err = one_line_error(capsys, ["evaluate", "--model", d / "model.pt", "--data", data, "--out", d / "p.parquet",
                                  "--streams", 2, "--warmup", 10], d / "model.pt")
    assert "not a complete PyTorch file" in err and not (d / "p.parquet").exists()


def test_a_truncated_predictions_file(toy, tmp_path, capsys):
    _, d = toy
    cut(d / "a.parquet")
    out = ["--csv-out", tmp_path / "x.csv", "--fig-out", tmp_path / "x.png"]
    err = one_line_error(capsys, ["perchar", "--a", d / "a.parquet", "--b", d / "b.parquet", *out, "--overlap-out",
                                  tmp_path / "x.json"], d / "a.parquet")
    assert "not a complete Parquet file" in err
    one_line_error(capsys, ["agreement", "--predictions", d / "b.parquet", d / "a.parquet", "--embedding-out",
                            tmp_path / "e.csv", *out], d / "a.parquet")
    (d / "b.parquet").write_bytes(b"")  # an empty file too
    one_line_error(capsys, ["agreement", "--predictions", d / "b.parquet", "--embedding-out", tmp_path / "e.csv",
                            *out], d / "b.parquet")


def test_an_empty_corpus(toy, tmp_path, capsys):
    data, d = toy
    corpus_bin = data.with_name("corpus.bin")
    corpus_bin.write_bytes(b"")
    # preparing it, and every stage that reads a corpus prepared before it was emptied
    one_line_error(capsys, ["prepare", "--corpus", "toy", "--corpus-bin", corpus_bin, "--split",
                            '{"train": 0.8, "val": 0.1, "test": 0.1}', "--out", tmp_path / "data.json"], corpus_bin)
    assert not (tmp_path / "data.json").exists()
    (tmp_path / "models.csv").write_text("corpus,model,hidden\ntoy,lstm-1x8,8\n")
    one_line_error(capsys, ["train", "--data", data, "--models-table", tmp_path / "models.csv", "--model", "lstm-1x8",
                            "--out-model", tmp_path / "m.pt", "--out-history", tmp_path / "h.csv", "--checkpoint",
                            tmp_path / "c.pt"], corpus_bin)
    one_line_error(capsys, ["evaluate", "--model", d / "model.pt", "--data", data, "--out", tmp_path / "p.parquet"],
                   corpus_bin)


def test_each_is_an_input_error(toy):
    from rnnlens.errors import InputError
    from rnnlens.io import torch_load
    from rnnlens.predictions import read_meta

    data, d = toy
    cut(d / "model.pt")
    cut(d / "a.parquet")
    data.with_name("corpus.bin").write_bytes(b"")
    for load, path in ((torch_load, d / "model.pt"), (read_meta, d / "a.parquet"), (PreparedCorpus.load, data)):
        with pytest.raises(InputError):
            load(path)
