#!/usr/bin/env bash
# Build KenLM's lmplz and build_binary and its Python module with a maximum n-gram order of 21 (the paper's
# 20-gram, rnnlens.ngram.MAX_ORDER; PyPI wheels stop at 6), from the kenlm source distribution on PyPI. Cached and
# idempotent: the sdist, the build tree and the wheel live under .build/kenlm (git-ignored); a build tree or wheel
# already there is reused, and a second run with everything in place does nothing.
#
#   scripts/setup_kenlm.sh [VENV]      VENV: first argument, else $VENV, else .venv under the repository root
#
# The same script is the conda environment's post-deploy step (envs/rnnlens.post-deploy.sh links to it): Snakemake
# copies it to <env>.post-deploy.sh and runs it inside the new environment, which then is VENV. A conda prefix
# (it has conda-meta/) takes its compilers and libraries from the environment (cmake, make, cxx-compiler, boost
# and the compression libraries are in envs/rnnlens.yaml) and keeps its cache inside itself, since what is built
# there links against the environment's libraries.
#
# Environment: KENLM_MAX_ORDER (21), KENLM_VERSION (0.3.0), KENLM_JOBS (2, parallel make jobs), KENLM_CACHE.
# System packages (Debian/Ubuntu names; not for a conda prefix): cmake g++ make libboost-program-options-dev
# libboost-system-dev libboost-thread-dev libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev. Installed with
# apt-get when run as root; otherwise the script stops and prints the command to run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ "${BASH_SOURCE[0]}" == *.post-deploy.sh ]]; then
  # run by Snakemake as <env>.post-deploy.sh, in the activated environment <env>
  VENV=${CONDA_PREFIX:-${BASH_SOURCE[0]%.post-deploy.sh}}
else
  VENV=${1:-${VENV:-$ROOT/.venv}}
fi
MAX_ORDER=${KENLM_MAX_ORDER:-21}
VERSION=${KENLM_VERSION:-0.3.0}
JOBS=${KENLM_JOBS:-2}
PY=$VENV/bin/python
STAMP=$VENV/.kenlm-stamp
WANT_STAMP="kenlm $VERSION max_order $MAX_ORDER"

say() { echo "setup_kenlm: $*"; }

if [ ! -x "$PY" ]; then
  say "no Python at $PY. Create the virtual environment first (make venv), or pass its path: $0 PATH/TO/VENV" >&2
  exit 1
fi
VENV=$(cd "$VENV" && pwd)
CONDA_ENV=false
[ -d "$VENV/conda-meta" ] && CONDA_ENV=true
if $CONDA_ENV; then
  CACHE=${KENLM_CACHE:-$VENV/share/rnnlens-kenlm}
else
  CACHE=${KENLM_CACHE:-$ROOT/.build/kenlm}
fi
BUILD=$CACHE/build-$VERSION-o$MAX_ORDER
WHEELS=$CACHE/wheels-$VERSION-o$MAX_ORDER

installed() {
  [ -x "$VENV/bin/lmplz" ] && [ -x "$VENV/bin/build_binary" ] && [ -f "$STAMP" ] \
    && [ "$(cat "$STAMP")" = "$WANT_STAMP" ] && "$PY" -c "import kenlm" 2>/dev/null
}

if installed; then
  say "already installed in $VENV ($WANT_STAMP); nothing to do"
  exit 0
fi

START=$SECONDS
# a build tree that finished (see the stamp below) and a wheel already built are reused as they are
BUILT=false
[ -f "$BUILD/.built" ] && [ -x "$BUILD/bin/lmplz" ] && [ -x "$BUILD/bin/build_binary" ] && BUILT=true
WHEEL=false
ls "$WHEELS"/kenlm-*.whl >/dev/null 2>&1 && WHEEL=true
if $BUILT && $WHEEL; then
  say "reusing the build in ${CACHE#"$ROOT"/}"
fi

# --- system packages -------------------------------------------------------------------------------------------
PACKAGES="cmake g++ make libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev \
zlib1g-dev libbz2-dev liblzma-dev"
missing=()
if $BUILT && $WHEEL; then
  :  # nothing to compile
elif $CONDA_ENV; then
  # the environment's own tools and libraries (envs/rnnlens.yaml); cmake names any missing library below
  for tool in cmake make "${CXX:-g++}"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  if [ ${#missing[@]} -gt 0 ]; then
    say "the conda environment $VENV lacks ${missing[*]}; they are listed in envs/rnnlens.yaml (cmake, make," \
      "cxx-compiler): recreate the environment" >&2
    exit 1
  fi
elif command -v dpkg-query >/dev/null; then
  for pkg in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
else
  # Not Debian: only the tools can be checked here; cmake names any missing library below.
  for tool in cmake g++ make; do command -v "$tool" >/dev/null || missing+=("$tool"); done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "missing system packages: ${missing[*]}" >&2
    say "install them, then rerun make:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# --- source distribution (cached) --------------------------------------------------------------------------------
SDIST=$CACHE/dist/kenlm-$VERSION.tar.gz
SRC=$CACHE/src/kenlm-$VERSION
if ! { $BUILT && $WHEEL; }; then
  mkdir -p "$CACHE/dist"
  if [ ! -f "$SDIST" ]; then
    say "downloading the kenlm $VERSION source distribution from PyPI"
    # --no-binary kenlm (never :all:, which would build cmake itself from source) forces the sdist.
    "$PY" -m pip download -q --no-deps --no-binary kenlm "kenlm==$VERSION" -d "$CACHE/dist"
  fi
  if [ ! -f "$SRC/CMakeLists.txt" ]; then
    rm -rf "$SRC" && mkdir -p "$CACHE/src"
    tar -xzf "$SDIST" -C "$CACHE/src"
    # The Python build hardcodes make -j4; keep to the job count asked for.
    sed -i "s/\"-j4\"/\"-j$JOBS\"/" "$SRC/setup.py"
  fi
fi

# --- lmplz and build_binary ---------------------------------------------------------------------------------------
if ! $BUILT; then
  say "building lmplz and build_binary (KENLM_MAX_ORDER=$MAX_ORDER, make -j$JOBS) in ${BUILD#"$ROOT"/}"
  prefix=()
  $CONDA_ENV && prefix=(-DCMAKE_PREFIX_PATH="$VENV")  # boost, zlib, bz2, lzma of the environment
  cmake -S "$SRC" -B "$BUILD" -DKENLM_MAX_ORDER="$MAX_ORDER" -DCMAKE_BUILD_TYPE=Release "${prefix[@]}" \
    >"$CACHE/cmake.log" 2>&1 \
    || { tail -30 "$CACHE/cmake.log" >&2; say "cmake failed; full log: $CACHE/cmake.log" >&2; exit 1; }
  make -C "$BUILD" -j"$JOBS" lmplz build_binary >"$CACHE/make.log" 2>&1 \
    || { tail -30 "$CACHE/make.log" >&2; say "make failed; full log: $CACHE/make.log" >&2; exit 1; }
  touch "$BUILD/.built"  # only a build that finished is reused
fi
install -m 755 "$BUILD/bin/lmplz" "$BUILD/bin/build_binary" "$VENV/bin/"
say "installed lmplz and build_binary into $VENV/bin ($((SECONDS - START)) s so far)"

# --- Python module, from the same sdist (setup.py reads MAX_ORDER from the environment) -------------------------
if ! $WHEEL; then
  say "building the kenlm Python module (MAX_ORDER=$MAX_ORDER)"
  isolation=()
  # Without isolation pip uses the system cmake and the venv's setuptools: no downloads and no cmake wheel.
  "$PY" -c "import setuptools" 2>/dev/null && isolation=(--no-build-isolation)
  rm -rf "$WHEELS.part"
  MAX_ORDER=$MAX_ORDER "$PY" -m pip wheel -q --no-deps "${isolation[@]}" "$SRC" -w "$WHEELS.part" \
    >"$CACHE/wheel.log" 2>&1 \
    || { tail -30 "$CACHE/wheel.log" >&2; say "building the Python module failed; log: $CACHE/wheel.log" >&2; exit 1; }
  mv "$WHEELS.part" "$WHEELS"
fi
"$PY" -m pip install -q --no-deps --force-reinstall "$WHEELS"/kenlm-*.whl

# --- check that both halves really take order MAX_ORDER -----------------------------------------------------------
CHECK=$(mktemp -d)
trap 'rm -rf "$CHECK"' EXIT
for i in $(seq 1 40); do echo "a b a c a b b a c c a b a a c b"; done >"$CHECK/text"
"$VENV/bin/lmplz" -o "$MAX_ORDER" -S 64M -T "$CHECK" --discount_fallback <"$CHECK/text" >"$CHECK/lm.arpa" 2>"$CHECK/log" \
  || { cat "$CHECK/log" >&2; say "lmplz failed its order-$MAX_ORDER check" >&2; exit 1; }
"$VENV/bin/build_binary" "$CHECK/lm.arpa" "$CHECK/lm.binary" >"$CHECK/log" 2>&1 \
  || { cat "$CHECK/log" >&2; say "build_binary failed its order-$MAX_ORDER check" >&2; exit 1; }
"$PY" -c "import kenlm, sys; m = kenlm.Model(sys.argv[1]); assert m.order == $MAX_ORDER, m.order" "$CHECK/lm.binary" \
  || { say "the kenlm Python module cannot load an order-$MAX_ORDER model" >&2; exit 1; }

echo "$WANT_STAMP" >"$STAMP"
say "done: lmplz, build_binary and the kenlm module (max order $MAX_ORDER) in $VENV, built in $((SECONDS - START)) s"
