// A pull killed with SIGKILL at random points resumes from its checkpoint:
// in the end the puller holds exactly the source's models, none twice, and
// nothing it had committed is fetched again.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { GraphStore } from '../../src/store/graph-store.js'
import { openNode, startDaemon, type Daemon } from '../../src/daemon.js'
import { storePath } from '../../src/data-dir.js'
import { generateKeyPair, makePost } from '../factory.js'
import { ROOT, tempDir } from '../helpers.js'

const N = 6000
const KILLS = 5
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js')
let A: Daemon
const dirs: { path: string; remove(): Promise<void> }[] = []

function rng(seed: number): () => number {
  let x = seed >>> 0
  return () => {
    x = (x * 1664525 + 1013904223) >>> 0
    return x / 2 ** 32
  }
}

/** Runs `dipd pull`; kills it after `killAfterMs` (undefined: lets it finish). Resolves with the exit and its JSON summary if any. */
function runPull(dir: string, from: string, killAfterMs: number | undefined): Promise<{ code: number | null; signal: string | null; summary?: { stored: number; skipped: number; fetched: number; listed: number } }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'pull', '--data', dir, '--from', from, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.resume()
    const limit = setTimeout(() => child.kill('SIGKILL'), 60_000)
    const killer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), killAfterMs)
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      clearTimeout(limit)
      clearTimeout(killer)
      const line = out.trim().split('\n').pop()
      let summary
      try {
        summary = line ? JSON.parse(line) : undefined
      } catch {
        summary = undefined
      }
      resolve({ code, signal, summary })
    })
  })
}

before(async () => {
  const a = await tempDir('resume-a-')
  dirs.push(a)
  const seed = await openNode({ dataDir: a.path })
  const keys = [seed.deps.identity.current, generateKeyPair(), generateKeyPair()]
  for (let i = 0; i < N; i += 500) {
    const batch = []
    for (let j = i; j < Math.min(N, i + 500); j++) batch.push(makePost(keys[j % 3]!, { localId: j, tags: [j % 2 ? 'odd' : 'even'], text: 'x'.repeat(600) + j }))
    await seed.deps.ingest.accept(batch)
  }
  await seed.close()
  A = await startDaemon({ dataDir: a.path, host: '127.0.0.1', port: 0, rateLimit: { max: 0, windowSeconds: 60 } })
})

after(async () => {
  await A?.close()
  for (const d of dirs) await d.remove()
})

test(`a pull killed ${KILLS} times with SIGKILL ends with exactly the source's models, none twice`, async (t) => {
  const b = await tempDir('resume-b-')
  dirs.push(b)
  const random = rng(20261123)
  const kills: number[] = []
  let killedMidway = 0
  for (let k = 0; k < KILLS; k++) {
    // CLI start-up takes a few hundred ms; the pull itself about a second.
    const at = 250 + Math.floor(random() * 900)
    const r = await runPull(b.path, A.url, at)
    kills.push(at)
    if (r.signal === 'SIGKILL') killedMidway++
  }
  const held = await GraphStore.openLevel(storePath(b.path))
  const before = held.lastSeq
  await held.close()
  const last = await runPull(b.path, A.url, undefined)
  assert.equal(last.code, 0, 'the last pull finishes')
  assert.ok(last.summary, 'with a summary')
  const summary = last.summary as { listed: number; stored: number; fetched: number }
  assert.equal(before + summary.stored, N, 'the last pull stores exactly what the killed ones had not committed')
  // Listed models already held are skipped before any get: nothing committed is fetched again.
  assert.equal(summary.fetched, summary.stored, `fetched ${summary.fetched}, stored ${summary.stored}`)
  // The checkpoint written with the commits lets the last pull list only from the last finished page.
  t.diagnostic(`kills at ${kills.join(', ')} ms; ${before} held before the last pull, which listed ${summary.listed}`)
  if (before >= 2500) assert.ok(summary.listed < N, `listed ${summary.listed} of ${N} after ${before} were held`)
  assert.ok(killedMidway >= 3, `most kills hit a running pull (${killedMidway} of ${KILLS}, at ${kills.join(', ')} ms)`)

  const source = new Map((await A.node.list()).map((r) => [r.id, r.hash]))
  const store = await GraphStore.openLevel(storePath(b.path))
  try {
    const rows = (await store.list({ model: 'post', facets: [], afterSeq: 0, limit: 100_000 })).rows
    const ids = rows.map((r) => r.i)
    assert.equal(new Set(ids).size, ids.length, 'no id listed twice')
    assert.equal(rows.length, N)
    assert.equal(store.lastSeq, N, 'each model stored exactly once: one store-order number each')
    for (const r of rows) assert.equal(source.get(r.i), r.h, r.i)
  } finally {
    await store.close()
  }
  // A further pull is cheap and stores nothing.
  const again = await runPull(b.path, A.url, undefined)
  assert.equal(again.code, 0)
  assert.deepEqual([again.summary?.stored, again.summary?.fetched], [0, 0])
})
