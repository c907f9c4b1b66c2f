import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { decodeStored, type StoredObject } from '@flatnet/store'
import { SOURCE_ANNOTATION, sourceOf } from '../src/ownership.js'
import { resourceByName } from '../src/resources.js'
import { translate, type Translation } from '../src/translate.js'
import { fixture } from './fake-api-server.js'

type Json = Record<string, unknown>

const pods = fixture('pods').items
const byName = (items: Json[], name: string): Json => items.find((o) => (o.metadata as Json).name === name) as Json
const objectOf = (t: Translation): Json => {
  assert.equal(t.type, 'object', JSON.stringify(t))
  return (t as { value: Json }).value
}

describe('translating API objects into store objects', () => {
  it('mirrors a pod with its labels, both podIPs, named container and sidecar ports and nodeName (list items carry no kind)', () => {
    const item = byName(pods, 'web-7d9c5b6f4-x2x9k')
    assert.equal(item.kind, undefined, 'the recorded list item has no kind, as the API server sends it')
    const t = translate(resourceByName('pods'), item, 'kubernetes')
    assert.equal(t.key, 'shop/web-7d9c5b6f4-x2x9k')
    const v = objectOf(t)
    assert.deepEqual(v.metadata, {
      name: 'web-7d9c5b6f4-x2x9k',
      namespace: 'shop',
      labels: { app: 'web', tier: 'frontend', 'pod-template-hash': '7d9c5b6f4' },
      annotations: { [SOURCE_ANNOTATION]: 'kubernetes' },
    })
    const spec = v.spec as { nodeName: string; containers: { ports: { name: string; containerPort: number; protocol: string }[] }[] }
    assert.equal(spec.nodeName, 'worker-1')
    assert.deepEqual(
      spec.containers.flatMap((c) => c.ports).map((p) => `${p.name}:${p.containerPort}/${p.protocol}`),
      ['http:8080/TCP', 'metrics:9090/TCP', 'proxy-admin:15000/TCP'],
      'named ports of containers and of the sidecar init container; the unnamed 8443 is not a named port',
    )
    assert.deepEqual(v.status, { podIPs: [{ ip: '10.244.1.12' }, { ip: 'fd00:10:244:1::c' }] })
  })

  it('stores no API bookkeeping: a change of status conditions, managedFields or resourceVersion gives the same stored object', () => {
    const item = byName(pods, 'web-7d9c5b6f4-x2x9k')
    const noisy = structuredClone(item)
    ;(noisy.metadata as Json).resourceVersion = '99999'
    ;(noisy.metadata as Json).managedFields = []
    ;(noisy.status as Json).conditions = [{ type: 'Ready', status: 'False' }]
    assert.deepEqual(objectOf(translate(resourceByName('pods'), noisy, 'kubernetes')), objectOf(translate(resourceByName('pods'), item, 'kubernetes')))
  })

  it('does not mirror hostNetwork pods, pods without an IP, or pods that Succeeded or Failed', () => {
    const r = resourceByName('pods')
    const skip = (name: string): string => {
      const t = translate(r, byName(pods, name), 'kubernetes')
      assert.equal(t.type, 'skip', name)
      return (t as { reason: string }).reason
    }
    assert.match(skip('kube-proxy-8qzvx'), /hostNetwork/)
    assert.match(skip('web-7d9c5b6f4-p8m2n'), /no IP/)
    assert.match(skip('report-28391520-xk2lm'), /Succeeded/)
    const failed = structuredClone(byName(pods, 'postgres-0'))
    ;(failed.status as Json).phase = 'Failed'
    assert.match((translate(r, failed, 'kubernetes') as { reason: string }).reason, /Failed/)
  })

  it('a scheduled pod without an IP is not mirrored by itself, but carries what to write over a node agent attachment of it', () => {
    const r = resourceByName('pods')
    assert.equal((translate(r, byName(pods, 'web-7d9c5b6f4-p8m2n'), 'kubernetes') as { ifAttached?: Json }).ifAttached, undefined, 'not scheduled: no agent can have attached it')
    const scheduled = structuredClone(byName(pods, 'web-7d9c5b6f4-p8m2n'))
    ;(scheduled.spec as Json).nodeName = 'worker-2'
    const t = translate(r, scheduled, 'kubernetes') as { type: string; ifAttached?: { metadata: Json; spec: Json; status: Json } }
    assert.equal(t.type, 'skip')
    assert.deepEqual(t.ifAttached?.status, { podIPs: [] })
    assert.equal(t.ifAttached?.spec.nodeName, 'worker-2')
    assert.equal((t.ifAttached?.metadata.labels as Json).app, 'web')
  })

  it('keeps a NetworkPolicy spec as the API server holds it, without server metadata or foreign annotations', () => {
    const np = byName(fixture('networkpolicies').items, 'default-deny')
    const v = objectOf(translate(resourceByName('networkpolicies'), np, 'kubernetes'))
    assert.deepEqual(v, {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'default-deny', namespace: 'shop', annotations: { [SOURCE_ANNOTATION]: 'kubernetes' } },
      spec: { podSelector: {}, policyTypes: ['Ingress'] },
    })
  })

  it('writes objects the agents can load back (the store decodes them with the same validator)', () => {
    const stored: StoredObject[] = []
    for (const [name, kind] of [
      ['namespaces', 'Namespace'],
      ['pods', 'Endpoint'],
      ['networkpolicies', 'NetworkPolicy'],
      ['clusternetworkpolicies', 'ClusterNetworkPolicy'],
    ] as const) {
      for (const item of fixture(name).items) {
        const t = translate(resourceByName(name), item, 'kubernetes')
        if (t.type === 'object') stored.push({ kind, key: t.key, revision: 1, createRevision: 1, value: JSON.parse(JSON.stringify(t.value)) })
      }
    }
    const { loaded, issues } = decodeStored(stored)
    assert.deepEqual(issues, [])
    assert.equal(loaded.namespaces.length, 5)
    assert.deepEqual(loaded.endpoints.map((e) => `${e.namespace}/${e.name}`).sort(), ['data/postgres-0', 'kube-system/coredns-668d6bf9bc-4kq7d', 'shop/api-0', 'shop/web-7d9c5b6f4-x2x9k'])
    assert.equal(loaded.policies.length, 4)
    const web = loaded.endpoints.find((e) => e.name === 'web-7d9c5b6f4-x2x9k')!
    assert.equal(web.node, 'worker-1')
    assert.deepEqual(
      web.namedPorts.map((p) => p.name),
      ['http', 'metrics', 'proxy-admin'],
    )
    assert.ok(stored.every((o) => sourceOf(o.value) === 'kubernetes'))
  })

  it('reports a ClusterNetworkPolicy flatnet refuses (a domainNames peer) with the field path, instead of mirroring it', () => {
    const cnp = byName(fixture('clusternetworkpolicies').items, 'egress-to-saas')
    const t = translate(resourceByName('clusternetworkpolicies'), cnp, 'kubernetes')
    assert.equal(t.type, 'invalid')
    const issues = (t as { issues: readonly { path: string; message: string; line: number }[] }).issues
    assert.equal(issues[0]?.path, 'spec.egress[0].to[0].domainNames')
    assert.match(issues[0]?.message ?? '', /domainNames/)
    assert.equal(issues[0]?.line, 0, 'no line number into a document nobody can open')
  })

  it('marks objects with the configured source', () => {
    const t = translate(resourceByName('namespaces'), fixture('namespaces').items[0], 'kubernetes-east')
    assert.equal(sourceOf(objectOf(t)), 'kubernetes-east')
  })
})
