#!/usr/bin/env bash
# Idempotent: makes sure headless Chromium is available for the HTML report test
# (functions/measures/tests/report_chromium.rs). When `chromium` is not on PATH it
# installs the Debian package (sudo only when not root), then prints the version.
# Safe to run any number of times.
set -euo pipefail

log() { printf '[chromium] %s\n' "$*" >&2; }

if ! command -v chromium >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    log "chromium is not on PATH and apt-get is not available: install Chromium by hand"
    exit 1
  fi
  SUDO=""
  if [[ "$(id -u)" -ne 0 ]]; then
    SUDO="sudo"
  fi
  log "installing the Debian package chromium"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium
fi

chromium --version
