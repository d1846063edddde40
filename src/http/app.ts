// buildApp(deps) assembles the fastify app; it never listens by itself.
// One error handler turns every failure into the DIP envelope with the HTTP
// status of PROTOCOL.md §1 and never echoes internals on a 5xx.
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify'
import { DipError } from '../errors.js'
import rateLimit from '@fastify/rate-limit'
import { ONE_PASS_SIGN_MIN, sign, signOnePass } from '../crypto/ed25519.js'
import type { NodeIdentity } from '../trust/identity.js'
import type { Metrics } from '../metrics.js'
import { errorXml, PING_VERSION, REQUEST_VERSIONS, RESPONSE_PREFIX, type Limits, type SupportedSet } from '../protocol/envelope.js'
import { formatVersion } from '../protocol/version.js'
import { registerSyncRoutes, sendXml, type SyncDeps } from './sync-routes.js'
import { isLocalRequest, localStatus, registerLocalRoutes, type LocalDeps } from './local-routes.js'

export interface AppDeps extends SyncDeps {
  /** the node's keys: the current one signs every answer (PROTOCOL.md §8); the manifest publishes life, rotations, proofs */
  identity: NodeIdentity
  /** Prometheus metrics served at /metrics; absent = not served */
  metrics?: Metrics | undefined
  /** sync requests per client address and window; absent or max 0 = no limit */
  rateLimit?: { max: number; windowSeconds: number } | undefined
  /** the local API for the CLI and host applications; absent = not served */
  local?: LocalDeps | undefined
  logger?: boolean
  /** how long a client may take to send a whole request, headers and body (default REQUEST_TIMEOUT_MS) */
  requestTimeoutMs?: number | undefined
}

/**
 * A request must arrive whole within this (Node's own default; fastify's is
 * none): a client that stalls mid-body would otherwise hold its connection
 * and up to a body's limit of memory for ever. 16 MiB in 300 s is ~450 kbit/s.
 */
export const REQUEST_TIMEOUT_MS = 300_000

/**
 * What Node's HTTP parser refuses before any route sees the request
 * (framing: Content-Length, chunks, header bytes; or the request timeout)
 * as a signed DIP answer, like every other, instead of fastify's JSON. The
 * connection is closed after it: its framing can no longer be trusted.
 */
/** An error as a signed DIP answer (PROTOCOL.md §1, §8): its body and the headers that sign it. */
function signedError(e: DipError, identity: NodeIdentity, supported: SupportedSet): { body: Buffer; signature: Record<string, string> } {
  const body = Buffer.from(errorXml(e, supported), 'utf8')
  return { body, signature: responseSignature(identity, body) }
}

function clientErrorAnswer(err: NodeJS.ErrnoException, socket: Socket, identity: NodeIdentity, supported: SupportedSet): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  // A response already under way on this connection cannot be followed by another.
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage
  if (socket.writable && !inFlight?.headersSent) {
    const e =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? new DipError('DIP_REQUEST_TOO_LARGE', 'the request headers are over the limit')
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? new DipError('DIP_REQUEST_INVALID', 'the request did not arrive whole in time')
          : new DipError('DIP_REQUEST_INVALID', 'malformed HTTP request')
    const { body, signature } = signedError(e, identity, supported)
    let head = `HTTP/1.1 ${e.httpStatus} ${STATUS_CODES[e.httpStatus]}\r\nContent-Type: application/xml; charset=utf-8\r\nContent-Length: ${body.length}\r\n`
    for (const [k, v] of Object.entries(signature)) head += `${k}: ${v}\r\n`
    socket.write(Buffer.concat([Buffer.from(`${head}Connection: close\r\n\r\n`, 'latin1'), body]))
  }
  socket.destroy()
}

/** fastify's own errors that have a DIP code */
const FASTIFY_CODES: Record<string, DipError['code']> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'DIP_REQUEST_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'DIP_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'DIP_REQUEST_INVALID',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'DIP_REQUEST_INVALID',
  FST_ERR_CTP_INVALID_JSON_BODY: 'DIP_REQUEST_INVALID',
}

export function toDipError(error: unknown): DipError {
  if (error instanceof DipError) return error
  const e = error as FastifyError
  const code = typeof e?.code === 'string' ? FASTIFY_CODES[e.code] : undefined
  if (code) return new DipError(code, code === 'DIP_REQUEST_TOO_LARGE' ? 'the request body is over the limit' : e.message, { cause: error })
  if (typeof e?.statusCode === 'number' && e.statusCode === 400) return new DipError('DIP_REQUEST_INVALID', 'bad request', { cause: error })
  return new DipError('DIP_INTERNAL', 'internal error', { cause: error })
}

export function supportedSet(deps: Pick<SyncDeps, 'registry'>): SupportedSet {
  return {
    // ping is dipd's extension (spec/push.md): announced so that peers know they may send it.
    requests: { ...Object.fromEntries(Object.entries(REQUEST_VERSIONS).map(([t, v]) => [t, formatVersion(v)])), ping: formatVersion(PING_VERSION) },
    models: deps.registry.versions(),
  }
}

/**
 * "dip-response:" + body, without a copy when the body was built right after
 * the prefix in one buffer (get answers are: a megabyte copied less each).
 */
function signedBytes(body: Buffer): Uint8Array {
  const p = RESPONSE_PREFIX.length
  if (body.byteOffset >= p) {
    const span = new Uint8Array(body.buffer, body.byteOffset - p, p + body.length)
    if (RESPONSE_PREFIX.equals(span.subarray(0, p))) return span
  }
  return Buffer.concat([RESPONSE_PREFIX, body])
}

/** PROTOCOL.md §8: the headers that sign an answer's exact body bytes. */
export function responseSignature(identity: NodeIdentity, body: Buffer): Record<string, string> {
  const key = identity.current
  const bytes = signedBytes(body)
  // Long answers (gets: ~1.6 MB) are hashed once, not twice.
  const signature = bytes.length >= ONE_PASS_SIGN_MIN ? signOnePass(key, bytes) : sign(key, bytes)
  return { 'DIP-Node-Key': `ed25519::${key.publicKeyHex}`, 'DIP-Signature': Buffer.from(signature).toString('hex') }
}

/** The local API answers JSON, errors included (README): `{"error": {code, message, peerCode}}`. */
function sendLocalError(reply: FastifyReply, e: DipError): FastifyReply {
  return reply.code(localStatus(e)).send({ error: { code: e.code, message: e.code === 'DIP_INTERNAL' ? 'internal error' : e.message, peerCode: e.peerCode } })
}

export function buildApp(deps: AppDeps): FastifyInstance {
  const limits: Limits = deps.limits
  const requestTimeout = deps.requestTimeoutMs ?? REQUEST_TIMEOUT_MS
  const supported = supportedSet(deps)
  const app = Fastify({
    logger: deps.logger ?? false,
    bodyLimit: limits.maxBodyBytes,
    requestTimeout,
    // Node checks the timeouts on this period (30 s by default), and takes
    // the smaller of the two for the headers: keep the headers' own (60 s) smaller.
    http: { connectionsCheckingInterval: Math.min(30_000, Math.max(50, Math.floor(requestTimeout / 4))), headersTimeout: Math.min(60_000, requestTimeout) },
    clientErrorHandler: (err, socket) => clientErrorAnswer(err, socket, deps.identity, supported),
    // PROTOCOL.md §1: served with and without the trailing slash, never redirected.
    // DIP ids are long: keep the router's parameter limit generous.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 512 },
    // Errors the router raises before any route (a parameter over its
    // length, a malformed %-escape) get the DIP envelope too: an over-long
    // /api/sync/<type>/ is an unknown request type.
    frameworkErrors: (error, request, reply) => {
      const sync = request.url.startsWith('/api/sync/') && request.method === 'POST'
      const e =
        error.code === 'FST_ERR_MAX_PARAM_LENGTH' && sync
          ? new DipError('DIP_REQUEST_NOT_SUPPORTED', 'request type is not supported')
          : new DipError('DIP_REQUEST_INVALID', 'malformed request line', { cause: error })
      if (isLocalRequest(request)) return void sendLocalError(reply, e)
      // These replies bypass the hooks: sign here.
      const { body, signature } = signedError(e, deps.identity, supported)
      void sendXml(reply.headers(signature), e.httpStatus, body)
    },
  })
  const { identity } = deps

  // PROTOCOL.md §1 accepts no media type; fastify refuses an empty one
  // (`Content-Type:` with nothing, or only parameters) before any route.
  app.addHook('onRequest', async (request) => {
    const type = request.headers['content-type']
    if (type !== undefined && type.split(';')[0]!.trim() === '') delete request.headers['content-type']
  })

  // PROTOCOL.md §8: every answer under /api/sync/ (errors too, blob bytes not) and
  // the manifest carry the node key and its signature over "dip-response:" +
  // the exact body bytes. The prefix keeps a body from ever passing for
  // signed content. One signature per answer, whatever its size.
  app.addHook('onSend', async (request, reply, payload) => {
    // The route the request reached (a path may spell it with %-escapes), else the path as sent.
    const path = request.routeOptions.url ?? request.url.split('?')[0]!
    // A blob's hash vouches for its bytes; a blob route's error is an envelope like any other.
    const blobBytes = path.startsWith('/api/sync/blob/') && reply.statusCode === 200
    const signed = (path.startsWith('/api/sync/') && !blobBytes) || path === '/.well-known/dip.json' || path === '/.well-known/dip.json/'
    if (!signed) return payload
    const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : Buffer.isBuffer(payload) ? payload : undefined
    if (!body) return payload
    for (const [k, v] of Object.entries(responseSignature(identity, body))) reply.header(k, v)
    return body
  })

  const metrics = deps.metrics
  if (metrics) {
    app.addHook('onResponse', async (request, reply) => {
      if (!request.url.startsWith('/api/sync/')) return
      const m = /^\/api\/sync\/(list|get|put|ping|blob)\b/.exec(request.url)
      metrics.requests.inc({ type: m ? m[1]! : 'other', status: String(reply.statusCode) })
    })
    app.get('/metrics', async (_request, reply) => reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics()))
  }

  // PROTOCOL.md §1: 429 in the DIP envelope, per client address. The local
  // API (loopback and token) is not limited.
  const rl = deps.rateLimit
  if (rl && rl.max > 0) {
    app.register(rateLimit, {
      max: rl.max,
      timeWindow: rl.windowSeconds * 1000,
      allowList: (request) => isLocalRequest(request),
      errorResponseBuilder: (_request, context) => new DipError('DIP_RATE_LIMITED', `over ${context.max} requests in ${Math.round(rl.windowSeconds)} s; retry after ${context.after}`),
    })
  }

  app.setErrorHandler((error, request, reply) => {
    const e = toDipError(error)
    // 501 says what the client asked is not spoken here: not this node's failure.
    if (e.httpStatus >= 500 && e.httpStatus !== 501) request.log.error({ err: error }, 'request failed')
    if (isLocalRequest(request)) return sendLocalError(reply, e)
    return sendXml(reply, e.httpStatus, errorXml(e, supported))
  })
  app.setNotFoundHandler((request, reply) => {
    const e = new DipError('DIP_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]!.slice(0, 200)}`)
    return isLocalRequest(request) ? sendLocalError(reply, e) : sendXml(reply, 404, errorXml(e, supported))
  })

  // PROTOCOL.md §9 (after Urbit's Beacon): built per request, since a key
  // rotation or a new proof changes it while the daemon runs.
  const published = {
    ...limits,
    maxFutureSeconds: deps.ingest.maxFutureSeconds,
    ...(rl && rl.max > 0 ? { rateLimitMax: rl.max, rateLimitWindowSeconds: rl.windowSeconds } : {}),
  }
  // No JSON or text parsing anywhere: a body to an unknown path is 404, whatever it holds.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body))

  // Routes live in a child scope registered after the rate limiter, so that
  // its hooks cover them. Bodies arrive as bytes whatever their media type:
  // the sync routes check the type themselves (415 in the DIP envelope) and
  // parse with the one hardened XML parser; the local API reads JSON.
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body))
    scope.get('/.well-known/dip.json', async (_request, reply) => {
      const manifest = {
        node: identity.nodeKey,
        life: identity.life,
        requests: supported.requests,
        models: supported.models,
        limits: published,
        proofs: identity.proofs,
        rotations: identity.rotations,
      }
      return reply.header('content-type', 'application/json; charset=utf-8').send(JSON.stringify(manifest))
    })
    registerSyncRoutes(scope, deps)
    if (deps.local) registerLocalRoutes(scope, deps.local)
  })
  return app
}
