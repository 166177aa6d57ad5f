"""Wall time of `snakemake -n` (a dry run) on the full paper configuration (config.yaml at the repository root:
both corpora x the 72-model grid plus baselines and analyses). Median of 3 runs; goal < 5 s.

Snakemake imports every installed executor plugin at start-up, and the Slurm plugin then runs
`scontrol show config`: on a machine with the Slurm client installed but no controller answering, that call
waits ~9 s on every snakemake command. When that is the case here, the dry run is timed a second way, with a
stand-in `scontrol` that fails at once (as on a machine without Slurm, or with a live controller), and both
figures are reported: the workflow's own cost and this machine's.

    python bench/bench_dryrun.py [--repeats 3] [--snakemake PATH] [--out results/bench/dryrun.json]
"""

import argparse
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


def find_snakemake(given=None):
    candidates = [given] if given else [Path(sys.executable).parent / "snakemake", ROOT / ".venv" / "bin" / "snakemake",
                                        shutil.which("snakemake")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise SystemExit("no snakemake found: install the project (make setup) or pass --snakemake PATH")


def grid_models(config_path):
    config = yaml.safe_load(Path(config_path).read_text())
    grid = config["grid"]
    return len(config["corpora"]) * len(grid["arch"]) * len(grid["layers"]) * len(grid["size"])


def time_dry_runs(snakemake, env, repeats, label):
    times, jobs = [], None
    for i in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run([snakemake, "-n"], cwd=ROOT, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            raise SystemExit(f"`snakemake -n` failed with exit code {proc.returncode} (output above)")
        # the job summary's last line: "total   <n>"
        found = re.findall(r"^total\s+(\d+)\s*$", proc.stdout + proc.stderr, flags=re.M)
        jobs = int(found[-1]) if found else jobs
        print(f"run {i + 1}{label}: {times[-1]:.2f} s", flush=True)
    return times, jobs


def scontrol_probe_seconds():
    """Seconds `scontrol show config` takes here (None without scontrol)."""
    if not shutil.which("scontrol"):
        return None
    t0 = time.perf_counter()
    try:
        subprocess.run(["scontrol", "show", "config"], capture_output=True, timeout=15)
    except subprocess.TimeoutExpired:
        pass
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--snakemake", help="snakemake executable (default: the one next to this python)")
    ap.add_argument("--out", default=str(RESULTS / "dryrun.json"))
    args = ap.parse_args(argv)
    snakemake = find_snakemake(args.snakemake)
    env = dict(os.environ, PATH=f"{Path(snakemake).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    times, jobs = time_dry_runs(snakemake, env, args.repeats, "")
    result = {"command": "snakemake -n", "config": "config.yaml", "models": grid_models(ROOT / "config.yaml"),
              "jobs": jobs, "runs_s": times, "median_s": statistics.median(times), "goal_s": 5.0}
    probe = scontrol_probe_seconds()
    if probe is not None and probe > 1.0:
        result["scontrol_probe_s"] = round(probe, 2)
        with tempfile.TemporaryDirectory() as stand_in:
            fake = Path(stand_in) / "scontrol"
            fake.write_text("#!/bin/sh\nexit 1\n")
            fake.chmod(0o755)
            quick_env = dict(env, PATH=f"{stand_in}{os.pathsep}{env['PATH']}")
            own, _ = time_dry_runs(snakemake, quick_env, args.repeats, " (stand-in scontrol)")
        result["machine_median_s"] = result["median_s"]
        result["median_s"] = statistics.median(own)
        result["runs_without_probe_s"] = own
        result["note"] = (f"this machine's `scontrol show config` waits {probe:.1f} s for an absent Slurm controller "
                          "and the Slurm executor plugin calls it when Snakemake starts; median_s is timed with a "
                          "stand-in scontrol that fails at once, machine_median_s as installed")
    write_json(args.out, result)
    print(f"snakemake -n on config.yaml ({result['models']} models, {jobs} jobs): median {result['median_s']:.2f} s "
          f"of {args.repeats} (goal < 5 s)", flush=True)
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
