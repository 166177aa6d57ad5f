"""The workflow on a real Slurm cluster through `snakemake --profile profiles/slurm`: every rule runs as a Slurm job,
training jobs ask for a GPU, results equal a local run with the same seed, a training job cancelled by Slurm resumes
from its checkpoint on the automatic retry, and a failed job (corrupt corpus) leaves nothing finished-looking.

Needs a cluster that answers `sinfo` (one fake GPU is enough): `make test-slurm` starts a throw-away one on this
machine (scripts/slurm/start.sh, root + Debian) and stops it afterwards. Without one these tests are skipped, unless
RNNLENS_REQUIRE_SLURM=1 (CI), where they fail instead.

Every snakemake call runs under `timeout -s INT`: Snakemake ignores SIGTERM while it waits for jobs, and on SIGINT it
cancels its Slurm jobs before exiting. Each dependency level costs ~12 s of status polling, so jobs are kept tiny.
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import ROOT, markov_text, run_env

pytestmark = pytest.mark.slurm

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
RULES = ["fetch_corpus", "prepare_corpus", "models_table", "models_report", "train", "evaluate", "training_curves",
         "table1"]


def cluster_answers():
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module", autouse=True)
def cluster():
    if not cluster_answers():
        reason = ("no Slurm cluster answers `sinfo`; start a local one with `make test-slurm` "
                  "(or `sudo bash scripts/slurm/start.sh`)")
        if os.environ.get("RNNLENS_REQUIRE_SLURM") == "1":
            pytest.fail(reason + " [RNNLENS_REQUIRE_SLURM=1]")
        pytest.skip(reason)


def tiny_config(corpora):
    # 10 short epochs (~4 s of training) so that a job can be cancelled mid-training; patience keeps all 10
    return {
        "corpora": {name: {"path": path, **extra, "split": {"train": 0.8, "val": 0.1, "test": 0.1}}
                    for name, (path, extra) in corpora.items()},
        "grid": {"arch": ["lstm"], "layers": [1], "size": [8]},
        "training": {"seed": 1, "batch_size": 8, "seq_len": 20, "max_epochs": 10, "patience": 10,
                     "checkpoint_seconds": 60, "device": "cpu"},
        "evaluation": {"streams": 4, "warmup": 50},
        "resources": {"train_threads": 1},
    }


def make_workdir(d, corpora):
    """A copy of the workflow whose config.yaml is the tiny config. (Not --configfile + --replace-workflow-config:
    Snakemake 9.27 does not pass --replace-workflow-config on to the Slurm jobs, so their DAG would see the merged
    config.)"""
    d.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "src", "profiles", "envs"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, d / name)
    (d / "corpus.txt").write_bytes(markov_text(40000))
    (d / "corpus2.txt").write_bytes(markov_text(12000, seed=1))
    write_config(d, corpora)
    return d


def write_config(d, corpora):
    (d / "config.yaml").write_text(yaml.safe_dump(tiny_config(corpora)))


def snakemake(workdir, *args, slurm=True, limit=300):
    """Run snakemake (under `timeout -s INT`), return (returncode, stdout+stderr)."""
    profile = ["--profile", "profiles/slurm", "--latency-wait", "5"] if slurm else ["--cores", "2"]
    cmd = ["timeout", "-s", "INT", str(limit), SNAKEMAKE, *profile, *args]
    proc = subprocess.run(cmd, cwd=workdir, env=run_env(), capture_output=True, text=True, timeout=limit + 60)
    assert proc.returncode != 124, f"snakemake timed out after {limit} s:\n{proc.stderr[-4000:]}"
    return proc.returncode, proc.stdout + proc.stderr


def slurm_logs(workdir):
    """rule -> sorted Slurm job ids, from the plugin's logs .snakemake/slurm_logs/rule_<rule>/[<wildcards>/]<id>.log"""
    out = {}
    for log in (workdir / ".snakemake/slurm_logs").rglob("*.log"):
        rule = next(p for p in log.relative_to(workdir / ".snakemake/slurm_logs").parts if p.startswith("rule_"))
        out.setdefault(rule[len("rule_"):], []).append(int(log.stem))
    return {rule: sorted(ids) for rule, ids in out.items()}


def scontrol(job_id):
    """Slurm's record of a job (kept for MinJobAge = 600 s after it ends on the CI cluster) as a dict."""
    text = subprocess.run(["scontrol", "-o", "show", "job", str(job_id)], capture_output=True, text=True,
                          check=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", text))


def planned_jobs(workdir):
    rc, out = snakemake(workdir, "-n", "--quiet", "rules")
    assert rc == 0, out[-3000:]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M) if m.group(1) != "total"}


def cancel_training_when_started(workdir, proc, deadline):
    """Wait until the training job's trainer is running, then `scancel` it as Slurm preemption would. -> job id"""
    log = workdir / "results/logs/toy/train/lstm-1x8.log"
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and "training lstm" in log.read_text():
            running = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], capture_output=True,
                                     text=True).stdout.split("\n")
            ids = [line.split()[0] for line in running if "rule_train" in line]
            if ids:
                subprocess.run(["scancel", ids[0]], check=True)
                return int(ids[0])
        time.sleep(0.2)
    raise AssertionError(f"the training job never started; snakemake exited {proc.poll()}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny workflow run locally and on Slurm (with one training job cancelled mid-way)."""
    base = tmp_path_factory.mktemp("slurm")
    corpora = {"toy": ("corpus.txt", {})}
    local = make_workdir(base / "local", corpora)
    rc, out = snakemake(local, slurm=False)
    assert rc == 0, out[-3000:]

    cluster = make_workdir(base / "cluster", corpora)
    cmd = ["timeout", "-s", "INT", "300", SNAKEMAKE, "--profile", "profiles/slurm", "--latency-wait", "5"]
    with open(base / "cluster.out", "w") as out_file:
        proc = subprocess.Popen(cmd, cwd=cluster, env=run_env(), stdout=out_file, stderr=subprocess.STDOUT)
        try:
            cancelled = cancel_training_when_started(cluster, proc, time.time() + 120)
            rc = proc.wait(timeout=360)
        finally:
            if proc.poll() is None:
                proc.send_signal(2)
                proc.wait(timeout=60)
    out = (base / "cluster.out").read_text()
    assert rc == 0, out[-4000:]
    return {"local": local, "cluster": cluster, "cancelled": cancelled, "out": out}


def test_every_rule_runs_as_a_slurm_job_and_training_asks_for_a_gpu(runs):
    jobs = slurm_logs(runs["cluster"])
    assert sorted(jobs) == sorted(RULES), jobs
    for rule, ids in jobs.items():
        for job_id in ids:
            info = scontrol(job_id)
            assert info["Comment"].startswith(f"rule_{rule}"), info
            expected = "CANCELLED" if job_id == runs["cancelled"] else "COMPLETED"
            assert info["JobState"] == expected, (rule, job_id, info["JobState"])
            asks_gpu = re.search(r"gres[:/]gpu[:=]1\b", info.get("TresPerJob", "")) is not None
            assert asks_gpu == (rule in ("train", "evaluate")), (rule, info.get("TresPerJob"))
    assert len(jobs["train"]) == 2 and runs["cancelled"] == jobs["train"][0]


def test_cancelled_training_resumes_on_retry_and_ends_like_an_uninterrupted_run(runs):
    cluster, local = runs["cluster"], runs["local"]
    train_log = (cluster / "results/logs/toy/train/lstm-1x8.log").read_text()
    assert "checkpoint (interrupted)" in train_log, train_log
    assert "resuming from checkpoint" in train_log.split("checkpoint (interrupted)")[1], train_log
    assert not (cluster / "results/toy/models/lstm-1x8/checkpoint.pt").exists()
    assert re.search(r"SLURM status is: 'CANCELLED'", runs["out"]), runs["out"][-3000:]

    model = "results/toy/models/lstm-1x8/model.pt"
    ours, theirs = (torch.load(d / model, weights_only=False)["state_dict"] for d in (cluster, local))
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
    assert (cluster / "results/toy/models/lstm-1x8/history.csv").read_text() \
        .count("\n") == (local / "results/toy/models/lstm-1x8/history.csv").read_text().count("\n")


def test_results_equal_a_local_run(runs):
    cluster, local = runs["cluster"], runs["local"]
    pred = "results/toy/predictions/lstm-1x8.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(cluster / pred), pd.read_parquet(local / pred))
    ours, theirs = (pd.read_csv(d / "results/tables/table1.csv") for d in (cluster, local))
    assert list(ours.test_loss) == list(theirs.test_loss) and len(ours) == 1
    assert (cluster / "results/figures/training_curves_toy.png").stat().st_size > 1000


def test_failed_job_leaves_no_output_and_the_fixed_rerun_completes_only_what_is_missing(runs):
    cluster = runs["cluster"]
    finished = {p: p.stat().st_mtime_ns for p in (cluster / "results").rglob("*") if p.is_file()}
    table1 = (cluster / "results/tables/table1.csv").read_text()

    # a second corpus whose file does not match its pinned sha256
    good_sha = hashlib.sha256((cluster / "corpus2.txt").read_bytes()).hexdigest()
    write_config(cluster, {"toy": ("corpus.txt", {}), "news": ("corpus2.txt", {"sha256": "0" * 64})})
    rc, out = snakemake(cluster)
    assert rc != 0, out[-3000:]
    assert "Error in rule fetch_corpus" in out
    slurm_log = re.search(r"\S*\.snakemake/slurm_logs/rule_fetch_corpus/news/\d+\.log", out)
    assert slurm_log and Path(slurm_log.group(0)).exists(), out[-3000:]
    assert "results/logs/news/fetch_corpus.log" in out
    assert "sha256 mismatch" in (cluster / "results/logs/news/fetch_corpus.log").read_text()
    assert not (cluster / "results/news").exists() or not any((cluster / "results/news").iterdir())
    assert (cluster / "results/tables/table1.csv").read_text() == table1
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())

    # fixed: only the new corpus's jobs and the cross-corpus table run; nothing of `toy` is redone
    write_config(cluster, {"toy": ("corpus.txt", {}), "news": ("corpus2.txt", {"sha256": good_sha})})
    assert planned_jobs(cluster) == {rule: 1 for rule in RULES + ["all"]}
    before = set(sum(slurm_logs(cluster).values(), []))
    rc, out = snakemake(cluster)
    assert rc == 0, out[-3000:]
    assert len(set(sum(slurm_logs(cluster).values(), [])) - before) == len(RULES)
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items() if "tables/table1" not in str(p))
    assert sorted(pd.read_csv(cluster / "results/tables/table1.csv").corpus) == ["news", "toy"]
    assert planned_jobs(cluster) == {}
