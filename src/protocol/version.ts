// DIP versions: `MAJOR.MINOR` (PROTOCOL.md §2). Same major = compatible; a
// newer minor's unknown elements are ignored (filters) or kept (content).
import { fail, ok, type Result } from '../errors.js'

export interface Version {
  readonly major: number
  readonly minor: number
}

const VERSION_RE = /^(\d+)\.(\d+)$/

/**
 * PROTOCOL.md §2: any `^\d+\.\d+$`, however many digits. A part past 2^53
 * reads as the nearest double (Infinity past ~309 digits): still unequal to
 * every major dipd speaks and greater than every minor, which is all the
 * comparisons ask.
 */
export function parseVersion(text: string | undefined): Result<Version> {
  const m = text === undefined ? null : VERSION_RE.exec(text)
  if (!m) return fail('DIP_REQUEST_INVALID', `version must be MAJOR.MINOR, got ${JSON.stringify(text === undefined ? null : text.slice(0, 40))}`)
  return ok({ major: Number(m[1]), minor: Number(m[2]) })
}

/** A version as received, for an error's description (digits, but maybe megabytes of them). */
export function shownVersion(text: string): string {
  return text.length > 40 ? `${text.slice(0, 40)}…` : text
}

export function formatVersion(v: Version): string {
  return `${v.major}.${v.minor}`
}

/** true when a peer speaking `theirs` can be served by a node speaking `ours` */
export function isCompatible(ours: Version, theirs: Version): boolean {
  return ours.major === theirs.major
}

export function version(text: string): Version {
  const r = parseVersion(text)
  if (!r.ok) throw new TypeError(r.error.message)
  return r.value
}
