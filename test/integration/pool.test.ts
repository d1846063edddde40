// Push replication in a pool (the issue's "Done when"), over real HTTP on
// 127.0.0.1 with real LevelDB folders:
//
//   * five daemons, each pushing to the four others: a post authored on any
//     of them reaches all the others, once;
//   * one of them is a `dipd serve` child process, killed with SIGKILL while
//     the others take 100 posts; it comes back on the same folder and port,
//     its start-up ping (F140) makes the others flush their outboxes at once
//     (measured against the backoff they were waiting out), and every node
//     ends with the same id -> hash set, nothing lost or duplicated;
//   * an explicit POST /api/sync/ping/ makes a backing-off pusher deliver now;
//   * a dead peer (connection refused, or a black hole that accepts and never
//     answers) does not slow delivery to the live ones (measured);
//   * the pool never loops: outboxes drain to 0 and stay there, and every
//     model was stored exactly once per node (the sum of `pushed` over the
//     pool is 4 x the models, each store's seq equals its row count).
//
// Every wait is bounded; daemons are closed, the child is killed and temp
// folders are removed whatever happens.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { createServer as createTcpServer, type Socket } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { startDaemon, type Daemon } from '../../src/daemon.js'
import { generateKeyPair } from '../../src/crypto/ed25519.js'
import { NodeIdentity } from '../../src/trust/identity.js'
import type { PeerRecord } from '../../src/store/graph-store.js'
import type { PeerStatus } from '../../src/sync/replicator.js'
import type { ListedRow } from '../../src/node.js'
import { closedPort, httpPost, removeDir, tempDir } from './helpers.js'

/** dist/test/integration/ -> dist/src/cli/main.js */
const CLI_JS = resolve(dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js')

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

type PeerView = PeerRecord & { outbox?: PeerStatus | undefined }

/** Polls `probe` every `everyMs` until it returns something other than undefined/false; fails after `timeoutMs`. */
async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined | false> | T | undefined | false, everyMs = 10): Promise<T> {
  const deadline = performance.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await probe()
      if (v !== undefined && v !== false) return v
    } catch (e) {
      last = e
    }
    if (performance.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`)
    await sleep(everyMs)
  }
}

// ---- a daemon as a child process (`dipd serve`), reached over its local API ----

interface Child {
  child: ChildProcess
  url: string
  token: string
  port: number
  stderr(): string
}

const exited = (c: ChildProcess) => c.exitCode !== null || c.signalCode !== null

async function spawnServe(dataDir: string, port: number, timeoutMs = 20_000): Promise<Child> {
  const child = spawn(process.execPath, [CLI_JS, 'serve', '--data', dataDir, '--port', String(port), '--host', '127.0.0.1'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr!.setEncoding('utf8')
  child.stderr!.on('data', (s: string) => {
    if (err.length < 64 * 1024) err += s
  })
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    if (exited(child)) throw new Error(`dipd serve --data ${dataDir} --port ${port} exited (${child.exitCode ?? child.signalCode}) before it served:\n${err}`)
    try {
      const info = JSON.parse(await readFile(join(dataDir, 'daemon.json'), 'utf8')) as { pid: number; url: string; token: string }
      if (info.pid === child.pid) {
        const p = Number(new URL(info.url).port)
        return { child, url: info.url, token: info.token, port: p, stderr: () => err }
      }
    } catch {
      /* not written yet (or the killed child's stale file) */
    }
    await sleep(10)
  }
  child.kill('SIGKILL')
  throw new Error(`dipd serve --data ${dataDir} wrote no daemon.json within ${timeoutMs} ms:\n${err}`)
}

async function killChild(c: ChildProcess, signal: NodeJS.Signals = 'SIGKILL', graceMs = 5000): Promise<void> {
  if (exited(c)) return
  const done = new Promise<void>((r) => c.once('exit', () => r()))
  c.kill(signal)
  const t = setTimeout(() => c.kill('SIGKILL'), graceMs)
  await done
  clearTimeout(t)
}

async function local<T>(d: { url: string; token: string }, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; json: T }> {
  const res = await request(`${d.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${d.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  })
  const text = await res.body.text()
  return { status: res.statusCode, json: (text === '' ? undefined : JSON.parse(text)) as T }
}

// ---- one interface over in-process daemons and the child ----

interface PoolNode {
  name: string
  url: string
  author(title: string): Promise<string>
  has(id: string): Promise<boolean>
  rows(): Promise<ListedRow[]>
  peers(): Promise<PeerView[]>
  addPushPeer(url: string): Promise<void>
  /** the store's last seq where it can be read (in-process), else undefined */
  lastSeq(): number | undefined
}

function inProcess(name: string, d: Daemon): PoolNode {
  return {
    name,
    url: d.url,
    author: async (title) => (await d.node.author('post', { title, text: `text of ${title}`, tags: ['pool'] })).id,
    has: async (id) => (await d.node.show(id)) !== undefined,
    rows: () => d.node.list(),
    peers: () => d.node.peers(),
    addPushPeer: async (url) => void (await d.node.addPeer(url, { push: true })),
    lastSeq: () => d.node.deps.store.lastSeq,
  }
}

function childNode(name: string, get: () => Child): PoolNode {
  return {
    name,
    get url() {
      return get().url
    },
    author: async (title) => {
      const r = await local<{ id: string }>(get(), 'POST', '/api/local/models', { model: 'post', fields: { title, text: `text of ${title}`, tags: ['pool'] } })
      assert.equal(r.status, 200, `author on ${name}: HTTP ${r.status} ${JSON.stringify(r.json)}`)
      return r.json.id
    },
    has: async (id) => {
      const r = await local<unknown>(get(), 'GET', `/api/local/models/${encodeURIComponent(id)}`)
      if (r.status === 404) return false
      assert.equal(r.status, 200, `show on ${name}: HTTP ${r.status} ${JSON.stringify(r.json)}`)
      return true
    },
    rows: async () => {
      const r = await local<{ rows: ListedRow[] }>(get(), 'POST', '/api/local/list', { filter: {} })
      assert.equal(r.status, 200)
      return r.json.rows
    },
    peers: async () => {
      const r = await local<{ result: PeerView[] }>(get(), 'POST', '/api/local/call', { op: 'peers', args: [] })
      assert.equal(r.status, 200)
      return r.json.result
    },
    addPushPeer: async (url) => {
      const r = await local<unknown>(get(), 'POST', '/api/local/call', { op: 'addPeer', args: [url, { push: true }] })
      assert.equal(r.status, 200, `addPeer on ${name}: HTTP ${r.status} ${JSON.stringify(r.json)}`)
    },
    lastSeq: () => undefined,
  }
}

/** The outbox status one node keeps for `peerUrl`. */
async function outboxFor(n: PoolNode, peerUrl: string): Promise<PeerStatus> {
  const p = (await n.peers()).find((x) => x.url === peerUrl)
  assert.ok(p, `${n.name} has no peer ${peerUrl}`)
  assert.ok(p.outbox, `${n.name}'s peer ${peerUrl} shows no outbox`)
  return p.outbox
}

/** Sorted `id hash` lines, each id once, or a failure naming the duplicate. */
function idHashes(name: string, rows: ListedRow[]): string[] {
  const seen = new Set<string>()
  for (const r of rows) {
    assert.ok(!seen.has(r.id), `${name} lists ${r.id} more than once`)
    seen.add(r.id)
  }
  return rows.map((r) => `${r.id} ${r.hash}`).sort()
}

const pingXml = (from: string) => `<request type="ping" version="1.0"><from>${from}</from></request>`

describe('a 5-node push pool on loopback', () => {
  const dirs: string[] = []
  const daemons: Daemon[] = []
  let child: Child | undefined
  let childDir = ''
  let childPort = 0
  const pool: PoolNode[] = []
  /** id -> author node name, every post authored in this suite */
  const authored = new Map<string, string>()

  before(async () => {
    for (const name of ['A', 'B', 'C', 'D']) {
      const dir = await tempDir(`pool-${name}`)
      dirs.push(dir)
      const d = await startDaemon({ dataDir: dir, host: '127.0.0.1', port: 0 })
      daemons.push(d)
      pool.push(inProcess(name, d))
    }
    childDir = await tempDir('pool-E')
    dirs.push(childDir)
    child = await spawnServe(childDir, 0)
    childPort = child.port
    pool.push(childNode('E', () => child!))
    for (const n of pool) for (const m of pool) if (m !== n) await n.addPushPeer(m.url)
  })

  after(async () => {
    if (child) await killChild(child.child, 'SIGTERM').catch(() => {})
    await Promise.all(daemons.map((d) => d.close().catch(() => {})))
    for (const d of dirs) await removeDir(d)
  })

  async function holdsAll(n: PoolNode, ids: Iterable<string>): Promise<boolean> {
    for (const id of ids) if (!(await n.has(id))) return false
    return true
  }

  test('every node lists the four others as push peers with an empty outbox', async () => {
    for (const n of pool) {
      const peers = await n.peers()
      assert.deepEqual(peers.map((p) => p.url).sort(), pool.filter((m) => m !== n).map((m) => m.url).sort(), `${n.name}'s peers`)
      for (const p of peers) {
        assert.equal(p.push, true)
        assert.ok(p.outbox?.state, `${n.name} -> ${p.url}: outbox state`)
        assert.equal(p.outbox.queue, 0)
        assert.equal(p.outbox.state.failures, 0)
        assert.equal(p.outbox.circuitOpen, false)
      }
    }
  })

  test('a post authored on any node reaches all the others, once', { timeout: 60_000 }, async (t) => {
    for (const n of pool) {
      const t0 = performance.now()
      const id = await n.author(`from ${n.name}`)
      authored.set(id, n.name)
      for (const m of pool) {
        if (m === n) continue
        await waitFor(`${id} (by ${n.name}) on ${m.name}`, 5_000, () => m.has(id), 5)
      }
      t.diagnostic(`post by ${n.name} on all 4 others after ${(performance.now() - t0).toFixed(1)} ms`)
    }
    const sets = await Promise.all(pool.map(async (n) => idHashes(n.name, await n.rows())))
    for (let i = 0; i < pool.length; i++) {
      assert.equal(sets[i]!.length, pool.length, `${pool[i]!.name} holds ${sets[i]!.length} posts`)
      assert.deepEqual(sets[i], sets[0], `${pool[i]!.name} and A hold the same id -> hash set`)
    }
    // Stored once each: a store's seq moves once per model it stores.
    for (const n of pool) {
      const seq = n.lastSeq()
      if (seq !== undefined) assert.equal(seq, pool.length, `${n.name}'s store seq`)
    }
    // And the outboxes drain.
    for (const n of pool) {
      await waitFor(`${n.name}'s outboxes empty`, 5_000, async () => (await n.peers()).every((p) => p.outbox?.queue === 0), 20)
    }
  })

  test('a killed node gets the 100 posts it missed through the outboxes, at once when it pings', { timeout: 120_000 }, async (t) => {
    const E = pool[4]!
    const live = pool.slice(0, 4)
    const eUrl = E.url
    await killChild(child!.child, 'SIGKILL')

    // 100 posts spread over the four live nodes.
    const missed: string[] = []
    for (let i = 0; i < 100; i++) {
      const n = live[i % live.length]!
      const id = await n.author(`storm ${i} on ${n.name}`)
      authored.set(id, n.name)
      missed.push(id)
    }
    for (const n of live) await waitFor(`the 100 posts on ${n.name}`, 20_000, () => holdsAll(n, missed), 25)

    // The live nodes back off from E: failures pile up, the circuit opens, the next attempt moves away.
    const tBackoff = performance.now()
    const BACKOFF_AT_LEAST_MS = 3_000
    const pending = await waitFor(
      `every live node backing off from E by >= ${BACKOFF_AT_LEAST_MS} ms`,
      60_000,
      async () => {
        const now = Date.now()
        const out: { name: string; s: PeerStatus; next: number }[] = []
        for (const n of live) {
          const s = await outboxFor(n, eUrl)
          const next = s.state?.nextAttempt === undefined ? NaN : Date.parse(s.state.nextAttempt)
          if (!(next - now >= BACKOFF_AT_LEAST_MS)) return undefined
          out.push({ name: n.name, s, next })
        }
        return out
      },
      50,
    )
    t.diagnostic(`backoff of >= ${BACKOFF_AT_LEAST_MS} ms on all 4 after ${((performance.now() - tBackoff) / 1000).toFixed(1)} s: ${pending.map((p) => `${p.name} failures ${p.s.state!.failures}, next in ${p.next - Date.now()} ms`).join('; ')}`)
    for (const { name, s } of pending) {
      assert.ok(s.state!.failures >= 5, `${name}: ${s.state!.failures} failures`)
      assert.equal(s.circuitOpen, true, `${name}: circuit open after ${s.state!.failures} failures`)
      assert.ok(s.state!.lastError, `${name}: lastError`)
      assert.ok(s.queue >= 100, `${name}: ${s.queue} queued for E`)
    }
    const earliest = Math.min(...pending.map((p) => p.next))

    // E comes back on the same folder and port; its start-up ping flushes the others now.
    const t0 = performance.now()
    const w0 = Date.now()
    child = await spawnServe(childDir, childPort)
    assert.equal(child.port, childPort)
    assert.equal(E.url, eUrl)
    const tServing = performance.now()
    await waitFor('E holding the 100 posts', 15_000, () => holdsAll(E, missed), 10)
    const tHeld = performance.now()
    const heldAt = Date.now()
    // Every live node's outbox for E drained: each was flushed by the ping, not by its timer.
    const drained: string[] = []
    await Promise.all(
      live.map(async (n) => {
        await waitFor(`${n.name}'s outbox for E drained`, 15_000, async () => {
          const s = await outboxFor(n, eUrl)
          return s.queue === 0 && s.state!.failures === 0
        })
        const p = pending.find((x) => x.name === n.name)!
        const at = Date.now()
        drained.push(`${n.name} ${at - w0} ms (its timer: ${p.next - w0} ms)`)
        assert.ok(at < p.next, `${n.name} delivered to E ${at - w0} ms after the restart, not before its backoff ran out (${p.next - w0} ms): the ping did not flush it`)
      }),
    )
    t.diagnostic(`restart: serving after ${(tServing - t0).toFixed(0)} ms, holds all 100 after ${(tHeld - t0).toFixed(0)} ms (${(tHeld - tServing).toFixed(0)} ms after serving); earliest pending backoff was ${earliest - w0} ms away`)
    t.diagnostic(`outboxes for E drained: ${drained.join('; ')}`)
    assert.ok(heldAt < earliest, `E held everything ${heldAt - w0} ms after the restart, but the earliest backoff ended at ${earliest - w0} ms`)

    // Nothing lost or duplicated: the five id -> hash sets are equal and hold every post.
    await waitFor('every node drained', 15_000, async () => {
      for (const n of pool) if (!(await n.peers()).every((p) => p.outbox?.queue === 0)) return false
      return true
    }, 50)
    const sets = await Promise.all(pool.map(async (n) => idHashes(n.name, await n.rows())))
    for (let i = 0; i < pool.length; i++) {
      assert.equal(sets[i]!.length, authored.size, `${pool[i]!.name} holds ${sets[i]!.length} of ${authored.size}`)
      assert.deepEqual(sets[i], sets[0], `${pool[i]!.name} and A hold the same id -> hash set`)
    }
    assert.deepEqual(sets[0]!.map((l) => l.split(' ')[0]).sort(), [...authored.keys()].sort())
  })

  test('the pool never loops: outboxes stay empty and every model was stored once per node', { timeout: 30_000 }, async (t) => {
    const total = authored.size
    const snapshot = async () => {
      const out: { name: string; queue: number; pushed: number; failures: number }[] = []
      for (const n of pool) {
        const peers = await n.peers()
        out.push({
          name: n.name,
          queue: peers.reduce((s, p) => s + (p.outbox?.queue ?? 0), 0),
          pushed: peers.reduce((s, p) => s + (p.outbox?.state?.pushed ?? 0), 0),
          failures: peers.reduce((s, p) => s + (p.outbox?.state?.failures ?? 0), 0),
        })
      }
      return out
    }
    const first = await waitFor('all outboxes at 0', 10_000, async () => {
      const s = await snapshot()
      return s.every((x) => x.queue === 0) ? s : undefined
    }, 50)
    const seqs = pool.map((n) => n.lastSeq())
    await sleep(1_000)
    const second = await snapshot()
    t.diagnostic(`pushed (stored by the peer) per node: ${second.map((x) => `${x.name} ${x.pushed}`).join(', ')}; ${total} models`)
    assert.deepEqual(second, first, 'nothing moves in a quiet pool')
    assert.deepEqual(pool.map((n) => n.lastSeq()), seqs, 'no store grows in a quiet pool')
    for (const x of second) assert.equal(x.failures, 0, `${x.name}: failures`)
    // Every model is stored by each of the 4 nodes that did not author it, exactly once, by one put:
    // the puts that stored something number 4 x the models.
    assert.equal(second.reduce((s, x) => s + x.pushed, 0), 4 * total, 'puts answered "stored" over the pool')
    for (const n of pool) {
      const rows = await n.rows()
      assert.equal(rows.length, total, `${n.name} rows`)
      const seq = n.lastSeq()
      if (seq !== undefined) assert.equal(seq, total, `${n.name}'s store seq (one per stored model)`)
    }
  })
})

describe('an explicit ping makes a backing-off pusher deliver at once', () => {
  const dirs: string[] = []
  let A: Daemon | undefined
  let Y: Daemon | undefined

  after(async () => {
    await Y?.close().catch(() => {})
    await A?.close().catch(() => {})
    for (const d of dirs) await removeDir(d)
  })

  test('POST /api/sync/ping/ naming the peer flushes its outbox', { timeout: 90_000 }, async (t) => {
    const dirA = await tempDir('ping-A')
    const dirY = await tempDir('ping-Y')
    dirs.push(dirA, dirY)
    A = await startDaemon({ dataDir: dirA, host: '127.0.0.1', port: 0 })
    // Y has no peers of its own, so it sends no start-up ping: only the explicit one tells A it is back.
    Y = await startDaemon({ dataDir: dirY, host: '127.0.0.1', port: 0 })
    const yUrl = Y.url
    const yPort = Number(new URL(yUrl).port)
    await A.node.addPeer(yUrl, { push: true })
    await Y.close()
    Y = undefined

    const ids: string[] = []
    for (let i = 0; i < 10; i++) ids.push((await A.node.author('post', { title: `while Y is down ${i}`, text: 'x', tags: [] })).id)
    const a = inProcess('A', A)
    const BACKOFF_AT_LEAST_MS = 3_000
    const pending = await waitFor(
      `A backing off from Y by >= ${BACKOFF_AT_LEAST_MS} ms`,
      60_000,
      async () => {
        const s = await outboxFor(a, yUrl)
        const next = s.state?.nextAttempt === undefined ? NaN : Date.parse(s.state.nextAttempt)
        return next - Date.now() >= BACKOFF_AT_LEAST_MS ? { s, next } : undefined
      },
      50,
    )
    assert.ok(pending.s.queue >= 10)
    assert.ok(pending.s.state!.failures >= 1)

    Y = await startDaemon({ dataDir: dirY, host: '127.0.0.1', port: yPort })
    assert.equal(Y.url, yUrl)
    const y = Y
    // Back, but nobody told A: it keeps waiting out its backoff.
    await sleep(200)
    assert.equal(y.node.deps.store.lastSeq, 0, 'Y got something before anyone pinged')
    const before = await outboxFor(a, yUrl)
    assert.equal(before.state!.nextAttempt, pending.s.state!.nextAttempt, 'A still waits for the same attempt')

    const t0 = performance.now()
    const w0 = Date.now()
    const answer = await httpPost(`${A.url}/api/sync/ping/`, pingXml(yUrl))
    assert.equal(answer.status, 200, answer.body.toString('utf8'))
    assert.match(answer.body.toString('utf8'), /<status>success<\/status>/)
    await waitFor('Y holding the 10 posts', 10_000, async () => {
      for (const id of ids) if ((await y.node.show(id)) === undefined) return false
      return true
    }, 5)
    const tookMs = performance.now() - t0
    const heldAt = Date.now()
    t.diagnostic(`ping to delivered: ${tookMs.toFixed(1)} ms; A's backoff would have ended ${pending.next - w0} ms after the ping`)
    assert.ok(heldAt < pending.next, `Y held the posts ${heldAt - w0} ms after the ping, not before A's backoff ran out (${pending.next - w0} ms)`)
    const after = await waitFor('A\'s outbox for Y drained', 5_000, async () => {
      const s = await outboxFor(a, yUrl)
      return s.queue === 0 ? s : undefined
    })
    assert.equal(after.state!.failures, 0)
    assert.equal(after.circuitOpen, false)
    assert.equal(after.state!.nextAttempt, undefined)
    assert.equal(after.state!.pushed, 10)
  })
})

describe('a dead peer does not slow delivery to the live ones', () => {
  const dirs: string[] = []
  const open: Daemon[] = []
  const sockets = new Set<Socket>()
  const blackHole = createTcpServer((s) => {
    // Accepts, reads, never answers.
    sockets.add(s)
    s.on('error', () => {})
    s.on('close', () => sockets.delete(s))
  })
  let blackHoleUrl = ''

  before(async () => {
    await new Promise<void>((r) => blackHole.listen(0, '127.0.0.1', () => r()))
    const addr = blackHole.address()
    blackHoleUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`
  })

  after(async () => {
    for (const s of sockets) s.destroy()
    await Promise.all(open.map((d) => d.close().catch(() => {})))
    await new Promise<void>((r) => blackHole.close(() => r()))
    for (const d of dirs) await removeDir(d)
  })

  const POSTS = 50

  /** A pushes to 3 live peers (and `dead`, if given); ms from the first post until the 3 hold all 50. */
  async function run(label: string, dead: string | undefined): Promise<{ ms: number; deadStatus: PeerStatus | undefined }> {
    const ds: Daemon[] = []
    try {
      for (const who of ['A', 'L1', 'L2', 'L3']) {
        const dir = await tempDir(`dead-${label}-${who}`)
        dirs.push(dir)
        const d = await startDaemon({ dataDir: dir, host: '127.0.0.1', port: 0 })
        ds.push(d)
        open.push(d)
      }
      const [A, ...liveNodes] = ds as [Daemon, ...Daemon[]]
      // The dead one first, so a serial pusher would be stuck on it before the live ones.
      if (dead) await A.node.addPeer(dead, { push: true })
      for (const l of liveNodes) await A.node.addPeer(l.url, { push: true })
      const ids: string[] = []
      const t0 = performance.now()
      for (let i = 0; i < POSTS; i++) ids.push((await A.node.author('post', { title: `${label} ${i}`, text: 'to the live ones', tags: [] })).id)
      await waitFor(`${label}: the 3 live peers holding ${POSTS} posts`, 30_000, () => liveNodes.every((l) => l.node.deps.store.lastSeq >= POSTS), 2)
      const ms = performance.now() - t0
      for (const l of liveNodes) assert.deepEqual((await l.node.list()).map((r) => r.id).sort(), [...ids].sort(), `${label}: ${l.url} holds exactly the ${POSTS} posts`)
      const deadStatus = dead ? (await A.node.peers()).find((p) => p.url === dead)?.outbox : undefined
      return { ms, deadStatus }
    } finally {
      // Answer nothing more from the black hole: a put hanging there would hold A's close for its timeout.
      for (const s of sockets) s.destroy()
      for (const d of ds) {
        await d.close()
        open.splice(open.indexOf(d), 1)
      }
    }
  }

  test('measured: 3 live peers get 50 posts as fast with a dead 4th peer (refused, and a black hole)', { timeout: 120_000 }, async (t) => {
    // A warm-up so the first measured run does not pay for JIT and connection set-up alone.
    await run('warmup', undefined)
    const base = await run('baseline', undefined)
    const refusedUrl = `http://127.0.0.1:${await closedPort()}`
    const refused = await run('refused', refusedUrl)
    const hole = await run('blackhole', blackHoleUrl)
    const base2 = await run('baseline2', undefined)
    const baseMs = Math.min(base.ms, base2.ms)
    t.diagnostic(`live delivery of ${POSTS} posts: no dead peer ${base.ms.toFixed(0)} / ${base2.ms.toFixed(0)} ms; + refused peer ${refused.ms.toFixed(0)} ms; + black-hole peer ${hole.ms.toFixed(0)} ms`)
    t.diagnostic(`dead peers meanwhile: refused ${JSON.stringify(refused.deadStatus?.state)}; black hole ${JSON.stringify(hole.deadStatus?.state)}`)
    // The dead peers really were tried and got nothing.
    assert.ok(refused.deadStatus && refused.deadStatus.state!.failures >= 1, 'the refused peer failed at least once')
    assert.ok(refused.deadStatus.queue >= POSTS)
    assert.ok(hole.deadStatus && hole.deadStatus.queue >= POSTS && hole.deadStatus.state!.pushed === 0, 'the black hole acknowledged nothing')
    // Generous (shared, noisy machine): what matters is no serialisation behind the dead peer,
    // which would cost a put timeout (10 s) for the black hole.
    const bound = 2 * baseMs + 500
    assert.ok(refused.ms < bound, `with a refused peer ${refused.ms.toFixed(0)} ms, without ${baseMs.toFixed(0)} ms (bound ${bound.toFixed(0)})`)
    assert.ok(hole.ms < bound, `with a black-hole peer ${hole.ms.toFixed(0)} ms, without ${baseMs.toFixed(0)} ms (bound ${bound.toFixed(0)})`)
  })
})

describe('changing and removing push peers', () => {
  const dirs: string[] = []
  const open: Daemon[] = []
  const sockets = new Set<Socket>()
  let connections = 0
  const blackHole = createTcpServer((s) => {
    connections++
    sockets.add(s)
    s.on('error', () => {})
    s.on('close', () => sockets.delete(s))
  })

  after(async () => {
    for (const s of sockets) s.destroy()
    await Promise.all(open.map((d) => d.close().catch(() => {})))
    if (blackHole.listening) await new Promise<void>((r) => blackHole.close(() => r()))
    for (const d of dirs) await removeDir(d)
  })

  async function daemon(label: string): Promise<Daemon> {
    const dir = await tempDir(label)
    dirs.push(dir)
    const d = await startDaemon({ dataDir: dir, host: '127.0.0.1', port: 0, pullIntervalSeconds: 3600 })
    open.push(d)
    return d
  }

  /** A pushing to B, a first post delivered and B's key pinned by that put. */
  async function pinnedPushPair(label: string): Promise<{ A: Daemon; B: Daemon }> {
    const A = await daemon(`${label}-A`)
    const B = await daemon(`${label}-B`)
    await A.node.addPeer(B.url, { push: true })
    const first = await A.node.author('post', { title: 'the first post', text: 'x', tags: [] })
    await waitFor('the first post on B', 5_000, async () => (await B.node.show(first.id)) !== undefined)
    await waitFor('the first put to pin B', 5_000, async () => (await A.node.deps.store.peer(B.url))?.key === B.node.nodeKey)
    return { A, B }
  }

  test('a pull peer made a push peer too is offered only what is stored from then on', { timeout: 30_000 }, async () => {
    const A = await daemon('switch-A')
    const B = await daemon('switch-B')
    for (let i = 0; i < 5; i++) await A.node.author('post', { title: `before ${i}`, text: 'x', tags: [] })
    await A.node.addPeer(B.url, { pull: true })
    await A.node.addPeer(B.url, { push: true, pull: true })
    const box = (await A.node.peers()).find((p) => p.url === B.url)?.outbox
    assert.equal(box?.queue, 0, `the outbox starts now (like a new push peer's): ${JSON.stringify(box)}`)
    const { id } = await A.node.author('post', { title: 'after', text: 'x', tags: [] })
    await waitFor('the new post on B', 5_000, async () => (await B.node.show(id)) !== undefined, 10)
    await sleep(200)
    assert.deepEqual(
      (await B.node.list()).map((r) => r.id),
      [id],
      'B got the 5 posts stored before push was turned on: the replicator kept the pull-only loop state (ackSeq 0) instead of the outbox addPeer started',
    )
  })

  test('a push peer that rotates its key is followed (its manifest shows the rotation): every post still arrives', { timeout: 30_000 }, async () => {
    const { A, B } = await pinnedPushPair('rot-push')
    await B.node.rotateKey()
    const ids: string[] = []
    for (let i = 0; i < 3; i++) ids.push((await A.node.author('post', { title: `after ${i}`, text: 'x', tags: [] })).id)
    await waitFor('the posts after the rotation on B', 10_000, async () => (await Promise.all(ids.map((id) => B.node.show(id)))).every((x) => x !== undefined))
    const pin = (await A.node.deps.store.peer(B.url))!
    assert.deepEqual([pin.key, pin.life], [B.node.nodeKey, 2], 'the pin followed the rotation')
    await waitFor('an empty outbox', 5_000, async () => (await A.node.peers()).find((p) => p.url === B.url)?.outbox?.queue === 0)
  })

  test('a push peer whose key changed with no rotation gets nothing until re-pinned, then everything', { timeout: 30_000 }, async () => {
    const { A, B } = await pinnedPushPair('repin-push')
    // B's key replaced outright (no rotation): A refuses its answers.
    B.node.deps.identity.adopt(new NodeIdentity({ current: generateKeyPair() }))
    const second = await A.node.author('post', { title: 'to a B with another key', text: 'x', tags: [] })
    await waitFor('a refused delivery', 5_000, async () => /DIP_PEER_KEY_CHANGED/.test((await A.node.peers()).find((p) => p.url === B.url)?.outbox?.state?.lastError ?? ''))
    await A.node.repin(B.url) // the operator checked the key the manifest names now
    A.node.replicator?.ping(B.url)
    await waitFor('the second post on B once re-pinned', 10_000, async () => (await B.node.show(second.id)) !== undefined)
  })

  test('a push peer whose body limit is under a put is sent smaller puts, and gets everything', { timeout: 30_000 }, async () => {
    const A = await daemon('limit-push-A')
    const dir = await tempDir('limit-push-B')
    dirs.push(dir)
    await writeFile(join(dir, 'settings.json'), JSON.stringify({ limits: { maxBodyBytes: 64 * 1024 } }))
    const B = await startDaemon({ dataDir: dir, host: '127.0.0.1', port: 0, pullIntervalSeconds: 3600 })
    open.push(B)
    const ids: string[] = []
    for (let i = 0; i < 200; i++) ids.push((await A.node.author('post', { title: `post ${i}`, text: 'y'.repeat(1000), tags: [] })).id)
    await A.node.addPeer(B.url, { push: true })
    // addPeer starts the outbox now: what is stored from here on goes. 200 more, ~300 KB: several puts under 64 KB.
    const more: string[] = []
    for (let i = 0; i < 200; i++) more.push((await A.node.author('post', { title: `more ${i}`, text: 'z'.repeat(1000), tags: [] })).id)
    await waitFor('all 200 on B', 20_000, async () => (await B.node.list()).length === 200, 50)
    assert.deepEqual((await B.node.list()).map((r) => r.id).sort(), more.sort())
  })

  test('a pull peer added without --model is pulled for every model (push sends them all too)', { timeout: 30_000 }, async () => {
    const A = await daemon('every-model-A')
    const B = await daemon('every-model-B')
    const post = await A.node.author('post', { title: 'a post', text: 'x', tags: [] })
    const message = await A.node.author('message', { to: { group: 'dev' }, text: 'a message' })
    await B.node.addPeer(A.url, { pull: true })
    await waitFor('the post and the message on B', 10_000, async () => (await B.node.show(post.id)) !== undefined && (await B.node.show(message.id)) !== undefined, 50)
  })

  test("a pull peer's failed round shows in its status (a key changed with no rotation), and the next good one clears it", { timeout: 30_000 }, async () => {
    const A = await daemon('pull-error-A')
    const B = await daemon('pull-error-B')
    await A.node.author('post', { title: 'one', text: 'x', tags: [] })
    await B.node.addPeer(A.url, { pull: true })
    const statusOf = async () => (await B.node.peers()).find((p) => p.url === A.url)?.outbox
    await waitFor('the first pull to pin A', 5_000, async () => (await B.node.deps.store.peer(A.url))?.key === A.node.nodeKey, 20)
    A.node.deps.identity.adopt(new NodeIdentity({ current: generateKeyPair() }))
    B.node.replicator!.ping(A.url)
    const failed = await waitFor('the failed pull in the status', 5_000, async () => (await statusOf())?.pullError, 20)
    assert.match(failed.error, /^DIP_PEER_KEY_CHANGED/)
    await B.node.repin(A.url)
    B.node.replicator!.ping(A.url)
    await waitFor('a good pull to clear it', 5_000, async () => (await statusOf())?.pullError === undefined, 20)
  })

  test('a push peer removed while a delivery to it is in flight is not tried again', { timeout: 30_000 }, async () => {
    await new Promise<void>((r) => blackHole.listen(0, '127.0.0.1', () => r()))
    const addr = blackHole.address()
    const url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`
    const A = await daemon('remove-A')
    await A.node.addPeer(url, { push: true })
    await A.node.author('post', { title: 'to a peer about to go', text: 'x', tags: [] })
    await waitFor('a put in flight to the black hole', 5_000, () => connections > 0, 10)
    const { removed } = await A.node.removePeer(url)
    assert.equal(removed, true)
    // The put in flight fails now; so does anything that still connects.
    for (const s of sockets) s.destroy()
    blackHole.on('connection', (s: Socket) => setTimeout(() => s.destroy(), 5))
    const seen = connections
    await sleep(3_000) // several backoff rounds (250 ms, 500, 1,000…) if the loop lived on
    assert.equal(connections, seen, `the removed peer was tried ${connections - seen} more times`)
    assert.equal(await A.node.deps.store.pushState(url), undefined, 'the removed peer\'s outbox position (Q!<url>) is written again')
    assert.deepEqual(await A.node.peers(), [])
  })
})
