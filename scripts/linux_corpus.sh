#!/usr/bin/env bash
# Rebuild the Linux corpus the paper-matching measurements use (linux.txt: 6,215,875 bytes, sha256 a10a50d2...)
# byte for byte from Debian's linux-source-6.1 package, with rnnlens's own tarball builder (the same code the
# workflow's `tarball:` source runs): the kernel/ .c and .h files in sorted path order until the paper's
# 6,206,996 bytes are passed (293 files, kernel/acct.c .. kernel/rcu/srcutree.c).
#
#   scripts/linux_corpus.sh [OUT_DIR]     OUT_DIR (default data/): gets linux-source-6.1.tar.xz and linux.txt
#
# Needs apt-get (Debian/Ubuntu archive access) and dpkg-deb; no root needed for `apt-get download`. Checked with
# linux-source-6.1 6.1.192-2 and 6.1.192-3: their tarballs differ, the corpus bytes do not. Afterwards use
#   tarball: {path: data/linux-source-6.1.tar.xz, include_dirs: [kernel], patterns: ["*.c", "*.h"], max_bytes: 6206996}
# or simply `path: data/linux.txt` with `sha256: a10a50d2...` in a config (docs/results/reference.yaml does).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/data}
WANT=a10a50d2fa934274a5a85e1d92027d87d7c2e7f0f5dda5c2303feab2cea4301e
PY=${PYTHON:-$ROOT/.venv/bin/python}
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && apt-get download linux-source-6.1)
dpkg-deb -x "$WORK"/linux-source-6.1_*_all.deb "$WORK/x"
mv "$WORK/x/usr/src/linux-source-6.1.tar.xz" "$OUT/linux-source-6.1.tar.xz"
SPEC='{"tarball": {"path": "'"$OUT"'/linux-source-6.1.tar.xz", "include_dirs": ["kernel", "mm", "fs", "ipc",
  "include/linux"], "patterns": ["*.c", "*.h"], "max_bytes": 6206996}, "sha256": "'"$WANT"'"}'
PYTHONPATH="$ROOT/src" "$PY" -m rnnlens fetch --corpus linux --spec "$SPEC" --out "$OUT/linux.txt" \
  --provenance "$OUT/linux.provenance.json"
echo "linux_corpus: $OUT/linux.txt reproduces the paper-matching corpus (sha256 $WANT)"
