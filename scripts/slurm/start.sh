#!/usr/bin/env bash
# Start a throw-away one-machine Slurm cluster (munged, slurmctld, slurmd) for CI and local tests of
# `snakemake --profile profiles/slurm`. Debian/Ubuntu, run as root; installs the Debian packages when missing.
# One fake GPU is declared (gres.conf File=/dev/null) so that jobs asking for `--gpus=1` are accepted and run.
# Idempotent: if a cluster already answers `sinfo`, nothing is started. Stop it with scripts/slurm/stop.sh.
# Daemon pids and logs go to $SLURM_CI_DIR (default /tmp/slurm-ci). Recipe and pitfalls: docs/slurm.md.
set -euo pipefail
SLURM_CI_DIR=${SLURM_CI_DIR:-/tmp/slurm-ci}

if command -v sinfo >/dev/null && sinfo -h -o %T >/dev/null 2>&1; then
  echo "slurm: a cluster is already up (sinfo answers); nothing started"
  sinfo
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "slurm: starting the local cluster needs root (it installs packages and runs the daemons)." >&2
  echo "       Run: sudo bash $0   (or point the tests at a cluster that answers sinfo)" >&2
  exit 1
fi
mkdir -p "$SLURM_CI_DIR"

# 1. packages (no services start on install here: no systemd, and policy-rc.d may deny it; we start them below)
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
   || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  if ! command -v apt-get >/dev/null; then
    echo "slurm: slurmctld/slurmd/munge are missing and there is no apt-get to install them." >&2
    echo "       Install Slurm and munge with your package manager, then rerun $0." >&2
    exit 1
  fi
  echo "slurm: installing slurmctld slurmd slurm-client munge (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
fi

# 2. munge key (the munge postinst normally creates it)
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key

# 3. config: one node = this machine, its real CPUs/memory from `slurmd -C`, one fake GPU
NODE=$(hostname -s)
HW=$(slurmd -C | head -n1 | sed -e 's/^NodeName=[^ ]* //')   # CPUs=.. Boards=.. ... RealMemory=..
mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
chown slurm:slurm /var/lib/slurm/slurmctld /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
# written by scripts/slurm/start.sh (throw-away test cluster)
ClusterName=ci
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
SlurmdSpoolDir=/var/lib/slurm/slurmd
StateSaveLocation=/var/lib/slurm/slurmctld
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default, a job with no --mem takes the whole node's memory and blocks the others
DefMemPerCPU=1000
# no slurmdbd: sacct does not work, so the profile polls with squeue (profiles/slurm/config.yaml)
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
# finished jobs stay visible to squeue -t all this long (the squeue status command needs them)
MinJobAge=600
SlurmctldDebug=info
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdDebug=info
SlurmdLogFile=/var/log/slurm/slurmd.log
GresTypes=gpu
NodeName=${NODE} NodeAddr=127.0.0.1 ${HW} Gres=gpu:fake:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
# one fake GPU so that gpu requests are accepted (no device behind it; CUDA_VISIBLE_DEVICES=0 is set in jobs)
echo "NodeName=${NODE} Name=gpu Type=fake File=/dev/null" > /etc/slurm/gres.conf

# 4. daemons, each in the foreground (-F / -D) as a background process whose pid we record.
#    Their output goes to files, so this script returns even when its own output is piped.
mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F \
  > "$SLURM_CI_DIR/munged.out" 2>&1 &
echo $! > "$SLURM_CI_DIR/munged.pid"
for _ in $(seq 1 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
munge -n </dev/null | unmunge >/dev/null

slurmctld -D -c -i > "$SLURM_CI_DIR/slurmctld.out" 2>&1 &   # -c: empty job state, -i: ignore state errors
echo $! > "$SLURM_CI_DIR/slurmctld.pid"
slurmd -D -N "$NODE" > "$SLURM_CI_DIR/slurmd.out" 2>&1 &
echo $! > "$SLURM_CI_DIR/slurmd.pid"

# 5. wait until the node is idle
state=""
for _ in $(seq 1 60); do
  state=$(sinfo -h -N -o %T 2>/dev/null || true)
  [ "$state" = "idle" ] && break
  sleep 0.5
done
if [ "$state" != "idle" ]; then
  echo "slurm: the node did not become idle (state='$state'); daemon logs:" >&2
  tail -n 30 "$SLURM_CI_DIR"/munged.out "$SLURM_CI_DIR"/slurmctld.out "$SLURM_CI_DIR"/slurmd.out >&2
  exit 1
fi
echo "slurm: cluster up (pids in $SLURM_CI_DIR; stop with scripts/slurm/stop.sh)"
sinfo -N -o '%N %P %T %c %m %G'
