// The filters the CLI, the local API and peer records take (`--model`,
// `--tag`, `--thread`, `--to`, `--kind`, `--since`, `--until`, `--allow`,
// `--deny`), and the model facets they narrow: one reading for local lists,
// pulls and pushes, so that no path drops a filter another one applies.
import { DipError } from '../errors.js'
import type { FacetFilter } from '../model/types.js'
import { formatId, parseIdText } from '../protocol/id.js'
import { EPOCH, parseFilterTime } from '../protocol/time.js'

type FilterCode = 'DIP_FILTER_INVALID' | 'DIP_USAGE'

/** A key as 64 hex, with or without its `ed25519::` prefix. */
const bareKey = (k: string) => k.replace(/^ed25519::/, '')

/** Filters as the CLI and local API take them. */
export interface LocalFilter {
  model?: string
  tags?: string[]
  thread?: string
  since?: string
  until?: string
  allow?: string[]
  deny?: string[]
  /** messages: to any of these keys (hex, or ed25519::hex) or groups (group:NAME) */
  to?: string[]
  /** messages: of any of these kinds */
  kinds?: string[]
}

/** A list of strings from a filter (the local API's JSON is untrusted). */
function strings(v: unknown, flag: string, code: FilterCode = 'DIP_FILTER_INVALID'): string[] {
  if (v === undefined) return []
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new DipError(code, `${flag}: a list of strings`)
  return v as string[]
}

/** Sender keys (--allow, --deny, a peer's policy, ban) as 64 hex, `ed25519::` taken off; undefined for none given. */
export function filterKeys(v: unknown, flag: string, code: FilterCode = 'DIP_FILTER_INVALID'): string[] | undefined {
  if (v === undefined) return undefined
  const keys = strings(v, flag, code).map(bareKey)
  for (const k of keys) if (!/^[0-9a-f]{64}$/.test(k)) throw new DipError(code, `${flag}: ${k.slice(0, 80)} is not a 64-hex key`)
  return keys
}

/** Keys as a list query takes them: a set, or undefined for no filter. */
const keySet = (keys: string[] | undefined): Set<string> | undefined => (keys ? new Set(keys) : undefined)

/** A filter time (--since, --until: text, or Unix seconds) as a time key; undefined for none, or the epoch. */
export function filterTime(v: unknown, flag: string): string | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'string' && typeof v !== 'number') throw new DipError('DIP_FILTER_INVALID', `${flag}: a time is text or Unix seconds`)
  const t = parseFilterTime(String(v))
  if (!t.ok) throw new DipError('DIP_FILTER_INVALID', `${flag}: ${t.error.message}`)
  return t.value === EPOCH ? undefined : t.value
}

/**
 * The filter's facets (posts: tag, thread; messages: to, kind), in the form
 * the store and the model's filterXml take; whether the model has them is
 * its filterXml's to say.
 */
export function facetsOf(f: LocalFilter): FacetFilter {
  const facets: FacetFilter = []
  const tags = strings(f.tags, '--tag')
  if (tags.length > 0) facets.push({ facet: 'tag', values: tags })
  if (f.thread !== undefined) {
    const id = parseIdText(String(f.thread))
    if (!id.ok) throw new DipError('DIP_FILTER_INVALID', `--thread: ${id.error.message}`)
    facets.push({ facet: 'thread', values: [formatId(id.value)] })
  }
  const to = strings(f.to, '--to')
  if (to.length > 0) facets.push({ facet: 'to', values: to.map(bareKey) })
  const kinds = strings(f.kinds, '--kind')
  if (kinds.length > 0) facets.push({ facet: 'kind', values: kinds })
  return facets
}

/**
 * A filter as the store's list query takes it (the model aside), each field
 * checked in the order the flags are listed: times as time keys, the
 * facets (`facets`: facetsOf, or a caller's stricter reading), sender keys
 * as sets.
 */
export function listQuery(f: LocalFilter, facets: (f: LocalFilter) => FacetFilter = facetsOf) {
  return {
    from: filterTime(f.since, '--since'),
    to: filterTime(f.until, '--until'),
    facets: facets(f),
    allow: keySet(filterKeys(f.allow, '--allow')),
    deny: keySet(filterKeys(f.deny, '--deny')),
  }
}
