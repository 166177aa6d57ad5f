import pandas as pd
import pytest

from rnnlens.predictions import write_predictions
from rnnlens.picks import pick_model
from rnnlens.tables import table1, table1_markdown, table2


def _pred(path, corpus, model, p, **meta):
    write_predictions(path, [65] * len(p), p, meta={"corpus": corpus, "model": model, **meta})


def test_table1_puts_paper_values_beside_ours_and_picks_best(tmp_path):
    models = tmp_path / "models.csv"
    pd.DataFrame([
        {"corpus": "wp", "model": "lstm-1x64", "arch": "lstm", "layers": 1, "size": 64, "hidden": 64, "params": 44823},
        {"corpus": "wp", "model": "lstm-2x512", "arch": "lstm", "layers": 2, "size": 512, "hidden": 308, "params": 1277363},
        {"corpus": "wp", "model": "gru-1x64", "arch": "gru", "layers": 1, "size": 64, "hidden": 77, "params": 45132},
    ]).to_csv(models, index=False)
    preds = []
    for model, p in (("lstm-1x64", 0.3), ("lstm-2x512", 0.5), ("gru-1x64", 0.4)):
        preds.append(tmp_path / f"{model}.parquet")
        _pred(preds[-1], "wp", model, [p] * 10)
    df = table1(preds, [models], {"wp": "warpeace"})
    row = df.set_index("model").loc["lstm-1x64"]
    assert row.paper_test_loss_recalled == 1.449
    assert row.difference == pytest.approx(round(-__import__("math").log(0.3) - 1.449, 4), abs=1e-4)
    md = table1_markdown(df)
    assert "recalled" in md and "Best: lstm-2x512" in md
    df.to_csv(tmp_path / "t1.csv", index=False)
    assert pick_model(tmp_path / "t1.csv", "wp", "lstm") == "lstm-2x512"
    assert pick_model(tmp_path / "t1.csv", "wp", "lstm", size="min") == "lstm-1x64"
    with pytest.raises(ValueError, match="no model"):
        pick_model(tmp_path / "t1.csv", "wp", "rnn")

    ngrams = []
    for n, p in ((1, 0.1), (20, 0.35)):
        ngrams.append(tmp_path / f"ngram-{n}.parquet")
        _pred(ngrams[-1], "wp", f"ngram-{n}", [p] * 10, n=n)
    t2 = table2(ngrams, [], tmp_path / "t1.csv")
    assert list(t2.n) == [1, 20] and t2.best_rnn.iloc[0] == "lstm-2x512"
    assert t2.set_index("n").loc[20, "ngram_test_loss"] == pytest.approx(1.0498, abs=1e-4)


def test_table1_shows_each_models_deviation_from_its_budget(tmp_path):
    """The long table's 'vs budget' column reads the models table's deviation; a models table made before it had
    one shows a dash."""
    from rnnlens.model import models_table

    models = tmp_path / "models.csv"
    grid = pd.DataFrame(models_table("wp", 87, ["lstm", "gru", "transformer"], [1], [64]))
    grid.to_csv(models, index=False)
    preds = []
    for model in grid.model:
        preds.append(tmp_path / f"{model}.parquet")
        _pred(preds[-1], "wp", model, [0.4] * 10)
    df = table1(preds, [models], {"wp": "warpeace"})
    md = table1_markdown(df)
    assert "| model | hidden | params | vs budget | test loss |" in md
    for row in grid.itertuples():
        assert f"| {row.model} | {row.hidden} | {row.params:,} | {row.deviation_pct:+.2f}% | " in md
    assert df.set_index("model").loc["gru-1x64", "deviation_pct"] == grid.set_index("model").loc["gru-1x64",
                                                                                                  "deviation_pct"]
    grid.drop(columns=["deviation", "deviation_pct"]).to_csv(models, index=False)
    assert "| lstm-1x64 | 64 | 44,823 | – | " in table1_markdown(table1(preds, [models], {"wp": "warpeace"}))
