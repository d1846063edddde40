// The DIP client side: one request, one parsed answer. Every failure becomes
// a DipError: DIP_PEER_UNREACHABLE (network, timeouts: transient),
// DIP_PEER_RESPONSE_INVALID (not a DIP answer), DIP_PEER_ERROR (the peer's
// own error envelope, its code in `peerCode`), DIP_PEER_SIGNATURE_INVALID
// (an answer not signed as PROTOCOL.md §8 says) and DIP_PEER_KEY_CHANGED
// (signed by another key than the one this client holds the peer to).
//
// Every answer's signature is checked, off the main thread while the body is
// parsed: nothing a peer says counts unless its node key vouches for the
// exact bytes.
import { Agent, request } from 'undici'
import { DipError, isWireCode, WIRE_CODES } from '../errors.js'
import { verifyAsync } from '../crypto/ed25519.js'
import { keyHex } from '../trust/chain.js'
import { readResponseHead, RESPONSE_PREFIX, type ResponseHead } from '../protocol/envelope.js'
import { parseXml, type Take, type XmlElement } from '../protocol/xml.js'

export interface ClientOptions {
  /** bytes; a larger answer is refused (list answers: at most MAX_LIST_ANSWER_BYTES) */
  maxResponseBytes?: number
  /** ms the peer may keep silent: until the answer's headers, and between its body's chunks */
  timeoutMs?: number
  /** a body arriving slower than this on average, once `slowGraceMs` (SLOW_GRACE_MS) have passed, is given up (default MIN_BYTES_PER_S) */
  minBytesPerSecond?: number
  slowGraceMs?: number
}

/**
 * A list page is ids, times and hashes: ~400 bytes a row, ~400 KB for
 * PROTOCOL.md's 1,000. A peer's larger answer is refused before the puller
 * holds it (a 400 MB list answer took a puller to 1.7 GB).
 */
export const MAX_LIST_ANSWER_BYTES = 32 * 1024 * 1024

/**
 * A peer that sends its answer a byte at a time never stays silent for
 * timeoutMs, and would hold a pull for ever: after SLOW_GRACE_MS of body, an
 * answer must have come at MIN_BYTES_PER_S on average (8 kbit/s, a floor no
 * working link is under).
 */
export const MIN_BYTES_PER_S = 1024
export const SLOW_GRACE_MS = 30_000

export interface Answer {
  head: ResponseHead
  root: XmlElement
  bytes: number
}

const agent = new Agent({ keepAliveTimeout: 10_000, connections: 16 })
const RETRIES = 4

/** An answer as received: `body`, and the bytes its signature covers ("dip-response:" + body, one buffer). */
interface Received {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  signed: Buffer
}

/** PROTOCOL.md §9; fields are untrusted until checked. */
export interface Manifest {
  node: string
  life?: number
  requests?: Record<string, string>
  models?: Record<string, string>
  limits?: Record<string, number>
  proofs?: unknown
  rotations?: unknown
}

export class DipClient {
  readonly base: string
  readonly #maxBytes: number
  readonly #timeoutMs: number
  readonly #minBytesPerMs: number
  readonly #slowGraceMs: number
  /** bytes received and requests sent, for summaries and benchmarks */
  bytesIn = 0
  bytesOut = 0
  requests = 0
  /** the node key every answer must be signed with; unset = take the first answer's */
  expectKey: string | undefined

  constructor(base: string, options: ClientOptions = {}) {
    let url: URL
    try {
      url = new URL(base)
    } catch (cause) {
      throw new DipError('DIP_USAGE', `not a URL: ${base}`, { cause })
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new DipError('DIP_USAGE', `peer URLs are http or https: ${base}`)
    this.base = url.href.replace(/\/+$/, '')
    this.#maxBytes = options.maxResponseBytes ?? 512 * 1024 * 1024
    this.#timeoutMs = options.timeoutMs ?? 60_000
    this.#minBytesPerMs = (options.minBytesPerSecond ?? MIN_BYTES_PER_S) / 1000
    this.#slowGraceMs = options.slowGraceMs ?? SLOW_GRACE_MS
  }

  /**
   * One exchange; a 429 or 503 is tried again after the peer's Retry-After
   * (or 0.25, 0.5, 1, 2 s), at most RETRIES times and never past 30 s of waiting.
   */
  async #fetch(path: string, init: { method: 'GET' | 'POST'; body?: Buffer; headers?: Record<string, string> }, maxBytes = this.#maxBytes): Promise<Received> {
    let waited = 0
    for (let attempt = 0; ; attempt++) {
      const res = await this.#fetchOnce(path, init, maxBytes)
      if ((res.status !== 429 && res.status !== 503) || attempt >= RETRIES) return res
      const after = Number(res.headers['retry-after'])
      const ms = Math.min(Number.isFinite(after) && after >= 0 ? after * 1000 : 250 * 2 ** attempt, 30_000 - waited)
      if (ms <= 0) return res
      waited += ms
      await new Promise((r) => setTimeout(r, ms))
    }
  }

  async #fetchOnce(path: string, init: { method: 'GET' | 'POST'; body?: Buffer; headers?: Record<string, string> }, maxBytes: number): Promise<Received> {
    this.requests++
    this.bytesOut += init.body?.length ?? 0
    let res
    try {
      res = await request(`${this.base}${path}`, {
        method: init.method,
        ...(init.body ? { body: init.body, headers: { 'content-type': 'application/xml; charset=utf-8', ...init.headers } } : {}),
        dispatcher: agent,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
      })
    } catch (cause) {
      throw new DipError('DIP_PEER_UNREACHABLE', `cannot reach ${this.base}: ${(cause as Error).message}`, { cause })
    }
    const chunks: Buffer[] = []
    let size = 0
    const bodyStart = performance.now()
    try {
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length
        if (size > maxBytes) {
          res.body.destroy()
          throw new DipError('DIP_PEER_RESPONSE_INVALID', `answer from ${this.base} is over ${maxBytes} bytes`)
        }
        const late = performance.now() - bodyStart - this.#slowGraceMs
        if (late > 0 && size < late * this.#minBytesPerMs) {
          res.body.destroy()
          throw new DipError('DIP_PEER_UNREACHABLE', `${this.base} sends its answer at under ${Math.round(this.#minBytesPerMs * 1000)} bytes/s`)
        }
        chunks.push(chunk as Buffer)
      }
    } catch (cause) {
      if (cause instanceof DipError) throw cause
      throw new DipError('DIP_PEER_UNREACHABLE', `connection to ${this.base} broke: ${(cause as Error).message}`, { cause })
    }
    this.bytesIn += size
    // The body is read into a buffer after the signature's prefix: no copy to verify it.
    const signed = Buffer.allocUnsafe(RESPONSE_PREFIX.length + size)
    RESPONSE_PREFIX.copy(signed)
    let at = RESPONSE_PREFIX.length
    for (const c of chunks) at += (c as Buffer).copy(signed, at)
    return { status: res.statusCode, headers: res.headers, body: signed.subarray(RESPONSE_PREFIX.length), signed }
  }

  /** PROTOCOL.md §8: DIP-Node-Key and DIP-Signature over "dip-response:" + body, checked off the main thread (verifyAsync). Returns the key. */
  async #checkSignature({ headers, signed }: Received): Promise<string> {
    const nodeKey = headers['dip-node-key']
    const sig = headers['dip-signature']
    const hex = typeof nodeKey === 'string' ? keyHex(nodeKey) : undefined
    if (!hex || typeof sig !== 'string' || !/^[0-9a-f]{128}$/.test(sig)) {
      throw new DipError('DIP_PEER_SIGNATURE_INVALID', `${this.base} answered without DIP-Node-Key / DIP-Signature`)
    }
    if (!(await verifyAsync(hex, signed, Buffer.from(sig, 'hex')))) {
      throw new DipError('DIP_PEER_SIGNATURE_INVALID', `the DIP-Signature of ${this.base} does not verify`)
    }
    if (this.expectKey === undefined) this.expectKey = nodeKey as string
    else if (nodeKey !== this.expectKey) throw new DipError('DIP_PEER_KEY_CHANGED', `${this.base} answered as ${nodeKey as string}, expected ${this.expectKey}`)
    return nodeKey as string
  }

  /**
   * The peer's manifest (PROTOCOL.md §9), signature checked. Undefined when
   * the peer publishes none (older DIP nodes): anything but a 200 JSON object
   * naming a node key. A manifest whose signature fails is an error.
   */
  async manifest(): Promise<Manifest | undefined> {
    const res = await this.#fetch('/.well-known/dip.json', { method: 'GET' })
    // A peer that is busy or failing is not a peer without a manifest.
    if (res.status === 429 || res.status === 502 || res.status === 503 || res.status === 504) {
      // Busy: its own DIP envelope says why, when it sends one.
      const root = parseXml(res.body)
      const head = root.ok ? readResponseHead(root.value) : undefined
      if (head?.ok && head.value.status !== 'success') throw this.peerError(head.value)
      throw new DipError('DIP_PEER_UNREACHABLE', `${this.base} answered HTTP ${res.status} for its manifest`)
    }
    if (res.status !== 200) return undefined
    let m: Manifest
    try {
      m = JSON.parse(res.body.toString('utf8')) as Manifest
    } catch {
      return undefined
    }
    if (typeof m !== 'object' || m === null || typeof m.node !== 'string' || !keyHex(m.node)) return undefined
    const saved = this.expectKey
    this.expectKey = m.node // the manifest must be signed by the key it names
    try {
      await this.#checkSignature(res)
    } finally {
      this.expectKey = saved
    }
    return m
  }

  /**
   * POSTs a DIP request to /api/sync/<type>/ and returns the parsed answer
   * (any status). `take` sees elements as they are parsed (parseXml), while
   * the answer's signature is checked off the main thread; what it took
   * counts only once this returns.
   */
  async call(type: string, xml: string, headers?: Record<string, string | undefined>, take?: Take): Promise<Answer> {
    const extra: Record<string, string> = {}
    for (const [k, v] of Object.entries(headers ?? {})) if (v !== undefined) extra[k] = v
    const max = type === 'list' ? Math.min(this.#maxBytes, MAX_LIST_ANSWER_BYTES) : this.#maxBytes
    const res = await this.#fetch(`/api/sync/${type}/`, { method: 'POST', body: Buffer.from(xml, 'utf8'), headers: extra }, max)
    // A bare 403 (a proxy, an origin that refuses this node) is a refusal, whatever its body (Tent passes it through).
    if (res.status === 403 && res.headers['dip-signature'] === undefined) {
      throw new DipError('DIP_PEER_ERROR', `${this.base} refused the request (HTTP 403)`, { peerCode: 'DIP_REFUSED' })
    }
    const signature = this.#checkSignature(res)
    signature.catch(() => {}) // awaited below, after the parse
    const parsed = parseXml(res.body, take)
    await signature
    if (!parsed.ok) throw new DipError('DIP_PEER_RESPONSE_INVALID', `answer from ${this.base} (HTTP ${res.status}) is not DIP XML: ${parsed.error.message}`)
    const head = readResponseHead(parsed.value)
    if (!head.ok) throw new DipError('DIP_PEER_RESPONSE_INVALID', `answer from ${this.base}: ${head.error.message}`)
    return { head: head.value, root: parsed.value, bytes: res.body.length }
  }

  /** Like call, but a non-success answer throws DIP_PEER_ERROR (transient when the peer's code is). */
  async success(type: string, xml: string, headers?: Record<string, string | undefined>, take?: Take): Promise<Answer> {
    const a = await this.call(type, xml, headers, take)
    if (a.head.status !== 'success') throw this.peerError(a.head)
    return a
  }

  /** DIP_PEER_ERROR for a peer's error or not-supported answer, carrying its code. */
  peerError(head: ResponseHead): DipError {
    const code = head.code ?? 'unknown'
    const known = isWireCode(code)
    return new DipError('DIP_PEER_ERROR', `${this.base} answered ${head.status} ${code}: ${head.description ?? ''}`, {
      peerCode: known ? code : `unknown:${code.slice(0, 64)}`,
      transient: known && WIRE_CODES[code].transient,
    })
  }
}
