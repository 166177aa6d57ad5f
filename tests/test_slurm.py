"""The workflow on a real Slurm cluster through `snakemake --profile profiles/slurm`: the rules that compute run as
Slurm jobs and the bookkeeping rules declared local (workflow/rules/local.smk) on the submitting host, training jobs
ask for a GPU, results equal a local run with the same seed, a training job cancelled by Slurm resumes from its
checkpoint on the automatic retry, and a failed job (corrupt corpus) leaves nothing finished-looking.

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
# the targets: every stage the paper's Table 1 needs (later analysis rules add levels, not new Slurm mechanics)
def targets(corpora=("toy", "news")):
    return ["results/tables/table1.csv", *(f"results/figures/training_curves_{c}.png" for c in corpora),
            *(f"results/tables/models_{c}.csv" for c in corpora)]


RULES = ["fetch_corpus", "prepare_corpus", "models_table", "model_spec", "models_report", "train", "select_dropout",
         "evaluate", "training_curves", "table1"]
# of these, the ones that compute (or download) and so become Slurm jobs; the others are bookkeeping that the
# workflow runs on the submitting host (localrules)
SUBMITTED = ["fetch_corpus", "train", "evaluate"]


def declared_local_rules():
    """The rules that workflow/rules/local.smk's `localrules:` names."""
    text = (ROOT / "workflow" / "rules" / "local.smk").read_text()
    block = re.search(r"^localrules:\n((?:[ \t]+.*\n|\n)*)", text, flags=re.M).group(1)
    return set(re.findall(r"^\s+(\w+),", block, flags=re.M))


# the failed fetch of the corpus with the wrong sha256: its Slurm log, named by its Slurm job id
FAILED_FETCH = re.compile(r"Error in rule fetch_corpus:[^\[]*?(\S+/slurm_logs/rule_fetch_corpus/\S*?(\d+)\.log)")


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


def slurm_jobs(workdir):
    """rule -> Slurm job ids that ran it, from the plugin's logs .snakemake/slurm_logs/rule_<rule>/.../<id>.log
    (each logs "Finished jobid: N (Rule: <rule>)")."""
    out = {}
    for log in (workdir / ".snakemake/slurm_logs").rglob("*.log"):
        for rule in set(re.findall(r"\(Rule: (\w+)\)", log.read_text())):
            out.setdefault(rule, []).append(int(log.stem))
    return {rule: sorted(ids) for rule, ids in out.items()}


def job_ids(workdir):
    return {int(log.stem) for log in (workdir / ".snakemake/slurm_logs").rglob("*.log")}


def scontrol(job_id):
    """Slurm's record of a job (kept for MinJobAge = 600 s after it ends on the CI cluster) as a dict."""
    text = subprocess.run(["scontrol", "-o", "show", "job", str(job_id)], capture_output=True, text=True,
                          check=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", text))


def planned_jobs(workdir):
    rc, out = snakemake(workdir, "-n", "--quiet", "rules", "--", *targets())
    assert rc == 0, out[-3000:]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M) if m.group(1) != "total"}


def cancel_training_when_started(workdir, proc, deadline):
    """Wait until the trainer runs, then `scancel` its Slurm job as preemption or a time limit would. -> job id"""
    log = workdir / "results/logs/toy/train/lstm-1x8/dropout-0.log"
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and "training lstm" in log.read_text():
            running = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], capture_output=True,
                                     text=True).stdout.split("\n")
            ids = [line.split()[0] for line in running if " rule_train_" in line]
            if ids:
                subprocess.run(["scancel", ids[0]], check=True)
                return int(ids[0])
        time.sleep(0.2)
    raise AssertionError(f"the training job never started; snakemake exited {proc.poll()}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The tiny workflow run locally, then on Slurm: first with a second corpus whose sha256 does not match (that
    corpus fails, the other one completes, and its training job is cancelled mid-way and retried), then again after
    fixing the sha256."""
    base = tmp_path_factory.mktemp("slurm")
    t0 = time.time()
    local = make_workdir(base / "local", {"toy": ("corpus.txt", {})})
    rc, out = snakemake(local, "--", *targets(["toy"]), slurm=False)
    assert rc == 0, out[-3000:]
    t_local = time.time() - t0

    cluster = make_workdir(base / "cluster", {"toy": ("corpus.txt", {}), "news": ("corpus2.txt", {"sha256": "0" * 64})})
    cmd = ["timeout", "-s", "INT", "300", SNAKEMAKE, "--profile", "profiles/slurm", "--latency-wait", "5", "--",
           *targets()]
    with open(base / "first.out", "w") as out_file:
        proc = subprocess.Popen(cmd, cwd=cluster, env=run_env(), stdout=out_file, stderr=subprocess.STDOUT)
        try:
            cancelled = cancel_training_when_started(cluster, proc, time.time() + 150)
            first_rc = proc.wait(timeout=360)
        finally:
            if proc.poll() is None:
                proc.send_signal(2)
                proc.wait(timeout=60)
    first_out = (base / "first.out").read_text()
    assert first_rc not in (0, 124), first_out[-4000:]
    t_first = time.time() - t0 - t_local
    first = {"jobs": slurm_jobs(cluster), "fetch_log": (cluster / "results/logs/news/fetch_corpus.log").read_text(),
             "files": {p: p.stat().st_mtime_ns for p in (cluster / "results").rglob("*") if p.is_file()}}

    good_sha = hashlib.sha256((cluster / "corpus2.txt").read_bytes()).hexdigest()
    write_config(cluster, {"toy": ("corpus.txt", {}), "news": ("corpus2.txt", {"sha256": good_sha})})
    plan = planned_jobs(cluster)
    second_rc, second_out = snakemake(cluster, "--", *targets())
    assert second_rc == 0, second_out[-4000:]
    print(f"wall time: local run {t_local:.0f} s, first Slurm run {t_first:.0f} s, "
          f"second Slurm run {time.time() - t0 - t_local - t_first:.0f} s")
    return {"local": local, "cluster": cluster, "cancelled": cancelled, "first_out": first_out, "first": first,
            "plan": plan, "second_out": second_out}


def test_computing_rules_run_as_slurm_jobs_local_rules_on_the_host_and_training_asks_for_a_gpu(runs):
    jobs = slurm_jobs(runs["cluster"])
    assert sorted(jobs) == sorted(SUBMITTED), jobs
    # every other rule is declared local and was run, by Snakemake on this host: no Slurm job, no Slurm log
    local = set(RULES) - set(SUBMITTED)
    assert local <= declared_local_rules()
    output = runs["first_out"] + runs["second_out"]
    ran_here = set(re.findall(r"^local(?:rule|checkpoint) (\w+):", output, flags=re.M))
    assert ran_here == local, ran_here
    logged = {d.name.removeprefix("rule_") for d in (runs["cluster"] / ".snakemake/slurm_logs").iterdir()}
    assert logged == set(SUBMITTED), logged
    print(f"Slurm jobs: {len(job_ids(runs['cluster']))} for {', '.join(SUBMITTED)}; on the host: "
          f"{', '.join(sorted(local))}")
    failed = int(FAILED_FETCH.search(runs["first_out"]).group(2))
    for job_id in job_ids(runs["cluster"]):
        info = scontrol(job_id)
        state = {runs["cancelled"]: "CANCELLED", failed: "FAILED"}.get(job_id, "COMPLETED")
        assert info["JobState"] == state, (job_id, info["Comment"], info["JobState"])
        # training and evaluation ask for a GPU
        gpu_job = info["Comment"].startswith(("rule_train_", "rule_evaluate_"))
        asks_gpu = re.search(r"gres[:/]gpu[:=]1\b", info.get("TresPerJob", "")) is not None
        assert asks_gpu == gpu_job, (info["Comment"], info.get("TresPerJob"))
    # toy: the cancelled training job (it finished no rule) and its retry; news: one training job
    assert runs["cancelled"] not in jobs["train"] and len(jobs["train"]) == 2
    assert len(jobs["evaluate"]) == 2


def test_cancelled_training_resumes_on_retry_and_ends_like_an_uninterrupted_run(runs):
    cluster, local = runs["cluster"], runs["local"]
    # Snakemake empties a job's log before the retry, so the retry's log is all there is: it resumed from the
    # checkpoint written on SIGTERM (the periodic one is due only after checkpoint_seconds = 60 s), past the start
    # (in whichever epoch the cancel landed: that depends on how fast the cluster started the job)
    train_log = (cluster / "results/logs/toy/train/lstm-1x8/dropout-0.log").read_text()
    resumed = re.search(r"resuming from checkpoint: epoch (\d+) step (\d+)/200 \(checkpoint reason: interrupted\)",
                        train_log)
    assert resumed and (int(resumed.group(1)), int(resumed.group(2))) > (1, 0), train_log
    assert "done: best val" in train_log
    assert not (cluster / "results/toy/models/lstm-1x8/dropout-0/checkpoint.pt").exists()
    retry = runs["first_out"].split(f"SLURM jobid {runs['cancelled']} ")[1]
    assert "Error in rule train" in retry and "Trying to restart job" in retry

    model = "results/toy/models/lstm-1x8/model.pt"
    ours, theirs = (torch.load(d / model, weights_only=False)["state_dict"] for d in (cluster, local))
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name


def test_results_equal_a_local_run(runs):
    cluster, local = runs["cluster"], runs["local"]
    pred = "results/toy/predictions/lstm-1x8.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(cluster / pred), pd.read_parquet(local / pred))
    ours = pd.read_csv(cluster / "results/tables/table1.csv").set_index("corpus")
    theirs = pd.read_csv(local / "results/tables/table1.csv").set_index("corpus")
    assert sorted(ours.index) == ["news", "toy"]
    assert ours.loc["toy", "test_loss"] == theirs.loc["toy", "test_loss"]
    assert (cluster / "results/figures/training_curves_toy.png").stat().st_size > 1000


def test_failed_job_leaves_no_output_and_the_fixed_rerun_completes_only_what_is_missing(runs):
    cluster, out = runs["cluster"], runs["first_out"]
    # the failure: non-zero exit (checked in the fixture), the paths of the job's logs, the cause in the rule log
    slurm_log = FAILED_FETCH.search(out)
    assert slurm_log and Path(slurm_log.group(1)).exists(), out[-3000:]
    assert "Error in rule fetch_corpus" in Path(slurm_log.group(1)).read_text()
    assert re.search(r"Error in rule fetch_corpus:[^\[]*log: results/logs/news/fetch_corpus.log", out), out[-3000:]
    assert "sha256 mismatch" in runs["first"]["fetch_log"], runs["first"]["fetch_log"]
    # nothing finished-looking for the broken corpus, nor for the table that needs it
    produced = [str(p.relative_to(cluster)) for p in runs["first"]["files"]]
    assert not [p for p in produced if p.startswith("results/news/")], produced
    assert "results/tables/table1.csv" not in produced

    # fixed: only what is missing runs; nothing of `toy` is redone
    assert runs["plan"] == {rule: 1 for rule in RULES}
    for path, mtime in runs["first"]["files"].items():
        if "news" not in path.name and "news" not in path.parent.parts:  # the failed jobs' logs are rewritten
            assert path.stat().st_mtime_ns == mtime, path
    assert planned_jobs(cluster) == {}
