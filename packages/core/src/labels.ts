/**
 * Kubernetes label keys and values, and the DNS names used for namespaces and object names.
 * The rules are the API server's (apimachinery validation), so that what flatnet accepts
 * Kubernetes accepts too.
 */
export type Labels = ReadonlyMap<string, string>

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const QUALIFIED_NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/

/** Returns a reason when `name` is not an RFC 1123 label (namespaces), else undefined. */
export function checkDns1123Label(name: string): string | undefined {
  if (name.length === 0) return 'must not be empty'
  if (name.length > 63) return 'must be no more than 63 characters'
  if (!DNS1123_LABEL.test(name)) {
    return "must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
  }
  return undefined
}

/** Returns a reason when `name` is not an RFC 1123 subdomain (object names), else undefined. */
export function checkDns1123Subdomain(name: string): string | undefined {
  if (name.length === 0) return 'must not be empty'
  if (name.length > 253) return 'must be no more than 253 characters'
  if (!DNS1123_SUBDOMAIN.test(name)) {
    return "must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
  }
  return undefined
}

/** A label key: an optional DNS subdomain prefix and '/', then a name of at most 63 characters. */
export function checkLabelKey(key: string): string | undefined {
  const slash = key.indexOf('/')
  const name = slash === -1 ? key : key.slice(slash + 1)
  if (slash !== -1) {
    const prefix = key.slice(0, slash)
    const bad = checkDns1123Subdomain(prefix)
    if (bad) return `prefix "${prefix}" ${bad}`
  }
  if (name.length === 0) return 'name part must not be empty'
  if (name.length > 63) return 'name part must be no more than 63 characters'
  if (!QUALIFIED_NAME_PART.test(name)) {
    return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
  }
  return undefined
}

export function checkLabelValue(value: string): string | undefined {
  if (value.length > 63) return 'must be no more than 63 characters'
  if (!LABEL_VALUE.test(value)) {
    return "must be empty or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
  }
  return undefined
}

/**
 * A port name (IANA_SVC_NAME, RFC 6335): at most 15 characters, lower case letters, digits
 * and '-', at least one letter, no leading, trailing or doubled '-'.
 */
export function checkPortName(name: string): string | undefined {
  if (name.length === 0) return 'must not be empty'
  if (name.length > 15) return 'must be no more than 15 characters'
  if (!/^[-a-z0-9]+$/.test(name)) return "must contain only lower case alphanumeric characters or '-'"
  if (!/[a-z]/.test(name)) return 'must contain at least one letter'
  if (name.startsWith('-') || name.endsWith('-')) return "must not begin or end with '-'"
  if (name.includes('--')) return "must not contain consecutive '-'"
  return undefined
}

/** The label Kubernetes puts on every namespace, naming it. */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name'

export function labelsFromRecord(record: Readonly<Record<string, string>> | undefined): Labels {
  return new Map(Object.entries(record ?? {}))
}

export function formatLabels(labels: Labels): string {
  return [...labels].map(([k, v]) => `${k}=${v}`).join(',')
}
