// The local API takes JSON from host applications and the CLI. Whatever the
// arguments of a call or the fields of a filter, the answer is the
// operation's result or a typed error (a DIP_* code, an HTTP error status
// other than 500: 501 for a model it does not speak), never an
// internal error, and the daemon goes on serving. Runs over real HTTP on
// 127.0.0.1 against a daemon on a temporary LevelDB folder.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import fc from 'fast-check'
import { request } from 'undici'
import { startDaemon } from '../../src/daemon.js'
import { LOCAL_OPS } from '../../src/http/local-routes.js'
import { tempDir } from '../helpers.js'

const FILTER_KEYS = ['model', 'tags', 'thread', 'since', 'until', 'allow', 'deny', 'to', 'kinds', 'full', 'retries']

test('local API: calls and filters of any JSON shape get a result or a DIP_* error, never DIP_INTERNAL; the daemon goes on', { timeout: 120_000 }, async () => {
  const dir = await tempDir('local-fuzz-')
  const d = await startDaemon({ dataDir: dir.path, host: '127.0.0.1', port: 0 })
  try {
    const { token } = JSON.parse(await readFile(join(dir.path, 'daemon.json'), 'utf8')) as { token: string }
    const post = async (path: string, body: unknown) => {
      const res = await request(`${d.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(body) })
      const text = await res.body.text()
      return { status: res.statusCode, text }
    }
    /** 200, or an error status (not 500) whose body (or last NDJSON line) is a DIP_* error other than DIP_INTERNAL. */
    const typed = (what: string, r: { status: number; text: string }) => {
      const last = JSON.parse(r.text.trim().split('\n').at(-1)!) as { error?: { code?: string } }
      if (r.status === 200 && last.error === undefined) return
      const code = last.error?.code ?? ''
      assert.match(code, /^DIP_/, `${what}: HTTP ${r.status} ${r.text.slice(0, 300)}`)
      assert.notEqual(code, 'DIP_INTERNAL', `${what}: ${r.text.slice(0, 300)}`)
      if (r.status !== 200) assert.ok(r.status >= 400 && r.status !== 500, `${what}: HTTP ${r.status}`)
    }
    const json = fc.jsonValue({ maxDepth: 2 })
    // Every operation with arguments of any shape (URLs never form from these strings: nothing leaves loopback).
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...Object.keys(LOCAL_OPS)), fc.array(json, { maxLength: 3 }), async (op, args) => {
        typed(`${op} ${JSON.stringify(args)}`, await post('/api/local/call', { op, args }))
      }),
      { numRuns: 300, seed: 20261123 },
    )
    // Filters of any shape, on list and on pull (whose `from` is not a URL, so it fails before any request).
    const filter = fc.dictionary(fc.constantFrom(...FILTER_KEYS), json, { maxKeys: 4 })
    await fc.assert(
      fc.asyncProperty(filter, async (f) => {
        typed(`list ${JSON.stringify(f)}`, await post('/api/local/list', { filter: f }))
        typed(`pull ${JSON.stringify(f)}`, await post('/api/local/pull', { from: 'not a url', filter: f }))
      }),
      { numRuns: 300, seed: 20261124 },
    )
    // Models authored with fields of any shape (and the two models' own field names, to reach their checks).
    const field = fc.constantFrom('title', 'text', 'tags', 'thread', 'tripcode', 'to', 'kind')
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('post', 'message', 'nope'), fc.oneof(json, fc.dictionary(field, json, { maxKeys: 5 })), async (model, fields) => {
        typed(`author ${model} ${JSON.stringify(fields)}`, await post('/api/local/models', { model, fields }))
      }),
      { numRuns: 300, seed: 20261125 },
    )
    const still = await post('/api/local/list', { filter: {} })
    assert.equal(still.status, 200, 'the daemon goes on')
  } finally {
    await d.close()
    await dir.remove()
  }
})
