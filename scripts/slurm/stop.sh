#!/usr/bin/env bash
# Stop the daemons that scripts/slurm/start.sh started, by their recorded pids (never by name).
# Safe to run twice, or when nothing was started.
SLURM_CI_DIR=${SLURM_CI_DIR:-/tmp/slurm-ci}
pids=()
for d in slurmd slurmctld munged; do
  f="$SLURM_CI_DIR/$d.pid"
  [ -s "$f" ] || continue
  pid=$(cat "$f"); rm -f "$f"
  kill "$pid" 2>/dev/null && pids+=("$pid")
done
for pid in "${pids[@]}"; do
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done   # each takes ~2 s
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
done
# slurmctld leaves its pid file behind; a stale one makes `apt-get remove slurmctld` fail
[ "${#pids[@]}" -gt 0 ] && rm -f /run/slurmctld.pid /run/slurmd.pid
[ "${#pids[@]}" -gt 0 ] && echo "slurm: stopped ${#pids[@]} daemons (${pids[*]})"
exit 0
