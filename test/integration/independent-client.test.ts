// An independent client checks PROTOCOL.md §8 against a real daemon: every
// answer under /api/sync/ (errors included) and the manifest carry
// DIP-Node-Key (the manifest's `node`) and DIP-Signature, an ed25519
// signature of "dip-response:" + the exact body bytes.
//
// The client side uses only node:http and node:crypto, never dipd's own
// modules: it reads the key from the manifest, builds the KeyObject from the
// raw key (JWK), writes and signs its own model by hand, and verifies every
// answer itself. Only the daemon under test is started through dipd.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startDaemon, type Daemon } from '../../src/daemon.js'

interface Raw {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

/** One HTTP exchange with node:http; the exact body bytes (bounded by a timeout). */
function exchange(url: string, method: 'GET' | 'POST', body?: string, contentType = 'application/xml'): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(body, 'utf8')
    const req = httpRequest(
      url,
      {
        method,
        headers: payload ? { 'content-type': contentType, 'content-length': String(payload.length) } : {},
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
        res.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out`)))
    req.on('error', reject)
    req.end(payload)
  })
}

/** The text of the first `<name>` element of an answer (enough for these fixed shapes). */
const textOf = (xml: string, name: string) => new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml)?.[1]

const PREFIX = Buffer.from('dip-response:')

function publicKeyFromNodeKey(nodeKey: string): KeyObject {
  const m = /^ed25519::([0-9a-f]{64})$/.exec(nodeKey)
  assert.ok(m, `the manifest's node is ed25519::<64 hex>: ${nodeKey}`)
  const x = Buffer.from(m[1]!, 'hex').toString('base64url')
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' })
}

/** A post written and signed by hand: the content below is already in canonical form (PROTOCOL.md §4, §5). */
function handMadePost(localId: string, text: string): { xml: string; tampered: string; id: string } {
  // A key from 32 random bytes (PKCS #8 around them), not generateKeyPairSync: on Node 20 exporting a key it made can deadlock (src/crypto/ed25519.ts, generateKeyPair).
  const privateKey = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), randomBytes(32)]), format: 'der', type: 'pkcs8' })
  const publicKey = createPublicKey(privateKey)
  const hex = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url').toString('hex')
  const content = `<content><id key="${hex}" local-id="${localId}" type="ed25519"/><title>independent</title><text>${text}</text><pub-time>2024-05-01T00:00:00Z</pub-time><update-time>2024-05-01T00:00:00Z</update-time></content>`
  const sig = sign(null, Buffer.from(content, 'utf8'), privateKey).toString('hex')
  const xml = `<model name="post" version="1.1">${content}<signatures><signature key="${hex}" type="ed25519" value="${sig}"/></signatures></model>`
  const tampered = xml.replace(`<text>${text}</text>`, `<text>${text}!</text>`)
  return { xml, tampered, id: `ed25519::${hex}::${localId}` }
}

describe('an independent client verifies signed answers (node:http + node:crypto only)', () => {
  let dir: string
  let A: Daemon
  let base: string
  let node: string
  let key: KeyObject
  let authoredId: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dipd-it-independent-'))
    A = await startDaemon({ dataDir: dir, host: '127.0.0.1', port: 0 })
    base = A.url
    authoredId = (await A.node.author('post', { title: 'served', text: 'hello', tags: ['i'] })).id
  })

  after(async () => {
    await A?.close().catch(() => {})
    if (dir) await rm(dir, { recursive: true, force: true, maxRetries: 3 })
  })

  /** DIP-Node-Key is the manifest's node; DIP-Signature verifies over "dip-response:" + body, and not over the bare body. */
  function checkSigned(r: Raw, what: string): void {
    assert.equal(r.headers['dip-node-key'], node, `${what}: DIP-Node-Key is the manifest's node`)
    const sigHex = r.headers['dip-signature']
    assert.equal(typeof sigHex, 'string', `${what}: DIP-Signature present`)
    assert.match(sigHex as string, /^[0-9a-f]{128}$/, `${what}: DIP-Signature is 128 lowercase hex`)
    const sig = Buffer.from(sigHex as string, 'hex')
    assert.ok(verify(null, Buffer.concat([PREFIX, r.body]), key, sig), `${what}: the signature verifies over dip-response: + body`)
    assert.equal(verify(null, r.body, key, sig), false, `${what}: the signature does not verify over the bare body`)
    // One changed byte of the body breaks it.
    if (r.body.length > 0) {
      const altered = Buffer.from(r.body)
      altered[altered.length - 1] = altered[altered.length - 1]! ^ 0x01
      assert.equal(verify(null, Buffer.concat([PREFIX, altered]), key, sig), false, `${what}: a changed body does not verify`)
    }
  }

  test('manifest, list, get, put, and error answers are all signed by the manifest key', async () => {
    // 1. The manifest names the key; it is signed by that key.
    const manifest = await exchange(`${base}/.well-known/dip.json`, 'GET')
    assert.equal(manifest.status, 200)
    const m = JSON.parse(manifest.body.toString('utf8')) as { node: string; life: number }
    node = m.node
    key = publicKeyFromNodeKey(node)
    checkSigned(manifest, 'manifest')

    // 2. list (success)
    const list = await exchange(`${base}/api/sync/list/`, 'POST', '<request type="list" version="1.0"><model name="post" version="1.1"/></request>')
    assert.equal(list.status, 200)
    assert.equal(textOf(list.body.toString('utf8'), 'status'), 'success')
    const [, key0, local0] = authoredId.split('::')
    assert.ok(list.body.toString('utf8').includes(`<id key="${key0}" local-id="${local0}" type="ed25519"/>`), 'the authored post is listed')
    checkSigned(list, 'list')

    // 3. get (success, one model)
    const get = await exchange(`${base}/api/sync/get/`, 'POST', `<request type="get" version="1.0"><model name="post" version="1.1"><id key="${key0}" local-id="${local0}" type="ed25519"/></model></request>`)
    assert.equal(get.status, 200)
    assert.equal(textOf(get.body.toString('utf8'), 'status'), 'success')
    assert.ok(get.body.toString('utf8').includes('<signatures>'), 'the model is in the answer')
    checkSigned(get, 'get')

    // 4. put with rows: a hand-signed post (stored) and a tampered copy of another (rejected).
    const one = handMadePost('1', 'written without dipd')
    const two = handMadePost('2', 'tampered after signing')
    const put = await exchange(`${base}/api/sync/put/`, 'POST', `<request type="put" version="1.0"><models>${one.xml}${two.tampered}</models></request>`)
    assert.equal(put.status, 200)
    const putText = put.body.toString('utf8')
    assert.equal(textOf(putText, 'status'), 'success')
    const rows = [...putText.matchAll(/<result status="([a-z]+)"(?: code="([A-Z_]+)")?/g)].map((x) => ({ status: x[1], code: x[2] }))
    assert.deepEqual(rows, [
      { status: 'stored', code: undefined },
      { status: 'rejected', code: 'DIP_SIGNATURE_INVALID' },
    ])
    checkSigned(put, 'put')

    // 5. malformed XML: 400 DIP_XML_INVALID
    const bad = await exchange(`${base}/api/sync/list/`, 'POST', '<request type="list" version="1.0"><model')
    assert.equal(bad.status, 400)
    assert.equal(textOf(bad.body.toString('utf8'), 'code'), 'DIP_XML_INVALID')
    checkSigned(bad, 'malformed XML')

    // 6. 501 not supported: an unknown request type, and a request major version not spoken.
    const unknown = await exchange(`${base}/api/sync/frobnicate/`, 'POST', '<request type="frobnicate" version="1.0"/>')
    assert.equal(unknown.status, 501)
    assert.equal(textOf(unknown.body.toString('utf8'), 'status'), 'not supported')
    assert.equal(textOf(unknown.body.toString('utf8'), 'code'), 'DIP_REQUEST_NOT_SUPPORTED')
    checkSigned(unknown, 'unknown request type')
    const v2 = await exchange(`${base}/api/sync/list/`, 'POST', '<request type="list" version="2.0"><model name="post" version="1.1"/></request>')
    assert.equal(v2.status, 501)
    assert.equal(textOf(v2.body.toString('utf8'), 'code'), 'DIP_VERSION_NOT_SUPPORTED')
    checkSigned(v2, 'list 2.0')

    // 7. 404 under /api/sync/
    const missing = await exchange(`${base}/api/sync/list/`, 'GET')
    assert.equal(missing.status, 404)
    assert.equal(textOf(missing.body.toString('utf8'), 'code'), 'DIP_NOT_FOUND')
    checkSigned(missing, 'GET on a POST route')
    const deep = await exchange(`${base}/api/sync/no/such/path`, 'POST', '<x/>')
    assert.equal(deep.status, 404)
    checkSigned(deep, 'unknown path')

    // 8. 415 and the model put by hand is served back, signed, byte for byte.
    const media = await exchange(`${base}/api/sync/list/`, 'POST', '{}', 'application/json')
    assert.equal(media.status, 415)
    assert.equal(textOf(media.body.toString('utf8'), 'code'), 'DIP_UNSUPPORTED_MEDIA_TYPE')
    checkSigned(media, '415')
    const [, k1, l1] = one.id.split('::')
    const back = await exchange(`${base}/api/sync/get`, 'POST', `<request type="get" version="1.0"><model name="post" version="1.1"><id key="${k1}" local-id="${l1}" type="ed25519"/></model></request>`)
    assert.equal(back.status, 200)
    assert.ok(back.body.toString('utf8').includes(one.xml), 'the hand-made model is served exactly as sent')
    checkSigned(back, 'get without the trailing slash')
  })
})
