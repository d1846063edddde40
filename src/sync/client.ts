// The DIP client side: one request, one parsed answer. Every failure becomes
// a DipError: DIP_PEER_UNREACHABLE (network, timeouts: transient),
// DIP_PEER_RESPONSE_INVALID (not a DIP answer), DIP_PEER_ERROR (the peer's
// own error envelope, its code in `peerCode`).
import { Agent, request } from 'undici'
import { DipError, isWireCode } from '../errors.js'
import { readResponseHead, type ResponseHead } from '../protocol/envelope.js'
import { parseXml, type XmlElement } from '../protocol/xml.js'

export interface ClientOptions {
  /** bytes; a larger answer is refused */
  maxResponseBytes?: number
  /** ms for the whole exchange */
  timeoutMs?: number
}

export interface Answer {
  head: ResponseHead
  root: XmlElement
  bytes: number
}

const agent = new Agent({ keepAliveTimeout: 10_000, connections: 16 })

export class DipClient {
  readonly base: string
  readonly #maxBytes: number
  readonly #timeoutMs: number
  /** bytes received and requests sent, for summaries and benchmarks */
  bytesIn = 0
  bytesOut = 0
  requests = 0

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
  }

  /** POSTs a DIP request to /api/sync/<type>/ and returns the parsed answer (any status). */
  async call(type: string, xml: string): Promise<Answer> {
    const body = Buffer.from(xml, 'utf8')
    this.requests++
    this.bytesOut += body.length
    let res
    try {
      res = await request(`${this.base}/api/sync/${type}/`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/xml; charset=utf-8' },
        dispatcher: agent,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
      })
    } catch (cause) {
      throw new DipError('DIP_PEER_UNREACHABLE', `cannot reach ${this.base}: ${(cause as Error).message}`, { cause })
    }
    const chunks: Buffer[] = []
    let size = 0
    try {
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length
        if (size > this.#maxBytes) {
          res.body.destroy()
          throw new DipError('DIP_PEER_RESPONSE_INVALID', `answer from ${this.base} is over ${this.#maxBytes} bytes`)
        }
        chunks.push(chunk as Buffer)
      }
    } catch (cause) {
      if (cause instanceof DipError) throw cause
      throw new DipError('DIP_PEER_UNREACHABLE', `connection to ${this.base} broke: ${(cause as Error).message}`, { cause })
    }
    this.bytesIn += size
    const parsed = parseXml(Buffer.concat(chunks, size))
    if (!parsed.ok) throw new DipError('DIP_PEER_RESPONSE_INVALID', `answer from ${this.base} (HTTP ${res.statusCode}) is not DIP XML: ${parsed.error.message}`)
    const head = readResponseHead(parsed.value)
    if (!head.ok) throw new DipError('DIP_PEER_RESPONSE_INVALID', `answer from ${this.base}: ${head.error.message}`)
    return { head: head.value, root: parsed.value, bytes: size }
  }

  /** Like call, but a non-success answer throws DIP_PEER_ERROR (transient when the peer's code is). */
  async success(type: string, xml: string): Promise<Answer> {
    const a = await this.call(type, xml)
    if (a.head.status !== 'success') {
      const code = a.head.code ?? 'unknown'
      throw new DipError('DIP_PEER_ERROR', `${this.base} answered ${a.head.status} ${code}: ${a.head.description ?? ''}`, { peerCode: isWireCode(code) ? code : `unknown:${code.slice(0, 64)}` })
    }
    return a
  }
}
