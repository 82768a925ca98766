#!/usr/bin/env bash
# Installs the system packages the labeling UI's browser test needs (headless Chromium and its
# WebDriver). Idempotent: touches apt only when a binary is missing, so CI reruns stay fast.
# Where they cannot be installed (no apt-get, no root or sudo, no network), it says so and
# exits 0: the browser tests skip themselves without Chromium, everything else still runs.
set -uo pipefail
if [ -x /usr/bin/chromium ] && command -v chromedriver >/dev/null 2>&1; then
  echo "chromium and chromedriver already installed"
  exit 0
fi
skip() {
  echo "install-test-deps: warning: cannot install chromium and chromium-driver ($1);" \
    "the labeling UI's browser tests will be skipped" >&2
  exit 0
}
command -v apt-get >/dev/null 2>&1 || skip "no apt-get on this system"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || skip "not root and no sudo"
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q || skip "apt-get update failed"
$SUDO apt-get install -y -q chromium chromium-driver || skip "apt-get install failed"
/usr/bin/chromium --version
chromedriver --version
