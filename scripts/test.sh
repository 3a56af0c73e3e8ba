#!/usr/bin/env bash
# Runs every test against real PostgreSQL and Redis processes. With
# TEST_DATABASE_URL / TEST_REDIS_URL set, those servers are used instead of
# starting local ones (each test file creates and drops its own database).
set -euo pipefail
cd "$(dirname "$0")/.."

export DATA_DIR="${TEST_DATA_DIR:-.data/test}"
env_file="$(mktemp)"
svc_pid=""
cleanup() {
  if [ -n "$svc_pid" ]; then kill "$svc_pid" 2>/dev/null || true; wait "$svc_pid" 2>/dev/null || true; fi
  rm -f "$env_file"
}
trap cleanup EXIT

if [ -z "${TEST_DATABASE_URL:-}" ] || [ -z "${TEST_REDIS_URL:-}" ]; then
  node dist/src/cli.js services:run --write-env "$env_file" --pg-port "${TEST_PG_PORT:-0}" --redis-port "${TEST_REDIS_PORT:-0}" &
  svc_pid=$!
  for _ in $(seq 1 600); do
    [ -s "$env_file" ] && break
    kill -0 "$svc_pid" 2>/dev/null || { echo "test services failed to start" >&2; exit 1; }
    sleep 0.1
  done
  [ -s "$env_file" ] || { echo "test services did not start in 60 s" >&2; exit 1; }
  set -a; . "$env_file"; set +a
fi

npx eslint --max-warnings=0 .
# Imports point one way (domain <- projections <- src/platform <- src/<context> <- src/app), and the code is formatted.
npx depcruise src domain projections --config .dependency-cruiser.cjs
npx prettier --check . --log-level warn
# --forceExit: a test that fails while holding a server open must fail the run, not hang it.
npx jest --ci --forceExit "$@"
