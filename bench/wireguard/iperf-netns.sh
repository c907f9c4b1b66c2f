#!/usr/bin/env bash
# TCP throughput through a WireGuard tunnel between two network namespaces on this machine:
# fn-pf-a and fn-pf-b, joined by a veth pair (10.98.0.1 <-> 10.98.0.2), tunnel 10.99.0.1 <->
# 10.99.0.2 at MTU 1420, iperf3 from a to b. Both ends share the machine's cores, so figures
# compare variants on one box; `uptime` is printed with each run because the load moves them.
#
#   bash bench/wireguard/iperf-netns.sh [flatnet|wggo] [flatnet|wggo] [seconds] [iperf3 args...]
#     defaults: flatnet flatnet 5        (a = sender side, b = receiver side)
#
# Needs root, iperf3, wireguard-go and wg; builds nothing (run npm run setup first). Everything it
# starts is stopped by PID and both namespaces are deleted on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

side_a=${1:-flatnet}
side_b=${2:-flatnet}
seconds=${3:-5}
shift $(( $# < 3 ? $# : 3 ))

ns_a=fn-pf-a
ns_b=fn-pf-b
work=$(mktemp -d /tmp/fn-pf.XXXXXX)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  ip netns del "$ns_a" 2>/dev/null || true
  ip netns del "$ns_b" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for ns in "$ns_a" "$ns_b"; do ip netns del "$ns" 2>/dev/null || true; ip netns add "$ns"; done
ip link add fn-pf-va netns "$ns_a" type veth peer name fn-pf-vb netns "$ns_b"
ip -n "$ns_a" addr add 10.98.0.1/24 dev fn-pf-va
ip -n "$ns_b" addr add 10.98.0.2/24 dev fn-pf-vb
for ns in "$ns_a" "$ns_b"; do ip -n "$ns" link set lo up; done
ip -n "$ns_a" link set fn-pf-va up
ip -n "$ns_b" link set fn-pf-vb up

key_a=$(wg genkey); key_b=$(wg genkey)
pub_a=$(wg pubkey <<<"$key_a"); pub_b=$(wg pubkey <<<"$key_b")

# side NAME NS IFACE PRIVATE TUNNEL_ADDR PEER_PUB PEER_VETH_ADDR PEER_TUNNEL_ADDR
start_side() {
  local kind=$1 ns=$2 ifname=$3 priv=$4 addr=$5 peer_pub=$6 peer_ep=$7 peer_addr=$8
  if [ "$kind" = flatnet ]; then
    cat >"$work/$ifname.conf" <<EOF
[Interface]
PrivateKey = $priv
ListenPort = 51820
Address = $addr/24
MTU = 1420

[Peer]
PublicKey = $peer_pub
Endpoint = $peer_ep:51820
AllowedIPs = $peer_addr/32
EOF
    ip netns exec "$ns" node packages/cli/bin/flatnet.js wg up "$work/$ifname.conf" --name "$ifname" \
      >"$work/$ifname.log" 2>&1 &
    pids+=($!)
  else
    printf '%s\n' "$priv" >"$work/$ifname.key"
    WG_PROCESS_FOREGROUND=1 ip netns exec "$ns" wireguard-go -f "$ifname" >"$work/$ifname.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do ip -n "$ns" link show "$ifname" >/dev/null 2>&1 && [ -S "/var/run/wireguard/$ifname.sock" ] && break; sleep 0.05; done
    ip netns exec "$ns" wg set "$ifname" listen-port 51820 private-key "$work/$ifname.key" \
      peer "$peer_pub" endpoint "$peer_ep:51820" allowed-ips "$peer_addr/32"
    ip -n "$ns" addr add "$addr/24" dev "$ifname"
    ip -n "$ns" link set "$ifname" mtu 1420 up
  fi
}

start_side "$side_a" "$ns_a" fn-wg-a "$key_a" 10.99.0.1 "$pub_b" 10.98.0.2 10.99.0.2
start_side "$side_b" "$ns_b" fn-wg-b "$key_b" 10.99.0.2 "$pub_a" 10.98.0.1 10.99.0.1

for _ in $(seq 100); do
  ip -n "$ns_a" link show fn-wg-a 2>/dev/null | grep -q UP && ip -n "$ns_b" link show fn-wg-b 2>/dev/null | grep -q UP && break
  sleep 0.1
done
# Long enough for one handshake retry (REKEY_TIMEOUT, 5 s): the first initiation can reach a side
# whose UDP socket is not bound yet.
if ! ip netns exec "$ns_a" ping -c 1 -W 12 10.99.0.2 >/dev/null; then
  echo "the tunnel does not answer ping; logs:" >&2
  tail -n 20 "$work"/*.log >&2
  exit 1
fi

ip netns exec "$ns_b" iperf3 -s -1 -B 10.99.0.2 >"$work/iperf-server.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do ip netns exec "$ns_b" ss -ltn | grep -q ':5201 ' && break; sleep 0.1; done
echo "== $side_a -> $side_b, load: $(uptime | sed 's/.*load average: //')"
ip netns exec "$ns_a" iperf3 -c 10.99.0.2 -t "$seconds" -f g "$@" | grep -E 'sender|receiver'
echo "== load after: $(uptime | sed 's/.*load average: //')"
