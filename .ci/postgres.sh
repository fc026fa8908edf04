#!/usr/bin/env bash
# PostgreSQL server binaries (initdb, pg_ctl) for tests/test_postgres.py; installs them only if missing.
# tests/pg.py finds them on PATH, in $BNSEARCH_PG_BIN or in /usr/lib/postgresql/*/bin, and starts its own
# throwaway server on 127.0.0.1 (no system service is started or needed).
set -euo pipefail

have_pg() {
    command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1 && return 0
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && return 0
    done
    return 1
}

if have_pg; then
    echo "postgres.sh: PostgreSQL server binaries present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "postgres.sh: need root or sudo to install postgresql" >&2; exit 1; }
    SUDO="sudo"
fi

if command -v apt-get >/dev/null 2>&1; then
    # Debian/Ubuntu: the package's post-install may try to start a cluster; keep it from doing so.
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends postgresql
elif command -v dnf >/dev/null 2>&1; then
    $SUDO dnf install -y postgresql-server
elif command -v apk >/dev/null 2>&1; then
    $SUDO apk add --no-cache postgresql
else
    echo "postgres.sh: no supported package manager; install the PostgreSQL server (initdb, pg_ctl) by hand" >&2
    exit 1
fi

have_pg || { echo "postgres.sh: installed postgresql but found no initdb/pg_ctl" >&2; exit 1; }
echo "postgres.sh: PostgreSQL server binaries installed"
