#!/usr/bin/env bash
# The README's first command, timed as a new user meets it: a clean clone of this checkout's HEAD, then `make
# demo` (set-up, the workflow, the report), then `make test` in that same clone (the README's second command after
# the first). Writes docs/results/demo_time.csv (seconds per step; the cores the demo profile runs on, and the
# machine's) and renders the README's sentence from it (scripts/render_docs.py).
#   bash bench/bench_demo.sh [--no-test]
# Set-up builds KenLM and installs PyTorch: PIP_CACHE_DIR and KENLM_CACHE, when set, are used as they are.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
# removed when the bench succeeds; kept, with its logs, when a step fails
trap 'status=$?; if [ $status -eq 0 ]; then rm -rf "$WORK"; else echo "bench_demo: failed; logs in $WORK" >&2; fi' EXIT
git clone -q "$ROOT" "$WORK/rnnlens"
cd "$WORK/rnnlens"
now() { date +%s; }
t0=$(now)
make setup > "$WORK/setup.log" 2>&1 || { tail -20 "$WORK/setup.log"; exit 1; }
t1=$(now)
export PATH="$PWD/.venv/bin:$PATH"  # as the Makefile's `make demo` runs it: the jobs' python is the virtualenv's
.venv/bin/snakemake --profile profiles/demo > "$WORK/workflow.log" 2>&1 || { tail -30 "$WORK/workflow.log"; exit 1; }
t2=$(now)
.venv/bin/snakemake --profile profiles/demo --report results/report.html > "$WORK/report.log" 2>&1 \
  || { tail -20 "$WORK/report.log"; exit 1; }
t3=$(now)
profile_cores=$(sed -n 's/^cores: *//p' profiles/demo/config.yaml)
jobs=$(grep -c "^Finished jobid" "$WORK/workflow.log" || true)
test_s="" test_result="not run"
if [ "${1:-}" != "--no-test" ]; then
  make test PYTEST_ARGS="-q -ra -p no:cacheprovider" > "$WORK/test.log" 2>&1 && test_result=passed || test_result=failed
  t4=$(now)
  test_s=$((t4 - t3))
  tail -3 "$WORK/test.log"
fi
cat > "$ROOT/docs/results/demo_time.csv" <<CSV
step,seconds,note
setup,$((t1 - t0)),make setup from a clean clone: virtualenv and PyTorch and the KenLM build
workflow,$((t2 - t1)),snakemake --profile profiles/demo: $jobs jobs
report,$((t3 - t2)),snakemake --report results/report.html
make_demo,$((t3 - t0)),the three above
make_test,$test_s,make test in the same clone after the demo: $test_result
cores,$profile_cores,the demo profile's cores (profiles/demo/config.yaml); the machine has $(nproc)
CSV
cat "$ROOT/docs/results/demo_time.csv"
.venv/bin/python "$ROOT/scripts/render_docs.py"
[ "$test_result" != failed ]
