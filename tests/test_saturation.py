import numpy as np
import pandas as pd
import pytest
import torch

from rnnlens.model import ModelSpec
from rnnlens.recurrent import KINDS, CharRNN, LayerwiseRunner
from rnnlens.saturation_plot import plot_saturation
from rnnlens.saturation import (SaturationCounter, gates_of, read_table, saturation_fractions, summarize,
                                write_table)


def test_fractions_on_hand_set_values():
    # 4 steps x 3 units; thresholds are strict: 0.1 and 0.9 themselves are not saturated
    values = np.array([[0.05, 0.95, 0.10],
                       [0.00, 0.91, 0.90],
                       [0.50, 0.20, 0.09],
                       [0.99, 0.05, 0.91]])
    left, right = saturation_fractions(values)
    np.testing.assert_allclose(left, [0.5, 0.25, 0.25])
    np.testing.assert_allclose(right, [0.25, 0.5, 0.25])


def hand_set_acts(steps_values):
    """Two layers of LSTM-shaped activations (batch 2, time 3, hidden 2) from a gate -> values function."""
    acts = []
    for k in range(2):
        layer = {}
        for g in "ifogch":
            layer[g] = torch.tensor(steps_values(k, g), dtype=torch.float32)
        acts.append(layer)
    return acts


def test_counter_streams_chunks_and_ignores_padding():
    # forget gate of layer 1 always 0.95 on unit 0 and 0.05 on unit 1; padding rows hold values that would count
    def values(k, g):
        v = np.full((2, 3, 2), 0.5)
        if g == "f" and k == 0:
            v[..., 0], v[..., 1] = 0.95, 0.05
        if g == "i" and k == 1:
            v[:, :2, 0] = 0.99  # 2 of 3 steps right-saturated per stream
        return v

    valid = torch.tensor([[True, True, True], [True, True, False]])
    counter = SaturationCounter(gates_of(KINDS["lstm"])[0], 2, 2)
    counter.update(hand_set_acts(values), valid)
    counter.update(hand_set_acts(values), torch.ones(2, 3, dtype=torch.bool))
    table = counter.table("m")
    assert len(table) == 2 * 3 * 2 and set(table.gate) == {"input", "forget", "output"}
    assert (table.steps == 11).all()
    row = table.set_index(["layer", "gate", "unit"])
    assert row.loc[(1, "forget", 0), "frac_right"] == 1 and row.loc[(1, "forget", 0), "frac_left"] == 0
    assert row.loc[(1, "forget", 1), "frac_left"] == 1
    # layer 2 input unit 0: streams have 2 saturated of 3 steps; the padded step (t=2 of stream 1) is not saturated
    # anyway, so 4 of 5 valid steps in chunk 1 + 4 of 6 in chunk 2 -> 8 / 11
    assert row.loc[(2, "input", 0), "frac_right"] == pytest.approx(8 / 11)
    assert row.loc[(2, "output", 1), "frac_right"] == 0


def test_counter_on_a_model_matches_direct_fractions(tmp_path):
    torch.manual_seed(0)
    model = CharRNN(ModelSpec("gru", 2, 8, 7)).eval()
    model.init_uniform(1.0)
    idx = torch.randint(0, 7, (3, 50))
    acts, _ = LayerwiseRunner(model).run(idx)
    counter = SaturationCounter(gates_of(KINDS["gru"])[0], 2, 8)
    counter.update(acts)
    table = counter.table("gru-2x8")
    for k in range(2):
        for key, name in (("r", "reset"), ("z", "update")):
            left, right = saturation_fractions(acts[k][key].reshape(-1, 8).numpy())
            sub = table[(table.layer == k + 1) & (table.gate == name)].sort_values("unit")
            np.testing.assert_allclose(sub.frac_left, left)
            np.testing.assert_allclose(sub.frac_right, right)
    path = write_table(table, tmp_path / "saturation.parquet", {"model": "gru-2x8"})
    back = read_table(path)
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    out = plot_saturation([back], tmp_path / "fig.png")
    assert out.stat().st_size > 10_000 and (tmp_path / "fig.pdf").stat().st_size > 1000


def test_summary_shares():
    table = pd.DataFrame({
        "model": "m", "layer": [1, 1, 1, 1, 2, 2], "gate": "forget", "unit": [0, 1, 2, 3, 0, 1],
        "frac_left": [0.0, 0.02, 0.5, 0.95, 0.0, 0.0], "frac_right": [0.95, 0.92, 0.1, 0.0, 0.05, 0.99], "steps": 10})
    s = summarize(table).set_index("layer")
    assert s.loc[1, "units"] == 4
    assert s.loc[1, "share_right_over_90"] == 0.5 and s.loc[1, "share_left_over_90"] == 0.25
    assert s.loc[2, "share_right_over_90"] == 0.5 and s.loc[2, "share_rarely_saturated"] == 0.5
    assert s.loc[1, "mean_frac_left"] == pytest.approx((0.0 + 0.02 + 0.5 + 0.95) / 4)


def test_gru_figure_plots_the_papers_update_gate():
    """PyTorch's z weighs h_prev; the paper's z weighs the candidate: the figure plots 1 - z, labelled."""
    from rnnlens.saturation_plot import draw_saturation

    table = pd.DataFrame({
        "model": "gru-1x4", "layer": 1, "gate": ["reset", "update"], "unit": [0, 0],
        "frac_left": [0.02, 0.03], "frac_right": [0.01, 0.96], "steps": 100})
    fig = draw_saturation([table], corpus="toy")
    reset_ax, update_ax = fig.axes[:2]
    # a PyTorch z right-saturated 96% of the time (keeps h_prev) is a paper z left-saturated 96% of the time
    x, y = update_ax.collections[0].get_offsets()[0]
    assert (x, y) == pytest.approx((0.03, 0.96))
    assert "paper's z = 1 - PyTorch z" in update_ax.get_title()
    assert tuple(reset_ax.collections[0].get_offsets()[0]) == pytest.approx((0.01, 0.02))
    assert "after the matrix product" in reset_ax.get_title()
