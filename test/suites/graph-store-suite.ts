// The shared conformance suite of the graph store: every backend (LevelDB,
// memory) runs exactly these tests.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import type { GraphStore, ListQuery } from '../../src/store/graph-store.js'
import { Ingest } from '../../src/store/ingest.js'
import { generateKeyPair, makePost } from '../factory.js'

export interface StoreHandle {
  store: GraphStore
  cleanup(): Promise<void>
}

const q = (over: Partial<ListQuery> = {}): ListQuery => ({ model: 'post', facets: [], afterSeq: 0, limit: 1000, ...over })

export function runGraphStoreSuite(name: string, open: () => Promise<StoreHandle>): void {
  const withStore = (title: string, fn: (store: GraphStore) => Promise<void>) =>
    test(`${name}: ${title}`, async () => {
      const h = await open()
      try {
        await fn(h.store)
      } finally {
        await h.cleanup()
      }
    })

  const alice = generateKeyPair()
  const bob = generateKeyPair()

  withStore('commit decides stored, duplicate and stale in order', async (store) => {
    const v1 = makePost(alice, { localId: 1, updateTime: '2020-01-01T00:00:00Z' })
    const v2 = makePost(alice, { localId: 1, title: 'edited', updateTime: '2020-01-02T00:00:00Z' })
    assert.deepEqual(await store.commit([v1, v1]), ['stored', 'duplicate'])
    const [row1] = await store.rows([v1.idText])
    assert.deepEqual(await store.modelXml([row1!]), [v1.xml])
    assert.deepEqual(await store.commit([v2, v1]), ['stored', 'stale'])
    const [got] = await store.getModels([v1.idText])
    assert.equal(got?.row.h, v2.hash)
    assert.equal(got?.xml, v2.xml)
    // The model log is append-only: a row read before an edit still reads the bytes it named.
    assert.deepEqual(await store.modelXml([row1!, got!.row]), [v1.xml, v2.xml])
    assert.deepEqual((await store.list(q())).rows.map((r) => r.h), [v2.hash], 'only the current version is listed')
    assert.equal(await store.count(), 1)
  })

  withStore('getModels of many ids (read in parallel parts): in order, missing ones left out, bytes equal to text', async (store) => {
    const posts = Array.from({ length: 700 }, (_, i) => makePost(alice, { localId: i + 1 }))
    await store.commit(posts)
    const ids = posts.map((p) => p.idText)
    const asked = ids.flatMap((id, n) => (n % 100 === 0 ? [id, `ed25519::${'0'.repeat(64)}::${n}`] : [id]))
    const text = await store.getModels(asked)
    assert.deepEqual(text.map((f) => f.row.i), ids)
    assert.deepEqual(text.map((f) => f.xml), posts.map((p) => p.xml))
    const bytes = await store.getModelBytes(asked)
    assert.deepEqual(bytes.map((f) => f.xml.toString('utf8')), posts.map((p) => p.xml))
    assert.deepEqual(bytes.map((f) => [f.row.i, f.row.s, f.row.n]), text.map((f) => [f.row.i, f.row.s, f.row.n]), 'the rows a get answer reads agree with the whole rows')
  })

  withStore('getModelBytes: rows of models with attachments come whole (their links), the others with what an answer reads', async (store) => {
    const bytes = Buffer.from('a blob')
    const hash = 'sha256:' + createHash('sha256').update(bytes).digest('hex')
    const op = makePost(alice, { localId: 1 })
    const withBlob = makePost(alice, { localId: 2, thread: op.idText, attachments: [{ hash, mimetype: 'text/plain', name: 'a.txt', size: bytes.length }] })
    const reply = makePost(bob, { localId: 3, thread: op.idText, text: `see [post]${op.idText}[/post]` })
    await store.commit([op, withBlob, reply])
    const got = await store.getModelBytes([op.idText, withBlob.idText, reply.idText])
    const [whole] = await store.getModels([withBlob.idText])
    assert.deepEqual(got.map((f) => [f.row.i, f.row.n]), [op, withBlob, reply].map((p) => [p.idText, 'post']))
    assert.deepEqual(got[1]!.row.l, whole!.row.l)
    assert.ok(got[1]!.row.l.includes(`attachment\0${hash}`))
    assert.deepEqual(got[2]!.row.l, [], 'no attachment: its links are not read')
  })

  withStore('lists and edits interleaved at every turn of the event loop: a get after them serves the current versions', async (store) => {
    // The list starts first, or the commit does; the other starts 0 to 11 turns later.
    const n = 12
    const latest = Array.from({ length: n }, (_, i) => makePost(alice, { localId: i + 1 }))
    await store.commit(latest)
    const turns = async (k: number) => {
      for (let t = 0; t < k; t++) await new Promise((r) => setImmediate(r))
    }
    for (const listFirst of [true, false]) {
      for (let d = 0; d < n; d++) {
        const edit = makePost(alice, { localId: d + 1, title: `edit ${d} ${listFirst}`, updateTime: `2021-01-0${listFirst ? 1 : 2}T00:00:${String(10 + d)}Z` })
        const [first, second] = listFirst ? [() => store.list(q()), () => store.commit([edit])] : [() => store.commit([edit]), () => store.list(q())]
        const one = first()
        await turns(d)
        await Promise.all([one, second()])
        latest[d] = edit
        const got = await store.getModelBytes(latest.map((p) => p.idText))
        assert.deepEqual(got.map((f) => f.xml.toString('utf8')), latest.map((p) => p.xml), `${listFirst ? 'list' : 'commit'} first, the other ${d} turns later`)
      }
    }
  })

  withStore('equal update-times: the greater hash wins whatever the order', async (store) => {
    const a = makePost(alice, { localId: 2, title: 'a', updateTime: '2020-01-01T00:00:00Z' })
    const b = makePost(alice, { localId: 2, title: 'b', updateTime: '2020-01-01T00:00:00.000Z' })
    const [lo, hi] = a.hash < b.hash ? [a, b] : [b, a]
    assert.deepEqual(await store.commit([hi, lo]), ['stored', 'stale'])
    assert.equal((await store.rows([a.idText]))[0]?.h, hi.hash)
  })

  withStore('an edit moves the id to the end of store order', async (store) => {
    const p1 = makePost(alice, { localId: 1 })
    const p2 = makePost(alice, { localId: 2 })
    await store.commit([p1, p2])
    await store.commit([makePost(alice, { localId: 1, title: 'new', updateTime: '2021-01-01T00:00:00Z' })])
    const page = await store.list(q())
    assert.deepEqual(page.rows.map((r) => r.i), [p2.idText, p1.idText])
    assert.equal(page.more, false)
  })

  withStore('list filters: tags, thread, sender, time range', async (store) => {
    const op = makePost(alice, { localId: 1, tags: ['cats', 'b'], updateTime: '2020-01-01T00:00:00Z' })
    const r1 = makePost(bob, { localId: 1, thread: op.idText, updateTime: '2020-01-02T00:00:00Z' })
    const other = makePost(bob, { localId: 2, tags: ['dogs'], updateTime: '2020-01-03T00:00:00Z' })
    const r2 = makePost(alice, { localId: 3, thread: other.idText, updateTime: '2020-01-04T00:00:00Z' })
    await store.commit([op, r1, other, r2])
    const ids = async (over: Partial<ListQuery>) => (await store.list(q(over))).rows.map((r) => r.i)
    assert.deepEqual(await ids({ facets: [{ facet: 'tag', values: ['cats'] }] }), [op.idText])
    assert.deepEqual(await ids({ facets: [{ facet: 'tag', values: ['cats', 'dogs'] }] }), [op.idText, other.idText])
    assert.deepEqual(await ids({ facets: [{ facet: 'thread', values: [op.idText] }] }), [op.idText, r1.idText])
    assert.deepEqual(await ids({ allow: new Set([bob.publicKeyHex]) }), [r1.idText, other.idText])
    assert.deepEqual(await ids({ deny: new Set([bob.publicKeyHex]) }), [op.idText, r2.idText])
    assert.deepEqual(await ids({ allow: new Set([bob.publicKeyHex]), deny: new Set([bob.publicKeyHex]) }), [])
    assert.deepEqual(await ids({ from: '20200102000000000000', to: '20200104000000000000' }), [r1.idText, other.idText])
    assert.deepEqual(await ids({ model: 'message' }), [])
  })

  withStore('paging: afterSeq and an exact more flag', async (store) => {
    const posts = Array.from({ length: 25 }, (_, i) => makePost(alice, { localId: i + 1, tags: i % 2 ? ['odd'] : [] }))
    await store.commit(posts)
    const seen: string[] = []
    let after = 0
    for (let round = 0; round < 10; round++) {
      const page = await store.list(q({ afterSeq: after, limit: 5, facets: [{ facet: 'tag', values: ['odd'] }] }))
      seen.push(...page.rows.map((r) => r.i))
      if (!page.more) break
      after = page.rows.at(-1)!.s
    }
    assert.deepEqual(seen, posts.filter((_, i) => i % 2).map((p) => p.idText))
    const exact = await store.list(q({ limit: 25 }))
    assert.equal(exact.rows.length, 25)
    assert.equal(exact.more, false, 'no more when the page ends exactly at the last row')
  })

  withStore('a thread listed page by page: its opening post at its place in store order among replies stored before and after it', async (store) => {
    const op = makePost(alice, { localId: 100 })
    const replies = Array.from({ length: 6 }, (_, i) => makePost(bob, { localId: i + 1, thread: op.idText }))
    await store.commit(replies.slice(0, 3))
    await store.commit([makePost(alice, { localId: 200, tags: ['elsewhere'] }), op])
    await store.commit(replies.slice(3))
    const whole = [...replies.slice(0, 3), op, ...replies.slice(3)].map((p) => p.idText)
    const thread = [{ facet: 'thread', values: [op.idText] }]
    assert.deepEqual((await store.list(q({ facets: thread }))).rows.map((r) => r.i), whole)
    for (let limit = 1; limit <= 8; limit++) {
      const seen: string[] = []
      let after = 0
      for (let round = 0; round < 10; round++) {
        const page = await store.list(q({ afterSeq: after, limit, facets: thread }))
        seen.push(...page.rows.map((r) => r.i))
        assert.equal(page.more, seen.length < whole.length, `limit ${limit}: more iff rows are left`)
        if (!page.more) break
        after = page.rows.at(-1)!.s
      }
      assert.deepEqual(seen, whole, `limit ${limit}`)
    }
    assert.deepEqual((await store.list(q({ facets: thread, deny: new Set([alice.publicKeyHex]) }))).rows.map((r) => r.i), whole.filter((i) => i !== op.idText), 'the opening post is filtered like the rest')
  })

  withStore('wanted: not held or newer than held', async (store) => {
    const old = makePost(alice, { localId: 1, updateTime: '2020-01-01T00:00:00Z' })
    const cur = makePost(alice, { localId: 1, title: 'x', updateTime: '2020-06-01T00:00:00Z' })
    await store.commit([cur])
    const newer = makePost(alice, { localId: 1, title: 'y', updateTime: '2021-01-01T00:00:00Z' })
    const fresh = makePost(alice, { localId: 2 })
    const w = (m: typeof old) => ({ id: m.idText, hash: m.hash, timeKey: m.meta.updateTimeKey })
    const got = await store.wanted([w(old), w(cur), w(newer), w(fresh)])
    assert.deepEqual(got.map((x) => x.hash), [newer.hash, fresh.hash])
  })

  withStore('a reply before its thread is kept; the edge resolves when the thread arrives', async (store) => {
    const op = makePost(alice, { localId: 1, tags: ['t'] })
    const reply = makePost(bob, { localId: 1, thread: op.idText, text: `see [post]${op.idText}[/post]` })
    await store.commit([reply])
    assert.deepEqual(await store.dangling(), [op.idText])
    assert.deepEqual((await store.backlinks(op.idText)).map((b) => `${b.kind}:${b.from}`).sort(), [`ref:${reply.idText}`, `thread:${reply.idText}`])
    await store.commit([op])
    assert.deepEqual(await store.dangling(), [])
    const thread = await store.list(q({ facets: [{ facet: 'thread', values: [op.idText] }] }))
    assert.deepEqual(thread.rows.map((r) => r.i), [reply.idText, op.idText])
  })

  withStore('one commit: link targets in the batch, held before (even sent again) or held as blobs do not dangle; others do', async (store) => {
    const bytes = Buffer.from('a blob')
    const hash = 'sha256:' + createHash('sha256').update(bytes).digest('hex')
    const att = [{ hash, mimetype: 'text/plain', name: 'a.txt', size: bytes.length }]
    const held = makePost(alice, { localId: 1 })
    await store.commit([held, { ...makePost(alice, { localId: 2, attachments: att }), attachmentData: new Map([[hash, bytes]]) }])
    const op = makePost(bob, { localId: 1 })
    const missing = makePost(alice, { localId: 99 }).idText
    const batch = [
      makePost(bob, { localId: 2, thread: op.idText }), // its thread comes later in the same batch
      op,
      makePost(bob, { localId: 3, thread: held.idText }), // held before
      held, // sent again: a duplicate, still held
      makePost(bob, { localId: 4, text: `see [post]${held.idText}[/post]`, attachments: att }), // a held blob
      makePost(bob, { localId: 5, text: `see [post]${missing}[/post]` }), // not held anywhere
    ]
    assert.deepEqual(await store.commit(batch), ['stored', 'stored', 'stored', 'duplicate', 'stored', 'stored'])
    assert.deepEqual(await store.dangling(), [missing])
  })

  withStore('attachments: bytes stored with the model, served by hash', async (store) => {
    const bytes = Buffer.from('not really a png')
    const hash = 'sha256:' + createHash('sha256').update(bytes).digest('hex')
    const p = makePost(alice, { localId: 9, attachments: [{ hash, mimetype: 'image/png', name: 'cat.png', size: bytes.length }] })
    await store.commit([p])
    assert.deepEqual(await store.dangling(), [hash])
    const p2 = { ...makePost(alice, { localId: 10, attachments: [{ hash, mimetype: 'image/png', name: 'cat.png', size: bytes.length }] }), attachmentData: new Map([[hash, bytes]]) }
    await store.commit([p2])
    const blob = await store.blob(hash)
    assert.equal(blob?.mimetype, 'image/png')
    assert.deepEqual(blob?.bytes, bytes)
    assert.deepEqual(await store.dangling(), [])
  })

  withStore('cursors: own ones read back, foreign or future ones do not', async (store) => {
    await store.commit([makePost(alice, { localId: 1 })])
    assert.equal(store.readCursor(store.cursor(1)), 1)
    assert.equal(store.readCursor(store.cursor(0)), 0)
    assert.equal(store.readCursor(store.cursor(2)), undefined)
    assert.equal(store.readCursor('ffff.1'), undefined)
    assert.equal(store.readCursor(`${store.storeId}.01`), undefined)
    assert.equal(store.readCursor(''), undefined)
  })

  withStore('checkpoints commit with the batch; local ids count up', async (store) => {
    await store.commit([makePost(alice, { localId: 1 })], { name: 'peer', cursor: 'c1' })
    assert.equal(await store.checkpoint('peer'), 'c1')
    assert.equal(await store.checkpoint('other'), undefined)
    assert.equal(await store.allocateLocalId(bob.publicKeyHex), '1')
    assert.equal(await store.allocateLocalId(bob.publicKeyHex), '2')
    // Ids of this key that arrived from elsewhere are skipped.
    await store.commit([makePost(bob, { localId: 3 }), makePost(bob, { localId: 4 })])
    assert.equal(await store.allocateLocalId(bob.publicKeyHex), '5')
    assert.equal(await store.allocateLocalId(alice.publicKeyHex), '6')
    // A key other nodes may hold too: the id carries this store's mark, and a held one is skipped the same way.
    const mark = store.storeId.slice(0, 8)
    assert.match(mark, /^[0-9a-f]{8}$/)
    await store.commit([makePost(bob, { localId: `8.${mark}` })])
    assert.equal(await store.allocateLocalId(bob.publicKeyHex, true), `7.${mark}`)
    assert.equal(await store.allocateLocalId(bob.publicKeyHex, true), `9.${mark}`)
  })

  withStore('ingest: signatures checked before anything is written', async (store) => {
    const ingest = new Ingest(store)
    const good = makePost(alice, { localId: 1 })
    const bad = makePost(alice, { localId: 2 })
    bad.contentBytes[bad.contentBytes.length - 20]! ^= 1
    const foreign = makePost(alice, { localId: 3 })
    foreign.signatures[0]!.key = bob.publicKeyHex
    const future = makePost(alice, { localId: 4, updateTime: '2999-01-01T00:00:00Z' })
    const res = await ingest.accept([good, bad, foreign, future, good])
    assert.deepEqual(res.map((r) => (r.status === 'rejected' ? r.code : r.status)), ['stored', 'DIP_SIGNATURE_INVALID', 'DIP_SIGNATURE_INVALID', 'DIP_TIME_IN_FUTURE', 'duplicate'])
    assert.equal(await store.count(), 1)
  })
}
