// The DIP sync API (PROTOCOL.md §1, §6, §7):
//   POST {base}/api/sync/list/  /get/  /put/   (with or without the slash)
//   GET  {base}/api/sync/blob/sha256:<hex>     (%3A accepted)
// Every answer is a DIP envelope; errors are thrown as DipError and turned
// into envelopes by the one error handler in app.ts.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { DipError, type Result } from '../errors.js'
import { FETCH_ON_MISS_HEADER, listXml, parsePing, parseRequest, putXml, REQUEST_TYPES, RESPONSE_PREFIX, type Limits, type PutRow, type RequestType, type Speaks, type ListRequest, type GetRequest, type PutRequest } from '../protocol/envelope.js'
import { parseXml } from '../protocol/xml.js'
import { stageModel, type StagedModel } from '../model/signed.js'
import type { ModelRegistry } from '../model/registry.js'
import type { GraphStore } from '../store/graph-store.js'
import type { Ingest } from '../store/ingest.js'
import { hasAttachments, servedModelXml } from '../store/served.js'

export interface SyncDeps {
  store: GraphStore
  ingest: Ingest
  registry: ModelRegistry
  limits: Limits
  /** a peer pinged (its base URL): flush its outbox, pull from it */
  onPing?: ((from: string) => void) | undefined
  /** fetch on miss (setting fetchOnMiss): fetch ids this node lacks from their origin; returns how many were stored */
  fetchOnMiss?: ((model: string, ids: string[]) => Promise<number>) | undefined
}

/** The pusher's own base URL (DIP-From, a hint only: push does not send a model back where it came from). */
function originOf(request: FastifyRequest): string | undefined {
  const from = request.headers['dip-from']
  if (typeof from !== 'string' || from.length > 2048 || !URL.canParse(from)) return undefined
  return new URL(from).href.replace(/\/+$/, '')
}

const MEDIA_OK = new Set(['application/xml', 'text/xml', ''])

/** PROTOCOL.md §1: XML or no media type, compared case-insensitively without parameters. */
function checkMedia(request: FastifyRequest): void {
  const media = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  if (!MEDIA_OK.has(media)) throw new DipError('DIP_UNSUPPORTED_MEDIA_TYPE', `media type ${media} is not XML`)
}

function unwrap<T>(r: Result<T>): T {
  if (!r.ok) throw r.error
  return r.value
}

export function sendXml(reply: FastifyReply, status: number, xml: string | Buffer): FastifyReply {
  return reply.code(status).header('content-type', 'application/xml; charset=utf-8').send(xml)
}

export function registerSyncRoutes(app: FastifyInstance, deps: SyncDeps): void {
  const { store, ingest, registry, limits } = deps
  const speaks: Speaks = { models: new Map(registry.all().map((m) => [m.name, m.version])) }

  async function list(req: ListRequest): Promise<string> {
    const def = registry.get(req.modelName)!
    const facets = unwrap(def.parseFilter(req.model))
    let afterSeq = 0
    if (req.after !== undefined) {
      const seq = store.readCursor(req.after)
      if (seq === undefined) throw new DipError('DIP_CURSOR_INVALID', 'unknown or foreign cursor')
      afterSeq = seq
    }
    const echo = req.after ?? store.cursor(afterSeq)
    const empty = (req.from !== undefined && req.to !== undefined && req.from >= req.to) || req.allow?.size === 0
    if (empty) return listXml([], echo, false)
    const page = await store.list({ model: req.modelName, from: req.from, to: req.to, facets, allow: req.allow, deny: req.deny, afterSeq, limit: limits.maxListPage })
    const last = page.rows.at(-1)
    const rows = page.rows.map((r) => ({ name: r.n, version: r.v, id: r.i, updateTime: r.t, hash: r.h }))
    return listXml(rows, last ? store.cursor(last.s) : echo, page.more)
  }

  // Get answers are assembled from the stored bytes (no decode, no string
  // building, no encode), right after the signature's prefix (app.ts signs them in place).
  const GET_HEAD = Buffer.from('<response><status>success</status><models>')
  const GET_TAIL = Buffer.from('</models></response>')
  async function get(req: GetRequest, fetching: boolean): Promise<Buffer> {
    const ids = req.ids
    let found = await store.getModelBytes(ids)
    if (deps.fetchOnMiss && !fetching && found.length < ids.length) {
      const held = new Set(found.map((f) => f.row.i))
      if ((await deps.fetchOnMiss(req.modelName, ids.filter((i) => !held.has(i)))) > 0) found = await store.getModelBytes(ids)
    }
    const parts: Buffer[] = [RESPONSE_PREFIX, GET_HEAD]
    for (const { row, xml } of found) {
      if (row.n !== req.modelName) continue
      parts.push(hasAttachments(row) ? Buffer.from(await servedModelXml(store, row, xml.toString('utf8')), 'utf8') : xml)
    }
    parts.push(GET_TAIL)
    return Buffer.concat(parts).subarray(RESPONSE_PREFIX.length)
  }

  async function put(req: PutRequest, origin: string | undefined): Promise<string> {
    const rows: (PutRow | undefined)[] = []
    const staged: StagedModel[] = []
    const at: number[] = []
    for (const el of req.models) {
      const s = stageModel(el, registry, limits)
      if (!s.ok) rows.push({ status: 'rejected', code: s.rejection.code, id: s.rejection.id })
      else {
        at.push(rows.length)
        rows.push(undefined)
        staged.push(s.value)
      }
    }
    const results = await ingest.accept(staged, origin === undefined ? {} : { origin })
    results.forEach((r, n) => {
      rows[at[n]!] = r.status === 'rejected' ? { status: 'rejected', code: r.code, id: r.model.id } : { status: r.status, hash: r.model.hash, id: r.model.id }
    })
    return putXml(rows as PutRow[])
  }

  async function handle(type: RequestType, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    checkMedia(request)
    const body = request.body instanceof Buffer ? request.body : Buffer.alloc(0)
    const root = unwrap(parseXml(body))
    const req = unwrap(parseRequest(root, type, speaks, limits))
    const xml = req.type === 'list' ? await list(req) : req.type === 'get' ? await get(req, request.headers[FETCH_ON_MISS_HEADER] !== undefined) : await put(req, originOf(request))
    return sendXml(reply, 200, xml)
  }

  // F140's ping: a peer says it is back, so its outbox is flushed now.
  app.post('/api/sync/ping', async (request, reply) => {
    checkMedia(request)
    const root = unwrap(parseXml(request.body instanceof Buffer ? request.body : Buffer.alloc(0)))
    const ping = unwrap(parsePing(root))
    deps.onPing?.(ping.from)
    return sendXml(reply, 200, '<response><status>success</status></response>')
  })

  for (const type of REQUEST_TYPES) {
    app.post(`/api/sync/${type}`, (request, reply) => handle(type, request, reply))
  }
  app.post('/api/sync/:type', async (request) => {
    const { type } = request.params as { type: string }
    throw new DipError('DIP_REQUEST_NOT_SUPPORTED', `request type ${JSON.stringify(type.slice(0, 64))} is not supported`)
  })

  app.get('/api/sync/blob/:hash', async (request, reply) => {
    const raw = (request.params as { hash: string }).hash
    const hash = raw.replace(/%3a/i, ':')
    if (!/^sha256:[0-9a-f]{64}$/.test(hash)) throw new DipError('DIP_NOT_FOUND', 'blob paths are /api/sync/blob/sha256:<64 hex>')
    const blob = await store.blob(hash)
    if (!blob) throw new DipError('DIP_NOT_FOUND', 'no such blob')
    return reply.code(200).header('content-type', blob.mimetype).send(blob.bytes)
  })
}
