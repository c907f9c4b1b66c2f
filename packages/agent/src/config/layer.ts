/**
 * One source of configuration values: the file, the environment or the flags. Values are kept
 * by the dotted path of their field, so that layers merge field by field and a problem found
 * after merging can still name where the offending value came from.
 */
import type { ValidationIssue } from '@flatnet/core'
import { formatPath, type PathSegment } from '@flatnet/policy'

/** Where a value came from, ready to be completed into an issue by a message. */
export type IssueOrigin = Omit<ValidationIssue, 'message'>

export interface ConfigLayer {
  /** Field path (`wireguard.listenPort`, `workloads`) -> value, already checked. */
  readonly values: ReadonlyMap<string, unknown>
  /** The origin of the value at `path` (plus `sub`, e.g. a list index inside it). */
  where(path: string, sub?: readonly PathSegment[]): IssueOrigin
}

export function segments(path: string): PathSegment[] {
  return path === '' ? [] : path.split('.')
}

/** The origin of a value given by a named thing without lines: a variable, a flag, a default. */
export function namedOrigin(name: string, path: string, sub: readonly PathSegment[] = []): IssueOrigin {
  return { file: name, line: 0, column: 0, path: formatPath([...segments(path), ...sub]) }
}

/** A layer whose values each come from one named place: a variable or a flag per field. */
export function namedLayer(values: ReadonlyMap<string, unknown>, nameOf: (path: string) => string): ConfigLayer {
  return { values, where: (path, sub = []) => namedOrigin(nameOf(path), path, sub) }
}

export function issueAt(origin: IssueOrigin, message: string): ValidationIssue {
  return { ...origin, message }
}
