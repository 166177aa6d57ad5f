"""The documentation's numbers are rendered from the committed results (scripts/render_docs.py): the committed
files agree with their rendering, a number edited by hand fails --check, and a changed result changes the text."""

import shutil
import subprocess
import sys

import pandas as pd
import pytest

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "render_docs.py"
DOCS = ("README.md", "docs/slurm.md", "docs/results")


def render(root, *args):
    return subprocess.run([sys.executable, str(SCRIPT), "--root", str(root), *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def repo(tmp_path):
    """A copy of the documents and the results (no figures) to edit."""
    for name in DOCS:
        source, target = ROOT / name, tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.png"))
        else:
            shutil.copy(source, target)
    return tmp_path


def test_the_committed_documents_agree_with_the_committed_results():
    proc = render(ROOT, "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_number_edited_by_hand_fails_the_check_and_rendering_restores_it(repo):
    readme = repo / "README.md"
    committed = readme.read_text()
    rendered = "<!-- rendered: ngram_vs_paper linux 20 -->0.883 vs the paper's 0.889<!-- end rendered -->"
    assert rendered in committed
    readme.write_text(committed.replace(rendered, rendered.replace("0.883", "0.884")))
    proc = render(repo, "--check")
    assert proc.returncode == 1
    changed = [line for line in proc.stdout.splitlines() if line.startswith(("-", "+"))
               and not line.startswith(("---", "+++"))]
    assert len(changed) == 2 and "0.884" in changed[0] and "0.883" in changed[1], proc.stdout
    assert "README.md" in proc.stderr and "render_docs.py" in proc.stderr
    assert readme.read_text() != committed  # --check writes nothing
    assert render(repo).returncode == 0
    assert readme.read_text() == committed
    assert render(repo, "--check").returncode == 0


def test_a_changed_result_is_stale_until_rendered_and_then_computed(repo):
    table1 = repo / "docs" / "results" / "table1.csv"
    t1 = pd.read_csv(table1)
    t1.loc[t1.model == "lstm-2x64", "test_loss"] = 1.450  # paper 1.442: now above it
    t1.to_csv(table1, index=False)
    assert render(repo, "--check").returncode == 1
    assert render(repo).returncode == 0
    readme = (repo / "README.md").read_text()
    assert "| 1.476 / 1.450 / 1.532 |" in readme
    assert "of 9 models, 8 are 0.008-0.027 above and 1 (lstm-3x64) 0.008 below the paper" in readme
    assert "(best gru-2x64, 1.399)" in (repo / "docs" / "results" / "README.md").read_text()


def test_an_optional_result_adds_its_rows_when_committed(repo):
    """A multi-seed Table 1 (the columns of rnnlens.tables.SEED_COLUMNS) joins the paper table with its means."""
    results = repo / "docs" / "results"
    seeds = pd.read_csv(results / "table1.csv").query("layers == 1").copy()
    seeds["n_seeds"], seeds["test_loss_mean"], seeds["test_loss_sd"] = 3, seeds.test_loss + 0.01, 0.004
    seeds["ci95_lo"], seeds["ci95_hi"] = seeds.test_loss_mean - 0.01, seeds.test_loss_mean + 0.01
    seeds["paper_in_ci"] = (seeds.ci95_lo <= seeds.paper_test_loss_recalled) & \
        (seeds.paper_test_loss_recalled <= seeds.ci95_hi)
    seeds.to_csv(results / "table1_seeds.csv", index=False)
    assert render(repo, "--check").returncode == 1
    assert render(repo).returncode == 0
    readme = (repo / "README.md").read_text()
    assert "| War and Peace LSTM 1 layer, size 64 (30 epochs, 3 seeds) | 1.486 ± 0.004 | 1.449* |" in readme
    assert "| War and Peace GRU 1 layer, size 64 (30 epochs, 3 seeds) | 1.430 ± 0.004 | 1.398* |" in readme
    # lstm 1.4858 vs 1.449, rnn 1.4721 vs 1.446, gru 1.430 vs 1.398: all above, none inside its interval
    assert ("Table 1, War and Peace, size 64 (30 epochs, 3 seeds): all 3 models (their mean over seeds) are "
            "0.026-0.037 above the paper. The paper's value is inside the 95% interval of the mean for 0 of 3 "
            "models.") in readme
    # the reference rows are still there
    assert "| War and Peace LSTM 1 / 2 / 3 layers, size 64 (30 epochs) | 1.476 / 1.436 / 1.532 |" in readme


def test_a_missing_result_or_an_unknown_block_is_a_one_line_error(repo):
    (repo / "docs" / "results" / "memory_definitions.csv").unlink()
    proc = render(repo, "--check")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "memory_definitions.csv is missing" in proc.stderr
    shutil.copy(ROOT / "docs" / "results" / "memory_definitions.csv", repo / "docs" / "results")
    slurm = repo / "docs" / "slurm.md"
    slurm.write_text(slurm.read_text() + "\nsee <!-- rendered: no_such_block --><!-- end rendered -->\n")
    proc = render(repo)
    assert proc.returncode == 2 and "unknown block 'no_such_block'" in proc.stderr
