#!/usr/bin/env bash
# Headless Chromium for the browser tests (tests/web): Debian's `chromium` package, driven by
# Playwright's Python package pointed at /usr/bin/chromium. Idempotent: does nothing when present.
# Never runs `playwright install` (no browser downloads).
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends chromium fonts-dejavu-core
fi
chromium --version
PY="${1:-.venv/bin/python}"
if [ -x "$PY" ] && ! "$PY" -c "import playwright" >/dev/null 2>&1; then
  "$PY" -m pip install --quiet "playwright>=1.40"
fi
