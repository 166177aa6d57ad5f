"""Interventions beyond the recurrent family: the LRU (its state x_t clamped inside the step loop) and the
transformer (its residual stream and MLP neurons held at every position of a window)."""

import numpy as np
import pytest
import torch

from rnnlens import archs
from rnnlens.corpus import PreparedCorpus
from rnnlens.evaluate import batch_rows, predict_test
from rnnlens.interventions import Intervention, predict_with_intervention, unit_means
from rnnlens.model import ModelSpec


def random_lru(layers=2, hidden=6, vocab=5, seed=0, inner=0):
    """inner: the state size N (0: N = H, the width)."""
    torch.manual_seed(seed)
    model = archs.load("lru").build_model(ModelSpec("lru", layers, hidden, vocab, inner=inner))
    model.init_weights()
    torch.nn.init.normal_(model.decoder.weight, 0.0, 1.0)  # a decoder that shows small changes of the stream
    return model.eval()


def random_transformer(layers=2, hidden=16, vocab=5, window=24, seed=0):
    torch.manual_seed(seed)
    model = archs.load("transformer").build_model(ModelSpec("transformer", layers, hidden, vocab, window=window,
                                                            heads=2))
    model.init_weights()
    torch.nn.init.normal_(model.decoder.weight, 0.0, 1.0)
    return model.eval()


def text(batch, steps, vocab=5, seed=1):
    return torch.randint(0, vocab, (batch, steps), generator=torch.Generator().manual_seed(seed))


def with_step_zeroed(trajectory, step):
    """A clamp's per-step values: the unit's own trajectory, but zero at one step."""
    values = trajectory.clone()
    values[:, step] = 0
    return values


def test_lru_holding_its_state_at_its_own_values_reproduces_the_model(one_thread):
    model = random_lru()
    runner = archs.load("lru").internals_runner(model)
    idx = text(3, 40)
    with torch.no_grad():
        state = model(idx[:, :9])[1]  # a carried state, not zeros
        logits, own_state = model(idx, state)
    free, _ = runner.run(idx, state)
    n = model.state
    units = [1, 4, n + 1, n + 5]  # real parts of units 1 and 4, imaginary parts of units 1 and 5
    clamp = {k: (units, free[k]["cells"][..., units].clone()) for k in range(2)}
    held, held_state = runner.run(idx, state, clamp=clamp)
    assert (runner.logits(held) - logits).abs().max() < 1e-6
    assert (held_state - own_state).abs().max() < 1e-6
    constant = runner.run(idx, state, clamp={1: ([2, 9], torch.tensor([0.5, -0.25]))})[0]
    assert (constant[1]["cells"][..., [2, 9]] == torch.tensor([0.5, -0.25])).all()


def test_lru_zeroing_a_state_unit_at_one_step_changes_that_step_and_the_later_ones(one_thread):
    """The clamp acts inside the recurrence: zeroing the real part of one state unit at step 20 only leaves the
    steps before alone, changes the prediction at step 20, and, through x_{t+1} = lambda x_t + ..., the later
    steps and that unit's imaginary part (the rotation carries the held value on)."""
    model = random_lru(seed=2)
    runner = archs.load("lru").internals_runner(model)
    idx = text(2, 60, seed=3)
    free, _ = runner.run(idx)
    slot = int(model.layers[0].eigenvalues().abs().argmax())  # the unit of the longest memory
    values = with_step_zeroed(free[0]["cells"][..., [slot]], 20)
    acts, _ = runner.run(idx, clamp={0: ([slot], values)})
    change = (runner.logits(acts) - runner.logits(free)).abs().amax(dim=(0, 2))
    assert (change[:20] == 0).all()
    assert change[20] > 1e-3
    assert change[30:].min() > 1e-4  # ten steps on and later, still
    n = model.state
    imaginary = (acts[0]["cells"][..., n + slot] - free[0]["cells"][..., n + slot]).abs().amax(dim=0)
    assert (imaginary[:20] == 0).all() and imaginary[21:30].min() > 1e-4
    # the other state units of the layer are diagonal: untouched; the layer above reads the change
    others = [u for u in range(2 * n) if u not in (slot, n + slot)]
    assert (acts[0]["cells"][..., others] == free[0]["cells"][..., others]).all()
    assert (acts[1]["cells"][:, 21:] - free[1]["cells"][:, 21:]).abs().max() > 1e-4


def lru_with_a_wider_state():
    """An LRU whose state size N is not its width H (as inner_width makes them: War and Peace's lru-1x64 has H 72,
    N 73): here N > H, so that unit numbers >= H name real parts of high state units as well as imaginary parts."""
    model = random_lru(hidden=6, inner=9, seed=7)
    assert model.state == 9 != model.spec.hidden
    return model


def test_lru_with_a_state_wider_than_its_width_holds_the_units_it_names(one_thread):
    model = lru_with_a_wider_state()
    runner = archs.load("lru").internals_runner(model)
    n, h = model.state, model.spec.hidden
    assert runner.units == 2 * n
    idx = text(3, 30, seed=8)
    with torch.no_grad():
        state = model(idx[:, :7])[1]
        logits, own_state = model(idx, state)
    free, _ = runner.run(idx, state)
    units = [n - 1, n + 2, 2 * n - 1]  # the real part of the last state unit, imaginary parts of units 2 and N-1
    assert min(units) >= h
    held, held_state = runner.run(idx, state, clamp={k: (units, free[k]["cells"][..., units].clone())
                                                     for k in range(2)})
    assert (runner.logits(held) - logits).abs().max() < 1e-6
    assert (held_state - own_state).abs().max() < 1e-6


@pytest.mark.parametrize("part", ["real", "imaginary"])
def test_lru_zero_clamp_with_a_wider_state_zeroes_exactly_the_component_it_names(part, one_thread):
    """Zeroing unit k holds that one component of the state at zero: the recorded states of the layer are those of
    the recurrence x_t = lambda x_{t-1} + gamma B u_t run by hand with that component set to zero after each step
    (which also moves the other part of the same complex unit, through lambda's rotation, and nothing else)."""
    model = lru_with_a_wider_state()
    runner = archs.load("lru").internals_runner(model)
    n, h = model.state, model.spec.hidden
    slot = n - 1 if part == "real" else 1
    unit = slot + (n if part == "imaginary" else 0)
    assert unit >= h  # a number the width H would have read as another component
    idx = text(2, 25, seed=9)
    free, _ = runner.run(idx)
    acts, _ = runner.run(idx, clamp={0: ([unit], torch.tensor([0.0]))})
    layer = model.layers[0]
    with torch.no_grad():
        _, bu = layer.inputs(model.embed(idx))
        lam = layer.eigenvalues()
        x = torch.zeros(idx.shape[0], n, dtype=bu.dtype)
        expected = []
        for t in range(idx.shape[1]):
            x = lam * x + bu[:, t]
            torch.view_as_real(x)[:, slot, 0 if part == "real" else 1] = 0
            expected.append(torch.cat([x.real, x.imag], dim=-1))
    cells = acts[0]["cells"]
    assert (cells - torch.stack(expected, dim=1)).abs().max() < 1e-6
    assert (cells[..., unit] == 0).all() and free[0]["cells"][..., unit].abs().min() > 0
    partner = slot + (n if part == "real" else 0)
    others = [u for u in range(2 * n) if u not in (unit, partner)]
    assert (cells[..., others] == free[0]["cells"][..., others]).all()
    assert (cells[..., partner] - free[0]["cells"][..., partner]).abs().max() > 1e-4


def test_transformer_holding_units_at_their_own_values_reproduces_the_model(one_thread):
    model = random_transformer()
    runner = archs.load("transformer").internals_runner(model)
    idx = text(3, 24)
    with torch.no_grad():
        logits, _ = model(idx)
    free, state = runner.run(idx)
    assert state is None and (runner.logits(free) - logits).abs().max() < 1e-6
    h = model.spec.hidden
    units = [0, 5, h + 3, h + 40]  # residual stream 0 and 5, MLP neurons 3 and 40
    held, _ = runner.run(idx, clamp={k: (units, free[k]["cells"][..., units].clone()) for k in range(2)})
    assert (runner.logits(held) - logits).abs().max() < 1e-6
    constant = runner.run(idx, clamp={0: (units, torch.tensor([1.0, 2.0, 3.0, 4.0]))})[0]
    assert (constant[0]["cells"][..., units] == torch.tensor([1.0, 2.0, 3.0, 4.0])).all()


@pytest.mark.parametrize("part", ["residual", "mlp"])  # unit 4 of the residual stream, MLP neuron 9
def test_transformer_zeroing_a_unit_at_one_position_changes_that_position_and_the_later_ones(part, one_thread):
    """No recurrence, but causal attention: zeroing a unit of the first block at position 10 of the window only
    leaves the positions before alone and changes position 10 and the later ones (attention reads it)."""
    model = random_transformer(seed=4)
    runner = archs.load("transformer").internals_runner(model)
    unit = 4 if part == "residual" else model.spec.hidden + 9
    idx = text(2, 24, seed=5)
    free, _ = runner.run(idx)
    acts, _ = runner.run(idx, clamp={0: ([unit], with_step_zeroed(free[0]["cells"][..., [unit]], 10))})
    change = (runner.logits(acts) - runner.logits(free)).abs().amax(dim=(0, 2))
    assert (change[:10] == 0).all()
    assert change[10] > 1e-3 and change[11:].min() > 1e-5


@pytest.mark.parametrize("arch", ["lru", "transformer"])
def test_interventions_over_the_test_split(arch, prepared, one_thread):
    """Through evaluation's rows (the LRU) or windows (the transformer): a patch from the same text is the
    identity, a zero, a mean and a patch from another text change the predictions."""
    corpus = PreparedCorpus.load(prepared(split=(0.6, 0.1, 0.3)))
    model = random_lru(vocab=corpus.vocab_size, seed=5) if arch == "lru" else \
        random_transformer(vocab=corpus.vocab_size, seed=5)
    own = predict_test(model, corpus, streams=4, warmup=50, chunk=70)
    run = lambda iv: predict_with_intervention(model, corpus, iv, streams=4, warmup=50, chunk=70)  # noqa: E731
    units = [0, 3, 7]
    same = run(Intervention(2, units, "patch", source=corpus.data.copy()))
    assert np.abs(same["p"] - own["p"]).max() < 1e-6
    assert (same["argmax"] == own["argmax"]).all() and (same["target"] == own["target"]).all()
    assert same["layout"] == own["layout"]  # the same rows, or the same windows
    other = corpus.data.copy()
    other[other == ord("a")] = ord("b")
    for iv in (Intervention(1, units, "patch", source=other), Intervention(1, units, "value", values=0.0),
               Intervention(1, units, "mean")):
        changed = run(iv)
        assert np.abs(changed["p"] - own["p"]).max() > 1e-3, iv.name
        assert len(changed["p"]) == len(own["p"])


def test_transformer_unit_means_average_the_training_split(prepared, one_thread):
    """With a window longer than the corpus every position is read from the corpus's second byte on (the first
    has nothing before it), so the means are those of one forward pass over the training split."""
    corpus = PreparedCorpus.load(prepared(split=(0.6, 0.1, 0.3)))
    model = random_transformer(vocab=corpus.vocab_size, window=len(corpus.data), seed=6)
    means = unit_means(model, corpus, streams=1, max_positions=0)
    (a, b), = corpus.pieces["train"]
    assert a == 0
    keep = []
    with torch.no_grad():
        model(torch.from_numpy(corpus.encode(corpus.data[1:b]))[None], keep=keep)
    expected = np.stack([torch.cat([k["resid"], k["mlp"]], -1)[0].double().mean(0).numpy() for k in keep])
    assert np.abs(means - expected).max() < 1e-5
    # a sample of 100 positions: the first 20 of each of 5 rows spread over the split
    sample = unit_means(model, corpus, streams=5, max_positions=100)
    rows = batch_rows([(1, b)], 5)
    assert len(rows) == 5
    positions = np.concatenate([np.arange(start, start + 20) for start, _ in rows])
    acts = [torch.cat([k["resid"], k["mlp"]], -1)[0, positions - 1].double().mean(0).numpy() for k in keep]
    assert np.abs(sample - np.stack(acts)).max() < 1e-5


def train_briefly(model, train_idx, steps=150, batch=16, seq_len=32, lr=3e-3, seed=0):
    """A few AdamW steps on random windows of the training text, each from a fresh state."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(train_idx) - seq_len - 1, (batch,), generator=gen)
        window = train_idx[starts[:, None] + torch.arange(seq_len + 1)[None]]
        logits, _ = model(window[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.slow
def test_cell_effects_and_intervene_run_for_an_lru_and_a_transformer(tmp_path, one_thread):
    """The commands of the workflow's cell_effects and evaluate_intervention rules, on a small LRU and a small
    transformer trained a little on quoted spans: internals -> best cells -> ablations of the best cell beside
    controls; and a declared intervention, a predictor of its own."""
    import pandas as pd

    from rnnlens.cli import main
    from rnnlens.model import save_model
    from rnnlens.predictions import read_meta
    from test_cells import quoted_corpus, write_corpus

    corpus = write_corpus(tmp_path, quoted_corpus(20_000))
    train_idx = torch.from_numpy(corpus.encode(corpus.split("train")))
    data = str(tmp_path / "data.json")
    models = {"lru-1x8": random_lru(layers=1, hidden=8, vocab=corpus.vocab_size),
              "transformer-1x16": random_transformer(layers=1, hidden=16, vocab=corpus.vocab_size, window=32)}
    paths = []
    for model_id, model in models.items():
        torch.nn.init.normal_(model.decoder.weight, 0.0, 0.02)
        train_briefly(model, train_idx)
        paths.append(str(tmp_path / f"{model_id}.pt"))
        save_model(paths[-1], model, {"model": model_id})
        assert main(["internals", "--model", paths[-1], "--data", data, "--out-dir", str(tmp_path / model_id),
                     "--streams", "4", "--warmup", "100", "--windows", "1", "--window-chars", "50"]) == 0
    best = str(tmp_path / "best_cells.csv")
    assert main(["best-cells", "--tables", *[str(tmp_path / m / "cells.parquet") for m in models], "--out",
                 best]) == 0
    out = tmp_path / "cell_effects.csv"
    assert main(["cell-effects", "--models", *paths, "--data", data, "--best-cells", best, "--out", str(out),
                 "--figure", str(tmp_path / "cell_effects.png"), "--features", "in_dquote", "--controls", "2",
                 "--streams", "4", "--warmup", "100", "--max-positions", "1000", "--mean-positions", "2000"]) == 0
    table = pd.read_csv(out)
    assert set(table.model) == set(models) and set(table.feature) == {"in_dquote"}
    assert (table.groupby("model").role.value_counts().unstack()[["best", "control"]].to_numpy() == [1, 2]).all()
    assert table.dloss_all.notna().all() and (table.dloss_all.abs() > 0).all() and (table.positions >= 1000).all()
    # per layer: the LRU's state real and imaginary parts; the transformer's residual stream and MLP neurons
    units = {model_id: archs.load(model.spec.arch).internals_runner(model).units for model_id, model in models.items()}
    assert units == {"lru-1x8": 2 * models["lru-1x8"].state,
                     "transformer-1x16": models["transformer-1x16"].spec.hidden + models["transformer-1x16"].mlp}
    assert all(0 <= r.unit < units[r.model] for r in table.itertuples())
    for model_id, path in zip(models, paths):
        common = ["--model", path, "--data", data, "--model-id", model_id, "--streams", "4", "--warmup", "100"]
        own, held = tmp_path / f"{model_id}.parquet", tmp_path / f"{model_id}~ablate-L1U3.parquet"
        assert main(["evaluate", *common, "--out", str(own)]) == 0
        assert main(["intervene", *common, "--out", str(held), "--layer", "1", "--units", "3"]) == 0
        meta = read_meta(held)
        assert meta["model"] == f"{model_id}~ablate-L1U3" and meta["arch"] == model_id.split("-")[0]
        assert meta["n_positions"] == read_meta(own)["n_positions"]
        assert meta["test_loss"] != read_meta(own)["test_loss"]
