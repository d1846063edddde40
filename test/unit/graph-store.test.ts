import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { GraphStore } from '../../src/store/graph-store.js'
import { runGraphStoreSuite } from '../suites/graph-store-suite.js'
import { tempDir } from '../helpers.js'
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
  const dir = await tempDir()
  const key = generateKeyPair()
  try {
    const a = await GraphStore.openLevel(dir.path)
    await a.commit([makePost(key, { localId: 1 }), makePost(key, { localId: 2 })])
    const cursor = a.cursor(2)
    await assert.rejects(GraphStore.openLevel(dir.path), { code: 'DIP_DATA_LOCKED' })
    await a.close()
    const b = await GraphStore.openLevel(dir.path)
    assert.equal(await b.count(), 2)
    assert.equal(b.readCursor(cursor), 2)
    assert.deepEqual(await b.commit([makePost(key, { localId: 3 })]), ['stored'])
    assert.deepEqual((await b.list({ model: 'post', facets: [], afterSeq: 2, limit: 10 })).rows.map((r) => r.s), [3])
    await b.close()
  } finally {
    await dir.remove()
  }
})

test('property: LevelDB and memory stores agree on random commit sequences, and every order converges', async () => {
  const keys = [generateKeyPair(), generateKeyPair()]
  const versions = Array.from({ length: 12 }, (_, i) =>
    makePost(keys[i % 2]!, { localId: i % 4, title: `v${i}`, tags: i % 3 ? ['t'] : [], updateTime: `2020-01-0${1 + (i % 3)}T00:00:00Z` }),
  )
  const dir = await tempDir()
  let run = 0
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: versions.length - 1 }), { minLength: 1, maxLength: 20 }), fc.integer({ min: 1, max: 5 }), async (picks, batch) => {
        const mem = await GraphStore.openMemory()
        const lvl = await GraphStore.openLevel(`${dir.path}/${run++}`)
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
  } finally {
    await dir.remove()
  }
})
