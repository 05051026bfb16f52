#!/usr/bin/env bash
# A throw-away local PostgreSQL server for the store tests (CLREC_TEST_POSTGRES_URL).
#
#   bash scripts/postgres.sh start [--install]   # prints the SQLAlchemy URL on stdout
#   bash scripts/postgres.sh stop
#
# The server listens on a Unix socket only (no TCP port), keeps its data in $PG_ROOT
# (default /tmp/clrec-postgres) and trusts local connections. --install lets it install
# Debian's postgresql package when no server binaries are found (CI; needs root and apt).
# As root, the server runs as the `postgres` user (PostgreSQL refuses to run as root).
# Every failure is reported on stderr with a non-zero exit: the tests then skip with a reason.
set -euo pipefail

PG_ROOT=${PG_ROOT:-/tmp/clrec-postgres}
PG_PORT=${PG_PORT:-54329}
DATA="$PG_ROOT/data"
SOCKET="$PG_ROOT/socket"
DB=clrec_test
DB_USER=clrec

find_bin() {
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$found" ]; then echo "$found"; return; fi
  command -v pg_ctl >/dev/null 2>&1 && dirname "$(command -v pg_ctl)"
}

as_server_user() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  local bin
  bin=$(find_bin || true)
  if [ -z "$bin" ] && [ "${1:-}" = "--install" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "postgres.sh: installing Debian's postgresql package ..." >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 \
             && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1; } \
        || true
      bin=$(find_bin || true)
    fi
  fi
  if [ -z "$bin" ]; then
    echo "postgres.sh: no PostgreSQL server binaries (pg_ctl) found" >&2
    return 1
  fi
  stop >/dev/null 2>&1 || true
  rm -rf "$PG_ROOT"
  mkdir -p "$DATA" "$SOCKET"
  if [ "$(id -u)" = 0 ]; then chown -R postgres "$PG_ROOT"; fi
  as_server_user "$bin/initdb" -D "$DATA" -U "$DB_USER" --auth=trust >"$PG_ROOT/initdb.log" 2>&1 \
    || { echo "postgres.sh: initdb failed:" >&2; tail -n 5 "$PG_ROOT/initdb.log" >&2; return 1; }
  as_server_user "$bin/pg_ctl" -D "$DATA" -l "$PG_ROOT/server.log" -w -t 60 \
    -o "-c listen_addresses='' -k $SOCKET -p $PG_PORT -c fsync=on" start >/dev/null \
    || { echo "postgres.sh: the server did not start:" >&2; tail -n 5 "$PG_ROOT/server.log" >&2; return 1; }
  "$bin/createdb" -h "$SOCKET" -p "$PG_PORT" -U "$DB_USER" "$DB"
  echo "postgresql+psycopg://$DB_USER@/$DB?host=$SOCKET&port=$PG_PORT"
}

stop() {
  local bin
  bin=$(find_bin || true)
  [ -n "$bin" ] && [ -d "$DATA" ] || return 0
  as_server_user "$bin/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  *) echo "usage: $0 start [--install] | stop" >&2; exit 2 ;;
esac
