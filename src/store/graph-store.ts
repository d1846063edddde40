// The graph store: the model graph in an ordered key-value store
// (LevelDB through `level`, or `memory-level` as the in-memory twin; both
// are abstract-level databases, so one implementation serves both and the
// shared suite in test/suites/ runs against each).
//
// Key layout (UTF-8 keys; SEQ is the store-order number as 16 hex digits;
// \0 separates free-text parts, which XML text can never contain):
//   I!<id>                           current version of an id: Row (JSON; its content hash, SEQ, the place of its
//                                    bytes in the model log (below), …; id and sender key come from the key)
//   S!<SEQ>                          store order: the id whose current version was stored at SEQ
//   F!<facet>!<value>\0<SEQ>         facet index (tag, thread): '' (the id is S!<SEQ>'s; layout 4 wrote it here too)
//   K!<key>!<SEQ>                    sender-key index: ''
//   R!<to>\0<kind>\0<from>           graph edge, backward (replies of a thread, …); the forward
//                                    edges are the row's links (l); stores written before
//                                    2026-11-23 also hold L!<from>\0<kind>\0<to>, which nothing read
//   D!<target>                       a link target not held yet (id or blob hash)
//   B!<hash>                         attachment bytes;  BM!<hash>  its mimetype
//   C!<name>                         a pull checkpoint (the peer's durable cursor)
//   W!<name>\0<id>                   an id that pull listed and its get left out: "<hash> <time key>", asked again next time
//   P!<base URL>                     a peer: pinned node key and life, proof, sender policy, push/pull, counts (JSON)
//   Q!<base URL>                     a push peer's outbox: the store-order position it acknowledged (JSON)
//   N!<key>                          a banned sender key
//   X!seq X!store-id X!local-id      counters and the store's own id
//   X!layout                         the key layout (LAYOUT)
//   X!dead!<segment>                 bytes of replaced or banned versions in a model log segment (decimal)
//   X!log-end                        "<segment> <byte>": the end of the last bytes a batch named (the log may not be shorter)
//   Z!<key>!<segment>!<offset>       bytes of a version the key signed that a batch replaced or banned: their length (decimal);
//                                    a ban zeroes every one of its key's (a replaced version stays readable till then)
//
// Every commit writes rows, indexes, edges and an optional checkpoint in one
// atomic batch, decided under one writer lock: a crash leaves all of a batch
// or none of it.
//
// The model log (model-log.ts): versions are addressed by content hash
// (rows, lists, wanted, dedup), but their bytes, the model XML as served,
// are appended in store order to segment files of their own (`models/` in
// the store's folder), and each row records their place. Next to the rows,
// whose keys are random, every one of LevelDB's compactions rewrote them
// (with them the puller's compaction thread spent ~45 µs per post at N =
// 100,000; without them ~20); in a LevelDB of their own (layout 3) they
// still went through its log, memtable and tables. A commit writes the new
// bytes first and syncs them, then its batch: a crash between leaves bytes
// that no row names, never a row without its bytes. The in-memory twin keeps
// them in memory. Replacing or banning a version counts its bytes as dead
// in their segment (X!dead!, in the same batch); opening the store compacts
// a segment once half of it is dead (compactLog).
//
// Older layouts kept model bytes under M!<hash> in the store (1), under
// V!<SEQ> in the store (2) or in a LevelDB in `values/` (3); opening one
// moves them into the model log (migrateModelBytes), a batch at a time, so a
// crash loses nothing.
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { AbstractBatchOperation, AbstractChainedBatchWriteOptions, AbstractLevel } from 'abstract-level'
import { Level } from 'level'
import { MemoryLevel } from 'memory-level'
import { DipError } from '../errors.js'
import type { FacetFilter, Link } from '../model/types.js'
import type { StagedModel } from '../model/signed.js'
import { FileModelLog, MemoryModelLog, type ModelLog, type Place, type SegmentedLog } from './model-log.js'

/** The store's record of one model version. */
export interface Row {
  /** global id, text form (not stored in the row: its key holds it) */
  i: string
  /** content hash */
  h: string
  /** store-order number */
  s: number
  /** where its bytes are in the model log (undefined only for a row whose bytes an old layout had lost) */
  p?: Place | undefined
  /** model name and version as received */
  n: string
  v: string
  /** update-time as a time key (compares as integer µs), and as written */
  u: string
  t: string
  /** sender key (not stored in the row: the id holds it) */
  k: string
  /** facets */
  f: Record<string, string[]>
  /** link targets (kind \0 target) */
  l: string[]
  /** where it came from: the peer's base URL, or its node key as a put named it (push skips sending it back) */
  o?: string
}

/** What a node knows of a peer it syncs with (trust on first use, PROTOCOL.md §8). */
export interface PeerRecord {
  url: string
  /** pinned node key `ed25519::<hex>` (undefined until the first successful sync), and its life */
  key?: string | undefined
  life: number
  pinnedAt?: string | undefined
  lastSync?: string | undefined
  /** a proof checked for the URL's host */
  proof?: { turf: string; life: number } | undefined
  /** sender keys (hex) taken from this peer: only these / never these */
  allow?: string[] | undefined
  deny?: string[] | undefined
  pulls: number
  stored: number
  rejected: number
  /** a pool or follower peer: offer it every newly stored model that passes `filter` (dipd peer add --push) */
  push?: boolean | undefined
  /** pull from it on a schedule and when it pings (dipd peer add --pull) */
  pull?: boolean | undefined
  /** what to push to / pull from it (tags, thread, since, until, allow, deny, model) */
  filter?: Record<string, unknown> | undefined
}

/** The outbox of a push peer: the store-order position it acknowledged, and how delivery goes. */
export interface PushState {
  /** every model stored up to this store-order number was offered and answered */
  ackSeq: number
  pushed: number
  failures: number
  lastError?: string | undefined
  /** ISO time of the next attempt while backing off */
  nextAttempt?: string | undefined
}

export type CommitStatus = 'stored' | 'duplicate' | 'stale'

/** What a pull writes with a batch of models, under its checkpoint's name. */
export interface CheckpointWrite {
  name: string
  /** the peer's cursor to keep (undefined: the kept one stays) */
  cursor?: string | undefined
  /** listed ids the get answer left out, to ask for again the next time (W!) */
  later?: Want[] | undefined
  /** ids asked for again and done with: held now, or left out once more */
  settled?: string[] | undefined
}

/** A pull's checkpoint, written in the same batch as the models; or a function asked for it inside the commit. */
export type Checkpoint = CheckpointWrite | (() => CheckpointWrite | undefined)

export interface ListQuery {
  model: string
  /** inclusive time key; undefined = unbounded */
  from?: string | undefined
  /** exclusive time key; undefined = unbounded */
  to?: string | undefined
  facets: FacetFilter
  allow?: Set<string> | undefined
  deny?: Set<string> | undefined
  /** list rows stored after this store-order number */
  afterSeq: number
  limit: number
}

/** What a list page gives of a row: what list answers show, and what filters but facets read. */
export type ListRow = Pick<Row, 'i' | 'h' | 's' | 'n' | 'v' | 'u' | 't' | 'k'>

export interface ListPage {
  rows: ListRow[]
  /** true iff more matching rows follow the page */
  more: boolean
}

const laterKey = (checkpoint: string, id: string) => `W!${checkpoint}\0${id}`

export interface Want {
  id: string
  hash: string
  /** update-time key */
  timeKey: string
}

type Db = AbstractLevel<any, string, string>
type Op = AbstractBatchOperation<Db, string, string>

/** getMany: keys per part at least, parts at most (libuv's pool has 4 threads) */
const GET_PART = 128
const GET_PARTS = 4
/** Keys per part of a read of n keys: all of them below two parts' worth. */
const partSize = (n: number) => (n < 2 * GET_PART ? n : Math.ceil(n / Math.min(GET_PARTS, Math.floor(n / GET_PART))))

const seqKey = (n: number) => n.toString(16).padStart(16, '0')
/** The store-order entry of SEQ `n` (its value is the id: commit writes it, versionDeletes drops it). */
const orderKey = (n: number) => `S!${seqKey(n)}`
const SEQ_END = 'g' // sorts after every hex digit

/** Which version of an id wins (PROTOCOL.md §4): greater update-time, then greater hash. */
export function newerThan(a: { u: string; h: string }, b: { u: string; h: string }): boolean {
  return a.u !== b.u ? a.u > b.u : a.h > b.h
}

/**
 * A row as stored under I!<id>: without its id and sender key, which the
 * key holds (a third less to write and compact). Rows written before
 * 2026-11-23 hold them too; parseRow reads both.
 */
function rowJson(r: Row): string {
  // Fields named one by one, in the order servedRow reads (h, s, n, p first); a little faster than an object rest.
  const { h, s, n, p, v, u, t, f, l, o } = r
  return JSON.stringify(o === undefined ? { h, s, n, p, v, u, t, f, l } : { h, s, n, p, v, u, t, f, l, o })
}

function parseRow(id: string, json: string): Row {
  const r = JSON.parse(json) as Row
  r.i = id
  r.k = senderKey(id)
  return r
}

/**
 * What a get answer needs of a row (see GraphStore.#servedRows): id, SEQ,
 * model name, the place of its bytes, and links, which are left empty when
 * it links no attachment (the only links an answer reads).
 */
export type ServedRow = Pick<Row, 'i' | 's' | 'n' | 'p' | 'l'>

const NO_LINKS: string[] = []

/**
 * SEQ, model name and place read off a row's JSON of id `id` (rowHead), for
 * a row that links no attachment; undefined when the JSON is not exactly in
 * the form commit writes (the caller parses it then).
 */
export function servedRow(id: string, json: string): ServedRow | undefined {
  if (json.indexOf('"attachment\\u0000') !== -1) return undefined
  const head = rowHead(json)
  if (head === undefined) return undefined
  const place = json.slice(head.pAt, head.pEnd).split(',').map(Number)
  if (place.length !== 3 || !place.every(Number.isSafeInteger)) return undefined
  return { i: id, s: head.s, n: head.n, p: place as Place, l: NO_LINKS }
}

/** A JSON string value at `at` (its opening quote) that holds no escape; undefined otherwise. */
function plainJsonString(json: string, at: number): string | undefined {
  if (json.charCodeAt(at) !== 0x22) return undefined
  const end = json.indexOf('"', at + 1)
  const v = end === -1 ? undefined : json.slice(at + 1, end)
  return v === undefined || v.indexOf('\\') !== -1 ? undefined : v
}

/**
 * The head of a row's JSON as commit writes it, {"h":…,"s":…,"n":…,"p":[…]:
 * hash, SEQ, model name, and where the place's numbers stand (pAt to pEnd,
 * its closing bracket); undefined for JSON in another form, or a value with
 * an escape in it (a name with one is never the registry's: JSON.parse reads it).
 */
function rowHead(json: string): { h: string; s: number; n: string; pAt: number; pEnd: number } | undefined {
  if (!json.startsWith('{"h":')) return undefined
  const h = plainJsonString(json, 5)
  if (h === undefined || !json.startsWith(',"s":', h.length + 7)) return undefined
  const sAt = h.length + 12
  const sEnd = json.indexOf(',"n":', sAt)
  const seq = sEnd === -1 ? '' : json.slice(sAt, sEnd)
  if (!/^[1-9][0-9]{0,15}$/.test(seq)) return undefined
  const n = plainJsonString(json, sEnd + 5)
  if (n === undefined || n === '' || !json.startsWith(',"p":[', sEnd + n.length + 7)) return undefined
  const pAt = sEnd + n.length + 13
  const pEnd = json.indexOf(']', pAt)
  return pEnd === -1 ? undefined : { h, s: Number(seq), n, pAt, pEnd }
}

/**
 * What a list shows of a row (ListRow), read off its JSON as commit writes
 * it: rowHead, then "v", "u" and "t", then facets and links, which a list
 * without facet filters does not read. Parsing each row whole was a tenth
 * of a list page's CPU. Undefined for JSON in another form (the caller
 * parses it then).
 */
export function listRow(id: string, json: string): ListRow | undefined {
  const head = rowHead(json)
  if (head === undefined || !json.startsWith(',"v":', head.pEnd + 1)) return undefined
  const v = plainJsonString(json, head.pEnd + 6)
  const uAt = head.pEnd + 6 + (v?.length ?? 0) + 2
  if (v === undefined || !json.startsWith(',"u":', uAt)) return undefined
  const u = plainJsonString(json, uAt + 5)
  const tAt = uAt + 5 + (u?.length ?? 0) + 2
  if (u === undefined || !json.startsWith(',"t":', tAt)) return undefined
  const t = plainJsonString(json, tAt + 5)
  if (t === undefined || !json.startsWith(',"f":', tAt + 5 + t.length + 2)) return undefined
  return { i: id, h: head.h, s: head.s, n: head.n, v, u, t, k: senderKey(id) }
}

/** A row as a get answer needs it (servedRow), else parsed whole. */
const servedOrWhole = (id: string, json: string): ServedRow => servedRow(id, json) ?? parseRow(id, json)
/** A row as a list needs it (listRow), else parsed whole. */
const listedOrWhole = (id: string, json: string): ListRow => listRow(id, json) ?? parseRow(id, json)

/** The key in a global id's text (`type::key::local-id`). */
function senderKey(id: string): string {
  const at = id.indexOf('::') + 2
  return id.slice(at, id.indexOf('::', at))
}

/** A row's index keys but S!: sender key and facets, each ending with the SEQ (their values are empty). */
function indexKeys(r: Row): string[] {
  const seq = seqKey(r.s)
  const keys = [`K!${r.k}!${seq}`]
  for (const [facet, values] of Object.entries(r.f)) for (const v of values) keys.push(`F!${facet}!${v}\0${seq}`)
  return keys
}

/** The backward edges of a row (its links are the forward ones); with `legacy`, also the L! keys older stores wrote. */
function edgeKeys(r: Row, legacy = false): string[] {
  const keys: string[] = []
  for (const l of r.l) {
    const [kind, target] = l.split('\0') as [string, string]
    keys.push(`R!${target}\0${kind}\0${r.i}`)
    if (legacy) keys.push(`L!${r.i}\0${kind}\0${target}`)
  }
  return keys
}

/**
 * Every entry of one stored version but its I! row: indexes and edges (and
 * the U! row stores written before 2026-11 kept, which nothing read). Its
 * bytes stay in the model log, named by no row.
 */
function versionDeletes(r: Row): Op[] {
  return [`U!${r.u}!${r.i}`, orderKey(r.s), ...indexKeys(r), ...edgeKeys(r, true)].map((key) => ({ type: 'del' as const, key }))
}

/** The tail segment of the model log is compacted on open once it is half dead and at least this large. */
const COMPACT_TAIL_MIN = 64 * 1024 * 1024

/** Batch operations that set dead-byte counts of model log segments (undefined: drop the count). */
function deadOps(counts: Map<number, number | undefined>): Op[] {
  const ops: Op[] = []
  for (const [seg, n] of counts) ops.push(n === undefined ? { type: 'del', key: `X!dead!${seg}` } : { type: 'put', key: `X!dead!${seg}`, value: String(n) })
  return ops
}

/**
 * Key layouts: 1 (no X!layout) kept model bytes under M!<hash> in the store,
 * 2 under V!<SEQ> in the store, 3 in a LevelDB of their own (`values/`;
 * 2026-11-23, briefly each), 4 in the model log. 5 leaves the values of
 * the F! and K! index entries empty: their keys end with the SEQ, and the
 * id is S!<SEQ>'s (a third fewer bytes to write and compact in a pull).
 * Layout 4's ids there are not read, so a layout 4 store needs no move;
 * an older dipd refuses a layout 5 store, whose empty values it would read
 * as ids.
 */
const LAYOUT = '5'
const OLD_LAYOUTS = new Set([undefined, '2', '3', '4'])

/**
 * Moves the model bytes of a layout 1, 2 or 3 store into the model log, the
 * current rows' a batch at a time: each batch's bytes are written and synced
 * before its rows name them and its old keys are dropped, so a crash midway
 * leaves every model readable and the next open goes on (rows that name a
 * place are done). `values` is the layout 3 LevelDB, when there is one.
 * Bytes no row names stay where they are.
 */
async function migrateModelBytes(db: Db, log: ModelLog, values: Db | undefined): Promise<void> {
  const valueKey = (r: Row) => `V!${seqKey(r.s)}`
  const read = async (rows: Row[]) => {
    const v = rows.map(valueKey)
    const inValues = values ? await values.getMany(v) : []
    const inDb = await db.getMany([...v, ...rows.map((r) => `M!${r.h}`)])
    return rows.map((_, n) => inValues[n] ?? inDb[n] ?? inDb[rows.length + n])
  }
  await moveRows(db, log, (r) => r.p === undefined, read, (r) => [
    { type: 'del', key: valueKey(r) },
    { type: 'del', key: `M!${r.h}` },
  ])
  await db.put('X!layout', LAYOUT)
}

/**
 * Gives the rows `pick` selects new places in the model log, a thousand
 * rows at a time: each batch's bytes (`read`; undefined leaves a row as it
 * is) are added and synced before one LevelDB batch renames the rows, with
 * `also`'s operations for each row moved. A crash midway leaves every row
 * naming bytes that are there. Returns the rows left as they were.
 */
async function moveRows(db: Db, log: ModelLog, pick: (r: Row) => boolean, read: (rows: Row[]) => Promise<(string | Buffer | undefined)[]>, also: (r: Row) => Op[] = () => []): Promise<Row[]> {
  const left: Row[] = []
  const it = db.iterator({ gt: 'I!', lt: 'I"' })
  try {
    for (;;) {
      const entries = await it.nextv(1000)
      if (entries.length === 0) break
      const rows = entries.map(([key, json]) => parseRow(key.slice(2), json)).filter(pick)
      if (rows.length === 0) continue
      const bytes = await read(rows)
      const ops: Op[] = []
      let last: Place | undefined
      rows.forEach((r, n) => {
        const b = bytes[n]
        if (b === undefined) return void left.push(r)
        r.p = last = log.add(typeof b === 'string' ? Buffer.from(b) : b)
        ops.push({ type: 'put', key: `I!${r.i}`, value: rowJson(r) }, ...also(r))
      })
      if (last) ops.push(logEndOp(last))
      await log.flush()
      await writeBatch(db, ops)
    }
  } finally {
    await it.close()
  }
  return left
}

/** X!log-end: where the last bytes a batch names end (checked on open against the log's files). */
const logEndOp = (p: Place): Op => ({ type: 'put', key: 'X!log-end', value: `${p[0]} ${p[1] + p[2]}` })

/** Z!: the bytes of a version its key signed that a batch made dead (replaced or banned), for a ban of the key to zero. */
const scrubOp = (keyHex: string, p: Place): Op => ({ type: 'put', key: `Z!${keyHex}!${String(p[0]).padStart(8, '0')}!${String(p[1]).padStart(12, '0')}`, value: String(p[2]) })
const placeOfScrubKey = (key: string, len: string): Place => {
  const [, , seg, off] = key.split('!')
  return [Number(seg), Number(off), Number(len)]
}

/**
 * Every write of a running store reaches the disk before it is acknowledged:
 * an OS crash or a power cut loses no commit a client was told of (the
 * model log is synced before each batch, and so is LevelDB's own log now).
 */
const SYNC = { sync: true } as const

/**
 * One atomic batch, built op by op (a chained batch): classic-level copies
 * each key and value as it is added, where an array batch first reads every
 * op's properties from JavaScript, at twice the main thread's time (3,000
 * rows: 1.7 vs 3.3 ms).
 */
async function writeBatch(db: Db, ops: Op[], options: AbstractChainedBatchWriteOptions = {}): Promise<void> {
  const batch = db.batch()
  for (const o of ops) {
    if (o.type === 'del') batch.del(o.key)
    else if ('valueEncoding' in o) batch.put(o.key, o.value, { valueEncoding: o.valueEncoding } as never)
    else batch.put(o.key, o.value)
  }
  await batch.write(options)
}

/** Opens one LevelDB of a store, with typed errors. */
async function openDb(dir: string, options: { writeBufferSize: number; cacheSize?: number }): Promise<Db> {
  const db = new Level<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8', ...options })
  try {
    await db.open()
  } catch (cause) {
    const code = (cause as { cause?: { code?: string } }).cause?.code
    if (code === 'LEVEL_LOCKED') throw new DipError('DIP_DATA_LOCKED', `the store in ${dir} is held by another process`, { cause })
    throw new DipError('DIP_DATA_INVALID', `cannot open the store in ${dir}`, { cause })
  }
  return db as unknown as Db
}

export class GraphStore {
  readonly #db: Db
  /** model bytes */
  readonly #log: ModelLog
  #lastSeq = 0
  #storeId = ''
  #lock: Promise<unknown> = Promise.resolve()
  /** the first write that failed: the store takes no more (#write) */
  #failed: Error | undefined
  readonly #listeners = new Set<(lastSeq: number) => void>()

  /** dead bytes by model log segment (X!dead!) */
  readonly #dead = new Map<number, number>()

  constructor(db: Db, log: ModelLog) {
    this.#db = db
    this.#log = log
  }

  /**
   * A store on LevelDB in `dir`, its model bytes in the model log in
   * `dir`/models. The options size the log's segments (tests make them small).
   */
  static async openLevel(dir: string, options: { segmentMax?: number; compactTailMin?: number } = {}): Promise<GraphStore> {
    // A larger write buffer (memtable) than LevelDB's 4 MB halves the CPU it
    // spends on bulk commits (measured by bench/pull-stages.ts): the rows'
    // keys are random, so every flushed table is merged with all of the
    // level below, and fewer flushes mean fewer such rewrites (compaction per
    // pulled post at N = 100,000: 16 MB ~19 µs, 24 MB ~16, 32 MB ~12.5). It
    // costs up to twice this in RSS, and the puller's peak is near its 300
    // MB: with 32 MB a pull of 100,000 was ~3% faster, but one puller's
    // high-water mark reached 308.5 MB (LevelDB compacting after the pull
    // maps the table files it reads into the process).
    const db = await openDb(dir, { writeBufferSize: 24 * 1024 * 1024 })
    let models: FileModelLog
    try {
      models = await FileModelLog.open(join(dir, 'models'), options.segmentMax)
    } catch (e) {
      await db.close()
      throw e
    }
    const store = await GraphStore.#init(db, models, join(dir, 'values'))
    try {
      await store.#checkLog(models, dir)
      await store.#compactLog(models, options.compactTailMin ?? COMPACT_TAIL_MIN)
      await store.#finishScrubs(models)
    } catch (e) {
      await store.close()
      throw e
    }
    return store
  }

  /** The in-memory twin (tests, dry runs); `log` holds its model bytes (a test may hand one in that fails). */
  static async openMemory(log: ModelLog = new MemoryModelLog()): Promise<GraphStore> {
    const db = new MemoryLevel<string, string>({ keyEncoding: 'utf8', valueEncoding: 'utf8' })
    await db.open()
    return GraphStore.#init(db, log)
  }

  /** `valuesDir`: where a layout 3 store kept its model bytes (none for the in-memory twin). */
  static async #init(db: Db, log: ModelLog, valuesDir?: string): Promise<GraphStore> {
    const store = new GraphStore(db, log)
    try {
      const [seq, id, layout] = await db.getMany(['X!seq', 'X!store-id', 'X!layout'])
      store.#lastSeq = seq === undefined ? 0 : Number(seq)
      if (layout !== LAYOUT) {
        if (!OLD_LAYOUTS.has(layout)) throw new DipError('DIP_DATA_INVALID', `the store's key layout ${layout} is newer than this dipd's (${LAYOUT})`)
        if (layout === '4') await db.put('X!layout', LAYOUT)
        else {
          const values = valuesDir !== undefined && existsSync(valuesDir) ? await openDb(valuesDir, { writeBufferSize: 4 * 1024 * 1024 }) : undefined
          try {
            await migrateModelBytes(db, log, values)
          } finally {
            await values?.close()
          }
        }
      }
      // X!layout says 4 or more only once every row names its place: what is left of layout 3 can go.
      if (valuesDir !== undefined) await rm(valuesDir, { recursive: true, force: true })
      if (id === undefined) {
        store.#storeId = randomBytes(8).toString('hex')
        await db.put('X!store-id', store.#storeId)
      } else store.#storeId = id
      for await (const [key, n] of db.iterator({ gt: 'X!dead!', lt: 'X!dead"' })) store.#dead.set(Number(key.slice('X!dead!'.length)), Number(n))
    } catch (e) {
      await store.close()
      throw e
    }
    return store
  }

  /**
   * Compacts every segment of the model log at least half of whose bytes
   * are dead (the tail too, once it holds `tailMin` bytes; a new tail is
   * begun first): the live models are copied to the tail and their rows
   * name the copies, a batch at a time, then the segment is removed. A crash
   * midway loses nothing: rows name the old bytes or synced copies, and the
   * next open goes on. Run on open, before anything reads the store.
   */
  async #compactLog(log: SegmentedLog, tailMin: number): Promise<void> {
    const segments = await log.segments()
    const tail = segments.at(-1)?.seg
    const present = new Set(segments.map((s) => s.seg))
    // Counts of segments removed by an open that crashed before dropping them.
    for (const seg of this.#dead.keys()) if (!present.has(seg)) await this.#setDead(new Map([[seg, undefined]]))
    const victims = new Set<number>()
    for (const { seg, size } of segments) if (size > 0 && 2 * (this.#dead.get(seg) ?? 0) >= size && (seg !== tail || size >= tailMin)) victims.add(seg)
    if (victims.size === 0) return
    if (tail !== undefined && victims.has(tail)) log.roll()
    const left = await moveRows(this.#db, log, (r) => r.p !== undefined && victims.has(r.p[0]), (rows) => log.read(rows.map((r) => r.p)))
    // Bytes a row names but that do not read as a model: their segment stays, as it is.
    const unreadable = new Set(left.map((r) => r.p![0]))
    for (const seg of victims) {
      if (unreadable.has(seg)) continue
      await log.remove(seg)
      await this.#setDead(new Map([[seg, undefined]]))
    }
  }

  /**
   * On open, the model log against what the store names. The last bytes a
   * batch named (X!log-end; a compaction moves old models past the newest
   * one's) and the newest row's (stores written before X!log-end) must be
   * there: a store whose `models/` folder was lost or cut short (a partial
   * copy) is refused, not served with bytes appended where the lost ones
   * were. Bytes past X!log-end were written by a commit that never wrote its
   * batch (a crash): no row names them, so they are cut off.
   */
  async #checkLog(log: SegmentedLog, dir: string): Promise<void> {
    const logEnd = await this.#db.get('X!log-end')
    const named = logEnd === undefined ? undefined : (logEnd.split(' ').map(Number) as [number, number])
    const [id] = await this.#db.values({ gt: 'S!', lt: `S!${SEQ_END}`, reverse: true, limit: 1 }).all()
    const p = id === undefined ? undefined : (await this.rows([id]))[0]?.p
    const newest: [number, number] | undefined = p === undefined ? undefined : [p[0], p[1] + p[2]]
    const segments = await log.segments()
    for (const end of [named, newest]) {
      if (end === undefined) continue
      const seg = segments.find((s) => s.seg === end[0])
      if (seg === undefined || end[1] > seg.size) {
        throw new DipError('DIP_DATA_INVALID', `the store names model bytes that ${join(dir, 'models')} lacks (segment ${end[0]}, up to byte ${end[1]}): restore the store folder whole`)
      }
    }
    // A newest row past X!log-end: the store was written by a dipd that kept none since; cut nothing.
    const stale = named !== undefined && newest !== undefined && (newest[0] > named[0] || (newest[0] === named[0] && newest[1] > named[1]))
    if (named !== undefined && !stale) await log.cut(named[0], named[1])
  }

  /**
   * Zeroes every version of a banned key the log still holds (its Z! rows:
   * what the ban removed, and what those replaced before), then drops the
   * rows. A crash in between leaves them, and opening the store finishes
   * the job (#finishScrubs).
   */
  async #scrubKey(keyHex: string): Promise<void> {
    const entries = await this.#db.iterator({ gt: `Z!${keyHex}!`, lt: `Z!${keyHex}"` }).all()
    if (entries.length === 0) return
    await this.#write(async () => {
      await this.#log.scrub(entries.map(([key, len]) => placeOfScrubKey(key, len)))
      await writeBatch(this.#db, entries.map(([key]) => ({ type: 'del', key })), SYNC)
    })
  }

  /**
   * On open: the zeroing a crash cut short (Z! rows of banned keys), and the
   * Z! rows of segments a compaction removed (nothing left to zero there).
   */
  async #finishScrubs(log: SegmentedLog): Promise<void> {
    const segments = new Set((await log.segments()).map((s) => s.seg))
    const stale: Op[] = []
    for await (const [key, len] of this.#db.iterator({ gt: 'Z!', lt: 'Z"' })) if (!segments.has(placeOfScrubKey(key, len)[0])) stale.push({ type: 'del', key })
    if (stale.length > 0) await this.#writeOps(stale)
    for (const k of await this.bannedKeys()) await this.#scrubKey(k)
  }

  /** Sets dead-byte counts (undefined drops one). */
  async #setDead(counts: Map<number, number | undefined>): Promise<void> {
    await this.#writeOps(deadOps(counts))
    this.#deadWritten(counts)
  }

  /** The dead-byte counts with the bytes of these versions added (for the batch that replaces or removes them). */
  #deadAfter(rows: Row[]): Map<number, number> {
    const counts = new Map<number, number>()
    for (const r of rows) if (r.p !== undefined) counts.set(r.p[0], (counts.get(r.p[0]) ?? this.#dead.get(r.p[0]) ?? 0) + r.p[2])
    return counts
  }

  #deadWritten(counts: Map<number, number | undefined>): void {
    for (const [seg, n] of counts) if (n === undefined) this.#dead.delete(seg)
    else this.#dead.set(seg, n)
  }

  /** Random per store, so that a cursor from another node is recognised as foreign. */
  get storeId(): string {
    return this.#storeId
  }

  get lastSeq(): number {
    return this.#lastSeq
  }

  /** The durable list cursor for the position after store-order number `seq` (PROTOCOL.md §6). */
  cursor(seq: number): string {
    return `${this.#storeId}.${seq}`
  }

  /** Reads a cursor of this store; undefined for a foreign, malformed or future one. */
  readCursor(cursor: string): number | undefined {
    const dot = cursor.indexOf('.')
    if (dot === -1 || cursor.slice(0, dot) !== this.#storeId) return undefined
    const digits = cursor.slice(dot + 1)
    if (!/^(0|[1-9][0-9]{0,15})$/.test(digits)) return undefined
    const seq = Number(digits)
    return seq <= this.#lastSeq ? seq : undefined
  }

  async close(): Promise<void> {
    await this.#lock.catch(() => {})
    await this.#db.close()
    await this.#log.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  /** Writes a commit's operations: the model bytes it added first, synced, then its batch (see the header). */
  #batch(ops: Op[]): Promise<void> {
    return this.#write(async () => {
      await this.#log.flush()
      await writeBatch(this.#db, ops, SYNC)
    })
  }

  /** Writes operations that name no model bytes, as one synced batch. */
  #writeOps(ops: Op[]): Promise<void> {
    return this.#write(() => writeBatch(this.#db, ops, SYNC))
  }

  /**
   * Runs one write. The first that fails (a full disk, say) stops the store
   * writing until it is opened again: LevelDB 1.20 would put the writes
   * after it behind a torn record in its log, and its recovery drops what
   * follows such a record, so commits acknowledged since would be lost and
   * local ids handed out again. Reads go on.
   */
  async #write<T>(write: () => Promise<T>): Promise<T> {
    if (this.#failed !== undefined) {
      throw new DipError('DIP_UNAVAILABLE', `the store takes no writes since one failed (${this.#failed.message}): restart the node once the cause is mended`, { cause: this.#failed })
    }
    try {
      return await write()
    } catch (cause) {
      this.#failed = cause instanceof Error ? cause : new Error(String(cause))
      throw new DipError('DIP_UNAVAILABLE', `a write to the store failed (${this.#failed.message}); it takes no more until the node restarts`, { cause })
    }
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn, fn)
    this.#lock = run.catch(() => {})
    return run
  }

  /**
   * Decides each model in order (stored / duplicate / stale) and writes the
   * stored ones with all their rows, plus the checkpoint, in one batch.
   * Models must already be verified.
   */
  commit(models: StagedModel[], checkpoint?: Checkpoint, origin?: string): Promise<CommitStatus[]> {
    return this.#exclusive(() => this.#commitLocked(models, checkpoint, origin))
  }

  // A method, not a closure made per commit: V8 keeps the optimised code of
  // a long-lived function, while a fresh closure's was compiled again (~150
  // ms on a helper thread) after GCs. Loops, not spreads: spreads of arrays
  // of different element kinds deoptimised it.
  async #commitLocked(models: StagedModel[], checkpoint: Checkpoint | undefined, origin: string | undefined): Promise<CommitStatus[]> {
    // A function is asked inside the writer lock, so that checkpoints follow commit order.
    const cp = typeof checkpoint === 'function' ? checkpoint() : checkpoint
    const idSet = new Set<string>()
    for (const m of models) idSet.add(m.idText)
    const linkSet = new Set<string>()
    for (const m of models) for (const l of m.meta.links) if (!idSet.has(l.target)) linkSet.add(l.target)
    const ids = Array.from(idSet)
    const linked = Array.from(linkSet)
    // In one read: current versions, which ids are dangling link targets (D!), and which link targets are held.
    const keys: string[] = []
    for (const i of ids) keys.push(`I!${i}`)
    for (const i of ids) keys.push(`D!${i}`)
    for (const t of linked) keys.push(heldKey(t))
    const read = await this.#getMany(keys)
    const current = new Map<string, Row>()
    const dangling = new Set<string>()
    for (let n = 0; n < ids.length; n++) {
      const j = read[n]
      if (j !== undefined) current.set(ids[n]!, parseRow(ids[n]!, j))
      if (read[ids.length + n] !== undefined) dangling.add(ids[n]!)
    }
    const linkedHeld = new Set<string>()
    for (let n = 0; n < linked.length; n++) if (read[2 * ids.length + n] !== undefined) linkedHeld.add(linked[n]!)
    const ops: Op[] = []
    const statuses: CommitStatus[] = []
    const storedIds = new Set<string>()
    const newTargets = new Set<string>()
    const replaced: Row[] = []
    let seq = this.#lastSeq
    let lastPlace: Place | undefined
    for (const m of models) {
      const cand = { u: m.meta.updateTimeKey, h: m.hash }
      const old = current.get(m.idText)
      if (old && old.h === m.hash) {
        // Bytes of a held model's attachment may come with a later copy.
        blobOps(m, ops, storedIds)
        statuses.push('duplicate')
        continue
      }
      if (old && !newerThan(cand, old)) {
        statuses.push('stale')
        continue
      }
      const row: Row = {
        i: m.idText,
        h: m.hash,
        s: ++seq,
        n: m.name,
        v: m.version,
        u: m.meta.updateTimeKey,
        t: m.meta.updateTime,
        k: m.id.key,
        p: (lastPlace = this.#log.add(m.bytes)),
        f: m.meta.facets,
        l: m.meta.links.map((l: Link) => `${l.kind}\0${l.target}`),
        ...(origin === undefined ? {} : { o: origin }),
      }
      if (old) {
        ops.push(...versionDeletes(old))
        replaced.push(old)
      }
      // The row lives once, under I!; S! names the id, and the other index entries only the SEQ.
      ops.push({ type: 'put', key: `I!${m.idText}`, value: rowJson(row) })
      ops.push({ type: 'put', key: orderKey(row.s), value: m.idText })
      for (const k of indexKeys(row)) ops.push({ type: 'put', key: k, value: '' })
      for (const k of edgeKeys(row)) ops.push({ type: 'put', key: k, value: '' })
      for (const l of m.meta.links) newTargets.add(l.target)
      blobOps(m, ops, storedIds)
      current.set(m.idText, row)
      storedIds.add(m.idText)
      if (dangling.delete(m.idText)) ops.push({ type: 'del', key: `D!${m.idText}` })
      statuses.push('stored')
    }
    // Edges to targets not held yet are remembered; they resolve when the target arrives.
    for (const t of newTargets) {
      if (!storedIds.has(t) && !(idSet.has(t) ? current.has(t) : linkedHeld.has(t))) ops.push({ type: 'put', key: `D!${t}`, value: '' })
    }
    if (cp) {
      if (cp.cursor !== undefined) ops.push({ type: 'put', key: `C!${cp.name}`, value: cp.cursor })
      if (cp.later) for (const w of cp.later) ops.push({ type: 'put', key: laterKey(cp.name, w.id), value: `${w.hash} ${w.timeKey}` })
      if (cp.settled) for (const id of cp.settled) ops.push({ type: 'del', key: laterKey(cp.name, id) })
    }
    if (seq !== this.#lastSeq) {
      ops.push({ type: 'put', key: 'X!seq', value: String(seq) })
      ops.push(logEndOp(lastPlace!))
    }
    const dead = this.#deadAfter(replaced)
    for (const o of deadOps(dead)) ops.push(o)
    // Replaced versions stay readable (a get that read the old row reads its bytes), and a ban of their key zeroes them.
    for (const r of replaced) if (r.p !== undefined) ops.push(scrubOp(r.k, r.p))
    if (ops.length > 0) await this.#batch(ops)
    this.#deadWritten(dead)
    const grew = seq !== this.#lastSeq
    this.#lastSeq = seq
    if (grew) for (const l of this.#listeners) l(seq)
    return statuses
  }

  /** Calls `listener(lastSeq)` after every commit that stored something; returns the unsubscribe. */
  onStored(listener: (lastSeq: number) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  /** The store-order log: current rows of every model stored after `afterSeq`, oldest first. */
  async log(afterSeq: number, limit: number): Promise<Row[]> {
    const seqs: number[] = []
    const ids: string[] = []
    for await (const [key, id] of this.#db.iterator({ gt: orderKey(afterSeq), lt: `S!${SEQ_END}`, limit })) {
      seqs.push(parseInt(key.slice(2), 16))
      ids.push(id)
    }
    // An id edited between the two reads has moved on: it comes again at its new place.
    return (await this.rows(ids)).filter((r, n): r is Row => r !== undefined && r.s === seqs[n])
  }

  /**
   * Point reads of many keys. A large read is split into parts read at once:
   * each getMany is one job on one of libuv's threads, and LevelDB serves
   * parts in parallel (a get of 1,000 ids: 13 vs 10 ms on 2 cores).
   */
  async #getMany(keys: string[]): Promise<(string | undefined)[]> {
    const db = this.#db
    const size = partSize(keys.length)
    if (size === keys.length) return db.getMany(keys)
    const parts: Promise<(string | undefined)[]>[] = []
    for (let i = 0; i < keys.length; i += size) parts.push(db.getMany(keys.slice(i, i + size)))
    return (await Promise.all(parts)).flat()
  }

  /** Current rows of ids (undefined where not held). */
  rows(ids: string[]): Promise<(Row | undefined)[]> {
    return this.#readRows(ids, parseRow)
  }

  /** What `read` makes of the current rows' JSON of ids (undefined where not held). */
  async #readRows<R>(ids: string[], read: (id: string, json: string) => R): Promise<(R | undefined)[]> {
    const keys = new Array<string>(ids.length)
    for (let n = 0; n < ids.length; n++) keys[n] = `I!${ids[n]}`
    const json = await this.#getMany(keys)
    const out = new Array<R | undefined>(ids.length)
    for (let n = 0; n < ids.length; n++) out[n] = json[n] === undefined ? undefined : read(ids[n]!, json[n]!)
    return out
  }

  /**
   * Model XML of versions by their rows, as the rows named it: a version
   * replaced since still reads (until its segment is compacted, on open);
   * undefined for a version banned since or a row without bytes.
   */
  async modelXml(rows: Pick<Row, 'p'>[]): Promise<(string | undefined)[]> {
    return (await this.#log.read(rows.map((r) => r.p))).map((b) => b?.toString())
  }

  /** Current model XML of ids, in order, omitting ids not held. */
  async getModels(ids: string[]): Promise<{ row: Row; xml: string }[]> {
    return (await this.#current(ids, (part) => this.rows(part))).map(({ row, xml }) => ({ row, xml: xml.toString() }))
  }

  /**
   * getModels as UTF-8 bytes, read as stored (answers are built without
   * decoding and encoding again), with what an answer needs of each row.
   */
  async getModelBytes(ids: string[]): Promise<{ row: ServedRow; xml: Buffer }[]> {
    return this.#current(ids, (part) => this.#servedRows(part))
  }

  /**
   * The rows of a get answer: the JSON of a row as commit writes it begins
   * {"h":…,"s":…,"n":…; its SEQ and name are read off it there, and
   * the rest is parsed only for a model that links attachments (the one
   * case servedModelXml needs its links) or a row in another form. Parsing
   * every row whole was a twentieth of a 1,000-id get.
   */
  #servedRows(ids: string[]): Promise<(ServedRow | undefined)[]> {
    return this.#readRows(ids, servedOrWhole)
  }

  async #current<R extends Pick<Row, 'p'>>(ids: string[], read: (ids: string[]) => Promise<(R | undefined)[]>): Promise<{ row: R; xml: Buffer }[]> {
    // Each part reads its models as soon as its rows are in (no barrier between the two reads).
    const size = partSize(ids.length)
    const part = async (from: number) => {
      const held = (await read(ids.slice(from, from + size))).filter((r): r is R => r !== undefined)
      const xml = await this.#log.read(held.map((r) => r.p))
      const out: { row: R; xml: Buffer }[] = []
      held.forEach((row, n) => {
        if (xml[n] !== undefined) out.push({ row, xml: xml[n]! })
      })
      return out
    }
    const parts: Promise<{ row: R; xml: Buffer }[]>[] = []
    for (let i = 0; i < ids.length; i += size) parts.push(part(i))
    return (await Promise.all(parts)).flat()
  }

  /** Of the listed versions, the ones worth fetching: not held, and not beaten by what is held. */
  async wanted(list: Want[]): Promise<Want[]> {
    const ids = new Array<string>(list.length)
    for (let n = 0; n < list.length; n++) ids[n] = list[n]!.id
    const rows = await this.rows(ids)
    const out: Want[] = []
    for (let n = 0; n < list.length; n++) {
      const w = list[n]!
      const r = rows[n]
      if (r === undefined || (r.h !== w.hash && newerThan({ u: w.timeKey, h: w.hash }, r))) out.push(w)
    }
    return out
  }

  /** One page of rows in store order (PROTOCOL.md §6); filters are applied exactly. */
  async list(q: ListQuery): Promise<ListPage> {
    let prefix = 'S!'
    const single = q.facets.find((f) => f.values.length === 1)
    if (single) prefix = `F!${single.facet}!${single.values[0]}\0`
    else if (q.allow && q.allow.size === 1) prefix = `K!${[...q.allow][0]}!`
    // Facet filters read each row's facets: those rows are parsed whole.
    const whole = q.facets.length > 0
    const rows: ListRow[] = []
    let more = false
    const it = this.#db.iterator({ gt: prefix + seqKey(q.afterSeq), lt: prefix + SEQ_END })
    try {
      scan: for (;;) {
        const batch = await it.nextv(1000)
        if (batch.length === 0) break
        const found = await this.#listRows(prefix === 'S!' ? batch.map(([, id]) => id!) : await this.#idsAt(batch.map(([key]) => key)), whole)
        for (let n = 0; n < found.length; n++) {
          const r = found[n]
          // Every index key ends with the SEQ; an id edited meanwhile has moved on and is listed at its new place.
          if (r === undefined || r.s !== parseInt(batch[n]![0]!.slice(-16), 16) || !matches(r, q)) continue
          if (rows.length === q.limit) {
            more = true
            break scan
          }
          rows.push(r)
        }
      }
    } finally {
      await it.close()
    }
    return { rows, more }
  }

  /** The current rows of ids for a list page: ListRows read off their JSON, or (`whole`) rows parsed whole. */
  #listRows(ids: string[], whole: boolean): Promise<(ListRow | Row | undefined)[]> {
    return whole ? this.#readRows(ids, parseRow) : this.#readRows(ids, listedOrWhole)
  }

  /** The ids stored at the SEQs that index keys end with ('' where none is: rows() finds nothing for it). */
  async #idsAt(keys: string[]): Promise<string[]> {
    const ids = await this.#getMany(keys.map((k) => `S!${k.slice(-16)}`))
    return ids.map((id) => id ?? '')
  }

  async blob(hash: string): Promise<{ bytes: Buffer; mimetype: string } | undefined> {
    const [bytes, mimetype] = await Promise.all([this.#db.get(`B!${hash}`, { valueEncoding: 'buffer' } as any) as Promise<unknown>, this.#db.get(`BM!${hash}`)])
    if (bytes === undefined || mimetype === undefined) return undefined
    return { bytes: bytes as Buffer, mimetype }
  }

  /** Edges pointing at a model or blob: replies of a thread, references, … */
  async backlinks(target: string): Promise<{ kind: string; from: string }[]> {
    const out: { kind: string; from: string }[] = []
    for await (const key of this.#db.keys({ gt: `R!${target}\0`, lt: `R!${target}\x01` })) {
      const [, kind, from] = key.split('\0') as [string, string, string]
      out.push({ kind, from })
    }
    return out
  }

  /** Link targets that are referenced but not held yet. */
  async dangling(limit = 10_000): Promise<string[]> {
    const out: string[] = []
    for await (const key of this.#db.keys({ gt: 'D!', lt: 'D"', limit })) out.push(key.slice(2))
    return out
  }

  async checkpoint(name: string): Promise<string | undefined> {
    return this.#db.get(`C!${name}`)
  }

  /** Ids a pull under this checkpoint found missing (`later` of its commits), at most `limit`, to ask for again. */
  async later(name: string, limit: number): Promise<Want[]> {
    const prefix = laterKey(name, '')
    const out: Want[] = []
    for await (const [key, value] of this.#db.iterator({ gt: prefix, lt: `W!${name}\x01`, limit })) {
      const space = value.indexOf(' ')
      out.push({ id: key.slice(prefix.length), hash: value.slice(0, space), timeKey: value.slice(space + 1) })
    }
    return out
  }

  async peer(url: string): Promise<PeerRecord | undefined> {
    const j = await this.#db.get(`P!${url}`)
    return j === undefined ? undefined : (JSON.parse(j) as PeerRecord)
  }

  async savePeer(p: PeerRecord): Promise<void> {
    await this.#writeOps([{ type: 'put', key: `P!${p.url}`, value: JSON.stringify(p) }])
  }

  async peers(): Promise<PeerRecord[]> {
    const out: PeerRecord[] = []
    for await (const v of this.#db.values({ gt: 'P!', lt: 'P"' })) out.push(JSON.parse(v) as PeerRecord)
    return out
  }

  async removePeer(url: string): Promise<boolean> {
    const had = (await this.#db.get(`P!${url}`)) !== undefined
    await this.#writeOps([
      { type: 'del', key: `P!${url}` },
      { type: 'del', key: `Q!${url}` },
    ])
    return had
  }

  async pushState(url: string): Promise<PushState | undefined> {
    const j = await this.#db.get(`Q!${url}`)
    return j === undefined ? undefined : (JSON.parse(j) as PushState)
  }

  async savePushState(url: string, state: PushState): Promise<void> {
    await this.#writeOps([{ type: 'put', key: `Q!${url}`, value: JSON.stringify(state) }])
  }

  async bannedKeys(): Promise<string[]> {
    const out: string[] = []
    for await (const k of this.#db.keys({ gt: 'N!', lt: 'N"' })) out.push(k.slice(2))
    return out
  }

  /** Bans a sender key: removes every model it signed as author, in one batch with the ban. Returns how many. */
  ban(keyHex: string): Promise<number> {
    return this.#exclusive(async () => {
      const indexed = await this.#db.keys({ gt: `K!${keyHex}!`, lt: `K!${keyHex}!${SEQ_END}` }).all()
      const rows = (await this.rows(await this.#idsAt(indexed))).filter((r): r is Row => r !== undefined)
      const ops: Op[] = [{ type: 'put', key: `N!${keyHex}`, value: '' }]
      for (const r of rows) ops.push({ type: 'del', key: `I!${r.i}` }, ...versionDeletes(r))
      // Attachment bytes that only the removed models referred to go too.
      const removed = new Set(rows.map((r) => r.i))
      const blobs = new Set(rows.flatMap((r) => r.l.filter((l) => l.startsWith('attachment\0')).map((l) => l.slice('attachment\0'.length))))
      for (const hash of blobs) {
        let shared = false
        for await (const key of this.#db.keys({ gt: `R!${hash}\0`, lt: `R!${hash}\x01` })) if (!removed.has(key.split('\0')[2]!)) shared = true
        if (!shared) ops.push({ type: 'del', key: `B!${hash}` }, { type: 'del', key: `BM!${hash}` })
      }
      const dead = this.#deadAfter(rows)
      ops.push(...deadOps(dead))
      // The banned models' bytes are overwritten too, not only unnamed: with the versions they replaced earlier.
      for (const r of rows) if (r.p !== undefined) ops.push(scrubOp(keyHex, r.p))
      await this.#batch(ops)
      this.#deadWritten(dead)
      await this.#scrubKey(keyHex)
      return rows.length
    })
  }

  async unban(keyHex: string): Promise<void> {
    await this.#writeOps([{ type: 'del', key: `N!${keyHex}` }])
  }

  /**
   * The next local-id for a model authored here: a decimal counter, and
   * with `shared` (a key other nodes of a pool may hold too) `<n>.<mark>`,
   * the mark being the first 8 hex digits of this store's own random id, so
   * that no other node gives the same id to another model.
   */
  allocateLocalId(keyHex: string, shared = false): Promise<string> {
    return this.#exclusive(async () => {
      const local = (n: number) => (shared ? `${n}.${this.#storeId.slice(0, 8)}` : String(n))
      let next = Number((await this.#db.get('X!local-id')) ?? '0') + 1
      // Models of this key may have arrived from elsewhere (a restored key, a pool
      // sharing it): never hand out an id the store already holds.
      for (let tries = 0; tries < 1_000_000 && (await this.#db.get(`I!ed25519::${keyHex}::${local(next)}`)) !== undefined; tries++) next++
      await this.#writeOps([{ type: 'put', key: 'X!local-id', value: String(next) }])
      return local(next)
    })
  }

  /** Number of ids held. */
  async count(): Promise<number> {
    let n = 0
    for await (const _ of this.#db.keys({ gt: 'I!', lt: 'I"' })) n++
    return n
  }
}

/** The row that says a link target is held: its current version (an id) or its mimetype (a blob hash). */
const heldKey = (target: string) => (target.startsWith('sha256:') ? `BM!${target}` : `I!${target}`)

/** Rows for a model's verified inline attachment bytes (checked by Ingest against the signed hash and size). */
function blobOps(m: StagedModel, ops: Op[], held: Set<string>): void {
  for (const [hash, bytes] of m.attachmentData) {
    const a = m.meta.attachments.find((x) => x.hash === hash)
    if (!a) continue
    // Per-operation encoding: blob bytes are binary, every other value is text.
    ops.push({ type: 'put', key: `B!${hash}`, value: bytes, valueEncoding: 'buffer' } as unknown as Op)
    ops.push({ type: 'put', key: `BM!${hash}`, value: a.mimetype }, { type: 'del', key: `D!${hash}` })
    held.add(hash)
  }
}

/** Whether a row passes a list query's filters (`model` undefined: any model). */
export function rowMatches(r: Row, q: Omit<ListQuery, 'model' | 'afterSeq' | 'limit'> & { model?: string | undefined }): boolean {
  return (q.model === undefined || r.n === q.model) && matches(r, { ...q, model: r.n, afterSeq: 0, limit: 0 })
}

/** `r.f` is read only for facet filters (a list parses those rows whole). */
function matches(r: ListRow & Partial<Pick<Row, 'f'>>, q: ListQuery): boolean {
  if (r.n !== q.model) return false
  if (q.from !== undefined && r.u < q.from) return false
  if (q.to !== undefined && r.u >= q.to) return false
  if (q.allow && !q.allow.has(r.k)) return false
  if (q.deny && q.deny.has(r.k)) return false
  for (const f of q.facets) {
    const have = r.f?.[f.facet]
    if (!have || !f.values.some((v) => have.includes(v))) return false
  }
  return true
}
