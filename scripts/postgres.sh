#!/usr/bin/env bash
# Start a private PostgreSQL + PostGIS server for the tests, on 127.0.0.1 only, and print its URL.
#
#   export STADSDATA_TEST_POSTGRES=$(bash scripts/postgres.sh)
#
# Installs the Debian packages when they are missing (as root), keeps the cluster in
# .pgdata/ (trust authentication, listening on 127.0.0.1:25432 only) and starts it when
# it is not running. `bash scripts/postgres.sh stop` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${STADSDATA_PG_PORT:-25432}  # outside the ephemeral port range
DATA=$PWD/.pgdata

pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$dir" ] && echo "$dir"
}

if [ -z "$(pg_bin)" ] || ! ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "PostgreSQL and PostGIS are not installed; run as root or: apt-get install postgresql postgis" >&2
        exit 1
    fi
    echo "installing PostgreSQL and PostGIS (Debian packages)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql postgis >&2
fi
BIN=$(pg_bin)

# The server refuses to run as root: run it as the postgres user (created by the package).
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ "${1:-}" = stop ]; then
    as_pg "$BIN/pg_ctl" -D "$DATA" stop -m fast >&2 || true
    exit 0
fi

if [ ! -f "$DATA/PG_VERSION" ]; then
    mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown postgres: "$DATA"
    as_pg "$BIN/initdb" -D "$DATA" -U stadsdata --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
fi
if ! as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w start \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k '' -c fsync=on -c max_connections=200" >&2
fi
echo "postgresql://stadsdata@127.0.0.1:$PORT/postgres"
