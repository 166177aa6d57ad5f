"""The one front door: every command is listed by `rnnlens --help` and documents itself; a user error is one line
and exit 2, anything else keeps its traceback."""
import json
import subprocess
import sys

import pytest

from conftest import markov_text, run_env
from rnnlens.cli import COMMANDS


def rnnlens(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "rnnlens", *args], capture_output=True, text=True, env=run_env(),
                          cwd=cwd, timeout=120)


def test_help_lists_every_command_with_its_summary():
    proc = rnnlens("--help")
    assert proc.returncode == 0, proc.stderr
    listed = " ".join(proc.stdout.split())  # argparse wraps long summaries
    for name, (_, summary) in COMMANDS.items():
        assert f" {name} " in listed, name
        assert " ".join(summary.split()[:4]) in listed, name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_documents_its_arguments(name):
    proc = rnnlens(name, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: rnnlens {name}"), proc.stdout[:200]
    assert "--" in proc.stdout.split("options:", 1)[-1], f"{name} --help lists no options"


def test_a_user_error_is_one_line_and_exit_2(tmp_path):
    proc = rnnlens("prepare", "--corpus", "toy", "--corpus-bin", str(tmp_path / "missing.bin"),
                   "--split", json.dumps({"train": 0.8, "val": 0.1, "test": 0.1}), "--out", str(tmp_path / "d.json"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnlens prepare: error:") and "missing.bin" in lines[0], lines
    assert not (tmp_path / "d.json").exists()


def test_an_unexpected_error_keeps_its_traceback(tmp_path):
    # malformed JSON from a caller is not a user's config mistake the CLI can explain: it must show where it broke
    (tmp_path / "corpus.bin").write_bytes(markov_text(3000))
    proc = rnnlens("prepare", "--corpus", "toy", "--corpus-bin", str(tmp_path / "corpus.bin"), "--split", "{not json",
                   "--out", str(tmp_path / "d.json"))
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr and "JSONDecodeError" in proc.stderr, proc.stderr
    assert not (tmp_path / "d.json").exists()
