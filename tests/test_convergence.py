"""Unconverged training is reported: a warning in the training log, the verdict in the model's metadata, a mark
in Table 1, and a note from the analyses that pick "the best" model."""
import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import markov_text
from rnnlens import convergence
from rnnlens.cli import main as rnnlens_main
from rnnlens.corpus import PreparedCorpus
from rnnlens.evaluate import evaluate
from rnnlens.model import ModelSpec, load_model, models_table
from rnnlens.predictions import read_meta
from rnnlens.tables import table1, table1_markdown
from rnnlens.train import TrainConfig, train


def test_verdicts():
    # max_epochs reached while the best validation loss fell 5% per epoch: not converged
    falling = convergence.assess([2.0, 1.9, 1.805], max_epochs=3, patience_exhausted=False, tolerance=0.01)
    assert not falling["converged"] and falling["stopped_by"] == "max_epochs"
    assert falling["improvement_per_epoch"] == pytest.approx(0.05, abs=1e-3)
    # the same curve with a looser tolerance, or flattening out, or ended by early stopping: converged
    assert convergence.assess([2.0, 1.9, 1.805], 3, False, tolerance=0.06)["converged"]
    assert convergence.assess([2.0, 1.9, 1.899, 1.8985], 4, False, 0.01)["converged"]
    assert convergence.assess([2.0, 1.9, 1.95, 1.96], 10, True, 0.01)["stopped_by"] == "early_stopping"
    # one epoch only: judged against the loss before training
    assert not convergence.assess([2.5], 1, False, 0.01, initial_loss=math.log(60))["converged"]
    message = convergence.warning("lstm-2x128", falling)
    assert "training.max_epochs" in message and "5.0% per epoch" in message and "lstm-2x128" in message
    assert convergence.warning("x", convergence.assess([2.0, 1.99], 2, True)) is None


def _train(data_json, out, model_id, caplog, **settings):
    """-> (corpus, the records training logged)."""
    corpus = PreparedCorpus.load(data_json)
    cfg = TrainConfig(batch_size=8, seq_len=20, learning_rate=1e-2, checkpoint_seconds=1e9, log_seconds=1e9,
                      **settings)
    spec = ModelSpec("lstm", 1, 16, corpus.vocab_size)
    out.mkdir(parents=True)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rnnlens"):
        assert train(cfg, corpus, spec, out / "model.pt", out / "history.csv", out / "checkpoint.pt",
                     meta={"model_id": model_id, "corpus": corpus.name}) == 0
    return corpus, list(caplog.records)


def _warnings(records):
    return [r.getMessage() for r in records if r.levelno == logging.WARNING]


def test_max_epochs_while_improving_warns_and_table1_marks_it(prepared, tmp_path, capsys, caplog):
    torch.set_num_threads(1)
    data = prepared(markov_text(8000))
    # two epochs of a model that learns fast: the validation loss is still falling steeply
    corpus, log_short = _train(data, tmp_path / "short", "lstm-1x16", caplog, max_epochs=2)
    warnings = _warnings(log_short)
    assert len(warnings) == 1 and "lstm-1x16 has not converged" in warnings[0]
    assert "raise training.max_epochs" in warnings[0]
    _, extra = load_model(tmp_path / "short" / "model.pt")
    assert extra["converged"] is False and extra["convergence"]["stopped_by"] == "max_epochs"
    hist = pd.read_csv(tmp_path / "short" / "history.csv")
    assert extra["convergence"]["improvement_per_epoch"] > 0.01
    assert hist.val_loss.iloc[-1] < hist.val_loss.iloc[0]
    # the same run judged with a tolerance above its improvement is converged, and says nothing
    rate = extra["convergence"]["improvement_per_epoch"]
    _, log_loose = _train(data, tmp_path / "loose", "lstm-1x16", caplog, max_epochs=2,
                          convergence_tolerance=min(0.99, rate * 2))
    assert not _warnings(log_loose)
    assert load_model(tmp_path / "loose" / "model.pt")[1]["converged"] is True

    # evaluation carries the verdict; Table 1 marks the unconverged model, not the other
    preds = []
    for name, model_id in (("short", "lstm-1x16"), ("loose", "gru-1x16")):
        model, extra = load_model(tmp_path / name / "model.pt")
        preds.append(tmp_path / f"{model_id}.parquet")
        evaluate(model, extra, corpus, preds[-1], model_id, streams=4, warmup=50)
    assert read_meta(preds[0])["converged"] is False and read_meta(preds[1])["converged"] is True
    models_csv = tmp_path / "models.csv"
    pd.DataFrame(models_table(corpus.name, corpus.vocab_size, ["lstm", "gru"], [1], [16])).to_csv(models_csv,
                                                                                                  index=False)
    df = table1(preds, [models_csv])
    assert df.set_index("model").converged.to_dict() == {"lstm-1x16": False, "gru-1x16": True}
    md = table1_markdown(df)
    assert "| lstm-1x16 | 16 |" in md and "| no \u2020 |" in md and "| yes |" in md
    assert "\u2020 not converged" in md and "raise training.max_epochs" in md
    assert "ours (paper)" not in md  # the paper has no values for this corpus

    # the analyses' pick of "the best LSTM" says its pick is unconverged
    df.to_csv(tmp_path / "table1.csv", index=False)
    capsys.readouterr()
    assert rnnlens_main(["pick", "--table1", str(tmp_path / "table1.csv"), "--corpus", corpus.name,
                         "--arch", "lstm"]) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith("lstm-1x16.parquet")
    assert "lstm-1x16" in err and "has not converged" in err and "training.max_epochs" in err
    assert convergence.label("lstm-1x16", read_meta(preds[0])) == "lstm-1x16 (unconverged)"
    assert convergence.label("gru-1x16", read_meta(preds[1])) == "gru-1x16"
