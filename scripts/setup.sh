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

# Redis from Debian: redis-server is the embedded store, and the tests also run redis-sentinel
# and redis-cli (package redis-tools). WireGuard: the kernel backend drives devices with `wg`
# (wireguard-tools) and `ip` (iproute2), and runs wireguard-go where there is no kernel module;
# wireguard-go is also the reference peer in the tests. The TUN tests answer a real `ping`
# (iputils-ping). test/systemd-unit.test.mjs checks the agent's unit with systemd-analyze
# (systemd). Workload links and the lab set per-interface sysctls (procps); the lab tests drop
# flows with nft (nftables). Policy enforcement applies its table with nft, cuts connections a
# policy change denies with conntrack (conntrack), and reads its flow log from an NFLOG group
# with tcpdump (tcpdump). The Kubernetes syncer's tests make their fake API server's TLS
# certificate with openssl (openssl). Installed only when a binary is missing.
missing_pkgs=()
for pair in redis-server:redis-server redis-sentinel:redis-sentinel redis-cli:redis-tools \
  wg:wireguard-tools wireguard-go:wireguard-go ip:iproute2 ping:iputils-ping \
  systemd-analyze:systemd sysctl:procps nft:nftables conntrack:conntrack tcpdump:tcpdump openssl:openssl \
  podman:podman runc:runc cc:gcc make:make python3:python3; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing_pkgs+=("${pair#*:}")
done
# flatnet-cni is tested with podman (CNI backend, runc) running containers from a busybox root
# filesystem, which needs the static busybox (busybox-static); bench/cni compares with podman's
# default bridge network, made by the reference plugins (containernetworking-plugins).
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || missing_pkgs+=(busybox-static)
# The data-plane addon and the CNI plugin's native front end are built here with a C compiler
# (gcc, make, python3 for node-gyp); the front end is linked statically (libc6-dev's libc.a).
dpkg-query -W -f='${Status}' libc6-dev 2>/dev/null | grep -q 'ok installed' || missing_pkgs+=(libc6-dev)
[ -x /usr/lib/cni/bridge ] || missing_pkgs+=(containernetworking-plugins)
if [ "${#missing_pkgs[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "flatnet needs the Debian packages ${missing_pkgs[*]}; install them as root:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing_pkgs[*]}" >&2
    exit 1
  fi
  log "installing ${missing_pkgs[*]} (apt-get)"
  # flatnet runs its own redis-server processes; keep the packages' system services from
  # starting (policy-rc.d exit 101 means "do not start"), unless the machine already decides.
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get update -qq
  # wireguard-tools recommends a kernel image (for the module): a whole kernel and initramfs
  # that a container cannot boot, so recommends are left out.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null
  [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
fi

# npm dependencies: reinstall when the lockfile changed since the last install.
stamp=node_modules/.flatnet-install-stamp
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  log "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi

# The data-plane addon (packages/wireguard/native), rebuilt only when it is missing or older than
# one of its sources. node-gyp is a devDependency of packages/wireguard, so nothing outside the npm
# registry is needed; Node's own headers are used where installed (the nodejs package puts them in
# <prefix>/include/node), so node-gyp does not try to download them.
addon_dir=packages/wireguard/native
addon=$addon_dir/build/Release/flatnet_native.node
if [ ! -f "$addon" ] || [ -n "$(find "$addon_dir/binding.gyp" "$addon_dir/src" -type f -newer "$addon" -print -quit)" ]; then
  log "building the data-plane addon (node-gyp)"
  gyp_args=(rebuild --directory="$addon_dir" --loglevel=error)
  node_prefix=$(dirname "$(dirname "$(node -p process.execPath)")")
  for dir in "$node_prefix" /usr; do
    if [ -f "$dir/include/node/node_api.h" ] && [ -f "$dir/include/node/common.gypi" ]; then
      gyp_args+=(--nodedir="$dir")
      break
    fi
  done
  if ! npx --no-install node-gyp "${gyp_args[@]}" >"$addon_dir/build.log" 2>&1; then
    cat "$addon_dir/build.log" >&2
    echo "building the data-plane addon failed (log above); it needs make, a C compiler (g++ or gcc) and python3" >&2
    exit 1
  fi
  # A failed or interrupted build can leave an old addon behind; mark a good one as current.
  touch "$addon"
fi

# The CNI plugin's native front end (packages/cni/native): one C file, linked statically so that
# `flatnet cni install` can copy it onto any host. Rebuilt when missing or older than its source.
shim_dir=packages/cni/native
shim=$shim_dir/build/flatnet-cni-shim
if [ ! -f "$shim" ] || [ "$shim_dir/flatnet-cni-shim.c" -nt "$shim" ]; then
  log "building the CNI plugin's native front end (cc)"
  mkdir -p "$shim_dir/build"
  if ! cc -O2 -static -Wall -Wextra -Werror -o "$shim.tmp" "$shim_dir/flatnet-cni-shim.c" 2>"$shim_dir/build/build.log"; then
    cat "$shim_dir/build/build.log" >&2
    echo "building the CNI front end failed (log above); it needs a C compiler and libc6-dev" >&2
    exit 1
  fi
  mv "$shim.tmp" "$shim"
fi

log "building (turbo run build)"
npx --no-install turbo run build --output-logs=errors-only --log-prefix=none >&2
