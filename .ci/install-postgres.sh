#!/usr/bin/env bash
# PostgreSQL 15 server binaries for tests/api/test_api_postgres.py (the tests start their own server
# with initdb/pg_ctl in a temp dir; nothing is configured system-wide). Idempotent.
set -euo pipefail
if command -v pg_ctl >/dev/null 2>&1 || [ -x /usr/lib/postgresql/15/bin/pg_ctl ]; then
    echo "postgresql: pg_ctl present"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends postgresql-15
echo "postgresql: installed $(/usr/lib/postgresql/15/bin/pg_ctl --version)"
