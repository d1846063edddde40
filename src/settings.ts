// A node's settings: DIR/settings.json, optional; every field optional.
//
//   {
//     "limits": { "maxBodyBytes": 16777216, "maxIdsPerGet": 1000, "maxListPage": 1000,
//                 "maxContentBytes": 65536, "maxAttachmentBytes": 16777216 },
//     "maxFutureSeconds": 900,                       // update-times further ahead are refused
//     "rateLimit": { "max": 3000, "windowSeconds": 60 }, // sync requests per client address; max 0 = off
//     "pullIntervalSeconds": 60,                      // how often pull peers (dipd peer add --pull) are pulled
//     "fetchOnMiss": false,                           // a get for ids this node lacks asks the peer their key is pinned to
//     "heapGrowingPercent": 100                       // dipd serve, and CLI commands that open DIR: V8 grows its heap to (1 + this/100) x the live data; 0 = V8's own (up to 4x)
//   }
//
// Defaults are PROTOCOL.md §1's; all limits are published in the manifest.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DipError } from './errors.js'
import { DEFAULT_LIMITS, type Limits } from './protocol/envelope.js'

export interface RateLimit {
  /** requests per window and client address; 0 = no limit */
  max: number
  windowSeconds: number
}

export interface Settings {
  limits: Limits
  maxFutureSeconds: number
  rateLimit: RateLimit
  pullIntervalSeconds: number
  fetchOnMiss: boolean
  /**
   * How far V8 lets the heap grow past the live data before it collects
   * (V8's --heap-growing-percent, set by `dipd serve`). V8's own choice is
   * up to 4x on a large machine: a bulk pull's ~50 MB of live data made a
   * 280-400 MB process. 100 (2x) keeps it near 220 MB for ~3% less
   * throughput (bench/pull.ts); 0 leaves V8's heuristics alone.
   */
  heapGrowingPercent: number
}

export const DEFAULT_SETTINGS: Settings = {
  limits: DEFAULT_LIMITS,
  maxFutureSeconds: 15 * 60,
  // A bulk pull makes ~3 requests per 1,000 models: 3,000 a minute lets one
  // client pull ~1M models a minute, far above what it can verify.
  rateLimit: { max: 3000, windowSeconds: 60 },
  pullIntervalSeconds: 60,
  fetchOnMiss: false,
  heapGrowingPercent: 100,
}

export const settingsPath = (dir: string) => join(dir, 'settings.json')

const positiveInt = (v: unknown) => Number.isSafeInteger(v) && (v as number) > 0

/** Merges settings over the defaults, refusing anything that is not a positive integer where one is due. */
export function resolveSettings(input: unknown): Settings {
  const bad = (what: string) => new DipError('DIP_USAGE', `settings: ${what}`)
  if (input === undefined) return DEFAULT_SETTINGS
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw bad('must be a JSON object')
  const s = input as { limits?: Record<string, unknown>; maxFutureSeconds?: unknown; rateLimit?: Record<string, unknown>; pullIntervalSeconds?: unknown; fetchOnMiss?: unknown; heapGrowingPercent?: unknown }
  const isObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v)
  if (s.limits !== undefined && !isObject(s.limits)) throw bad('limits must be an object of limits')
  if (s.rateLimit !== undefined && !isObject(s.rateLimit)) throw bad('rateLimit must be an object {max, windowSeconds}')
  const limits: Limits = { ...DEFAULT_LIMITS }
  for (const [k, v] of Object.entries(s.limits ?? {})) {
    if (!(k in DEFAULT_LIMITS)) throw bad(`unknown limit ${k}`)
    if (!positiveInt(v)) throw bad(`limits.${k} must be a positive integer`)
    ;(limits as unknown as Record<string, number>)[k] = v as number
  }
  const maxFutureSeconds = s.maxFutureSeconds ?? DEFAULT_SETTINGS.maxFutureSeconds
  if (!positiveInt(maxFutureSeconds)) throw bad('maxFutureSeconds must be a positive integer')
  const rateLimit = { ...DEFAULT_SETTINGS.rateLimit, ...(s.rateLimit ?? {}) }
  if (!Number.isSafeInteger(rateLimit.max) || (rateLimit.max as number) < 0) throw bad('rateLimit.max must be an integer ≥ 0')
  if (!positiveInt(rateLimit.windowSeconds)) throw bad('rateLimit.windowSeconds must be a positive integer')
  const pullIntervalSeconds = s.pullIntervalSeconds ?? DEFAULT_SETTINGS.pullIntervalSeconds
  if (!positiveInt(pullIntervalSeconds)) throw bad('pullIntervalSeconds must be a positive integer')
  const fetchOnMiss = s.fetchOnMiss ?? false
  if (typeof fetchOnMiss !== 'boolean') throw bad('fetchOnMiss must be true or false')
  const heapGrowingPercent = s.heapGrowingPercent ?? DEFAULT_SETTINGS.heapGrowingPercent
  if (!Number.isSafeInteger(heapGrowingPercent) || (heapGrowingPercent as number) < 0 || (heapGrowingPercent as number) > 1000) throw bad('heapGrowingPercent must be an integer from 0 to 1000')
  return { limits, maxFutureSeconds: maxFutureSeconds as number, rateLimit: rateLimit as RateLimit, pullIntervalSeconds: pullIntervalSeconds as number, fetchOnMiss, heapGrowingPercent: heapGrowingPercent as number }
}

export async function loadSettings(dir: string): Promise<Settings> {
  let text: string
  try {
    text = await readFile(settingsPath(dir), 'utf8')
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return DEFAULT_SETTINGS
    throw new DipError('DIP_DATA_INVALID', `cannot read ${settingsPath(dir)}`, { cause })
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (cause) {
    throw new DipError('DIP_USAGE', `${settingsPath(dir)} is not JSON`, { cause })
  }
  return resolveSettings(json)
}
