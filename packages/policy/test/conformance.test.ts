/**
 * The 42 upstream NetworkPolicy cases (test/fixtures/conformance/netpol-cases.yaml): every step
 * of every case, all 486 cells (9 sources x 9 destinations x 2 ports x 3 protocols), through the
 * loader, the incremental compiler and the snapshot's evaluation.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { labelsFromRecord, parseIp } from '@flatnet/core'
import { PolicyCompiler, type EndpointObject, type NamespaceObject } from '../src/index.js'
import { loadPlain } from './helpers.js'
import { expectedVerdict, fillPlaceholders, loadConformanceCases, stepsOf } from './conformance-cases.js'

const data = loadConformanceCases()
const model = data.model
const nsNames = data.namespaces
const podNames = data.pods

// Pod IPs 10.0.<ns>.<pod>: all inside 0.0.0.0/4, as the {{net4:...}} placeholder assumes.
function podIp(ns: string, pod: string): string {
  return `10.0.${nsNames.indexOf(ns) + 1}.${podNames.indexOf(pod) + 1}`
}

function podObject(ns: string, pod: string, labels: Record<string, string>): EndpointObject {
  return {
    kind: 'Pod',
    namespace: ns,
    name: pod,
    labels: labelsFromRecord(labels),
    ips: [parseIp(podIp(ns, pod))!],
    namedPorts: model.ports.flatMap((port) => model.protocols.map((protocol) => ({ name: `serve-${port}-${protocol.toLowerCase()}`, port, protocol }))),
  }
}

function namespaceObject(ns: string, labels: Record<string, string>): NamespaceObject {
  return { kind: 'Namespace', name: ns, labels: labelsFromRecord({ ...labels, 'kubernetes.io/metadata.name': ns }) }
}

describe('NetworkPolicy conformance: the 42 upstream cases, every cell', () => {
  it('has all 42 cases', () => assert.equal(data.cases.length, 42))

  for (const c of data.cases) {
    it(`${c.id} ${c.name}`, () => {
      const compiler = new PolicyCompiler()
      const podLabels = new Map<string, Record<string, string>>()
      for (const ns of nsNames) compiler.upsert(namespaceObject(ns, model.namespaces[ns]!))
      for (const ns of nsNames)
        for (const pod of podNames) {
          podLabels.set(`${ns}/${pod}`, model.pods[pod]!)
          compiler.upsert(podObject(ns, pod, model.pods[pod]!))
        }
      let cells = 0
      stepsOf(c).forEach((step, stepIndex) => {
        for (const action of step.actions) {
          const [verb, arg] = Object.entries(action)[0] as [string, Record<string, unknown>]
          if (verb === 'create' || verb === 'update') {
            const loaded = loadPlain([fillPlaceholders(arg, podIp)], `${c.id}.yaml`)
            assert.equal(loaded.policies.length, 1)
            compiler.upsert(loaded.policies[0]!)
          } else if (verb === 'delete') {
            compiler.delete({ kind: 'NetworkPolicy', namespace: arg.namespace as string, name: arg.name as string })
          } else if (verb === 'setNamespaceLabels') {
            compiler.upsert(namespaceObject(arg.namespace as string, arg.labels as Record<string, string>))
          } else if (verb === 'setPodLabels') {
            const [ns, pod] = (arg.pod as string).split('/') as [string, string]
            compiler.upsert(podObject(ns, pod, arg.labels as Record<string, string>))
          } else assert.fail(`unknown action ${verb}`)
        }
        const snapshot = compiler.commit()
        const wrong: string[] = []
        for (const sns of nsNames)
          for (const spod of podNames)
            for (const dns of nsNames)
              for (const dpod of podNames)
                for (const port of model.ports)
                  for (const protocol of model.protocols) {
                    cells++
                    const want = expectedVerdict(data, step.expect, [sns, spod], [dns, dpod], port, protocol)
                    const got = snapshot.evaluateRefs(`${sns}/${spod}`, `${dns}/${dpod}`, port, protocol).allowed
                    if (want !== got) wrong.push(`${sns}/${spod}->${dns}/${dpod}:${port}/${protocol} want ${want ? 'allow' : 'deny'}`)
                  }
        assert.deepEqual(wrong.slice(0, 10), [], `step ${stepIndex}: ${wrong.length} wrong cells`)
      })
      assert.equal(cells % 486, 0)
    })
  }
})
