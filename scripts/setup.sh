#!/usr/bin/env bash
# Prepares a fresh Debian machine (Node >= 20.19 the only prerequisite):
# Debian packages the platform runs locally, npm packages, and the build.
# Safe to run again: each step is skipped when already done, so a start with
# nothing changed spends well under a second here.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

# `node --version` answers before Node boots: this check costs milliseconds on every start.
node_version="$(node --version)"; node_version="${node_version#v}"
IFS=. read -r node_major node_minor _ <<< "$node_version"
if [ "$node_major" -lt 20 ] || { [ "$node_major" -eq 20 ] && [ "$node_minor" -lt 19 ]; }; then
  log "Node >= 20.19 is required (found $node_version)"; exit 1
fi

# Debian packages, as "command:package" (installed when the command is missing):
# redis-server (jobs, revocation lists, rate limits), mosquitto + clients
# (external-broker mode and its tests, the README tour), curl and jq (the
# README tour and its test). Add a line for another tool.
debian_packages=(
  redis-server:redis-server
  mosquitto:mosquitto
  mosquitto_pub:mosquitto-clients
  curl:curl
  jq:jq
)
# `npm test` (setup.sh --test) also needs Debian's PostgreSQL 15: pg_dump/pg_restore
# and a second cluster for the backup-and-restore test.
# The console's browser tests drive Debian's chromium (headless, through playwright-core).
if [ "${1:-}" = "--test" ]; then debian_packages+=(/usr/lib/postgresql/15/bin/pg_restore:postgresql-15 chromium:chromium); fi
need=()
for entry in "${debian_packages[@]}"; do
  command -v "${entry%%:*}" >/dev/null 2>&1 || need+=("${entry#*:}")
done
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

# npm packages: `npm ci` installs exactly what package-lock.json says and never
# rewrites it (`npm install` added other platforms' optional packages to it, so
# a fresh clone was dirty after its first start). It runs when node_modules was
# installed from another package-lock.json than this one (whose root entry holds
# package.json's dependencies, so a change of those changes it too).
installed_stamp=node_modules/.installed-from
lock_hash="$(sha256sum < package-lock.json | cut -d' ' -f1)"
if [ ! -f "$installed_stamp" ] || [ "$(cat "$installed_stamp")" != "$lock_hash" ]; then
  log "installing npm packages (npm ci: exactly package-lock.json)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > "$installed_stamp"
fi

# Build only when an input of tsc changed: the name, size and time of every
# file it compiles, its configuration, and the installed packages.
build_stamp=dist/.built-from
build_hash="$( {
  find src domain projections test bench -type f \( -name '*.ts' -o -name '*.json' \) -printf '%p %s %T@\n' | LC_ALL=C sort
  stat -c '%n %s %Y' tsconfig.json "$installed_stamp"
} | sha256sum | cut -d' ' -f1)"
if [ ! -f dist/src/main.js ] || [ ! -f "$build_stamp" ] || [ "$(cat "$build_stamp")" != "$build_hash" ]; then
  log "building"
  npx tsc -p tsconfig.json
  echo "$build_hash" > "$build_stamp"
fi

# The operator console (/console): bundled by esbuild into dist/console when its
# sources, the build script or the installed packages changed; its types are
# checked too (the browser code has its own tsconfig: DOM, JSX).
console_stamp=dist/console/.built-from
console_hash="$( {
  find src/console/web -type f -printf '%p %s %T@\n' | LC_ALL=C sort
  stat -c '%n %s %Y' scripts/build-console.mjs "$installed_stamp"
} | sha256sum | cut -d' ' -f1)"
if [ ! -f "$console_stamp" ] || [ "$(cat "$console_stamp")" != "$console_hash" ]; then
  log "building the console"
  npx tsc -p src/console/web/tsconfig.json
  node scripts/build-console.mjs
  echo "$console_hash" > "$console_stamp"
fi
