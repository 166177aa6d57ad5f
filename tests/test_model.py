import pytest
import torch

from rnnlens.model import RNN_ARCHS, ModelSpec, count_parameters, match_hidden_size, parse_model_id
from rnnlens.recurrent import CharRNN


@pytest.mark.parametrize("arch", RNN_ARCHS)
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_parameter_count_matches_module(arch, layers):
    model = CharRNN(ModelSpec(arch, layers, 13, 29))
    assert sum(p.numel() for p in model.parameters()) == count_parameters(arch, layers, 13, 29)


def test_lstm_one_layer_matches_itself_and_paper_budgets():
    # the paper: 1-layer LSTMs of 64..512 cells have ~50K, 130K, 400K, 1.3M parameters (vocabulary 87)
    for size, approx in [(64, 50e3), (128, 130e3), (256, 400e3), (512, 1.3e6)]:
        hidden, params, budget = match_hidden_size("lstm", 1, size, 87)
        assert hidden == size and params == budget
        assert 0.85 < params / approx < 1.15


@pytest.mark.parametrize("arch", RNN_ARCHS)
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_matched_hidden_size_is_the_closest(arch, layers):
    hidden, params, budget = match_hidden_size(arch, layers, 128, 87)
    brute = min(range(1, 1000), key=lambda h: (abs(count_parameters(arch, layers, h, 87) - budget), h))
    assert hidden == brute
    assert abs(params / budget - 1) < 0.02


def test_model_id_parsing():
    # the grammar alone: any architecture name parses; the registry says whether it is known
    assert parse_model_id("gru-3x256") == ("gru", 3, 256)
    assert parse_model_id("gru-3x256+dyn") == ("gru", 3, 256)
    assert parse_model_id("my_gru2-1x64") == ("my_gru2", 1, 64)
    for bad in ("lstm64", "LSTM-1x64", "lstm-1x", "lstm-x64", "2lstm-1x64"):
        with pytest.raises(ValueError, match="ARCH-LAYERSxSIZE"):
            parse_model_id(bad)
    from rnnlens import archs
    from rnnlens.errors import InputError

    with pytest.raises(InputError, match="unknown architecture 'mamba'.*architectures:"):
        archs.load("mamba")


def test_forward_shapes_and_state_carry():
    model = CharRNN(ModelSpec("lstm", 2, 8, 5))
    x = torch.randint(0, 5, (3, 7))
    logits, state = model(x)
    assert logits.shape == (3, 7, 5)
    # carrying the state over a split sequence equals one pass over the whole sequence
    a, s = model(x[:, :4])
    b, _ = model(x[:, 4:], s)
    assert torch.allclose(torch.cat([a, b], 1), logits, atol=1e-6)
