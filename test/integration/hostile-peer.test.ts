// Hostile and broken peers: a fake DIP peer (node:http on 127.0.0.1:0) that
// serves a tampered model and a bad attachment, peers that answer garbage or
// cannot be reached, and the put side of a real daemon: tampered models,
// replies before their thread, and versions of one id arriving in any order.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer as createHttpServer } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import { startDaemon, openNode, type Daemon } from '../../src/daemon.js'
import { DipError } from '../../src/errors.js'
import { generateKeyPair, sign } from '../../src/crypto/ed25519.js'
import { listXml, type ListRowOut } from '../../src/protocol/envelope.js'
import { DipClient, MAX_LIST_ANSWER_BYTES } from '../../src/sync/client.js'
import type { StagedModel } from '../../src/model/signed.js'
import {
  closedPort,
  fakePeer,
  getModels,
  httpGet,
  idHashSet,
  idsInGet,
  listAll,
  putModels,
  removeDir,
  sha256,
  signPost,
  stageXml,
  tempDir,
  verifyServed,
  type FakePeer,
} from './helpers.js'

const isDip = (code: string) => (e: unknown) => {
  assert.ok(e instanceof DipError, `expected a DipError, got ${String(e)}`)
  assert.equal(e.code, code)
  return true
}

/** A served model: what the peer lists and what it answers on get. */
interface Served {
  idText: string
  updateTime: string
  hash: string
  xml: string
}

const served = (m: StagedModel, xml = m.xml, hash = m.hash): Served => ({ idText: m.idText, updateTime: m.meta.updateTime, hash, xml })

function listRows(models: Served[]): ListRowOut[] {
  return models.map((m) => ({ name: 'post', version: '1.1', id: m.idText, updateTime: m.updateTime, hash: m.hash }))
}

/** A well-behaved peer over a fixed set of models (one page, get in request order). */
function honest(models: () => Served[]) {
  return (type: string, body: Buffer) => {
    const all = models()
    if (type === 'list') return { body: listXml(listRows(all), 'cursor-1', false) }
    if (type === 'get') {
      const byId = new Map(all.map((m) => [m.idText, m]))
      const xml = idsInGet(body)
        .map((id) => byId.get(id)?.xml ?? '')
        .join('')
      return { body: `<response><status>success</status><models>${xml}</models></response>` }
    }
    return { status: 501, body: '<response><status>not supported</status><code>DIP_REQUEST_NOT_SUPPORTED</code><description/></response>' }
  }
}

/** The cursor a list request was sent with. */
const afterIn = (body: Buffer) => /<after>([^<]*)<\/after>/.exec(body.toString('utf8'))?.[1]

/** Changes one byte of the text of a signed model, after signing. */
function tamper(m: StagedModel, from: string, to: string): string {
  assert.equal(from.length, to.length)
  const at = m.xml.indexOf(`<text>${from}`)
  assert.ok(at > 0, 'test bug: text to tamper not found')
  return m.xml.slice(0, at) + `<text>${to}` + m.xml.slice(at + 6 + from.length)
}

const withAttachmentData = (xml: string, hash: string, bytes: Buffer) => xml.slice(0, -'</model>'.length) + `<attachment-data hash="${hash}">${bytes.toString('base64')}</attachment-data></model>`

describe('pull from a hostile peer', () => {
  const dirs: string[] = []
  const peers: FakePeer[] = []
  let B: Daemon
  const author = generateKeyPair()
  // One node key for every fake peer: if the OS hands a closed peer's port to
  // the next one, B (once it pins keys, PROTOCOL.md §8) still sees the same key.
  const peerKey = generateKeyPair()

  before(async () => {
    const dir = await tempDir('hostile-B')
    dirs.push(dir)
    B = await startDaemon({ dataDir: dir, host: '127.0.0.1', port: 0 })
  })

  /** What B's pull of `url` came to (its summary or its error), or 'timeout' if it ran longer than `ms`. */
  const pullWithin = (url: string, ms: number): Promise<unknown> =>
    Promise.race([
      B.node.pull(url, {}).then(
        (summary) => summary,
        (e: unknown) => e,
      ),
      new Promise((resolve) => setTimeout(() => resolve('timeout'), ms).unref()),
    ])

  after(async () => {
    for (const p of peers) await p.close().catch(() => {})
    await B?.close().catch(() => {})
    for (const d of dirs) await removeDir(d)
  })

  test('a tampered model and a bad attachment are rejected by code; all the others are stored', async () => {
    const N = 12
    const goodBytes = Buffer.from('\x89PNG good attachment bytes', 'latin1')
    const badSigned = Buffer.from('the bytes the author signed')
    const badSent = Buffer.from('the bytes the peer sends!!!') // same length, other hash
    assert.equal(badSigned.length, badSent.length)
    const models: Served[] = []
    const good: Served[] = []
    for (let i = 0; i < N; i++) {
      const spec = { localId: String(i), text: `hello world ${i}`, tags: i % 2 ? ['t'] : [], updateTime: `2024-02-01T00:00:${String(i).padStart(2, '0')}Z` }
      if (i === 3) {
        const m = signPost(author, spec)
        const xml = tamper(m, 'hello', 'jello')
        const st = stageXml(xml) // a consistent liar: lists the hash of what it serves
        assert.notEqual(st.hash, m.hash)
        models.push(served(m, xml, st.hash))
      } else if (i === 6) {
        const m = signPost(author, { ...spec, attachments: [{ hash: sha256(badSigned), mimetype: 'text/plain', name: 'a.txt', size: badSigned.length }] })
        models.push(served(m, withAttachmentData(m.xml, sha256(badSigned), badSent)))
      } else if (i === 8) {
        const m = signPost(author, { ...spec, attachments: [{ hash: sha256(goodBytes), mimetype: 'image/png', name: 'cat.png', size: goodBytes.length }] })
        const s = served(m, withAttachmentData(m.xml, sha256(goodBytes), goodBytes))
        models.push(s)
        good.push(s)
      } else {
        const m = signPost(author, spec)
        models.push(served(m))
        good.push(served(m))
      }
    }
    const peer = await fakePeer(peerKey, honest(() => models))
    peers.push(peer)

    const s = await B.node.pull(peer.url, {})
    assert.equal(s.listed, N)
    assert.deepEqual(s.rejected, { DIP_SIGNATURE_INVALID: 1, DIP_ATTACHMENT_INVALID: 1 })
    assert.equal(s.stored, N - 2)
    assert.equal(s.missing, 0)
    const held = await B.node.list()
    assert.deepEqual(idHashSet(held), idHashSet(good.map((m) => ({ id: m.idText, hash: m.hash }))))
    assert.equal(await B.node.show(models[3]!.idText), undefined, 'the tampered model is not held')
    assert.equal(await B.node.show(models[6]!.idText), undefined, 'the model with bad attachment bytes is not held')

    // B serves the good attachment at the blob path, with its mimetype; never the bad bytes.
    const blob = await httpGet(`${B.url}/api/sync/blob/${sha256(goodBytes)}`)
    assert.equal(blob.status, 200)
    assert.deepEqual(blob.body, goodBytes)
    assert.equal(String(blob.headers['content-type']).split(';')[0], 'image/png')
    const escaped = await httpGet(`${B.url}/api/sync/blob/${sha256(goodBytes).replace(':', '%3A')}`)
    assert.equal(escaped.status, 200)
    for (const h of [sha256(badSigned), sha256(badSent)]) assert.equal((await httpGet(`${B.url}/api/sync/blob/${h}`)).status, 404)

    // What B serves of the good models verifies, the attachment travelling inline.
    const answered = await getModels(B.url, good.map((m) => m.idText))
    assert.equal(answered.length, good.length)
    for (const el of answered) assert.equal((await verifyServed(el)).code, undefined)

    // Nothing new on a repeat, and the rejected ones stay rejected.
    const again = await B.node.pull(peer.url, {})
    assert.equal(again.stored, 0)
  })

  test('a peer serving models that break the rules: each rejected by its code, none stored', async () => {
    const big = signPost(author, { localId: 'big', text: 'x'.repeat(70_000), updateTime: '2024-02-02T00:00:00Z' }, { maxContentBytes: 1 << 20, maxAttachmentBytes: 1 << 20 })
    const future = signPost(author, { localId: 'future', updateTime: new Date(Date.now() + 60 * 60_000).toISOString() })
    const noTitle = signPost(author, { localId: 'notitle', updateTime: '2024-02-02T00:00:00Z' })
    const noTitleXml = noTitle.xml.replace(/<title>[^<]*<\/title>/, '')
    const fine = signPost(author, { localId: 'fine', updateTime: '2024-02-02T00:00:00Z' })
    const models = [served(big), served(future), served(noTitle, noTitleXml), served(fine)]
    const peer = await fakePeer(peerKey, honest(() => models))
    peers.push(peer)
    const s = await B.node.pull(peer.url, {})
    assert.deepEqual(s.rejected, { DIP_MODEL_TOO_LARGE: 1, DIP_TIME_IN_FUTURE: 1, DIP_MODEL_INVALID: 1 })
    assert.equal(s.stored, 1)
    for (const m of [big, future, noTitle]) assert.equal(await B.node.show(m.idText), undefined)
    assert.notEqual(await B.node.show(fine.idText), undefined)
  })

  test('a peer answering get with models it was not asked for: DIP_REFUSED, not stored', async () => {
    const asked = signPost(author, { localId: 'asked', updateTime: '2024-03-01T00:00:00Z' })
    const extra = signPost(author, { localId: 'extra', updateTime: '2024-03-01T00:00:00Z' })
    const peer = await fakePeer(peerKey, (type) => {
      if (type === 'list') return { body: listXml(listRows([served(asked)]), 'c', false) }
      return { body: `<response><status>success</status><models>${asked.xml}${extra.xml}${asked.xml}</models></response>` }
    })
    peers.push(peer)
    const s = await B.node.pull(peer.url, {})
    assert.equal(s.stored, 1)
    assert.deepEqual(s.rejected, { DIP_REFUSED: 2 })
    assert.notEqual(await B.node.show(asked.idText), undefined)
    assert.equal(await B.node.show(extra.idText), undefined)
  })

  const garbage: [string, string, string][] = [
    ['text that is not XML', 'text/plain', 'this is not xml at all'],
    ['an HTML page', 'text/html', '<html><body><h1>502 Bad Gateway</h1></body></html>'],
    ['an empty body', 'application/xml', ''],
    ['a response without <models>', 'application/xml', '<response><status>success</status></response>'],
    ['an unknown status', 'application/xml', '<response><status>great</status><models/><next>c</next></response>'],
    ['a malformed list row', 'application/xml', '<response><status>success</status><models><model name="post" version="1.1"><id key="zz" local-id="1" type="ed25519"/><update-time>2024-01-01T00:00:00Z</update-time><hash>sha256:00</hash></model></models><next>c</next></response>'],
    ['JSON', 'application/json', '{"status":"success","models":[]}'],
  ]
  for (const [what, type, body] of garbage) {
    test(`a peer answering list with ${what}: DIP_PEER_RESPONSE_INVALID, store unchanged`, async () => {
      const peer = await fakePeer(peerKey, () => ({ contentType: type, body }))
      peers.push(peer)
      const before = await B.node.list()
      assert.ok(before.length > 0)
      await assert.rejects(B.node.pull(peer.url, {}), isDip('DIP_PEER_RESPONSE_INVALID'))
      assert.deepEqual(await B.node.list(), before)
    })
  }

  test('a peer whose get answers garbage after a good list: DIP_PEER_RESPONSE_INVALID, nothing stored, nothing remembered', async () => {
    const models = [0, 1, 2].map((i) => served(signPost(author, { localId: `g${i}`, updateTime: '2024-04-01T00:00:00Z' })))
    let broken = true
    const ok = honest(() => models)
    const peer = await fakePeer(peerKey, (type, body) => {
      if (type === 'get' && broken) return { body: '<response><status>success</status><models><model' }
      return ok(type, body)
    })
    peers.push(peer)
    const before = await B.node.list()
    await assert.rejects(B.node.pull(peer.url, {}), isDip('DIP_PEER_RESPONSE_INVALID'))
    assert.deepEqual(await B.node.list(), before)
    // The failed pull kept no checkpoint: once the peer is fixed, the next pull gets all three.
    broken = false
    const s = await B.node.pull(peer.url, {})
    assert.equal(s.stored, 3)
    assert.deepEqual(s.rejected, {})
  })

  test('a peer answering with its own DIP error envelope: DIP_PEER_ERROR carrying the peer code', async () => {
    const peer = await fakePeer(peerKey, () => ({
      status: 503,
      body: '<response><status>error</status><code>DIP_UNAVAILABLE</code><description>busy</description></response>',
    }))
    peers.push(peer)
    const before = await B.node.list()
    await assert.rejects(B.node.pull(peer.url, {}), (e: unknown) => {
      assert.ok(e instanceof DipError)
      assert.equal(e.code, 'DIP_PEER_ERROR')
      assert.equal(e.peerCode, 'DIP_UNAVAILABLE')
      return true
    })
    assert.deepEqual(await B.node.list(), before)
  })

  test('a peer that forgot the kept cursor (DIP_CURSOR_INVALID): the pull lists again from the start', async () => {
    const models = [served(signPost(author, { localId: 'cur-1', updateTime: '2024-04-02T00:00:00Z' }))]
    const lists: (string | undefined)[] = []
    const ok = honest(() => models)
    const peer = await fakePeer(peerKey, (type, body) => {
      if (type === 'list') {
        const after = afterIn(body)
        lists.push(after)
        if (after !== undefined) return { status: 400, body: '<response><status>error</status><code>DIP_CURSOR_INVALID</code><description/></response>' }
      }
      return ok(type, body)
    })
    peers.push(peer)
    assert.equal((await B.node.pull(peer.url, {})).stored, 1)
    // The peer's store was "rebuilt": it forgot its cursors and holds one more model.
    models.push(served(signPost(author, { localId: 'cur-2', updateTime: '2024-04-02T00:00:00Z' })))
    const s = await B.node.pull(peer.url, {})
    assert.deepEqual(lists, [undefined, 'cursor-1', undefined], 'first pull from the start, then the kept cursor, then from the start again')
    assert.equal(s.stored, 1)
    assert.equal(s.skipped, 1)
  })

  test('a peer that claims <more/> forever without rows: the pull ends with DIP_PEER_RESPONSE_INVALID (bounded)', async () => {
    let pages = 0
    const peer = await fakePeer(peerKey, (type) => {
      if (type !== 'list') return { body: '<response><status>success</status><models/></response>' }
      pages++
      return { body: '<response><status>success</status><models/><next>same</next><more/></response>' }
    })
    peers.push(peer)
    const before = await B.node.list()
    const outcome = await pullWithin(peer.url, 3_000)
    // Stop a runaway pull: with the peer gone its next request fails.
    await peer.close()
    assert.notEqual(outcome, 'timeout', `the pull was still listing after 3 s (${pages} pages of nothing)`)
    assert.ok(outcome instanceof DipError, `expected a DipError, got ${String(outcome)}`)
    assert.equal(outcome.code, 'DIP_PEER_RESPONSE_INVALID')
    assert.deepEqual(await B.node.list(), before)
  })

  test('a peer that lists in a circle (a cursor it gave before, with <more/>): DIP_PEER_RESPONSE_INVALID (bounded)', async () => {
    const models = [served(signPost(author, { localId: 'circle-1', updateTime: '2024-04-03T00:00:00Z' }))]
    const ok = honest(() => models)
    const sent: (string | undefined)[] = []
    // c1 -> c2 -> c1 -> …: every page brings rows and a cursor other than the one asked with.
    const peer = await fakePeer(peerKey, (type, body) => {
      if (type !== 'list') return ok(type, body)
      const after = afterIn(body)
      sent.push(after)
      return { body: listXml(listRows(models), after === 'c1' ? 'c2' : 'c1', true) }
    })
    peers.push(peer)
    const outcome = await pullWithin(peer.url, 3_000)
    await peer.close()
    assert.notEqual(outcome, 'timeout', `the pull was still listing after 3 s (${sent.length} pages)`)
    assert.ok(outcome instanceof DipError, `expected a DipError, got ${String(outcome)}`)
    assert.equal(outcome.code, 'DIP_PEER_RESPONSE_INVALID')
    assert.match(outcome.message, /in a circle/)
    assert.deepEqual(sent, [undefined, 'c1', 'c2'])
  })

  test('ids listed but left out of the get answer are asked for again by the next pull, once', async () => {
    const models = [1, 2, 3, 4].map((i) => served(signPost(author, { localId: `later-${i}`, updateTime: '2024-04-05T00:00:00Z' })))
    let omit = new Set([models[1]!.idText, models[2]!.idText])
    const gets: string[][] = []
    const peer = await fakePeer(peerKey, (type, body) => {
      if (type === 'list') {
        // The kept cursor: nothing new since.
        const after = afterIn(body)
        return { body: listXml(after === 'cursor-1' ? [] : listRows(models), 'cursor-1', false) }
      }
      if (type !== 'get') return { status: 404, body: '<response><status>error</status><code>DIP_NOT_FOUND</code><description/></response>' }
      const ids = idsInGet(body)
      gets.push(ids)
      const xml = models.filter((m) => ids.includes(m.idText) && !omit.has(m.idText)).map((m) => m.xml)
      return { body: `<response><status>success</status><models>${xml.join('')}</models></response>` }
    })
    peers.push(peer)
    const first = await B.node.pull(peer.url, {})
    assert.deepEqual([first.stored, first.missing, first.askedAgain], [2, 2, undefined])
    // The peer has found one of them again; the other stays away.
    omit = new Set([models[2]!.idText])
    const second = await B.node.pull(peer.url, {})
    assert.deepEqual([second.listed, second.askedAgain, second.stored, second.missing], [0, 2, 1, 1])
    assert.deepEqual(gets[1]!.sort(), [models[1]!.idText, models[2]!.idText].sort())
    // Asked once more, then let go: the third pull asks nothing.
    const third = await B.node.pull(peer.url, {})
    assert.deepEqual([third.askedAgain, third.stored, gets.length], [undefined, 0, 2])
    const held = new Set((await B.node.list()).map((r) => r.id))
    assert.deepEqual(models.map((m) => held.has(m.idText)), [true, true, false, true])
    await peer.close()
  })

  test('a peer that lists every row twice: each fetched once, none counted missing', async () => {
    const models = [1, 2, 3].map((i) => served(signPost(author, { localId: `twice-${i}`, updateTime: '2024-04-04T00:00:00Z' })))
    const ok = honest(() => models)
    const peer = await fakePeer(peerKey, (type, body) => (type === 'list' ? { body: listXml(listRows([...models, ...models]), 'cursor-1', false) } : ok(type, body)))
    peers.push(peer)
    const s = await B.node.pull(peer.url, {})
    await peer.close()
    assert.deepEqual([s.listed, s.fetched, s.stored, s.missing], [6, 3, 3, 0])
  })

  test('a list answer over MAX_LIST_ANSWER_BYTES is refused as it arrives (DIP_PEER_RESPONSE_INVALID)', async () => {
    const padded = `<response><status>success</status><models>${' '.repeat(MAX_LIST_ANSWER_BYTES)}</models><next>x</next></response>`
    const peer = await fakePeer(peerKey, () => ({ body: padded }))
    peers.push(peer)
    const client = new DipClient(peer.url)
    await assert.rejects(client.call('list', '<request type="list" version="1.0"><model name="post" version="1.1"/></request>'), (e: unknown) => {
      isDip('DIP_PEER_RESPONSE_INVALID')(e)
      assert.match((e as Error).message, new RegExp(`over ${MAX_LIST_ANSWER_BYTES} bytes`))
      return true
    })
    await peer.close()
  })

  test('a peer that sends its answer a byte at a time: given up once under the floor rate (DIP_PEER_UNREACHABLE)', async () => {
    const body = Buffer.from('<response><status>success</status><models/></response>')
    let sentWhenClosed = -1
    const server = createHttpServer((req, res) => {
      req.resume()
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/xml; charset=utf-8', 'content-length': String(body.length) })
        let i = 0
        const drip = setInterval(() => {
          if (res.destroyed || i >= body.length) return clearInterval(drip)
          res.write(body.subarray(i, ++i))
        }, 50)
        res.on('close', () => {
          clearInterval(drip)
          sentWhenClosed = i
        })
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
    try {
      const addr = server.address()
      assert.ok(typeof addr === 'object' && addr)
      // Never silent for 50 ms, so only the floor stops it: 20 bytes/s against 1,000 once 300 ms have passed.
      const client = new DipClient(`http://127.0.0.1:${addr.port}`, { timeoutMs: 2_000, minBytesPerSecond: 1_000, slowGraceMs: 300 })
      await assert.rejects(client.call('get', '<request type="get" version="1.0"/>'), (e: unknown) => {
        isDip('DIP_PEER_UNREACHABLE')(e)
        assert.match((e as Error).message, /under 1000 bytes\/s/)
        return true
      })
      for (let i = 0; i < 100 && sentWhenClosed < 0; i++) await new Promise((r) => setTimeout(r, 20))
      assert.ok(sentWhenClosed >= 0 && sentWhenClosed < body.length, `the client hung up before the whole body came (${sentWhenClosed} of ${body.length} bytes sent)`)
    } finally {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })

  test('an unreachable peer (closed port): DIP_PEER_UNREACHABLE, store unchanged', async () => {
    const port = await closedPort()
    const before = await B.node.list()
    await assert.rejects(B.node.pull(`http://127.0.0.1:${port}`, {}), isDip('DIP_PEER_UNREACHABLE'))
    assert.deepEqual(await B.node.list(), before)
  })

  test('a peer that drops the connection without answering: DIP_PEER_UNREACHABLE', async () => {
    const server = createNetServer((socket) => socket.destroy())
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
    try {
      const addr = server.address()
      assert.ok(typeof addr === 'object' && addr)
      await assert.rejects(B.node.pull(`http://127.0.0.1:${addr.port}`, {}), isDip('DIP_PEER_UNREACHABLE'))
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })
})

describe('put into a daemon', () => {
  const dirs: string[] = []
  let D: Daemon
  const k = generateKeyPair()
  const other = generateKeyPair()

  before(async () => {
    const dir = await tempDir('put-D')
    dirs.push(dir)
    D = await startDaemon({ dataDir: dir, host: '127.0.0.1', port: 0 })
  })

  after(async () => {
    await D?.close().catch(() => {})
    for (const d of dirs) await removeDir(d)
  })

  test('a batch with a tampered model: that row is rejected DIP_SIGNATURE_INVALID, the others are stored', async () => {
    const g1 = signPost(k, { localId: 'g1', text: 'hello one' })
    const t = signPost(k, { localId: 'tampered', text: 'hello two' })
    const g2 = signPost(k, { localId: 'g2', text: 'hello three' })
    const rows = await putModels(D.url, [g1.xml, tamper(t, 'hello', 'hellp'), g2.xml])
    assert.equal(rows.length, 3)
    assert.deepEqual(
      rows.map((r) => [r.status, r.code, r.hash, r.id]),
      [
        ['stored', undefined, g1.hash, g1.idText],
        ['rejected', 'DIP_SIGNATURE_INVALID', undefined, t.idText],
        ['stored', undefined, g2.hash, g2.idText],
      ],
    )
    const got = await getModels(D.url, [g1.idText, t.idText, g2.idText])
    assert.deepEqual(
      (await Promise.all(got.map(verifyServed))).map((v) => [v.staged?.idText, v.code]),
      [
        [g1.idText, undefined],
        [g2.idText, undefined],
      ],
    )
    // The rejection poisons nothing: the genuine model of that id is stored afterwards.
    const [genuine] = await putModels(D.url, [t.xml])
    assert.equal(genuine?.status, 'stored')
    assert.equal(genuine?.hash, t.hash)
  })

  test('signature rules: wrong key, no signature, duplicates, unknown types', async () => {
    const byOther = signPost(other, { localId: 'x' }) // signed by `other` ...
    const claimed = signPost(k, { localId: 'claimed' })
    // ... content claims k's id but only `other` signed it
    const otherSig = sign(other, claimed.contentBytes)
    const wrongKey = claimed.xml.replace(/<signatures>.*<\/signatures>/, `<signatures><signature key="${other.publicKeyHex}" type="ed25519" value="${Buffer.from(otherSig).toString('hex')}"/></signatures>`)
    const noSig = signPost(k, { localId: 'nosig' }).xml.replace(/<signatures>.*<\/signatures>/, '<signatures/>')
    const dupModel = signPost(k, { localId: 'dup' })
    const sigEl = /<signature [^>]*\/>/.exec(dupModel.xml)![0]
    const duplicated = dupModel.xml.replace(sigEl, sigEl + sigEl)
    const unkModel = signPost(k, { localId: 'unknown-type' })
    const withUnknown = unkModel.xml.replace('</signatures>', '<signature key="opaque" type="x-future" value="whatever"/></signatures>')
    const badExtra = signPost(k, { localId: 'bad-extra' })
    const badExtraSig = badExtra.xml.replace('</signatures>', `<signature key="${other.publicKeyHex}" type="ed25519" value="${'00'.repeat(64)}"/></signatures>`)
    const rows = await putModels(D.url, [byOther.xml, wrongKey, noSig, duplicated, withUnknown, badExtraSig])
    assert.deepEqual(
      rows.map((r) => [r.status, r.code ?? null]),
      [
        ['stored', null],
        ['rejected', 'DIP_SIGNATURE_INVALID'],
        ['rejected', 'DIP_SIGNATURE_INVALID'],
        ['stored', null],
        ['stored', null],
        ['rejected', 'DIP_SIGNATURE_INVALID'],
      ],
    )
    // An unknown signature type is kept and relayed.
    const [relayed] = await getModels(D.url, [unkModel.idText])
    assert.ok(relayed)
    const sigs = relayed.children.find((c) => typeof c !== 'string' && c.name === 'signatures')
    assert.ok(sigs && typeof sigs !== 'string')
    assert.deepEqual(
      sigs.children.filter((c) => typeof c !== 'string').map((c) => (typeof c === 'string' ? '' : c.attrs.type)),
      ['ed25519', 'x-future'],
    )
  })

  test('rejected rows, not 501: unknown model, unknown major version, invalid content, time in future', async () => {
    const m = signPost(k, { localId: 'rows' })
    const unknownModel = m.xml.replace('<model name="post"', '<model name="poll"')
    const newMajor = m.xml.replace('version="1.1"', 'version="2.0"')
    const newMinor = signPost(k, { localId: 'minor' }).xml.replace('version="1.1"', 'version="1.7"')
    const noTitle = signPost(k, { localId: 'notitle' }).xml.replace(/<title>[^<]*<\/title>/, '')
    const soon = signPost(k, { localId: 'soon', updateTime: new Date(Date.now() + 60_000).toISOString() })
    const future = signPost(k, { localId: 'future', updateTime: new Date(Date.now() + 60 * 60_000).toISOString() })
    const rows = await putModels(D.url, [unknownModel, newMajor, noTitle, future.xml, soon.xml, newMinor])
    assert.deepEqual(
      rows.map((r) => [r.status, r.code ?? null]),
      [
        ['rejected', 'DIP_MODEL_NOT_SUPPORTED'],
        ['rejected', 'DIP_VERSION_NOT_SUPPORTED'],
        ['rejected', 'DIP_MODEL_INVALID'],
        ['rejected', 'DIP_TIME_IN_FUTURE'],
        ['stored', null],
        ['stored', null],
      ],
    )
    // A newer minor is accepted and served with the model version as received.
    const [minor] = await getModels(D.url, [rows[5]!.id!])
    assert.equal(minor?.attrs.version, '1.7')
    assert.equal((await verifyServed(minor!)).code, undefined)
  })

  test('a reply whose thread is unknown is stored; its thread lists it with the opening post once that arrives', async () => {
    const opening = signPost(k, { localId: 'op', tags: ['late'], updateTime: '2024-06-01T00:00:00Z' })
    const reply = signPost(other, { localId: 're', thread: opening.id, updateTime: '2024-06-01T00:01:00Z' })
    const filter = `<thread><id key="${opening.id.key}" local-id="${opening.id.localId}" type="ed25519"/></thread>`
    const [r1] = await putModels(D.url, [reply.xml])
    assert.equal(r1?.status, 'stored')
    // PROTOCOL.md §6: the thread filter passes every post whose thread is that id.
    assert.deepEqual(idHashSet((await listAll(D.url, filter)).rows), idHashSet([{ id: reply.idText, hash: reply.hash }]))
    const [r2] = await putModels(D.url, [opening.xml])
    assert.equal(r2?.status, 'stored')
    const want = idHashSet([
      { id: opening.idText, hash: opening.hash },
      { id: reply.idText, hash: reply.hash },
    ])
    assert.deepEqual(idHashSet((await listAll(D.url, filter)).rows), want)
    assert.deepEqual(idHashSet(await D.node.list({ thread: opening.idText })), want)
    // The tag filter matches the opening post only (replies never match).
    assert.deepEqual(idHashSet((await listAll(D.url, '<tags><tag>late</tag></tags>')).rows), idHashSet([{ id: opening.idText, hash: opening.hash }]))
    // A thread pull from D elsewhere gets both.
    const dir = await tempDir('put-E')
    dirs.push(dir)
    const E = await openNode({ dataDir: dir })
    try {
      const s = await E.pull(D.url, { thread: opening.idText })
      assert.equal(s.stored, 2)
      assert.deepEqual(idHashSet(await E.list()), want)
    } finally {
      await E.close()
    }
  })

  test('versions: the newer update-time replaces the older; an older one sent later is DIP_MODEL_STALE', async () => {
    const v1 = signPost(k, { localId: 'edited', text: 'first version', updateTime: '2024-07-01T00:00:00Z' })
    const v2 = signPost(k, { localId: 'edited', text: 'second version', pubTime: '2024-07-01T00:00:00Z', updateTime: '2024-07-02T00:00:00Z' })
    const bystander = signPost(k, { localId: 'bystander', updateTime: '2024-07-01T12:00:00Z' })
    assert.deepEqual(
      (await putModels(D.url, [v1.xml, bystander.xml])).map((r) => r.status),
      ['stored', 'stored'],
    )
    const [up] = await putModels(D.url, [v2.xml])
    assert.equal(up?.status, 'stored')
    assert.equal(up?.hash, v2.hash)
    const check = async () => {
      const rows = (await listAll(D.url)).rows
      const mine = rows.filter((r) => r.id === v1.idText)
      assert.deepEqual(mine, [{ id: v1.idText, updateTime: '2024-07-02T00:00:00Z', hash: v2.hash }], 'one row, the newer version')
      const [el] = await getModels(D.url, [v1.idText])
      assert.ok(el)
      const v = await verifyServed(el)
      assert.equal(v.code, undefined)
      assert.equal(v.staged?.hash, v2.hash)
      return rows
    }
    const rows = await check()
    assert.equal(rows.at(-1)?.id, v1.idText, 'an edit moves the id to the end of store order')
    const [late] = await putModels(D.url, [v1.xml])
    assert.equal(late?.status, 'rejected')
    assert.equal(late?.code, 'DIP_MODEL_STALE')
    assert.equal(late?.hash, undefined, 'a rejected row has no hash')
    await check()
    const [same] = await putModels(D.url, [v2.xml])
    assert.equal(same?.status, 'duplicate')
    assert.equal(same?.hash, v2.hash)
    await check()
  })

  test('versions are decided in turn within one batch, times compared as microseconds, ties by greater hash', async () => {
    // '…00Z' sorts after '…00.000001Z' as a string, but is one microsecond earlier.
    const early = signPost(k, { localId: 'us', text: 'early', updateTime: '2024-08-01T00:00:00Z' })
    const later = signPost(k, { localId: 'us', text: 'later', updateTime: '2024-08-01T00:00:00.000001Z' })
    assert.deepEqual(
      (await putModels(D.url, [later.xml, early.xml, later.xml])).map((r) => [r.status, r.code ?? null]),
      [
        ['stored', null],
        ['rejected', 'DIP_MODEL_STALE'],
        ['duplicate', null],
      ],
    )
    const early2 = signPost(k, { localId: 'us2', text: 'early', updateTime: '2024-08-01T00:00:00Z' })
    const later2 = signPost(k, { localId: 'us2', text: 'later', updateTime: '2024-08-01T00:00:00.000001Z' })
    assert.deepEqual(
      (await putModels(D.url, [early2.xml, later2.xml])).map((r) => r.status),
      ['stored', 'stored'],
    )
    // Equal update-times: the greater content hash wins, whatever the order.
    const a = signPost(k, { localId: 'tie', text: 'alpha', updateTime: '2024-08-02T00:00:00Z' })
    const b = signPost(k, { localId: 'tie', text: 'bravo', updateTime: '2024-08-02T00:00:00Z' })
    const [lo, hi] = a.hash < b.hash ? [a, b] : [b, a]
    const a2 = signPost(k, { localId: 'tie2', text: 'alpha', updateTime: '2024-08-02T00:00:00Z' })
    const b2 = signPost(k, { localId: 'tie2', text: 'bravo', updateTime: '2024-08-02T00:00:00Z' })
    const [lo2, hi2] = a2.hash < b2.hash ? [a2, b2] : [b2, a2]
    assert.deepEqual(
      (await putModels(D.url, [lo.xml, hi.xml, hi2.xml, lo2.xml])).map((r) => [r.status, r.code ?? null]),
      [
        ['stored', null],
        ['stored', null],
        ['stored', null],
        ['rejected', 'DIP_MODEL_STALE'],
      ],
    )
    const held = new Map((await listAll(D.url)).rows.map((r) => [r.id, r.hash]))
    assert.equal(held.get(later.idText), later.hash)
    assert.equal(held.get(later2.idText), later2.hash)
    assert.equal(held.get(hi.idText), hi.hash)
    assert.equal(held.get(hi2.idText), hi2.hash)
  })

  test('put rows name the id even for rejected models, and no id when none could be read', async () => {
    const m = signPost(k, { localId: 'idless' })
    const broken = m.xml.replace(/<id [^>]*\/>/, '<id key="nothex" local-id="1" type="ed25519"/>')
    const rows = await putModels(D.url, [broken])
    assert.equal(rows.length, 1)
    assert.equal(rows[0]?.status, 'rejected')
    assert.equal(rows[0]?.code, 'DIP_ID_INVALID')
    assert.equal(rows[0]?.id, undefined)
    assert.equal(rows[0]?.hash, undefined)
  })
})
