#!/usr/bin/env bash
# A throwaway PostgreSQL on loopback for tests/lab/test_postgres.py (one study across machines).
#
#   eval "$(bash .ci/postgres.sh)"        # start; prints export lines on stdout
#   bash .ci/postgres.sh stop             # stop the server started above (reads POOLKIT_TEST_POSTGRES_DATA)
#
# Installs Debian's postgresql with apt-get when its binaries are missing (as root), starts a
# cluster in a temp dir on 127.0.0.1 on a free port, creates a database and prints
# `export POOLKIT_TEST_POSTGRES_URL=...`. It never fails: on any problem it prints why on
# stderr and `export POOLKIT_TEST_POSTGRES_SKIP=...`, so the test skips with that reason.
# Diagnostics go to stderr; stdout carries only export lines.
set -u

DB=poolkit_test

skip() {
    echo "postgres.sh: $1" >&2
    printf 'export POOLKIT_TEST_POSTGRES_SKIP=%q\n' "$1"
    exit 0
}

# Run a PostgreSQL binary as the unprivileged owner of the cluster (initdb refuses root).
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

find_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
        echo "$d"
    elif command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}

if [ "${1:-start}" = stop ]; then
    data=${POOLKIT_TEST_POSTGRES_DATA:-}
    bindir=$(find_bindir)
    if [ -n "$data" ] && [ -n "$bindir" ] && [ -d "$data" ]; then
        as_owner "$bindir/pg_ctl" -D "$data" -m fast -w stop >&2 || true
        rm -rf "$(dirname "$data")"
    fi
    exit 0
fi

bindir=$(find_bindir)
if [ -z "$bindir" ]; then
    [ "$(id -u)" = 0 ] || skip "PostgreSQL is not installed and installing it needs root (running as uid $(id -u))"
    command -v apt-get >/dev/null 2>&1 || skip "PostgreSQL is not installed and apt-get is missing (not Debian?)"
    echo "postgres.sh: installing postgresql with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || skip "apt-get update failed (no network or no package mirror?)"
    apt-get install -y -qq --no-install-recommends postgresql >&2 || skip "apt-get install postgresql failed"
    bindir=$(find_bindir)
    [ -n "$bindir" ] || skip "postgresql installed but initdb/pg_ctl not found under /usr/lib/postgresql/*/bin"
fi
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || skip "the postgres system user is missing (expected from Debian's package)"
    command -v runuser >/dev/null 2>&1 || skip "runuser is missing: cannot run initdb as the postgres user"
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null) \
    || skip "python3 is needed to pick a free port"
root=$(mktemp -d /tmp/poolkit-pg.XXXXXX) || skip "mktemp failed"
data=$root/data
[ "$(id -u)" = 0 ] && chown postgres: "$root"
# The socket dir is the temp dir too, so nothing is written to /var/run/postgresql.
as_owner "$bindir/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-instructions >"$root/initdb.log" 2>&1 \
    || { cat "$root/initdb.log" >&2; skip "initdb failed (see the log above)"; }
as_owner "$bindir/pg_ctl" -D "$data" -l "$root/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $root -c max_connections=50 -c fsync=off" start >&2 \
    || { cat "$root/server.log" >&2; skip "pg_ctl start failed (see the server log above)"; }
as_owner "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres "$DB" >&2 \
    || { as_owner "$bindir/pg_ctl" -D "$data" -m fast stop >&2; skip "createdb failed"; }

echo "postgres.sh: $("$bindir/pg_ctl" --version) on 127.0.0.1:$port, data in $data" >&2
echo "export POOLKIT_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$port/$DB"
printf 'export POOLKIT_TEST_POSTGRES_DATA=%q\n' "$data"
echo "unset POOLKIT_TEST_POSTGRES_SKIP"
