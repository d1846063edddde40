// GET /api/local/events, the local API's live feed (Server-Sent Events),
// against a real daemon (LevelDB in a temp folder, HTTP on 127.0.0.1:0, the
// token from DIR/daemon.json): replay from the start, exactly-once resume
// with Last-Event-ID, live-only consumers, the token, edited models, models
// put by another key, and closing the daemon with consumers attached. Then
// the feed alone on a memory store: batches, keep-alive comments,
// backpressure and unsubscribing. Every wait is bounded.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import { request } from 'undici'
import { startDaemon, type Daemon } from '../../src/daemon.js'
import { generateKeyPair } from '../../src/crypto/ed25519.js'
import { authorModel } from '../../src/model/signed.js'
import { parseIdText } from '../../src/protocol/id.js'
import { registerEventRoutes, EVENT_BATCH, type FeedStore, type ModelJson } from '../../src/http/events.js'
import { GraphStore } from '../../src/store/graph-store.js'
import { putModels, registry, removeDir, signPost, tempDir } from './helpers.js'

const WAIT_MS = 20_000

interface SseEvent {
  id: string | undefined
  event: string
  data: string
}

/** An event's model as the feed sends it: the local API's ModelJson, fields read as a record. */
type ModelEvent = ModelJson & { fields: Record<string, unknown> }

/**
 * A tiny SSE consumer over node:http: parses the stream per the SSE rules
 * (fields, comments, blank-line dispatch) and, with `stopAfter`, hangs up
 * right after handling that many events, ignoring anything that came with them.
 */
class SseClient {
  readonly events: SseEvent[] = []
  comments: string[] = []
  ended = false
  readonly #req: ClientRequest
  readonly #res: IncomingMessage
  readonly #stopAfter: number
  #buf = ''
  #cur: { id: string | undefined; event: string; data: string[] } = { id: undefined, event: 'message', data: [] }
  #listeners = new Set<() => void>()

  private constructor(req: ClientRequest, res: IncomingMessage, stopAfter: number) {
    this.#req = req
    this.#res = res
    this.#stopAfter = stopAfter
    res.setEncoding('utf8')
    res.on('data', (s: string) => this.#feed(s))
    const end = () => {
      this.ended = true
      this.#notify()
    }
    res.on('end', end)
    res.on('close', end)
    res.on('error', end)
  }

  static open(url: string, headers: Record<string, string>, opts: { stopAfter?: number } = {}): Promise<SseClient> {
    return new Promise((resolve, reject) => {
      const req = httpRequest(url, { headers: { accept: 'text/event-stream', ...headers }, agent: false })
      const timer = setTimeout(() => {
        req.destroy()
        reject(new Error(`no answer from ${url} within ${WAIT_MS} ms`))
      }, WAIT_MS)
      req.on('error', (e) => {
        clearTimeout(timer)
        reject(e)
      })
      req.on('response', (res) => {
        clearTimeout(timer)
        if (res.statusCode !== 200) {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (s: string) => (body += s))
          res.on('end', () => reject(new Error(`HTTP ${res.statusCode}: ${body}`)))
          return
        }
        assert.match(String(res.headers['content-type']), /^text\/event-stream/)
        resolve(new SseClient(req, res, opts.stopAfter ?? Infinity))
      })
      req.end()
    })
  }

  get stopped(): boolean {
    return this.events.length >= this.#stopAfter
  }

  /** the models of the `model` events received so far */
  get models(): ModelEvent[] {
    return this.events.filter((e) => e.event === 'model').map((e) => JSON.parse(e.data) as ModelEvent)
  }

  get lastId(): string | undefined {
    return this.events.at(-1)?.id
  }

  #feed(chunk: string): void {
    if (this.stopped) return
    this.#buf += chunk
    let nl: RegExpExecArray | null
    const LINE = /\r\n|\r|\n/
    while (!this.stopped && (nl = LINE.exec(this.#buf)) !== null) {
      // A lone CR at the end may be the first half of CRLF: wait for more.
      if (nl[0] === '\r' && nl.index === this.#buf.length - 1) break
      const line = this.#buf.slice(0, nl.index)
      this.#buf = this.#buf.slice(nl.index + nl[0].length)
      this.#line(line)
    }
    this.#notify()
  }

  #line(line: string): void {
    if (line === '') {
      if (this.#cur.data.length > 0) {
        this.events.push({ id: this.#cur.id, event: this.#cur.event, data: this.#cur.data.join('\n') })
        if (this.stopped) this.close()
      }
      this.#cur = { id: this.#cur.id, event: 'message', data: [] } // the last id persists, as in EventSource
      return
    }
    if (line.startsWith(':')) {
      this.comments.push(line.slice(1).trim())
      return
    }
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (field === 'data') this.#cur.data.push(value)
    else if (field === 'event') this.#cur.event = value
    else if (field === 'id' && !value.includes('\0')) this.#cur.id = value
  }

  #notify(): void {
    for (const l of [...this.#listeners]) l()
  }

  /** Resolves once `pred()` holds; fails after WAIT_MS (or when the stream ends first). */
  until(pred: () => boolean, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (pred()) done(undefined)
        else if (this.ended) done(new Error(`the stream ended before ${what} (${this.events.length} events)`))
      }
      const timer = setTimeout(() => done(new Error(`not ${what} within ${WAIT_MS} ms (${this.events.length} events)`)), WAIT_MS)
      const done = (err: Error | undefined) => {
        clearTimeout(timer)
        this.#listeners.delete(check)
        if (err) reject(err)
        else resolve()
      }
      this.#listeners.add(check)
      check()
    })
  }

  waitFor(n: number): Promise<void> {
    return this.until(() => this.events.length >= n, `${n} events`)
  }

  waitEnd(): Promise<void> {
    return this.until(() => this.ended, 'ended')
  }

  pause(): void {
    this.#res.pause()
  }

  resume(): void {
    this.#res.resume()
  }

  close(): void {
    this.#req.destroy()
  }
}

/** Checks one consumer's sequence: ids are the data's seqs, strictly growing. */
function assertOrdered(events: SseEvent[]): void {
  let prev = 0
  for (const e of events) {
    assert.equal(e.event, 'model')
    const m = JSON.parse(e.data) as ModelEvent
    assert.equal(e.id, String(m.seq), 'event id is the store seq')
    assert.ok(m.seq > prev, `seqs grow: ${m.seq} after ${prev}`)
    prev = m.seq
  }
}

describe('GET /api/local/events on a real daemon', () => {
  let dir: string
  let daemon: Daemon
  let url: string
  let auth: Record<string, string>
  const open: SseClient[] = []

  async function sse(query: string, headers: Record<string, string> = {}, opts: { stopAfter?: number } = {}): Promise<SseClient> {
    const c = await SseClient.open(`${url}/api/local/events${query}`, { ...auth, ...headers }, opts)
    open.push(c)
    return c
  }

  /** What the node holds, in store order, as (id, hash). */
  async function held(): Promise<{ id: string; hash: string }[]> {
    return (await daemon.node.list()).map((r) => ({ id: r.id, hash: r.hash }))
  }

  const pairs = (ms: ModelEvent[]) => ms.map((m) => ({ id: m.id, hash: m.hash }))

  before(async () => {
    dir = await tempDir('events')
    daemon = await startDaemon({ dataDir: dir, port: 0 })
    const info = JSON.parse(await readFile(join(dir, 'daemon.json'), 'utf8')) as { url: string; token: string }
    url = info.url
    auth = { authorization: `Bearer ${info.token}` }
  })

  after(async () => {
    for (const c of open) c.close()
    await daemon?.close()
    await removeDir(dir)
  })

  test('a consumer from ?after=0 gets every post in order; one that hangs up resumes with Last-Event-ID exactly once', async () => {
    const a = await sse('?after=0')
    const authored: { id: string; hash: string; title: string }[] = []
    for (let n = 0; n < 30; n++) {
      const thread = n % 3 === 2 ? authored[0]!.id : undefined
      const fields = { title: `post ${n}`, text: `text ${n} & <more>\nsecond line`, tags: thread ? [] : [`t${n % 2}`], ...(thread ? { thread } : {}) }
      const r = await daemon.node.author('post', fields)
      authored.push({ ...r, title: fields.title })
    }
    await a.waitFor(30)
    assertOrdered(a.events)
    assert.deepEqual(pairs(a.models), await held())
    assert.deepEqual(
      a.models.map((m) => m.id),
      authored.map((p) => p.id),
    )
    const m2 = a.models[2]!
    assert.equal(m2.model, 'post')
    assert.equal(m2.version, '1.1')
    assert.equal(m2.origin, undefined, 'authored here: no origin')
    assert.equal(m2.updateTime, m2.fields.updateTime)
    assert.deepEqual(Object.keys(m2.fields).sort(), ['attachments', 'id', 'pubTime', 'tags', 'text', 'thread', 'title', 'tripcode', 'updateTime'])
    assert.deepEqual(
      { ...m2.fields, pubTime: undefined, updateTime: undefined },
      { id: m2.id, title: 'post 2', text: 'text 2 & <more>\nsecond line', tags: [], thread: authored[0]!.id, tripcode: null, attachments: [], pubTime: undefined, updateTime: undefined },
    )
    assert.deepEqual(a.models[1]!.fields.tags, ['t1'])
    assert.equal(a.models[1]!.fields.thread, null)

    // b replays from the start and hangs up after handling 12 events.
    const b1 = await sse('?after=0', {}, { stopAfter: 12 })
    await b1.waitFor(12)
    await b1.waitEnd()
    assert.equal(b1.events.length, 12)
    assertOrdered(b1.events)
    const lastSeen = b1.lastId!
    assert.equal(lastSeen, a.events[11]!.id)

    // More posts while b is away.
    for (let n = 30; n < 40; n++) authored.push({ ...(await daemon.node.author('post', { title: `post ${n}`, text: `t${n}` })), title: `post ${n}` })
    await a.waitFor(40)

    // b comes back as an EventSource does: same URL (?after=0), plus Last-Event-ID, which wins.
    const b2 = await sse('?after=0', { 'last-event-id': lastSeen })
    await b2.waitFor(28)
    assertOrdered([...b1.events, ...b2.events])
    // A sentinel post: once b2 has it, nothing else is on its way.
    const sentinel = await daemon.node.author('post', { title: 'sentinel', text: '' })
    await b2.waitFor(29)
    await a.waitFor(41)
    assert.equal(b2.models.at(-1)!.id, sentinel.id)
    assert.equal(a.events.length, 41)
    assert.equal(b2.events.length, 29)

    const all = await held()
    const seenByB = pairs([...b1.models, ...b2.models])
    assert.equal(new Set(seenByB.map((p) => p.id)).size, seenByB.length, 'no model twice')
    assert.deepEqual(seenByB, all, 'every model exactly once, in store order')
    assert.deepEqual(pairs(a.models), all)
    a.close()
    b2.close()
  })

  test('a consumer without Last-Event-ID or ?after gets only what is stored from now on', async () => {
    const before = daemon.node.deps.store.lastSeq
    assert.ok(before > 0)
    const c = await sse('')
    const news = [await daemon.node.author('post', { title: 'new 1', text: '' }), await daemon.node.author('post', { title: 'new 2', text: '', tags: ['x'] })]
    await c.waitFor(2)
    assertOrdered(c.events)
    assert.deepEqual(pairs(c.models), news)
    assert.equal(c.models[0]!.seq, before + 1)
    const sentinel = await daemon.node.author('post', { title: 'sentinel 2', text: '' })
    await c.waitFor(3)
    assert.equal(c.models.length, 3)
    assert.equal(c.models[2]!.id, sentinel.id)
    c.close()
  })

  test('without the token: 403 DIP_LOCAL_FORBIDDEN; a bad Last-Event-ID or ?after: 400 DIP_USAGE', async () => {
    for (const headers of [{}, { authorization: 'Bearer nope' }, { authorization: auth.authorization!.slice(0, -1) + 'x' }]) {
      const res = await request(`${url}/api/local/events?after=0`, { headers, headersTimeout: WAIT_MS, bodyTimeout: WAIT_MS })
      assert.equal(res.statusCode, 403)
      assert.match(String(res.headers['content-type']), /application\/json/)
      const body = (await res.body.json()) as { error: { code: string } }
      assert.equal(body.error.code, 'DIP_LOCAL_FORBIDDEN')
    }
    const last = daemon.node.deps.store.lastSeq
    for (const [query, headers] of [
      ['?after=-1', {}],
      ['?after=abc', {}],
      ['?after=1&after=2', {}],
      ['', { 'last-event-id': '1.5' }],
      ['?after=0', { 'last-event-id': 'x' }],
      [`?after=${last + 1}`, {}],
      ['', { 'last-event-id': String(last + 100) }],
    ] as const) {
      const res = await request(`${url}/api/local/events${query}`, { headers: { ...auth, ...headers }, headersTimeout: WAIT_MS, bodyTimeout: WAIT_MS })
      const body = (await res.body.json()) as { error: { code: string } }
      assert.equal(res.statusCode, 400, `${query} ${JSON.stringify(headers)}`)
      assert.equal(body.error.code, 'DIP_USAGE')
    }
  })

  test('an edited model comes again as a new event with a larger seq; a replay shows only its current version', async () => {
    const live = await sse('')
    const orig = await daemon.node.author('post', { title: 'before edit', text: 'v1', tags: ['e'] })
    await live.waitFor(1)
    const first = live.models[0]!
    assert.equal(first.hash, orig.hash)

    const id = parseIdText(orig.id)
    assert.ok(id.ok)
    const { identity, ingest, limits } = daemon.node.deps
    const later = new Date(Date.parse(String(first.fields.updateTime)) + 5000).toISOString()
    const edited = authorModel(registry.get('post')!, { id: id.value, title: 'after edit', text: 'v2', tags: ['e'], pubTime: first.fields.pubTime, updateTime: later }, identity.current, registry, limits)
    assert.ok(edited.ok, edited.ok ? '' : edited.error.message)
    const [r] = await ingest.accept([edited.value])
    assert.equal(r?.status, 'stored')

    await live.waitFor(2)
    const second = live.models[1]!
    assert.equal(second.id, orig.id)
    assert.equal(second.hash, edited.value.hash)
    assert.ok(second.seq > first.seq)
    assert.equal(second.fields.title, 'after edit')
    assert.equal(second.fields.updateTime, later)
    assertOrdered(live.events)

    // The model API shows the current version with its fields.
    const got = await request(`${url}/api/local/models/${encodeURIComponent(orig.id)}`, { headers: auth, headersTimeout: WAIT_MS, bodyTimeout: WAIT_MS })
    assert.equal(got.statusCode, 200)
    const j = (await got.body.json()) as Record<string, unknown>
    assert.deepEqual(Object.keys(j).sort(), ['fields', 'hash', 'id', 'model', 'updateTime', 'version', 'xml'])
    assert.equal(j.id, orig.id)
    assert.equal(j.hash, edited.value.hash)
    assert.equal(j.model, 'post')
    assert.equal(j.updateTime, later)
    assert.deepEqual(j.fields, second.fields)
    assert.equal(j.xml, edited.value.xml)
    const missing = await request(`${url}/api/local/models/${encodeURIComponent(orig.id + '0')}`, { headers: auth, headersTimeout: WAIT_MS, bodyTimeout: WAIT_MS })
    assert.equal(missing.statusCode, 404)
    assert.equal(((await missing.body.json()) as { error: { code: string } }).error.code, 'DIP_NOT_FOUND')
    const bad = await request(`${url}/api/local/models/not-an-id`, { headers: auth, headersTimeout: WAIT_MS, bodyTimeout: WAIT_MS })
    assert.equal(bad.statusCode, 400)
    assert.equal(((await bad.body.json()) as { error: { code: string } }).error.code, 'DIP_ID_INVALID')

    // A replay from the start: the edited id once, at its new place; everything as the node holds it.
    const replay = await sse('?after=0')
    const all = await held()
    await replay.waitFor(all.length)
    assertOrdered(replay.events)
    assert.deepEqual(pairs(replay.models), all)
    assert.deepEqual(
      replay.models.filter((m) => m.id === orig.id).map((m) => m.seq),
      [second.seq],
    )
    live.close()
    replay.close()
  })

  test('models put by another key appear too', async () => {
    const live = await sse('')
    const other = generateKeyPair()
    const opener = signPost(other, { localId: 'o1', title: 'from afar', tags: ['far'], updateTime: '2024-05-01T00:00:00Z', tripcode: '!trip' })
    const reply = signPost(other, { localId: 'o2', thread: opener.id, updateTime: '2024-05-01T00:01:00Z' })
    const rows = await putModels(url, [opener.xml, reply.xml])
    assert.deepEqual(
      rows.map((r) => r.status),
      ['stored', 'stored'],
    )
    await live.waitFor(2)
    assertOrdered(live.events)
    assert.deepEqual(pairs(live.models), [
      { id: opener.idText, hash: opener.hash },
      { id: reply.idText, hash: reply.hash },
    ])
    const [o, rp] = live.models as [ModelEvent, ModelEvent]
    assert.equal(o.fields.title, 'from afar')
    assert.equal(o.fields.tripcode, '!trip')
    assert.deepEqual(o.fields.tags, ['far'])
    assert.equal(o.updateTime, '2024-05-01T00:00:00Z')
    assert.equal(rp.fields.thread, opener.idText)
    assert.ok(o.id.startsWith(`ed25519::${other.publicKeyHex}::`))
    live.close()
  })

  test('closing the daemon ends open streams (and does not wait for their consumers)', async () => {
    const c1 = await sse('')
    const c2 = await sse('?after=0')
    await c2.waitFor(1)
    const t0 = Date.now()
    await daemon.close()
    assert.ok(Date.now() - t0 < WAIT_MS)
    await c1.waitEnd()
    await c2.waitEnd()
  })
})

describe('the event feed on a memory store', () => {
  let store: GraphStore
  let app: FastifyInstance
  let base: string
  let logCalls = 0
  let subscribed = 0
  const open: SseClient[] = []

  before(async () => {
    store = await GraphStore.openMemory()
    const feed: FeedStore = {
      get lastSeq() {
        return store.lastSeq
      },
      log: (afterSeq, limit) => {
        logCalls++
        return store.log(afterSeq, limit)
      },
      onStored: (listener) => {
        subscribed++
        const off = store.onStored(listener)
        return () => {
          subscribed--
          return off()
        }
      },
      modelXml: (rows) => store.modelXml(rows),
      getModels: (ids) => store.getModels(ids),
    }
    app = Fastify()
    registerEventRoutes(app, { store: feed, registry }, { keepAliveMs: 100 })
    base = await app.listen({ host: '127.0.0.1', port: 0 })
  })

  after(async () => {
    for (const c of open) c.close()
    await app?.close()
    await store?.close()
  })

  test('keep-alive comments while idle; the store listener goes when the consumer does', async () => {
    const c = await SseClient.open(`${base}/api/local/events`, {})
    open.push(c)
    await c.until(() => c.comments.filter((s) => s === 'keep-alive').length >= 2, 'two keep-alive comments')
    assert.equal(c.events.length, 0)
    const listeners = () => subscribed
    assert.equal(listeners(), 1)
    c.close()
    const t0 = Date.now()
    while (listeners() !== 0 && Date.now() - t0 < WAIT_MS) await new Promise((r) => setTimeout(r, 10))
    assert.equal(listeners(), 0, 'unsubscribed on close')
  })

  test('a replay of several batches to a consumer that stops reading: bounded reads ahead, then all of it once', async () => {
    const key = generateKeyPair()
    const N = 4 * EVENT_BATCH + 123
    const big = 'x'.repeat(8000)
    for (let from = 0; from < N; from += 500) {
      const batch = []
      for (let n = from; n < Math.min(N, from + 500); n++) batch.push(signPost(key, { localId: `p${n}`, text: `${n} ${big}`, updateTime: '2024-01-01T00:00:00Z' }))
      await store.commit(batch)
    }
    const c = await SseClient.open(`${base}/api/local/events?after=0`, {})
    open.push(c)
    c.pause()
    logCalls = 0
    await new Promise((r) => setTimeout(r, 1000))
    const whilePaused = logCalls
    assert.ok(whilePaused < 4, `the server read ${whilePaused} batches ahead of a consumer that reads nothing`)
    c.resume()
    await c.waitFor(N)
    assertOrdered(c.events)
    assert.equal(c.events.length, N)
    const ids = c.models.map((m) => m.id)
    assert.equal(new Set(ids).size, N)
    assert.equal(c.models.at(-1)!.seq, store.lastSeq)
    // live after the replay
    await store.commit([signPost(key, { localId: 'live', updateTime: '2024-01-02T00:00:00Z' })])
    await c.waitFor(N + 1)
    assert.equal(c.models.at(-1)!.id, `ed25519::${key.publicKeyHex}::live`)
    c.close()
  })

  test('commits and edits while a consumer replays and follows: every stored version once, in order', async () => {
    const key = generateKeyPair()
    const c = await SseClient.open(`${base}/api/local/events?after=${store.lastSeq}`, {})
    open.push(c)
    const start = store.lastSeq
    let stored = 0
    // 60 rounds of 20 new posts plus edits of 5 earlier ones, committed while the feed reads.
    const writer = (async () => {
      for (let round = 0; round < 60; round++) {
        const batch = []
        for (let n = 0; n < 20; n++) batch.push(signPost(key, { localId: `c${round * 20 + n}`, updateTime: '2024-01-01T00:00:00Z' }))
        for (let e = 0; e < 5 && round > 0; e++) {
          const target = (round * 7 + e * 13) % (round * 20)
          batch.push(signPost(key, { localId: `c${target}`, text: `edit ${round}.${e}`, updateTime: `2024-02-01T00:${String(round).padStart(2, '0')}:${String(e).padStart(2, '0')}Z` }))
        }
        const statuses = await store.commit(batch)
        stored += statuses.filter((x) => x === 'stored').length
        if (round % 3 === 0) await new Promise((r) => setImmediate(r))
      }
    })()
    await writer
    assert.equal(store.lastSeq - start, stored)
    const held = (await store.log(start, 100_000)).map((r) => ({ id: r.i, hash: r.h, seq: r.s }))
    await c.until(() => c.models.at(-1)?.seq === store.lastSeq, 'the last commit')
    assertOrdered(c.events)
    const seen = c.models.map((m) => `${m.id} ${m.hash}`)
    assert.equal(new Set(seen).size, seen.length, 'no version twice')
    // The current version of every id was sent, at its current seq.
    const bySeq = new Map(c.models.map((m) => [m.seq, m]))
    for (const h of held) assert.equal(bySeq.get(h.seq)?.hash, h.hash, `seq ${h.seq}`)
    assert.ok(c.models.length >= held.length && c.models.length <= stored)
    c.close()
  })
})
