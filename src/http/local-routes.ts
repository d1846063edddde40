// The local API: for the dipd CLI while a daemon holds the data folder, and
// for host applications. JSON in and out, loopback clients only, and a
// bearer token kept in DIR/daemon.json (mode 0600).
//
//   POST /api/local/models        {"model":"post","fields":{title,text,tags?,thread?}} -> {id, hash}
//   GET  /api/local/models/:id    -> {id, model, version, hash, updateTime, fields, xml}
//   GET  /api/local/events        Server-Sent Events: every model stored, in store order (events.ts)
//   POST /api/local/list          {filter} -> {rows:[{id, updateTime, hash}]} (written a page at a time)
//   POST /api/local/pull          {from, filter (with full?, retries?)} -> NDJSON: {"progress":…}… then {"summary":…} or {"error":…}
//   POST /api/local/call          {op, args} -> {result}: the CLI's other commands (peers, repin,
//                                 setPeer, addPeer, removePeer, rotateKey, addProof, ban, unban, bans), run in the daemon
import { timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { DipError } from '../errors.js'
import type { ModelRegistry } from '../model/registry.js'
import { parseIdText } from '../protocol/id.js'
import { modelJson, registerEventRoutes, type FeedStore } from './events.js'

/** What the local API can ask of the node (DipNode implements it). */
export interface LocalNode {
  author(model: string, fields: unknown): Promise<{ id: string; hash: string }>
  listPages(filter: Record<string, unknown>): AsyncGenerator<unknown[]>
  show(id: string): Promise<string | undefined>
  pull(from: string, filter: Record<string, unknown>, onProgress: (p: { retry?: unknown }) => void, signal?: AbortSignal): Promise<unknown>
  peers(): Promise<unknown>
  repin(url: string, key?: string): Promise<unknown>
  setPeer(url: string, policy: { allow?: string[]; deny?: string[] }): Promise<unknown>
  rotateKey(): Promise<unknown>
  addProof(turf: string): Promise<unknown>
  ban(key: string): Promise<unknown>
  unban(key: string): Promise<unknown>
  bans(): Promise<unknown>
  addPeer(url: string, opts: { push?: boolean; pull?: boolean; filter?: Record<string, unknown> }): Promise<unknown>
  removePeer(url: string): Promise<unknown>
}

export interface LocalDeps {
  token: string
  node: LocalNode
  /** the node's store and models: models by id with their fields, and the event feed */
  store: FeedStore
  registry: ModelRegistry
}

/** Operations of POST /api/local/call, with their argument counts. */
export const LOCAL_OPS = { peers: 0, repin: 2, setPeer: 2, rotateKey: 0, addProof: 1, ban: 1, unban: 1, bans: 0, addPeer: 2, removePeer: 1 } as const
export type LocalOp = keyof typeof LOCAL_OPS

const LOCAL_STATUS: Record<string, number> = {
  DIP_LOCAL_FORBIDDEN: 403,
  DIP_NOT_FOUND: 404,
  DIP_USAGE: 400,
  DIP_DATA_INVALID: 500,
  DIP_INTERNAL: 500,
}

/** Whether a request was routed to the local API (its route, or for no route its decoded path). */
export function isLocalRequest(request: FastifyRequest): boolean {
  const route = request.routeOptions.url
  if (route !== undefined) return route.startsWith('/api/local/')
  let path = request.url.split('?')[0]!
  try {
    path = decodeURIComponent(path)
  } catch {
    /* a malformed escape: as it is */
  }
  return path.startsWith('/api/local/')
}

/** HTTP status of an error on the local API: client mistakes are 400, peers' troubles 502. */
export function localStatus(e: DipError): number {
  return LOCAL_STATUS[e.code] ?? (e.code.startsWith('DIP_PEER_') ? 502 : e.httpStatus === 500 ? 400 : e.httpStatus)
}

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.')
}

function readJson(body: unknown): Record<string, unknown> {
  if (!(body instanceof Buffer) || body.length === 0) return {}
  try {
    const v = JSON.parse(body.toString('utf8')) as unknown
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>
  } catch {
    /* fall through */
  }
  throw new DipError('DIP_USAGE', 'the body must be a JSON object')
}

export function registerLocalRoutes(app: FastifyInstance, deps: LocalDeps): void {
  const expected = Buffer.from(`Bearer ${deps.token}`)
  app.addHook('onRequest', async (request) => {
    // By the route the request was sent to, not its raw URL: `/api/%6cocal/…` reaches the same routes.
    if (!isLocalRequest(request)) return
    const given = Buffer.from(request.headers.authorization ?? '')
    if (!isLoopback(request.socket.remoteAddress) || given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new DipError('DIP_LOCAL_FORBIDDEN', 'the local API takes loopback clients with the token of DIR/daemon.json')
    }
  })

  // Which process answers: the CLI's check that DIR/daemon.json names a daemon that is alive and holds DIR.
  app.get('/api/local/status', async () => ({ pid: process.pid }))

  app.post('/api/local/models', async (request) => {
    const body = readJson(request.body)
    if (body.model !== undefined && typeof body.model !== 'string') throw new DipError('DIP_USAGE', '"model" is the name of a model ("post", "message")')
    return deps.node.author(body.model ?? 'post', body.fields)
  })

  app.get('/api/local/models/:id', async (request) => {
    const id = (request.params as { id: string }).id
    const parsed = parseIdText(id)
    if (!parsed.ok) throw parsed.error
    const [found] = await deps.store.getModels([id])
    if (found === undefined) throw new DipError('DIP_NOT_FOUND', `no model ${id}`)
    const m = modelJson(deps.registry, found.row, found.xml)
    return { id: m.id, model: m.model, version: m.version, hash: m.hash, updateTime: m.updateTime, fields: m.fields, xml: found.xml }
  })

  registerEventRoutes(app, { store: deps.store, registry: deps.registry })

  // Written a page at a time: a store of millions of rows is never one array here.
  app.post('/api/local/list', async (request, reply) => {
    const body = readJson(request.body)
    const pages = deps.node.listPages((body.filter ?? {}) as Record<string, unknown>)
    const first = await pages.next() // a bad filter or model fails here, as a normal error answer
    reply.hijack()
    const res = reply.raw
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' })
    let sep = ''
    res.write('{"rows":[')
    try {
      for (let p = first; !p.done; p = await pages.next()) {
        if (p.value.length === 0) continue
        const ok = res.write(sep + p.value.map((r) => JSON.stringify(r)).join(','))
        sep = ','
        if (!ok) await new Promise((r) => res.once('drain', r).once('close', r))
        if (res.destroyed) return void pages.return(undefined) // the client went away
      }
      res.end(']}')
    } catch (err) {
      // Past the status line: a truncated body is the only way left to say it failed.
      request.log.error({ err }, 'list failed')
      res.destroy()
    }
  })

  // Pulls run for a client that named them (`id`): POST /api/local/pull/stop stops one as
  // Ctrl-C stops `dipd pull`, and its stream still ends with the summary.
  const pulls = new Map<string, AbortController>()

  app.post('/api/local/pull/stop', async (request) => {
    const body = readJson(request.body)
    const pull = typeof body.id === 'string' ? pulls.get(body.id) : undefined
    pull?.abort()
    return { stopped: pull !== undefined }
  })

  app.post('/api/local/pull', async (request, reply) => {
    const body = readJson(request.body)
    if (typeof body.from !== 'string') throw new DipError('DIP_USAGE', 'pull needs {"from": URL}')
    const res = reply.raw
    // A client that goes away (a second Ctrl-C on dipd pull) stops the pull too: the batches in flight are committed.
    const gone = new AbortController()
    res.once('close', () => {
      if (!res.writableEnded) gone.abort()
    })
    const id = typeof body.id === 'string' && body.id.length > 0 && body.id.length <= 64 && !pulls.has(body.id) ? body.id : undefined
    if (id !== undefined) {
      pulls.set(id, gone)
      res.once('close', () => pulls.delete(id))
    }
    // The 200 and its NDJSON start with the first progress line: a pull refused before it (a filter
    // the model has not, a URL that is none, a peer away) is an error answer with its status.
    let streaming = false
    const stream = () => {
      if (streaming) return
      streaming = true
      reply.hijack()
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
    }
    let last = 0
    try {
      const summary = await deps.node.pull(
        body.from,
        (body.filter ?? {}) as Record<string, unknown>,
        (p) => {
          const now = Date.now()
          if (now - last < 100 && p.retry === undefined) return // at most ten progress lines a second, and every retry
          last = now
          stream()
          res.write(JSON.stringify({ progress: p }) + '\n')
        },
        gone.signal,
      )
      stream()
      res.end(JSON.stringify({ summary }) + '\n')
    } catch (err) {
      if (!streaming) throw err
      const e = err instanceof DipError ? err : new DipError('DIP_INTERNAL', 'internal error', { cause: err })
      if (e.code === 'DIP_INTERNAL') request.log.error({ err }, 'pull failed')
      res.end(JSON.stringify({ error: { code: e.code, message: e.message, peerCode: e.peerCode } }) + '\n')
    }
  })

  app.post('/api/local/call', async (request) => {
    const body = readJson(request.body)
    const op = body.op
    if (typeof op !== 'string' || !Object.hasOwn(LOCAL_OPS, op)) throw new DipError('DIP_USAGE', `unknown operation ${JSON.stringify(op)}`)
    // JSON has no undefined: an optional argument left out (repin without --key) comes as null.
    const args = Array.isArray(body.args) ? body.args.slice(0, LOCAL_OPS[op as LocalOp]).map((a: unknown) => (a === null ? undefined : a)) : []
    const fn = deps.node[op as LocalOp] as (...a: unknown[]) => Promise<unknown>
    return { result: await fn.apply(deps.node, args) }
  })
}
