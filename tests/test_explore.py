"""The activation explorer: its store, search, server and command, and the real page in a real headless Chromium
(Debian's chromium + chromium-driver, driven by selenium) on models trained by the real workflow."""

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, markov_text, run_env
from rnnlens.cells import score_cells
from rnnlens.cli import main as cli_main
from rnnlens.corpus import PreparedCorpus
from rnnlens.evaluate import batch_rows, evaluate, stream_layout
from rnnlens.explore import browser
from rnnlens.explore.ablation import Ablations, nice_scale
from rnnlens.explore.search import find_matches, hypothesis_search, select_units
from rnnlens.explore.server import Explorer, byte_label, serve_in_thread
from rnnlens.explore.store import (KIND_LABELS, KINDS, NOT_ERROR, Store, StoreError, base_meta, build_store, decode,
                                   decode_range, empty_positions, kind_range, level_threshold, level_thresholds,
                                   quantise, quantise_own, spread_order, write_store)
from rnnlens.features import features_of, split_features
from rnnlens.internals import stream_test_internals
from rnnlens.interventions import Intervention, predict_with_intervention, unit_means
from rnnlens.model import ModelSpec, build_model, load_model, save_model
from rnnlens.recurrent import KINDS as RNN_KINDS, CharRNN
from rnnlens.predictions import read_predictions
from rnnlens.saturation import SaturationCounter, gates_of

SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def needs_browser():
    """Skip without Chromium, unless RNNLENS_REQUIRE_BROWSER is set (CI installs it, so there the tests must run)."""
    if browser.find_chromium() is None:
        message = ("chromium/chromedriver not installed: apt-get install -y --no-install-recommends chromium "
                   "chromium-driver")
        if os.environ.get("RNNLENS_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    pytest.importorskip("selenium", reason="selenium not installed: pip install -e '.[dev]'")


def get(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def get_json(url):
    return json.loads(get(url))


# ---------------------------------------------------------------------------------------------- quantisation


def test_quantised_levels_are_close_and_exact_at_the_saturation_thresholds():
    gates = torch.linspace(0, 1, 200_001, dtype=torch.float64)
    levels = quantise(gates, "f").numpy()
    back = decode(levels, "f")
    assert np.abs(back - gates.numpy()).max() <= 0.5 / 255 + 1e-6
    off = np.abs(gates.numpy() - 0.1) > 1e-9  # exactly at a threshold either answer is fine
    assert np.array_equal((back < 0.1)[off], (gates.numpy() < 0.1)[off])
    off = np.abs(gates.numpy() - 0.9) > 1e-9
    assert np.array_equal((back > 0.9)[off], (gates.numpy() > 0.9)[off])
    states = torch.linspace(-3, 3, 10_001, dtype=torch.float64)
    assert np.abs(decode(quantise(states, "c").numpy(), "c") - np.tanh(states.numpy())).max() <= 0.5 / 127.5 + 1e-6
    assert np.array_equal(quantise(states, "c").numpy(), quantise(torch.tanh(states), "h").numpy())
    q = np.arange(256)
    for kind in ("i", "h"):
        for threshold in (-0.73, -0.21, 0.01, 0.1, 0.3, 0.5, 0.95):  # levels: exact; between: either
            assert np.array_equal(decode(q, kind) > threshold, q > level_threshold(threshold, kind))
            assert level_thresholds(threshold, np.array([kind_range(kind)]))[0] == level_threshold(threshold, kind)
    # a row on its own range (raw c): the same exactness against its own levels
    values = np.random.default_rng(1).normal(3, 4, (5, 1000))
    levels, ranges = quantise_own(values)
    assert np.allclose(ranges, np.stack([values.min(1), values.max(1)], axis=1))
    for row, (lo, hi) in enumerate(ranges):
        assert levels[row].min() == 0 and levels[row].max() == 255
        assert np.abs(decode_range(levels[row], lo, hi) - values[row]).max() <= 0.5 * (hi - lo) / 255 + 1e-9
        for threshold in (lo - 1, lo, 0.0, 3.3, hi - 1e-9, hi):
            t = level_thresholds(threshold, ranges[row:row + 1])[0]
            assert np.array_equal(decode_range(q, lo, hi) > threshold, q > t), (row, threshold)


# ---------------------------------------------------------------------------------------------- the store


def test_store_holds_every_activation_and_the_evaluation_predictions(tmp_path, prepared):
    torch.manual_seed(3)
    corpus = PreparedCorpus.load(prepared(markov_text(8000)))
    model = CharRNN(ModelSpec("lstm", 2, 8, corpus.vocab_size))
    model.init_uniform(2.0)  # large weights: saturated gates, so the saturation check has something to count
    model.eval()
    evaluate(model, {}, corpus, tmp_path / "pred.parquet", "lstm-2x8", streams=7, warmup=100)
    meta = build_store(model, corpus, tmp_path / "store", "lstm-2x8", predictions=tmp_path / "pred.parquet",
                       oracle_settings={"memory_windows": [100]}, eval_streams=7, eval_warmup=100, streams=5,
                       warmup=200)
    store = Store(tmp_path / "store")
    n = len(corpus.split("test"))
    assert store.n == n and store.acts.shape == (7 * 2 * 8, n) and isinstance(store.acts, np.memmap)
    assert meta["total_bytes"] == sum(p.stat().st_size for p in (tmp_path / "store").iterdir() if p.name != "store.json")
    assert meta["build_seconds"] > 0 and not list((tmp_path / "store").glob("*.part*"))

    # every kind of every unit, against the exact internals streamed the same way; raw c on each unit's own range
    counter = SaturationCounter(gates_of(RNN_KINDS["lstm"])[0], 2, 8)
    raw_c = np.zeros((2, 8, n))
    for chunk in stream_test_internals(model, corpus, streams=5, warmup=200, chunk=100):
        counter.update(chunk.acts, torch.from_numpy(chunk.valid))
        keep = chunk.valid
        for layer, acts in enumerate(chunk.acts, start=1):
            raw_c[layer - 1][:, chunk.pos[keep]] = acts["c"].numpy()[keep].T
            for kind in KINDS["lstm"]:
                if kind == "c_raw":
                    continue
                exact = acts[kind].numpy()[keep]
                exact = np.tanh(exact) if kind == "c" else exact
                for unit in range(8):
                    stored = store.values(kind, layer, unit)[chunk.pos[keep]]
                    assert np.abs(stored - exact[:, unit]).max() <= 0.5 / 127.5 + 1e-5, (kind, layer, unit)
    for layer in (1, 2):
        for unit in range(8):
            exact, row = raw_c[layer - 1, unit], store.row("c_raw", layer, unit)
            lo, hi = store.ranges[row]
            assert np.allclose([lo, hi], [exact.min(), exact.max()], atol=1e-5)
            assert np.abs(store.values("c_raw", layer, unit) - exact).max() <= 0.5 * (hi - lo) / 255 + 1e-5
            for kind in ("c", "c_raw", "f"):  # the level counts are the rows'
                assert np.array_equal(store.hist[store.row(kind, layer, unit)],
                                      np.bincount(store.track(kind, layer, unit), minlength=256))
    assert (raw_c.max(axis=2) - raw_c.min(axis=2)).min() > 0  # every unit's c moved: its own range is real
    # the text features the cells stage scores, as annotation strips
    features = split_features(corpus, "test")
    for name, info in store.feature_info.items():
        assert np.array_equal(store.feature_track(name), np.clip(features[name].to_numpy(), 0, 255)), name
        assert info["max"] == features[name].max()
    assert set(store.feature_info) == set(features.columns)
    exact_sat = counter.table("m")
    for row in exact_sat.itertuples():
        kind = {"input": "i", "forget": "f", "output": "o"}[row.gate]
        left, right = store.saturation(row.layer, row.unit)[kind]
        assert abs(left - row.frac_left) <= 1 / n and abs(right - row.frac_right) <= 1 / n
    assert exact_sat.frac_right.max() > 0.2  # the check compared real saturation, not zeros

    # top-5 from the model's full distributions; top-1 and p are the evaluation's
    frame, _ = read_predictions(tmp_path / "pred.parquet")
    pos = store.positions
    assert np.array_equal(pos["top_byte"][:, 0], frame.argmax.to_numpy())
    assert np.allclose(pos["top_p"][:, 0], frame.p_argmax.to_numpy(), atol=1e-6)
    assert np.array_equal(pos["p"], frame.p.to_numpy())
    assert (np.diff(pos["top_p"], axis=1) <= 0).all() and (pos["top_p"].sum(1) <= 1 + 1e-5).all()
    errors = frame.p.to_numpy() < 0.5
    assert (pos["oracle"][~errors] == NOT_ERROR).all() and (pos["oracle"][errors] >= 0).all()


def synthetic_store(path, n=3000, layers=2, hidden=16, seed=0):
    """A store whose activations are set by hand (raw c; the store keeps tanh(c) and c per unit): noise below 0.3
    everywhere; unit 2:5 planted at 0.9 over three 12-character spans; distractors: 1:3 on over the first span but
    also around it, 2:9 on over only part of it, 1:7 planted on the same spans but weaker (0.6), so it ranks
    second. Unit 2:12 falls over the spans (0.6..0.95 elsewhere, -0.6 on them), and 1:11 is saturated: c near -6
    outside and -4 inside 10-character "quotes" every 50 characters, so tanh(c) is -1.00 everywhere. The cells
    stage's scores are computed from these activations and the text's features (rnnlens.cells)."""
    rng = np.random.default_rng(seed)
    meta = base_meta("lstm-2x16", "toy", "lstm", layers, hidden)
    text = np.frombuffer(markov_text(n, alphabet=b"ab c\n", seed=seed), dtype=np.uint8)
    spans = [(400, 412), (1500, 1512), (2600, 2612)]
    values = {kind: rng.uniform(-0.5, 0.25, (layers, hidden, n)) for kind in meta["kinds"]}
    c = np.arctanh(values["c"])  # raw c
    for a, b in spans:
        c[1, 5, a:b] = np.arctanh(0.9)
        c[0, 7, a:b] = np.arctanh(0.6)
    c[0, 3, 380:430] = np.arctanh(0.8)
    c[1, 9, 405:412] = np.arctanh(0.8)
    c[1, 12] = np.arctanh(rng.uniform(0.6, 0.95, n))
    for a, b in spans:
        c[1, 12, a:b] = np.arctanh(-0.6)
    c[0, 11] = rng.uniform(-6.2, -5.8, n)
    for a, b in QUOTES:
        c[0, 11, a:b] = rng.uniform(-4.2, -3.8, b - a)

    def fill(acts):
        units = layers * hidden
        for k, kind in enumerate(meta["kinds"]):
            rows = slice(k * units, (k + 1) * units)
            if kind == "c_raw":
                acts[rows], ranges = quantise_own(c.reshape(units, n))
            else:
                raw = c if kind == "c" else values[kind]  # the store applies tanh to c
                acts[rows] = quantise(torch.from_numpy(raw), kind).numpy().reshape(units, n)
        return {"c_raw": ranges}

    positions = empty_positions(n)
    positions["top_byte"][:] = np.frombuffer(b"ab c\n", dtype=np.uint8)
    positions["top_p"][:] = [0.4, 0.3, 0.15, 0.1, 0.05]
    positions["p"] = 0.3
    features = features_of(text)
    scores = score_cells(c.reshape(layers * hidden, n).T.astype(np.float32), features, layers, hidden)
    write_store(path, meta, text, fill, positions, scores=scores, features=features)
    return Store(path), spans


QUOTES = [(a, a + 10) for a in range(20, 3000, 50)]  # the saturated unit's "quotes" in the synthetic store


def test_hypothesis_search_finds_the_planted_unit_and_spans(tmp_path):
    store, spans = synthetic_store(tmp_path / "store")
    result = hypothesis_search(store, "c", *spans[0], threshold=0.5, pad=3)
    assert [(u["layer"], u["unit"]) for u in result["units"]] == [(2, 5), (1, 7)]
    assert [(m["start"], m["end"]) for m in result["matches"]] == spans
    assert result["matches"][0]["score"] == pytest.approx(1.0)
    # the parts alone: a unit on around the span is not selected; partial runs rank below whole ones
    block = np.zeros((3, 100), dtype=np.uint8)
    block[0, 10:20] = block[0, 50:60] = 200
    block[1, 5:25] = 200
    block[2, 10:20] = block[2, 70:74] = 220
    selected, margin, _ = select_units(block, 10, 20, level=100, pad=2)
    assert list(selected) == [2, 0] and margin[0] > margin[1]
    matches = find_matches(block[[0, 2]], 100, 10, min_fraction=0.5)
    assert [(a, b) for a, b, _ in matches] == [(10, 20), (50, 60), (70, 74)]
    with pytest.raises(ValueError, match="not inside"):
        select_units(block, 90, 120, 100)


def test_search_finds_falling_and_saturated_units_and_counts_every_match(tmp_path):
    store, spans = synthetic_store(tmp_path / "store")
    # a unit that falls over the span (off over it, on around it) is found only when asked for
    falls = hypothesis_search(store, "c", *spans[0], threshold=0.5, pad=3, direction="falls")
    assert [(u["layer"], u["unit"], u["falls"]) for u in falls["units"]] == [(2, 12, True)]
    assert [(m["start"], m["end"]) for m in falls["matches"]] == spans and falls["total"] == 3
    either = hypothesis_search(store, "c", *spans[0], threshold=0.5, pad=3, direction="either")
    assert {(u["layer"], u["unit"], u["falls"]) for u in either["units"]} == {(2, 5, False), (1, 7, False),
                                                                             (2, 12, True)}
    assert [(m["start"], m["end"]) for m in either["matches"]] == spans  # each unit counted in its own direction
    assert all(m["units_on"] == [1.0, 1.0, 1.0] for m in either["matches"])

    # the saturated unit: tanh(c) is at its lowest level or the next everywhere, so on the kind's scale no threshold
    # separates a quote from its surroundings; on its own scale (raw c) the search finds it and every quote
    tanh_levels = store.track("c", 1, 11)
    assert set(np.unique(tanh_levels)) <= {0, 1}
    quote = QUOTES[7]
    for threshold in (-0.999, -0.995, 0.0):
        flat = hypothesis_search(store, "c", *quote, threshold=threshold, pad=3)
        assert (1, 11) not in [(u["layer"], u["unit"]) for u in flat["units"]]
    own = hypothesis_search(store, "c", *quote, threshold=0.5, pad=3, scale="own", limit=25)
    assert own["source"] == "c_raw" and [(u["layer"], u["unit"]) for u in own["units"]][0] == (1, 11)
    assert own["total"] == len(QUOTES) and len(own["matches"]) == 25  # counted in full, paged
    pages = [hypothesis_search(store, "c", *quote, threshold=0.5, pad=3, scale="own", limit=25, offset=o)["matches"]
             for o in (0, 25, 50)]
    assert sorted((m["start"], m["end"]) for page in pages for m in page) == QUOTES
    mask = np.unpackbits(np.frombuffer(base64.b64decode(own["mask"]), np.uint8))[:store.n].astype(bool)
    expected = np.zeros(store.n, dtype=bool)
    for a, b in QUOTES:
        expected[a:b] = True
    assert np.array_equal(mask, expected) and own["matched_positions"] == expected.sum()
    # the plot: the selected units' values over the span and around it, on the search's scale
    series = own["plot"]["series"][0]
    assert (series["layer"], series["unit"]) == (1, 11)
    values = np.array(series["values"])
    a, b = quote[0] - own["plot"]["start"], quote[1] - own["plot"]["start"]
    assert values[a:b].min() > 0.5 >= values[:a].max() and values[b:b + 3].max() <= 0.5
    with pytest.raises(ValueError, match="direction"):
        hypothesis_search(store, "c", *quote, threshold=0.5, direction="up")
    with pytest.raises(ValueError, match="min_fraction"):
        hypothesis_search(store, "c", *quote, threshold=0.5, min_fraction=0)


def test_own_scale_percentiles_contexts_and_old_stores(tmp_path):
    store, spans = synthetic_store(tmp_path / "store")
    flat = store.display_scale("c", 1, 11)
    assert flat["own"] and flat["flat"] and flat["source"] == "c_raw"
    assert "own scale" in flat["note"] and "tanh(c) spans only -1.00 to -1.00" in flat["note"]
    raw = store.values("c_raw", 1, 11)
    assert flat["lo"] == pytest.approx(np.sort(raw)[int(np.ceil(0.02 * store.n)) - 1])
    assert flat["hi"] == pytest.approx(np.sort(raw)[int(np.ceil(0.98 * store.n)) - 1]) and -4.3 < flat["hi"] < -3.7
    assert not store.display_scale("c", 2, 5)["own"]  # noise over half the range: not flat
    assert not store.display_scale("f", 1, 11)["own"] and store.display_scale("f", 1, 11, "own")["own"]  # a gate:
    # noise over [-0.5, 0.25], flat on [0, 1], keeps the kind's scale unless asked
    assert store.display_scale("c", 2, 5, mode="own")["own"] and not store.display_scale("c", 1, 11, "kind")["own"]
    # contexts: the raw c orders a saturated unit's positions; ties at one level are spread over the text
    picked, ties = store.contexts("c", 1, 11, count=5, width=10)
    assert all(any(a <= p < b for a, b in QUOTES) for p in picked)
    levels = np.zeros(1000, dtype=np.uint8)
    levels[100:900] = 255
    first = np.sort(spread_order(levels)[:10])
    assert (levels[first] == 255).all() and first[-1] - first[0] > 600 and np.diff(first).max() < 200
    assert set(spread_order(levels, highest=False)[:100]) <= set(range(100)) | set(range(900, 1000))
    # a store of the previous format is refused with the command that rebuilds it
    meta = json.loads((tmp_path / "store/store.json").read_text())
    (tmp_path / "store/store.json").write_text(json.dumps({**meta, "format": 1}))
    with pytest.raises(StoreError, match=r"format 1.*reads format 2.*--forcerun explore_store"):
        Store(tmp_path / "store")


def test_server_answers_the_api_and_refuses_bad_requests(tmp_path):
    store, spans = synthetic_store(tmp_path / "store")
    server, url = serve_in_thread(Explorer([store]))
    try:
        info = get_json(url + "api/info")
        assert info["positions"] == store.n and info["models"][0]["model"] == "lstm-2x16"
        assert get(url + "api/text") == store.text.tobytes()
        track = get(url + "api/track?model=lstm-2x16&kind=c&layer=2&unit=5")
        assert np.array_equal(np.frombuffer(track, np.uint8), store.track("c", 2, 5))
        unit = get_json(url + "api/unit?model=lstm-2x16&kind=c&layer=2&unit=5")
        assert set(unit["saturation"]) == {"i", "f", "o"} and sum(unit["histogram"]["counts"]) == store.n
        # both extremes, each context with its character marked apart from the text around it
        assert all(any(a <= c["pos"] < b for a, b in spans) for c in unit["highest"]["contexts"][:3])
        assert unit["highest"]["ties"] == 36 and unit["lowest"]["ties"] >= 1
        for c in unit["highest"]["contexts"] + unit["lowest"]["contexts"]:
            p = c["pos"]
            assert c["before"].encode("latin-1") == store.text[max(0, p - 18):p].tobytes()
            assert c["after"].encode("latin-1") == store.text[p + 1:p + 11].tobytes()
            assert c["value"] == pytest.approx(store.values("c", 2, 5)[p], abs=1e-4)
            assert c["raw"] == pytest.approx(store.values("c_raw", 2, 5)[p], abs=1e-4)
        assert min(c["value"] for c in unit["highest"]["contexts"]) > max(c["value"] for c in unit["lowest"]["contexts"])
        # the saturated unit: coloured from its raw c on its own scale, and its page says so
        scale = get_json(url + "api/scale?model=lstm-2x16&kind=c&layer=1&unit=11")
        assert scale == store.display_scale("c", 1, 11) and scale["source"] == "c_raw"
        flat = get_json(url + "api/unit?model=lstm-2x16&kind=c&layer=1&unit=11")
        assert flat["scale"]["own"] and flat["quantity"] == "c"
        assert flat["histogram"]["counts"] == store.hist[store.row("c_raw", 1, 11)].tolist()
        # strength, partial and the confound flag, against the scores: the best feature is the strongest
        strongest = store.scores.loc[store.scores.groupby(["layer", "unit"])["strength"].idxmax()]
        best = {(r.layer, r.unit): r.feature for r in strongest.itertuples()}
        ranked = get_json(url + "api/units?model=lstm-2x16&feature=is_space")["units"]
        assert [u["rank"] for u in ranked] == list(range(1, 33))
        for u in ranked:
            row = store.scores[(store.scores.layer == u["layer"]) & (store.scores.unit == u["unit"])
                               & (store.scores.feature == "is_space")].iloc[0]
            assert (u["strength"], u["partial"]) == (round(row.strength, 4), round(row.partial, 4))
            assert u["confounded"] == (best[u["layer"], u["unit"]] != "is_space")
            assert u["explained_by"] == best[u["layer"], u["unit"]]
        assert any(u["confounded"] for u in ranked) and not all(u["confounded"] for u in ranked)
        overall = get_json(url + "api/units?model=lstm-2x16")["units"]
        assert [(u["layer"], u["unit"], u["feature"]) for u in overall] == [
            (r.layer, r.unit, r.feature) for r in strongest.sort_values(["strength", "layer", "unit"],
                                                                        ascending=[False, True, True]).itertuples()]
        assert any(u["measure"] == "spearman" for u in overall[:10])  # one scale: a count feature can lead
        feature = get(url + "api/feature?model=lstm-2x16&name=line_pos")
        assert np.array_equal(np.frombuffer(feature, np.uint8), store.feature_track("line_pos"))
        predict = get_json(url + "api/predict?model=lstm-2x16&pos=7")
        assert [t["label"] for t in predict["top"]] == ["a", "b", "space", "c", "\\n"] and not predict["oracles_ran"]
        for bad, message in (("api/track?model=nope&kind=c&layer=1&unit=0", "unknown model"),
                             ("api/track?model=lstm-2x16&kind=c&layer=3&unit=0", "outside"),
                             ("api/unit?model=lstm-2x16&kind=q&layer=1&unit=0", "has no 'q'"),
                             ("api/predict?model=lstm-2x16", "missing parameter"),
                             ("api/search?model=lstm-2x16&start=10&end=5&threshold=0.5", "not inside"),
                             ("api/search?model=lstm-2x16&start=5&end=10&threshold=0.5&scale=x", "scale 'x'"),
                             ("api/feature?model=lstm-2x16&name=nope", "no text feature 'nope'"),
                             ("api/units?model=lstm-2x16&feature=nope", "no scores for feature 'nope'")):
            with pytest.raises(urllib.error.HTTPError) as err:
                get(url + bad)
            assert err.value.code == 400 and message in json.loads(err.value.read())["error"]
        with pytest.raises(urllib.error.HTTPError) as err:
            get(url + "static/../server.py")
        assert err.value.code == 404
        page = get(url).decode()
        assert "/static/app.js" in page and "http" not in page.replace('href="data:,"', "")  # nothing remote
    finally:
        server.shutdown()
        server.server_close()
    assert byte_label(10) == "\\n" and byte_label(200) == "0xc8"


def stored_model(prepared, tmp_path, arch, model_id):
    """A small untrained model with large weights (so that one unit matters), saved and stored where the workflow
    puts them: results/toy/{models/ID/model.pt, data.json, explore/ID/}."""
    torch.manual_seed(5)
    corpus = PreparedCorpus.load(prepared(markov_text(5000), name="results/toy"))
    model = build_model(ModelSpec(arch, 2, 8, corpus.vocab_size))
    model.init_weights(2.0 if arch == "lstm" else 0.5)
    model.eval()
    save_model(tmp_path / f"results/toy/models/{model_id}/model.pt", model)
    build_store(model, corpus, tmp_path / f"results/toy/explore/{model_id}", model_id, eval_streams=7,
                eval_warmup=100, streams=5, warmup=100)
    return model, corpus, Store(tmp_path / f"results/toy/explore/{model_id}")


def expected_ablation(model, corpus, store, layer, unit, mode, means):
    """What rnnlens.interventions predicts with the unit held (with the full distributions, for the top-5), with
    the store's evaluation rows and warm-up. The server calls the same function: this checks its wiring (rows,
    warm-up, held value, top-5, loss difference); lstm_by_hand checks the values."""
    iv = Intervention(layer, [unit], "mean" if mode == "mean" else "value", values=0.0 if mode == "zero" else None)
    streams, warmup = store.meta["evaluation"]["streams"], store.meta["evaluation"]["warmup"]
    layout = dict(streams=streams, warmup=warmup, means=means)
    ablated = predict_with_intervention(model, corpus, iv, keep_probs=True, **layout)
    return ablated, predict_with_intervention(model, corpus, [], **layout)


def lstm_by_hand(model, inputs, layer, unit, held):
    """The LSTM's next-byte distributions after each of `inputs` (vocabulary indices), stepped by hand from a zero
    state in float64 with PyTorch's equations and the model's weights, unit `unit` of layer `layer`'s (from 1)
    cell state set to `held` after every step -> (steps, vocab) array."""
    rnn, hidden, vocab = model.rnn, model.spec.hidden, model.spec.vocab_size
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    weights = [[getattr(rnn, f"{name}_l{k}").detach().double() for name in names] for k in range(model.spec.layers)]
    h = [torch.zeros(hidden, dtype=torch.float64) for _ in weights]
    c = [torch.zeros(hidden, dtype=torch.float64) for _ in weights]
    out = []
    for byte in inputs:
        x = torch.zeros(vocab, dtype=torch.float64)
        x[int(byte)] = 1
        for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(weights):
            i, f, g, o = (w_ih @ x + b_ih + w_hh @ h[k] + b_hh).chunk(4)  # PyTorch's gate order
            c[k] = torch.sigmoid(f) * c[k] + torch.sigmoid(i) * torch.tanh(g)
            if k == layer - 1:
                c[k][unit] = held
            h[k] = torch.sigmoid(o) * torch.tanh(c[k])
            x = h[k]
        logits = model.decoder.weight.detach().double() @ x + model.decoder.bias.detach().double()
        out.append(torch.softmax(logits, 0))
    return torch.stack(out).numpy()


def check_against_lstm_by_hand(url, model, corpus, store, layer, unit, mode, held, pos, span=40):
    """The server's p of the true byte over `span` positions of pos's batch row around pos (fewer in a shorter
    row) equals the hand-stepped LSTM's (the row read from its start, warm-up included, the unit held all along)."""
    evaluation = store.meta["evaluation"]
    rows = batch_rows(corpus.pieces["test"], evaluation["streams"])
    lookback, _ = stream_layout(rows, evaluation["warmup"])
    ends = np.cumsum([length for _, length in rows])
    r = int(np.searchsorted(ends, pos, side="right"))
    start, first = rows[r][0], int(ends[r] - rows[r][1])  # the row's corpus offset and test position
    encoded = corpus.encode(corpus.data)
    length = rows[r][1]
    lo = max(0, min(pos - first - span // 2, length - span))
    columns = range(lo, min(length, lo + span))  # the row's positions checked, pos among them
    # input j of the row is corpus[start - lookback + j]; its output predicts corpus[start - lookback + j + 1]
    probs = lstm_by_hand(model, encoded[start - lookback : start + columns[-1]], layer, unit, held)
    q = f"model={store.model}&layer={layer}&unit={unit}&mode={mode}"
    served = [get_json(url + f"api/ablation_predict?{q}&pos={first + j}")["p"] for j in columns]
    by_hand = [probs[lookback - 1 + j, encoded[start + j]] for j in columns]
    assert pos - first in columns and len(columns) == min(span, length)
    assert corpus.split("test")[pos] == corpus.data[start + pos - first]
    np.testing.assert_allclose(served, by_hand, atol=1e-5)


def test_ablation_endpoints_give_what_interventions_compute(tmp_path, prepared):
    model, corpus, store = stored_model(prepared, tmp_path, "lstm", "lstm-2x8")
    means = unit_means(model, corpus)
    server, url = serve_in_thread(Explorer([store]))
    try:
        status = get_json(url + "api/info")["models"][0]["ablation"]
        assert status["available"] and status["kind"] == "c" and set(status["modes"]) == {"mean", "zero"}
        for layer, unit, mode in ((1, 1, "mean"), (2, 6, "zero")):
            ablated, own = expected_ablation(model, corpus, store, layer, unit, mode, means)
            q = f"model=lstm-2x8&layer={layer}&unit={unit}&mode={mode}"
            summary = get_json(url + "api/ablation?" + q)
            held = means[layer - 1][unit] if mode == "mean" else 0.0
            assert summary["held"] == pytest.approx(held, abs=1e-12) and summary["kind"] == "c"
            dloss = np.log(own["p"].astype(np.float64)) - np.log(ablated["p"].astype(np.float64))
            assert summary["mean_dloss"] == pytest.approx(dloss.mean(), abs=1e-9)
            assert np.abs(dloss).max() > 0.05  # the unit matters: the comparison below compares real changes
            scale = summary["scale"]
            assert scale == nice_scale(dloss) and scale >= np.percentile(np.abs(dloss), 99.5)
            assert scale / 10 ** np.floor(np.log10(scale)) in (1, 2, 5)
            levels = np.floor((np.clip(dloss, -scale, scale) + scale) * 255 / (2 * scale) + 0.5).astype(np.uint8)
            assert np.array_equal(np.frombuffer(get(url + "api/ablation_lossdiff?" + q), np.uint8), levels)
            # the values themselves: the LSTM stepped by hand, up to where the ablation changes p the most
            check_against_lstm_by_hand(url, model, corpus, store, layer, unit, mode, held,
                                       int(np.argmax(np.abs(dloss))))
            for pos in (0, 17, int(np.argmax(np.abs(dloss))), store.n - 1):
                r = get_json(url + f"api/ablation_predict?{q}&pos={pos}")
                assert r["p"] == pytest.approx(float(ablated["p"][pos]), abs=1e-6)
                assert r["dloss"] == pytest.approx(dloss[pos], abs=1e-6)
                assert (r["top"][0]["byte"], r["top"][0]["p"]) == (ablated["argmax"][pos],
                                                                    pytest.approx(ablated["p_argmax"][pos], abs=1e-6))
                order = np.argsort(-ablated["probs"][pos], kind="stable")[:5]
                assert [t["byte"] for t in r["top"]] == corpus.vocab[order].tolist()
                assert [t["p"] for t in r["top"]] == pytest.approx(ablated["probs"][pos][order].tolist(), abs=1e-6)
                assert r["target"] == store.text[pos] and ablated["target"][pos] == store.text[pos]
        # the model's own predictions through the loop are the store's
        assert np.abs(own["p"] - store.positions["p"]).max() < 1e-5
        for bad, message in (("layer=1&unit=3&mode=half", "ablation mode 'half'"),
                             ("layer=1&unit=8&mode=zero", "outside 0..7"), ("layer=3&unit=0&mode=zero", "layer 3"),
                             ("layer=1&unit=3&mode=zero&pos=99999", "outside the test split")):
            with pytest.raises(urllib.error.HTTPError) as err:
                get(url + f"api/ablation_predict?model=lstm-2x8&{bad}")
            assert err.value.code == 400 and message in json.loads(err.value.read())["error"]
    finally:
        server.shutdown()
        server.server_close()


def test_info_and_computed_ablations_answer_while_an_ablation_computes(tmp_path, prepared, monkeypatch):
    """An ablation may compute for minutes: meanwhile a reload (/api/info) and an ablation computed before answer
    at once. The computation is the real one, held at its start until the checks are done."""
    _, _, store = stored_model(prepared, tmp_path, "lstm", "lstm-2x8")
    started, release = threading.Event(), threading.Event()
    compute = Ablations._compute

    def held_compute(self, *key):
        started.set()
        assert release.wait(120)
        return compute(self, *key)

    monkeypatch.setattr(Ablations, "_compute", held_compute)
    server, url = serve_in_thread(Explorer([store]))
    answers = {}
    try:
        release.set()
        before = get_json(url + "api/ablation?model=lstm-2x8&layer=1&unit=1&mode=zero")
        started.clear()
        release.clear()
        q = "model=lstm-2x8&layer=2&unit=6&mode=zero"
        worker = threading.Thread(target=lambda: answers.update(summary=get_json(url + "api/ablation?" + q)))
        worker.start()
        assert started.wait(30)

        def quick(path):
            with urllib.request.urlopen(url + path, timeout=5) as response:
                return json.loads(response.read())

        t0 = time.perf_counter()
        info = quick("api/info")
        predicted = quick("api/ablation_predict?model=lstm-2x8&layer=1&unit=1&mode=zero&pos=5")
        seconds = time.perf_counter() - t0
        assert worker.is_alive() and not release.is_set()  # both answered while the computation held its lock
        assert info["models"][0]["ablation"]["available"] and info["models"][0]["ablation"]["kind"] == "c"
        assert predicted["pos"] == 5 and predicted["held"] == before["held"] == 0 and seconds < 5
        release.set()
        worker.join(120)
        assert answers["summary"]["positions"] == store.n and answers["summary"]["layer"] == 2
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_ablation_is_refused_with_the_reason_where_it_cannot_run(tmp_path, prepared, monkeypatch):
    from rnnlens import archs

    # every built-in architecture clamps (the LRU inside its recurrence): its units can be ablated here too
    lru_model, lru_corpus, lru = stored_model(prepared, tmp_path, "lru", "lru-2x8")
    explorer = Explorer([lru])
    assert explorer.info({})["models"][0]["ablation"]["available"]
    held = explorer.ablation({"model": "lru-2x8", "layer": "1", "unit": "0", "mode": "zero"})
    ablated, own = expected_ablation(lru_model, lru_corpus, lru, 1, 0, "zero", None)
    assert held["held"] == 0 and held["positions"] == len(own["p"])
    np.testing.assert_allclose(held["mean_dloss"], float(np.mean(np.log(own["p"]) - np.log(ablated["p"]))),
                               atol=1e-5)
    # one without a clamp (the README's example architecture) says why
    monkeypatch.setenv(archs.ENV, json.dumps({"mgu": str(ROOT / "docs" / "examples" / "mgu.py")}))
    shutil.rmtree(tmp_path / "results")
    _, _, mgu = stored_model(prepared, tmp_path, "mgu", "mgu-2x8")
    explorer = Explorer([mgu])
    status = explorer.info({})["models"][0]["ablation"]
    assert not status["available"] and "not supported for the mgu architecture" in status["reason"]
    with pytest.raises(StoreError, match="mgu-2x8 cannot be ablated here: interventions are not supported"):
        explorer.ablation({"model": "mgu-2x8", "layer": "1", "unit": "0", "mode": "zero"})
    synthetic, _ = synthetic_store(tmp_path / "elsewhere/explore/lstm-2x16")
    status = Explorer([synthetic]).info({})["models"][0]["ablation"]
    assert not status["available"] and "model weights" in status["reason"] and "does not exist" in status["reason"]
    # weights that are not the store's model: named, not used
    save_model(tmp_path / "elsewhere/models/lstm-2x16/model.pt", build_model(ModelSpec("lstm", 1, 16, 5)))
    (tmp_path / "elsewhere/data.json").write_text((tmp_path / "results/toy/data.json").read_text())
    (tmp_path / "elsewhere/corpus.bin").write_bytes((tmp_path / "results/toy/corpus.bin").read_bytes())
    status = Explorer([Store(tmp_path / "elsewhere/explore/lstm-2x16")]).info({})["models"][0]["ablation"]
    assert not status["available"] and "1 x 16 lstm" in status["reason"] and "rebuild the store" in status["reason"]


def test_command_serves_until_ctrl_c_and_names_missing_stores(tmp_path, capsys):
    synthetic_store(tmp_path / "results/toy/explore/lstm-2x16")
    cmd = [sys.executable, "-m", "rnnlens", "explore", "toy", "--results", str(tmp_path / "results"), "--port", "0"]
    proc = subprocess.Popen(cmd, env=run_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any("http://127.0.0.1:" in line for line in lines):
            line = proc.stdout.readline()
            assert line, f"the server ended early: {proc.stderr.read()}"
            lines.append(line)
        url = next(w for w in lines[-1].split() if w.startswith("http://127.0.0.1:"))
        assert get_json(url + "api/info")["models"][0]["model"] == "lstm-2x16"
        assert "MiB" in "".join(lines)  # the store's size is reported
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0 and "stopped" in out and "Traceback" not in err, err
    with pytest.raises(OSError):
        get(url + "api/info")
    # a wrong corpus or model, or none: one line that names the stores there are (the command's own error path,
    # in this process: each new Python would take seconds to import torch)
    results = ["--results", str(tmp_path / "results")]
    for args, says in ((["nothere"], ["no explorer stores for corpus 'nothere'", "toy (lstm-2x16)",
                                      "analysis.explore.models", "snakemake"]),
                       (["toy", "gru-9x9"], ["no explorer store of gru-9x9 for toy", "stores of toy: lstm-2x16"]),
                       ([], ["name a corpus", "models are optional", "toy (lstm-2x16)"]),
                       (["toy", "--results", str(tmp_path / "none")], ["no explorer stores for corpus 'toy'"])):
        assert cli_main(["explore", *args, *([] if "--results" in args else results)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and all(s in err for s in says), err


# ---------------------------------------------------------------------------------------------- the real page


def has_kenlm():
    return (Path(sys.executable).parent / "lmplz").exists() or shutil.which("lmplz")


@pytest.fixture(scope="module")
def workflow_results(tmp_path_factory):
    """Two small models (LSTM, GRU) trained, evaluated, analysed and stored by the real workflow."""
    needs_browser()
    d = tmp_path_factory.mktemp("explore_wf")
    for name in ("Snakefile", "workflow", "src", "profiles", "envs", "config.yaml"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, d / name)
    # blocks of three kinds of text, repeated, so that every split has quotes, brackets and plain runs
    prose = b" ".join(b'he said "well then, my dear" and left.' if i % 3 == 0 else b"the cat sat on the mat."
                      for i in range(16)) + b"\n"
    code = b"".join(b'    if (x[%d] > 0) { y = "abc"; }\n' % (i % 7) for i in range(8))
    (d / "corpus.txt").write_bytes(b"".join(markov_text(500, seed=i) + prose + code for i in range(14)))
    config = {
        "corpora": {"toy": {"path": str(d / "corpus.txt"), "split": {"train": 0.8, "val": 0.1, "test": 0.1},
                            "quote_scope": "line"}},
        "grid": {"arch": ["lstm", "gru"], "layers": [2], "size": [16]},
        # enough training (a few seconds a model) for cells that track quotes and lines
        "training": {"seed": 1, "batch_size": 8, "seq_len": 50, "max_epochs": 25, "patience": 25,
                     "learning_rate": 0.005, "checkpoint_seconds": 60, "device": "cpu"},
        "evaluation": {"streams": 4, "warmup": 50},
        "resources": {"train_threads": 1},
        "analysis": {"internals": {"max_positions": 2000, "threads": 1},
                     "explore": {"models": ["lstm-2x16", "gru-2x16"], "threads": 1}},
    }
    if has_kenlm():
        config["ngram"] = {"orders": [2, 3], "memory_mb": 500}
        config["analysis"]["reference_ngram"] = 3
        config["analysis"]["oracles"] = {"ngram_orders": [2, 3]}
    (d / "tiny.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([str(SNAKEMAKE), "explore", "--cores", "2", "--configfile", "tiny.yaml"], cwd=d,
                          env=run_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return d / "results"


def canvas_hash(driver):
    return driver.execute_script(
        "const c = document.getElementById('text'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let h = 0; for (let i = 0; i < d.length; i += 4) h = (h * 31 + d[i] * 3 + d[i + 1] * 5 + d[i + 2] * 7) >>> 0;"
        "return h;")


def cell_colour(driver, pos):
    """The RGB at the top-left inside of a character's cell (its background: the glyph starts lower)."""
    return driver.execute_script(
        "const b = window.rnnlensExplorer.cellBox(arguments[0]); if (!b) return null;"
        "const c = document.getElementById('text'), r = window.devicePixelRatio || 1;"
        "return Array.from(c.getContext('2d').getImageData(Math.round((b.x + 2) * r), Math.round((b.y + 2) * r), 1, 1)"
        ".data.slice(0, 3));", pos)


def expected_colour(level, kind, scale=None):
    """app.js's palette, in Python; on a scale (Store.display_scale), its lo_level..hi_level stretched over it."""
    if scale is not None and (scale["lo_level"], scale["hi_level"]) != (0, 255):
        lo, hi = scale["lo_level"], scale["hi_level"]
        level = int(np.floor(255 * min(1, max(0, (int(level) - lo) / (hi - lo))) + 0.5))
    if kind in ("i", "f", "o", "r", "z"):
        t = level / 255
        return [int(np.floor(255 * (1 - 0.8 * t) + 0.5)), int(np.floor(255 * (1 - 0.35 * t) + 0.5)),
                int(np.floor(255 * (1 - 0.8 * t) + 0.5))]
    v = level / 127.5 - 1
    fade = int(np.floor(255 * (1 - 0.85 * min(1, abs(v))) + 0.5))
    return [255, fade, fade] if v >= 0 else [fade, fade, 255]


def wait(driver, condition, timeout=20):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # the page re-renders its lists; an element read while being replaced is retried, not a failure
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(condition)


@pytest.mark.slow
def test_the_page_on_trained_models_in_headless_chromium(workflow_results, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    base = workflow_results / "toy/explore"
    lstm, gru = Store(base / "lstm-2x16"), Store(base / "gru-2x16")
    server, url = serve_in_thread(Explorer([lstm, gru]))
    label = "return window.rnnlensExplorer.state.tracks[0].label"
    try:
        with browser.headless_chromium(1600, 1000) as driver:
            driver.get(url)
            browser.wait_until_ready(driver)
            assert browser.severe_console_messages(driver) == []
            assert "toy" in driver.find_element(By.ID, "corpus-info").text

            # the ranked list: one common scale (strength), partial, and the flag of a unit that another feature
            # explains better, as the cells stage computed them
            strongest = lstm.scores.loc[lstm.scores.groupby(["layer", "unit"])["strength"].idxmax()]
            best = {(int(r.layer), int(r.unit)): r.feature for r in strongest.itertuples()}
            Select(driver.find_element(By.ID, "feature")).select_by_value("in_dquote")
            # under a feature every row names it (the first row alone may name it before the list is refreshed)
            wait(driver, lambda d: all("in_dquote" in li.text for li in d.find_elements(By.CSS_SELECTOR, "#picker li")))
            picker = driver.find_elements(By.CSS_SELECTOR, "#picker li")
            scores = lstm.scores[lstm.scores.feature == "in_dquote"].sort_values("rank")
            assert len(picker) == len(scores)
            for li, row in zip(picker, scores.itertuples()):
                assert (int(li.get_attribute("data-layer")), int(li.get_attribute("data-unit"))) == (row.layer, row.unit)
                assert li.find_element(By.CLASS_NAME, "strength").text == f"{row.strength:.2f}"
                assert li.find_element(By.CLASS_NAME, "partial").text == f"{row.partial:.2f}"
                confounded = best[row.layer, row.unit] != "in_dquote"
                assert li.get_attribute("data-confounded") == str(confounded).lower()
                assert (f"\u26a0\u2009{best[row.layer, row.unit]}" in li.text) == confounded
            top = (int(picker[0].get_attribute("data-layer")), int(picker[0].get_attribute("data-unit")))
            target = picker[0] if driver.execute_script(label).find(f"L{top[0]}:{top[1]} ") < 0 else picker[1]
            layer, unit = int(target.get_attribute("data-layer")), int(target.get_attribute("data-unit"))
            before = canvas_hash(driver)
            target.click()
            wait(driver, lambda d: d.execute_script(label).endswith(f"L{layer}:{unit} tanh(c) cell"))
            wait(driver, lambda d: canvas_hash(d) != before)
            # the unit page shows the same numbers for the unit's own features
            wait(driver, lambda d: f"layer {layer}, unit {unit}" in d.find_element(By.ID, "unit-page").text)
            rows = driver.find_elements(By.CSS_SELECTOR, "#unit-page table.features tr[data-feature]")
            own = lstm.scores[(lstm.scores.layer == layer) & (lstm.scores.unit == unit)].sort_values(
                "strength", ascending=False).head(6)
            assert [r.get_attribute("data-feature") for r in rows] == own.feature.tolist()
            assert [float(r.get_attribute("data-partial")) for r in rows] == pytest.approx(own.partial.tolist(), abs=1e-4)
            assert f"best explained by {best[layer, unit]}" in driver.find_element(By.ID, "unit-page").text
            # colours: each cell's background is the store's level on the unit's scale, tanh(c) and a gate
            first = driver.execute_script("return window.rnnlensExplorer.anchorPos()")
            for kind in ("c", "f"):
                if kind == "f":  # a gate: another palette, the same check
                    Select(driver.find_element(By.ID, "kind")).select_by_value("f")
                    driver.find_element(By.ID, "show").click()
                    wait(driver, lambda d: "forget" in d.execute_script(label))
                scale = lstm.display_scale(kind, layer, unit)
                levels = lstm.track(scale["source"], layer, unit)
                for pos in range(first + 1, first + 60, 7):
                    if lstm.text[pos] != 10:
                        assert cell_colour(driver, pos) == expected_colour(levels[pos], kind, scale), (kind, pos)
                assert scale["note"] in driver.find_element(By.ID, "legend").text
            target = driver.find_elements(By.CSS_SELECTOR, "#picker li")[0]
            target.click()  # back to the best quote cell, for the comparison and the screenshot
            layer, unit = int(target.get_attribute("data-layer")), int(target.get_attribute("data-unit"))
            wait(driver, lambda d: d.execute_script(label).endswith(f"L{layer}:{unit} tanh(c) cell"))

            # predictions under the cursor: the numbers of the store and the predictions Parquet
            frame, _ = read_predictions(workflow_results / "toy/predictions/lstm-2x16.parquet")
            pos = int(np.argmin(frame.p.to_numpy()[100:]) + 100)  # an error, so the oracle line shows
            set_field(driver, "jump", pos)
            driver.find_element(By.ID, "go").click()
            box = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'.prediction[data-pos="{pos}"]'))[0]
            rows = [r.find_elements(By.TAG_NAME, "td") for r in box.find_elements(By.CSS_SELECTOR, "tr.top5")]
            shown = [(cells[1].text, float(cells[2].text)) for cells in rows]
            stored = lstm.positions[pos]
            assert shown == [(byte_label(b), round(float(p), 4)) for b, p in zip(stored["top_byte"], stored["top_p"])]
            assert shown[0] == (byte_label(frame.argmax[pos]), round(float(frame.p_argmax[pos]), 4))
            assert float(box.find_element(By.CLASS_NAME, "p-model").text) == round(float(frame.p[pos]), 4)
            if has_kenlm():
                ngram, _ = read_predictions(workflow_results / "toy/predictions/ngram-3.parquet")
                assert float(box.find_element(By.CLASS_NAME, "p-ngram").text) == round(float(ngram.p[pos]), 4)
            assert "error" in box.text and "explained by" in box.text
            # an empty "go to" is refused, not read as position 0
            driver.find_element(By.ID, "jump").clear()
            driver.find_element(By.ID, "go").click()
            wait(driver, lambda d: "type a position" in d.find_element(By.ID, "status").text)
            assert driver.execute_script("return window.rnnlensExplorer.state.cursor") == pos

            # the hovered character: boxed in the text (orange), and the prediction panel follows it
            hovered = next(p for p in range(pos + 3, pos + 40) if lstm.text[p] not in (9, 10, 32)
                           and driver.execute_script("return window.rnnlensExplorer.cellBox(arguments[0])", p))
            cell = driver.execute_script("return window.rnnlensExplorer.cellBox(arguments[0])", hovered)
            canvas = driver.find_element(By.ID, "text")
            ActionChains(driver).move_to_element_with_offset(
                canvas, int(cell["x"] + cell["w"] / 2 - canvas.size["width"] / 2),
                int(cell["y"] + cell["h"] / 2 - canvas.size["height"] / 2)).perform()
            wait(driver, lambda d: d.execute_script("return window.rnnlensExplorer.state.hover") == hovered)
            wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'.prediction[data-pos="{hovered}"]'))
            assert "hovered" in driver.find_element(By.ID, "predict").text
            edge = driver.execute_script(
                "const c = document.getElementById('text'), b = window.rnnlensExplorer.cellBox(arguments[0]);"
                "return Array.from(c.getContext('2d').getImageData(b.x, b.y + 8, 1, 1).data.slice(0, 3));", hovered)
            assert edge == [224, 112, 0]  # HOVER
            ActionChains(driver).move_to_element(driver.find_element(By.ID, "corpus-info")).perform()
            wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'.prediction[data-pos="{pos}"]'))

            check_ablation_in_page(driver, workflow_results, lstm, layer, unit)

            # two models: the GRU's cell as a strip, and the loss difference as a strip
            driver.find_element(By.ID, "add-other").click()
            wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#tracks li")) == 2)
            driver.find_element(By.ID, "add-lossdiff").click()
            wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#tracks li")) == 3)
            best_gru = gru.scores[gru.scores.feature == "in_dquote"].sort_values("rank").iloc[0]
            gru_label = f"gru-2x16 L{best_gru.layer}:{best_gru.unit} h hidden"
            assert gru_label in driver.find_element(By.ID, "tracks").text
            gru_frame, _ = read_predictions(workflow_results / "toy/predictions/gru-2x16.parquet")
            diff = np.log(gru_frame.p.to_numpy(np.float64)) - np.log(frame.p.to_numpy(np.float64))
            expected = np.floor((np.clip(diff, -4, 4) + 4) * 255 / 8 + 0.5).astype(np.uint8)
            assert np.array_equal(np.frombuffer(get(url + "api/lossdiff?model=lstm-2x16&other=gru-2x16"), np.uint8),
                                  expected)
            # the GRU strip to the text colour: header, controls, legend and unit page all follow
            driver.find_elements(By.CSS_SELECTOR, "#tracks li")[1].find_element(By.TAG_NAME, "button").click()
            wait(driver, lambda d: gru_label in d.find_element(By.ID, "colouring").text)
            wait(driver, lambda d: f"gru-2x16 layer {best_gru.layer}, unit {best_gru.unit}" in
                 d.find_element(By.ID, "unit-page").text)
            assert Select(driver.find_element(By.ID, "model")).first_selected_option.get_attribute("value") == "gru-2x16"
            # the prediction panel puts the selected model first
            wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".prediction")[0].get_attribute("data-model")
                 == "gru-2x16")
            # with a GRU selected (its update gate's long label), nothing scrolls sideways at 1600 x 1000
            Select(driver.find_element(By.ID, "kind")).select_by_value("z")
            sizes = driver.execute_script(
                "const s = document.getElementById('side'); return [s.scrollWidth, s.clientWidth, "
                "document.documentElement.scrollWidth, window.innerWidth, window.innerHeight]")
            assert sizes[0] <= sizes[1] and sizes[2] <= sizes[3] and sizes[3:] == [1600, 1000], sizes
            Select(driver.find_element(By.ID, "model")).select_by_value("lstm-2x16")
            wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".prediction")[0].get_attribute("data-model")
                 == "lstm-2x16")
            driver.find_elements(By.CSS_SELECTOR, "#tracks li")[1].find_element(By.TAG_NAME, "button").click()
            wait(driver, lambda d: d.execute_script(label).endswith(f"L{layer}:{unit} tanh(c) cell"))
            set_field(driver, "text-feature", "in_dquote")
            driver.find_element(By.ID, "add-feature").click()
            wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#tracks li")) == 4)
            assert driver.execute_script("return Array.from(window.rnnlensExplorer.state.tracks[3].data)") == \
                lstm.feature_track("in_dquote").tolist()

            # for the screenshot: a search for the units that fall over an indentation, quotes in view
            indent = lstm.text.tobytes().find(b"\n    if") + 1
            search_in_page(driver, sel_start=indent, sel_end=indent + 4, threshold=0.0, direction="falls", pad=2)
            assert driver.find_elements(By.CSS_SELECTOR, "#search-units li")
            quote = lstm.text.tobytes().find(b'said "', 300)
            driver.execute_script("window.rnnlensExplorer.jump(arguments[0])", quote)
            wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'.prediction[data-pos="{quote}"]'))
            assert browser.severe_console_messages(driver) == []
            driver.execute_script("document.getElementById('side').scrollTop = 0")
            shot = tmp_path / "explore.png"
            driver.save_screenshot(str(shot))
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if os.environ.get("RNNLENS_EXPLORE_SCREENSHOT"):  # how docs/explore.png is made (256 colours: small)
                from PIL import Image

                Image.open(shot).convert("RGB").quantize(256).save(os.environ["RNNLENS_EXPLORE_SCREENSHOT"],
                                                                   optimize=True)
    finally:
        server.shutdown()
        server.server_close()


def check_ablation_in_page(driver, results, store, layer, unit):
    """The unit page's toggle holds the unit (at its training mean, then zero): under the cursor the ablated top-5
    and p of the true character beside the model's own, as rnnlens.interventions computes them, and the loss
    difference as a strip; off again, both go."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    model, _ = load_model(results / "toy/models/lstm-2x16/model.pt")
    corpus = PreparedCorpus.load(results / "toy/data.json")
    means = unit_means(model, corpus)
    toggle = driver.find_element(By.ID, "ablate")
    assert toggle.is_enabled() and f"hold unit {unit} of layer {layer}'s c" in toggle.get_attribute("title")
    assert driver.find_element(By.ID, "ablate-what").text == f"ablate c unit L{layer}:{unit} (cell state)"
    strips = len(driver.find_elements(By.CSS_SELECTOR, "#tracks li"))
    toggle.click()
    for mode in ("mean", "zero"):
        if mode == "zero":
            Select(driver.find_element(By.ID, "ablate-mode")).select_by_value("zero")
        label = f"loss ablated \u2212 own: lstm-2x16 L{layer}:{unit} c at {mode} (nats)"
        wait(driver, lambda d: label in d.find_element(By.ID, "tracks").text, timeout=180)
        assert len(driver.find_elements(By.CSS_SELECTOR, "#tracks li")) == strips + 1
        ablated, own = expected_ablation(model, corpus, store, layer, unit, mode, means)
        dloss = np.log(own["p"].astype(np.float64)) - np.log(ablated["p"].astype(np.float64))
        pos = int(np.argmax(np.abs(dloss)))  # where the ablation changes the prediction most
        assert abs(dloss[pos]) > 0.05
        set_field(driver, "jump", pos)
        driver.find_element(By.ID, "go").click()
        box = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'.prediction[data-pos="{pos}"] table.ablated'))[0]
        box = box.find_element(By.XPATH, "ancestor::div[@class='prediction']")
        assert box.get_attribute("data-model") == "lstm-2x16"
        order = np.argsort(-ablated["probs"][pos], kind="stable")[:5]
        rows = [r.find_elements(By.TAG_NAME, "td") for r in box.find_elements(By.CSS_SELECTOR, "tr.ablated-top5")]
        assert [c[1].text for c in rows] == [byte_label(b) for b in corpus.vocab[order]]
        assert [float(c[2].get_attribute("data-p")) for c in rows] == pytest.approx(ablated["probs"][pos][order], abs=1e-6)
        assert [float(c[2].text) for c in rows] == [round(float(p), 4) for p in ablated["probs"][pos][order]]
        shown = box.find_element(By.CLASS_NAME, "p-ablated")
        assert float(shown.get_attribute("data-p")) == pytest.approx(float(ablated["p"][pos]), abs=1e-6)
        assert float(shown.text) == round(float(ablated["p"][pos]), 4)
        assert float(box.find_element(By.CLASS_NAME, "dloss").get_attribute("data-dloss")) == pytest.approx(dloss[pos],
                                                                                                         abs=1e-6)
        # beside them the model's own, unchanged: the panel shows the change
        own_p = float(box.find_element(By.CLASS_NAME, "p-model").text)
        assert own_p == round(float(store.positions["p"][pos]), 4) and own_p != float(shown.text)
        own_rows = [r.find_elements(By.TAG_NAME, "td") for r in box.find_elements(By.CSS_SELECTOR, "tr.top5")]
        assert [float(c[2].text) for c in own_rows] == [round(float(p), 4) for p in store.positions["top_p"][pos]]
        # the strip: the loss difference of every position on its scale, shown in the legend; its colour at pos
        scale = nice_scale(dloss)
        levels = np.floor((np.clip(dloss, -scale, scale) + scale) * 255 / (2 * scale) + 0.5).astype(np.uint8)
        assert driver.execute_script("return Array.from(window.rnnlensExplorer.state.ablation.data)") == levels.tolist()
        legend = driver.find_element(By.ID, "legend").text
        assert f"clipped at \u00b1{scale:g} nats" in legend and f"-{scale:g}" in legend
        strip = strips  # numbered from 1 below the text line: the new strip is the last
        colour = driver.execute_script(
            "const b = window.rnnlensExplorer.cellBox(arguments[0]), c = document.getElementById('text');"
            "return Array.from(c.getContext('2d').getImageData(b.x + 2, b.y + 17 + 1 + (arguments[1] - 1) * 8 + 3, 1, 1)"
            ".data.slice(0, 3));", pos, strip)
        assert colour == expected_colour(levels[pos], "c")
        note = driver.find_element(By.ID, "ablation-note").text
        held = means[layer - 1][unit] if mode == "mean" else 0.0
        assert f"held at {held:.3f}" in note
    toggle.click()
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#tracks li")) == strips)
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".prediction") and
         not d.find_elements(By.CSS_SELECTOR, ".prediction table.ablated"))
    assert driver.execute_script("return window.rnnlensExplorer.state.ablation") is None


def set_field(driver, field, value):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    element = driver.find_element(By.ID, field)
    if element.tag_name == "select":
        Select(element).select_by_value(str(value))
    else:
        element.clear()
        element.send_keys(str(value))


def search_in_page(driver, **fields):
    """Fill the search form, run it and wait for its answer (a new result object, or a failure message)."""
    from selenium.webdriver.common.by import By

    driver.execute_script("window.rnnlensExplorer.state.search = null")
    for field, value in fields.items():
        set_field(driver, field.replace("_", "-"), value)
    driver.find_element(By.ID, "search").click()
    wait(driver, lambda d: d.execute_script("return window.rnnlensExplorer.state.search !== null") or
         "failed" in d.find_element(By.ID, "search-summary").text)


def visible_text(raw):
    """app.js's `visible`: newline and tab as arrows, other control bytes as a dot."""
    out = raw.decode("latin-1").replace("\n", "\u21b5").replace("\t", "\u2192")
    return "".join("\u00b7" if ord(ch) < 32 or 127 <= ord(ch) <= 255 and ch not in "\u21b5\u2192" else ch for ch in out)


@pytest.mark.slow
def test_ablation_toggle_names_the_cell_state_it_holds_in_headless_chromium(tmp_path, prepared):
    """Whichever kind of a unit colours the text, the toggle holds that unit's cell state, and says so."""
    needs_browser()
    from selenium.webdriver.common.by import By

    _, _, store = stored_model(prepared, tmp_path, "lstm", "lstm-2x8")
    server, url = serve_in_thread(Explorer([store]))
    try:
        with browser.headless_chromium(1600, 1000) as driver:
            driver.get(url)
            browser.wait_until_ready(driver)
            for kind in ("f", "h", "c"):
                for field, value in (("layer", 2), ("unit", 5), ("kind", kind)):
                    set_field(driver, field, value)
                driver.find_element(By.ID, "show").click()
                wait(driver, lambda d: d.execute_script("return window.rnnlensExplorer.state.tracks[0].label")
                     .endswith(f"L2:5 {KIND_LABELS[kind]}"))
                assert driver.find_element(By.ID, "ablate-what").text == "ablate c unit L2:5 (cell state)"
                title = driver.find_element(By.ID, "ablate").get_attribute("title")
                assert "hold unit 5 of layer 2's c" in title
                note = f"the page shows its {KIND_LABELS[kind]}: that is not held, its c is"
                assert (note in title) == (kind != "c"), title
            assert browser.severe_console_messages(driver) == []
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_saturated_units_search_and_matches_in_headless_chromium(tmp_path):
    needs_browser()
    from selenium.webdriver.common.by import By

    store, spans = synthetic_store(tmp_path / "store")
    server, url = serve_in_thread(Explorer([store]))
    try:
        with browser.headless_chromium(1600, 1000) as driver:
            driver.get(url)
            browser.wait_until_ready(driver)
            # no model weights beside this store: the ablation toggle is off and says why
            toggle = driver.find_element(By.ID, "ablate")
            why = driver.find_element(By.ID, "ablate-label").get_attribute("title")
            assert not toggle.is_enabled() and "ablation is not available for lstm-2x16" in why and "does not exist" in why

            # a saturated cell (tanh(c) -1.00 everywhere) is coloured from its raw c on its own scale, stated
            for field, value in (("layer", 1), ("unit", 11)):
                set_field(driver, field, value)
            driver.find_element(By.ID, "show").click()
            wait(driver, lambda d: d.execute_script("return window.rnnlensExplorer.state.tracks[0].label")
                 .endswith("L1:11 tanh(c) cell"))
            scale = store.display_scale("c", 1, 11)
            legend = driver.find_element(By.ID, "legend").text
            assert "own scale: c" in legend and f"{scale['lo']:+.3g}" in legend and f"{scale['hi']:+.3g}" in legend
            assert "own scale" in driver.find_element(By.ID, "colouring").text
            wait(driver, lambda d: "own scale" in d.find_element(By.CLASS_NAME, "scale-note").text)
            quote = QUOTES[20]
            driver.execute_script("window.rnnlensExplorer.jump(arguments[0])", quote[0])
            levels = store.track("c_raw", 1, 11)
            colours = {}
            for pos in range(quote[0] - 5, quote[1] + 5):
                if store.text[pos] != 10 and driver.execute_script("return window.rnnlensExplorer.cellBox(arguments[0])",
                                                                   pos):
                    colours[pos] = cell_colour(driver, pos)
                    assert colours[pos] == expected_colour(levels[pos], "c", scale), pos
            inside = [c for p, c in colours.items() if quote[0] <= p < quote[1]]
            outside = [c for p, c in colours.items() if not quote[0] <= p < quote[1]]
            assert len(inside) >= 5 and len(outside) >= 5
            assert all(c[0] > c[2] for c in inside) and all(c[2] > c[0] for c in outside)  # red in, blue out

            # a unit that falls over the span is found; every match listed with its context and the units' shares
            search_in_page(driver, sel_start=spans[0][0], sel_end=spans[0][1], threshold=0.5, direction="falls")
            units = driver.find_elements(By.CSS_SELECTOR, "#search-units li")
            assert [(int(u.get_attribute("data-layer")), int(u.get_attribute("data-unit")),
                     u.get_attribute("data-falls")) for u in units] == [(2, 12, "true")]
            assert "falls" in units[0].text
            summary = driver.find_element(By.ID, "search-summary").text
            assert "1 of 32 units" in summary and "3 matches" in summary
            matches = driver.find_elements(By.CSS_SELECTOR, "#search-matches li")
            assert [(int(m.get_attribute("data-start")), int(m.get_attribute("data-end"))) for m in matches] == spans
            for m, (a, b) in zip(matches, spans):
                context = m.find_element(By.CLASS_NAME, "ctx")
                expected = visible_text(store.text[a - 16:a].tobytes()) + visible_text(store.text[a:b].tobytes()) \
                    .replace(" ", "\u2423") + visible_text(store.text[b:b + 16].tobytes())
                assert context.get_attribute("textContent") == expected
                assert context.find_element(By.TAG_NAME, "mark").get_attribute("textContent") == \
                    visible_text(store.text[a:b].tobytes()).replace(" ", "\u2423")
                assert len(m.find_elements(By.CLASS_NAME, "sq")) == 1
            # the line plot of the selected unit over the span and around it: its line passes through its values
            for pos in (spans[0][0] - 2, spans[0][0] + 5, spans[0][1] + 2):
                point = driver.execute_script("return window.rnnlensExplorer.plotPoint(0, arguments[0])", pos)
                assert colour_near(plot_pixels(driver, point["x"], point["y"]), point["colour"]), pos
            plot = driver.execute_script("return window.rnnlensExplorer.state.plot.series[0].values")
            values = store.values("c", 2, 12)[spans[0][0] - 30:spans[0][1] + 30]
            assert np.allclose(plot, values, atol=1e-3)

            # the saturated unit on its own scale: 60 matches over two pages, every one reachable, all marked
            search_in_page(driver, sel_start=QUOTES[7][0], sel_end=QUOTES[7][1], threshold=0.5, direction="rises",
                           search_scale="own")
            assert (lambda u: (int(u.get_attribute("data-layer")), int(u.get_attribute("data-unit"))))(
                driver.find_elements(By.CSS_SELECTOR, "#search-units li")[0]) == (1, 11)
            assert "60 matches" in driver.find_element(By.ID, "search-summary").text
            seen = []
            for page in range(2):
                if page:
                    driver.find_element(By.ID, "next-page").click()
                    wait(driver, lambda d: d.execute_script("return window.rnnlensExplorer.state.search.offset") == 50)
                rows = driver.find_elements(By.CSS_SELECTOR, "#search-matches li")
                assert len(rows) == (50 if page == 0 else 10)
                seen += [(int(m.get_attribute("data-start")), int(m.get_attribute("data-end"))) for m in rows]
            assert "51\u201360 of 60" in driver.find_element(By.ID, "match-page").text
            assert sorted(seen) == QUOTES and driver.find_element(By.ID, "next-page").get_attribute("disabled")
            assert driver.execute_script("return Array.from({length: arguments[0]}, (_, p) => "
                                         "(window.rnnlensExplorer.state.mask[p >> 3] >> (7 - (p & 7))) & 1)"
                                         ".reduce((a, b) => a + b, 0)", store.n) == 600
            driver.execute_script("window.rnnlensExplorer.jump(arguments[0])", QUOTES[30][0] + 3)
            driver.find_element(By.ID, "next-match").click()  # from inside a match to the next one in the text
            wait(driver, lambda d: d.execute_script("return window.rnnlensExplorer.state.cursor") == QUOTES[31][0])
            driver.find_element(By.ID, "prev-match").click()
            wait(driver, lambda d: d.execute_script("return window.rnnlensExplorer.state.cursor") == QUOTES[30][0])

            # a failed search leaves nothing of the previous one
            search_in_page(driver, sel_start=50, sel_end=40)
            summary = driver.find_element(By.ID, "search-summary").text
            assert "search failed" in summary and "not inside the test split" in summary
            assert driver.find_elements(By.CSS_SELECTOR, "#search-matches li, #search-units li") == []
            assert driver.execute_script("return window.rnnlensExplorer.state.mask") is None
            # a text feature as a strip, then as the text colour: header and unit page follow, nothing stale
            set_field(driver, "text-feature", "line_pos")
            driver.find_element(By.ID, "add-feature").click()
            wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#tracks li")) == 2)
            assert "text feature line_pos" in driver.find_element(By.ID, "legend").text
            driver.find_elements(By.CSS_SELECTOR, "#tracks li")[1].find_element(By.TAG_NAME, "button").click()
            wait(driver, lambda d: "text feature line_pos" in d.find_element(By.ID, "colouring").text)
            wait(driver, lambda d: "not a unit" in d.find_element(By.ID, "unit-page").text)
            assert driver.find_elements(By.CSS_SELECTOR, "#unit-contexts li") == []
            assert browser.severe_console_messages(driver) == []
    finally:
        server.shutdown()
        server.server_close()


def plot_pixels(driver, x, y):
    """The RGB pixels of the plot canvas in a 5x5 square around (x, y)."""
    return driver.execute_script(
        "const c = document.getElementById('plot'), d = c.getContext('2d').getImageData(Math.round(arguments[0]) - 2,"
        " Math.round(arguments[1]) - 2, 5, 5).data; const out = [];"
        "for (let i = 0; i < d.length; i += 4) out.push([d[i], d[i + 1], d[i + 2]]); return out;", x, y)


def colour_near(pixels, css_hex, tolerance=40):
    target = [int(css_hex[i:i + 2], 16) for i in (1, 3, 5)]
    return any(all(abs(p - t) <= tolerance for p, t in zip(pixel, target)) for pixel in pixels)
