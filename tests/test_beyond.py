"""The architectures beyond the paper (transformer, LRU) and dynamic evaluation: parameter matching, causality,
the LRU's scan against its step loop, windowed evaluation, training, internals, and that dynamic evaluation never
learns from a byte before it has predicted it."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import markov_text
from rnnlens.corpus import PreparedCorpus
from rnnlens.dyneval import dynamic_predict, gradient_ms
from rnnlens.evaluate import batch_rows, predict_rows, predict_test
from rnnlens.lru import ByteLRU, scan
from rnnlens.model import (TOLERANCE, ModelSpec, build_model, count_parameters, load_model, match_budget,
                           models_table, save_model)
from rnnlens.train import TrainConfig, train
from rnnlens.transformer import ByteTransformer, window_blocks



def _spec(arch, layers=2, hidden=16, vocab=7, window=24, inner=0):
    extra = {"window": window, "heads": 2} if arch == "transformer" else {}
    return ModelSpec(arch, layers, hidden, vocab, inner=inner, **extra)


@pytest.mark.parametrize("arch", ["transformer", "lru"])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_parameter_count_matches_module_and_budget(arch, layers):
    for inner in (0, 37):  # the default shape (MLP 4 x hidden, state N = H) and a second width of its own
        model = build_model(_spec(arch, layers, hidden=24, vocab=29, inner=inner))
        assert sum(p.numel() for p in model.parameters()) == count_parameters(arch, layers, 24, 29, inner)
    for size in (64, 128, 256):
        hidden, inner, params, budget = match_budget(arch, layers, size, 87)
        # the width closest to the budget in the default shape (the LRU's any integer, the transformer's steps by 8
        # for its heads), then the second width (MLP, state size) brings the count within the tolerance
        candidates = range(8, 2000, 8) if arch == "transformer" else range(1, 2000)
        best = min(candidates, key=lambda h: (abs(count_parameters(arch, layers, h, 87) - budget), h))
        assert hidden == best and inner > 0
        assert abs(params / budget - 1) <= TOLERANCE
        closest = min(range(1, 8 * hidden), key=lambda i: abs(count_parameters(arch, layers, hidden, 87, i) - budget))
        assert inner == closest
    table = pd.DataFrame(models_table("wp", 87, [arch, "lstm"], [layers], [64]))
    assert set(table.model) == {f"{arch}-{layers}x64", f"lstm-{layers}x64"}


@pytest.mark.parametrize("arch", ["transformer", "lru"])
def test_the_second_width_is_trained_saved_and_loaded(prepared, tmp_path, arch):
    """`rnnlens train` builds the widths of its row of the models table, and the saved model loads as that model;
    a spec saved before there was a second width loads in the default shape."""
    import subprocess
    import sys

    from conftest import run_env

    data = prepared(markov_text(1500))
    spec_csv = tmp_path / "spec.csv"
    subprocess.run([sys.executable, "-m", "rnnlens", "models-table", "--data", str(data), "--archs", arch,
                    "--layers", "1", "--sizes", "16", "--out", str(spec_csv)], check=True, env=run_env())
    row = pd.read_csv(spec_csv).iloc[0]
    assert row.inner > 0 and abs(row.deviation_pct) <= 100 * TOLERANCE
    settings = {"batch_size": 4, "seq_len": 12, "max_epochs": 1, "window": 24, "heads": 2}
    out = tmp_path / "run"
    out.mkdir()
    subprocess.run([sys.executable, "-m", "rnnlens", "train", "--data", str(data), "--models-table", str(spec_csv),
                    "--model", row.model, "--settings", json.dumps(settings), "--threads", "1", "--out-model",
                    str(out / "model.pt"), "--out-history", str(out / "history.csv"), "--checkpoint",
                    str(out / "checkpoint.pt")], check=True, env=run_env(),
                   capture_output=True)
    model, _ = load_model(out / "model.pt")
    assert (model.spec.hidden, model.spec.inner) == (row.hidden, row.inner)
    assert sum(p.numel() for p in model.parameters()) == row.params
    x = torch.randint(0, model.spec.vocab_size, (2, 12))
    again, _ = load_model(out / "model.pt")
    assert torch.equal(model(x)[0], again(x)[0])
    old = _spec(arch, 1, 16, 11)  # inner 0: what every spec held before
    assert "inner" not in old.to_dict()
    save_model(tmp_path / "old.pt", build_model(old))
    assert sum(p.numel() for p in load_model(tmp_path / "old.pt")[0].parameters()) == count_parameters(arch, 1, 16, 11)


def test_transformer_is_causal():
    torch.manual_seed(0)
    model = ByteTransformer(_spec("transformer", 2, 16, 7, window=32)).eval()
    model.init_weights()
    x = torch.randint(0, 7, (3, 32))
    with torch.no_grad():
        base, _ = model(x)
        for t in (0, 9, 31):
            changed = x.clone()
            changed[:, t] = (changed[:, t] + 1) % 7
            out, _ = model(changed)
            # the output at column c predicts byte c + 1 from bytes 0..c: byte t may change only columns >= t
            assert torch.equal(out[:, :t], base[:, :t]), t
            assert not torch.allclose(out[:, t:], base[:, t:]), t
    with pytest.raises(ValueError, match="window"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_lru_scan_equals_step_loop():
    torch.manual_seed(1)
    lam = torch.exp(torch.complex(-torch.rand(11) * 0.5, torch.rand(11)))
    b = torch.randn(3, 77, 11, dtype=torch.complex64)
    x0 = torch.randn(3, 11, dtype=torch.complex64)
    x, ref = x0, []
    for t in range(77):
        x = lam * x + b[:, t]
        ref.append(x)
    assert (scan(lam, b, x0) - torch.stack(ref, 1)).abs().max() < 1e-5
    # the whole model: the training path (scan) and the inference path (step loop), with a carried state
    model = ByteLRU(_spec("lru", 2, 16, 7))
    model.init_weights()
    idx = torch.randint(0, 7, (4, 130))
    with torch.no_grad():
        logits_s, state_s = model(idx[:, :60], parallel=True)
        logits_s2, state_s = model(idx[:, 60:], state_s, parallel=True)
        logits_l, state_l = model(idx, parallel=False)
    assert (torch.cat([logits_s, logits_s2], 1) - logits_l).abs().max() < 1e-5
    assert (state_s - state_l).abs().max() < 1e-5


def test_window_blocks_predict_every_position_once_within_the_window():
    rows = [(100, 37), (300, 50), (5, 3)]
    blocks = window_blocks(rows, window=16, stride=6)
    covered = []
    for start, length, first, n, out in blocks:
        assert length <= 16
        targets = [start + first + 1 + j for j in range(n)]
        covered += targets
        for t in targets:
            assert 1 <= t - start <= 16  # context: bytes start .. t-1, at most the window
    expected = [p for s, n in rows for p in range(s, s + n)]
    assert covered == expected


def test_windowed_evaluation_equals_full_context_inside_the_window(prepared):
    corpus = PreparedCorpus.load(prepared(markov_text(3000)))
    torch.manual_seed(2)
    model = ByteTransformer(_spec("transformer", 2, 16, corpus.vocab_size, window=40)).eval()
    model.init_weights()
    encoded = torch.from_numpy(corpus.encode(corpus.data))
    rows = batch_rows(corpus.pieces["test"], 3)
    got = predict_rows(model, encoded, rows)
    # reference: each position alone, from exactly the window's bytes before it
    positions = np.concatenate([np.arange(s, s + n) for s, n in rows])
    blocks = {}
    for start, length, first, n, _ in window_blocks(rows, 40, 20):
        for j in range(n):
            blocks[start + first + 1 + j] = start
    with torch.no_grad():
        for k in (0, 1, 19, 20, 77, len(positions) - 1):
            t = positions[k]
            logits, _ = model(encoded[None, blocks[t] : t])
            ref = torch.log_softmax(logits[0, -1], -1)[encoded[t]].item()
            assert abs(got["logp"][k] - ref) < 1e-5
            assert t - blocks[t] >= 40 - 20 + 1  # at least window - stride + 1 bytes of context


@pytest.mark.parametrize("arch", ["transformer", "lru"])
def test_training_learns_and_evaluation_covers_the_test_split(prepared, tmp_path, arch):
    corpus = PreparedCorpus.load(prepared(markov_text(8000)))
    cfg = TrainConfig(batch_size=8, seq_len=32, max_epochs=6, optimizer="adamw", learning_rate=1e-2,
                      lr_warmup_steps=5, window=32, heads=2, val_streams=4, device="cpu")
    hidden, inner, params, _ = match_budget(arch, 1, 16, corpus.vocab_size)
    spec = ModelSpec(arch, 1, hidden, corpus.vocab_size, inner=inner,
                     **({"window": 32, "heads": 2} if arch == "transformer" else {}))
    assert train(cfg, corpus, spec, tmp_path / "m.pt", tmp_path / "h.csv", tmp_path / "c.pt") == 0
    history = pd.read_csv(tmp_path / "h.csv")
    # learnt some of the Markov structure (the tiny transformer, 8 wide, learns slowest)
    assert history.val_loss.iloc[-1] < min(history.val_loss.iloc[0], np.log(corpus.vocab_size) - 0.15)
    from rnnlens.model import load_model

    model, extra = load_model(tmp_path / "m.pt")
    assert sum(p.numel() for p in model.parameters()) == params  # the model matched to the budget, inner width too
    result = predict_test(model, corpus, streams=4, warmup=100)
    assert len(result["p"]) == corpus.split_size("test") and np.array_equal(result["target"], corpus.split("test"))
    assert abs(-np.log(result["p"]).mean() - history.val_loss.min()) < 0.3


@pytest.mark.parametrize("arch,rule,lr", [("lstm", "sgd", 0.5), ("transformer", "sgd", 0.5), ("lru", "sgd", 0.5),
                                         ("lstm", "rms", 0.01), ("transformer", "rms", 0.01)])
def test_dynamic_evaluation_never_uses_a_byte_before_predicting_it(prepared, arch, rule, lr):
    text = bytearray(markov_text(4000))
    path_a = prepared(bytes(text), name="a")
    k_corpus = PreparedCorpus.load(path_a)
    a_test = k_corpus.pieces["test"][0][0]
    t = a_test + 150  # a test byte in the middle of the third segment of 64
    vocab = bytes(k_corpus.vocab)
    text[t] = vocab[(vocab.index(text[t]) + 1) % len(vocab)]
    corpus_b = PreparedCorpus.load(prepared(bytes(text), name="b"))
    assert np.array_equal(k_corpus.vocab, corpus_b.vocab)
    torch.manual_seed(3)
    spec = _spec(arch, 1, 16, k_corpus.vocab_size, window=96)
    model = build_model(spec)
    model.init_weights(0.3)
    state = {k: v.clone() for k, v in model.state_dict().items()}  # dynamic evaluation adapts in place
    runs = []
    for corpus in (k_corpus, corpus_b):
        model.load_state_dict(state)
        runs.append(dynamic_predict(model, corpus, lr=lr, segment=64, warmup=50, rule=rule, ms_bytes=500))
    i = t - a_test  # index in the test split
    a, b = runs
    # everything predicted before byte t was read (and its own distribution) is the same ...
    assert np.array_equal(a["logp"][:i], b["logp"][:i])
    assert np.array_equal(a["p_argmax"][: i + 1], b["p_argmax"][: i + 1])
    # ... and what comes after the segment that holds it differs: it was learnt from (or read) after predicting it
    assert not np.allclose(a["logp"][192:], b["logp"][192:])
    # adaptation changes the predictions (against the static model)
    model.load_state_dict(state)
    static = predict_rows(model, torch.from_numpy(k_corpus.encode(k_corpus.data)), [(a_test, len(a["logp"]))],
                          warmup=50)
    assert not np.allclose(static["logp"][64:], a["logp"][64:], atol=1e-4)
    if arch != "transformer":  # the first segment is predicted with the trained weights, like static evaluation
        assert np.allclose(static["logp"][:64], a["logp"][:64], atol=1e-5)


def test_gradient_ms_reads_only_the_training_text_it_is_given(prepared):
    """The RMS rule's mean squared gradients come from the first ms_bytes of the training split: a byte that occurs
    only in the test split gets exactly zero on its input weights, the bytes that were read do not."""
    data = markov_text(4000, alphabet=b"ab c\n")
    data = data[:3600] + b"Z" * 50 + data[3650:]  # Z only in the test split (its last 10%)
    corpus = PreparedCorpus.load(prepared(data))
    torch.manual_seed(5)
    model = build_model(_spec("lstm", 1, 8, corpus.vocab_size))
    model.init_weights(0.3)
    encoded = torch.from_numpy(corpus.encode(corpus.data))
    ms = dict(zip((name for name, _ in model.named_parameters()),
                  gradient_ms(model, corpus, encoded, segment=50, warmup=20, max_bytes=1000)))
    column = ms["rnn.weight_ih_l0"].sum(0)  # per input byte (one-hot inputs)
    z = list(corpus.vocab).index(ord("Z"))
    assert column[z] == 0
    assert (torch.cat([column[:z], column[z + 1 :]]) > 0).all()
    assert all((m >= 0).all() for m in ms.values())


@pytest.mark.parametrize("arch", ["transformer", "lru"])
def test_internals_score_every_unit_and_skip_gates(prepared, tmp_path, arch, caplog):
    from rnnlens.internals import analyse_model

    data = markov_text(1500) + b"".join(b'x = f("ab") { y[%d] }\n' % i for i in range(80))
    corpus = PreparedCorpus.load(prepared(data))
    torch.manual_seed(4)
    model = build_model(_spec(arch, 2, 8, corpus.vocab_size, window=16, inner=12)).eval()
    model.init_weights(0.1)
    caplog.set_level("INFO", logger="rnnlens")
    paths = analyse_model(model, corpus, f"{arch}-2x8", tmp_path, cells=[(2, 3)], max_positions=300, streams=5,
                          warmup=50, chunk=40, windows=2, window_chars=60)
    units = 8 + 12 if arch == "transformer" else 2 * 12  # residual stream and MLP neurons; the state's re, im
    scores = pd.read_parquet(paths["cells"])
    assert scores.groupby(["layer", "unit"]).ngroups == 2 * units
    assert pd.read_parquet(paths["saturation"]).empty
    assert "has no gates" in caplog.text
    from rnnlens.cli import main

    assert main(["cell-pictures", "--dir", str(tmp_path), "--cells", "2:3"]) == 0
    assert (tmp_path / "cells.html").stat().st_size > 1000


def test_transformer_internals_match_the_model_on_its_window(prepared):
    """Every test position is read once, and the residual stream of the last block after reading byte t decodes to
    the model's own prediction from a window of window - stride + 1 .. window bytes ending at t."""
    from rnnlens.transformer import windowed_internals

    corpus = PreparedCorpus.load(prepared(markov_text(2000)))
    torch.manual_seed(5)
    model = build_model(_spec("transformer", 1, 8, corpus.vocab_size, window=16)).eval()
    model.init_weights()
    rows = batch_rows(corpus.pieces["test"], 2)
    encoded = torch.from_numpy(corpus.encode(corpus.data))
    seen = np.zeros(corpus.split_size("test"), dtype=int)
    test_start = corpus.pieces["test"][0][0]
    for pos, acts in windowed_internals(model, corpus, rows, batch=7):
        seen[pos[pos >= 0]] += 1
        r, c = 0, 3
        t = test_start + pos[r, c]
        resid = acts[0][r, c, :8]
        logits = model.decoder(model.ln_f(resid))
        with torch.no_grad():
            refs = [model(encoded[None, t - length + 1 : t + 1])[0][0, -1] for length in range(9, 17)]
        assert pos[r, c] >= 0 and any(torch.allclose(logits, ref, atol=1e-5) for ref in refs)
    assert (seen == 1).all()
