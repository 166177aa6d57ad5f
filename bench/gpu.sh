#!/usr/bin/env bash
# The training benchmark of the paper grid on an NVIDIA GPU, in one prepared script that installs nothing.
#
#   bash bench/gpu.sh                      # on the GPU machine, from anywhere; about 6-7 minutes
#   DEVICE=cpu STEPS=2 POINTS=lstm-1x64 SHARE=0 bash bench/gpu.sh   # the CPU fallback path (a test of the script)
#
# 1. picks a Python whose torch sees the device: ${VENV:-.venv}/bin/python if it works, else python3, else python
#    (the repository's .venv from a CPU machine holds a CPU-only torch; then the machine's own python3 is used,
#    with src/ on PYTHONPATH, so it needs only torch and numpy);
# 2. checks that the GPU and the CPU give the same loss and gradients on one batch with the same weights (TF32 off);
# 3. runs bench/bench_train.py on all 36 points of the grid: rnnlens.train.train vs a bare PyTorch loop,
#    interleaved, a few hundred steps per point (at most STEPS), the timed runs shortened so that every point fits
#    in BUDGET seconds;
# 4. measures K trainings sharing the GPU (bench/bench_gpu_share.py, what `snakemake --resources gpu=K` does) for a
#    small and a large model (SHARE=0 skips it);
# 5. prints a short table last: device, characters/s per point, and the projected time of the paper grid, one
#    model at a time and with K jobs sharing the GPU.
#
# Settings (environment): DEVICE (cuda), GRID (paper|small), POINTS (e.g. lstm-1x64,gru-3x512; overrides GRID),
# STEPS (300), MIN_STEPS (min(20, STEPS)), SECONDS_PER_RUN (1.0, the longest a timed run may be), REPEATS (2),
# BUDGET (270 s for step 3), SHARE (1), SHARE_KS (1,4,8: the large model runs all but the last), SHARE_STEPS
# (600,150: steps per process, small and large model), SHARE_STARTUP (10 s), THREADS, TF32 (0),
# PRECISION (fp32; bf16 or fp16 to measure training.precision),
# BENCH_OUT (results/bench/gpu; results/bench/gpu-fallback-cpu for DEVICE=cpu).
# The JSON is rewritten after every point, so a run cut short keeps what it measured.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
DEVICE=${DEVICE:-cuda}
GRID=${GRID:-paper}
POINTS=${POINTS:-}
STEPS=${STEPS:-300}
MIN_STEPS=${MIN_STEPS:-$((STEPS < 20 ? STEPS : 20))}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-1.0}
REPEATS=${REPEATS:-2}
BUDGET=${BUDGET:-270}
SHARE=${SHARE:-1}
SHARE_KS=${SHARE_KS:-1,4,8}
SHARE_STEPS=${SHARE_STEPS:-600,150}
SHARE_STARTUP=${SHARE_STARTUP:-10}
TF32=${TF32:-0}
PRECISION=${PRECISION:-fp32}
if [ "$DEVICE" = cpu ]; then
    THREADS=${THREADS:-1}
    BENCH_OUT=${BENCH_OUT:-results/bench/gpu-fallback-cpu}
else
    THREADS=${THREADS:-0}
    BENCH_OUT=${BENCH_OUT:-results/bench/gpu}
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
started=$(date +%s)

probe='import sys, numpy, torch
dev = sys.argv[1]
ok = dev == "cpu" or (torch.cuda.is_available() and torch.cuda.device_count() > 0)
print(f"torch {torch.__version__}, cuda {torch.version.cuda}, sees GPU: {torch.cuda.is_available()}")
sys.exit(0 if ok else 3)'

PY=
for candidate in "${VENV:-.venv}/bin/python" python3 python; do
    if [ -x "$candidate" ] || command -v "$candidate" >/dev/null 2>&1; then
        if report=$("$candidate" -c "$probe" "$DEVICE" 2>&1); then
            PY=$candidate
            break
        fi
        echo "gpu.sh: $candidate cannot run on $DEVICE: $(echo "$report" | tail -1)" >&2
    fi
done
if [ -z "$PY" ]; then
    echo "gpu.sh: no python with torch and numpy that sees device '$DEVICE'. Carry a venv with torch (built with CUDA for a GPU)" \
         "(VENV=path), or run with DEVICE=cpu to test the script." >&2
    exit 2
fi

echo "== python: $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"
"$PY" - "$DEVICE" <<'PYEOF'
import sys, torch
dev = sys.argv[1]
print(f"== torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})")
if dev != "cpu":
    d = torch.device(dev)
    p = torch.cuda.get_device_properties(d)
    print(f"== device: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
else:
    print("== device: CPU (fallback path)")
PYEOF
if command -v nvidia-smi >/dev/null 2>&1 && [ "$DEVICE" != cpu ]; then
    nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,utilization.gpu --format=csv,noheader || true
fi

mkdir -p "$BENCH_OUT"
args=(--device "$DEVICE" --threads "$THREADS" --steps "$STEPS" --min-steps "$MIN_STEPS" --seconds "$SECONDS_PER_RUN"
      --repeats "$REPEATS" --max-repeats "$REPEATS" --max-seconds "$BUDGET" --check-cpu --out "$BENCH_OUT/train.json")
if [ -n "$POINTS" ]; then args+=(--points "$POINTS"); else args+=(--grid "$GRID"); fi
if [ "$TF32" = 1 ]; then args+=(--tf32); fi
args+=(--precision "$PRECISION")
echo "== $PY bench/bench_train.py ${args[*]}"
status=0
# a hard stop a little after the budget: a point already started may take a while on a slow device
timeout $((BUDGET + 60)) "$PY" bench/bench_train.py "${args[@]}" 2>&1 | tee "$BENCH_OUT/train.log" || status=$?
if [ ! -s "$BENCH_OUT/train.json" ]; then
    echo "gpu.sh: the benchmark wrote no results (exit $status); see $BENCH_OUT/train.log" >&2
    tail -n 30 "$BENCH_OUT/train.log" >&2
    exit 1
fi

if [ "$SHARE" = 1 ]; then
    # a small model shares the GPU well, a large one less: measure one of each, one epoch of synthetic text each
    for spec in "lstm-1x128 ${SHARE_STEPS%,*} $SHARE_KS" "lstm-3x512 ${SHARE_STEPS#*,} ${SHARE_KS%,*}"; do
        read -r model steps ks <<<"$spec"
        echo "== $PY bench/bench_gpu_share.py --model $model --ks $ks --steps $steps"
        timeout 150 "$PY" bench/bench_gpu_share.py --device "$DEVICE" --model "$model" --ks "$ks" --steps "$steps" \
            --startup "$SHARE_STARTUP" --out "$BENCH_OUT/share-$model.json" 2>&1 | tee -a "$BENCH_OUT/share.log" || status=$?
    done
fi

"$PY" - "$BENCH_OUT/train.json" "$(( $(date +%s) - started ))" <<'PYEOF'
import glob, json, os, sys
r = json.load(open(sys.argv[1]))
shares = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(os.path.dirname(sys.argv[1]), "share-*.json")))]

def hms(s):
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h" if s < 172800 else f"{s / 86400:.1f} days"

print(f"\n==== {r['device_name']} ({r['device']}), torch {r['torch']}, TF32 {'on' if r['tf32'] else 'off'}, "
      f"precision {r.get('precision', 'fp32')}, "
      f"{r['clock']} clock; script {hms(float(sys.argv[2]))}")
c = r.get("check_cpu", {})
if "results" in c:
    print(f"GPU vs CPU, one forward+backward, same weights and batch: {'AGREE' if c['passed'] else 'DISAGREE'} "
          f"(max |dloss| {max(x['loss_abs_diff'] for x in c['results']):.1e}, "
          f"max grad rel diff {max(x['grad_max_rel_diff'] for x in c['results']):.1e})")
else:
    print(f"GPU vs CPU check: {c.get('skipped', 'not run')}")
print(f"{'model':>11} {'hidden':>6} {'params':>9} {'steps':>5} {'train chars/s':>13} {'bare chars/s':>12} {'ratio':>6} {'WP epoch':>9} {'LK epoch':>9}")
for p in r["results"]:
    print(f"{p['model']:>11} {p['hidden']:6d} {p['params']:9,d} {p['steps']:5d} {p['workflow_chars_per_s']:13,.0f} "
          f"{p['bare_chars_per_s']:12,.0f} {p['ratio']:6.3f} {hms(p['wp_epoch_s']):>9} {hms(p['lk_epoch_s']):>9}")
ratios = [p["ratio"] for p in r["results"]]
if ratios:
    print(f"train/bare: min {min(ratios):.3f}, {sum(x >= 0.95 for x in ratios)}/{len(ratios)} points >= 0.95")
if "projection" in r:
    p = r["projection"]
    print(f"projected paper grid, {p['models']} models x {p['epochs']} epochs, one model at a time: {hms(p['total_s'])} "
          f"(War and Peace {hms(p['warpeace_s'])}, Linux {hms(p['linux_s'])}); {p['note']}")
for sh in shares:
    print(f"sharing the device, {sh['model']}: " + ", ".join(f"K={row['k']} {row['aggregate_chars_per_s']:,} chars/s "
          f"({row['speedup']}x)" for row in sh["rows"]))
if "projection" in r and shares:
    # each point takes the speedup of the measured model of its size class (small: 64/128, large: 256/512)
    def best_of(model):
        rows = [sh["rows"] for sh in shares if sh["model"] == model]
        return max(rows[0], key=lambda row: row["speedup"]) if rows else None
    small, large = best_of("lstm-1x128"), best_of("lstm-3x512")
    if small and large:
        total = sum(50 * (p["wp_epoch_s"] + p["lk_epoch_s"]) / (small if p["size"] <= 128 else large)["speedup"]
                    for p in r["results"])
        print(f"projected paper grid with jobs sharing the GPU (K={small['k']} small / K={large['k']} large at once, "
              f"`snakemake --resources gpu=K`): {hms(total)} for the {len(r['results'])} measured points x 2 corpora "
              "x 50 epochs (no early stopping)")
print(f"{len(r['results'])}/{r['points_planned']} points measured; results in {sys.argv[1]}")
PYEOF
exit $status
