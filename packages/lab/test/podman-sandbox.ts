/**
 * podman with a configuration, storage and runtime state of its own (CONTAINERS_CONF, --root,
 * --runroot, --tmpdir in one directory), run inside a network namespace: the machine's podman
 * setup is neither read nor changed. Containers start from a busybox root filesystem
 * (`podman run --rootfs`), so no image registry is needed. Used by cni-podman.test.ts and by
 * bench/cni (from the built file).
 */
import { execFile } from 'node:child_process'
import { chmodSync, copyFileSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export const BUSYBOX = '/bin/busybox'

/** Why podman cannot run here, or undefined. */
export function podmanMissing(): string | undefined {
  for (const tool of ['/usr/bin/podman', '/usr/sbin/runc', BUSYBOX]) if (!existsSync(tool)) return `needs ${tool} (scripts/setup.sh installs podman, runc and busybox-static)`
  return undefined
}

export interface Run {
  code: number
  stdout: string
  stderr: string
}

export function exec(cmd: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 60_000, killSignal: 'SIGKILL', maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0, stdout: String(stdout), stderr: String(stderr) })
    })
  })
}

/** A busybox root filesystem: the static busybox and a link for each applet. */
function busyboxRootfs(dir: string): void {
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'run']) mkdirSync(join(dir, d), { recursive: true })
  copyFileSync(BUSYBOX, join(dir, 'bin', 'busybox'))
  chmodSync(join(dir, 'bin', 'busybox'), 0o755)
  for (const applet of ['sh', 'nc', 'ip', 'sleep', 'cat', 'echo', 'true']) symlinkSync('busybox', join(dir, 'bin', applet))
  writeFileSync(join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/:/bin/sh\n')
  // Answers one line per connection, as the lab's endpoints do: `<name> 8080/TCP`.
  writeFileSync(join(dir, 'bin', 'serve'), '#!/bin/sh\necho "$ANSWER 8080/TCP"\n', { mode: 0o755 })
}

/** podman with a configuration, storage and runtime state of its own, run in a host's network namespace. */
export class PodmanSandbox {
  readonly rootfs: string
  readonly cniBin: string
  readonly netDir: string
  private readonly conf: string

  constructor(
    readonly dir: string,
    private readonly netns: string,
  ) {
    this.rootfs = join(dir, 'rootfs')
    this.cniBin = join(dir, 'cni-bin')
    this.netDir = join(dir, 'net.d')
    this.conf = join(dir, 'containers.conf')
    for (const d of [this.cniBin, this.netDir, join(dir, 'tmp')]) mkdirSync(d, { recursive: true })
    busyboxRootfs(this.rootfs)
    writeFileSync(
      this.conf,
      [
        '# podman configuration of flatnet\'s CNI test (CONTAINERS_CONF); the machine\'s is not used.',
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

  podman(args: readonly string[], timeoutMs = 60_000): Promise<Run> {
    const base = ['--root', join(this.dir, 'storage'), '--runroot', join(this.dir, 'run'), '--tmpdir', join(this.dir, 'tmp'), '--storage-driver', 'vfs']
    return exec('nsenter', [`--net=/run/netns/${this.netns}`, 'podman', ...base, ...args], { env: { ...process.env, CONTAINERS_CONF: this.conf }, timeoutMs })
  }

  /** `podman run` of the busybox root filesystem. */
  run(options: readonly string[], command: string, timeoutMs?: number): Promise<Run> {
    return this.podman(['run', ...options, '--rootfs', this.rootfs, '/bin/sh', '-c', command], timeoutMs)
  }

  async cleanup(): Promise<void> {
    await this.podman(['rm', '--all', '--force', '--time', '0'], 120_000)
  }
}
