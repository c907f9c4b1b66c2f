// k8s/: every document of every manifest is valid against the Kubernetes API schemas, strictly
// (an unknown field anywhere is an error), and the manifests grant exactly the privileges
// k8s/README.md explains: RBAC verb by verb, the agent's capabilities, host paths and mounts,
// no privileged container, resources and probes. The agent's configuration in the ConfigMap goes
// through the agent's own loader with the DaemonSet's environment; the commands the manifests
// and the README run must exist in the `flatnet` CLI; and the init container's install command
// runs for real (as root without capabilities, into a directory standing in for the node), after
// which the installed plugin runs from /opt/cni/bin in a private mount namespace. No cluster.
//
// Schemas: the `kubernetes-models` package, generated from the upstream OpenAPI definitions. Its
// compiled JSON-schema validators check types, required fields, enums and formats, but let
// unknown fields through; the unknown-field check walks each document along the same models'
// type declarations (read with the TypeScript compiler), which list every field of every kind.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { after, describe, it } from 'node:test'
import process from 'node:process'
import { URL } from 'node:url'
import ts from 'typescript'
import { parseAllDocuments, parse as parseYaml } from 'yaml'
import { loadAgentConfig } from '../packages/agent/dist/src/index.js'

const root = new URL('..', import.meta.url).pathname
const k8sDir = join(root, 'k8s')
const cli = join(root, 'packages', 'cli', 'bin', 'flatnet.js')
const VERSION = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version
const IMAGE = `ghcr.io/flatnet/flatnet:${VERSION}`
const NAMESPACE = 'flatnet'
const SYNCER_LEASE = 'flatnet-k8s-syncer'
// The syncer's library, for its Lease name (packages/k8s; built by `npm run setup`).
const syncerDist = join(root, 'packages', 'k8s', 'dist', 'src', 'index.js')
const syncerLib = existsSync(syncerDist) ? await import(syncerDist).catch(() => undefined) : undefined

const work = mkdtempSync(join(tmpdir(), 'fn-k8s-manifests-'))
after(() => rmSync(work, { recursive: true, force: true }))

// --- loading ---

function filesUnder(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]))
    .sort()
}

const allFiles = filesUnder(k8sDir).map((f) => relative(k8sDir, f))
const manifestFiles = allFiles.filter((f) => /\.ya?ml$/.test(f))

/** Every non-empty document: { file, index, line, doc, where }. A YAML error names file and line. */
function loadManifests() {
  const out = []
  for (const file of manifestFiles) {
    const text = readFileSync(join(k8sDir, file), 'utf8')
    const lineOf = (offset) => text.slice(0, offset).split('\n').length
    parseAllDocuments(text).forEach((d, index) => {
      for (const e of [...d.errors, ...d.warnings]) throw new Error(`k8s/${file}:${lineOf(e.pos[0])}: ${e.message}`)
      const doc = d.toJS()
      if (doc === null || doc === undefined) return
      const line = lineOf(d.contents?.range?.[0] ?? 0)
      out.push({ file, index, line, doc, where: `k8s/${file}:${line} (${doc.kind} ${doc.metadata?.name})` })
    })
  }
  return out
}

const manifests = loadManifests()
const docs = manifests.map((m) => m.doc)

function find(kind, name) {
  const found = docs.filter((d) => d.kind === kind && d.metadata?.name === name)
  assert.equal(found.length, 1, `exactly one ${kind} ${name} in k8s/`)
  return found[0]
}

const ofKind = (...kinds) => docs.filter((d) => kinds.includes(d.kind))
const workloads = () => ofKind('DaemonSet', 'Deployment')
const podSpec = (w) => w.spec.template.spec
const allContainers = (spec) => [...(spec.initContainers ?? []), ...(spec.containers ?? [])]
const container = (spec, name) => {
  const c = allContainers(spec).find((x) => x.name === name)
  assert.ok(c, `container ${name}`)
  return c
}
const envVar = (c, name) => (c.env ?? []).find((e) => e.name === name)

// --- schema validation ---

/** The kubernetes-models module path of a kind: core "v1" kinds live under v1/, others under <group>/<version>/. */
const modelPath = (apiVersion, kind) => `kubernetes-models/${apiVersion}/${kind}`

async function schemaProblems(doc) {
  let mod
  try {
    mod = await import(modelPath(doc.apiVersion, doc.kind))
  } catch {
    return [`no Kubernetes schema for apiVersion ${doc.apiVersion}, kind ${doc.kind}`]
  }
  const Model = mod[doc.kind]
  try {
    new Model(structuredClone(doc)).validate()
    return []
  } catch (err) {
    return [err.message]
  }
}

/**
 * The type declarations of kubernetes-models, loaded once into a TypeScript program: one declared
 * constant per kind, whose type the unknown-field walk follows.
 */
function createFieldChecker(kinds) {
  const file = join(root, 'test', '__k8s_models__.mts')
  const entries = [...kinds]
  const source = entries.map(([apiVersion, kind], i) => `export declare const k${i}: import('${modelPath(apiVersion, kind)}').I${kind}\n`).join('')
  const options = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
  }
  const host = ts.createCompilerHost(options)
  const readFile = host.getSourceFile.bind(host)
  const exists = host.fileExists.bind(host)
  host.getSourceFile = (name, lang, ...rest) => (name === file ? ts.createSourceFile(name, source, lang, true) : readFile(name, lang, ...rest))
  host.fileExists = (name) => name === file || exists(name)
  const program = ts.createProgram([file], options, host)
  const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'))
  assert.deepEqual(problems, [], 'the kubernetes-models type declarations load')
  const checker = program.getTypeChecker()
  const declared = checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(file)))
  const typeOfKind = new Map(entries.map(([apiVersion, kind], i) => [`${apiVersion} ${kind}`, checker.getTypeOfSymbol(declared.find((s) => s.name === `k${i}`))]))

  const isOpen = (t) => (t.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) !== 0

  function walk(value, type, path, out) {
    if (value === null || typeof value !== 'object' || isOpen(type)) return
    const t = checker.getNonNullableType(type)
    const members = t.isUnion() ? t.types : [t]
    if (Array.isArray(value)) {
      const list = members.find((m) => checker.isArrayType(m))
      if (list) value.forEach((v, i) => walk(v, checker.getTypeArguments(list)[0], `${path}[${i}]`, out))
      return // a list where the schema has none is the schema validator's to report
    }
    const objects = members.filter((m) => (m.flags & ts.TypeFlags.Object) !== 0 && !checker.isArrayType(m))
    if (objects.length === 0) return
    for (const [key, v] of Object.entries(value)) {
      const at = path === '' ? key : `${path}.${key}`
      let fieldType
      for (const m of objects) {
        const prop = checker.getPropertyOfType(m, key)
        fieldType = prop ? checker.getTypeOfSymbol(prop) : checker.getIndexInfoOfType(m, ts.IndexKind.String)?.type
        if (fieldType) break
      }
      if (fieldType) walk(v, fieldType, at, out)
      else out.push(`${at}: unknown field "${key}"`)
    }
  }

  return (doc) => {
    const type = typeOfKind.get(`${doc.apiVersion} ${doc.kind}`)
    if (!type) return [`no type declaration for apiVersion ${doc.apiVersion}, kind ${doc.kind}`]
    const out = []
    walk(doc, type, '', out)
    return out
  }
}

const knownKinds = new Map(docs.map((d) => [`${d.apiVersion} ${d.kind}`, [d.apiVersion, d.kind]]))
// Kinds the mutation tests below use even if no manifest does.
knownKinds.set('apps/v1 DaemonSet', ['apps/v1', 'DaemonSet'])
const unknownFields = createFieldChecker(knownKinds.values())

async function validate(doc) {
  return [...(await schemaProblems(doc)), ...unknownFields(doc)]
}

describe('k8s/ manifests against the Kubernetes API schemas', () => {
  it('has the files the issue asks for, and every YAML file parses', () => {
    for (const f of ['00-namespace.yaml', '10-serviceaccounts.yaml', '20-rbac.yaml', '30-configmap.yaml', '40-secret.yaml', '50-daemonset.yaml', '60-syncer.yaml', 'trial/redis.yaml', 'Dockerfile', 'README.md']) {
      assert.ok(allFiles.includes(f), `k8s/${f} exists`)
    }
    assert.ok(manifests.length >= 12, `documents found: ${manifests.map((m) => m.where).join(', ')}`)
  })

  it('validates every document strictly: schema types, required fields, enums, and no unknown field', async () => {
    const failures = []
    for (const m of manifests) {
      for (const p of await validate(m.doc)) failures.push(`${m.where}: ${p}`)
    }
    assert.deepEqual(failures, [])
  })

  it('refuses a misspelt field at any depth, a wrong type, and an unknown kind (the validator is strict)', async () => {
    const ds = structuredClone(find('DaemonSet', 'flatnet-agent'))
    ds.spec.template.spec.hostNetwrok = true
    ds.spec.template.spec.containers[0].imagee = 'x'
    ds.spec.template.spec.containers[0].securityContext.capabilities.ad = ['SYS_PTRACE']
    ds.spec.template.spec.volumes[0].configMap.nmae = 'x'
    assert.deepEqual(unknownFields(ds).sort(), [
      'spec.template.spec.containers[0].imagee: unknown field "imagee"',
      'spec.template.spec.containers[0].securityContext.capabilities.ad: unknown field "ad"',
      'spec.template.spec.hostNetwrok: unknown field "hostNetwrok"',
      'spec.template.spec.volumes[0].configMap.nmae: unknown field "nmae"',
    ])
    // Free-form maps stay free-form.
    const labelled = structuredClone(find('DaemonSet', 'flatnet-agent'))
    labelled.metadata.labels['example.com/anything'] = 'yes'
    assert.deepEqual(await validate(labelled), [])

    const badType = structuredClone(find('DaemonSet', 'flatnet-agent'))
    badType.spec.template.spec.containers[0].ports[0].containerPort = 'fifty'
    assert.match((await validate(badType)).join('\n'), /containerPort must be integer/)

    const noSelector = structuredClone(find('DaemonSet', 'flatnet-agent'))
    delete noSelector.spec.selector
    assert.match((await validate(noSelector)).join('\n'), /spec must have required property selector/)

    assert.match((await validate({ apiVersion: 'apps/v1', kind: 'DaemonSett', metadata: { name: 'x' } })).join('\n'), /no Kubernetes schema for apiVersion apps\/v1, kind DaemonSett/)
  })

  it('puts every namespaced object into the flatnet namespace, which the manifests create first', () => {
    const clusterScoped = ['Namespace', 'ClusterRole', 'ClusterRoleBinding']
    for (const m of manifests) {
      if (clusterScoped.includes(m.doc.kind)) assert.equal(m.doc.metadata.namespace, undefined, m.where)
      else assert.equal(m.doc.metadata.namespace, NAMESPACE, m.where)
    }
    const ns = find('Namespace', NAMESPACE)
    assert.equal(ns.metadata.labels['pod-security.kubernetes.io/enforce'], 'privileged')
    // kubectl apply -f k8s/ applies files in name order: the namespace must come first.
    assert.equal(manifests[0].file, '00-namespace.yaml')
    assert.equal(manifests[0].doc.kind, 'Namespace')
  })
})

// --- least privilege ---

describe('k8s/ least privilege', () => {
  const ds = find('DaemonSet', 'flatnet-agent')
  const agentPod = podSpec(ds)
  const agent = container(agentPod, 'agent')
  const install = container(agentPod, 'install-cni')
  const syncer = find('Deployment', 'flatnet-syncer')

  /** "apiGroup/resource:verb", with "[name,...]" when the rule names resources, for every grant of a role. */
  const grants = (role) =>
    role.rules
      .flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g}/${res}:${v}${r.resourceNames ? `[${r.resourceNames.join(',')}]` : ''}`))))
      .sort()

  it('grants the syncer exactly get/list/watch on the four kinds it mirrors, cluster-wide', () => {
    const expected = ['namespaces', 'pods'].map((r) => `/${r}`).concat(['networking.k8s.io/networkpolicies', 'policy.networking.k8s.io/clusternetworkpolicies'])
    assert.deepEqual(grants(find('ClusterRole', 'flatnet-syncer')), expected.flatMap((r) => ['get', 'list', 'watch'].map((v) => `${r}:${v}`)).sort())
  })

  it('grants the syncer exactly get/create/update on Leases, in its own namespace only, get and update on its own Lease only', () => {
    const role = find('Role', 'flatnet-syncer-leader-election')
    assert.equal(role.metadata.namespace, NAMESPACE)
    assert.deepEqual(grants(role), [
      'coordination.k8s.io/leases:create',
      `coordination.k8s.io/leases:get[${SYNCER_LEASE}]`,
      `coordination.k8s.io/leases:update[${SYNCER_LEASE}]`,
    ])
  })

  it('names the Lease the syncer uses', { skip: syncerLib ? false : 'packages/k8s is not built (npm run setup)' }, () => {
    assert.equal(syncerLib.LEASE_DEFAULTS.name, SYNCER_LEASE)
  })

  it('has no wildcard, no nonResourceURLs and no escalation verbs in any role', () => {
    for (const role of ofKind('Role', 'ClusterRole')) {
      for (const rule of role.rules) {
        for (const field of ['apiGroups', 'resources', 'verbs', 'resourceNames']) {
          assert.ok(!(rule[field] ?? []).some((v) => v.includes('*')), `${role.kind} ${role.metadata.name}: no wildcard in ${field}`)
        }
        assert.equal(rule.nonResourceURLs, undefined)
        for (const v of ['escalate', 'bind', 'impersonate', 'delete', 'deletecollection', 'patch']) assert.ok(!rule.verbs.includes(v), `${role.metadata.name} has no ${v}`)
      }
    }
  })

  it('binds only the syncer service account, each binding to its own role', () => {
    const expected = new Map([
      ['ClusterRoleBinding flatnet-syncer', 'ClusterRole flatnet-syncer'],
      ['RoleBinding flatnet-syncer-leader-election', 'Role flatnet-syncer-leader-election'],
    ])
    const bindings = ofKind('RoleBinding', 'ClusterRoleBinding')
    assert.deepEqual(bindings.map((b) => `${b.kind} ${b.metadata.name}`).sort(), [...expected.keys()].sort())
    for (const b of bindings) {
      assert.equal(`${b.roleRef.kind} ${b.roleRef.name}`, expected.get(`${b.kind} ${b.metadata.name}`))
      find(b.roleRef.kind, b.roleRef.name)
      assert.deepEqual(b.subjects, [{ kind: 'ServiceAccount', name: 'flatnet-syncer', namespace: NAMESPACE }])
    }
  })

  it('gives the agent no Kubernetes API access: its own account, no binding, no token', () => {
    assert.equal(agentPod.serviceAccountName, 'flatnet-agent')
    assert.equal(find('ServiceAccount', 'flatnet-agent').automountServiceAccountToken, false)
    assert.equal(agentPod.automountServiceAccountToken, false)
    assert.equal(syncer.spec.template.spec.serviceAccountName, 'flatnet-syncer')
    find('ServiceAccount', 'flatnet-syncer')
  })

  it('runs the agent in the node network, as root with exactly NET_ADMIN and SYS_ADMIN (and SETUID/SETGID for the flow log\'s tcpdump), every other capability dropped', () => {
    assert.equal(agentPod.hostNetwork, true)
    assert.equal(agentPod.dnsPolicy, 'ClusterFirstWithHostNet')
    assert.equal(agentPod.hostPID, undefined)
    assert.equal(agentPod.hostIPC, undefined)
    const sc = agent.securityContext
    assert.equal(sc.runAsUser, 0)
    assert.equal(sc.privileged, false)
    assert.deepEqual(sc.capabilities, { drop: ['ALL'], add: ['NET_ADMIN', 'SYS_ADMIN', 'SETUID', 'SETGID'] })
    assert.equal(sc.readOnlyRootFilesystem, true)
    // The API server refuses allowPrivilegeEscalation: false together with CAP_SYS_ADMIN.
    assert.notEqual(sc.allowPrivilegeEscalation, false)
    assert.equal(agentPod.securityContext.seccompProfile.type, 'RuntimeDefault')
  })

  it('says next to SYS_ADMIN why the agent needs it (setns into pods\u2019 network namespaces)', () => {
    const lines = readFileSync(join(k8sDir, '50-daemonset.yaml'), 'utf8').split('\n')
    const at = lines.findIndex((l) => /^\s*- SYS_ADMIN\s*$/.test(l))
    assert.ok(at > 0, 'SYS_ADMIN is a list entry of its own')
    let start = at
    while (start > 0 && /^\s*#/.test(lines[start - 1])) start--
    const why = lines.slice(start, at).join(' ')
    assert.match(why, /setns/)
    assert.match(why, /network namespace/)
  })

  it('runs no privileged container, adds capabilities to the agent only, and shares no host namespace but the agent\u2019s network', () => {
    for (const w of workloads()) {
      const spec = podSpec(w)
      for (const c of allContainers(spec)) {
        const where = `${w.kind} ${w.metadata.name} container ${c.name}`
        assert.notEqual(c.securityContext?.privileged, true, where)
        assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], `${where} drops every capability`)
        if (c !== agent) assert.equal(c.securityContext.capabilities.add, undefined, `${where} adds none`)
        for (const mount of c.volumeMounts ?? []) assert.notEqual(mount.mountPropagation, 'Bidirectional', where)
      }
      assert.equal(spec.hostPID, undefined, w.metadata.name)
      assert.equal(spec.hostIPC, undefined, w.metadata.name)
    }
  })

  it('mounts the host paths the agent needs and no others; the CNI directories only into the init container', () => {
    const hostPaths = new Map(agentPod.volumes.filter((v) => v.hostPath).map((v) => [v.name, v.hostPath]))
    assert.deepEqual([...hostPaths.values()].map((h) => `${h.path} ${h.type}`).sort(), [
      '/dev/net/tun CharDevice',
      '/etc/cni/net.d DirectoryOrCreate',
      '/opt/cni/bin DirectoryOrCreate',
      '/proc/sys/net Directory',
      '/run/flatnet DirectoryOrCreate',
      '/run/netns DirectoryOrCreate',
      '/var/lib/flatnet DirectoryOrCreate',
    ])
    const hostMounts = (c) => Object.fromEntries((c.volumeMounts ?? []).filter((m) => hostPaths.has(m.name)).map((m) => [hostPaths.get(m.name).path, m]))
    const agentMounts = hostMounts(agent)
    assert.deepEqual(Object.keys(agentMounts).sort(), ['/dev/net/tun', '/proc/sys/net', '/run/flatnet', '/run/netns', '/var/lib/flatnet'])
    for (const path of ['/dev/net/tun', '/run/flatnet', '/var/lib/flatnet']) assert.equal(agentMounts[path].mountPath, path)
    assert.deepEqual(agentMounts['/run/netns'], { name: 'netns', mountPath: '/run/netns', mountPropagation: 'HostToContainer', readOnly: true })
    // Beside the container's read-only /proc/sys, never over it; read-write (the agent writes there).
    assert.deepEqual(agentMounts['/proc/sys/net'], { name: 'host-proc-sys-net', mountPath: '/host/proc/sys/net' })
    const installMounts = hostMounts(install)
    assert.deepEqual(Object.fromEntries(Object.entries(installMounts).map(([p, m]) => [p, m.mountPath])), {
      '/opt/cni/bin': '/host/opt/cni/bin',
      '/etc/cni/net.d': '/host/etc/cni/net.d',
    })
    // Every other workload stays off the host's file system.
    for (const w of workloads().filter((x) => x !== ds)) assert.ok(!(podSpec(w).volumes ?? []).some((v) => v.hostPath), `${w.metadata.name} has no hostPath`)
  })

  it('installs the plugin with the init container: `flatnet cni install` into the host\u2019s CNI directories, as root without capabilities', () => {
    assert.deepEqual(agentPod.initContainers.map((c) => c.name), ['install-cni'])
    assert.deepEqual(install.command.slice(0, 7), ['flatnet', 'cni', 'install', '--bin-dir', '/host/opt/cni/bin', '--conf-dir', '/host/etc/cni/net.d'])
    // The node runs the plugin with the Node copied beside it, by the path the node sees.
    assert.deepEqual(install.command.slice(7), ['--copy-node', '--node', '/opt/cni/bin/flatnet-node'])
    const binMount = install.volumeMounts.find((m) => m.mountPath === '/host/opt/cni/bin')
    assert.equal(agentPod.volumes.find((v) => v.name === binMount.name).hostPath.path, '/opt/cni/bin')
    assert.equal(install.securityContext.runAsUser, 0)
    assert.equal(install.securityContext.allowPrivilegeEscalation, false)
  })

  it('runs the agent from the ConfigMap\u2019s agent.yaml, with the Redis URL from the Secret and the node name from the downward API', () => {
    assert.deepEqual(agent.command, ['flatnet', 'agent', 'run', '--config', '/etc/flatnet/agent.yaml'])
    const configMount = agent.volumeMounts.find((m) => m.mountPath === '/etc/flatnet')
    const configVolume = agentPod.volumes.find((v) => v.name === configMount.name)
    assert.equal(configMount.readOnly, true)
    assert.deepEqual(configVolume.configMap, { name: 'flatnet-config', items: [{ key: 'agent.yaml', path: 'agent.yaml' }] })
    assert.ok(find('ConfigMap', 'flatnet-config').data['agent.yaml'])
    assert.deepEqual(envVar(agent, 'FLATNET_NODE_NAME').valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } })
  })

  it('takes the Redis URL from the Secret in the agent and the syncer alike, never as a plain value', () => {
    const secret = find('Secret', 'flatnet-store')
    for (const c of [agent, container(podSpec(syncer), 'syncer')]) {
      const url = envVar(c, 'FLATNET_REDIS_URL')
      assert.deepEqual(url, { name: 'FLATNET_REDIS_URL', valueFrom: { secretKeyRef: { name: 'flatnet-store', key: 'redis-url' } } }, c.name)
      assert.ok('redis-url' in secret.stringData)
      assert.deepEqual(envVar(c, 'FLATNET_CLUSTER').valueFrom, { configMapKeyRef: { name: 'flatnet-config', key: 'cluster' } })
    }
    assert.deepEqual(envVar(agent, 'FLATNET_JOIN_TOKEN').valueFrom, { secretKeyRef: { name: 'flatnet-store', key: 'join-token', optional: true } })
    // The same flatnet cluster for both: one ConfigMap key.
    assert.equal(find('ConfigMap', 'flatnet-config').data.cluster, 'default')
  })

  it('sets resource requests on every container, memory limits everywhere, CPU limits on all but the agent', () => {
    for (const w of workloads()) {
      for (const c of allContainers(podSpec(w))) {
        const where = `${w.metadata.name}/${c.name}`
        assert.ok(c.resources?.requests?.cpu && c.resources?.requests?.memory, `${where} requests cpu and memory`)
        assert.ok(c.resources?.limits?.memory, `${where} limits memory`)
        // The agent's data plane must not be throttled (50-daemonset.yaml says why).
        if (c === agent) assert.equal(c.resources.limits.cpu, undefined, where)
        else assert.ok(c.resources.limits.cpu, `${where} limits cpu`)
      }
    }
  })

  it('probes the agent on the loopback health listener its configuration sets', () => {
    const config = parseYaml(find('ConfigMap', 'flatnet-config').data['agent.yaml'])
    const [host, port] = config.metrics.listen.split(':')
    assert.equal(host, '127.0.0.1')
    const probes = { startupProbe: '/healthz', livenessProbe: '/healthz', readinessProbe: '/readyz' }
    for (const [probe, path] of Object.entries(probes)) {
      assert.deepEqual(agent[probe].httpGet, { host: '127.0.0.1', path, port: Number(port) }, probe)
    }
    const metrics = agent.ports.find((p) => p.name === 'metrics')
    assert.equal(metrics.containerPort, Number(port))
  })

  it('runs the syncer as two replicas, unprivileged, as the "restricted" Pod Security level requires', () => {
    assert.equal(syncer.spec.replicas, 2)
    const spec = podSpec(syncer)
    const c = container(spec, 'syncer')
    assert.deepEqual(c.command, ['flatnet', 'k8s', 'sync'])
    assert.equal(spec.hostNetwork, undefined)
    assert.equal(spec.securityContext.runAsNonRoot, true)
    assert.notEqual(spec.securityContext.runAsUser, 0)
    assert.equal(spec.securityContext.seccompProfile.type, 'RuntimeDefault')
    assert.equal(c.securityContext.allowPrivilegeEscalation, false)
    assert.equal(c.securityContext.readOnlyRootFilesystem, true)
    assert.equal(find('PodDisruptionBudget', 'flatnet-syncer').spec.minAvailable, 1)
  })

  it('uses the flatnet image of this version for every flatnet container', () => {
    for (const w of workloads().filter((x) => x.metadata.name !== 'flatnet-redis')) {
      for (const c of allContainers(podSpec(w))) assert.equal(c.image, IMAGE, `${w.metadata.name}/${c.name}`)
    }
  })

  it('marks the trial Redis as not for production: one replica, a password from a Secret, apart from the production files', () => {
    const file = manifests.find((m) => m.doc.kind === 'Deployment' && m.doc.metadata.name === 'flatnet-redis').file
    assert.equal(file, 'trial/redis.yaml', 'kubectl apply -f k8s/ does not pick it up')
    assert.match(readFileSync(join(k8sDir, file), 'utf8').split('\n')[0], /NOT FOR PRODUCTION/)
    const redis = find('Deployment', 'flatnet-redis')
    assert.equal(redis.spec.replicas, 1)
    assert.match(redis.metadata.annotations['flatnet.dev/not-for-production'], /trying flatnet out/)
    assert.match(find('Service', 'flatnet-redis').metadata.annotations['flatnet.dev/not-for-production'], /trying flatnet out/)
    const c = container(podSpec(redis), 'redis')
    assert.deepEqual(envVar(c, 'REDIS_PASSWORD').valueFrom, { secretKeyRef: { name: 'flatnet-redis-auth', key: 'password' } })
    assert.match(c.command.join(' '), /requirepass \$REDIS_PASSWORD/)
    assert.ok(!c.command.join(' ').includes('--requirepass'), 'the password stays off the command line')
    assert.equal(podSpec(redis).securityContext.runAsNonRoot, true)
  })
})

// --- the agent's configuration, through the agent's own loader ---

describe('k8s/30-configmap.yaml agent.yaml', () => {
  const ds = find('DaemonSet', 'flatnet-agent')
  const agentPod = podSpec(ds)
  const agent = container(agentPod, 'agent')
  const configMap = find('ConfigMap', 'flatnet-config')
  const secret = find('Secret', 'flatnet-store')
  const file = join(work, 'agent.yaml')
  writeFileSync(file, configMap.data['agent.yaml'])

  /** The agent container's environment as the kubelet would fill it, on a node named node-1 at 192.0.2.21. */
  function podEnv(overrides = {}) {
    const env = {}
    for (const e of agent.env) {
      const from = e.valueFrom
      if (e.value !== undefined) env[e.name] = e.value
      else if (from.fieldRef) env[e.name] = { 'spec.nodeName': 'node-1', 'status.hostIP': '192.0.2.21' }[from.fieldRef.fieldPath]
      else if (from.configMapKeyRef) env[e.name] = find('ConfigMap', from.configMapKeyRef.name).data[from.configMapKeyRef.key]
      else if (from.secretKeyRef) env[e.name] = find('Secret', from.secretKeyRef.name).stringData[from.secretKeyRef.key]
      assert.notEqual(env[e.name], undefined, `${e.name} resolves`)
    }
    return { ...env, ...overrides }
  }

  it('is accepted by the agent\u2019s configuration loader with the DaemonSet\u2019s environment', () => {
    const config = loadAgentConfig({ file, env: podEnv() })
    assert.equal(config.nodeName, 'node-1')
    assert.deepEqual(config.underlay.addresses, ['192.0.2.21'])
    assert.equal(config.store.url, secret.stringData['redis-url'])
    assert.equal(config.cluster, configMap.data.cluster)
    assert.equal(config.join.token, '')
  })

  it('accepts the Redis URL the README builds for the trial Redis (password, ClusterIP, database 0)', () => {
    const url = `redis://:${'ab12'.repeat(12)}@10.96.12.34:6379/0`
    assert.equal(loadAgentConfig({ file, env: podEnv({ FLATNET_REDIS_URL: url }) }).store.url, url)
  })

  it('keeps state, the API socket and the ports where the DaemonSet mounts and declares them', () => {
    const config = loadAgentConfig({ file, env: podEnv() })
    const hostPathOf = (mountPath) => {
      const m = agent.volumeMounts.find((x) => x.mountPath === mountPath)
      return agentPod.volumes.find((v) => v.name === m?.name)?.hostPath?.path
    }
    assert.equal(hostPathOf(config.stateDir), config.stateDir)
    assert.equal(hostPathOf(config.runDir), config.runDir)
    // flatnet-cni on the node dials /run/flatnet/agent.sock: the socket must be in the host directory.
    assert.equal(config.api.socket, '/run/flatnet/agent.sock')
    assert.equal(hostPathOf(config.runDir), '/run/flatnet')
    const port = (name) => agent.ports.find((p) => p.name === name)
    assert.deepEqual(port('wireguard'), { name: 'wireguard', containerPort: config.wireguard.listenPort, protocol: 'UDP' })
    assert.deepEqual(config.mesh.listen.map((a) => Number(a.split('/').at(-1))), [port('mesh').containerPort])
    assert.equal(port('mesh').protocol, 'TCP')
  })

  it('writes the node\u2019s network settings (pods\u2019 veths, forwarding) where the DaemonSet mounts the node\u2019s /proc/sys/net read-write', () => {
    const config = loadAgentConfig({ file, env: podEnv() })
    assert.equal(config.dataplane.procSysNet, '/host/proc/sys/net')
    const mount = agent.volumeMounts.find((m) => m.mountPath === config.dataplane.procSysNet)
    assert.ok(mount, `the agent container mounts something at ${config.dataplane.procSysNet}`)
    assert.notEqual(mount.readOnly, true, 'read-write')
    assert.equal(mount.subPath, undefined)
    assert.deepEqual(agentPod.volumes.find((v) => v.name === mount.name).hostPath, { path: '/proc/sys/net', type: 'Directory' })
    // Only in the node's network namespace do these files show the node's interfaces.
    assert.equal(agentPod.hostNetwork, true)
  })

  it('keeps the store, the API server, the kubelet and etcd reachable whatever a host policy says (failsafe)', () => {
    const config = loadAgentConfig({ file, env: podEnv() })
    const ports = (list) => list.map((f) => `${f.protocol}/${f.port}`)
    for (const p of ['TCP/22', 'TCP/6443', 'TCP/10250', 'TCP/2379', 'TCP/2380']) assert.ok(ports(config.policy.failsafe.inbound).includes(p), `inbound ${p}`)
    for (const p of ['UDP/53', 'TCP/53', 'TCP/6443', 'TCP/6379']) assert.ok(ports(config.policy.failsafe.outbound).includes(p), `outbound ${p}`)
    const redisPort = find('Service', 'flatnet-redis').spec.ports[0].port
    assert.ok(ports(config.policy.failsafe.outbound).includes(`TCP/${redisPort}`), 'the trial Redis port is failsafe')
  })
})

// --- the commands the manifests and the README run ---

const helpCache = new Map()
/** `flatnet <words> --help`, parsed: the usage line, subcommands and long options. */
function help(words) {
  const key = words.join(' ')
  if (!helpCache.has(key)) {
    const r = spawnSync(process.execPath, [cli, ...words, '--help'], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } })
    const text = `${r.stdout}${r.stderr}`
    const usage = /^Usage: (.*)$/m.exec(text)?.[1] ?? ''
    const section = (title) => text.split(/\n(?=[A-Z][a-z]+:\n)/).find((s) => s.startsWith(`${title}:`)) ?? ''
    const commands = [...section('Commands').matchAll(/^ {2}(\S+)/gm)].flatMap((m) => m[1].split('|'))
    const options = [...section('Options').matchAll(/--[a-z][a-z-]*/g)].map((m) => m[0])
    helpCache.set(key, { usage, commands, options })
  }
  return helpCache.get(key)
}

/** Follows `argv` down the CLI's command tree; returns the command path and the options the line uses. */
function resolveCommand(argv) {
  const path = []
  for (const word of argv) {
    if (word.startsWith('-') || !help(path).commands.includes(word)) break
    path.push(word)
  }
  return { path, options: argv.filter((w) => w.startsWith('--')).map((w) => w.split('=')[0]) }
}

function assertCommand(argv, where) {
  const { path, options } = resolveCommand(argv)
  const h = help(path)
  assert.ok(h.usage.startsWith(`flatnet ${path.join(' ')}`), `${where}: flatnet ${path.join(' ')} exists`)
  assert.ok(path.length > 0 && help(path.slice(0, -1)).commands.includes(path.at(-1)), `${where}: "${argv.join(' ')}" names a flatnet command`)
  for (const o of options) assert.ok(h.options.includes(o), `${where}: flatnet ${path.join(' ')} takes ${o} (has ${h.options.join(', ')})`)
}

describe('commands in k8s/', () => {
  const ds = find('DaemonSet', 'flatnet-agent')
  const agentPod = podSpec(ds)

  it('runs `flatnet agent run --config`, which the CLI has', () => {
    assertCommand(container(agentPod, 'agent').command.slice(1), 'k8s/50-daemonset.yaml agent')
  })

  const pending = (word) => (help([]).commands.includes(word) ? false : `the CLI has no \`flatnet ${word}\` yet`)

  it('runs `flatnet cni install --bin-dir --conf-dir --copy-node --node` in the init container', { skip: pending('cni') }, () => {
    assertCommand(container(agentPod, 'install-cni').command.slice(1), 'k8s/50-daemonset.yaml install-cni')
  })

  const hasTool = (tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0
  const installSkip = pending('cni') || (process.getuid() !== 0 ? 'needs root (a private mount namespace)' : false) || (['setpriv', 'unshare'].find((t) => !hasTool(t)) ? 'needs setpriv and unshare (util-linux)' : false)

  it('installs a plugin the node can run: the init container’s command, as root without capabilities, into a stand-in for the node', { skip: installSkip }, () => {
    // A directory stands in for the node's root; the init container sees it under /host.
    const node = mkdtempSync(join(work, 'node-'))
    const volumes = new Map(agentPod.volumes.map((v) => [v.name, v]))
    const install = container(agentPod, 'install-cni')
    const inNode = (path) => join(node, path)
    let argv = install.command.slice(1)
    for (const m of install.volumeMounts) {
      const hostPath = volumes.get(m.name).hostPath.path
      mkdirSync(inNode(hostPath), { recursive: true, mode: 0o755 }) // as the kubelet's DirectoryOrCreate
      argv = argv.map((a) => (a === m.mountPath ? inNode(hostPath) : a))
    }
    // drop: [ALL]: root, but with no capability in any set.
    const r = spawnSync('setpriv', ['--bounding-set=-all', '--inh-caps=-all', '--no-new-privs', process.execPath, cli, ...argv], { encoding: 'utf8', timeout: 120_000 })
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`)

    // The native front end (static: runs on any node) and, beside it, the Node plugin it falls
    // back to without an agent, run by the Node copied beside it, as the node sees it.
    assert.equal(readFileSync(inNode('/opt/cni/bin/flatnet')).subarray(0, 4).toString('latin1'), '\x7fELF')
    const plugin = readFileSync(inNode('/opt/cni/bin/flatnet-js'), 'utf8')
    assert.equal(plugin.split('\n')[0], '#!/opt/cni/bin/flatnet-node', 'the Node plugin runs with the Node copied beside it, as the node sees it')
    assert.ok(statSync(inNode('/opt/cni/bin/flatnet-node')).mode & 0o111)
    const conflist = JSON.parse(readFileSync(inNode('/etc/cni/net.d/10-flatnet.conflist'), 'utf8'))
    assert.deepEqual(conflist.plugins.map((p) => p.type), ['flatnet'])
    // The plugin dials the agent's socket where the DaemonSet puts it on the node.
    const runDir = container(agentPod, 'agent').volumeMounts.find((m) => m.mountPath === '/run/flatnet')
    assert.equal(conflist.plugins[0].agentSocket, `${volumes.get(runDir.name).hostPath.path}/agent.sock`)

    // As the container runtime would: run /opt/cni/bin/flatnet on the node (a private mount
    // namespace shows the stand-in's /opt/cni/bin there), with nothing of the image around it.
    // No agent there: the front end hands VERSION to the Node plugin beside it.
    const script = `mount -t tmpfs flatnet-test /opt && mkdir -p /opt/cni/bin && mount --bind "$1" /opt/cni/bin && cd / && exec env -i CNI_COMMAND=VERSION /opt/cni/bin/flatnet`
    const v = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', inNode('/opt/cni/bin')], { input: '{}', encoding: 'utf8', timeout: 60_000 })
    assert.equal(v.status, 0, `${v.stdout}${v.stderr}`)
    assert.ok(JSON.parse(v.stdout).supportedVersions.includes('1.0.0'), v.stdout)
  })

  it('runs `flatnet k8s sync` in the syncer', { skip: pending('k8s') }, () => {
    assertCommand(container(podSpec(find('Deployment', 'flatnet-syncer')), 'syncer').command.slice(1), 'k8s/60-syncer.yaml syncer')
  })

  it('tells the reader only flatnet commands and options that exist (k8s/README.md)', () => {
    const readme = readFileSync(join(k8sDir, 'README.md'), 'utf8')
    const lines = [...readme.matchAll(/-- flatnet ([^\n`)]+)/g)].map((m) => m[1].trim().split(/\s+/))
    assert.ok(lines.length >= 5, 'the README runs flatnet commands in the agent pods')
    for (const argv of lines) assertCommand(argv, `k8s/README.md "flatnet ${argv.join(' ')}"`)
  })
})

// --- image and README ---

describe('k8s/Dockerfile and k8s/README.md', () => {
  const dockerfile = readFileSync(join(k8sDir, 'Dockerfile'), 'utf8')

  it('builds on node:20-bookworm-slim in two stages, with the addon, and puts `flatnet` on the PATH', () => {
    assert.match(dockerfile, /^ARG NODE_IMAGE=node:20-bookworm-slim$/m)
    assert.deepEqual([...dockerfile.matchAll(/^FROM (.*)$/gm)].map((m) => m[1]), ['${NODE_IMAGE} AS build', '${NODE_IMAGE}'])
    assert.match(dockerfile, /node-gyp rebuild --directory=packages\/wireguard\/native/)
    assert.match(dockerfile, /npm ci\b/)
    assert.match(dockerfile, /npm prune --omit=dev/)
    assert.match(dockerfile, /ln -s \/opt\/flatnet\/packages\/cli\/bin\/flatnet\.js \/usr\/local\/bin\/flatnet/)
    assert.ok(statSync(join(root, 'packages', 'cli', 'bin', 'flatnet.js')).isFile())
  })

  it('installs every Debian package whose tool the agent runs', () => {
    const runtime = dockerfile.split(/^FROM /m).at(-1)
    for (const pkg of ['nftables', 'conntrack', 'iproute2', 'procps', 'wireguard-tools', 'wireguard-go', 'tcpdump']) {
      assert.match(runtime, new RegExp(`apt-get install[^\\n]*\\s${pkg}(\\s|$)`, 'm'), pkg)
    }
  })

  it('names every file of k8s/ in the README', () => {
    const readme = readFileSync(join(k8sDir, 'README.md'), 'utf8')
    for (const f of allFiles.filter((x) => x !== 'README.md')) assert.ok(readme.includes(`\`${f}\``), `k8s/README.md mentions ${f}`)
  })
})
