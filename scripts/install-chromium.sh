#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (tests/browser, Playwright for Python drives
# it with executable_path=/usr/bin/chromium). Never downloads a browser build of its own:
# Playwright's `playwright install` is not used. Idempotent: nothing to do when it is there.
set -euo pipefail
CHROMIUM="${BP_CHROMIUM:-/usr/bin/chromium}"
if [[ -x "$CHROMIUM" ]]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "cannot install chromium: no apt-get (set BP_CHROMIUM to a Chromium binary)" >&2
  exit 1
fi
echo "browser tests: installing Debian's chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq chromium >/dev/null
