# flatnet: the TypeScript userspace WireGuard, `flatnet wg up` from a wg-quick file in each
# namespace. Needs FLATNET_ROOT (the repository) and FLATNET_NODE (node binary) from
# bench/throughput/run.sh: this file is copied next to the shared harness, so it cannot find
# the repository from its own location.
PEER_PACKAGES="wireguard-tools"
PEER_CMDS="node wg"
FN_PORT=51820
FN_MTU=${FN_MTU:-1420}

peer_setup() {
  local cli="${FLATNET_ROOT:-}/packages/cli/bin/flatnet.js"
  [ -f "$cli" ] || { echo "flatnet CLI not found at $cli (FLATNET_ROOT unset?)" >&2; return 1; }
  [ -x "${FLATNET_NODE:-}" ] || { echo "node not found (FLATNET_NODE=${FLATNET_NODE:-})" >&2; return 1; }
  umask 077
  wg genkey >"$PB_WORK/a.key" && wg genkey >"$PB_WORK/b.key" || return 1
  wg pubkey <"$PB_WORK/a.key" >"$PB_WORK/a.pub" && wg pubkey <"$PB_WORK/b.key" >"$PB_WORK/b.pub" || return 1
  _fn_conf a b "$PB_OVER_A" "$PB_UNDER_B" "$PB_OVER_B" >"$PB_WORK/a.conf"
  _fn_conf b a "$PB_OVER_B" "$PB_UNDER_A" "$PB_OVER_A" >"$PB_WORK/b.conf"
}

_fn_conf() { # side other over_self under_peer over_peer
  cat <<C
[Interface]
PrivateKey = $(cat "$PB_WORK/$1.key")
Address = $3/$PB_OVER_PREFIX
ListenPort = $FN_PORT
MTU = $FN_MTU

[Peer]
PublicKey = $(cat "$PB_WORK/$2.pub")
Endpoint = $4:$FN_PORT
AllowedIPs = $5/32
C
}

_fn_side() { # side ns
  # node itself is spawned (no shell, no npm wrapper) so the recorded PID, its CPU time and
  # its VmHWM are the data plane's own; interface names differ per side because the UAPI
  # sockets of both namespaces share /var/run/wireguard.
  pb_spawn "flatnet-$1" "$2" "$FLATNET_NODE" "$FLATNET_ROOT/packages/cli/bin/flatnet.js" \
    wg up "$PB_WORK/$1.conf" --name "pbfn-$1"
}

peer_start() {
  _fn_side a "$PB_NS_A" && _fn_side b "$PB_NS_B" || return 1
  # `wg up` logs "interface NAME up" once the TUN, the socket and the peer are configured;
  # node's start-up takes seconds when the machine is busy, hence the generous bound.
  local i
  for i in $(seq 300); do
    grep -q 'interface pbfn-a up' "$PB_WORK/flatnet-a.log" 2>/dev/null &&
      grep -q 'interface pbfn-b up' "$PB_WORK/flatnet-b.log" 2>/dev/null && return 0
    pb_alive flatnet-a && pb_alive flatnet-b || { tail -n 5 "$PB_WORK"/flatnet-*.log >&2; return 1; }
    sleep 0.1
  done
  echo "flatnet did not come up within 30 s" >&2
  return 1
}
