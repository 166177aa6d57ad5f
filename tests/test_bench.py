"""The benchmark suite runs for real: the GPU script's CPU fallback path, and the quick stages of bench/run_all.py
into a temporary results directory (BENCH_RESULTS)."""

import json
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, run_env
from test_ngram import needs_kenlm


def bench_env(tmp_path, **extra):
    return {**run_env(), "BENCH_RESULTS": str(tmp_path / "bench"), **extra}


def test_gpu_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "bench" / "gpu.sh")], check=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the refusal path does not apply")
def test_gpu_script_says_what_to_do_without_a_gpu(tmp_path):
    env = bench_env(tmp_path, DEVICE="cuda", BENCH_OUT=str(tmp_path / "out"), VENV=str(ROOT / ".venv"))
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no python with torch" in proc.stderr and "DEVICE=cpu" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_gpu_script_cpu_fallback_measures_and_projects(tmp_path):
    out = tmp_path / "out"
    env = bench_env(tmp_path, DEVICE="cpu", STEPS="2", POINTS="lstm-1x64,gru-1x64", SHARE_KS="1,2",
                    SHARE_STEPS="2,1", SHARE_STARTUP="5", BENCH_OUT=str(out), VENV=str(ROOT / ".venv"))
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh")], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    result = json.loads((out / "train.json").read_text())
    assert [r["model"] for r in result["results"]] == ["lstm-1x64", "gru-1x64"]
    for row in result["results"]:
        assert row["steps"] == 2 and row["workflow_chars_per_s"] > 0 and row["bare_chars_per_s"] > 0
        # the same model, optimizer and batch on both sides: far apart would mean the workflow does extra work
        assert 0.3 < row["ratio"] < 3, row
    assert "ONLY 2 of the 36" in result["projection"]["note"]
    for model, ks in (("lstm-1x128", [1, 2]), ("lstm-3x512", [1])):
        share = json.loads((out / f"share-{model}.json").read_text())
        assert [r["k"] for r in share["rows"]] == ks and share["rows"][0]["speedup"] == 1.0
    table = text[text.index("===="):]  # the short table comes last
    assert "lstm-1x64" in table and "gru-1x64" in table and "train/bare" in table
    assert "projected paper grid, 4 models" in table and "with jobs sharing the GPU" in table
    assert "2/2 points measured" in table


def test_features_benchmark_measures_every_text_side_by_side(tmp_path):
    out = tmp_path / "features.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_features.py"), "--bytes", "20000",
                           "--repeats", "1", "--out", str(out)], env=bench_env(tmp_path), capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert [r["text"] for r in result["results"]] == ["mixed C (test pieces)", "synthetic C", "synthetic prose"]
    for row in result["results"]:
        assert row["bytes"] == 20000 and row["features_s"] > 0 and 0 < row["modes_share"]
    assert result["goal_s_per_300kb"] == 3.0 and "worst:" in proc.stdout


@needs_kenlm
@pytest.mark.slow
def test_run_all_quick_stages_write_a_summary(tmp_path):
    env = bench_env(tmp_path)
    repo_results = ROOT / "results" / "bench"
    before = {p.name: p.stat().st_mtime for p in repo_results.glob("*")} if repo_results.is_dir() else {}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick", "--only",
                           "oracles,kenlm,brackets,features"], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bench = tmp_path / "bench"
    kenlm = json.loads((bench / "kenlm.json").read_text())
    rows = kenlm["results"]
    assert [r["order"] for r in rows] == [1, 3, 5]
    # more context: more n-grams and a lower test loss, on any text with structure
    assert rows[0]["n_ngrams"] < rows[1]["n_ngrams"] < rows[2]["n_ngrams"]
    assert rows[0]["test_loss_nats"] > rows[1]["test_loss_nats"] > rows[2]["test_loss_nats"]
    assert all(r["build_s"] > 0 and r["lmplz_peak_mib"] > 0 and r["score_chars_per_s"] > 0 for r in rows)
    brackets = json.loads((bench / "brackets.json").read_text())
    assert brackets["test_bytes"] > 300_000 and min(brackets["matched_closers_in_test"].values()) > 0
    summary = (bench / "summary.md").read_text()
    assert "| 5 |" in summary and "## KenLM" in summary
    lines = {line.split(" | ")[0]: line for line in summary.splitlines() if line.startswith("| ")}
    # each figure beside its goal; whether a time goal is met depends on the machine's load, so is not asserted
    reported = ("| met |", "| **missed** |")
    for figure in ("| Bracket matching", "| Oracle error analysis", "| Character features"):
        assert any(k.startswith(figure) and line.endswith(reported) for k, line in lines.items()), figure
    # nothing of this run went to the repository's results/
    after = {p.name: p.stat().st_mtime for p in repo_results.glob("*")} if repo_results.is_dir() else {}
    assert after == before


def test_the_slurm_job_counts_in_the_docs_are_those_of_the_current_workflow(tmp_path):
    """docs/slurm.md quotes docs/results/paper_plan.csv (the paper grid's jobs per rule, and which a Slurm run
    submits): a rule added, or one made local, without regenerating it (`bench/bench_rules.py --plan-only`) fails."""
    plan = tmp_path / "paper_plan.csv"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_rules.py"), "--plan-only", "--plan-csv",
                           str(plan)], env=bench_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert plan.read_text() == (ROOT / "docs" / "results" / "paper_plan.csv").read_text()
    rows = [line.split(",") for line in plan.read_text().splitlines()[1:]]
    where = {rule: place for rule, _, place in rows}
    # what computes is submitted; the bookkeeping stays on the host
    assert {where[r] for r in ("train", "evaluate", "internals", "ngram", "nnn", "dynamics")} == {"Slurm job"}
    assert {where[r] for r in ("model_spec", "select_dropout", "table1", "corpus_table1")} == {"host"}
    submitted = sum(int(n) for _, n, place in rows if place == "Slurm job")
    assert f"a Slurm run submits {submitted} of them" in " ".join((ROOT / "docs" / "slurm.md").read_text().split())
