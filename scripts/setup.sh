#!/usr/bin/env bash
# Prepares a fresh Debian machine (Node >= 20.19 the only prerequisite):
# Debian packages the platform runs locally, npm packages, and the build.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<19)) { console.error("Node >= 20.19 is required (found "+process.versions.node+")"); process.exit(1) }'

# Debian packages: redis-server (jobs, revocation lists, rate limits) and
# mosquitto + clients (external-broker mode and its tests). Skipped when
# REDIS_URL is set and the binaries are not wanted.
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
[ -x /usr/lib/postgresql/15/bin/pg_restore ] || need+=(postgresql-15)   # pg_dump/pg_restore and a second cluster for the backup-restore test
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      log "missing Debian packages ${need[*]} and not root: install them, or set REDIS_URL"; exit 1; fi
  fi
  log "installing Debian packages: ${need[*]}"
  if [[ " ${need[*]} " == *" postgresql-15 "* ]]; then
    # It would create and start a "main" cluster on 5432; only its binaries are wanted.
    $sudo mkdir -p /etc/postgresql-common/createcluster.d
    echo 'create_main_cluster = false' | $sudo tee /etc/postgresql-common/createcluster.d/ops-platform.conf >/dev/null
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# npm packages: install when node_modules is missing or older than the lockfile.
# (`npm ci` trips over optional platform packages on this npm; `npm install`
# honours package-lock.json.)
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm packages"
  npm install --no-audit --no-fund --loglevel=error
fi

log "building"
npx tsc -p tsconfig.json
