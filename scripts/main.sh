#!/usr/bin/env bash
# flatnet's main job on the embedded defaults: a whole flat network on this machine. Three hosts
# (a vm, a baremetal and a k8s-node host) in network namespaces on an underlay, a store, one agent
# per host joined by WireGuard, workloads serving their ports; then policies applied and the
# result measured with real connections. The lab stays up to be tried; `flatnet lab down`
# removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
flatnet() {
  printf '\n\033[1m$ flatnet %s\033[0m\n' "$*"
  node packages/cli/bin/flatnet.js "$@"
}
# A lab left by an earlier run (or a crashed one) goes first.
node packages/cli/bin/flatnet.js lab down >/dev/null 2>&1 || true
flatnet lab up
eval "$(node packages/cli/bin/flatnet.js lab env)"
flatnet lab probe
flatnet policy apply -f examples/lab/policies
flatnet policy status
flatnet lab probe
flatnet policy explain --from hosts/baremetal --to data/postgres --port 5432/TCP
flatnet policy explain --from data/cache --to shop/api --port 9090/TCP
flatnet status --socket /var/lib/flatnet/lab/agents/k8s-node/run/agent.sock
flatnet flows --socket /var/lib/flatnet/lab/agents/vm/run/agent.sock --verdict deny --limit 10
printf '\nThe lab is up. Try: eval "$(node packages/cli/bin/flatnet.js lab env)"; then any flatnet command. Remove it: node packages/cli/bin/flatnet.js lab down\n'
