// NetworkPolicy manifests for the store benchmark, as `flatnet policy apply -f` reads them: YAML
// text, ten policies per namespace in the shapes real clusters use (../lib/manifests.js).
// Generated from a seed, so that every run and every process writes the same documents.
import { seededRandom } from '../../packages/core/dist/src/index.js'
import { APPS, drawsOf, namespacePolicies, shuffled, TEAMS } from '../lib/manifests.js'

function seedOf(text) {
  let h = 2166136261
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619)
  return h >>> 0
}

/**
 * `count` NetworkPolicy manifests in namespaces `<prefix>-0000`, `<prefix>-0001`, ...; distinct
 * prefixes give distinct keys, so each apply creates objects instead of finding them unchanged.
 * Each policy carries its namespace's team as a label.
 */
export function policyManifests(prefix, count) {
  const draws = drawsOf(seededRandom(seedOf(prefix)))
  const out = []
  for (let n = 0; out.length < count; n++) {
    const namespace = `${prefix}-${String(n).padStart(4, '0')}`
    const team = draws.pick(TEAMS)
    const apps = shuffled(APPS, draws.int)
    const ns = namespacePolicies({ namespace, team, apps, draws, teamLabel: true })
    out.push(...ns.slice(0, count - out.length))
  }
  return out
}
