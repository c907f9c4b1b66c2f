// systemd/flatnet-agent.service: `systemd-analyze verify` accepts it without a warning, its
// hardening options are the ones docs/agent.md describes, its exposure score stays low, and —
// booting a real systemd as PID 1 in private namespaces — the agent's tools work inside its
// sandbox (nftables, conntrack, TUN, routes, ip_forward, the embedded Redis, both WireGuard
// backends) while what it forbids stays forbidden.
//
// `verify` checks that the ExecStart binary exists. /usr/local/bin/flatnet (docs/install.md) is
// not installed on a build machine, so the checks run on a copy whose ExecStart is this
// checkout's packages/cli/bin/flatnet.js run through /usr/bin/env node; every other line is the
// unit's own.
import assert from 'node:assert/strict'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import process from 'node:process'
import { after, describe, it } from 'node:test'
import { setTimeout } from 'node:timers'
import { URL } from 'node:url'

const root = new URL('..', import.meta.url).pathname
const unitPath = join(root, 'systemd', 'flatnet-agent.service')
const unitText = readFileSync(unitPath, 'utf8')
const EXEC_START = 'ExecStart=/usr/local/bin/flatnet agent run --config /etc/flatnet/agent.yaml'
const cli = join(root, 'packages', 'cli', 'bin', 'flatnet.js')

const work = mkdtempSync(join(tmpdir(), 'fn-systemd-unit-'))
after(() => rmSync(work, { recursive: true, force: true }))

function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0
}

const analyzeSkip = has('systemd-analyze') ? false : 'systemd-analyze is not installed (Debian package systemd; scripts/setup.sh installs it)'

/** The unit with ExecStart pointing at this checkout, under its own name in a directory of its own. */
function runnableCopy(text = unitText) {
  const dir = mkdtempSync(join(work, 'unit-'))
  const file = join(dir, 'flatnet-agent.service')
  writeFileSync(file, text.replace(EXEC_START, `ExecStart=/usr/bin/env node ${cli} agent run --config /etc/flatnet/agent.yaml`))
  return file
}

function verify(file) {
  const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() }
}

/** [Section] -> key -> every value given, in order. */
function parseUnit(text) {
  const sections = new Map()
  let current
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    const section = /^\[(.+)\]$/.exec(line)
    if (section) {
      current = new Map()
      sections.set(section[1], current)
      continue
    }
    const eq = line.indexOf('=')
    const key = line.slice(0, eq)
    current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1)])
  }
  return sections
}

describe('systemd/flatnet-agent.service', () => {
  const service = parseUnit(unitText).get('Service')
  const one = (key) => {
    const values = service.get(key)
    assert.ok(values, `[Service] sets ${key}`)
    assert.equal(values.length, 1, `${key} is set once`)
    return values[0]
  }

  it('starts the installed CLI with the config file, as docs/install.md installs it', () => {
    assert.ok(unitText.split('\n').includes(EXEC_START))
    assert.match(readFileSync(join(root, 'docs', 'install.md'), 'utf8'), /ln -s \/opt\/flatnet\/packages\/cli\/bin\/flatnet\.js \/usr\/local\/bin\/flatnet/)
  })

  it('passes systemd-analyze verify without a single warning', { skip: analyzeSkip }, () => {
    const result = verify(runnableCopy())
    assert.equal(result.output, '', 'verify printed nothing')
    assert.equal(result.status, 0)
  })

  it('verify catches what it should: a missing ExecStart binary and a misspelt option (the check above is real)', { skip: analyzeSkip }, () => {
    const missing = join(mkdtempSync(join(work, 'unit-')), 'flatnet-agent.service')
    writeFileSync(missing, unitText.replace(EXEC_START, 'ExecStart=/nonexistent/flatnet agent'))
    const a = verify(missing)
    assert.notEqual(a.status, 0)
    assert.match(a.output, /Command \/nonexistent\/flatnet is not executable/)
    const b = verify(runnableCopy(unitText.replace('ProtectSystem=strict', 'ProtectSytem=strict')))
    assert.match(b.output, /Unknown key 'ProtectSytem'/)
  })

  it('has the lifecycle settings the agent relies on', () => {
    assert.equal(one('Type'), 'exec')
    assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID')
    assert.equal(one('KillSignal'), 'SIGTERM')
    assert.equal(one('KillMode'), 'mixed')
    assert.equal(one('TimeoutStopSec'), '30s')
    assert.equal(one('Restart'), 'on-failure')
    assert.equal(one('RestartPreventExitStatus'), '78', 'an invalid configuration (exit status 78) is not restarted')
    assert.equal(one('StateDirectory'), 'flatnet')
    assert.equal(one('StateDirectoryMode'), '0700')
    assert.deepEqual(one('RuntimeDirectory').split(/\s+/), ['flatnet', 'wireguard'])
    assert.equal(one('RuntimeDirectoryPreserve'), 'yes')
    assert.deepEqual(parseUnit(unitText).get('Install').get('WantedBy'), ['multi-user.target'])
  })

  it('has the hardening options, each with the value that keeps the agent working', () => {
    assert.equal(one('CapabilityBoundingSet'), 'CAP_NET_ADMIN CAP_SETUID CAP_SETGID')
    assert.equal(one('AmbientCapabilities'), 'CAP_NET_ADMIN CAP_SETUID CAP_SETGID')
    assert.equal(service.get('User'), undefined, 'runs as root, limited by the bounding set')
    const yes = ['NoNewPrivileges', 'ProtectHome', 'PrivateTmp', 'ProtectKernelTunables', 'ProtectKernelModules', 'ProtectKernelLogs', 'ProtectControlGroups', 'ProtectClock', 'ProtectHostname', 'RestrictNamespaces', 'LockPersonality', 'RestrictRealtime', 'RestrictSUIDSGID', 'PrivateIPC', 'PrivateMounts']
    for (const key of yes) assert.equal(one(key), 'yes', key)
    assert.equal(one('ProtectSystem'), 'strict')
    assert.equal(one('ProtectProc'), 'invisible')
    assert.equal(one('ReadWritePaths'), '/proc/sys/net', 'only network sysctls are writable (ip_forward)')
    assert.equal(one('DevicePolicy'), 'closed')
    assert.equal(one('DeviceAllow'), '/dev/net/tun rw')
    assert.deepEqual(one('RestrictAddressFamilies').split(/\s+/).sort(), ['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX'])
    assert.equal(one('SystemCallArchitectures'), 'native')
    assert.deepEqual(service.get('SystemCallFilter'), ['@system-service', '~@privileged'])
    assert.equal(one('SystemCallErrorNumber'), 'EPERM')
    assert.equal(one('UMask'), '0077')
    assert.equal(service.get('MemoryDenyWriteExecute'), undefined, 'V8 needs writable-then-executable memory')
    assert.equal(service.get('PrivateDevices'), undefined, 'it would hide /dev/net/tun')
    assert.match(unitText, /MemoryDenyWriteExecute= is deliberately NOT set/)
  })

  it('has an exposure score of at most 2.5 in systemd-analyze security', { skip: analyzeSkip }, () => {
    const out = execFileSync('systemd-analyze', ['security', '--offline=true', '--no-pager', runnableCopy()], { encoding: 'utf8', timeout: 60_000 })
    const score = Number(/Overall exposure level for flatnet-agent\.service: ([0-9.]+)/.exec(out)?.[1])
    assert.ok(score <= 2.5, `exposure ${score}`)
  })
})

// --- The sandbox, for real ----------------------------------------------------------------

/**
 * Runs as the unit's main process: one `ok NAME` or `fail NAME: why` line per check. Every check
 * runs in the network namespace the test made, so what it changes (ip_forward, a TUN device,
 * an nftables table) is gone with that namespace.
 */
const PROBE = String.raw`#!/bin/sh
check() { name=$1; shift; if out=$("$@" 2>&1); then echo "ok $name"; else echo "fail $name: $(echo "$out" | tail -n 3 | tr '\n' ' ')"; fi; }
refused() { name=$1; want=$2; shift 2; if out=$("$@" 2>&1); then echo "fail $name: allowed"; elif echo "$out" | grep -qi "$want"; then echo "ok $name"; else echo "fail $name: refused for another reason: $out"; fi; }
check only-cap-net-admin sh -c 'grep -q "^CapEff:	00000000000010c0$" /proc/self/status || { grep ^Cap /proc/self/status; exit 1; }'
check flow-log-reader sh -c 'timeout 2 tcpdump -i nflog:77 -U -w - >/dev/null 2>"$STATE_DIRECTORY/tcpdump.log"; grep -q "listening on nflog:77" "$STATE_DIRECTORY/tcpdump.log" || cat "$STATE_DIRECTORY/tcpdump.log"'
check node-jit node -e 'let s = 0; for (let i = 0; i < 1e6; i++) s += i; if (s <= 0) process.exit(1)'
check ip-forward sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward && test "$(cat /proc/sys/net/ipv4/ip_forward)" = 1'
check ipv6-forwarding sh -c 'echo 1 > /proc/sys/net/ipv6/conf/all/forwarding'
refused kernel-sysctl-read-only 'Read-only file system' sh -c 'echo flatnet > /proc/sys/kernel/domainname'
refused etc-read-only 'Read-only file system' touch /etc/fn-probe
refused usr-read-only 'Read-only file system' touch /usr/local/fn-probe
check state-dir sh -c 'touch "$STATE_DIRECTORY/probe" && test "$(stat -c %a "$STATE_DIRECTORY")" = 700'
check runtime-dirs touch /run/flatnet/probe /run/wireguard/probe
check tun ip tuntap add fnprobe0 mode tun
check routes sh -c 'ip link set fnprobe0 up && ip addr add 10.99.0.1/24 dev fnprobe0 && ip route add 10.98.0.0/24 dev fnprobe0'
check nftables sh -c 'nft add table inet fnprobe && nft list tables | grep -q fnprobe'
check conntrack conntrack -L
refused no-new-namespaces 'Operation not permitted' unshare -n true
refused no-mount 'permission denied' mount -t tmpfs none /mnt
check embedded-redis node --input-type=module -e '
  const s = await import(process.env.FN_REPO + "/packages/store/dist/src/index.js")
  const r = await s.startEmbeddedRedis({ stateDir: process.env.STATE_DIRECTORY })
  const c = s.connectRedis(r.url)
  await c.set("probe", "1")
  const v = await c.get("probe")
  c.disconnect()
  await r.stop()
  if (v !== "1") process.exit(1)'
sockwait() { i=0; while [ ! -S "/run/wireguard/$1.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; }
check kernel-backend-wireguard-go sh -c 'wireguard-go fnwg2 && i=0; while [ ! -S /run/wireguard/fnwg2.sock ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; wg genkey > "$STATE_DIRECTORY/k" && wg set fnwg2 listen-port 52000 private-key "$STATE_DIRECTORY/k" && wg show fnwg2 | grep -q "listening port: 52000"; r=$?; ip link del fnwg2; exit $r'
printf '[Interface]\nPrivateKey = %s\nAddress = 10.97.0.1/24\nListenPort = 51999\n' "$(wg genkey)" > "$STATE_DIRECTORY/fnwg1.conf"
node "$FN_REPO/packages/cli/bin/flatnet.js" wg up "$STATE_DIRECTORY/fnwg1.conf" > "$STATE_DIRECTORY/wg-up.log" 2>&1 &
wgpid=$!
sockwait fnwg1
check userspace-backend sh -c 'wg show fnwg1 | grep -q "listening port: 51999" && ip addr show fnwg1 | grep -q 10.97.0.1 || { cat "$STATE_DIRECTORY/wg-up.log"; exit 1; }'
kill $wgpid
wait $wgpid
echo done
`

const PROBE_CHECKS = [
  'only-cap-net-admin', 'flow-log-reader', 'node-jit', 'ip-forward', 'ipv6-forwarding', 'kernel-sysctl-read-only', 'etc-read-only', 'usr-read-only', 'state-dir', 'runtime-dirs', 'tun', 'routes', 'nftables', 'conntrack', 'no-new-namespaces', 'no-mount', 'embedded-redis', 'kernel-backend-wireguard-go', 'userspace-backend',
]

// PID 1 of the private namespaces: the copied units and the probe go into a private /run, its
// log into a file bound over /dev/console, and cgroup2 is mounted for it to manage.
const BOOT = String.raw`#!/bin/sh
set -e
W=$1
mount -t proc proc /proc
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/system
cp "$W"/units/* /run/systemd/system/
cp "$W/probe.sh" /run/fn-probe.sh
touch "$W/systemd.log"
mount --bind "$W/systemd.log" /dev/console
mount -t cgroup2 none /sys/fs/cgroup
export container=flatnet-test
exec /lib/systemd/systemd --system --unit=fn-probe.target --log-target=console --log-level=info --show-status=no
`

function sandboxSkip() {
  if (process.getuid?.() !== 0) return 'needs root: boots systemd as PID 1 in new namespaces'
  if (!existsSync('/lib/systemd/systemd')) return 'systemd is not installed'
  if (!readFileSync('/proc/filesystems', 'utf8').includes('cgroup2')) return 'the kernel has no cgroup2'
  for (const cmd of ['unshare', 'ip', 'nft', 'conntrack', 'wg', 'wireguard-go', 'redis-server']) if (!has(cmd)) return `${cmd} is not installed`
  if (!existsSync('/dev/net/tun')) return 'needs /dev/net/tun'
  if (!existsSync(join(root, 'packages', 'store', 'dist', 'src', 'index.js'))) return 'flatnet is not built (npm run setup)'
  return false
}

/** Every cgroup directory under `dir`, deepest first. */
function cgroupDirs(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .flatMap((e) => [...cgroupDirs(join(dir, e.name)), join(dir, e.name)])
}

/** The probe's copy of the unit: the real settings; only what ties it to a booted host differs. */
function probeUnit(text, { stateDirectory, out }) {
  let unit = text
    .replace(/^(Wants|After)=.*\n/gm, '') // network-online.target would pull in the host's network setup
    .replace('[Unit]\n', '[Unit]\nDefaultDependencies=no\n') // no sysinit.target: no udev, sysctl, tmpfiles
    .replace(EXEC_START, 'ExecStart=/bin/sh /run/fn-probe.sh')
    .replace(/^StateDirectory=.*$/m, `StateDirectory=${stateDirectory}`) // not the host's /var/lib/flatnet
    .replace(/^Restart=.*$/m, 'Restart=no')
  // The checkout may sit under /tmp (a fresh CI clone), which PrivateTmp hides: bind it in.
  unit = unit.replace('[Service]\n', `[Service]\nEnvironment=FN_REPO=${root.replace(/\/$/, '')}\nBindReadOnlyPaths=${root.replace(/\/$/, '')}\nStandardOutput=file:${out}\nStandardError=file:${out}.err\n`)
  return unit
}

describe('the unit sandbox, under a real systemd', () => {
  it('lets the agent do its work (nftables, conntrack, TUN, routes, ip_forward, Redis, WireGuard) and nothing it should not', { skip: sandboxSkip(), timeout: 120_000 }, async () => {
    const w = mkdtempSync(join(work, 'boot-'))
    const id = `fn-sdu-${process.pid}`
    const stateDirectory = `${id}-state`
    mkdirSync(join(w, 'units'))
    writeFileSync(join(w, 'units', 'fn-probe.service'), probeUnit(unitText, { stateDirectory, out: join(w, 'out') }))
    writeFileSync(join(w, 'units', 'fn-probe.target'), '[Unit]\nDefaultDependencies=no\nWants=fn-probe.service\n')
    writeFileSync(join(w, 'probe.sh'), PROBE)
    writeFileSync(join(w, 'boot.sh'), BOOT)

    // The cgroup2 hierarchy is shared with the host: remember what is there, so that only the
    // groups this systemd makes (init.scope, system.slice and below) are removed afterwards.
    const cg = join(w, 'cgroup2')
    mkdirSync(cg)
    execFileSync('mount', ['-t', 'cgroup2', 'none', cg])
    const before = new Set(cgroupDirs(cg))
    let outer
    let exited = Promise.resolve()
    try {
      execFileSync('ip', ['netns', 'add', id])
      // `ip netns exec` becomes `unshare`, whose forked child is PID 1 (systemd) of the new namespaces.
      outer = spawn('ip', ['netns', 'exec', id, 'unshare', '--pid', '--fork', '--mount', '--uts', '--ipc', '--cgroup', '--propagation', 'private', 'sh', join(w, 'boot.sh'), w], { stdio: 'ignore' })
      exited = new Promise((resolve) => outer.once('exit', resolve))
      const out = join(w, 'out')
      const deadline = Date.now() + 90_000
      while (!(existsSync(out) && /^done$/m.test(readFileSync(out, 'utf8')))) {
        if (Date.now() > deadline) {
          const log = existsSync(join(w, 'systemd.log')) ? readFileSync(join(w, 'systemd.log'), 'utf8').slice(-3000) : ''
          assert.fail(`the probe did not finish within 90 s; output so far:\n${existsSync(out) ? readFileSync(out, 'utf8') : '(none)'}\nsystemd:\n${log}`)
        }
        await new Promise((r) => setTimeout(r, 200))
      }
      const lines = readFileSync(out, 'utf8').split('\n').filter((l) => l !== '' && l !== 'done')
      assert.deepEqual(lines, PROBE_CHECKS.map((c) => `ok ${c}`))
    } finally {
      if (outer?.pid !== undefined) {
        // SIGKILL to PID 1 of the namespace ends every process in it.
        const children = spawnSync('ps', ['-o', 'pid=', '--ppid', String(outer.pid)], { encoding: 'utf8' }).stdout.trim().split(/\s+/).filter(Boolean)
        for (const pid of children) process.kill(Number(pid), 'SIGKILL')
        if (children.length === 0) outer.kill('SIGKILL')
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))])
      }
      spawnSync('ip', ['netns', 'del', id])
      const ours = (dir) => ['init.scope', 'system.slice'].some((top) => dir === join(cg, top) || dir.startsWith(join(cg, top) + '/'))
      for (const dir of cgroupDirs(cg)) if (!before.has(dir) && ours(dir)) spawnSync('rmdir', [dir])
      spawnSync('umount', [cg])
      rmSync(join('/var/lib', stateDirectory), { recursive: true, force: true })
    }
  })
})
