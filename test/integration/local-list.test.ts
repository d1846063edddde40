// POST /api/local/list writes its rows a page at a time: the answer is one
// JSON document of every row in store order, however many pages it spans;
// a bad filter is a normal error answer, before anything is written.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { startDaemon } from '../../src/daemon.js'
import { generateKeyPair, makePost } from '../factory.js'
import { tempDir } from '../helpers.js'

test('local list: 2,600 rows over three store pages come back as one JSON array in store order; a bad filter is DIP_USAGE or DIP_FILTER_INVALID', async () => {
  const dir = await tempDir('local-list-')
  const d = await startDaemon({ dataDir: dir.path, host: '127.0.0.1', port: 0 })
  try {
    const alice = generateKeyPair()
    const posts = Array.from({ length: 2600 }, (_, i) => makePost(alice, { localId: i + 1, tags: i % 2 === 0 ? ['even'] : ['odd'] }))
    for (let i = 0; i < posts.length; i += 500) await d.node.deps.ingest.accept(posts.slice(i, i + 500))
    const { token } = JSON.parse(await readFile(join(dir.path, 'daemon.json'), 'utf8')) as { token: string }
    const list = async (filter: unknown) => {
      const res = await request(`${d.url}/api/local/list`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ filter }),
      })
      return { status: res.statusCode, json: (await res.body.json()) as { rows?: { id: string; hash: string }[]; error?: { code: string } } }
    }
    const all = await list({})
    assert.equal(all.status, 200)
    assert.deepEqual(all.json.rows!.map((r) => r.id), posts.map((p) => p.idText))
    assert.deepEqual(all.json.rows!.map((r) => r.hash), posts.map((p) => p.hash))
    assert.deepEqual(all.json.rows, await d.node.list({}))
    const even = await list({ tags: ['even'] })
    assert.equal(even.json.rows!.length, 1300)
    const none = await list({ tags: ['none'] })
    assert.deepEqual(none.json.rows, [])
    const bad = await list({ model: 'nope' })
    assert.equal(bad.status, 400)
    assert.equal(bad.json.error?.code, 'DIP_USAGE')
    // Filter fields of the wrong JSON type are refused as such (they were TypeErrors, answered as DIP_INTERNAL).
    for (const filter of [{ tags: 'even' }, { allow: 'ab' }, { allow: [5] }, { deny: [null] }, { until: {} }, { since: [1] }, { to: 'group:x', model: 'message' }]) {
      const r = await list(filter)
      assert.deepEqual([r.status, r.json.error?.code], [400, 'DIP_FILTER_INVALID'], JSON.stringify(filter))
    }
    assert.equal((await list({ tags: ['even'] })).json.rows!.length, 1300, 'and the daemon goes on')
  } finally {
    await d.close()
    await dir.remove()
  }
})
