// Compacting the model log on open, killed with SIGKILL at its riskiest
// points (copies added but not written; synced but not named yet; a segment
// removed but its dead count not dropped), loses nothing: after every crash each row names bytes
// that are there and read as its model, and a last open finishes the work.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { open, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import { GraphStore } from '../../src/store/graph-store.js'
import { COMPACT_SIZES } from '../compact-child.js'
import { generateKeyPair, makePost } from '../factory.js'
import { ROOT, withTempDir } from '../helpers.js'

const CHILD = join(ROOT, 'dist', 'test', 'compact-child.js')
const N = 3000

function openChild(dir: string, crash?: string): Promise<{ code: number | null; signal: string | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, dir, ...(crash ? [crash] : [])], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    const limit = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      clearTimeout(limit)
      resolve({ code, signal, out, err })
    })
  })
}

const segments = async (dir: string) => (await readdir(join(dir, 'models'))).filter((f) => f.endsWith('.log')).map((f) => Number(f.slice(0, 8)))

/** Reads every row straight from LevelDB and its bytes straight from the segment files: each must be its model. */
async function checkRows(dir: string, expected: Map<string, string>): Promise<void> {
  const db = new Level<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' })
  try {
    let n = 0
    for await (const [key, json] of db.iterator({ gt: 'I!', lt: 'I"' })) {
      const [seg, off, len] = (JSON.parse(json) as { p: [number, number, number] }).p
      const f = await open(join(dir, 'models', `${String(seg).padStart(8, '0')}.log`), 'r')
      try {
        const buf = Buffer.alloc(len)
        await f.read(buf, 0, len, off)
        assert.equal(buf.toString(), expected.get(key.slice(2)), `the bytes row ${key.slice(2)} names`)
      } finally {
        await f.close()
      }
      n++
    }
    assert.equal(n, expected.size)
  } finally {
    await db.close()
  }
}

test('compacting the model log, killed around a flush or right after a removal, loses nothing; the next open goes on', async () => {
  await withTempDir(async (dir) => {
    const key = generateKeyPair()
    const store = await GraphStore.openLevel(dir, COMPACT_SIZES)
    const posts = Array.from({ length: N }, (_, i) => makePost(key, { localId: i, text: `post ${i} `.repeat(60) }))
    for (let i = 0; i < N; i += 500) await store.commit(posts.slice(i, i + 500))
    // Two of three posts edited: their first versions' bytes are dead.
    const edits = posts.filter((_, i) => i % 3 !== 0).map((p) => makePost(key, { localId: Number(p.id.localId), text: 'short', updateTime: '2030-01-01T00:00:00Z' }))
    for (let i = 0; i < edits.length; i += 500) await store.commit(edits.slice(i, i + 500))
    await store.close()
    const expected = new Map(posts.map((p) => [p.idText, p.xml]))
    for (const e of edits) expected.set(e.idText, e.xml)
    const before = await segments(dir)

    for (const crash of ['preflush:1', 'flush:1', 'flush:2', 'remove', 'remove']) {
      const r = await openChild(dir, crash)
      assert.equal(r.signal, 'SIGKILL', `the open reached its crash point ${crash} (exit ${r.code}, ${r.out.slice(0, 200)} ${r.err.slice(0, 500)})`)
      await checkRows(dir, expected)
    }
    const done = await openChild(dir)
    assert.equal(done.out, 'opened\n', done.err)
    await checkRows(dir, expected)
    const after = await segments(dir)
    assert.ok(after.length < before.length, `segments ${before.length} → ${after.length}`)

    const reopened = await GraphStore.openLevel(dir, COMPACT_SIZES)
    try {
      const ids = [...expected.keys()]
      assert.deepEqual((await reopened.getModels(ids)).map((g) => g.xml), ids.map((i) => expected.get(i)))
      assert.equal(await reopened.count(), N)
    } finally {
      await reopened.close()
    }
    const db = new Level<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' })
    try {
      const present = new Set(await segments(dir))
      for (const k of await db.keys({ gt: 'X!dead!', lt: 'X!dead"' }).all()) assert.ok(present.has(Number(k.slice('X!dead!'.length))), `${k} counts a segment that is there`)
    } finally {
      await db.close()
    }
  })
})
