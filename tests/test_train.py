import json
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import markov_text, run_env
from rnnlens.corpus import PreparedCorpus
from rnnlens.model import ModelSpec, load_model
from rnnlens.errors import InputError
from rnnlens.io import torch_load
from rnnlens.train import (EXIT_INTERRUPTED, TrainConfig, TrainingDiverged, TrainState, read_snapshot_manifest,
                           select_dropout, steps_per_epoch, tbptt_streams, train)


def test_tbptt_every_training_character_is_a_target_once_per_epoch():
    n, batch, seq_len = 1037, 7, 10
    tokens = torch.arange(n)
    inputs, targets = tbptt_streams(tokens, batch)
    length = (n - 1) // batch
    seen = []
    state_chain = []
    for step in range(steps_per_epoch(inputs.shape[1], seq_len)):
        x = inputs[:, step * seq_len : (step + 1) * seq_len]
        y = targets[:, step * seq_len : (step + 1) * seq_len]
        assert torch.equal(y, x + 1)  # the target is the next character
        seen.append(y.reshape(-1))
        state_chain.append(x[:, 0])
    seen = torch.cat(seen).sort().values
    assert torch.equal(seen, torch.arange(1, batch * length + 1))  # each once, none missing
    # streams are contiguous: step s+1 of a stream continues where step s stopped (state carry is valid)
    for a, b in zip(state_chain, state_chain[1:]):
        assert torch.equal(b - a, torch.full_like(a, seq_len))


def _cfg(**kw):
    base = dict(batch_size=8, seq_len=20, max_epochs=3, patience=5, checkpoint_seconds=1e9, log_seconds=1e9)
    base.update(kw)
    return TrainConfig(**base)


def _train(prepared_json, tmp_path, name, cfg, spec=None, **kw):
    corpus = PreparedCorpus.load(prepared_json)
    spec = spec or ModelSpec("lstm", 2, 16, corpus.vocab_size, 0.1)
    out = tmp_path / name
    out.mkdir(exist_ok=True)
    code = train(cfg, corpus, spec, out / "model.pt", out / "history.csv", out / "checkpoint.pt", **kw)
    return code, out


def _weights(path):
    return torch.load(path, weights_only=False)["state_dict"]


def test_training_learns_and_is_reproducible(prepared, tmp_path):
    torch.set_num_threads(1)
    data = prepared(markov_text(8000))
    cfg = _cfg(max_epochs=6, learning_rate=1e-2)
    _, a = _train(data, tmp_path, "a", cfg)
    _, b = _train(data, tmp_path, "b", cfg)
    hist = pd.read_csv(a / "history.csv")
    assert list(hist.columns[:6]) == ["epoch", "train_loss", "val_loss", "lr", "seconds", "chars_per_s"]
    assert hist.val_loss.min() < np.log(5) - 0.3  # well below uniform over the 5 symbols
    assert hist.train_loss.iloc[-1] < hist.train_loss.iloc[0]
    wa, wb = _weights(a / "model.pt"), _weights(b / "model.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not (a / "checkpoint.pt").exists()  # removed once the model is final
    model, extra = load_model(a / "model.pt")
    assert extra["grad_clip_rule"] == "value 5.0" and extra["vocab"] == sorted(set(markov_text(8000)))


def test_bf16_autocast_learns_as_fp32_does(prepared, tmp_path):
    """training.precision bf16 really computes in bfloat16 (its weights end up different from fp32's) and still
    learns the Markov source about as well; fp16 outside CUDA is refused with the fix in the message."""
    torch.set_num_threads(1)
    data = prepared(markov_text(8000))
    cfg = dict(max_epochs=6, learning_rate=1e-2)
    _, full = _train(data, tmp_path, "fp32", _cfg(**cfg))
    _, half = _train(data, tmp_path, "bf16", _cfg(precision="bf16", **cfg))
    h32, h16 = pd.read_csv(full / "history.csv"), pd.read_csv(half / "history.csv")
    assert h16.val_loss.min() < np.log(5) - 0.3
    assert abs(h16.val_loss.min() - h32.val_loss.min()) < 0.1
    w32, w16 = _weights(full / "model.pt"), _weights(half / "model.pt")
    assert any(not torch.equal(w32[k], w16[k]) for k in w32)
    assert all(w.dtype == torch.float32 for w in w16.values())  # master weights stay fp32
    with pytest.raises(ValueError, match="fp16 needs a CUDA device.*use bf16 or fp32"):
        _train(data, tmp_path, "fp16", _cfg(precision="fp16", device="cpu"))
    with pytest.raises(ValueError, match="use one of fp32, bf16, fp16"):
        _train(data, tmp_path, "fp8", _cfg(precision="fp8"))


def test_resume_mid_epoch_equals_uninterrupted(prepared, tmp_path):
    torch.set_num_threads(1)
    data = prepared(markov_text(8000))
    _, full = _train(data, tmp_path, "full", _cfg())
    code, part = _train(data, tmp_path, "part", _cfg(), stop_after_steps=50)  # 37 steps/epoch: stops in epoch 2
    assert code == EXIT_INTERRUPTED
    assert (part / "checkpoint.pt").exists() and not (part / "model.pt").exists()
    code, part = _train(data, tmp_path, "part", _cfg(), stop_after_steps=30)  # stops again, in epoch 3
    assert code == EXIT_INTERRUPTED
    code, part = _train(data, tmp_path, "part", _cfg())
    assert code == 0
    wf, wp = _weights(full / "model.pt"), _weights(part / "model.pt")
    assert all(torch.equal(wf[k], wp[k]) for k in wf)
    hf, hp = pd.read_csv(full / "history.csv"), pd.read_csv(part / "history.csv")
    assert np.allclose(hf.val_loss, hp.val_loss) and np.allclose(hf.train_loss, hp.train_loss)


def test_the_checkpoint_is_the_train_state(prepared, tmp_path):
    data = prepared(markov_text(8000))
    _, out = _train(data, tmp_path, "x", _cfg(), stop_after_steps=50)  # 40 steps/epoch: epoch 2, step 10
    ckpt = torch_load(out / "checkpoint.pt")  # plain data and tensors: loads with weights_only
    assert set(ckpt) == {f for f in TrainState.__dataclass_fields__} | {"run_key", "rng", "reason"}
    assert (ckpt["epoch"], ckpt["step"], ckpt["global_step"], ckpt["reason"]) == (2, 10, 50, "interrupted")
    assert len(ckpt["history"]) == 1 and ckpt["history"][0]["epoch"] == 1


def test_checkpoint_from_other_settings_is_ignored(prepared, tmp_path):
    data = prepared(markov_text(8000))
    _train(data, tmp_path, "x", _cfg(), stop_after_steps=10)
    code, out = _train(data, tmp_path, "x", _cfg(learning_rate=1e-3, max_epochs=1))
    assert code == 0 and len(pd.read_csv(out / "history.csv")) == 1


def test_divergence_is_a_clear_error(prepared, tmp_path):
    data = prepared(markov_text(8000))
    with pytest.raises(TrainingDiverged, match="diverged. Lower training.learning_rate"):
        _train(data, tmp_path, "d", _cfg(learning_rate=1e38, grad_clip_mode="none", log_seconds=0))
    assert not (tmp_path / "d" / "model.pt").exists()


def _snapshot_files(out):
    return sorted(p.name for p in (out / "snapshots").iterdir())


def test_resume_keeps_the_snapshots_written_before_the_interruption(prepared, tmp_path):
    torch.set_num_threads(1)
    data = prepared(markov_text(8000))
    cfg = _cfg(snapshot_epochs=[0.5, 1, 1.5, 2.5])  # 40 steps/epoch: steps 20, 40, 60, 100
    _, full = _train(data, tmp_path, "full", cfg)
    code, part = _train(data, tmp_path, "part", cfg, stop_after_steps=50)
    assert code == EXIT_INTERRUPTED
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (part / "snapshots").glob("step*.pt")}
    assert sorted(before) == ["step0000020.pt", "step0000040.pt"]
    assert _train(data, tmp_path, "part", cfg)[0] == 0
    entries = read_snapshot_manifest(part / "snapshots")
    assert [e["file"] for e in entries] == [e["file"] for e in read_snapshot_manifest(full / "snapshots")]
    assert [e["global_step"] for e in entries] == [20, 40, 60, 100]
    assert entries[1]["epoch_fraction"] == 1.0
    for name, stat in before.items():  # the same files, neither cleared nor rewritten by the rerun
        path = part / "snapshots" / name
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == stat
    for e in entries:  # and the resumed training's snapshots are those of an uninterrupted one
        wf, wp = _weights(full / "snapshots" / e["file"]), _weights(e["path"])
        assert all(torch.equal(wf[k], wp[k]) for k in wf)
    manifest = json.loads((part / "snapshots" / "manifest.json").read_text())
    assert manifest["settings"]["snapshot_epochs"] == [0.5, 1, 1.5, 2.5]
    assert manifest["settings"]["steps_per_epoch"] == 40


def test_stale_snapshots_of_an_earlier_training_are_not_read(prepared, tmp_path):
    torch.set_num_threads(1)
    data = prepared(markov_text(8000))
    _, out = _train(data, tmp_path, "m", _cfg(max_epochs=2, snapshot_epochs=[0.5, 1.5]))
    assert _snapshot_files(out) == ["manifest.json", "step0000020.pt", "step0000060.pt"]
    # a left-over file in the folder is not listed, so the dynamics stage does not read it
    (out / "snapshots" / "step0000001.pt").write_bytes((out / "snapshots" / "step0000020.pt").read_bytes())
    assert [e["file"] for e in read_snapshot_manifest(out / "snapshots")] == ["step0000020.pt", "step0000060.pt"]
    # the dropout pick copies exactly the manifest's snapshots
    select_dropout([out / "model.pt"], tmp_path / "pick" / "model.pt", tmp_path / "pick" / "history.csv",
                   tmp_path / "pick" / "selection.json")
    assert _snapshot_files(tmp_path / "pick") == ["manifest.json", "step0000020.pt", "step0000060.pt"]
    # training afresh with other settings clears the earlier training's snapshots
    _train(data, tmp_path, "m", _cfg(max_epochs=1, snapshot_epochs=[1]))
    assert _snapshot_files(out) == ["manifest.json", "step0000040.pt"]
    # a model trained without snapshots has none, and the dynamics stage says how to get them
    _train(data, tmp_path, "m", _cfg(max_epochs=1))
    assert not (out / "snapshots").exists()
    with pytest.raises(InputError, match="no snapshot manifest .*analysis.dynamics.snapshot_epochs"):
        read_snapshot_manifest(out / "snapshots")
    (tmp_path / "pick" / "snapshots" / "step0000060.pt").unlink()
    with pytest.raises(InputError, match=r"names snapshots that are missing \(step0000060.pt\).*retrain"):
        read_snapshot_manifest(tmp_path / "pick" / "snapshots")


@pytest.mark.slow
def test_sigterm_checkpoints_and_rerun_resumes_to_same_weights(prepared, tmp_path):
    """A real SIGTERM (what Slurm sends) at an arbitrary moment; the rerun ends where an uninterrupted run does."""
    data = prepared(markov_text(30000))
    (tmp_path / "models.csv").write_text("model,hidden\nlstm-1x24,24\n")
    settings = json.dumps({"batch_size": 8, "seq_len": 20, "max_epochs": 4, "patience": 9,
                           "checkpoint_seconds": 0.2, "log_seconds": 0.05})

    def cmd(out):
        return [sys.executable, "-m", "rnnlens", "train", "--data", str(data), "--models-table",
                str(tmp_path / "models.csv"), "--model", "lstm-1x24", "--settings", settings, "--threads", "1",
                "--out-model", str(out / "model.pt"), "--out-history", str(out / "history.csv"),
                "--checkpoint", str(out / "checkpoint.pt")]

    full, part = tmp_path / "full", tmp_path / "part"
    full.mkdir(), part.mkdir()
    subprocess.run(cmd(full), check=True, env=run_env(), capture_output=True)
    proc = subprocess.Popen(cmd(part), env=run_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "epoch 2 step" in line:
            proc.send_signal(signal.SIGTERM)
            break
    lines += proc.stdout.readlines()
    assert proc.wait(timeout=60) == EXIT_INTERRUPTED, "".join(lines)
    assert "checkpoint (interrupted)" in "".join(lines)
    assert (part / "checkpoint.pt").exists() and not (part / "model.pt").exists()
    resumed = subprocess.run(cmd(part), env=run_env(), capture_output=True, text=True)
    assert resumed.returncode == 0 and "resuming from checkpoint: epoch 2" in resumed.stdout
    wf, wp = _weights(full / "model.pt"), _weights(part / "model.pt")
    assert all(torch.equal(wf[k], wp[k]) for k in wf)
