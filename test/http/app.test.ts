// The sync API over real HTTP on loopback, against hostile and edge-case input.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { connect } from 'node:net'
import { Readable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { request } from 'undici'
import { NodeIdentity } from '../../src/trust/identity.js'
import { buildApp, responseSignature } from '../../src/http/app.js'
import { ONE_PASS_SIGN_MIN, verify } from '../../src/crypto/ed25519.js'
import { GraphStore } from '../../src/store/graph-store.js'
import { Ingest } from '../../src/store/ingest.js'
import { getRequestXml, listRequestXml, putRequestXml, readGetAnswer, readListAnswer, readPutAnswer, readResponseHead } from '../../src/protocol/envelope.js'
import { parseXml } from '../../src/protocol/xml.js'
import { generateKeyPair, limits, makePost, registry } from '../factory.js'

let app: FastifyInstance
let store: GraphStore
let base: string
const alice = generateKeyPair()
const bob = generateKeyPair()
const POST = { name: 'post', version: '1.1' }

before(async () => {
  store = await GraphStore.openMemory()
  app = buildApp({ store, ingest: new Ingest(store), registry, limits: { ...limits, maxListPage: 3 }, identity: new NodeIdentity({ current: alice }) })
  base = await app.listen({ host: '127.0.0.1', port: 0 })
})
after(async () => {
  await app.close()
  await store.close()
})

async function call(path: string, body: string | Buffer, contentType = 'application/xml') {
  const res = await request(base + path, { method: 'POST', body, headers: { 'content-type': contentType } })
  const text = await res.body.text()
  const root = parseXml(text)
  assert.ok(root.ok, `answer is XML: ${text.slice(0, 200)}`)
  const head = readResponseHead(root.value)
  assert.ok(head.ok)
  assert.match(String(res.headers['content-type']), /^application\/xml; charset=utf-8$/)
  return { status: res.statusCode, head: head.value, root: root.value, text }
}

/**
 * Bytes written as they are to a new connection; what came back once a
 * whole envelope did or the server closed (at most 5 s).
 */
function rawExchange(server: string, bytes: string): Promise<string> {
  const url = new URL(server)
  return new Promise<string>((resolve, reject) => {
    let data = ''
    const sock = connect(Number(url.port), url.hostname, () => sock.write(bytes, 'latin1'))
    const done = () => {
      clearTimeout(timer)
      sock.destroy()
      resolve(data)
    }
    const timer = setTimeout(() => {
      sock.destroy()
      reject(new Error(`no answer within 5 s; got ${JSON.stringify(data.slice(0, 200))}`))
    }, 5000)
    sock.on('data', (d: Buffer) => {
      data += d.toString('latin1')
      if (data.includes('</response>')) done()
    })
    sock.on('close', done)
    sock.on('error', () => {}) // the server may reset after answering; 'close' follows
  })
}

/** A raw HTTP answer read back: status, headers (lower-case names), body bytes. */
function readRawAnswer(answer: string): { status: number; headers: Record<string, string>; body: Buffer } {
  const end = answer.indexOf('\r\n\r\n')
  assert.ok(end > 0, `an HTTP answer: ${JSON.stringify(answer.slice(0, 200))}`)
  const [statusLine, ...lines] = answer.slice(0, end).split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
  }
  return { status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine!)?.[1]), headers, body: Buffer.from(answer.slice(end + 4), 'latin1') }
}

async function snapshot(): Promise<string> {
  const page = await store.list({ model: 'post', facets: [], afterSeq: 0, limit: 10_000 })
  return JSON.stringify(page.rows)
}

test('put stores, answers rows in order, and refuses bad models one by one', async () => {
  const op = makePost(alice, { localId: 1, tags: ['x'] })
  const tampered = makePost(alice, { localId: 2 })
  const foreign = makePost(alice, { localId: 3 })
  const bytes = Buffer.from('image bytes')
  const att = { hash: 'sha256:' + createHash('sha256').update(bytes).digest('hex'), mimetype: 'image/png', name: 'a.png', size: bytes.length }
  const withBlob = makePost(alice, { localId: 4, attachments: [att] })
  const wrongBlob = makePost(alice, { localId: 5, attachments: [att] })
  const tamperedXml = tampered.xml.replace('text of 2', 'text of 3')
  const foreignXml = foreign.xml.replaceAll(alice.publicKeyHex, 'ff'.repeat(32)).replace(`key="${'ff'.repeat(32)}" local-id`, `key="${alice.publicKeyHex}" local-id`)
  const blobXml = withBlob.xml.replace('</model>', `<attachment-data hash="${att.hash}">${bytes.toString('base64')}</attachment-data></model>`)
  const wrongXml = wrongBlob.xml.replace('</model>', `<attachment-data hash="${att.hash}">${Buffer.from('other bytes').toString('base64')}</attachment-data></model>`)
  const r = await call('/api/sync/put/', putRequestXml([op.xml, tamperedXml, foreignXml, op.xml, blobXml, wrongXml, '<model name="chat" version="1.0"/>', '<model name="post" version="2.0"/>']))
  assert.equal(r.status, 200)
  const rows = readPutAnswer(r.root)
  assert.ok(rows.ok)
  assert.deepEqual(
    rows.value.map((x) => x.code ?? x.status),
    ['stored', 'DIP_SIGNATURE_INVALID', 'DIP_SIGNATURE_INVALID', 'duplicate', 'stored', 'DIP_ATTACHMENT_INVALID', 'DIP_MODEL_NOT_SUPPORTED', 'DIP_VERSION_NOT_SUPPORTED'],
  )
  assert.equal(rows.value[0]!.hash, op.hash)
  assert.equal(rows.value[1]!.hash, undefined, 'rejected rows carry no hash')
  assert.equal(rows.value[1]!.id, tampered.idText)
  const blob = await request(`${base}/api/sync/blob/${att.hash.replace(':', '%3A')}`)
  assert.equal(blob.statusCode, 200)
  assert.equal(blob.headers['content-type'], 'image/png')
  assert.deepEqual(Buffer.from(await blob.body.arrayBuffer()), bytes)
})

test('a newer minor with unknown elements is accepted, filtered on known fields and relayed byte for byte', async () => {
  const base11 = makePost(bob, { localId: 77, tags: ['future'] })
  // Re-sign content that carries an element this node does not know.
  const content = base11.content.replace('</update-time>', '</update-time><mood>calm</mood>')
  const { sign } = await import('../../src/crypto/ed25519.js')
  const sig = Buffer.from(sign(bob, Buffer.from(content))).toString('hex')
  const xml = `<model name="post" version="1.9">${content}<signatures><signature key="${bob.publicKeyHex}" type="ed25519" value="${sig}"/><signature key="k" type="pgp" value="v"/></signatures></model>`
  const put = await call('/api/sync/put', putRequestXml([xml]))
  const rows = readPutAnswer(put.root)
  assert.ok(rows.ok)
  assert.equal(rows.value[0]!.status, 'stored')
  const list = await call('/api/sync/list', `<request type="list" version="1.4"><model name="post" version="1.1"><tags><tag>future</tag></tags><colour>blue</colour></model><shiny/></request>`)
  const l = readListAnswer(list.root)
  assert.ok(l.ok)
  assert.deepEqual(l.value.rows.map((r) => [r.id, r.version]), [[base11.idText, '1.9']])
  const got = await call('/api/sync/get', getRequestXml(POST, [base11.idText]))
  assert.ok(got.text.includes(xml), 'served exactly as received, unknown signature type included')
})

test('list pages with <next>/<more/>, echoes the cursor, refuses foreign cursors', async () => {
  const posts = Array.from({ length: 7 }, (_, i) => makePost(alice, { localId: 100 + i, tags: ['page'] }))
  await call('/api/sync/put', putRequestXml(posts.map((p) => p.xml)))
  const seen: string[] = []
  let after: string | undefined
  let pages = 0
  for (; pages < 10; pages++) {
    const r = await call('/api/sync/list/', listRequestXml(POST, '<tags><tag>page</tag></tags>', after))
    const l = readListAnswer(r.root)
    assert.ok(l.ok)
    seen.push(...l.value.rows.map((x) => x.id))
    after = l.value.next
    if (!l.value.more) break
  }
  assert.equal(pages, 2, 'pages of 3: 3 + 3 + 1')
  assert.deepEqual(seen, posts.map((p) => p.idText))
  const again = readListAnswer((await call('/api/sync/list', listRequestXml(POST, '<tags><tag>page</tag></tags>', after))).root)
  assert.ok(again.ok)
  assert.deepEqual([again.value.rows.length, again.value.next, again.value.more], [0, after, false])
  const foreign = await call('/api/sync/list', listRequestXml(POST, '', 'abc.1'))
  assert.deepEqual([foreign.status, foreign.head.code], [400, 'DIP_CURSOR_INVALID'])
  const empty = await call('/api/sync/list', listRequestXml(POST, '<timestamp_from>2030-01-01T00:00:00Z</timestamp_from><timestamp_to>2020-01-01T00:00:00Z</timestamp_to>', undefined))
  assert.equal(readListAnswer(empty.root).ok && empty.head.status, 'success')
})

test('get answers held ids in request order, once each; too many ids is 413', async () => {
  const a = makePost(alice, { localId: 200 })
  const b = makePost(alice, { localId: 201 })
  await call('/api/sync/put', putRequestXml([a.xml, b.xml]))
  const r = await call('/api/sync/get', getRequestXml(POST, [b.idText, `ed25519::${'00'.repeat(32)}::1`, a.idText, b.idText]))
  const models = readGetAnswer(r.root)
  assert.ok(models.ok)
  assert.deepEqual(models.value.map((m) => m.children.length), [2, 2])
  assert.ok(r.text.indexOf('local-id="201"') < r.text.indexOf('local-id="200"'))
  const many = Array.from({ length: limits.maxIdsPerGet + 1 }, (_, i) => `ed25519::${'00'.repeat(32)}::${i}`)
  const big = await call('/api/sync/get', getRequestXml(POST, many))
  assert.deepEqual([big.status, big.head.code], [413, 'DIP_REQUEST_TOO_LARGE'])
})

test('hostile requests get their status and code; nothing stored changes; the node keeps serving', async () => {
  await call('/api/sync/put', putRequestXml([makePost(alice, { localId: 300 }).xml]))
  const before = await snapshot()
  const deep = '<request type="list" version="1.0">' + '<a>'.repeat(50_000) + '</a>'.repeat(50_000) + '</request>'
  const cases: [string, string | Buffer, string, number, string, string?][] = [
    ['malformed', '<request type="list"', '/api/sync/list', 400, 'DIP_XML_INVALID'],
    ['doctype', '<!DOCTYPE x><request type="list" version="1.0"/>', '/api/sync/list', 400, 'DIP_XML_INVALID'],
    ['bomb', '<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><request type="put" version="1.0"><models>&b;</models></request>', '/api/sync/put', 400, 'DIP_XML_INVALID'],
    ['external entity', '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><request>&x;</request>', '/api/sync/get', 400, 'DIP_XML_INVALID'],
    ['50,000 deep', deep, '/api/sync/list', 400, 'DIP_XML_INVALID'],
    ['wrong type attribute', listRequestXml(POST, '', undefined), '/api/sync/get', 400, 'DIP_REQUEST_INVALID'],
    ['bad version', '<request type="list" version="one"><model name="post" version="1.1"/></request>', '/api/sync/list', 400, 'DIP_REQUEST_INVALID'],
    ['request major 2', '<request type="list" version="2.0"><model name="post" version="1.1"/></request>', '/api/sync/list', 501, 'DIP_VERSION_NOT_SUPPORTED'],
    ['model major 2', '<request type="list" version="1.0"><model name="post" version="2.1"/></request>', '/api/sync/list', 501, 'DIP_VERSION_NOT_SUPPORTED'],
    ['unknown model', '<request type="get" version="1.0"><model name="chat" version="1.0"/></request>', '/api/sync/get', 501, 'DIP_MODEL_NOT_SUPPORTED'],
    ['unknown request type', '<request type="sub" version="1.0"/>', '/api/sync/sub/', 501, 'DIP_REQUEST_NOT_SUPPORTED'],
    ['invalid id', `<request type="get" version="1.0"><model name="post" version="1.1"><id key="${'AB'.repeat(32)}" local-id="1" type="ed25519"/></model></request>`, '/api/sync/get', 400, 'DIP_ID_INVALID'],
    ['empty time filter', listRequestXml(POST, '<timestamp_from/>', undefined), '/api/sync/list', 400, 'DIP_FILTER_INVALID'],
    ['bad sender key', listRequestXml(POST, '<sender><deny><key>nope</key></deny></sender>', undefined), '/api/sync/list', 400, 'DIP_FILTER_INVALID'],
    ['json body', '{"type":"list"}', '/api/sync/list', 415, 'DIP_UNSUPPORTED_MEDIA_TYPE', 'application/json'],
    ['put without models', '<request type="put" version="1.0"/>', '/api/sync/put', 400, 'DIP_REQUEST_INVALID'],
    ['not utf-8', Buffer.from([0x3c, 0x72, 0xff, 0x2f, 0x3e]), '/api/sync/list', 400, 'DIP_XML_INVALID'],
    ['depth 65 by a self-closing element', '<request type="list" version="1.0">' + '<a>'.repeat(63) + '<b/>' + '</a>'.repeat(63) + '</request>', '/api/sync/list', 400, 'DIP_XML_INVALID'],
    ['request major of 20 digits', '<request type="list" version="99999999999999999999.0"><model name="post" version="1.1"/></request>', '/api/sync/list', 501, 'DIP_VERSION_NOT_SUPPORTED'],
    ['a second time filter, bad', listRequestXml(POST, '<timestamp_from>0</timestamp_from><timestamp_from>garbage</timestamp_from>', undefined), '/api/sync/list', 400, 'DIP_FILTER_INVALID'],
    ['a second sender filter, bad', listRequestXml(POST, '<sender/><sender><allow><key>nope</key></allow></sender>', undefined), '/api/sync/list', 400, 'DIP_FILTER_INVALID'],
    ['two cursors', listRequestXml(POST, '<after>a</after>', 'b'), '/api/sync/list', 400, 'DIP_REQUEST_INVALID'],
  ]
  for (const [name, body, path, status, code, type] of cases) {
    const r = await call(path, body, type)
    assert.deepEqual([r.status, r.head.code], [status, code], name)
    assert.equal(r.head.status, status === 501 ? 'not supported' : 'error', name)
    if (status === 501) {
      const sup = r.head.supported
      assert.deepEqual(sup, { requests: { list: '1.0', get: '1.0', put: '1.0', ping: '1.0' }, models: { post: '1.1', message: '1.0' } }, name)
    }
  }
  assert.equal(await snapshot(), before)
  const ok = await call('/api/sync/list', listRequestXml(POST, '', undefined))
  assert.equal(ok.head.status, 'success')
})

test('a filter element given twice applies twice; the models of a put in two <models> all get rows; a long minor is a newer one', async () => {
  const carol = generateKeyPair()
  const [a, b, c] = [alice, bob, carol].map((k, i) => makePost(k, { localId: 400 + i, tags: ['twice'], updateTime: `2021-0${i + 1}-01T00:00:00Z` }))
  // Two <models>: every model sent is decided, in the order sent (PROTOCOL.md §7).
  const put = await call('/api/sync/put', `<request type="put" version="1.0"><models>${a!.xml}</models><models>${b!.xml}${c!.xml}</models></request>`)
  const rows = readPutAnswer(put.root)
  assert.ok(rows.ok)
  assert.deepEqual(rows.value.map((r) => [r.id, r.status]), [a, b, c].map((m) => [m!.idText, 'stored']))
  const listed = async (filter: string, version = '1.0') => {
    const r = await call('/api/sync/list', listRequestXml(POST, `<tags><tag>twice</tag></tags>${filter}`, undefined, version))
    const l = readListAnswer(r.root)
    assert.ok(l.ok, r.text)
    return l.value.rows.map((x) => x.id)
  }
  const [ka, kb, kc] = [alice, bob, carol].map((k) => `<key>${k.publicKeyHex}</key>`)
  assert.deepEqual(await listed(''), [a, b, c].map((m) => m!.idText))
  // Every <sender> given must pass: denials add up, allowances narrow.
  assert.deepEqual(await listed(`<sender><deny>${kb}</deny></sender><sender><deny>${ka}</deny></sender>`), [c!.idText])
  assert.deepEqual(await listed(`<sender><allow>${ka}${kb}</allow></sender><sender><allow>${kb}${kc}</allow></sender>`), [b!.idText])
  assert.deepEqual(await listed(`<sender><allow>${ka}</allow><allow>${kb}</allow></sender>`), [])
  // Every time bound given applies, in any order; the epoch is no bound.
  assert.deepEqual(await listed('<timestamp_from>2021-02-01T00:00:00Z</timestamp_from><timestamp_from>0</timestamp_from>'), [b, c].map((m) => m!.idText))
  assert.deepEqual(await listed('<timestamp_from>2021-01-15T00:00:00Z</timestamp_from><timestamp_from>2021-02-15T00:00:00Z</timestamp_from>'), [c!.idText])
  assert.deepEqual(await listed('<timestamp_to>2021-03-01T00:00:00Z</timestamp_to><timestamp_to>2021-02-01T00:00:00Z</timestamp_to>'), [a!.idText])
  // PROTOCOL.md §2 bounds no part's digits: a minor of 11 digits is a newer minor.
  assert.deepEqual(await listed('', '1.12345678901'), [a, b, c].map((m) => m!.idText))
})

test('a body over the limit is 413 at once, without reading it whole', async () => {
  // Announce 17 MiB and send a few bytes: the answer must come before the body would.
  const answer = await rawExchange(base, `POST /api/sync/put HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\nContent-Length: ${17 * 1024 * 1024}\r\n\r\n<request`)
  assert.match(answer, /^HTTP\/1\.1 413/)
  assert.match(answer, /<code>DIP_REQUEST_TOO_LARGE<\/code>/)
  // Chunked, no length announced: cut off once over the limit.
  const chunks = async function* () {
    const mb = Buffer.alloc(1024 * 1024, 0x20)
    for (let i = 0; i < 40; i++) yield mb
  }
  const res = await request(base + '/api/sync/put', { method: 'POST', body: Readable.from(chunks()), headers: { 'content-type': 'application/xml' } }).catch((e: Error) => e)
  if (!(res instanceof Error)) {
    assert.equal(res.statusCode, 413)
    await res.body.dump()
  }
})

test('what breaks HTTP framing gets a signed DIP answer, then the connection closes; so does a request not sent whole in time', async () => {
  const before = await snapshot()
  const post = 'POST /api/sync/list HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n'
  const cases: [string, string, number, string][] = [
    ['a negative length', `${post}Content-Length: -1\r\n\r\n`, 400, 'DIP_REQUEST_INVALID'],
    ['two lengths', `${post}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab`, 400, 'DIP_REQUEST_INVALID'],
    ['a length of 20 digits', `${post}Content-Length: ${'9'.repeat(20)}\r\n\r\n`, 400, 'DIP_REQUEST_INVALID'],
    ['a bad chunk size', `${post}Transfer-Encoding: chunked\r\n\r\nzz\r\n`, 400, 'DIP_REQUEST_INVALID'],
    ['a NUL in a header', `${post}X-A: a\u0000b\r\nContent-Length: 0\r\n\r\n`, 400, 'DIP_REQUEST_INVALID'],
    ['20 KB of headers', `${post}X-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 413, 'DIP_REQUEST_TOO_LARGE'],
  ]
  for (const [name, bytes, status, code] of cases) {
    const a = readRawAnswer(await rawExchange(base, bytes))
    assert.equal(a.status, status, name)
    assert.equal(a.headers['content-type'], 'application/xml; charset=utf-8', name)
    assert.equal(a.headers.connection, 'close', name)
    assert.equal(Number(a.headers['content-length']), a.body.length, name)
    const root = parseXml(a.body)
    assert.ok(root.ok, name)
    const head = readResponseHead(root.value)
    assert.ok(head.ok, name)
    assert.deepEqual([head.value.status, head.value.code], ['error', code], name)
    assert.equal(a.headers['dip-node-key'], `ed25519::${alice.publicKeyHex}`, name)
    assert.ok(verify(alice.publicKeyHex, Buffer.concat([Buffer.from('dip-response:'), a.body]), Buffer.from(a.headers['dip-signature']!, 'hex')), name)
  }
  // An empty media type is none (PROTOCOL.md §1), not a 415.
  const none = readRawAnswer(await rawExchange(base, `POST /api/sync/list HTTP/1.1\r\nHost: x\r\nContent-Type:\r\nContent-Length: ${listRequestXml(POST, '', undefined).length}\r\n\r\n${listRequestXml(POST, '', undefined)}`))
  assert.equal(none.status, 200)
  assert.equal(await snapshot(), before)
  assert.equal((await call('/api/sync/list', listRequestXml(POST, '', undefined))).head.status, 'success')

  // A body that stalls is answered and its connection closed once the request timeout passes.
  const slowStore = await GraphStore.openMemory()
  const slow = buildApp({ store: slowStore, ingest: new Ingest(slowStore), registry, limits, identity: new NodeIdentity({ current: alice }), requestTimeoutMs: 300 })
  try {
    const slowBase = await slow.listen({ host: '127.0.0.1', port: 0 })
    const a = readRawAnswer(await rawExchange(slowBase, `${post}Content-Length: 200\r\n\r\n<request t`))
    assert.equal(a.status, 400)
    assert.match(a.body.toString('utf8'), /<code>DIP_REQUEST_INVALID<\/code><description>the request did not arrive whole in time<\/description>/)
    assert.ok(verify(alice.publicKeyHex, Buffer.concat([Buffer.from('dip-response:'), a.body]), Buffer.from(a.headers['dip-signature']!, 'hex')))
  } finally {
    await slow.close()
    await slowStore.close()
  }
})

test('unknown routes answer a DIP envelope; the manifest is JSON', async () => {
  const r = await request(base + '/nope')
  assert.equal(r.statusCode, 404)
  assert.match(await r.body.text(), /<code>DIP_NOT_FOUND<\/code>/)
  const m = await request(base + '/.well-known/dip.json')
  const j = (await m.body.json()) as { node: string; limits: { maxIdsPerGet: number } }
  assert.equal(j.node, `ed25519::${alice.publicKeyHex}`)
  assert.equal(j.limits.maxIdsPerGet, limits.maxIdsPerGet)
})

test('every sync answer and the manifest are signed over "dip-response:" + body, blob errors too; blob bytes are not', async () => {
  const { verify } = await import('../../src/crypto/ed25519.js')
  const check = async (res: Awaited<ReturnType<typeof request>>) => {
    const body = Buffer.from(await res.body.arrayBuffer())
    assert.equal(res.headers['dip-node-key'], `ed25519::${alice.publicKeyHex}`)
    const sig = Buffer.from(String(res.headers['dip-signature']), 'hex')
    assert.equal(verify(alice.publicKeyHex, Buffer.concat([Buffer.from('dip-response:'), body]), sig), true)
    assert.equal(verify(alice.publicKeyHex, body, sig), false, 'the prefix binds the purpose')
  }
  await check(await request(base + '/api/sync/list', { method: 'POST', body: listRequestXml(POST, '', undefined) }))
  await check(await request(base + '/api/sync/list', { method: 'POST', body: '<oops' }))
  await check(await request(base + '/api/sync/nope/', { method: 'POST', body: '' }))
  await check(await request(base + '/.well-known/dip.json'))
  const missing = await request(`${base}/api/sync/blob/sha256:${'0'.repeat(64)}`)
  assert.equal(missing.statusCode, 404)
  await check(missing)
  const bytes = Buffer.from('signed by its hash')
  const att = { hash: 'sha256:' + createHash('sha256').update(bytes).digest('hex'), mimetype: 'text/plain', name: 'a.txt', size: bytes.length }
  const post = makePost(alice, { localId: 500, attachments: [att] })
  await call('/api/sync/put', putRequestXml([post.xml.replace('</model>', `<attachment-data hash="${att.hash}">${bytes.toString('base64')}</attachment-data></model>`)]))
  const blob = await request(`${base}/api/sync/blob/${att.hash}`)
  assert.equal(blob.statusCode, 200)
  assert.deepEqual(Buffer.from(await blob.body.arrayBuffer()), bytes)
  assert.equal(blob.headers['dip-signature'], undefined)
})

test('responseSignature: a body built right after "dip-response:" in one buffer is signed in place, with the same signature as a copy', async () => {
  const pair = generateKeyPair()
  const identity = new NodeIdentity({ current: pair })
  const body = Buffer.from('<response><status>success</status><models></models></response>')
  const plain = responseSignature(identity, Buffer.from(body))
  const prefix = Buffer.from('dip-response:')
  const inPlace = Buffer.concat([prefix, body]).subarray(prefix.length)
  const afterOther = Buffer.concat([Buffer.from('dip-respons_:'), body]).subarray(prefix.length)
  const atStart = Buffer.concat([body, prefix]).subarray(0, body.length)
  for (const b of [inPlace, afterOther, atStart]) assert.deepEqual(responseSignature(identity, b), plain)
  assert.ok(verify(pair.publicKeyHex, Buffer.concat([prefix, body]), Buffer.from(plain['DIP-Signature']!, 'hex')))
  assert.ok(!verify(pair.publicKeyHex, body, Buffer.from(plain['DIP-Signature']!, 'hex')), 'the prefix is part of what is signed')
})

test('responseSignature: a long body (a get answer) is signed in one pass, in place or copied, and verifies like any other', () => {
  const pair = generateKeyPair()
  const identity = new NodeIdentity({ current: pair })
  const prefix = Buffer.from('dip-response:')
  const body = Buffer.from(`<response><status>success</status><models>${'<model/>'.repeat(ONE_PASS_SIGN_MIN / 8)}</models></response>`)
  const inPlace = Buffer.concat([prefix, body]).subarray(prefix.length)
  const sigs = [responseSignature(identity, Buffer.from(body)), responseSignature(identity, inPlace)].map((h) => Buffer.from(h['DIP-Signature']!, 'hex'))
  assert.notDeepEqual(sigs[0], sigs[1], 'a fresh nonce per answer, unlike a short answer')
  for (const sig of sigs) {
    assert.ok(verify(pair.publicKeyHex, Buffer.concat([prefix, body]), sig))
    assert.ok(!verify(pair.publicKeyHex, body, sig), 'the prefix is part of what is signed')
  }
})
