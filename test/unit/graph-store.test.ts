import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { existsSync } from 'node:fs'
import { appendFile, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import { GraphStore, listRow, servedRow } from '../../src/store/graph-store.js'
import { FileModelLog, MemoryModelLog } from '../../src/store/model-log.js'
import { DipError } from '../../src/errors.js'
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

test('leveldb: a store of an older key layout (model bytes under M!<hash> or V!<SEQ> in the store, or in values/) is moved to the model log on open, also after a crash midway', async () => {
  await withTempDir(async (dir) => {
    const key = generateKeyPair()
    const posts = Array.from({ length: 1205 }, (_, i) => makePost(key, { localId: i + 1 }))
    const edited = makePost(key, { localId: 7, title: 'edited', updateTime: '2030-01-01T00:00:00Z' })
    const expected = posts.map((p) => (p.idText === edited.idText ? edited.xml : p.xml))
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
    // Rewrite it in the old layouts: the first 200 rows as if a migration had
    // moved them and then crashed (they name their place), the next 300 in
    // layout 3 (values/), the next 300 in layout 2, the rest in layout 1.
    await rm(join(dir, 'models'), { recursive: true })
    const log = await FileModelLog.open(join(dir, 'models'))
    const raw = await open(dir)
    const values = await open(join(dir, 'values'))
    const ops: { type: 'put' | 'del'; key: string; value?: string }[] = [{ type: 'put', key: 'X!layout', value: '3' }]
    const xmlOf = new Map(posts.map((p, n) => [p.idText, expected[n]!]))
    let n = 0
    for await (const [k, json] of raw.iterator({ gt: 'I!', lt: 'I"' })) {
      const { p: _, ...row } = JSON.parse(json) as { s: number; h: string; p: unknown }
      const xml = xmlOf.get(k.slice(2))!
      if (n < 200) ops.push({ type: 'put', key: k, value: JSON.stringify({ ...row, p: log.add(Buffer.from(xml)) }) })
      else {
        ops.push({ type: 'put', key: k, value: JSON.stringify(row) })
        if (n < 500) await values.put(`V!${seqKey(row.s)}`, xml)
        else ops.push({ type: 'put', key: n < 800 ? `V!${seqKey(row.s)}` : `M!${row.h}`, value: xml })
      }
      n++
    }
    assert.equal(n, 1205)
    await log.flush()
    await log.close()
    await raw.batch(ops as never)
    await raw.close()
    await values.close()

    const b = await GraphStore.openLevel(dir)
    assert.deepEqual((await b.getModels(posts.map((p) => p.idText))).map((g) => g.xml), expected, 'every current version reads back, moved or not')
    assert.deepEqual(await b.commit([makePost(key, { localId: 9, title: 'edited too', updateTime: '2030-01-01T00:00:00Z' })]), ['stored'])
    await b.close()
    assert.equal(existsSync(join(dir, 'values')), false, 'the layout 3 LevelDB is gone')
    const after = await open(dir)
    assert.deepEqual(await after.keys({ gte: 'M!', lt: 'M"' }).all(), [], 'nothing left under M!')
    assert.deepEqual(await after.keys({ gte: 'V!', lt: 'V"' }).all(), [], 'nor under V!')
    assert.equal(await after.get('X!layout'), '5')
    await after.put('X!layout', '6')
    await after.close()
    await assert.rejects(GraphStore.openLevel(dir), { code: 'DIP_DATA_INVALID' })
    // …and the refused store was closed again: its owner can open it.
    const again = await open(dir)
    await again.close()
  })
})

test('leveldb: a layout 4 store (ids as the values of its F! and K! index entries) opens as layout 5 with nothing moved; lists by tag, thread and sender, a ban and an edit work across both forms', async () => {
  await withTempDir(async (dir) => {
    const [alice, bob] = [generateKeyPair(), generateKeyPair()]
    const op = makePost(alice, { localId: 1, tags: ['cats'] })
    const reply = makePost(bob, { localId: 1, thread: op.idText, updateTime: '2020-01-02T00:00:00Z' })
    const other = makePost(bob, { localId: 2, tags: ['cats'], updateTime: '2020-01-03T00:00:00Z' })
    const a = await GraphStore.openLevel(dir)
    await a.commit([op, reply, other])
    await a.close()
    // Layout 5 writes the index entries empty; layout 4 wrote the id there.
    const raw = new Level<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' })
    await raw.open()
    const indexed = await raw.iterator({ gt: 'F!', lt: 'L' }).all()
    assert.equal(indexed.filter(([k]) => k.startsWith('F!') || k.startsWith('K!')).length, 8, 'the tags, threads and sender keys of 3 posts')
    assert.ok(indexed.every(([k, v]) => !(k.startsWith('F!') || k.startsWith('K!')) || v === ''))
    const ids = new Map((await raw.iterator({ gt: 'S!', lt: 'S"' }).all()).map(([k, id]) => [k.slice(2), id]))
    await raw.batch([
      { type: 'put', key: 'X!layout', value: '4' },
      ...indexed.filter(([k]) => k.startsWith('F!') || k.startsWith('K!')).map(([k]) => ({ type: 'put' as const, key: k, value: ids.get(k.slice(-16))! })),
    ])
    await raw.close()

    const b = await GraphStore.openLevel(dir)
    const edited = makePost(bob, { localId: 2, tags: ['cats'], title: 'edited', updateTime: '2030-01-01T00:00:00Z' })
    assert.deepEqual(await b.commit([edited]), ['stored'])
    const list = async (over: Partial<Parameters<GraphStore['list']>[0]>) => (await b.list({ model: 'post', facets: [], afterSeq: 0, limit: 1000, ...over })).rows.map((r) => [r.i, r.h])
    assert.deepEqual(await list({ facets: [{ facet: 'tag', values: ['cats'] }] }), [[op.idText, op.hash], [edited.idText, edited.hash]], 'an old entry and a new one; the replaced version is not listed')
    assert.deepEqual(await list({ facets: [{ facet: 'thread', values: [op.idText] }] }), [[op.idText, op.hash], [reply.idText, reply.hash]])
    assert.deepEqual(await list({ allow: new Set([bob.publicKeyHex]) }), [[reply.idText, reply.hash], [edited.idText, edited.hash]])
    assert.equal(await b.ban(bob.publicKeyHex), 2)
    assert.deepEqual(await list({}), [[op.idText, op.hash]])
    await b.close()
    const after = new Level<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' })
    await after.open()
    assert.equal(await after.get('X!layout'), '5')
    assert.deepEqual(await after.keys({ gt: `K!${bob.publicKeyHex}!`, lt: `K!${bob.publicKeyHex}"` }).all(), [], 'the ban removed the old entries and the new')
    await after.close()
  })
})

test('leveldb: bytes a crashed commit left at the model log\'s tail (no row names them) are cut off on open; the next commit goes where they were', async () => {
  await withTempDir(async (dir) => {
    const key = generateKeyPair()
    const a = await GraphStore.openLevel(dir)
    const [p1, p2] = [makePost(key, { localId: 1 }), makePost(key, { localId: 2 })]
    await a.commit([p1, p2])
    await a.close()
    // A commit killed after its bytes were synced, before its rows (and one killed mid-write: a torn tail).
    const segment = join(dir, 'models', '00000001.log')
    const before = (await stat(segment)).size
    await appendFile(segment, '<model>orphan 3</model><model>torn')
    const b = await GraphStore.openLevel(dir)
    assert.equal(b.lastSeq, 2)
    assert.equal(await b.count(), 2, 'orphan bytes are no models')
    const p3 = makePost(key, { localId: 3 })
    assert.deepEqual(await b.commit([p3]), ['stored'])
    const got = await b.getModels([p1.idText, p2.idText, p3.idText])
    assert.deepEqual(got.map((g) => g.xml), [p1.xml, p2.xml, p3.xml])
    assert.equal(got[2]!.row.s, 3)
    assert.equal(got[2]!.row.p![1], before, 'placed where the orphan bytes were')
    await b.close()
    assert.ok(!(await readFile(segment, 'utf8')).includes('orphan'), 'no copy of them is left')
  })
})

test('leveldb: a ban overwrites the banned models\' bytes in the model log; the others read as before', async () => {
  await withTempDir(async (dir) => {
    const [alice, bob] = [generateKeyPair(), generateKeyPair()]
    const mine = makePost(alice, { localId: 1, title: 'banned words' })
    const theirs = makePost(bob, { localId: 2, title: 'kept words' })
    const store = await GraphStore.openLevel(dir)
    await store.commit([mine, theirs])
    const [row] = await store.rows([mine.idText])
    assert.equal(await store.ban(alice.publicKeyHex), 1)
    assert.deepEqual(await store.modelXml([row!]), [undefined], 'a row read before the ban reads nothing after it')
    assert.deepEqual((await store.getModels([mine.idText, theirs.idText])).map((g) => g.xml), [theirs.xml])
    await store.close()
    const bytes = await readFile(join(dir, 'models', '00000001.log'), 'utf8')
    assert.equal(bytes.includes('banned words'), false)
    assert.equal(bytes.includes('kept words'), true)
  })
})

test('leveldb: a ban zeroes the versions its posts replaced earlier too; a replaced version stays readable until then', async () => {
  await withTempDir(async (dir) => {
    const [alice, bob] = [generateKeyPair(), generateKeyPair()]
    const v1 = makePost(alice, { localId: 1, title: 'first words' })
    const v2 = makePost(alice, { localId: 1, title: 'second words', updateTime: '2021-01-01T00:00:00Z' })
    const w1 = makePost(bob, { localId: 1, title: 'bob first' })
    const w2 = makePost(bob, { localId: 1, title: 'bob second', updateTime: '2021-01-01T00:00:00Z' })
    const store = await GraphStore.openLevel(dir)
    await store.commit([v1, w1])
    const [old] = await store.rows([v1.idText])
    await store.commit([v2, w2])
    assert.deepEqual(await store.modelXml([old!]), [v1.xml], 'a row read before the edit still reads its bytes')
    assert.equal(await store.ban(alice.publicKeyHex), 1)
    await store.close()
    const bytes = await readFile(join(dir, 'models', '00000001.log'), 'utf8')
    for (const gone of ['first words', 'second words']) assert.equal(bytes.includes(gone), false, gone)
    for (const kept of ['bob first', 'bob second']) assert.equal(bytes.includes(kept), true, `${kept}: not banned, not zeroed`)
    const raw = new Level<string, string>(dir)
    assert.deepEqual(await raw.keys({ gt: `Z!${alice.publicKeyHex}!`, lt: `Z!${alice.publicKeyHex}"` }).all(), [], 'nothing left to zero')
    await raw.close()
  })
})

test('leveldb: a ban cut short before its zeroing (a crash) is finished when the store opens', async () => {
  await withTempDir(async (dir) => {
    const alice = generateKeyPair()
    const post = makePost(alice, { localId: 1, title: 'words to zero' })
    let store = await GraphStore.openLevel(dir)
    await store.commit([post])
    const [row] = await store.rows([post.idText])
    await store.close()
    // What the ban's batch wrote before the crash: the ban and what to zero (its rows' removal does not matter here).
    const raw = new Level<string, string>(dir)
    const [seg, off, len] = row!.p!
    await raw.batch([
      { type: 'put', key: `N!${alice.publicKeyHex}`, value: '' },
      { type: 'put', key: `Z!${alice.publicKeyHex}!${String(seg).padStart(8, '0')}!${String(off).padStart(12, '0')}`, value: String(len) },
    ])
    await raw.close()
    assert.equal((await readFile(join(dir, 'models', '00000001.log'), 'utf8')).includes('words to zero'), true)
    store = await GraphStore.openLevel(dir)
    await store.close()
    assert.equal((await readFile(join(dir, 'models', '00000001.log'), 'utf8')).includes('words to zero'), false)
  })
})

test('listRow reads what a list shows off a row as commit writes it, the same as parsing it whole, and gives up on anything else', async () => {
  const id = `ed25519::${'ab'.repeat(32)}::7`
  const row = { h: `sha256:${'cd'.repeat(32)}`, s: 4242, n: 'post', p: [2, 123456789, 1593], v: '1.1', u: '20240101000000123000', t: '2024-01-01T00:00:00.123Z', f: { tag: ['a"b'] }, l: [`ref\0${id}`] }
  const want = { i: id, h: row.h, s: 4242, n: 'post', v: '1.1', u: row.u, t: row.t, k: 'ab'.repeat(32) }
  assert.deepEqual(listRow(id, JSON.stringify(row)), want)
  assert.deepEqual(listRow(id, JSON.stringify({ ...row, o: 'http://127.0.0.1:1' })), want)
  // What commit writes, read back through a list: the same fields as a whole parse.
  const store = await GraphStore.openMemory()
  const m = makePost(generateKeyPair(), { localId: 3, tags: ['t'] })
  await store.commit([m])
  const [whole] = await store.rows([m.idText])
  const listed = (await store.list({ model: 'post', facets: [], afterSeq: 0, limit: 10 })).rows
  assert.deepEqual(listed, [{ i: whole!.i, h: whole!.h, s: whole!.s, n: whole!.n, v: whole!.v, u: whole!.u, t: whole!.t, k: whole!.k }])
  await store.close()
  // Another form: no place, the older form with id and key, another order, escapes, odd SEQs.
  const { p: _, ...noPlace } = row
  assert.equal(listRow(id, JSON.stringify(noPlace)), undefined)
  assert.equal(listRow(id, JSON.stringify({ i: id, ...row, k: 'ab'.repeat(32) })), undefined)
  assert.equal(listRow(id, JSON.stringify({ s: 1, h: row.h, n: 'post' })), undefined)
  assert.equal(listRow(id, JSON.stringify({ ...row, s: 0 })), undefined)
  assert.equal(listRow(id, JSON.stringify({ ...row, s: '12' })), undefined)
  assert.equal(listRow(id, JSON.stringify({ ...row, t: 'a"b' })), undefined)
  assert.equal(listRow(id, JSON.stringify({ ...row, n: 'pos\u00e9' }).replace('é', '\\u00e9')), undefined)
  assert.equal(listRow(id, JSON.stringify({ h: row.h, s: 3 })), undefined)
  assert.equal(listRow(id, '{"h":"x"'), undefined)
})

test('servedRow reads SEQ, name and place off a row as commit writes it, and gives up on anything else', () => {
  const id = `ed25519::${'ab'.repeat(32)}::7`
  // As stored: no id or sender key (the key under which it is stored holds them).
  const row = { h: `sha256:${'cd'.repeat(32)}`, s: 4242, n: 'post', p: [2, 123456789, 1593], v: '1.1', u: '20240101000000000000', t: '2024-01-01T00:00:00Z', f: { tag: ['a"b', 'attachment'] }, l: [`ref\0${id}`] }
  assert.deepEqual(servedRow(id, JSON.stringify(row)), { i: id, s: 4242, n: 'post', p: [2, 123456789, 1593], l: [] })
  assert.deepEqual(servedRow(id, JSON.stringify({ ...row, o: 'http://127.0.0.1:1' })), { i: id, s: 4242, n: 'post', p: [2, 123456789, 1593], l: [] })
  // No place (a row whose bytes an old layout had lost), or an odd one.
  const { p: _, ...noPlace } = row
  assert.equal(servedRow(id, JSON.stringify(noPlace)), undefined)
  assert.equal(servedRow(id, JSON.stringify({ ...row, p: [1, 2] })), undefined)
  assert.equal(servedRow(id, JSON.stringify({ ...row, p: [1, 2, 'x'] })), undefined)
  assert.equal(servedRow(id, JSON.stringify({ ...row, p: [1, 2, 3.5] })), undefined)
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
        assert.deepEqual(servedRow(row!.i, json!), { i: row!.i, s: row!.s, n: 'post', p: row!.p, l: [] })
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

test('leveldb: opening a store compacts the model log segments that are half dead (replaced or banned versions); every current model reads back', async () => {
  await withTempDir(async (dir) => {
    const [alice, bob] = [generateKeyPair(), generateKeyPair()]
    const sizes = { segmentMax: 8 * 1024, compactTailMin: 4 * 1024 }
    const posts = Array.from({ length: 30 }, (_, i) => makePost(i % 3 ? alice : bob, { localId: i + 1, text: `post ${i} `.repeat(40) }))
    const edits = posts.filter((_, i) => i % 3 && i < 24).map((p) => makePost(alice, { localId: Number(p.id.localId), title: 'edited', text: 'short now', updateTime: '2030-01-01T00:00:00Z' }))
    const segmentFiles = async () => (await readdir(join(dir, 'models'))).sort()
    const raw = async <T>(fn: (db: Level<string, string>) => Promise<T>) => {
      const db = new Level<string, string>(dir)
      try {
        return await fn(db)
      } finally {
        await db.close()
      }
    }
    let store = await GraphStore.openLevel(dir, sizes)
    await store.commit(posts)
    await store.commit(edits)
    assert.equal(await store.ban(bob.publicKeyHex), 10)
    const current = posts.filter((_, i) => i % 3).map((p) => edits.find((e) => e.idText === p.idText) ?? p)
    await store.close()
    const before = await segmentFiles()
    assert.ok(before.length >= 5, `30 posts of ~1 KB in segments of 8 KB: ${before.length}`)
    const dead = await raw((db) => db.iterator({ gt: 'X!dead!', lt: 'X!dead"' }).all())
    assert.ok(dead.length >= 3, 'replaced and banned versions are counted dead, by segment')

    store = await GraphStore.openLevel(dir, sizes)
    const after = await segmentFiles()
    assert.ok(after.length < before.length, `segments ${before.length} → ${after.length}`)
    assert.deepEqual((await store.getModels(current.map((m) => m.idText))).map((g) => g.xml), current.map((m) => m.xml))
    assert.equal(await store.count(), current.length)
    // Rows name only segments that are there; the counts of removed ones are gone.
    const named = new Set((await store.rows(current.map((m) => m.idText))).map((r) => r!.p![0]))
    const files = new Set(after.map((f) => Number(f.slice(0, 8))))
    for (const seg of named) assert.ok(files.has(seg), `segment ${seg} is named and present`)
    await store.commit([makePost(alice, { localId: 99 })])
    await store.close()
    const left = await raw((db) => db.keys({ gt: 'X!dead!', lt: 'X!dead"' }).all())
    for (const key of left) assert.ok(files.has(Number(key.slice('X!dead!'.length))), `${key} counts a segment that is there`)
    // A second open finds nothing more to do: the same segments, the same models.
    const settled = await segmentFiles()
    store = await GraphStore.openLevel(dir, sizes)
    assert.deepEqual(await segmentFiles(), settled)
    assert.equal(await store.count(), current.length + 1)
    await store.close()
  })
})

test('leveldb: a model log cut short after a compaction moved old models past the newest is refused too', async () => {
  await withTempDir(async (dir) => {
    const alice = generateKeyPair()
    const sizes = { segmentMax: 8 * 1024, compactTailMin: 4 * 1024 }
    const posts = Array.from({ length: 24 }, (_, i) => makePost(alice, { localId: i + 1, text: `post ${i} `.repeat(40) }))
    const edits = posts.filter((_, i) => i % 3).map((p) => makePost(alice, { localId: Number(p.id.localId), text: 'short now', updateTime: '2030-01-01T00:00:00Z' }))
    let store = await GraphStore.openLevel(dir, sizes)
    await store.commit(posts)
    await store.commit(edits)
    await store.close()
    const tailOf = async () => join(dir, 'models', (await readdir(join(dir, 'models'))).sort().at(-1)!)
    const tailBefore = await tailOf()
    store = await GraphStore.openLevel(dir, sizes) // compacts: the live old posts move to a new tail, after the edits
    await store.close()
    const tail = await tailOf()
    assert.notEqual(tail, tailBefore, 'the compaction wrote a new tail')
    const whole = await readFile(tail)
    await writeFile(tail, whole.subarray(0, whole.length - 10))
    await assert.rejects(GraphStore.openLevel(dir, sizes), { code: 'DIP_DATA_INVALID' })
    await writeFile(tail, whole)
    store = await GraphStore.openLevel(dir, sizes)
    assert.equal(await store.count(), posts.length)
    await store.close()
  })
})

test('leveldb: a store whose model log was lost or cut short is refused (DIP_DATA_INVALID), not served wrong bytes', async () => {
  await withTempDir(async (dir) => {
    const key = generateKeyPair()
    const store = await GraphStore.openLevel(dir)
    await store.commit([makePost(key, { localId: 1 }), makePost(key, { localId: 2 })])
    await store.close()
    const segment = join(dir, 'models', '00000001.log')
    const whole = await readFile(segment)
    await writeFile(segment, whole.subarray(0, whole.length - 10))
    await assert.rejects(GraphStore.openLevel(dir), { code: 'DIP_DATA_INVALID' }, 'cut short')
    await rm(join(dir, 'models'), { recursive: true })
    await assert.rejects(GraphStore.openLevel(dir), { code: 'DIP_DATA_INVALID' }, 'lost')
    // Put back whole, it opens again (each refusal closed the store).
    await writeFile(segment, whole)
    const again = await GraphStore.openLevel(dir)
    assert.equal(await again.count(), 2)
    await again.close()
  })
})

test('a write that fails stops the store writing until it is opened again; what it held is still read', async () => {
  // A full disk, say: LevelDB 1.20 would put later writes behind a torn record in its log, which its recovery drops.
  class FailingLog extends MemoryModelLog {
    fail = false
    override async flush(): Promise<void> {
      if (this.fail) throw new Error('ENOSPC: no space left on device, write')
      return super.flush()
    }
  }
  const log = new FailingLog()
  const store = await GraphStore.openMemory(log)
  const k = generateKeyPair()
  const [a, b, c] = [1, 2, 3].map((n) => makePost(k, { localId: n }))
  const unavailable = (pattern: RegExp) => (e: unknown) => e instanceof DipError && e.code === 'DIP_UNAVAILABLE' && pattern.test(e.message)
  try {
    assert.deepEqual(await store.commit([a!]), ['stored'])
    log.fail = true
    await assert.rejects(store.commit([b!]), unavailable(/a write to the store failed \(ENOSPC/))
    log.fail = false // the space is back: the store still takes nothing until it is opened again
    await assert.rejects(store.commit([c!]), unavailable(/takes no writes since one failed/))
    await assert.rejects(store.allocateLocalId(k.publicKeyHex), unavailable(/takes no writes/))
    await assert.rejects(store.savePeer({ url: 'http://127.0.0.1:1', life: 1, pulls: 0, stored: 0, rejected: 0 }), unavailable(/takes no writes/))
    const rows = await store.rows([a!.idText, b!.idText, c!.idText])
    assert.deepEqual(rows.map((r) => r?.h), [a!.hash, undefined, undefined])
    assert.equal(store.lastSeq, 1)
  } finally {
    await store.close()
  }
})
