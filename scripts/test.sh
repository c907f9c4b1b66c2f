#!/usr/bin/env bash
# The test command: installs what is missing, builds, lints, type-checks, then runs every test
# in one node:test run so that there is one summary at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== lint and typecheck" >&2
npx --no-install turbo run lint typecheck --output-logs=errors-only --log-prefix=none

echo "== tests" >&2
shopt -s nullglob
files=(packages/*/dist/test/*.test.js test/*.test.mjs)
# A test that hangs (e.g. a client left connected) fails after 3 minutes instead of stalling CI.
node --test --test-reporter=spec --test-concurrency=2 --test-timeout=180000 "${files[@]}"
