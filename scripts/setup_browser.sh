#!/usr/bin/env bash
# The headless browser that the explorer's tests drive: Debian's chromium and chromium-driver (selenium, in the
# `dev` extra, is pointed at the system chromedriver and downloads nothing). `make test` runs this as it starts the
# Slurm test cluster: when they are missing it installs them with apt-get as root; otherwise it prints the command
# to run and exits 1 (the browser tests are then skipped, or fail under RNNLENS_REQUIRE_BROWSER=1). Idempotent.
set -euo pipefail
INSTALL="apt-get install -y --no-install-recommends chromium chromium-driver"

installed() {
  { command -v chromium || command -v chromium-browser; } >/dev/null \
    && { command -v chromedriver >/dev/null || [ -x /usr/bin/chromedriver ]; }
}

if installed; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "browser: chromium and chromedriver are missing; to run the explorer's browser tests: sudo $INSTALL" >&2
  exit 1
fi
echo "browser: installing chromium chromium-driver (apt-get)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive $INSTALL -qq >/dev/null
installed
