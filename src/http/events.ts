// GET /api/local/events: the live feed of the local API, as Server-Sent
// Events. One event per model stored, in store order:
//
//   id: <seq>
//   event: model
//   data: {"seq":…,"id":…,"model":"post","version":"1.1","hash":…,"updateTime":…,"origin"?:…,"fields":{…}}
//
// Where it starts: after `Last-Event-ID: N` (what an EventSource sends when it
// reconnects; it wins over the query), else after `?after=N` (`after=0`
// replays everything), else at the end of the store (only what is stored
// from now on). A consumer that keeps the last id it handled and reconnects
// with it gets every model stored after it exactly once, then the live ones.
// An edited model moves to the end of the store order with a new seq, so it
// comes again as a new event; a version replaced before it was sent is never
// sent (its newer version is).
//
// One cursor per connection reads the store-order log in batches, writes
// each batch (waiting for 'drain' when the socket is full) and, once the log
// is read to its end, waits for the store's "stored" signal or 15 s (then a
// `: keep-alive` comment). At most one batch is held in memory.
import type { ServerResponse } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { DipError } from '../errors.js'
import type { ModelRegistry } from '../model/registry.js'
import { formatId, type GlobalId } from '../protocol/id.js'
import { firstChild, parseXml } from '../protocol/xml.js'
import type { GraphStore, Row } from '../store/graph-store.js'

/** What the feed reads of the store. */
export type FeedStore = Pick<GraphStore, 'lastSeq' | 'log' | 'onStored' | 'modelXml' | 'getModels'>

export interface FeedDeps {
  store: FeedStore
  registry: ModelRegistry
}

/** A stored model as the local API shows it (events and GET /api/local/models/:id). */
export interface ModelJson {
  seq: number
  id: string
  model: string
  version: string
  hash: string
  updateTime: string
  /** where it came from (a peer's base URL, or a node key named by a put); absent when authored here */
  origin?: string
  /** the model's fields, parsed from its content; null if this node cannot read it */
  fields: unknown
}

/** Rows read from the log per round. */
export const EVENT_BATCH = 500
export const KEEP_ALIVE_MS = 15_000

const SEQ_RE = /^(0|[1-9][0-9]{0,15})$/

function isGlobalId(v: object): v is GlobalId {
  const o = v as Record<string, unknown>
  const keys = Object.keys(o)
  return keys.length === 3 && o.type === 'ed25519' && typeof o.key === 'string' && typeof o.localId === 'string'
}

/**
 * A model's parsed fields as plain JSON: global ids as their text form,
 * absent optional fields as null, and without the store's comparable time
 * keys (`…TimeKey`; the times as written are there).
 */
export function toJsonValue(v: unknown): unknown {
  if (v === undefined || v === null) return null
  if (typeof v === 'bigint') return v.toString()
  if (typeof v !== 'object') return v
  if (Array.isArray(v)) return v.map(toJsonValue)
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64')
  if (isGlobalId(v)) return formatId(v)
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(v)) if (!k.endsWith('TimeKey')) out[k] = toJsonValue(x)
  return out
}

/** Fields of a stored model (XML as served), read with its definition; null if unreadable. */
export function fieldsOf(registry: ModelRegistry, name: string, xml: string): unknown {
  const def = registry.get(name)
  const root = parseXml(xml)
  if (!def || !root.ok) return null
  const content = firstChild(root.value, 'content')
  if (!content) return null
  const parsed = def.fromContent(content)
  return parsed.ok ? toJsonValue(parsed.value) : null
}

export function modelJson(registry: ModelRegistry, row: Row, xml: string): ModelJson {
  return {
    seq: row.s,
    id: row.i,
    model: row.n,
    version: row.v,
    hash: row.h,
    updateTime: row.t,
    ...(row.o === undefined ? {} : { origin: row.o }),
    fields: fieldsOf(registry, row.n, xml),
  }
}

/** Where a consumer starts: Last-Event-ID, else ?after, else the end of the store. */
function startSeq(lastEventId: string | string[] | undefined, query: unknown, lastSeq: number): number {
  const after = (query as Record<string, unknown> | undefined)?.after
  // An EventSource sends no Last-Event-ID before its first event; an empty one counts as none.
  const useHeader = lastEventId !== undefined && lastEventId !== ''
  const given = useHeader ? { what: 'Last-Event-ID', v: lastEventId } : after !== undefined ? { what: 'after', v: after } : undefined
  if (given === undefined) return lastSeq
  const text = typeof given.v === 'string' ? given.v.trim() : undefined
  if (text === undefined || !SEQ_RE.test(text)) throw new DipError('DIP_USAGE', `${given.what} must be an event id (a store seq, 0 for the start)`)
  const seq = Number(text)
  // Seqs only grow: a larger one was not given out by this store (another data folder?).
  if (seq > lastSeq) throw new DipError('DIP_USAGE', `${given.what} ${seq} is past this store's last seq ${lastSeq}: an id from another data folder?`)
  return seq
}

/** One consumer's stream. */
class EventStream {
  readonly #res: ServerResponse
  readonly #deps: FeedDeps
  readonly #keepAliveMs: number
  #cursor: number
  #stopped = false
  /** set by the store's signal; cleared before each read, so no signal is lost */
  #dirty = false
  #wake: (() => void) | undefined
  readonly done: Promise<void>

  /** `done` settles when the stream has ended, never rejects: a failure goes to `onError`. */
  constructor(res: ServerResponse, deps: FeedDeps, cursor: number, keepAliveMs: number, onError: (err: unknown) => void) {
    this.#res = res
    this.#deps = deps
    this.#cursor = cursor
    this.#keepAliveMs = keepAliveMs
    res.once('close', () => this.stop())
    res.on('error', () => this.stop())
    this.done = this.#run().catch((err: unknown) => {
      if (!this.#stopped) onError(err)
    })
  }

  stop(): void {
    this.#stopped = true
    this.#wake?.()
  }

  /** Resolves at the next signal (stored, drain, close, stop) or after `ms`; true on timeout. */
  #sleep(ms: number, alsoOn?: 'drain'): Promise<boolean> {
    return new Promise((resolve) => {
      const finish = (timedOut: boolean) => {
        clearTimeout(timer)
        this.#wake = undefined
        if (alsoOn) this.#res.off(alsoOn, onEvent)
        resolve(timedOut)
      }
      const onEvent = () => finish(false)
      const timer = setTimeout(() => finish(true), ms)
      this.#wake = onEvent
      if (alsoOn) this.#res.once(alsoOn, onEvent)
    })
  }

  /** Writes a chunk; when the socket is full, waits for 'drain' (or the end). */
  async #write(chunk: string): Promise<void> {
    if (this.#res.write(chunk)) return
    while (!this.#stopped && this.#res.writableNeedDrain) await this.#sleep(this.#keepAliveMs, 'drain')
  }

  async #run(): Promise<void> {
    const { store, registry } = this.#deps
    const unsubscribe = store.onStored(() => {
      this.#dirty = true
      this.#wake?.()
    })
    try {
      await this.#write(': dipd events\n\n') // headers and a first byte: the consumer knows it is connected
      while (!this.#stopped) {
        this.#dirty = false
        // Rows whose current seq is past `high` were (re)stored while the log
        // was read: they come in a later round at their new place, so the
        // cursor never jumps over a model it has not sent.
        const high = store.lastSeq
        const rows = await store.log(this.#cursor, EVENT_BATCH)
        if (this.#stopped) break
        const fresh = rows.filter((r) => r.s > this.#cursor && r.s <= high)
        const xml = fresh.length > 0 ? await store.modelXml(fresh) : []
        for (let n = 0; n < fresh.length && !this.#stopped; n++) {
          const row = fresh[n]!
          const x = xml[n]
          if (x === undefined) continue // banned meanwhile (a version replaced meanwhile still reads; the newer one comes later)
          const data = JSON.stringify(modelJson(registry, row, x))
          this.#cursor = row.s
          await this.#write(`id: ${row.s}\nevent: model\ndata: ${data}\n\n`)
        }
        // Read on until a round finds nothing, then wait for the next commit.
        if (rows.length > 0 || this.#dirty || this.#stopped) continue
        const timedOut = await this.#sleep(this.#keepAliveMs)
        if (timedOut && !this.#stopped && !this.#dirty) await this.#write(': keep-alive\n\n')
      }
    } finally {
      unsubscribe()
      if (!this.#res.writableEnded) this.#res.end()
    }
  }
}

export function registerEventRoutes(app: FastifyInstance, deps: FeedDeps, options: { keepAliveMs?: number } = {}): void {
  const keepAliveMs = options.keepAliveMs ?? KEEP_ALIVE_MS
  const open = new Set<EventStream>()

  // A stream never ends by itself: end them all before the server closes,
  // or closing would wait for their consumers.
  app.addHook('preClose', async () => {
    const streams = [...open]
    for (const s of streams) s.stop()
    await Promise.all(streams.map((s) => s.done))
  })

  app.get('/api/local/events', async (request, reply) => {
    const cursor = startSeq(request.headers['last-event-id'], request.query, deps.store.lastSeq)
    reply.hijack()
    const res = reply.raw
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    })
    request.raw.socket.setNoDelay(true)
    const stream = new EventStream(res, deps, cursor, keepAliveMs, (err) => request.log.error({ err }, 'event stream failed'))
    open.add(stream)
    void stream.done.then(() => open.delete(stream))
  })
}
