import torch

from rnnlens.corpus import PreparedCorpus
from rnnlens.model import ModelSpec
from rnnlens.sample import sample
from rnnlens.train import TrainConfig, train


def test_sampling_continues_a_learned_pattern(prepared, tmp_path):
    torch.set_num_threads(1)
    data = prepared(b"the cat sat.\n" * 400)
    corpus = PreparedCorpus.load(data)
    cfg = TrainConfig(batch_size=8, seq_len=26, max_epochs=12, learning_rate=1e-2, log_seconds=1e9)
    spec = ModelSpec("lstm", 1, 32, corpus.vocab_size)
    train(cfg, corpus, spec, tmp_path / "m.pt", tmp_path / "h.csv", tmp_path / "c.pt")
    from rnnlens.model import load_model

    model, extra = load_model(tmp_path / "m.pt")
    greedy = sample(model, extra["vocab"], length=26, prime=b"the c", argmax=True)
    assert greedy.startswith(b"the c") and len(greedy) == 31
    assert greedy == (b"the cat sat.\n" * 3)[:31]
    a = sample(model, extra["vocab"], length=50, temperature=1.0, seed=3)
    b = sample(model, extra["vocab"], length=50, temperature=1.0, seed=3)
    assert a == b and set(a) <= set(b"the cat sat.\n")
