#!/usr/bin/env bash
# Start a local PostgreSQL for the checkpoint tests (AsyncPostgresSaver) and print its DSN.
#
#   eval "$(scripts/postgres.sh)"          # exports MOA_TEST_POSTGRES_DSN
#   MOA_REQUIRE_POSTGRES=1 pytest tests/test_checkpoints.py
#
# Idempotent: installs Debian's `postgresql` only if no server is installed, creates the
# cluster only if missing, starts it only if down, creates the role/database only if missing.
# Needs root (or sudo). Only the `export ...` line goes to stdout; progress goes to stderr.
# Settings: MOA_PG_USER, MOA_PG_PASSWORD, MOA_PG_DB (default moa/moa/moa).
set -euo pipefail

PG_USER=${MOA_PG_USER:-moa}
PG_PASSWORD=${MOA_PG_PASSWORD:-moa}
PG_DB=${MOA_PG_DB:-moa}

log() { echo "postgres.sh: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() {
    if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else (cd / && sudo -u postgres "$@"); fi
}

for name in "$PG_USER" "$PG_DB"; do
    [[ "$name" =~ ^[a-z_][a-z0-9_]*$ ]] || { log "bad name '$name' (use [a-z0-9_])"; exit 2; }
done
[[ "$PG_PASSWORD" != *"'"* ]] || { log "the password must not contain a quote"; exit 2; }

server_version() { ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1; }

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(server_version)" ] \
    || [ ! -x "/usr/lib/postgresql/$(server_version)/bin/initdb" ]; then
    log "installing postgresql with apt-get (takes a minute)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
VER=$(server_version)

if ! pg_lsclusters -h | awk -v v="$VER" '$1 == v && $2 == "main" {found=1} END {exit !found}'; then
    log "creating cluster $VER/main"
    as_root pg_createcluster "$VER" main >&2
fi
PORT=$(pg_lsclusters -h | awk -v v="$VER" '$1 == v && $2 == "main" {print $3}')
STATUS=$(pg_lsclusters -h | awk -v v="$VER" '$1 == v && $2 == "main" {print $4}')
if [ "$STATUS" != "online" ]; then
    log "starting cluster $VER/main on port $PORT"
    as_root pg_ctlcluster "$VER" main start >&2
fi
for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$PORT" && break
    sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p "$PORT" || { log "server on port $PORT is not ready"; exit 1; }

psql_admin() { as_postgres psql -p "$PORT" -v ON_ERROR_STOP=1 -qAtX "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != "1" ]; then
    log "creating role $PG_USER"
    psql_admin -c "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD'" >&2
else
    psql_admin -c "ALTER ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD'" >&2
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != "1" ]; then
    log "creating database $PG_DB"
    psql_admin -c "CREATE DATABASE $PG_DB OWNER $PG_USER" >&2
fi

DSN="postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PORT/$PG_DB"
# Debian's pg_hba.conf allows password (scram) logins on 127.0.0.1: check that it works.
PGCONNECT_TIMEOUT=5 psql "$DSN" -qAtX -c "SELECT 1" >/dev/null \
    || { log "cannot log in with $DSN (check pg_hba.conf)"; exit 1; }
log "ready: $DSN"
echo "export MOA_TEST_POSTGRES_DSN=$DSN"
