// A Pod endpoint has two writers: the node agent (CNI ADD/DEL: node and addresses) and the
// Kubernetes syncer (labels, ports, existence). This checks the agent's real documents
// (workload-manager.ts: podManifestOverStored, podAfterDetach) against the syncer's real merge
// (packages/k8s pod-attachment.ts): each keeps what the other owns, and the syncer's merge over
// what the agent wrote is what the store already holds, so it writes nothing. The store-level
// orders of events are tested in packages/k8s/test/pod-attachment.test.ts.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { podAfterDetach, podManifestOverStored } from '../packages/agent/dist/src/workloads/workload-manager.js'
import { AGENT_NODE_ANNOTATION, SOURCE_ANNOTATION } from '../packages/core/dist/src/index.js'
import { podOverAttachment } from '../packages/k8s/dist/src/pod-attachment.js'
import { resourceByName } from '../packages/k8s/dist/src/resources.js'
import { translate } from '../packages/k8s/dist/src/translate.js'
import { canonicalJson } from '../packages/store/dist/src/canonical-json.js'

/** The syncer's Pod for the API's pod `shop/web` on node-a at `ip` (none: not reported yet). */
function apiPod(ip) {
  const object = {
    metadata: { name: 'web', namespace: 'shop', labels: { app: 'web' } },
    spec: { nodeName: 'node-a', containers: [{ name: 'web', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }] },
    status: ip ? { phase: 'Running', podIP: ip, podIPs: [{ ip }] } : { phase: 'Pending' },
  }
  const t = translate(resourceByName('pods'), object, 'kubernetes')
  const value = t.type === 'object' ? t.value : t.ifAttached
  assert.ok(value, JSON.stringify(t))
  return { value, onlyOverAttachment: t.type !== 'object' }
}

/** The agent's record of a CNI attachment of `shop/web`. */
function attachment(ips) {
  return { key: 'shop/web', namespace: 'shop', name: 'web', netns: '/run/netns/x', ifname: 'eth0', hostIfname: 'fnw0', ips, labels: {}, ports: [], kind: 'Pod', attachedAt: new Date(0).toISOString(), labelsFrom: 'store' }
}

const merge = (api, stored) => podOverAttachment(api.value, stored, api.onlyOverAttachment)
const same = (a, b) => assert.equal(canonicalJson(a), canonicalJson(b))

describe('Pod endpoint: agent and syncer writes', () => {
  it('CNI ADD over the syncer Pod: the agent marks it and sets node and addresses; the syncer keeps them though the API shows the old address', () => {
    const synced = apiPod('10.1.0.1').value
    const added = podManifestOverStored(synced, attachment(['10.1.0.9']), 'node-a')
    assert.equal(added.metadata.annotations[AGENT_NODE_ANNOTATION], 'node-a')
    assert.equal(added.metadata.annotations[SOURCE_ANNOTATION], 'kubernetes', "the syncer's mark stays")
    assert.deepEqual(added.status.podIPs, [{ ip: '10.1.0.9' }])
    same(merge(apiPod('10.1.0.1'), added), added)
    same(merge(apiPod(undefined), added), added)
  })

  it('CNI DEL: the Pod stays marked without addresses; the syncer puts no address back', () => {
    const added = podManifestOverStored(apiPod('10.1.0.1').value, attachment(['10.1.0.1']), 'node-a')
    const detached = podAfterDetach(added, 'node-a')
    assert.equal(detached.status.podIPs, undefined)
    assert.equal(detached.metadata.annotations[AGENT_NODE_ANNOTATION], 'node-a')
    assert.deepEqual(detached.metadata.labels, { app: 'web' })
    same(merge(apiPod('10.1.0.1'), detached), detached)
  })

  it('CNI ADD before the syncer wrote anything: the syncer takes it over with its labels and the agent address', () => {
    const fresh = podManifestOverStored(undefined, attachment(['10.1.0.7']), 'node-a')
    assert.deepEqual(fresh.metadata.labels, {})
    const adopted = merge(apiPod(undefined), fresh)
    assert.deepEqual(adopted.metadata.labels, { app: 'web' })
    assert.deepEqual(adopted.status.podIPs, [{ ip: '10.1.0.7' }])
    assert.deepEqual(adopted.metadata.annotations, { [SOURCE_ANNOTATION]: 'kubernetes', [AGENT_NODE_ANNOTATION]: 'node-a' })
    same(merge(apiPod('10.1.0.7'), adopted), adopted)
    same(podManifestOverStored(adopted, attachment(['10.1.0.7']), 'node-a'), adopted)
  })

  it("CNI DEL leaves another node's attachment of the same name as it is, and deletes when nothing is stored", () => {
    const elsewhere = podManifestOverStored(apiPod('10.1.0.1').value, attachment(['10.2.0.4']), 'node-b')
    assert.equal(podAfterDetach(elsewhere, 'node-a'), elsewhere)
    assert.equal(podAfterDetach(undefined, 'node-a'), undefined)
    assert.equal(podAfterDetach({ kind: 'HostEndpoint', metadata: { name: 'web' } }, 'node-a'), undefined)
    // An unmarked Pod without a node (written before agents marked their attachments) is taken as this node's.
    const unmarked = podAfterDetach({ kind: 'Pod', metadata: { name: 'web', namespace: 'shop' }, spec: { nodeName: '' }, status: { podIPs: [{ ip: '10.1.0.1' }] } }, 'node-a')
    assert.deepEqual([unmarked.status, unmarked.metadata.annotations], [{}, { [AGENT_NODE_ANNOTATION]: 'node-a' }])
  })
})
