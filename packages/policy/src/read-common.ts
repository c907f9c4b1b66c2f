import { checkDns1123Label, checkDns1123Subdomain, checkLabelKey, checkLabelValue, parseCidr, type Cidr } from '@flatnet/core'
import { quoted, type FieldReader, type Path } from './field-reader.js'
import type { LabelSelectorSpec, SelectorOperator } from './model.js'

/** metadata fields the API server fills in; accepted (so `kubectl get -o yaml` output loads) and ignored. */
const SERVER_METADATA = [
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'managedFields',
  'selfLink',
  'finalizers',
  'ownerReferences',
  'generateName',
]

export interface Metadata {
  readonly name?: string | undefined
  readonly namespace?: string | undefined
  readonly labels: Readonly<Record<string, string>>
}

/**
 * Most kinds take an RFC 1123 subdomain as name; a Namespace takes an RFC 1123 label, since
 * its name becomes part of DNS names.
 */
export function readMetadata(
  r: FieldReader,
  value: unknown,
  path: Path,
  scope: 'namespaced' | 'cluster',
  checkName: (name: string) => string | undefined = checkDns1123Subdomain,
): Metadata | undefined {
  const m = r.object(value, path, ['name', 'namespace', 'labels', 'annotations', ...SERVER_METADATA], ['name'])
  if (!m) return undefined
  const name = m.name == null ? undefined : readName(r, m.name, [...path, 'name'], 'name', checkName)
  let namespace: string | undefined
  if (m.namespace != null) {
    if (scope === 'cluster') r.fail([...path, 'namespace'], 'must not be set: this kind is cluster-scoped')
    else namespace = readName(r, m.namespace, [...path, 'namespace'], 'namespace', checkDns1123Label)
  }
  const labels = m.labels === undefined ? {} : r.stringMap(m.labels, [...path, 'labels'], checkLabelKey, checkLabelValue)
  if (m.annotations !== undefined) r.stringMap(m.annotations, [...path, 'annotations'], checkLabelKey, () => undefined)
  return { name, namespace, labels: labels ?? {} }
}

function readName(r: FieldReader, value: unknown, path: Path, what: string, check: (name: string) => string | undefined): string | undefined {
  const text = r.string(value, path)
  if (text === undefined) return undefined
  const bad = check(text)
  return bad ? r.fail(path, `invalid ${what} ${quoted(text)}: ${bad}`) : text
}

const OPERATORS: readonly SelectorOperator[] = ['In', 'NotIn', 'Exists', 'DoesNotExist']

/** A metav1.LabelSelector, validated as the API server does. */
export function readLabelSelector(r: FieldReader, value: unknown, path: Path): LabelSelectorSpec | undefined {
  if (value === null) return { matchLabels: {}, matchExpressions: [] }
  const s = r.object(value, path, ['matchLabels', 'matchExpressions'])
  if (!s) return undefined
  let ok = true
  const matchLabels = s.matchLabels == null ? {} : r.stringMap(s.matchLabels, [...path, 'matchLabels'], checkLabelKey, checkLabelValue)
  if (!matchLabels) ok = false
  const matchExpressions: LabelSelectorSpec['matchExpressions'][number][] = []
  if (s.matchExpressions != null) {
    const list = r.array(s.matchExpressions, [...path, 'matchExpressions'])
    if (!list) ok = false
    list?.forEach((item, i) => {
      const p = [...path, 'matchExpressions', i]
      const e = r.object(item, p, ['key', 'operator', 'values'], ['key', 'operator'])
      if (!e) return void (ok = false)
      const key = e.key === undefined ? undefined : r.string(e.key, [...p, 'key'])
      const badKey = key === undefined ? undefined : checkLabelKey(key)
      if (badKey) r.fail([...p, 'key'], `invalid label key ${quoted(key ?? '')}: ${badKey}`)
      const operator = e.operator === undefined ? undefined : r.oneOf(e.operator, [...p, 'operator'], OPERATORS)
      const rawValues = e.values == null ? [] : r.array(e.values, [...p, 'values'])
      const values: string[] = []
      rawValues?.forEach((v, j) => {
        const s2 = r.string(v, [...p, 'values', j], { allowEmpty: true })
        const bad = s2 === undefined ? undefined : checkLabelValue(s2)
        if (bad) r.fail([...p, 'values', j], `invalid label value ${quoted(s2 ?? '')}: ${bad}`)
        else if (s2 !== undefined) values.push(s2)
      })
      if (operator === 'In' || operator === 'NotIn') {
        if (values.length === 0 && rawValues?.length === 0) {
          r.fail([...p, 'values'], `must be specified and non-empty when operator is ${operator}`)
          return void (ok = false)
        }
      } else if (operator && (rawValues?.length ?? 0) > 0) {
        r.fail([...p, 'values'], `may not be specified when operator is ${operator}`)
        return void (ok = false)
      }
      if (!key || badKey || !operator || !rawValues || values.length !== rawValues.length) return void (ok = false)
      matchExpressions.push({ key, operator, values })
    })
  }
  return ok && matchLabels ? { matchLabels, matchExpressions } : undefined
}

/** A CIDR in the API server's sense; host bits may be set (they are cleared). */
export function readCidr(r: FieldReader, value: unknown, path: Path, opts: { maxLength?: number } = {}): Cidr | undefined {
  const text = r.string(value, path, opts)
  if (text === undefined) return undefined
  const cidr = parseCidr(text)
  if (!cidr) return r.fail(path, `invalid CIDR ${quoted(text)}: must be an IPv4 or IPv6 address, '/', and a prefix length (e.g. 10.0.0.0/16 or fd00::/64)`)
  return cidr
}

/** `to` in an ingress rule (or `from` in an egress rule) is a slip no spelling suggestion catches. */
export function peersFieldHint(peersField: 'from' | 'to'): Record<string, string> {
  const other = peersField === 'from' ? 'to' : 'from'
  return { [other]: `${peersField === 'from' ? 'ingress' : 'egress'} rules name their peers in "${peersField}"` }
}
