#!/usr/bin/env bash
# flatnet's main job on the embedded defaults. For now: the offline policy tools on examples/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
flatnet() {
  printf '\n\033[1m$ flatnet %s\033[0m\n' "$*"
  node packages/cli/bin/flatnet.js "$@"
}
flatnet policy validate -f examples/policies -f examples/inventory
flatnet policy explain -f examples/policies -i examples/inventory --from shop/frontend --to shop/api --port 8080/TCP
flatnet policy explain -f examples/policies -i examples/inventory --from shop/frontend --to data/postgres --port 5432/TCP
flatnet policy test -f examples/policies -i examples/inventory --tests examples/policy-tests.yaml
