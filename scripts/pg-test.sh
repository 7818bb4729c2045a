#!/usr/bin/env bash
# scripts/pg-test.sh: a throwaway PostgreSQL 15 server on 127.0.0.1 for the
# tests (the queue contract suite and the replica tests run against it).
#
#   scripts/pg-test.sh start DIR PORT    initdb in DIR if needed, start (unless it runs
#                                        already on PORT), create db "dg"
#   scripts/pg-test.sh stop DIR          stop it (fast shutdown)
#   scripts/pg-test.sh restart DIR       pg_ctl restart -m immediate (a crash and recovery)
#   scripts/pg-test.sh url DIR PORT      the conninfo the tests use
#
# As root the server runs as the postgres user (initdb refuses root). It
# listens on 127.0.0.1 only, trusts local connections (a test server on
# loopback, never a deployment), and keeps fsync on: durability is what
# the tests measure.
set -euo pipefail

bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
cmd=${1:?usage: pg-test.sh start|stop|restart|url DIR [PORT]}
dir=${2:?usage: pg-test.sh start|stop|restart|url DIR [PORT]}
port=${3:-55432}

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

case "$cmd" in
start)
    if [ ! -x "$bin/initdb" ]; then
        echo "pg-test.sh: no PostgreSQL 15 in $bin (apt-get install postgresql-15)" >&2
        exit 1
    fi
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1
    fi
    # A server left running from an earlier start is used again if it is
    # on this port (postmaster.pid's fourth line); on another, say so.
    if as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        running=$(sed -n 4p "$dir/data/postmaster.pid")
        if [ "$running" != "$port" ]; then
            echo "pg-test.sh: the server in $dir is running on port $running, not $port" >&2
            exit 1
        fi
    else
        as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 \
                -c checkpoint_timeout=30s -c max_wal_size=64MB" start >/dev/null
    fi
    as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qAtc \
        "SELECT 1 FROM pg_database WHERE datname = 'dg'" postgres | grep -q 1 ||
        as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE dg" postgres
    ;;
stop)
    [ -f "$dir/data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
restart)
    # The options of the last start are kept in postmaster.opts. Frequent
    # checkpoints (start) keep the crash recovery short.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m immediate -w -t 120 restart \
        >/dev/null
    ;;
url)
    echo "host=127.0.0.1 port=$port dbname=dg user=postgres"
    ;;
*)
    echo "pg-test.sh: unknown command $cmd" >&2
    exit 2
    ;;
esac
