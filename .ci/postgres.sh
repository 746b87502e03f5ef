#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server (Debian's `postgresql` package,
# installed here if missing, with procps) for the PostgreSQL journal's and
# the cluster's tests, and prints
# the URL to use as LASTMILE_TEST_PG_URL.
#
#   eval "$(bash .ci/postgres.sh)"     # exports LASTMILE_TEST_PG_URL
#
# A fresh cluster in $PGDATA_DIR (default /tmp/lastmile-pg) owned by the
# `postgres` user (the server refuses to run as root), listening on
# 127.0.0.1:$PGPORT (default 55432) only, trust authentication on
# loopback: it is a test server, never a deployment (docs/operations.md says
# how to configure a real one). Run again, it reuses a running cluster.
set -euo pipefail
PGDATA_DIR=${PGDATA_DIR:-/tmp/lastmile-pg}
PGPORT=${PGPORT:-55432}

# The server and its client (psql: a durability test ends a session with
# it), and kill(1) for the cluster test's SIGSTOP/SIGCONT (procps).
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v psql >/dev/null || missing+=(postgresql)
[[ -x /bin/kill || -x /usr/bin/kill ]] || missing+=(procps)
if (( ${#missing[@]} )); then
  {
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
  } >&2
fi
BIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
as_pg() { if [[ $(id -u) == 0 ]]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }

if ! as_pg "$BIN/pg_ctl -D $PGDATA_DIR status" >/dev/null 2>&1; then
  if [[ ! -f $PGDATA_DIR/PG_VERSION ]]; then
    rm -rf "$PGDATA_DIR"
    mkdir -p "$PGDATA_DIR"
    [[ $(id -u) == 0 ]] && chown postgres:postgres "$PGDATA_DIR"
    as_pg "$BIN/initdb -D $PGDATA_DIR -U postgres -A trust -E UTF8 --locale=C.UTF-8" >&2
  fi
  # Enough connections for the tests run in parallel (each store holds a
  # writer and a few readers).
  as_pg "$BIN/pg_ctl -D $PGDATA_DIR -l $PGDATA_DIR/server.log -w -o \"-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300\" start" >&2
fi
echo "export LASTMILE_TEST_PG_URL=postgres://postgres@127.0.0.1:$PGPORT/postgres"
