import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnlens.corpus import PreparedCorpus
from rnnlens.internals import excerpt_windows, parse_cells, stream_test_internals
from rnnlens.model import ModelSpec
from rnnlens.recurrent import ACTIVATIONS, CharRNN, LayerwiseRunner, reference_internals

VOCAB = 11


def tiny_model(arch, layers, hidden=12, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    model = CharRNN(ModelSpec(arch, layers, hidden, VOCAB)).to(dtype).eval()
    model.init_uniform(0.6)  # larger than training's 0.08 so gates reach saturation and errors would show
    return model


def random_state(arch, layers, batch, hidden, dtype):
    h = 0.5 * torch.randn(layers, batch, hidden, dtype=dtype)
    return (h, 2 * torch.randn(layers, batch, hidden, dtype=dtype)) if arch == "lstm" else h


@pytest.mark.parametrize("method", ["loop", "fused"])
@pytest.mark.parametrize("arch", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_internals_match_step_by_step_reference(arch, layers, method):
    model = tiny_model(arch, layers)
    runner = LayerwiseRunner(model, method)
    idx = torch.randint(0, VOCAB, (3, 41))
    state = random_state(arch, layers, 3, 12, torch.float64)
    fast_state = ref_state = fused_state = state
    for start in range(0, 41, 13):  # chunks with carried state
        x = idx[:, start:start + 13]
        fast, fast_state = runner.run(x, fast_state)
        ref, ref_state = reference_internals(model, x, ref_state)
        assert len(fast) == layers
        for k in range(layers):
            assert set(fast[k]) == set(ACTIVATIONS[arch])
            for name in ACTIVATIONS[arch]:
                assert fast[k][name].shape == (3, x.shape[1], 12)
                torch.testing.assert_close(fast[k][name], ref[k][name], atol=1e-10, rtol=0)
        # the top layer's h is what the model's own fused kernels compute
        out, fused_state = model.rnn(F.one_hot(x, VOCAB).double(), fused_state)
        torch.testing.assert_close(fast[-1]["h"], out, atol=1e-10, rtol=0)
    for a, b in zip(torch.utils._pytree.tree_leaves(fast_state), torch.utils._pytree.tree_leaves(fused_state)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_float32_internals_within_1e5_of_float64_reference(arch):
    model64 = tiny_model(arch, 2, hidden=24)
    model32 = tiny_model(arch, 2, hidden=24).float()
    idx = torch.randint(0, VOCAB, (4, 200))
    ref, _ = reference_internals(model64, idx)
    for method in ("loop", "fused"):
        fast, _ = LayerwiseRunner(model32, method).run(idx)
        for k in range(2):
            for name in ACTIVATIONS[arch]:
                err = (fast[k][name].double() - ref[k][name]).abs().max().item()
                assert err < 1e-5, (method, k, name, err)


def test_gates_are_pytorch_gates_and_lstm_equations_hold():
    model = tiny_model("lstm", 1)
    acts, _ = LayerwiseRunner(model).run(torch.randint(0, VOCAB, (2, 30)))
    a = acts[0]
    c_prev = torch.cat([torch.zeros(2, 1, 12, dtype=a["c"].dtype), a["c"][:, :-1]], dim=1)
    torch.testing.assert_close(a["c"], a["f"] * c_prev + a["i"] * a["g"])
    torch.testing.assert_close(a["h"], a["o"] * torch.tanh(a["c"]))
    for gate in "ifo":
        assert 0 < a[gate].min() and a[gate].max() < 1
    gru = tiny_model("gru", 1)
    g, _ = LayerwiseRunner(gru).run(torch.randint(0, VOCAB, (2, 30)))
    h_prev = torch.cat([torch.zeros(2, 1, 12, dtype=torch.float64), g[0]["h"][:, :-1]], dim=1)
    torch.testing.assert_close(g[0]["h"], (1 - g[0]["z"]) * g[0]["n"] + g[0]["z"] * h_prev)


def make_corpus(tmp_path, data, fractions=(0.6, 0.2, 0.2)):
    data = np.asarray(data, dtype=np.uint8)
    n = len(data)
    a, b = int(n * fractions[0]), int(n * (fractions[0] + fractions[1]))
    (tmp_path / "corpus.bin").write_bytes(data.tobytes())
    meta = {"corpus": "synthetic", "size": n, "vocab": sorted(set(data.tolist())),
            "pieces": {"train": [[0, a]], "val": [[a, b]], "test": [[b, n]]}}
    (tmp_path / "data.json").write_text(json.dumps(meta))
    return PreparedCorpus.load(tmp_path / "data.json")


def test_stream_covers_each_test_position_once_with_full_context(tmp_path):
    rng = np.random.default_rng(0)
    corpus = make_corpus(tmp_path, rng.integers(97, 97 + VOCAB, 1000))
    model = tiny_model("lstm", 2)
    start, end = corpus.pieces["test"][0]
    # warm-up reaching back to the corpus start: every stream sees its whole prefix, like one sequential pass
    seen = np.zeros(end - start, dtype=int)
    streamed = np.zeros((end - start, 12))
    for chunk in stream_test_internals(model, corpus, streams=7, warmup=10**6, chunk=9):
        valid = chunk.valid
        seen[chunk.pos[valid]] += 1
        streamed[chunk.pos[valid]] = chunk.acts[1]["c"].numpy()[valid]
    assert (seen == 1).all()
    idx = torch.from_numpy(corpus.encode(corpus.data))[None]
    ref, _ = reference_internals(model, idx)
    np.testing.assert_allclose(streamed, ref[1]["c"][0, start:end].numpy(), atol=1e-9)


def test_stream_layout_and_helpers():
    assert parse_cells("1:17, 2:5") == [(1, 17), (2, 5)]
    with pytest.raises(ValueError, match="LAYER:UNIT"):
        parse_cells("1-17")
    assert excerpt_windows(1000, 3, 100) == [(0, 100), (450, 550), (900, 1000)]
