#!/usr/bin/env bash
# Runs one benchmark on a fresh database:  bash bench/run.sh <append|projection|auth|ingest|orders>
#
# Builds, then starts a local PostgreSQL + Redis under DATA_DIR=.data/bench on
# their own ports (as scripts/test.sh does, so a running app or test suite is
# not disturbed), creates a fresh database for this run, runs the benchmark,
# drops the database and stops the services.
#
# With DATABASE_URL set, that server is used instead (the role needs
# CREATEDB; CHECKPOINT between runs is skipped without the privilege), and
# REDIS_URL, when set, is the Redis handed to the benchmark (auth and orders need one).
#
#   BENCH_PG_PORT / BENCH_REDIS_PORT   local ports (default 0: any free port)
#   BENCH_DATA_DIR                     local data dir (default .data/bench)
#   BENCH_KEEP_DB=1                    keep the database afterwards (its URL is printed)
#   BENCH_RUNS, BENCH_* sizes          see bench/README.md
set -euo pipefail
cd "$(dirname "$0")/.."

bench="${1:-}"
case "$bench" in
  append|projection|auth|ingest|orders) ;;
  *) echo "usage: bash bench/run.sh <append|projection|auth|ingest|orders>" >&2; exit 2 ;;
esac

log() { printf '[bench] %s\n' "$*" >&2; }

log "installing what is missing and building"
bash scripts/setup.sh

export DATA_DIR="${BENCH_DATA_DIR:-.data/bench}"
env_file="$(mktemp)"
svc_pid=""
server_url=""
db_name=""
cleanup() {
  if [ -n "$db_name" ] && [ -n "$server_url" ]; then
    if [ "${BENCH_KEEP_DB:-}" = "1" ]; then log "kept database $db_name"
    else node dist/bench/db.js drop "$server_url" "$db_name" || log "could not drop database $db_name"; fi
  fi
  if [ -n "$svc_pid" ]; then kill "$svc_pid" 2>/dev/null || true; wait "$svc_pid" 2>/dev/null || true; fi
  rm -f "$env_file"
}
trap cleanup EXIT

if [ -n "${DATABASE_URL:-}" ]; then
  server_url="$DATABASE_URL"
  log "using DATABASE_URL"
  if [ -n "${REDIS_URL:-}" ]; then export BENCH_REDIS_URL="$REDIS_URL"; fi
else
  log "starting local PostgreSQL and Redis in $DATA_DIR"
  env_flag="--write-env"
  env -u TEST_DATABASE_URL -u TEST_REDIS_URL node dist/src/cli.js services:run "$env_flag" "$env_file" \
    --pg-port "${BENCH_PG_PORT:-0}" --redis-port "${BENCH_REDIS_PORT:-0}" &
  svc_pid=$!
  for _ in $(seq 1 600); do
    [ -s "$env_file" ] && break
    kill -0 "$svc_pid" 2>/dev/null || { log "services failed to start"; exit 1; }
    sleep 0.1
  done
  [ -s "$env_file" ] || { log "services did not start in 60 s"; exit 1; }
  server_url="$(sed -n 's/^TEST_DATABASE_URL=//p' "$env_file")"
  BENCH_REDIS_URL="$(sed -n 's/^TEST_REDIS_URL=//p' "$env_file")"
  export BENCH_REDIS_URL
fi

db_name="bench_${bench}_$(date +%Y%m%d_%H%M%S)_$$"
BENCH_DATABASE_URL="$(node dist/bench/db.js create "$server_url" "$db_name")"
export BENCH_DATABASE_URL
log "database $db_name"

node "dist/bench/$bench.js"
