"""What one job of each rule costs: wall seconds and peak memory of its command, from a real run of the whole
workflow. The figures choose which rules a cluster run keeps on the submitting host (`localrules:` in
workflow/rules/local.smk: a Slurm job costs a queue wait and a controller's attention, so a job of a few seconds
and little memory is cheaper run there) and which are submitted (docs/slurm.md).

The run is the paper's shape at the paper's text size with small models: a 3.3 MB corpus (the Python standard
library's source) in char-rnn's 100 x 100 rows layout, so the test split has War and Peace's 330,000 characters and
every analysis reads as many positions as on the paper's corpus; evaluation, internals and oracle settings as in
config.yaml; 6 models (rnn, lstm, gru x 2 small sizes, the larger one with two dropout trials), one epoch each,
the n-gram and n-NN baselines at low orders. What grows with the models' size (training, evaluation, internals,
dynamic evaluation, explorer stores) is submitted whatever it costs here; the bookkeeping and aggregation rules
read tables, metadata or one model file, so their cost here is their cost on the paper's grid.

Every `python` a rule's shell starts goes through a stand-in that runs the real interpreter and records its command
line, wall time and peak resident memory (os.wait4); the jobs run one at a time (--cores 1) so that they do not
slow each other down. A record is matched to its rule through an output file it names (`snakemake --summary`).

It also counts the jobs of the paper's grid (`snakemake -n` on config.yaml, planned in an empty folder) by rule,
and how many of them a Slurm run submits: every job but those of local rules (and the target rule `all`, which
runs nothing).

    python bench/bench_rules.py [--out results/bench/rules.json] [--csv results/bench/rules.csv]
                                [--plan-csv results/bench/paper_plan.csv] [--plan-only] [--keep DIR | --from DIR]
"""

import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common import RESULTS, ROOT, write_json

SNAKEMAKE = Path(sys.executable).parent / "snakemake"

CONFIG = {
    "corpora": {"stdlib": {"stdlib": True, "max_bytes": 3_300_000, "quote_scope": "line",
                           "split": {"train": 0.8, "val": 0.1, "test": 0.1, "layout": "rows", "rows": 100,
                                     "chunk": 100}}},
    "grid": {"arch": ["rnn", "lstm", "gru"], "layers": [1], "size": [8, 16]},
    "training": {"seed": 1, "batch_size": 100, "seq_len": 100, "max_epochs": 1, "patience": 5,
                 "checkpoint_seconds": 300, "device": "cpu"},
    "training_overrides": {"size-16": {"dropout": [0, 0.25]}},
    "evaluation": {"streams": 100, "warmup": 2000},
    "ngram": {"orders": [1, 2, 3], "memory_mb": 1000},
    "nnn": {"orders": [1, 2], "hidden": [16], "epochs": 1, "patience": 1, "batch_size": 1000},
    "analysis": {
        "reference_ngram": 3,
        "oracles": {"ngram_orders": [1, 2, 3]},
        "internals": {"threads": 1},
        "explore": {"models": ["lstm-1x16"], "threads": 1},
        "dynamics": {"model": "lstm-1x8", "snapshot_epochs": [0.5, 1], "nnn_orders": [1, 2]},
    },
    "resources": {"train_threads": 1},
}

STAND_IN = '''#!{python}
import json, os, subprocess, sys, time
t0 = time.perf_counter()
child = subprocess.Popen([{python!r}, *sys.argv[1:]])
_, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
with open({log!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "seconds": time.perf_counter() - t0,
                        "max_rss_mb": usage.ru_maxrss / 1024}}) + "\\n")
sys.exit(child.returncode)
'''


def local_rules(path=ROOT / "workflow" / "rules" / "local.smk"):
    """The rules named by the `localrules:` directive of local.smk (none when it is missing)."""
    if not path.is_file():
        return set()
    block = re.search(r"^localrules:\n((?:[ \t]+.*\n|\n)*)", path.read_text(), flags=re.M)
    return set(re.findall(r"^\s+(\w+),", block.group(1), flags=re.M)) if block else set()


def run_workflow(workdir, env, cores):
    for name in ("Snakefile", "workflow", "src", "profiles", "envs"):
        (workdir / name).symlink_to(ROOT / name, target_is_directory=(ROOT / name).is_dir())
    (workdir / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    t0 = time.perf_counter()
    proc = subprocess.run([str(SNAKEMAKE), "--cores", str(cores)], cwd=workdir, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"the workflow failed (exit {proc.returncode}); output above")
    return time.perf_counter() - t0


def rule_of_outputs(workdir, env):
    """output path -> rule, from `snakemake --summary` (tab-separated: output file, date, rule, ...)."""
    proc = subprocess.run([str(SNAKEMAKE), "--summary"], cwd=workdir, env=env, capture_output=True, text=True,
                          check=True)
    rows = [line.split("\t") for line in proc.stdout.splitlines()[1:] if "\t" in line]
    return {row[0]: row[2] for row in rows}


# the flags that name what a command writes (--out, --out-dir, --csv-out, --fig-dir, ...); other paths it names
# are inputs, which are outputs of the rules before it
OUTPUT_FLAG = re.compile(r"^--(.*out.*|.*-dir|provenance)$")


def rule_of(argv, outputs):
    for flag, token in zip(argv, argv[1:]):
        if not OUTPUT_FLAG.match(flag):
            continue
        if token in outputs:
            return outputs[token]
        inside = [rule for path, rule in outputs.items() if path.startswith(token.rstrip("/") + "/")]
        if inside:
            return inside[0]
    return None


def paper_plan(env, local):
    """Jobs per rule of the paper's config.yaml, planned from nothing -> rows {rule, jobs, where}."""
    with tempfile.TemporaryDirectory(prefix="bench_rules_plan_") as tmp:
        for name in ("Snakefile", "workflow", "src", "profiles", "envs", "config.yaml"):
            (Path(tmp) / name).symlink_to(ROOT / name, target_is_directory=(ROOT / name).is_dir())
        proc = subprocess.run([str(SNAKEMAKE), "-n", "--quiet", "rules"], cwd=tmp, env=env, capture_output=True,
                              text=True, check=True)
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M)}
    counts.pop("total")
    where = {rule: "host" if rule in local else "none (runs nothing)" if rule == "all" else "Slurm job"
             for rule in counts}
    return [{"rule": rule, "jobs": n, "where": where[rule]} for rule, n in counts.items()]


def summarise(records, outputs, local):
    by_rule = {}
    for record in records:
        rule = rule_of(record["argv"], outputs)
        if rule is None:
            raise SystemExit(f"no rule names an output of {' '.join(record['argv'])}")
        by_rule.setdefault(rule, []).append(record)
    rows = []
    for rule, runs in by_rule.items():
        seconds = [r["seconds"] for r in runs]
        rows.append({"rule": rule, "local": rule in local, "jobs": len(runs),
                     "median_s": round(statistics.median(seconds), 2), "max_s": round(max(seconds), 2),
                     "max_rss_mb": round(max(r["max_rss_mb"] for r in runs))})
    return sorted(rows, key=lambda r: (not r["local"], r["median_s"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(RESULTS / "rules.json"))
    ap.add_argument("--csv", default=str(RESULTS / "rules.csv"))
    ap.add_argument("--cores", type=int, default=1, help="1: jobs one at a time, so each is timed alone")
    ap.add_argument("--plan-csv", default=str(RESULTS / "paper_plan.csv"))
    ap.add_argument("--plan-only", action="store_true", help="count the paper grid's jobs only (seconds)")
    ap.add_argument("--keep", help="run in this (new) folder and keep it, instead of a temporary one")
    ap.add_argument("--from", dest="kept", help="summarise the run kept in this folder (--keep) instead of running")
    args = ap.parse_args()

    plan = paper_plan(os.environ, local_rules())
    write_csv(args.plan_csv, plan)
    total = sum(r["jobs"] for r in plan)
    submitted = sum(r["jobs"] for r in plan if r["where"] == "Slurm job")
    everything = sum(r["jobs"] for r in plan if r["rule"] != "all")
    print(f"paper grid (config.yaml): {total} jobs; a Slurm run submits {submitted} (without local rules: "
          f"{everything}), {total - submitted - 1} run on the host; wrote {args.plan_csv}")
    if args.plan_only:
        return

    workdir = Path(args.kept or args.keep or tempfile.mkdtemp(prefix="bench_rules_"))
    stand_in_dir, log = workdir / "timed-bin", workdir / "timed.jsonl"
    env = {**os.environ, "PATH": f"{stand_in_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}"
                                 f"{os.environ.get('PATH', '')}"}
    try:
        if args.kept:
            wall = json.loads((workdir / "wall.json").read_text())["seconds"]
        else:
            workdir.mkdir(parents=True, exist_ok=True)
            stand_in_dir.mkdir()
            (stand_in_dir / "python").write_text(STAND_IN.format(python=sys.executable, log=str(log)))
            (stand_in_dir / "python").chmod(0o755)
            wall = run_workflow(workdir, env, args.cores)
            (workdir / "wall.json").write_text(json.dumps({"seconds": wall}))
        records = [json.loads(line) for line in log.read_text().splitlines()]
        rows = summarise(records, rule_of_outputs(workdir, env), local_rules())
    finally:
        if not (args.keep or args.kept):
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'rule':<20} {'local':>5} {'jobs':>4} {'median s':>9} {'max s':>7} {'peak MB':>8}")
    for r in rows:
        print(f"{r['rule']:<20} {'yes' if r['local'] else '':>5} {r['jobs']:>4} {r['median_s']:>9.2f} "
              f"{r['max_s']:>7.2f} {r['max_rss_mb']:>8}")
    print(f"whole run: {wall:.0f} s with --cores {args.cores}; models_report (a `cp`) is not timed")
    write_json(args.out, {"config": CONFIG, "cores": args.cores, "wall_seconds": round(wall, 1), "rules": rows,
                          "paper_plan": plan})
    write_csv(args.csv, rows)
    print(f"wrote {args.out} and {args.csv}")


def write_csv(path, rows):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
