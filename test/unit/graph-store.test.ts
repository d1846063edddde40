import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { join } from 'node:path'
import { Level } from 'level'
import { GraphStore, servedRow } from '../../src/store/graph-store.js'
import { runGraphStoreSuite } from '../suites/graph-store-suite.js'
import { tempDir, withTempDir } from '../helpers.js'
import { generateKeyPair, makePost } from '../factory.js'

runGraphStoreSuite('memory', async () => {
  const store = await GraphStore.openMemory()
  return { store, cleanup: () => store.close() }
})

runGraphStoreSuite('leveldb', async () => {
  const dir = await tempDir()
  const store = await GraphStore.openLevel(dir.path)
  return {
    store,
    cleanup: async () => {
      await store.close()
      await dir.remove()
    },
  }
})

test('leveldb: data, store order and cursors survive a reopen; a second opener is DIP_DATA_LOCKED', async () => {
  const key = generateKeyPair()
  await withTempDir(async (dir) => {
    const a = await GraphStore.openLevel(dir)
    await a.commit([makePost(key, { localId: 1 }), makePost(key, { localId: 2 })])
    const cursor = a.cursor(2)
    await assert.rejects(GraphStore.openLevel(dir), { code: 'DIP_DATA_LOCKED' })
    await a.close()
    const b = await GraphStore.openLevel(dir)
    assert.equal(await b.count(), 2)
    assert.equal(b.readCursor(cursor), 2)
    assert.deepEqual(await b.commit([makePost(key, { localId: 3 })]), ['stored'])
    assert.deepEqual((await b.list({ model: 'post', facets: [], afterSeq: 2, limit: 10 })).rows.map((r) => r.s), [3])
    await b.close()
  })
})

test('property: LevelDB and memory stores agree on random commit sequences, and every order converges', async () => {
  const keys = [generateKeyPair(), generateKeyPair()]
  const versions = Array.from({ length: 12 }, (_, i) =>
    makePost(keys[i % 2]!, { localId: i % 4, title: `v${i}`, tags: i % 3 ? ['t'] : [], updateTime: `2020-01-0${1 + (i % 3)}T00:00:00Z` }),
  )
  await withTempDir(async (dir) => {
    let run = 0
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: versions.length - 1 }), { minLength: 1, maxLength: 20 }), fc.integer({ min: 1, max: 5 }), async (picks, batch) => {
        const mem = await GraphStore.openMemory()
        const lvl = await GraphStore.openLevel(`${dir}/${run++}`)
        try {
          for (let i = 0; i < picks.length; i += batch) {
            const models = picks.slice(i, i + batch).map((p) => versions[p]!)
            assert.deepEqual(await lvl.commit(models), await mem.commit(models))
          }
          const q = { model: 'post', facets: [], afterSeq: 0, limit: 1000 }
          assert.deepEqual((await lvl.list(q)).rows, (await mem.list(q)).rows)
          // Convergence: the same set in reverse order ends with the same winners.
          const rev = await GraphStore.openMemory()
          await rev.commit([...picks].reverse().map((p) => versions[p]!))
          const ids = [...new Set(picks.map((p) => versions[p]!.idText))]
          assert.deepEqual((await rev.rows(ids)).map((r) => r?.h), (await mem.rows(ids)).map((r) => r?.h))
          await rev.close()
        } finally {
          await mem.close()
          await lvl.close()
        }
      }),
      { numRuns: 25 },
    )
  })
})

test('leveldb: a store of an older key layout (model bytes under M!<hash>, or V!<SEQ> in the store) is moved to the values store on open, also after a crash midway', async () => {
  await withTempDir(async (dir) => {
    const key = generateKeyPair()
    const posts = Array.from({ length: 1205 }, (_, i) => makePost(key, { localId: i + 1 }))
    const edited = makePost(key, { localId: 7, title: 'edited', updateTime: '2030-01-01T00:00:00Z' })
    const seqKey = (s: number) => s.toString(16).padStart(16, '0')
    const open = async (path: string) => {
      const db = new Level<string, string>(path, { keyEncoding: 'utf8', valueEncoding: 'utf8' })
      await db.open()
      return db
    }
    const a = await GraphStore.openLevel(dir)
    await a.commit(posts)
    await a.commit([edited])
    await a.close()
    // Rewrite it in the old layouts: the first 300 rows as if a migration had
    // moved them and then crashed, the next 300 in layout 2, the rest in layout 1.
    const raw = await open(dir)
    const values = await open(join(dir, 'values'))
    const rows: { h: string; s: number }[] = []
    for await (const [, json] of raw.iterator({ gt: 'I!', lt: 'I"' })) rows.push(JSON.parse(json) as { h: string; s: number })
    assert.equal(rows.length, 1205)
    const ops: { type: 'put' | 'del'; key: string; value?: string }[] = [{ type: 'del', key: 'X!layout' }]
    for (const [n, r] of rows.entries()) {
      if (n < 300) continue
      const v = `V!${seqKey(r.s)}`
      const xml = await values.get(v)
      assert.ok(xml !== undefined)
      await values.del(v)
      ops.push({ type: 'put', key: n < 600 ? v : `M!${r.h}`, value: xml })
    }
    await raw.batch(ops as never)
    await raw.close()
    await values.close()

    const b = await GraphStore.openLevel(dir)
    const got = await b.getModels(posts.map((p) => p.idText))
    const expected = posts.map((p) => (p.idText === edited.idText ? edited.xml : p.xml))
    assert.deepEqual(got.map((g) => g.xml), expected, 'every current version reads back, moved or not')
    assert.deepEqual(await b.commit([makePost(key, { localId: 9, title: 'edited too', updateTime: '2030-01-01T00:00:00Z' })]), ['stored'])
    await b.close()
    const after = await open(dir)
    const afterValues = await open(join(dir, 'values'))
    assert.deepEqual(await after.keys({ gte: 'M!', lt: 'M"' }).all(), [], 'nothing left under M!')
    assert.deepEqual(await after.keys({ gte: 'V!', lt: 'V"' }).all(), [], 'nor under V! in the store')
    assert.equal((await afterValues.keys({ gte: 'V!', lt: 'V"' }).all()).length, 1205, 'one value per current version')
    assert.equal(await after.get('X!layout'), '3')
    await after.put('X!layout', '4')
    await after.close()
    await afterValues.close()
    await assert.rejects(GraphStore.openLevel(dir), { code: 'DIP_DATA_INVALID' })
    // …and the refused store was closed again: its owner can open it.
    const again = await open(dir)
    await again.close()
  })
})

test('leveldb: bytes a crashed commit left in the values store (no row names them) are overwritten by the next commit', async () => {
  await withTempDir(async (dir) => {
    const key = generateKeyPair()
    const seqKey = (s: number) => s.toString(16).padStart(16, '0')
    const a = await GraphStore.openLevel(dir)
    await a.commit([makePost(key, { localId: 1 }), makePost(key, { localId: 2 })])
    await a.close()
    // A commit killed after its values were synced, before its rows: bytes at SEQ 3 and 4, X!seq still 2.
    const values = new Level<string, string>(join(dir, 'values'), { keyEncoding: 'utf8', valueEncoding: 'utf8' })
    await values.open()
    await values.batch([
      { type: 'put', key: `V!${seqKey(3)}`, value: '<model>orphan 3</model>' },
      { type: 'put', key: `V!${seqKey(4)}`, value: '<model>orphan 4</model>' },
    ])
    await values.close()
    const b = await GraphStore.openLevel(dir)
    assert.equal(b.lastSeq, 2)
    assert.equal(await b.count(), 2, 'orphan bytes are no models')
    const p3 = makePost(key, { localId: 3 })
    assert.deepEqual(await b.commit([p3]), ['stored'])
    const [got] = await b.getModels([p3.idText])
    assert.equal(got?.row.s, 3)
    assert.equal(got?.xml, p3.xml, 'the new version owns SEQ 3')
    await b.close()
  })
})

test('servedRow reads SEQ and name off a row as commit writes it, and gives up on anything else', () => {
  const id = `ed25519::${'ab'.repeat(32)}::7`
  // As stored: no id or sender key (the key under which it is stored holds them).
  const row = { h: `sha256:${'cd'.repeat(32)}`, s: 4242, n: 'post', v: '1.1', u: '20240101000000000000', t: '2024-01-01T00:00:00Z', f: { tag: ['a"b', 'attachment'] }, l: [`ref\0${id}`] }
  assert.deepEqual(servedRow(id, JSON.stringify(row)), { i: id, s: 4242, n: 'post', l: [] })
  assert.deepEqual(servedRow(id, JSON.stringify({ ...row, o: 'http://127.0.0.1:1' })), { i: id, s: 4242, n: 'post', l: [] })
  // Whole parse needed: an attachment link (its links are read), the older form, another key order, odd values.
  assert.equal(servedRow(id, JSON.stringify({ ...row, l: [`attachment\0sha256:${'00'.repeat(32)}`] })), undefined)
  assert.equal(servedRow(id, JSON.stringify({ i: id, ...row, k: 'ab'.repeat(32) })), undefined)
  assert.equal(servedRow(id, JSON.stringify({ s: 1, h: row.h, n: 'post' })), undefined)
  assert.equal(servedRow(id, JSON.stringify({ ...row, s: 0 })), undefined)
  assert.equal(servedRow(id, JSON.stringify({ ...row, s: '12' })), undefined)
  assert.equal(servedRow(id, JSON.stringify({ ...row, n: 'po"st' })), undefined)
  assert.equal(servedRow(id, JSON.stringify({ ...row, n: 'pos\u00e9' }).replace('é', '\\u00e9')), undefined)
  assert.equal(servedRow(id, JSON.stringify({ ...row, n: '' })), undefined)
  assert.equal(servedRow(id, JSON.stringify({ h: row.h, s: 3 })), undefined)
  // A tag that merely reads like an attachment link only costs the whole parse.
  assert.equal(servedRow(id, JSON.stringify({ ...row, f: { tag: ['attachment\0x'] } })), undefined)
})

test('leveldb: rows of the older form (id and sender key inside) read as before, and an edit drops all their entries', async () => {
  await withTempDir(async (dir) => {
    const alice = generateKeyPair()
    const bob = generateKeyPair()
    const op = makePost(alice, { localId: 1, tags: ['x'] })
    const reply = makePost(bob, { localId: 2, thread: op.idText, text: `see [post]${op.idText}[/post]` })
    const a = await GraphStore.openLevel(dir)
    await a.commit([op, reply])
    const before = await a.rows([op.idText, reply.idText])
    await a.close()
    // Rewrite the rows as stores before 2026-11-23 wrote them.
    const raw = new Level<string, string>(dir)
    for await (const [key, json] of raw.iterator({ gt: 'I!', lt: 'I"' })) {
      const id = key.slice(2)
      await raw.put(key, JSON.stringify({ i: id, ...JSON.parse(json), k: id.split('::')[1] }))
    }
    assert.match((await raw.get(`I!${op.idText}`))!, /^\{"i":"/)
    await raw.close()
    const b = await GraphStore.openLevel(dir)
    assert.deepEqual(await b.rows([op.idText, reply.idText]), before)
    assert.deepEqual((await b.getModelBytes([reply.idText])).map((f) => [f.row.i, f.row.s, f.row.n]), [[reply.idText, before[1]!.s, 'post']])
    const edited = makePost(alice, { localId: 1, tags: ['y'], updateTime: '2030-01-01T00:00:00Z' })
    assert.deepEqual(await b.commit([edited]), ['stored'])
    const byAlice = await b.list({ model: 'post', facets: [], allow: new Set([alice.publicKeyHex]), afterSeq: 0, limit: 10 })
    assert.deepEqual(byAlice.rows.map((r) => [r.i, r.h]), [[op.idText, edited.hash]])
    await b.close()
    const after = new Level<string, string>(dir)
    assert.equal((await after.keys({ gt: `K!${alice.publicKeyHex}!`, lt: `K!${alice.publicKeyHex}"` }).all()).length, 1, 'the old version left no sender-key entry behind')
    assert.deepEqual(await after.keys({ gt: 'F!tag!x\0', lt: 'F!tag!x\x01' }).all(), [], 'nor its tag entry')
    await after.close()
  })
})

test('leveldb: rows as commit writes them take the short way of servedRow (the get path parses none of them whole)', async () => {
  await withTempDir(async (dir) => {
    const key = generateKeyPair()
    const store = await GraphStore.openLevel(dir)
    const op = makePost(key, { localId: 1, tags: ['x'] })
    const reply = makePost(key, { localId: 2, thread: op.idText, text: `see [post]${op.idText}[/post]` })
    await store.commit([op, reply], undefined, 'http://127.0.0.1:9')
    const whole = await store.rows([op.idText, reply.idText])
    await store.close()
    const db = new Level<string, string>(dir)
    try {
      for (const row of whole) {
        const json = await db.get(`I!${row!.i}`)
        assert.deepEqual(servedRow(row!.i, json!), { i: row!.i, s: row!.s, n: 'post', l: [] })
      }
    } finally {
      await db.close()
    }
  })
})

test('leveldb: a commit writes backward edges only (a row\'s links are its forward ones); an edit drops the forward edges older stores wrote', async () => {
  await withTempDir(async (dir) => {
    const alice = generateKeyPair()
    const bob = generateKeyPair()
    const op = makePost(alice, { localId: 1 })
    const reply = makePost(bob, { localId: 2, thread: op.idText, text: `see [post]${op.idText}[/post]` })
    const a = await GraphStore.openLevel(dir)
    await a.commit([op, reply])
    await a.close()
    const raw = new Level<string, string>(dir)
    assert.deepEqual(await raw.keys({ gte: 'L!', lt: 'L"' }).all(), [])
    assert.deepEqual((await raw.keys({ gte: 'R!', lt: 'R"' }).all()).sort(), [`R!${op.idText}\0ref\0${reply.idText}`, `R!${op.idText}\0thread\0${reply.idText}`])
    // The forward edges a store written before 2026-11-23 holds for the reply.
    await raw.batch([
      { type: 'put', key: `L!${reply.idText}\0thread\0${op.idText}`, value: '' },
      { type: 'put', key: `L!${reply.idText}\0ref\0${op.idText}`, value: '' },
    ])
    await raw.close()
    const b = await GraphStore.openLevel(dir)
    const edited = makePost(bob, { localId: 2, text: 'no links now', updateTime: '2030-01-01T00:00:00Z' })
    assert.deepEqual(await b.commit([edited]), ['stored'])
    assert.deepEqual(await b.backlinks(op.idText), [])
    await b.close()
    const after = new Level<string, string>(dir)
    assert.deepEqual(await after.keys({ gte: 'L!', lt: 'L"' }).all(), [], 'the edit dropped the old forward edges')
    assert.deepEqual(await after.keys({ gte: 'R!', lt: 'R"' }).all(), [])
    await after.close()
  })
})
