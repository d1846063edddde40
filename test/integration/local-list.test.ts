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

test('the local API: its token and address checks hold however the path is spelled; its errors are JSON with their status, a pull refused before it starts included', async () => {
  const dir = await tempDir('local-api-')
  const d = await startDaemon({ dataDir: dir.path, host: '127.0.0.1', port: 0 })
  try {
    const { token } = JSON.parse(await readFile(join(dir.path, 'daemon.json'), 'utf8')) as { token: string }
    const call = async (method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown, auth = true) => {
      const res = await request(`${d.url}${path}`, {
        method,
        headers: { 'content-type': 'application/json', ...(auth ? { authorization: `Bearer ${token}` } : {}) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      })
      const text = await res.body.text()
      let json: { error?: { code: string } } | undefined
      try {
        json = JSON.parse(text) as { error?: { code: string } }
      } catch {
        json = undefined
      }
      return { status: res.statusCode, json, text }
    }
    // Percent-escapes reach the same routes: without the token they are refused like the plain path.
    for (const path of ['/api/local/models', '/api/%6cocal/models', '/%61pi/local/models', '/api/local/%6dodels']) {
      const r = await call('POST', path, { model: 'post', fields: { title: 't', text: 'no token' } }, false)
      assert.deepEqual([r.status, r.json?.error?.code], [403, 'DIP_LOCAL_FORBIDDEN'], path)
    }
    assert.deepEqual(await d.node.list(), [], 'nothing was stored without the token')
    // Errors are JSON with their status: an unknown route, a long id, a model of the wrong type, options of the wrong type.
    const cases: [string, 'GET' | 'POST' | 'DELETE', string, unknown, number, string][] = [
      ['an unknown route', 'DELETE', '/api/local/models/x', undefined, 404, 'DIP_NOT_FOUND'],
      ['an id over the router limit', 'GET', `/api/local/models/${'a'.repeat(600)}`, undefined, 400, 'DIP_REQUEST_INVALID'],
      ['a model that is a number', 'POST', '/api/local/models', { model: 5, fields: { title: 't', text: 'x' } }, 400, 'DIP_USAGE'],
      ['addPeer with options of the wrong type', 'POST', '/api/local/call', { op: 'addPeer', args: ['http://127.0.0.1:9', 'push'] }, 400, 'DIP_USAGE'],
      ['addPeer with a filter of the wrong type', 'POST', '/api/local/call', { op: 'addPeer', args: ['http://127.0.0.1:9', { push: true, filter: 7 }] }, 400, 'DIP_USAGE'],
      ['setPeer with options of the wrong type', 'POST', '/api/local/call', { op: 'setPeer', args: ['http://127.0.0.1:9', 5] }, 400, 'DIP_USAGE'],
      ['a pull from no URL', 'POST', '/api/local/pull', { from: 'not a url' }, 400, 'DIP_USAGE'],
      ['a pull with a filter its model has not', 'POST', '/api/local/pull', { from: 'http://127.0.0.1:9', filter: { model: 'message', tags: ['x'] } }, 400, 'DIP_FILTER_INVALID'],
    ]
    for (const [name, method, path, body, status, code] of cases) {
      const r = await call(method, path, body)
      assert.deepEqual([r.status, r.json?.error?.code], [status, code], `${name}: ${r.text.slice(0, 200)}`)
    }
    assert.deepEqual(await d.node.list(), [], 'and nothing was stored')
    assert.deepEqual(await d.node.peers(), [], 'nor any peer added')
  } finally {
    await d.close()
    await dir.remove()
  }
})
