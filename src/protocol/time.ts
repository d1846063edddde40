// DIP times (PROTOCOL.md §5). Inside content: YYYY-MM-DDTHH:MM:SSZ with an
// optional fraction of 1..6 digits, UTC. Filters also accept
// `YYYY-MM-DD HH:MM:SS` (UTC) and integer Unix seconds.
//
// Times are compared as integer microseconds, never as the strings written.
// dipd holds a time as its "time key": the 20 decimal digits
// YYYYMMDDHHMMSSffffff. For years 0000..9999 its string order is exactly
// the order of the integer microseconds, with no float rounding (a JS number
// of microseconds is exact only within ±285 years of 1970).
import { fail, ok, type Result } from '../errors.js'

export type TimeKey = string

const CONTENT_TIME_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?Z$/
const FILTER_SPACE_RE = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$/
const UNIX_RE = /^\d{1,15}$/

export const EPOCH: TimeKey = '19700101000000000000'
export const MAX_TIME: TimeKey = '99991231235959999999'

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
const isLeap = (y: number) => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0

function fromParts(m: RegExpExecArray): TimeKey | undefined {
  const y = Number(m[1])
  const mo = Number(m[2])
  const d = Number(m[3])
  if (mo < 1 || mo > 12 || d < 1 || Number(m[4]) > 23 || Number(m[5]) > 59 || Number(m[6]) > 59) return undefined
  if (d > (mo === 2 && isLeap(y) ? 29 : DAYS[mo - 1]!)) return undefined
  // Joined, not added: one flat string, where + made a tree of five (models and list rows keep their keys until committed).
  return [m[1], m[2], m[3], m[4], m[5], m[6], (m[7] ?? '').padEnd(6, '0')].join('')
}

/** Parses a time inside content. */
export function parseContentTime(text: string): Result<TimeKey> {
  const m = CONTENT_TIME_RE.exec(text)
  const t = m ? fromParts(m) : undefined
  if (t === undefined) return fail('DIP_MODEL_INVALID', `not a DIP time: ${JSON.stringify(text.slice(0, 64))}`)
  return ok(t)
}

/** Parses a time in a list filter (the epoch, e.g. `0`, means unbounded: callers check `=== EPOCH`). */
export function parseFilterTime(text: string): Result<TimeKey> {
  if (UNIX_RE.test(text)) return ok(timeKeyFromMs(Number(text) * 1000))
  const m = CONTENT_TIME_RE.exec(text) ?? FILTER_SPACE_RE.exec(text)
  const t = m ? fromParts(m) : undefined
  if (t === undefined) return fail('DIP_FILTER_INVALID', `not a filter time: ${JSON.stringify(text.slice(0, 64))}`)
  return ok(t)
}

export function timeKeyFromMs(ms: number): TimeKey {
  if (!(ms < 253402300800000)) return MAX_TIME // past 9999-12-31T23:59:59.999Z
  const iso = new Date(ms).toISOString()
  return iso.slice(0, 4) + iso.slice(5, 7) + iso.slice(8, 10) + iso.slice(11, 13) + iso.slice(14, 16) + iso.slice(17, 19) + iso.slice(20, 23) + '000'
}

/** A content time for now, millisecond precision. */
export function formatNow(): string {
  return new Date().toISOString()
}
