#!/usr/bin/env bash
# Installs what a fresh Debian 12 + Node 20 machine lacks for flatnet, then builds it.
# Idempotent: each step runs only when its output is missing or stale.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

need_node_major=20
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt "$need_node_major" ]; then
  echo "flatnet needs Node.js >= $need_node_major (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

# npm dependencies: reinstall when the lockfile changed since the last install.
stamp=node_modules/.flatnet-install-stamp
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  log "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi

log "building (turbo run build)"
npx --no-install turbo run build --output-logs=errors-only --log-prefix=none >&2
