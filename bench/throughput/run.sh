#!/usr/bin/env bash
# run.sh -- flatnet's userspace WireGuard against raw veth, wireguard-go and nebula, in one run
# on the same namespace pair (pb-a <-> pb-b), all tunnels at MTU 1420: iperf3 TCP 1 and 4
# streams, ping RTT, tunnel CPU s/GB, peak RSS of the tunnel processes; then the ratios of
# flatnet to nebula and wireguard-go, the targets (PASS/MISS) and one JSON line.
#   sudo bash bench/throughput/run.sh [--duration 10] [--peers "raw wireguard-go nebula flatnet"]
#                                     [--no-install] [--keep] [--force]
# Exit status: 0 all targets met, 1 a target missed, 2 the run failed.
#
# The measuring is done by the shared overlay harness (../shared/bench/peers next to the
# repository). It writes results and logs next to its own scripts and /work/shared is not ours
# to write, so it is copied into a temp dir together with peers.d/flatnet.sh and rss.sh.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null) || ROOT=$(cd "$HERE/../.." && pwd)
SHARED=${FLATNET_PEERS_HARNESS:-$ROOT/../shared/bench/peers}

DURATION=10
PEERS="raw wireguard-go nebula flatnet"
INSTALL=1
KEEP=0
FORCE=0
while [ $# -gt 0 ]; do
  case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --peers) PEERS=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --keep) KEEP=1; shift ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
case $DURATION in ''|*[!0-9]*) echo "--duration takes whole seconds" >&2; exit 2 ;; esac

log() { printf '\033[1m[throughput]\033[0m %s\n' "$*" >&2; }
die() { log "$*"; exit 2; }

[ "$(id -u)" = 0 ] || die "must run as root (network namespaces, TUN devices)"
for f in run.sh run-peer.sh netns.sh peers.d/raw.sh peers.d/cmd.sh; do
  [ -f "$SHARED/$f" ] || die "shared harness not found: $SHARED/$f (set FLATNET_PEERS_HARNESS)"
done
[ -f "$ROOT/packages/cli/dist/src/main.js" ] && [ -f "$ROOT/packages/wireguard/native/build/Release/flatnet_native.node" ] ||
  die "flatnet is not built: run 'bash scripts/setup.sh' in $ROOT first"
FLATNET_NODE=$(command -v node) || die "node not found in PATH"

# ---- packages (Debian); jq, ping and util-linux are what the harness itself uses
if [ $INSTALL = 1 ]; then
  missing=""
  for p in iperf3 wireguard-go wireguard-tools nebula iproute2 iputils-ping jq util-linux; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    log "installing:$missing (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq >/dev/null 2>&1
    timeout 600 apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
      die "apt-get install$missing failed"
  fi
fi
for c in iperf3 jq ip wg; do command -v "$c" >/dev/null || die "$c is missing (run without --no-install)"; done

# ---- one run at a time, and never next to another harness run on the same pb-* namespaces:
# the harness removes every pb-* namespace it finds, which would break a run in progress.
LOCK=/run/lock/flatnet-bench-throughput.lock
[ -d /run/lock ] || LOCK=/tmp/flatnet-bench-throughput.lock
exec 9>"$LOCK"
flock -n 9 || die "another bench/throughput/run.sh is running"
busy_pb_ns() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^pb-'); do
    [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && echo "$ns"
  done
}
if [ $FORCE = 0 ]; then
  end=$((SECONDS + 300))
  while [ -n "$(busy_pb_ns)" ] && [ $SECONDS -lt $end ]; do
    log "namespaces $(busy_pb_ns | tr '\n' ' ')are in use (another harness run?); waiting (<= 5 min)"
    sleep 10
  done
  [ -z "$(busy_pb_ns)" ] || die "pb-* namespaces still in use; rerun with --force to remove them"
fi

# ---- the harness copy
WORK=$(mktemp -d /tmp/flatnet-throughput.XXXXXX)
cp -r "$SHARED/run.sh" "$SHARED/run-peer.sh" "$SHARED/netns.sh" "$SHARED/peers.d" "$WORK/"
chmod -R u+w "$WORK"
cat "$HERE/rss.sh" >>"$WORK/netns.sh"
cp "$HERE/peers.d/"*.sh "$WORK/peers.d/"
rm -rf "$WORK/results" "$WORK/.work" "$WORK/.run.pid"

HARNESS_PID=""
# the harness defers its own signal trap until the current peer finishes (up to 4*D+90 s), so
# on interrupt its whole process tree is signalled, by PID, and its namespaces removed here
descendants() {
  local cur="$1" next p d out=""
  for d in 1 2 3 4 5 6; do
    next=""
    for p in $cur; do
      [ -d "/proc/$p" ] || continue
      out="$out $p"
      next="$next $(cat /proc/$p/task/*/children 2>/dev/null)"
    done
    cur=$next
    [ -z "${cur// /}" ] && break
  done
  echo $out
}
stop_harness() {
  [ -n "$HARNESS_PID" ] && kill -0 "$HARNESS_PID" 2>/dev/null || return 0
  local pids i
  pids=$(descendants "$HARNESS_PID")
  kill -TERM $pids 2>/dev/null
  for i in $(seq 50); do kill -0 "$HARNESS_PID" 2>/dev/null || break; sleep 0.1; done
  pids=$(descendants "$HARNESS_PID")
  [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
  (PB_PEERS_DIR="$WORK/peers.d"; . "$WORK/netns.sh"; pb_cleanup_leftovers)
}
finish() {
  stop_harness
  if [ $KEEP = 1 ] || [ "${KEEP_ON_FAIL:-0}" = 1 ]; then log "harness copy, logs and keys kept in $WORK"; else rm -rf "$WORK"; fi
}
trap finish EXIT
trap 'exit 143' TERM INT

export FLATNET_ROOT=$ROOT FLATNET_NODE NEB_MTU=1420 FN_MTU=1420
npeers=$(echo $PEERS | wc -w)
LOAD_BEFORE=$(uptime)
log "load before: $LOAD_BEFORE"
log "peers: $PEERS; iperf3 -t $DURATION; harness copy in $WORK"
timeout -k 20 $((npeers * (4 * DURATION + 100) + 60)) \
  "$WORK/run.sh" --peers "$PEERS" --duration "$DURATION" --no-install >"$WORK/harness.out" &
HARNESS_PID=$!
wait $HARNESS_PID
hrc=$?
HARNESS_PID=""
LOAD_AFTER=$(uptime)
log "load after:  $LOAD_AFTER"
TSV=$(ls "$WORK"/results/*.tsv 2>/dev/null | head -1)
if [ -z "$TSV" ] || [ ! -s "$TSV" ]; then
  KEEP_ON_FAIL=1
  cat "$WORK/harness.out" >&2
  die "the harness produced no results (exit $hrc)"
fi
VERSIONS=$(sed -n "s/^Versions: *//p" "$WORK/harness.out" | sed "s/;* *$//")
VERSIONS="$VERSIONS; flatnet $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD -- packages 2>/dev/null || echo '+uncommitted'), node $("$FLATNET_NODE" --version)"

# ---- collect: harness row + peak RSS per peer
isnum() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
jnum() { if isnum "$1"; then echo "$1"; else echo null; fi; }
declare -A R
labels=()
while IFS=$'\t' read -r label bg status mtu ping tcp1 tcp4 cpu1 cpu1gb sys1gb cpu4gb note; do
  peer=$label
  for p in $PEERS; do [ "$p" = "$label" ] && peer=$p; done
  labels+=("$label")
  rss_max=- rss_sum=- rss_n=0
  rfile="$WORK/.work/$peer/rss.tsv"
  if [ -s "$rfile" ]; then
    read -r rss_max rss_sum rss_n < <(awk -F'\t' '{k=$3*1024/1e6; s+=k; if(k>m)m=k; n++} END{printf "%.1f %.1f %d\n", m, s, n}' "$rfile")
  fi
  [ "$status" = ok ] || KEEP_ON_FAIL=1
  # every tunnel is meant to run at 1420; the raw veth baseline is the 1500-byte underlay
  if [ "$label" != raw ] && isnum "$mtu" && [ "$mtu" != 1420 ]; then note="${note:+$note; }MTU is $mtu, not 1420"; fi
  for k in bg status mtu ping tcp1 tcp4 cpu1 cpu1gb sys1gb cpu4gb note rss_max rss_sum rss_n; do
    R[$label.$k]=${!k}
  done
done <"$TSV"

get() { echo "${R[$1.$2]:-NA}"; }
ratio() { # a b -> a/b with 2 decimals, or NA
  if isnum "$1" && isnum "$2" && awk -v b="$2" 'BEGIN{exit !(b>0)}'; then awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; else echo NA; fi
}

STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR="$HERE/results"
mkdir -p "$OUT_DIR"
MD="$OUT_DIR/$STAMP.md"

targets=()   # name<TAB>value<TAB>goal<TAB>verdict
verdict() { # value op limit -> PASS|MISS|FAIL
  isnum "$1" || { echo FAIL; return; }
  awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN{ok = (op==">=") ? (v>=l) : (v<l); print ok ? "PASS" : "MISS"}'
}
has() { [ -n "${R[$1.status]:-}" ]; }
if has flatnet; then
  for s in 1 4; do
    if has nebula; then
      r=$(ratio "$(get flatnet tcp$s)" "$(get nebula tcp$s)")
      targets+=("$(printf 'TCP %s-stream flatnet/nebula\t%s\t>= 1.0x\t%s' "$s" "$r" "$(verdict "$r" '>=' 1.0)")")
    fi
    if has wireguard-go; then
      r=$(ratio "$(get flatnet tcp$s)" "$(get wireguard-go tcp$s)")
      targets+=("$(printf 'TCP %s-stream flatnet/wireguard-go\t%s\t>= 1.2x\t%s' "$s" "$r" "$(verdict "$r" '>=' 1.2)")")
    fi
  done
  r=$(get flatnet rss_max)
  targets+=("$(printf 'flatnet peak RSS per process, MB\t%s\t< 80\t%s' "$r" "$(verdict "$r" '<' 80)")")
fi

{
  echo "### Overlay throughput, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, kernel $(uname -r), iperf3 -t $DURATION, tunnels at MTU 1420"
  echo
  echo "load before: ${LOAD_BEFORE# }  "
  echo "load after:  ${LOAD_AFTER# }"
  echo
  echo "| peer | TCP 1-stream Mbit/s | TCP 4-stream Mbit/s | ping avg ms | tunnel CPU s/GB (1-str) | tunnel CPU s/GB (4-str) | host CPU s/GB (1-str) | peak RSS MB (max process) | peak RSS MB (all) | MTU | bg CPU % | status |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for l in "${labels[@]}"; do
    note=$(get "$l" note); [ "$note" = NA ] && note=""
    echo "| $l | $(get "$l" tcp1) | $(get "$l" tcp4) | $(get "$l" ping) | $(get "$l" cpu1gb) | $(get "$l" cpu4gb) | $(get "$l" sys1gb) | $(get "$l" rss_max) | $(get "$l" rss_sum) | $(get "$l" mtu) | $(get "$l" bg) | $(get "$l" status)${note:+: $note} |"
  done
  echo
  if has flatnet; then
    echo "| flatnet / peer | TCP 1-stream | TCP 4-stream | tunnel CPU s/GB (1-str) | tunnel CPU s/GB (4-str) | peak RSS (max process) |"
    echo "|---|---:|---:|---:|---:|---:|"
    for l in "${labels[@]}"; do
      [ "$l" = flatnet ] && continue
      echo "| $l | $(ratio "$(get flatnet tcp1)" "$(get "$l" tcp1)") | $(ratio "$(get flatnet tcp4)" "$(get "$l" tcp4)") | $(ratio "$(get flatnet cpu1gb)" "$(get "$l" cpu1gb)") | $(ratio "$(get flatnet cpu4gb)" "$(get "$l" cpu4gb)") | $(ratio "$(get flatnet rss_max)" "$(get "$l" rss_max)") |"
    done
    echo
    echo "Targets:"
    for t in "${targets[@]}"; do
      IFS=$'\t' read -r name value goal v <<<"$t"
      printf -- '- %-4s %s = %s (target %s)\n' "$v" "$name" "$value" "$goal"
    done
    echo
  fi
  echo "Versions: $VERSIONS"
  echo "tunnel CPU = utime+stime of the tunnel processes in both namespaces during the iperf3 run; host CPU = all busy CPU of"
  echo "the machine (iperf3, kernel, tunnels); GB = 1e9 bytes received. Peak RSS = VmHWM of each tunnel process at the end of"
  echo "the peer's run, MB = 1e6 bytes. bg CPU % = machine busy % in the second before the peer started."
} | tee "$MD"

# ---- one JSON line with every figure
{
  printf '{"bench":"throughput","time":"%s","cores":%s,"duration_s":%s,"mtu":1420,' "$(date -u +%FT%TZ)" "$(nproc)" "$DURATION"
  printf '"load_before":"%s","load_after":"%s","versions":%s,"peers":{' "$(echo "$LOAD_BEFORE" | sed 's/^ *//')" "$(echo "$LOAD_AFTER" | sed 's/^ *//')" "$(jq -Rn --arg v "$VERSIONS" '$v')"
  sep=""
  for l in "${labels[@]}"; do
    printf '%s"%s":{"status":"%s","tcp1_mbps":%s,"tcp4_mbps":%s,"ping_ms":%s,"tunnel_cpu_s_per_gb_1":%s,"tunnel_cpu_s_per_gb_4":%s,"host_cpu_s_per_gb_1":%s,"rss_peak_mb_max":%s,"rss_peak_mb_sum":%s,"mtu":%s,"bg_cpu_pct":%s,"note":%s}' \
      "$sep" "$l" "$(get "$l" status)" "$(jnum "$(get "$l" tcp1)")" "$(jnum "$(get "$l" tcp4)")" "$(jnum "$(get "$l" ping)")" \
      "$(jnum "$(get "$l" cpu1gb)")" "$(jnum "$(get "$l" cpu4gb)")" "$(jnum "$(get "$l" sys1gb)")" \
      "$(jnum "$(get "$l" rss_max)")" "$(jnum "$(get "$l" rss_sum)")" "$(jnum "$(get "$l" mtu)")" "$(jnum "$(get "$l" bg)")" \
      "$(jq -Rn --arg v "${R[$l.note]:-}" '$v')"
    sep=","
  done
  printf '},"targets":['
  sep=""
  for t in "${targets[@]}"; do
    IFS=$'\t' read -r name value goal v <<<"$t"
    printf '%s{"name":"%s","value":%s,"target":"%s","result":"%s"}' "$sep" "$name" "$(jnum "$value")" "$goal" "$v"
    sep=","
  done
  printf ']}\n'
} >"$OUT_DIR/$STAMP.json"
jq -c . "$OUT_DIR/$STAMP.json" >/dev/null 2>&1 || log "warning: the JSON line does not parse"
cat "$OUT_DIR/$STAMP.json"
log "saved $MD and $OUT_DIR/$STAMP.json"

rc=0
case " $PEERS " in *" flatnet "*) has flatnet || rc=2 ;; esac
for t in "${targets[@]}"; do
  case ${t##*$'\t'} in MISS) [ $rc = 0 ] && rc=1 ;; FAIL) rc=2 ;; esac
done
for l in "${labels[@]}"; do [ "$(get "$l" status)" = FAIL ] && rc=2; done
exit $rc
