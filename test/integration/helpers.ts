// Shared helpers of the integration tests: temp folders, real HTTP on
// 127.0.0.1, DIP requests built with the project's envelope builders, and a
// tiny fake peer. No test lives here.
import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { defaultRegistry } from '../../src/daemon.js'
import { sign, verify, type NodeKeyPair } from '../../src/crypto/ed25519.js'
import { authorModel, stageModel, verifySignatures, type StagedModel } from '../../src/model/signed.js'
import { postModel } from '../../src/model/post/post.js'
import { DEFAULT_LIMITS, getRequestXml, listRequestXml, putRequestXml, readGetAnswer, readListAnswer, readPutAnswer, readResponseHead, type PutResultIn } from '../../src/protocol/envelope.js'
import { formatId, type GlobalId } from '../../src/protocol/id.js'
import { parseXml, type XmlElement } from '../../src/protocol/xml.js'

export const POST = { name: 'post', version: '1.1' } as const
export const registry = defaultRegistry()

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `dipd-it-${prefix}-`))
}

export async function removeDir(dir: string | undefined): Promise<void> {
  if (dir) await rm(dir, { recursive: true, force: true, maxRetries: 3 })
}

export function idOf(key: string, localId: string): GlobalId {
  return { type: 'ed25519', key, localId }
}

export interface PostSpec {
  localId: string
  title?: string
  text?: string
  tags?: string[]
  thread?: GlobalId | undefined
  pubTime?: string
  updateTime?: string
  tripcode?: string
  attachments?: { hash: string; mimetype: string; name: string; size: number }[]
}

/** A post signed by `pair` (the key in its id), staged exactly like a received model. */
export function signPost(pair: NodeKeyPair, spec: PostSpec, limits: { maxContentBytes: number; maxAttachmentBytes: number } = DEFAULT_LIMITS): StagedModel {
  const t = spec.updateTime ?? '2024-01-01T00:00:00Z'
  const fields = {
    id: idOf(pair.publicKeyHex, spec.localId),
    title: spec.title ?? `title ${spec.localId}`,
    text: spec.text ?? `text of ${spec.localId}`,
    tags: spec.tags ?? [],
    thread: spec.thread,
    pubTime: spec.pubTime ?? t,
    updateTime: t,
    ...(spec.tripcode === undefined ? {} : { tripcode: spec.tripcode }),
    ...(spec.attachments === undefined ? {} : { attachments: spec.attachments }),
  }
  const r = authorModel(postModel, fields, pair, registry, limits)
  if (!r.ok) throw new Error(`test bug: cannot author ${spec.localId}: ${r.error.code} ${r.error.message}`)
  return r.value
}

/** Parses one `<model>` XML string (as signPost's .xml) and stages it. */
export function stageXml(xml: string): StagedModel {
  const el = parseXml(xml)
  if (!el.ok) throw new Error(`test bug: ${el.error.message}`)
  const st = stageModel(el.value, registry, DEFAULT_LIMITS)
  if (!st.ok) throw new Error(`test bug: ${st.rejection.code} ${st.rejection.message}`)
  return st.value
}

export const sha256 = (b: Uint8Array | string) => 'sha256:' + createHash('sha256').update(b).digest('hex')

export interface HttpAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

export async function httpPost(url: string, body: string | Buffer, contentType = 'application/xml'): Promise<HttpAnswer> {
  const res = await request(url, {
    method: 'POST',
    body,
    headers: { 'content-type': contentType },
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
  })
  const buf = Buffer.from(await res.body.arrayBuffer())
  return { status: res.statusCode, headers: res.headers, body: buf }
}

export async function httpGet(url: string): Promise<HttpAnswer> {
  const res = await request(url, { method: 'GET', headersTimeout: 30_000, bodyTimeout: 30_000 })
  const buf = Buffer.from(await res.body.arrayBuffer())
  return { status: res.statusCode, headers: res.headers, body: buf }
}

/** POSTs a DIP request and parses the envelope; throws (test failure) unless it is XML with a response head. */
export async function dip(base: string, type: 'list' | 'get' | 'put', xml: string): Promise<{ http: HttpAnswer; root: XmlElement; status: string; code: string | undefined }> {
  const http = await httpPost(`${base}/api/sync/${type}/`, xml)
  const root = parseXml(http.body)
  if (!root.ok) throw new Error(`answer to ${type} is not XML (HTTP ${http.status}): ${http.body.toString('utf8').slice(0, 200)}`)
  const head = readResponseHead(root.value)
  if (!head.ok) throw new Error(`answer to ${type} has no response head: ${http.body.toString('utf8').slice(0, 200)}`)
  return { http, root: root.value, status: head.value.status, code: head.value.code }
}

export interface WireRow {
  id: string
  updateTime: string
  hash: string
}

/**
 * Lists every row of a node over HTTP, following `<next>` while `<more/>`
 * is present (bounded). Returns the rows in served order, the page count and
 * the final cursor.
 */
export async function listAll(base: string, filterXml = '', opts: { after?: string; maxPages?: number } = {}): Promise<{ rows: WireRow[]; pages: number; next: string; morePerPage: boolean[] }> {
  const rows: WireRow[] = []
  const morePerPage: boolean[] = []
  let after = opts.after
  const maxPages = opts.maxPages ?? 100
  for (let page = 1; page <= maxPages; page++) {
    const a = await dip(base, 'list', listRequestXml(POST, filterXml, after))
    if (a.status !== 'success') throw new Error(`list answered ${a.status} ${a.code}`)
    const ans = readListAnswer(a.root)
    if (!ans.ok) throw new Error(`list answer malformed: ${ans.error.code}`)
    for (const r of ans.value.rows) rows.push({ id: r.id, updateTime: r.updateTime, hash: r.hash })
    morePerPage.push(ans.value.more)
    after = ans.value.next
    if (!ans.value.more) return { rows, pages: page, next: ans.value.next, morePerPage }
  }
  throw new Error(`listing did not end within ${maxPages} pages`)
}

/** get over HTTP; returns the `<model>` elements in answer order. */
export async function getModels(base: string, ids: string[]): Promise<XmlElement[]> {
  const a = await dip(base, 'get', getRequestXml(POST, ids))
  if (a.status !== 'success') throw new Error(`get answered ${a.status} ${a.code}`)
  const models = readGetAnswer(a.root)
  if (!models.ok) throw new Error('get answer malformed')
  return models.value
}

/** put over HTTP; returns the result rows. */
export async function putModels(base: string, modelsXml: string[]): Promise<PutResultIn[]> {
  const a = await dip(base, 'put', putRequestXml(modelsXml))
  if (a.status !== 'success') throw new Error(`put answered ${a.status} ${a.code} (HTTP ${a.http.status})`)
  const rows = readPutAnswer(a.root)
  if (!rows.ok) throw new Error('put answer malformed')
  return rows.value
}

/** Stages a served model and checks its signatures the project's way. Returns the staged model and any rejection code. */
export async function verifyServed(el: XmlElement): Promise<{ staged: StagedModel | undefined; code: string | undefined }> {
  const st = stageModel(el, registry, DEFAULT_LIMITS)
  if (!st.ok) return { staged: undefined, code: st.rejection.code }
  const r = await verifySignatures(st.value)
  return { staged: st.value, code: r?.code }
}

/** Checks the signatures directly with the crypto module over the canonical content bytes. */
export function verifyDirect(m: StagedModel): boolean {
  const own = m.signatures.filter((s) => s.type === 'ed25519')
  if (own.length === 0 || !own.some((s) => s.key === m.id.key)) return false
  return own.every((s) => verify(s.key, m.contentBytes, Buffer.from(s.value, 'hex')))
}

export const idTextOf = (m: StagedModel) => formatId(m.id)

// ---- a fake peer (node:http) ----

export interface FakeReply {
  status?: number
  contentType?: string
  body: string | Buffer
}

export type FakeHandler = (type: string, body: Buffer, req: IncomingMessage) => FakeReply | Promise<FakeReply>

export interface FakePeer {
  url: string
  /** requests seen, by path */
  seen: string[]
  /** the key that signs the answers (PROTOCOL.md §8); replace to simulate a key change */
  key: NodeKeyPair
  close(): Promise<void>
}

/**
 * A small DIP peer on 127.0.0.1:0. Every answer is signed like PROTOCOL.md
 * §8 asks (DIP-Node-Key, DIP-Signature over `dip-response:` + body), so the
 * only fault in an answer is the one a test puts there.
 */
export async function fakePeer(key: NodeKeyPair, handler: FakeHandler): Promise<FakePeer> {
  const seen: string[] = []
  const peer: FakePeer = { url: '', seen, key, close: async () => {} }
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const path = (req.url ?? '').split('?')[0]!
      seen.push(path)
      const m = /^\/api\/sync\/([a-z]+)\/?$/.exec(path)
      Promise.resolve(handler(m ? m[1]! : path, Buffer.concat(chunks), req)).then(
        (r) => {
          const body = typeof r.body === 'string' ? Buffer.from(r.body, 'utf8') : r.body
          const sig = Buffer.from(sign(peer.key, Buffer.concat([Buffer.from('dip-response:'), body]))).toString('hex')
          res.writeHead(r.status ?? 200, {
            'content-type': r.contentType ?? 'application/xml; charset=utf-8',
            'content-length': String(body.length),
            'dip-node-key': `ed25519::${peer.key.publicKeyHex}`,
            'dip-signature': sig,
          })
          res.end(body)
        },
        (e: unknown) => {
          res.writeHead(500)
          res.end(String(e))
        },
      )
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const addr = server.address()
  if (typeof addr !== 'object' || !addr) throw new Error('no address')
  peer.url = `http://127.0.0.1:${addr.port}`
  peer.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  return peer
}

/** A port on 127.0.0.1 that was just free and is now closed. */
export async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  const addr = server.address()
  const port = typeof addr === 'object' && addr ? addr.port : 0
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** Ids asked for in a get request body. */
export function idsInGet(body: Buffer): string[] {
  const root = parseXml(body)
  if (!root.ok) return []
  const model = root.value.children.find((c): c is XmlElement => typeof c !== 'string' && c.name === 'model')
  if (!model) return []
  const out: string[] = []
  for (const c of model.children) {
    if (typeof c === 'string' || c.name !== 'id') continue
    out.push(`ed25519::${c.attrs.key}::${c.attrs['local-id']}`)
  }
  return out
}

/** Sorted `id hash` strings, for set comparisons that show the difference on failure. */
export const idHashSet = (rows: { id: string; hash: string }[]) => rows.map((r) => `${r.id} ${r.hash}`).sort()
