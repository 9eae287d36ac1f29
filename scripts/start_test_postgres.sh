#!/usr/bin/env bash
# Start a throwaway PostgreSQL on 127.0.0.1 for the Postgres checkpointer tests and print
# its URL. Needs Debian's postgresql package (installed when missing) and root or the
# postgres user. Usage: export GENEVOLVE_TEST_POSTGRES_URL=$(scripts/start_test_postgres.sh)
set -euo pipefail
PORT="${PGPORT_TEST:-54329}"
DATA="${PGDATA_TEST:-/tmp/genevolve-pg}"
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$BIN" ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
  BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
# pgvector lets the tests run PostgresStore's semantic search (tests/experience/test_memory.py); best
# effort: without it those tests skip and say so.
VER=$(basename "$(dirname "$BIN")")
if [ ! -f "/usr/share/postgresql/$VER/extension/vector.control" ]; then
  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-$VER-pgvector" >&2 2>/dev/null) || true
fi
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
if ! as_pg "$BIN/pg_ctl -D $DATA status" >/dev/null 2>&1; then
  rm -rf "$DATA"; mkdir -p "$DATA"; [ "$(id -u)" = 0 ] && chown postgres "$DATA"
  as_pg "$BIN/initdb -D $DATA -A trust -U postgres" >/dev/null
  as_pg "$BIN/pg_ctl -D $DATA -o '-p $PORT -h 127.0.0.1 -k /tmp' -l $DATA/log -w start" >/dev/null
fi
as_pg "$BIN/psql -h 127.0.0.1 -p $PORT -U postgres -tc \"select 1 from pg_database where datname='genevolve_test'\"" | grep -q 1 \
  || as_pg "$BIN/createdb -h 127.0.0.1 -p $PORT -U postgres genevolve_test"
echo "postgresql://postgres@127.0.0.1:$PORT/genevolve_test"
