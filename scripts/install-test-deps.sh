#!/usr/bin/env bash
# Installs the system packages the labeling UI's browser test needs (headless Chromium and its
# WebDriver). Idempotent: touches apt only when a binary is missing, so CI reruns stay fast.
set -euo pipefail
if [ -x /usr/bin/chromium ] && command -v chromedriver >/dev/null 2>&1; then
  echo "chromium and chromedriver already installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q chromium chromium-driver
/usr/bin/chromium --version
chromedriver --version
