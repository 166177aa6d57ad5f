"""Wall time of `snakemake -n` (a dry run) on the full paper configuration (config.yaml at the repository root:
both corpora x the 72-model grid plus baselines and analyses). Median of 3 runs; goal < 5 s.

    python bench/bench_dryrun.py [--repeats 3] [--snakemake PATH] [--out results/bench/dryrun.json]
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--snakemake", help="snakemake executable (default: the one next to this python)")
    ap.add_argument("--out", default=str(RESULTS / "dryrun.json"))
    args = ap.parse_args(argv)
    snakemake = find_snakemake(args.snakemake)
    env = dict(os.environ, PATH=f"{Path(snakemake).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    times, jobs = [], None
    for i in range(args.repeats):
        t0 = time.perf_counter()
        proc = subprocess.run([snakemake, "-n"], cwd=ROOT, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            raise SystemExit(f"`snakemake -n` failed with exit code {proc.returncode} (output above)")
        # the job summary's last line: "total   <n>"
        found = re.findall(r"^total\s+(\d+)\s*$", proc.stdout + proc.stderr, flags=re.M)
        jobs = int(found[-1]) if found else jobs
        print(f"run {i + 1}: {times[-1]:.2f} s", flush=True)
    result = {"command": "snakemake -n", "config": "config.yaml", "models": grid_models(ROOT / "config.yaml"),
              "jobs": jobs, "runs_s": times, "median_s": statistics.median(times), "goal_s": 5.0}
    write_json(args.out, result)
    print(f"snakemake -n on config.yaml ({result['models']} models, {jobs} jobs): median {result['median_s']:.2f} s "
          f"of {args.repeats} (goal < 5 s)", flush=True)
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
