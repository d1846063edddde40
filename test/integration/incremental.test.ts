// Incremental pulls: a second pull of the same peer and filter asks only for
// what the peer stored since; late arrivals with old update-times and clock
// skew never make it miss anything; in sync it costs two small requests.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'undici'
import { startDaemon, type Daemon } from '../../src/daemon.js'
import { putRequestXml, readPutAnswer } from '../../src/protocol/envelope.js'
import { parseXml } from '../../src/protocol/xml.js'
import { generateKeyPair, makePost } from '../factory.js'
import { tempDir } from '../helpers.js'

const N = 5000
const dirs: { remove(): Promise<void> }[] = []
let A: Daemon
let B: Daemon
const author = generateKeyPair()

async function put(base: string, xmls: string[]): Promise<string[]> {
  const res = await request(`${base}/api/sync/put/`, { method: 'POST', body: putRequestXml(xmls), headers: { 'content-type': 'application/xml' } })
  const root = parseXml(Buffer.from(await res.body.arrayBuffer()))
  assert.ok(root.ok)
  const rows = readPutAnswer(root.value)
  assert.ok(rows.ok)
  return rows.value.map((r) => r.status)
}

before(async () => {
  const a = await tempDir('incr-a-')
  const b = await tempDir('incr-b-')
  dirs.push(a, b)
  A = await startDaemon({ dataDir: a.path, host: '127.0.0.1', port: 0, rateLimit: { max: 0, windowSeconds: 60 } })
  B = await startDaemon({ dataDir: b.path, host: '127.0.0.1', port: 0 })
  for (let i = 0; i < N; i += 500) {
    const batch = Array.from({ length: Math.min(500, N - i) }, (_, j) => makePost(author, { localId: i + j, text: 'y'.repeat(900), updateTime: '2024-01-01T00:00:00Z' }).xml)
    assert.ok((await put(A.url, batch)).every((s) => s === 'stored'))
  }
  const first = await B.node.pull(A.url, {})
  assert.equal(first.stored, N)
})

after(async () => {
  await B?.close()
  await A?.close()
  for (const d of dirs) await d.remove()
})

test('in sync: a second pull costs at most 2 requests and 4 KB', async () => {
  const s = await B.node.pull(A.url, {})
  assert.deepEqual([s.listed, s.fetched, s.stored], [0, 0, 0])
  assert.ok(s.requests <= 2, `${s.requests} requests`)
  assert.ok(s.bytesIn <= 4096, `${s.bytesIn} bytes in`)
})

test('1% new: the pull moves little more than the new models themselves', async () => {
  const fresh = Array.from({ length: N / 100 }, (_, i) => makePost(author, { localId: `new-${i}`, text: 'z'.repeat(1000), updateTime: '2024-02-01T00:00:00Z' }))
  assert.ok((await put(A.url, fresh.map((m) => m.xml))).every((s) => s === 'stored'))
  const s = await B.node.pull(A.url, {})
  assert.equal(s.stored, fresh.length)
  assert.equal(s.listed, fresh.length, 'only the new rows are listed')
  const modelBytes = fresh.reduce((n, m) => n + Buffer.byteLength(m.xml), 0)
  assert.ok(s.bytesIn <= 1.2 * modelBytes, `${s.bytesIn} bytes in for ${modelBytes} bytes of models`)
})

test('late arrivals with old update-times and clock skew are never missed', async () => {
  // Reaches A late, dated long before everything B already pulled.
  const late = makePost(generateKeyPair(), { localId: 'late', updateTime: '2001-01-01T00:00:00Z' })
  // Written by a node whose clock runs 10 minutes ahead (inside the 15-minute limit).
  const ahead = makePost(generateKeyPair(), { localId: 'ahead', updateTime: new Date(Date.now() + 10 * 60_000).toISOString() })
  // An edit of an old post, whose new update-time is still older than many posts B holds.
  const edit = makePost(author, { localId: 5, title: 'edited', text: 'y'.repeat(900), updateTime: '2024-01-01T00:00:01Z' })
  assert.deepEqual(await put(A.url, [late.xml, ahead.xml, edit.xml]), ['stored', 'stored', 'stored'])
  const s = await B.node.pull(A.url, {})
  assert.equal(s.stored, 3)
  for (const m of [late, ahead, edit]) assert.equal((await B.node.list()).find((r) => r.id === m.idText)?.hash, m.hash, m.idText)
  // And a time-filtered pull with its own cursor sees the late one too once it arrives.
  const later = makePost(generateKeyPair(), { localId: 'later', updateTime: '2001-06-01T00:00:00Z' })
  const c = await B.node.pull(A.url, { until: '2002-01-01T00:00:00Z' })
  assert.equal(c.listed, 1, 'the first filtered pull lists the late one')
  assert.deepEqual(await put(A.url, [later.xml]), ['stored'])
  const d = await B.node.pull(A.url, { until: '2002-01-01T00:00:00Z' })
  assert.deepEqual([d.listed, d.stored], [1, 1])
})

test('the kept cursor of a peer that lost its store is refused, and the pull lists from the start', async () => {
  const c = await tempDir('incr-c-')
  dirs.push(c)
  const url = A.url
  const port = Number(new URL(url).port)
  await A.close()
  // Same URL, a new store (and a new key: repin first, as an operator would after checking).
  A = await startDaemon({ dataDir: c.path, host: '127.0.0.1', port, rateLimit: { max: 0, windowSeconds: 60 } })
  await B.node.repin(url)
  const m = await A.node.author('post', { title: 'fresh store', text: 'x' })
  const s = await B.node.pull(url, {})
  assert.equal(s.stored, 1)
  assert.ok((await B.node.list()).some((r) => r.id === m.id))
})
