// DIP versions: `MAJOR.MINOR` (PROTOCOL.md §2). Same major = compatible; a
// newer minor's unknown elements are ignored (filters) or kept (content).
import { fail, ok, type Result } from '../errors.js'

export interface Version {
  readonly major: number
  readonly minor: number
}

const VERSION_RE = /^(\d{1,9})\.(\d{1,9})$/

export function parseVersion(text: string | undefined): Result<Version> {
  const m = text === undefined ? null : VERSION_RE.exec(text)
  if (!m) return fail('DIP_REQUEST_INVALID', `version must be MAJOR.MINOR, got ${JSON.stringify(text ?? null)}`)
  return ok({ major: Number(m[1]), minor: Number(m[2]) })
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
