"""rnnlens.io: outputs are complete or absent, and model files cannot run code when loaded."""
import pickle

import pytest
import torch

from rnnlens.errors import RnnlensError
from rnnlens.io import atomic_dir, atomic_path, atomic_write_text, torch_load, torch_save


def test_an_interrupted_write_leaves_neither_the_target_nor_a_temporary_file(tmp_path):
    with pytest.raises(KeyError):
        with atomic_path(tmp_path / "out.csv") as tmp:
            tmp.write_text("half")
            raise KeyError("killed mid-write")
    assert list(tmp_path.iterdir()) == []
    atomic_write_text(tmp_path / "out.csv", "whole\n")
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"] and (tmp_path / "out.csv").read_text() == "whole\n"


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    """cells/ of an earlier run may hold pictures of other cells: a new run's folder takes its place whole."""
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "old.png").write_text("old")
    with pytest.raises(KeyError):
        with atomic_dir(tmp_path / "cells") as tmp:
            (tmp / "new.png").write_text("half")
            raise KeyError("killed mid-write")
    assert [p.name for p in tmp_path.iterdir()] == ["cells"] and [p.name for p in (tmp_path / "cells").iterdir()] == [
        "old.png"]
    with atomic_dir(tmp_path / "cells") as tmp:
        (tmp / "new.png").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["cells"] and [p.name for p in (tmp_path / "cells").iterdir()] == [
        "new.png"]


class Payload:
    def __reduce__(self):  # what a malicious model file does: run a command when unpickled
        import os

        return os.system, ("touch pwned",)


def test_a_pickle_payload_is_refused_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open(tmp_path / "model.pt", "wb") as f:
        pickle.dump({"spec": Payload()}, f)
    torch.save({"spec": Payload(), "state_dict": {}}, tmp_path / "evil.pt")
    for path in ("model.pt", "evil.pt"):
        with pytest.raises(RnnlensError, match="could run code"):
            torch_load(tmp_path / path)
    assert not (tmp_path / "pwned").exists()
    torch_save({"w": torch.ones(2), "extra": {"vocab": [1, 2]}}, tmp_path / "ok.pt")
    assert torch_load(tmp_path / "ok.pt")["extra"] == {"vocab": [1, 2]}
