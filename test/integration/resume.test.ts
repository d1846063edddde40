// A pull killed with SIGKILL at random points resumes from its checkpoint:
// in the end the puller holds exactly the source's models, none twice, and
// nothing it had committed is fetched again.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { getEventListeners } from 'node:events'
import { createServer, type Server } from 'node:http'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { DipError } from '../../src/errors.js'
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

interface Summary {
  stored: number
  skipped: number
  fetched: number
  listed: number
  interrupted?: true
  retried?: number
}

/**
 * Runs `dipd pull`; kills it after `killAfterMs` (undefined: lets it finish).
 * Resolves with the exit, its JSON summary if any and its stderr; `started` is given the child.
 */
function runPull(dir: string, from: string, killAfterMs: number | undefined, started?: (child: ChildProcess) => void, args: string[] = []): Promise<{ code: number | null; signal: string | null; summary?: Summary; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'pull', '--data', dir, '--from', from, '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    started?.(child)
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
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
      resolve({ code, signal, summary, stderr: err })
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
  const kills: string[] = []
  let killedMidway = 0
  // A kill is placed by the pull's progress, not by a time (a fast machine
  // finished the whole pull before a timed kill): once B's model log has
  // grown by a random share of what is left to pull, i.e. right after one
  // of its commits wrote its bytes, with or without its batch.
  const logSize = (dir: string) => stat(join(storePath(dir), 'models', '00000001.log')).then((x) => x.size, () => 0)
  const perModel = (await logSize(dirs[0]!.path)) / N
  for (let k = 0; k < KILLS; k++) {
    let held = 0
    if (k > 0) {
      const store = await GraphStore.openLevel(storePath(b.path)) // opening cuts bytes no row names: the log's size is what is held
      held = store.lastSeq
      await store.close()
    }
    const share = 0.15 + 0.5 * random()
    const target = (await logSize(b.path)) + share * (N - held) * perModel
    let child: ChildProcess | undefined
    const run = runPull(b.path, A.url, undefined, (c) => (child = c))
    for (let i = 0; i < 12_000 && child!.exitCode === null && child!.signalCode === null; i++) {
      if ((await logSize(b.path)) >= target) {
        child!.kill('SIGKILL')
        break
      }
      await new Promise((r) => setTimeout(r, 5))
    }
    const r = await run
    kills.push(`${held} held + ${Math.round(share * 100)}%`)
    if (r.signal === 'SIGKILL') killedMidway++
    else t.diagnostic(`run ${k}: exit ${r.code}, ${r.stderr.slice(0, 300)} ${JSON.stringify(r.summary)}`)
  }
  const held = await GraphStore.openLevel(storePath(b.path))
  const before = held.lastSeq
  await held.close()
  const last = await runPull(b.path, A.url, undefined)
  assert.equal(last.code, 0, 'the last pull finishes')
  assert.ok(last.summary, 'with a summary')
  const summary = last.summary as Summary
  assert.equal(before + summary.stored, N, 'the last pull stores exactly what the killed ones had not committed')
  // Listed models already held are skipped before any get: nothing committed is fetched again.
  assert.equal(summary.fetched, summary.stored, `fetched ${summary.fetched}, stored ${summary.stored}`)
  // The checkpoint written with the commits lets the last pull list only from the last finished page.
  t.diagnostic(`kills at ${kills.join(', ')}; ${before} held before the last pull, which listed ${summary.listed}`)
  if (before >= 2500) assert.ok(summary.listed < N, `listed ${summary.listed} of ${N} after ${before} were held`)
  assert.equal(killedMidway, KILLS, `every kill hit a running pull (${killedMidway} of ${KILLS}, at ${kills.join(', ')})`)

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

/** What B holds: every id once, each with the source's hash. */
async function assertHoldsSource(dir: string): Promise<void> {
  const source = new Map((await A.node.list()).map((r) => [r.id, r.hash]))
  const store = await GraphStore.openLevel(storePath(dir))
  try {
    const rows = (await store.list({ model: 'post', facets: [], afterSeq: 0, limit: 100_000 })).rows
    assert.equal(rows.length, N)
    assert.equal(store.lastSeq, N, 'each model stored exactly once')
    for (const r of rows) assert.equal(source.get(r.i), r.h, r.i)
  } finally {
    await store.close()
  }
}

test('a pull stopped by its signal commits what it has in flight, says interrupted, and the next pull goes on from there', async () => {
  const b = await tempDir('resume-abort-')
  dirs.push(b)
  const node = await openNode({ dataDir: b.path })
  try {
    const stop = new AbortController()
    const first = await node.pull(A.url, {}, (p) => {
      if (p.stored > 0) stop.abort()
    }, stop.signal)
    assert.equal(first.interrupted, true)
    assert.ok(first.stored > 0 && first.stored < N, `stored ${first.stored} of ${N}`)
    assert.equal(await node.deps.store.count(), first.stored, 'what it says it stored, and nothing else')
    // A signal that outlives its pulls (the replicator's) keeps no listener from them, whether they end well or fail.
    const lasting = new AbortController()
    const cut = await proxyToA()
    cut.cutFrom = 1
    try {
      await assert.rejects(node.pull(cut.url, {}, undefined, lasting.signal), DipError)
    } finally {
      await cut.close()
    }
    assert.equal(getEventListeners(lasting.signal, 'abort').length, 0, 'after a failed pull')
    const second = await node.pull(A.url, {}, undefined, lasting.signal)
    assert.equal(getEventListeners(lasting.signal, 'abort').length, 0, 'after a pull that ends well')
    assert.equal(second.interrupted, undefined)
    assert.equal(first.stored + second.stored, N)
    assert.equal(second.fetched, second.stored, 'nothing stored by the first pull is fetched again')
  } finally {
    await node.close()
  }
  await assertHoldsSource(b.path)
})

/**
 * A proxy to A on loopback. `afterGet(n)` is called once the n-th get
 * answer went through; while `cutFrom` is set, sync requests (lists and
 * gets, counted together) from that count on (up to `cutUntil`, excluded,
 * when set) have their connection cut.
 */
async function proxyToA(afterGet: (n: number) => void = () => {}): Promise<{ url: string; cutFrom: number | undefined; cutUntil: number | undefined; count(): number; close(): Promise<void> }> {
  let gets = 0
  let requests = 0
  const proxy = {
    url: '',
    cutFrom: undefined as number | undefined,
    cutUntil: undefined as number | undefined,
    /** sync requests so far */
    count: () => requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const get = req.url?.startsWith('/api/sync/get') === true
      const n = get ? ++gets : 0
      const sync = req.url?.startsWith('/api/sync/') === true ? ++requests : 0
      if (sync > 0 && proxy.cutFrom !== undefined && sync >= proxy.cutFrom && (proxy.cutUntil === undefined || sync < proxy.cutUntil)) return void res.destroy()
      request(A.url + req.url, { method: req.method as 'GET' | 'POST', headers: { 'content-type': req.headers['content-type'] ?? 'application/xml' }, body: req.method === 'GET' ? undefined : Buffer.concat(chunks) })
        .then(async (r) => {
          const body = Buffer.from(await r.body.arrayBuffer())
          res.writeHead(r.statusCode, r.headers as Record<string, string>)
          res.end(body)
          if (get) afterGet(n)
        })
        .catch(() => res.destroy())
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  proxy.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  return proxy
}

/** A pull through `url` stopped early after storing `stored`: the same command stores the rest, fetching nothing twice, and B holds A's set. */
async function assertGoesOn(dir: string, url: string, stored: number): Promise<void> {
  assert.ok(stored > 0 && stored < N, `stored ${stored} of ${N}`)
  const next = await runPull(dir, url, undefined)
  assert.equal(next.code, 0)
  assert.equal(stored + (next.summary?.stored ?? 0), N, 'it stores the rest: the count given was exact')
  assert.equal(next.summary?.fetched, next.summary?.stored, 'nothing stored before is fetched again')
  await assertHoldsSource(dir)
}

for (const viaDaemon of [false, true]) {
  test(`Ctrl-C on dipd pull${viaDaemon ? ' through a daemon' : ''}: exit 130 after committing the batches in flight, with the summary, and the same command goes on from there`, async () => {
    const b = await tempDir('resume-sigint-')
    dirs.push(b)
    // With a daemon on DIR, the CLI asks it to stop the pull (POST /api/local/pull/stop) and still gets the summary.
    const B = viaDaemon ? await startDaemon({ dataDir: b.path, host: '127.0.0.1', port: 0 }) : undefined
    // Ctrl-C once two get answers went through.
    let child: ChildProcess | undefined
    const proxy = await proxyToA((n) => n === 2 && child?.kill('SIGINT'))
    try {
      const first = await runPull(b.path, proxy.url, undefined, (c) => (child = c))
      assert.equal(first.code, 130, `exit 130: ${first.stderr}`)
      assert.equal(first.summary?.interrupted, true, 'the --json summary says interrupted')
      assert.ok(first.summary.stored < N, 'it stopped before the end')
      await B?.close()
      await assertGoesOn(b.path, proxy.url, first.summary.stored)
    } finally {
      await proxy.close()
      await B?.close()
    }
  })
}

test('a pull whose peer fails midway keeps what it stored, says so, and the same command goes on from there', async () => {
  const b = await tempDir('resume-cut-')
  dirs.push(b)
  // The list and two gets go through; what follows is cut.
  const proxy = await proxyToA()
  proxy.cutFrom = 4
  try {
    const first = await runPull(b.path, proxy.url, undefined, undefined, ['--retries', '0'])
    assert.equal(first.code, 1)
    assert.match(first.stderr, /DIP_PEER_/)
    const m = /(\d+) models were stored before the error and are kept/.exec(first.stderr)
    assert.ok(m, first.stderr)
    proxy.cutFrom = undefined
    await assertGoesOn(b.path, proxy.url, Number(m[1]))
  } finally {
    await proxy.close()
  }
})

test('a daemon stopped while it pulls a pull peer ends the pull cleanly, and the next pull goes on from its checkpoint', async () => {
  const b = await tempDir('resume-stop-')
  dirs.push(b)
  const B = await startDaemon({ dataDir: b.path, host: '127.0.0.1', port: 0 })
  await B.node.addPeer(A.url, { pull: true })
  const deadline = Date.now() + 30_000
  while ((await B.node.deps.store.count()) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
  await B.close()
  const node = await openNode({ dataDir: b.path })
  try {
    const held = await node.deps.store.count()
    // Stopping ends the pull after the batches in flight; it does not wait for the whole listing.
    assert.ok(held > 0 && held < N, `held ${held} of ${N} after the stop`)
    const next = await node.pull(A.url, {})
    assert.equal(held + next.stored, N)
    assert.equal(next.fetched, next.stored, 'nothing committed before the stop is fetched again')
  } finally {
    await node.close()
  }
  await assertHoldsSource(b.path)
})

for (const viaDaemon of [false, true]) {
  test(`dipd pull${viaDaemon ? ' through a daemon' : ''} whose link breaks midway goes on by itself from its checkpoint, after a pause, and fetches nothing twice`, async () => {
    const b = await tempDir('resume-retry-')
    dirs.push(b)
    // With a daemon on DIR, the CLI asks it to pull (the local API) and prints what it streams back.
    const B = viaDaemon ? await startDaemon({ dataDir: b.path, host: '127.0.0.1', port: 0 }) : undefined
    // The list and two gets go through, the third get is cut, then all goes through again.
    const proxy = await proxyToA()
    proxy.cutFrom = 4
    proxy.cutUntil = 5
    try {
      const t0 = Date.now()
      const r = await runPull(b.path, proxy.url, undefined)
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stderr, /DIP_PEER_UNREACHABLE/)
      assert.match(r.stderr, /\d+ models stored so far are kept; going on from the checkpoint in 1 s \(retry 1 of 5\)/)
      assert.ok(Date.now() - t0 >= 1000, 'it waited before going on')
      assert.equal(r.summary?.retried, 1)
      assert.equal(r.summary?.stored, N, 'one command stores the whole set')
      assert.equal(r.summary?.fetched, N, 'nothing stored before the break is fetched again')
    } finally {
      await proxy.close()
      await B?.close()
    }
    await assertHoldsSource(b.path)
  })
}

/** `fn` given a node on a new folder and a proxy to A; both closed after it. Resolves with the folder. */
async function withPullerAndProxy(label: string, fn: (node: Awaited<ReturnType<typeof openNode>>, proxy: Awaited<ReturnType<typeof proxyToA>>) => Promise<void>): Promise<string> {
  const b = await tempDir(label)
  dirs.push(b)
  const node = await openNode({ dataDir: b.path })
  const proxy = await proxyToA()
  try {
    await fn(node, proxy)
  } finally {
    await proxy.close()
    await node.close()
  }
  return b.path
}

test('pull retries: only failures of the link after the peer answered, as many as asked, and a stop while waiting ends the pull as interrupted', async () => {
  const dir = await withPullerAndProxy('resume-retries-', async (node, proxy) => {
    // A peer that cannot be reached at all fails at once, whatever the retries.
    const t0 = Date.now()
    await assert.rejects(node.pull('http://127.0.0.1:9', { retries: 3 }), (e: DipError) => e.code === 'DIP_PEER_UNREACHABLE')
    assert.ok(Date.now() - t0 < 900, 'no pause before failing')
    await assert.rejects(node.pull(A.url, { retries: -1 }), (e: DipError) => e.code === 'DIP_USAGE')
    await assert.rejects(node.pull(A.url, { retries: 1.5 }), (e: DipError) => e.code === 'DIP_USAGE')
    // Cut for good after the first list page and two gets: two retries, each reported, then the failure.
    proxy.cutFrom = 4
    const retries: { attempt: number; of: number; inMs: number }[] = []
    await assert.rejects(
      node.pull(proxy.url, { retries: 2 }, (p) => p.retry && retries.push({ attempt: p.retry.attempt, of: p.retry.of, inMs: p.retry.inMs })),
      (e: DipError) => e.code === 'DIP_PEER_UNREACHABLE',
    )
    assert.deepEqual(retries, [{ attempt: 1, of: 2, inMs: 1000 }, { attempt: 2, of: 2, inMs: 2000 }])
    // Stopped while it waits: the pull ends at once, interrupted, and the link mended goes on from there.
    const stop = new AbortController()
    const stopped = await node.pull(proxy.url, { retries: 5 }, (p) => p.retry && stop.abort(), stop.signal)
    assert.equal(stopped.interrupted, true)
    assert.equal(stopped.retried, undefined)
    proxy.cutFrom = undefined
    const held = await node.deps.store.count()
    const last = await node.pull(proxy.url, {})
    assert.equal(held + last.stored, N)
    assert.equal(last.fetched, last.stored)
  })
  await assertHoldsSource(dir)
})

test('a full pull whose link breaks before its first commit goes on from the start, not from the cursor kept before it', async () => {
  await withPullerAndProxy('resume-full-retry-', async (node, proxy) => {
    assert.equal((await node.pull(proxy.url, {})).stored, N, 'the whole set, and the cursor kept at its end')
    // The full pull's first list page is cut.
    proxy.cutFrom = proxy.count() + 1
    proxy.cutUntil = proxy.count() + 2
    const full = await node.pull(proxy.url, { full: true, retries: 1 })
    assert.equal(full.retried, 1)
    assert.equal(full.listed, N, 'the retry lists from the start, as the full pull asked')
    assert.deepEqual([full.skipped, full.fetched], [N, 0])
  })
})
