// Fetch on miss (after Tent): a get for ids a node lacks, whose key is pinned
// to a known peer, is answered from that peer; its refusals pass through.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import { request } from 'undici'
import { startDaemon, type Daemon } from '../../src/daemon.js'
import { generateKeyPair, sign } from '../../src/crypto/ed25519.js'
import { getRequestXml, readGetAnswer, readResponseHead } from '../../src/protocol/envelope.js'
import { parseXml } from '../../src/protocol/xml.js'
import { tempDir } from '../helpers.js'

const POST = { name: 'post', version: '1.1' }
const dirs: { remove(): Promise<void> }[] = []
let A: Daemon
let B: Daemon

async function get(base: string, ids: string[]) {
  const res = await request(`${base}/api/sync/get/`, { method: 'POST', body: getRequestXml(POST, ids), headers: { 'content-type': 'application/xml' } })
  const root = parseXml(Buffer.from(await res.body.arrayBuffer()))
  assert.ok(root.ok)
  const head = readResponseHead(root.value)
  assert.ok(head.ok)
  return { status: res.statusCode, head: head.value, models: head.value.status === 'success' ? (readGetAnswer(root.value) as { ok: true; value: unknown[] }).value : [] }
}

before(async () => {
  const a = await tempDir('fom-a-')
  const b = await tempDir('fom-b-')
  dirs.push(a, b)
  A = await startDaemon({ dataDir: a.path, host: '127.0.0.1', port: 0 })
  B = await startDaemon({ dataDir: b.path, host: '127.0.0.1', port: 0, fetchOnMiss: true })
  // B pins A with a pull that brings nothing.
  await B.node.pull(A.url, { tags: ['nothing-has-this-tag'] })
})

after(async () => {
  await B?.close()
  await A?.close()
  for (const d of dirs) await d.remove()
})

test('a get for a model B lacks is fetched from the peer its key is pinned to, verified and kept', async () => {
  const { id, hash } = await A.node.author('post', { title: 'origin', text: 'only on A' })
  assert.equal(await B.node.show(id), undefined)
  const r = await get(B.url, [id, `ed25519::${'00'.repeat(32)}::1`])
  assert.equal(r.status, 200)
  assert.equal(r.models.length, 1, 'the unknown key stays missing, the pinned one is fetched')
  const rows = await B.node.list()
  assert.deepEqual(rows.map((x) => [x.id, x.hash]), [[id, hash]])
})

test('without the setting a node answers only what it holds', async () => {
  const { id } = await B.node.author('post', { title: 'on B', text: 'x' })
  const r = await get(A.url, [id])
  assert.deepEqual([r.status, r.models.length], [200, 0])
})

test("an origin's refusal reaches the caller: a bare 403, and a DIP error with its code and status", async () => {
  const key = generateKeyPair()
  let mode: '403' | 'dip' = '403'
  const server: Server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      if (mode === '403') {
        res.writeHead(403, { 'content-type': 'text/plain' })
        res.end('forbidden')
        return
      }
      const body = Buffer.from('<response><status>error</status><code>DIP_NOT_FOUND</code><description>gone</description></response>')
      res.writeHead(404, {
        'content-type': 'application/xml; charset=utf-8',
        'dip-node-key': `ed25519::${key.publicKeyHex}`,
        'dip-signature': Buffer.from(sign(key, Buffer.concat([Buffer.from('dip-response:'), body]))).toString('hex'),
      })
      res.end(body)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  try {
    const addr = server.address()
    assert.ok(typeof addr === 'object' && addr)
    const url = `http://127.0.0.1:${addr.port}`
    await B.node.deps.store.savePeer({ url, key: `ed25519::${key.publicKeyHex}`, life: 1, pinnedAt: new Date().toISOString(), pulls: 1, stored: 0, rejected: 0 })
    const id = `ed25519::${key.publicKeyHex}::7`
    const before = await B.node.list()
    const refused = await get(B.url, [id])
    assert.deepEqual([refused.status, refused.head.status, refused.head.code], [403, 'error', 'DIP_REFUSED'])
    mode = 'dip'
    const gone = await get(B.url, [id])
    assert.deepEqual([gone.status, gone.head.code], [404, 'DIP_NOT_FOUND'])
    assert.deepEqual(await B.node.list(), before, 'nothing stored')
  } finally {
    server.closeAllConnections()
    await new Promise<void>((r) => server.close(() => r()))
  }
})

test('two nodes that pin each other (a pool sharing one key) do not fetch on miss from each other in a circle', { timeout: 30_000 }, async () => {
  const shared = generateKeyPair()
  const [c, d] = [await tempDir('fom-c-'), await tempDir('fom-d-')]
  dirs.push(c, d)
  const C = await startDaemon({ dataDir: c.path, host: '127.0.0.1', port: 0, fetchOnMiss: true, importKey: shared })
  const D = await startDaemon({ dataDir: d.path, host: '127.0.0.1', port: 0, fetchOnMiss: true, importKey: shared })
  try {
    // Each pins the other (the same key) with a pull that brings nothing.
    await C.node.pull(D.url, { tags: ['nothing-has-this-tag'] })
    await D.node.pull(C.url, { tags: ['nothing-has-this-tag'] })
    const gets = async (n: Daemon) => (await n.node.metrics!.requests.get()).values.filter((v) => v.labels.type === 'get').reduce((s, v) => s + v.value, 0)
    const [c0, d0] = [await gets(C), await gets(D)]
    const r = await get(C.url, [`ed25519::${shared.publicKeyHex}::404`])
    assert.deepEqual([r.status, r.models.length], [200, 0])
    // The caller's get on C, and C's one get on D; D asked no one.
    assert.deepEqual([(await gets(C)) - c0, (await gets(D)) - d0], [1, 1])
  } finally {
    await C.close()
    await D.close()
  }
})
