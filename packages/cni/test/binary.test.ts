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
import { installCniPlugin, SUPPORTED_VERSIONS } from '../src/index.js'
import { FLATNET, PLUGIN, runPlugin, sh } from './helpers.js'

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

describe('flatnet-cni without an agent', () => {
  it('answers VERSION in the version it was given, listing every version it speaks', async () => {
    for (const v of ['0.4.0', '1.0.0', '1.1.0']) {
      const r = await runPlugin({ CNI_COMMAND: 'VERSION' }, JSON.stringify({ cniVersion: v }))
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(r.json, { cniVersion: v, supportedVersions: [...SUPPORTED_VERSIONS] })
    }
    const bare = await runPlugin({ CNI_COMMAND: 'VERSION' }, '')
    assert.equal(bare.json?.cniVersion, '1.1.0')
  })

  it('answers garbage and truncated input with code 6, an oversized one with code 5; exit 1', async () => {
    assertError(await runPlugin(addEnv, 'this is not json'), 6, /not valid JSON/)
    assertError(await runPlugin(addEnv, config().slice(0, 30)), 6)
    assertError(await runPlugin(addEnv, '[1,2]'), 6, /JSON object/)
    assertError(await runPlugin(addEnv, ''), 6, /no network configuration/)
    assertError(await runPlugin(addEnv, Buffer.alloc(5 * 1024 * 1024, 0x20)), 5, /larger than/)
  })

  it('answers errors in the cniVersion of the request', async () => {
    assertError(await runPlugin({ ...addEnv, CNI_IFNAME: undefined }, config({ cniVersion: '0.4.0' })), 4, /CNI_IFNAME/, '0.4.0')
  })

  it('names the missing variables and refuses an unknown command with code 4', async () => {
    assertError(await runPlugin({ CNI_COMMAND: 'ADD' }, config()), 4, /CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME/)
    assertError(await runPlugin({ CNI_COMMAND: 'CHECK', CNI_CONTAINERID: 'c', CNI_IFNAME: 'eth0' }, config()), 4, /CNI_NETNS/)
    assertError(await runPlugin({ CNI_COMMAND: 'FROB' }, config()), 4, /unknown CNI_COMMAND/)
    assertError(await runPlugin({}, config()), 4, /CNI_COMMAND/)
  })

  it('refuses an unsupported version (1), an unknown field (2), a bad config (7)', async () => {
    assertError(await runPlugin(addEnv, config({ cniVersion: '9.9.9' })), 1, /incompatible CNI versions/)
    assertError(await runPlugin({ ...addEnv, CNI_COMMAND: 'CHECK' }, config({ cniVersion: '0.3.1' })), 1, /CHECK/, '0.3.1')
    assertError(await runPlugin({ CNI_COMMAND: 'GC' }, config({ cniVersion: '1.0.0', 'cni.dev/valid-attachments': [] })), 1, /GC/, '1.0.0')
    assertError(await runPlugin(addEnv, config({ bridge: 'cni0' })), 2, /bridge="cni0"/)
    assertError(await runPlugin(addEnv, config({ namespace: 'Not_A_Label' })), 7, /namespace/)
  })

  it('reports an agent that is not there: try again later (11) for ADD, DEL, CHECK and GC; not available (50) for STATUS', async () => {
    assertError(await runPlugin(addEnv, config()), 11, /not reachable/)
    assertError(await runPlugin({ ...addEnv, CNI_COMMAND: 'DEL', CNI_NETNS: undefined }, config()), 11)
    assertError(await runPlugin({ ...addEnv, CNI_COMMAND: 'CHECK' }, config()), 11)
    assertError(await runPlugin({ CNI_COMMAND: 'GC' }, config({ 'cni.dev/valid-attachments': [] })), 11)
    assertError(await runPlugin({ CNI_COMMAND: 'STATUS' }, config()), 50, /not reachable/)
  })

  it('refuses GC without cni.dev/valid-attachments rather than treating every attachment as stale', async () => {
    assertError(await runPlugin({ CNI_COMMAND: 'GC' }, config()), 7, /valid-attachments/)
  })

  it('gives up on a standard input that never ends', { timeout: 30_000 }, async () => {
    const r = await runPlugin(addEnv, null, [process.execPath, PLUGIN], 20_000)
    assertError(r, 5, /did not end/)
  })

  it('starts fast enough for a runtime: VERSION, process start included', async () => {
    const times: number[] = []
    for (let i = 0; i < 5; i++) times.push((await runPlugin({ CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}')).ms)
    times.sort((a, b) => a - b)
    // Generous: the machine is shared; bench/cni reports the real figures.
    assert.ok((times[2] as number) < 1_000, `median VERSION ${times[2]} ms`)
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

    // As a DaemonSet copies it: the two files alone, somewhere else, far from any node_modules.
    const elsewhere = join(dir, 'host', 'opt', 'cni', 'bin')
    mkdirSync(elsewhere, { recursive: true })
    for (const f of ['flatnet', 'flatnet.cjs']) copyFileSync(join(dir, 'bin', f), join(elsewhere, f))
    chmodSync(join(elsewhere, 'flatnet'), 0o755)
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
