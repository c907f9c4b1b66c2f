/**
 * The `flatnet-cni` process as a runtime runs it, without an agent: what it answers to bad
 * input, missing variables, unknown commands and an agent that is not there, and the plugin as
 * `flatnet cni install` puts it on a host.
 */
import assert from 'node:assert/strict'
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { CNI_EXEC_PATH, installCniPlugin, NET_CONFIG_DEFAULTS, STDIN_DEFAULTS, SUPPORTED_VERSIONS } from '../src/index.js'
import { FLATNET, PLUGIN, repoRoot, runPlugin, sh } from './helpers.js'

const NO_AGENT = '/nonexistent/flatnet-test/agent.sock'
const config = (over: Record<string, unknown> = {}): string => JSON.stringify({ cniVersion: '1.1.0', name: 'flatnet', type: 'flatnet', agentSocket: NO_AGENT, ...over })
const addEnv = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c0ffee', CNI_NETNS: '/run/netns/fn-cni-none', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' }

function assertError(r: Awaited<ReturnType<typeof runPlugin>>, code: number, msg?: RegExp, version = '1.1.0'): void {
  assert.equal(r.code, 1, `exit status; stdout ${r.stdout} stderr ${r.stderr}`)
  assert.ok(r.json, `error JSON on stdout, got ${JSON.stringify(r.stdout)}`)
  assert.equal(r.json.code, code, r.stdout)
  assert.equal(r.json.cniVersion, version, r.stdout)
  assert.equal(typeof r.json.msg, 'string')
  if (msg) assert.match(r.json.msg as string, msg)
}

/**
 * Both forms a runtime may run answer alike: the Node plugin (the workspace's `flatnet-cni`), and
 * the native front end as installed, which without an agent hands every call to the Node plugin
 * beside it (flatnet-js) with the same standard input.
 */
const installDir = mkdtempSync(join(tmpdir(), 'fn-cni-binary-'))
after(() => rmSync(installDir, { recursive: true, force: true }))
const installed = installCniPlugin({ binDir: join(installDir, 'bin'), confDir: join(installDir, 'net.d'), agentSocket: NO_AGENT, native: true })
const FORMS: readonly [string, () => Promise<string[]>][] = [
  ['the Node plugin', () => Promise.resolve([process.execPath, PLUGIN])],
  ['the native front end', async () => [(await installed).plugin]],
]

for (const [form, programOf] of FORMS) {
  describe(`flatnet-cni without an agent: ${form}`, () => {
    const run = async (env: Readonly<Record<string, string | undefined>>, stdin: string | Buffer | null, timeoutMs?: number) => runPlugin(env, stdin, await programOf(), timeoutMs)

    it('answers VERSION in the version it was given, listing every version it speaks', async () => {
      for (const v of ['0.4.0', '1.0.0', '1.1.0']) {
        const r = await run({ CNI_COMMAND: 'VERSION' }, JSON.stringify({ cniVersion: v }))
        assert.equal(r.code, 0, r.stderr)
        assert.deepEqual(r.json, { cniVersion: v, supportedVersions: [...SUPPORTED_VERSIONS] })
      }
      const bare = await run({ CNI_COMMAND: 'VERSION' }, '')
      assert.equal(bare.json?.cniVersion, '1.1.0')
    })

    it('answers garbage and truncated input with code 6, an oversized one with code 5; exit 1', async () => {
      assertError(await run(addEnv, 'this is not json'), 6, /not valid JSON/)
      assertError(await run(addEnv, config().slice(0, 30)), 6)
      assertError(await run(addEnv, '[1,2]'), 6, /JSON object/)
      assertError(await run(addEnv, ''), 6, /no network configuration/)
      assertError(await run(addEnv, Buffer.alloc(5 * 1024 * 1024, 0x20)), 5, /larger than/)
    })

    it('answers errors in the cniVersion of the request', async () => {
      assertError(await run({ ...addEnv, CNI_IFNAME: undefined }, config({ cniVersion: '0.4.0' })), 4, /CNI_IFNAME/, '0.4.0')
    })

    it('names the missing variables and refuses an unknown command with code 4', async () => {
      assertError(await run({ CNI_COMMAND: 'ADD' }, config()), 4, /CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME/)
      assertError(await run({ CNI_COMMAND: 'CHECK', CNI_CONTAINERID: 'c', CNI_IFNAME: 'eth0' }, config()), 4, /CNI_NETNS/)
      assertError(await run({ CNI_COMMAND: 'FROB' }, config()), 4, /unknown CNI_COMMAND/)
      assertError(await run({}, config()), 4, /CNI_COMMAND/)
    })

    it('refuses an unsupported version (1), an unknown field (2), a bad config (7)', async () => {
      assertError(await run(addEnv, config({ cniVersion: '9.9.9' })), 1, /incompatible CNI versions/)
      assertError(await run({ ...addEnv, CNI_COMMAND: 'CHECK' }, config({ cniVersion: '0.3.1' })), 1, /CHECK/, '0.3.1')
      assertError(await run({ CNI_COMMAND: 'GC' }, config({ cniVersion: '1.0.0', 'cni.dev/valid-attachments': [] })), 1, /GC/, '1.0.0')
      assertError(await run(addEnv, config({ bridge: 'cni0' })), 2, /bridge="cni0"/)
      assertError(await run(addEnv, config({ namespace: 'Not_A_Label' })), 7, /namespace/)
    })

    it('reports an agent that is not there: try again later (11) for ADD, DEL, CHECK and GC; not available (50) for STATUS', async () => {
      assertError(await run(addEnv, config()), 11, /not reachable/)
      assertError(await run({ ...addEnv, CNI_COMMAND: 'DEL', CNI_NETNS: undefined }, config()), 11)
      assertError(await run({ ...addEnv, CNI_COMMAND: 'CHECK' }, config()), 11)
      assertError(await run({ CNI_COMMAND: 'GC' }, config({ 'cni.dev/valid-attachments': [] })), 11)
      assertError(await run({ CNI_COMMAND: 'STATUS' }, config()), 50, /not reachable/)
    })

    it('refuses GC without cni.dev/valid-attachments rather than treating every attachment as stale', async () => {
      assertError(await run({ CNI_COMMAND: 'GC' }, config()), 7, /valid-attachments/)
    })

    it('gives up on a standard input that never ends', { timeout: 30_000 }, async () => {
      const r = await run(addEnv, null, 20_000)
      assertError(r, 5, /did not end/)
    })

    it('starts fast enough for a runtime: VERSION, process start included', async () => {
      const times: number[] = []
      for (let i = 0; i < 5; i++) times.push((await run({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}')).ms)
      times.sort((a, b) => a - b)
      // Generous: the machine is shared; bench/cni reports the real figures.
      assert.ok((times[2] as number) < 1_000, `median VERSION ${times[2]} ms`)
    })
  })
}

describe('the native front end', () => {
  it('keeps the plugin\'s protocol constants: default socket, standard input bound and timeout, exec path', () => {
    const source = readFileSync(join(repoRoot(), 'packages', 'cni', 'native', 'flatnet-cni-shim.c'), 'utf8')
    const define = (name: string): string => new RegExp(`#define ${name} (.+)`).exec(source)?.[1]?.trim() ?? ''
    assert.equal(define('DEFAULT_AGENT_SOCKET'), JSON.stringify(NET_CONFIG_DEFAULTS.agentSocket))
    assert.equal(define('EXEC_PATH'), JSON.stringify(CNI_EXEC_PATH))
    assert.equal(define('STDIN_MAX_BYTES'), '(4 * 1024 * 1024)')
    assert.equal(STDIN_DEFAULTS.maxBytes, 4 * 1024 * 1024)
    assert.equal(define('STDIN_TIMEOUT_MS'), String(STDIN_DEFAULTS.timeoutMs))
  })

  it('installs the Node plugin as the executable with native: false, and the ELF front end with flatnet-js beside it with native: true', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fn-cni-install-'))
    try {
      const r = await installCniPlugin({ binDir: join(dir, 'bin'), confDir: join(dir, 'net.d'), agentSocket: NO_AGENT, native: false })
      assert.equal(r.native, false)
      assert.equal(r.nodePlugin, r.plugin)
      assert.match(readFileSync(r.plugin, 'utf8'), /^#!\//)
      assert.ok(!existsSync(join(dir, 'bin', 'flatnet-js')))
      const n = await installCniPlugin({ binDir: join(dir, 'bin2'), confDir: join(dir, 'net.d'), agentSocket: NO_AGENT, native: true })
      assert.equal(readFileSync(n.plugin).subarray(0, 4).toString('latin1'), '\x7fELF')
      assert.equal(n.nodePlugin, join(dir, 'bin2', 'flatnet-js'))
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('flatnet cni install', () => {
  const dirs: string[] = []
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })

  it('writes the plugin and a conflist; the installed plugin runs anywhere, without the repository', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fn-cni-install-'))
    dirs.push(dir)
    const r = await installCniPlugin({ binDir: join(dir, 'bin'), confDir: join(dir, 'net.d'), agentSocket: NO_AGENT, labels: { app: 'web' }, namespace: 'demo' })
    assert.equal(r.plugin, join(dir, 'bin', 'flatnet'))
    assert.ok(statSync(r.plugin).mode & 0o100, 'executable')
    const conflist = JSON.parse(readFileSync(r.conflist, 'utf8')) as { cniVersion: string; cniVersions: string[]; name: string; plugins: Record<string, unknown>[] }
    assert.equal(r.conflist, join(dir, 'net.d', '10-flatnet.conflist'))
    assert.deepEqual(conflist, { cniVersion: '1.0.0', cniVersions: ['0.4.0', '1.0.0', '1.1.0'], name: 'flatnet', plugins: [{ type: 'flatnet', agentSocket: NO_AGENT, namespace: 'demo', labels: { app: 'web' } }] })
    assert.equal(r.codeFile, join(dir, 'bin', 'flatnet.cjs'))

    // As a DaemonSet copies it: the files alone, somewhere else, far from any node_modules.
    const elsewhere = join(dir, 'host', 'opt', 'cni', 'bin')
    mkdirSync(elsewhere, { recursive: true })
    for (const f of ['flatnet', 'flatnet-js', 'flatnet.cjs']) {
      copyFileSync(join(dir, 'bin', f), join(elsewhere, f))
      chmodSync(join(elsewhere, f), 0o755)
    }
    const moved = await runPlugin({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}', [join(elsewhere, 'flatnet')])
    assert.equal(moved.code, 0, moved.stderr)
    assert.equal(moved.json?.cniVersion, '1.0.0')

    const v = await runPlugin({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"0.4.0"}', [r.plugin])
    assert.equal(v.code, 0, v.stderr)
    assert.equal(v.json?.cniVersion, '0.4.0')
    const add = await runPlugin(addEnv, JSON.stringify({ ...conflist.plugins[0], cniVersion: '1.0.0', name: 'flatnet' }), [r.plugin])
    assertError(add, 11, /not reachable/, '1.0.0')

    // Running it again replaces the files in place.
    await installCniPlugin({ binDir: join(dir, 'bin'), confDir: join(dir, 'net.d'), agentSocket: NO_AGENT })
    assert.equal((await runPlugin({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.1.0"}', [r.plugin])).code, 0)
  })

  it('flatnet cni install takes the directories, socket and labels on the command line and refuses bad ones', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fn-cni-install-'))
    dirs.push(dir)
    const ok = await sh(process.execPath, [FLATNET, 'cni', 'install', '--bin-dir', join(dir, 'bin'), '--conf-dir', join(dir, 'net.d'), '--socket', '/run/x/agent.sock', '--network', 'edge', '--label', 'tier=edge', '--cni-version', '0.4.0', '--priority', '20'])
    assert.match(ok.stdout, /20-edge\.conflist/)
    const conflist = JSON.parse(readFileSync(join(dir, 'net.d', '20-edge.conflist'), 'utf8')) as Record<string, unknown>
    assert.deepEqual(conflist, { cniVersion: '0.4.0', name: 'edge', plugins: [{ type: 'flatnet', agentSocket: '/run/x/agent.sock', labels: { tier: 'edge' } }] })
    const bad = await sh(process.execPath, [FLATNET, 'cni', 'install', '--bin-dir', join(dir, 'b2'), '--conf-dir', join(dir, 'n2'), '--label', 'bad key=x'], { allowFail: true })
    assert.equal(bad.code, 2, bad.stderr)
    assert.match(bad.stderr, /bad key/)
    assert.ok(!existsSync(join(dir, 'b2')), 'nothing written for a refused command')
  })
})
