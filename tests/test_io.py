"""rnnlens.io: outputs are complete or absent, and model files cannot run code when loaded."""
import json
import os
import pickle
import stat
import subprocess
import sys

import pytest
import torch

from conftest import markov_text, run_env
from rnnlens.errors import CorpusError, RnnlensError
from rnnlens.io import atomic_dir, atomic_path, atomic_write_text, current_umask, torch_load, torch_save, verify_sha256


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


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o002], ids=["umask022", "umask002"])
def test_written_files_and_folders_honour_the_umask(tmp_path, umask):
    """As a plain open() and mkdir would: a lab whose umask is 002 shares its results folder with its group."""
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        atomic_write_text(tmp_path / "table.csv", "a,b\n")
        with atomic_dir(tmp_path / "cells") as tmp:
            (tmp / "cell.png").write_bytes(b"png")
        (tmp_path / "plain.csv").write_text("a,b\n")
        (tmp_path / "plain").mkdir()
    finally:
        os.umask(old)
    assert mode(tmp_path / "table.csv") == mode(tmp_path / "plain.csv") == 0o666 & ~umask
    assert mode(tmp_path / "cells") == mode(tmp_path / "plain") == 0o777 & ~umask
    assert mode(tmp_path / "cells" / "cell.png") == 0o666 & ~umask


def test_a_command_run_under_umask_002_writes_group_writable_results(tmp_path):
    (tmp_path / "corpus.bin").write_bytes(markov_text(2000))
    split = json.dumps({"train": 0.8, "val": 0.1, "test": 0.1})
    proc = subprocess.run(["bash", "-c", f"umask 002; {sys.executable} -m rnnlens prepare --corpus toy --corpus-bin "
                                         f"{tmp_path / 'corpus.bin'} --split '{split}' --out {tmp_path / 'data.json'}"],
                          env=run_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert mode(tmp_path / "data.json") == 0o664


def test_a_sha256_mismatch_is_one_line_naming_both_hashes(tmp_path):
    (tmp_path / "corpus.txt").write_bytes(b"some text")
    with pytest.raises(CorpusError) as err:
        verify_sha256(tmp_path / "corpus.txt", "0" * 64, "corpus corpus.txt")
    message = str(err.value)
    assert "\n" not in message and "sha256 mismatch" in message and "0" * 64 in message
    assert "set the corpus's sha256 in the config" in message


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
