"""Per-character comparison of two predictions files and the overlap of their errors."""

import json

import numpy as np
import pandas as pd
import pytest

from rnnlens.cli import run
from rnnlens.perchar import error_overlap, per_character, readable_byte
from rnnlens.predictions import write_predictions

TARGET = np.frombuffer(b"ab\n a}b\n}a", np.uint8)
P_A = np.array([0.9, 0.6, 0.8, 0.4, 0.7, 0.9, 0.2, 0.6, 0.95, 0.5], np.float32)
P_B = np.array([0.8, 0.7, 0.3, 0.4, 0.6, 0.1, 0.3, 0.2, 0.15, 0.1], np.float32)


def test_per_character_means_sorted_by_difference():
    df = per_character(TARGET, P_A, P_B).set_index("char")
    assert df.loc["a", "count"] == 3
    assert df.loc["a", "mean_p_a"] == pytest.approx((0.9 + 0.7 + 0.5) / 3)
    assert df.loc["a", "mean_p_b"] == pytest.approx((0.8 + 0.6 + 0.1) / 3)
    assert df.loc["}", "mean_p_a"] == pytest.approx((0.9 + 0.95) / 2)
    assert df.loc["\\n", "count"] == 2 and df.loc["\u2423", "count"] == 1
    order = per_character(TARGET, P_A, P_B)
    assert order["char"].tolist()[0] == "}"  # the largest gain of A
    assert order["diff"].is_monotonic_decreasing
    np.testing.assert_allclose(order["diff"], order["mean_p_a"] - order["mean_p_b"])


def test_error_overlap_counts():
    counts = error_overlap(P_A, P_B)
    # wrong (p < 0.5): A at 3, 6 (p = 0.5 at 9 is not an error); B at 2, 3, 5, 6, 7, 8, 9
    assert counts == {"both_wrong": 2, "only_a_wrong": 0, "only_b_wrong": 5, "neither_wrong": 3, "total": 10,
                      "a_wrong": 2, "b_wrong": 7}


def test_readable_bytes():
    assert [readable_byte(b) for b in b"\n\r\t a$}"] == ["\\n", "\\r", "\\t", "\u2423", "a", "$", "}"]
    assert readable_byte(0xE2) == "0xE2" and readable_byte(0) == "0x00"


def test_cli_writes_csv_figure_and_overlap(tmp_path):
    rng = np.random.default_rng(0)
    target = rng.choice(np.frombuffer(b"ab $_\n}", np.uint8), size=2000)
    p_a, p_b = rng.random(2000).astype(np.float32), rng.random(2000).astype(np.float32)
    write_predictions(tmp_path / "a.parquet", target, p_a, meta={"model": "lstm-3x512", "corpus": "toy"})
    write_predictions(tmp_path / "b.parquet", target, p_b, meta={"model": "ngram-20", "corpus": "toy"})
    rc = run(["perchar", "--a", str(tmp_path / "a.parquet"), "--b", str(tmp_path / "b.parquet"), "--label-b", "20-gram",
              "--min-count", "10", "--csv-out", str(tmp_path / "perchar.csv"), "--fig-out", str(tmp_path / "pc.png"),
              "--overlap-out", str(tmp_path / "overlap.json")])
    assert rc == 0
    df = pd.read_csv(tmp_path / "perchar.csv", keep_default_na=False)
    assert len(df) == 7 and df["count"].sum() == 2000
    assert df["label_a"].eq("lstm-3x512").all() and df["label_b"].eq("20-gram").all()
    assert set(df["char"]) == {"a", "b", "\u2423", "$", "_", "\\n", "}"}
    overlap = json.loads((tmp_path / "overlap.json").read_text())
    assert overlap["both_wrong"] == int(((p_a < 0.5) & (p_b < 0.5)).sum())
    assert sum(overlap[k] for k in ("both_wrong", "only_a_wrong", "only_b_wrong", "neither_wrong")) == 2000
    assert (tmp_path / "pc.png").stat().st_size > 1000 and (tmp_path / "pc.pdf").stat().st_size > 1000


def test_cli_rejects_files_of_different_test_sets(tmp_path):
    write_predictions(tmp_path / "a.parquet", TARGET, P_A)
    write_predictions(tmp_path / "b.parquet", TARGET[:5], P_B[:5])
    with pytest.raises(ValueError, match="same test characters"):
        run(["perchar", "--a", str(tmp_path / "a.parquet"), "--b", str(tmp_path / "b.parquet"), "--csv-out",
             str(tmp_path / "x.csv"), "--fig-out", str(tmp_path / "x.png"), "--overlap-out", str(tmp_path / "o.json")])


def test_cli_takes_several_seeds_of_a_model_and_widens_its_intervals(tmp_path):
    rng = np.random.default_rng(6)
    target = rng.choice(np.frombuffer(b"ab }", np.uint8), size=3000)
    base = rng.random(3000)
    for seed, shift in ((1, -0.15), (2, 0.15)):  # two training seeds of one model that disagree
        write_predictions(tmp_path / f"a{seed}.parquet", target, np.clip(base + shift, 0, 1).astype(np.float32),
                          meta={"model": "lstm-1x8", "corpus": "toy"})
    write_predictions(tmp_path / "b.parquet", target, rng.random(3000).astype(np.float32),
                      meta={"model": "ngram-3", "corpus": "toy"})

    def perchar(*a_files, name):
        run(["perchar", "--a", *map(str, a_files), "--b", str(tmp_path / "b.parquet"), "--min-count", "10",
             "--resamples", "300", "--csv-out", str(tmp_path / f"{name}.csv"), "--fig-out", str(tmp_path / f"{name}.png"),
             "--overlap-out", str(tmp_path / f"{name}.json")])
        return pd.read_csv(tmp_path / f"{name}.csv", keep_default_na=False).set_index("char")

    one = perchar(tmp_path / "a1.parquet", name="one")
    two = perchar(tmp_path / "a1.parquet", tmp_path / "a2.parquet", name="two")
    assert one["seeds_a"].eq(1).all() and two["seeds_a"].eq(2).all() and two["seeds_b"].eq(1).all()
    for char in two.index:  # the model is the mean of its seeds ...
        at = target == ord(char if char != "\u2423" else " ")
        p1, p2 = (pd.read_parquet(tmp_path / f"a{s}.parquet")["p"].to_numpy(np.float64)[at] for s in (1, 2))
        assert two.loc[char, "mean_p_a"] == pytest.approx((p1.mean() + p2.mean()) / 2)
    # ... and the seeds' disagreement widens its intervals well beyond those over positions alone
    width = lambda df: df["mean_p_a_ci_hi"] - df["mean_p_a_ci_lo"]  # noqa: E731
    assert (width(two) > 2 * width(one)).all()
    overlap = json.loads((tmp_path / "two.json").read_text())
    assert overlap["seeds_a"] == 2 and overlap["total"] == 3000
    write_predictions(tmp_path / "other.parquet", target, base.astype(np.float32), meta={"model": "gru-1x8"})
    with pytest.raises(ValueError, match="seeds of one model"):
        perchar(tmp_path / "a1.parquet", tmp_path / "other.parquet", name="bad")
