/**
 * Installs the plugin on a host, as `flatnet cni install` and the DaemonSet's init container do:
 *
 *   <binDir>/flatnet                    the executable the runtime runs (type "flatnet"): the
 *                                       native front end (native/flatnet-cni-shim.c), which hands
 *                                       each call to the agent and starts in about a millisecond;
 *                                       without it (not built, `native: false`) the Node plugin
 *   <binDir>/flatnet-js                 the Node plugin: what the front end runs when the agent
 *                                       cannot take the call (it is down: the plugin then answers
 *                                       with the spec's error), and what `flatnet` is without it
 *   <binDir>/flatnet.cjs                the plugin, bundled into one file (esbuild): the plugin,
 *                                       @flatnet/core and the agent's client, nothing else
 *   <confDir>/10-flatnet.conflist       the network
 *
 * The bundle makes the host independent of this checkout: a DaemonSet copies it from its image
 * into the host's /opt/cni/bin, where only Node is needed (its path on the host is the `#!`
 * line; `copyNode` puts this Node beside the plugin as `flatnet-node`). Each file is written to
 * a temporary name and renamed, so a runtime never runs a half-written plugin; running the
 * install again replaces the same files.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { FlatnetError, InvalidArgumentError } from '@flatnet/core'
import { CURRENT_VERSION, isSupportedVersion } from './versions.js'
import { NET_CONFIG_DEFAULTS, readNetConfig } from './net-config.js'

export const CNI_INSTALL_DEFAULTS = Object.freeze({
  binDir: '/opt/cni/bin',
  confDir: '/etc/cni/net.d',
  /** The plugin type, hence the executable's name. */
  type: 'flatnet',
  network: 'flatnet',
  /** Runtimes use the first conflist by name; 10 puts flatnet ahead of most defaults (87-podman, 99-loopback). */
  priority: 10,
  /** What libcni before 1.2 (podman 4, containerd 1.7) understands; newer runtimes pick from `cniVersions`. */
  cniVersion: '1.0.0',
  cniVersions: ['0.4.0', '1.0.0', CURRENT_VERSION] as readonly string[],
})

/** Installing the plugin failed: a directory not writable, a module the plugin may not carry. */
export class CniInstallError extends FlatnetError {
  readonly code = 'ERR_CNI_INSTALL'
}

export interface CniInstallOptions {
  readonly binDir?: string | undefined
  readonly confDir?: string | undefined
  readonly agentSocket?: string | undefined
  readonly network?: string | undefined
  /** Outside Kubernetes: the namespace and labels of every container on this network. */
  readonly namespace?: string | undefined
  readonly labels?: Readonly<Record<string, string>> | undefined
  readonly cniVersion?: string | undefined
  readonly priority?: number | undefined
  /** The Node the plugin runs with, as the host sees it; default this Node (or the copied one). */
  readonly nodePath?: string | undefined
  /** Copy this Node into binDir as `flatnet-node` (for hosts without Node). */
  readonly copyNode?: boolean | undefined
  /**
   * Install the native front end as `flatnet` (default: when it is built). `true` makes a
   * missing front end an error; `false` installs the Node plugin as `flatnet`.
   */
  readonly native?: boolean | undefined
}

export interface CniInstallResult {
  /** What the runtime runs: the native front end, or the Node plugin. */
  readonly plugin: string
  /** The Node plugin (the same file as `plugin` without the front end). */
  readonly nodePlugin: string
  readonly native: boolean
  /** The bundled plugin the executable loads. */
  readonly codeFile: string
  readonly conflist: string
  readonly bytes: number
  readonly nodePath: string
}

/** The conflist `flatnet cni install` writes. Pure. */
export function flatnetConflist(options: Pick<CniInstallOptions, 'agentSocket' | 'network' | 'namespace' | 'labels' | 'cniVersion'> = {}): Record<string, unknown> {
  const cniVersion = options.cniVersion ?? CNI_INSTALL_DEFAULTS.cniVersion
  if (!isSupportedVersion(cniVersion)) throw new InvalidArgumentError(`cniVersion ${JSON.stringify(cniVersion)} is not one the plugin speaks`)
  const plugin: Record<string, unknown> = { type: CNI_INSTALL_DEFAULTS.type, agentSocket: options.agentSocket ?? NET_CONFIG_DEFAULTS.agentSocket }
  if (options.namespace !== undefined) plugin.namespace = options.namespace
  if (options.labels !== undefined && Object.keys(options.labels).length > 0) plugin.labels = { ...options.labels }
  const name = options.network ?? CNI_INSTALL_DEFAULTS.network
  // The same checks the plugin makes on every call, made once here.
  readNetConfig({ cniVersion, name, ...plugin }, { needsName: true })
  return {
    cniVersion,
    // A version asked for is the one used; by default newer runtimes take the highest they know.
    ...(options.cniVersion === undefined ? { cniVersions: [...CNI_INSTALL_DEFAULTS.cniVersions] } : {}),
    name,
    plugins: [plugin],
  }
}

function writeAtomic(file: string, content: string | Buffer, mode: number): void {
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, content, { mode })
  chmodSync(tmp, mode)
  renameSync(tmp, file)
}

/** The native front end as `npm run setup` builds it (packages/cni/native/build). */
export function nativeFrontEnd(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', 'build', 'flatnet-cni-shim')
}

/** The plugin's own entry module (dist/src/main.js), found from this file. */
export function pluginEntry(): string {
  return join(dirname(fileURLToPath(import.meta.url)), 'main.js')
}

/**
 * The plugin as one CommonJS file: its module graph (the plugin, @flatnet/core, the agent's
 * client) bundled by esbuild, with nothing else. One file loads in about half the time of the
 * module graph it replaces, and needs nothing beside it but Node.
 */
export async function bundlePlugin(): Promise<string> {
  const entry = pluginEntry()
  if (!existsSync(entry)) throw new CniInstallError(`${entry} is missing; build flatnet first (npm run setup)`)
  // Loaded here only: the installer needs esbuild, the plugin does not.
  const { build } = await import('esbuild')
  const result = await build({
    stdin: { contents: `import { main } from './main.js'\nmain().then((code) => process.exit(code))\n`, resolveDir: dirname(entry), sourcefile: 'flatnet-cni-entry.js' },
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    write: false,
    metafile: true,
    legalComments: 'none',
    logLevel: 'silent',
  })
  const foreign = Object.keys(result.metafile.inputs).filter((f) => f.includes('node_modules/') && !f.includes('node_modules/@flatnet/'))
  if (foreign.length > 0) throw new CniInstallError(`the plugin may only use flatnet's own packages and Node's built-ins, but bundles ${foreign.join(', ')}`)
  const code = result.outputFiles[0]?.text
  if (!code) throw new CniInstallError('esbuild produced no output for the plugin')
  return `// flatnet CNI plugin, bundled by \`flatnet cni install\` from @flatnet/cni, @flatnet/core and @flatnet/agent/client.\n${code}`
}

export async function installCniPlugin(options: CniInstallOptions = {}): Promise<CniInstallResult> {
  const binDir = resolve(options.binDir ?? CNI_INSTALL_DEFAULTS.binDir)
  const confDir = resolve(options.confDir ?? CNI_INSTALL_DEFAULTS.confDir)
  const priority = options.priority ?? CNI_INSTALL_DEFAULTS.priority
  if (!Number.isInteger(priority) || priority < 0 || priority > 99) throw new InvalidArgumentError(`priority ${priority} must be 0 to 99 (the conflist's file name starts with it)`)
  const conflist = flatnetConflist(options)
  const nodePath = options.nodePath ?? (options.copyNode ? join(binDir, 'flatnet-node') : process.execPath)
  if (!nodePath.startsWith('/') || /\s/.test(nodePath)) throw new InvalidArgumentError(`node path ${JSON.stringify(nodePath)} must be absolute and without white space (it is the plugin's #! line)`)
  const frontEnd = nativeFrontEnd()
  const native = options.native ?? existsSync(frontEnd)
  if (native && !existsSync(frontEnd)) throw new CniInstallError(`the native front end ${frontEnd} is not built; run \`npm run setup\` (it needs a C compiler), or install without it`)
  const bundle = await bundlePlugin()
  try {
    mkdirSync(binDir, { recursive: true, mode: 0o755 })
    mkdirSync(confDir, { recursive: true, mode: 0o755 })
    if (options.copyNode) writeAtomic(join(binDir, 'flatnet-node'), readFileSync(process.execPath), 0o755)
    const codeFile = join(binDir, `${CNI_INSTALL_DEFAULTS.type}.cjs`)
    writeAtomic(codeFile, bundle, 0o644)
    // Works whether Node takes this extensionless file for CommonJS or for an ES module.
    const nodePlugin = join(binDir, native ? `${CNI_INSTALL_DEFAULTS.type}-js` : CNI_INSTALL_DEFAULTS.type)
    writeAtomic(
      nodePlugin,
      [
        `#!${nodePath}`,
        '// flatnet CNI plugin (type "flatnet"), written by `flatnet cni install`; its code is flatnet.cjs beside this file.',
        "process.getBuiltinModule('node:module').createRequire(process.argv[1])('./flatnet.cjs')",
        '',
      ].join('\n'),
      0o755,
    )
    const plugin = join(binDir, CNI_INSTALL_DEFAULTS.type)
    // Last, so that a runtime never finds a front end without the Node plugin it falls back to.
    if (native) writeAtomic(plugin, readFileSync(frontEnd), 0o755)
    const conflistFile = join(confDir, `${String(priority).padStart(2, '0')}-${conflist.name as string}.conflist`)
    writeAtomic(conflistFile, `${JSON.stringify(conflist, null, 2)}\n`, 0o644)
    return { plugin, nodePlugin, native, codeFile, conflist: conflistFile, bytes: Buffer.byteLength(bundle), nodePath }
  } catch (err) {
    if (err instanceof FlatnetError) throw err
    const e = err as NodeJS.ErrnoException
    throw new CniInstallError(`cannot install the CNI plugin: ${e.code ? `${e.code}: ` : ''}${e.message}`)
  }
}
