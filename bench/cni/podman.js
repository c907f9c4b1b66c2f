// podman with a configuration, storage and runtime state of its own (CONTAINERS_CONF, --root,
// --runroot, --tmpdir in one directory), run inside a network namespace: the machine's podman
// setup is neither read nor changed. Containers start from a busybox root filesystem
// (`podman run --rootfs`), so no image registry is needed. The same setup as
// packages/lab/test/cni-podman.test.ts.
import { execFile } from 'node:child_process'
import { chmodSync, copyFileSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export const BUSYBOX = '/bin/busybox'

/** Why podman cannot run here, or undefined. */
export function podmanMissing() {
  for (const tool of ['/usr/bin/podman', '/usr/sbin/runc', BUSYBOX]) if (!existsSync(tool)) return `${tool} is missing (scripts/setup.sh installs podman, runc and busybox-static)`
  return undefined
}

export function exec(cmd, args, { env = process.env, timeoutMs = 60_000 } = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) })
    })
  })
}

export class PodmanSandbox {
  constructor(dir, netns) {
    this.dir = dir
    this.netns = netns
    this.rootfs = join(dir, 'rootfs')
    this.cniBin = join(dir, 'cni-bin')
    this.netDir = join(dir, 'net.d')
    this.conf = join(dir, 'containers.conf')
    for (const d of [this.cniBin, this.netDir, join(dir, 'tmp'), join(this.rootfs, 'bin')]) mkdirSync(d, { recursive: true })
    for (const d of ['etc', 'proc', 'sys', 'dev', 'tmp', 'run']) mkdirSync(join(this.rootfs, d), { recursive: true })
    copyFileSync(BUSYBOX, join(this.rootfs, 'bin', 'busybox'))
    chmodSync(join(this.rootfs, 'bin', 'busybox'), 0o755)
    for (const applet of ['sh', 'true', 'ip', 'nc', 'sleep']) symlinkSync('busybox', join(this.rootfs, 'bin', applet))
    writeFileSync(
      this.conf,
      [
        '[containers]',
        '# No rlimits for containers: raising them needs CAP_SYS_RESOURCE, which a sandbox may lack.',
        'default_ulimits = []',
        '[network]',
        'network_backend = "cni"',
        `cni_plugin_dirs = ["${this.cniBin}", "/usr/lib/cni"]`,
        `network_config_dir = "${this.netDir}"`,
        '[engine]',
        'runtime = "runc"',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        `events_logfile_path = "${join(dir, 'events.log')}"`,
        '',
      ].join('\n'),
    )
  }

  podman(args, timeoutMs = 60_000) {
    const base = ['--root', join(this.dir, 'storage'), '--runroot', join(this.dir, 'run'), '--tmpdir', join(this.dir, 'tmp'), '--storage-driver', 'vfs']
    return exec('nsenter', [`--net=/run/netns/${this.netns}`, 'podman', ...base, ...args], { env: { ...process.env, CONTAINERS_CONF: this.conf }, timeoutMs })
  }

  async cleanup() {
    await this.podman(['rm', '--all', '--force', '--time', '0'], 120_000)
  }
}
