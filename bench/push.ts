// Question: push fan-out latency in a 5-node pool: how long from a post to
// all four other nodes holding it?
//
// Setup (not timed): five `dipd serve` child processes on 127.0.0.1, each
// told over its local API (POST /api/local/call {op:"addPeer"}, what
// `dipd peer add --url U --push` does) to push to the four others. Every
// node's live feed (GET /api/local/events, Server-Sent Events) is read by
// this process, which notes when each model shows up on each node. A
// warm-up round (one post per node, not counted) sets up connections and
// pins the keys (trust on first use).
//
// Figure: N posts (default 200, `--n`), one at a time, each authored on a
// node picked at random (seeded) via POST /api/local/models; for each, the
// time from sending that request until the last of the four others has
// announced it on its feed (the next post starts then). Printed: p50, p90,
// p99 and max of that latency in ms, also until the first peer, and the
// authoring round trip alone; posts/s of the whole sequential run. Goal:
// p99 < 100 ms on loopback.
//
// Every node's sync rate limit is turned off (DIR/settings.json,
// rateLimit.max 0): on loopback all four peers share one client address,
// 127.0.0.1, so the per-address limit would count a whole pool as one
// client, which a real pool (one address per peer) does not.
// `--keep-rate-limit` keeps the defaults.
//
// Correctness: after the run every node must list the same N + 5 models,
// each once, and every outbox must drain to 0; otherwise the bench fails.
//
// Options: --n N (200)  --seed S (1)  --keep-rate-limit
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { argFlag, argInt, cleanup, coresAvailable, fmt, machine, installExitHandlers, rng, round, sleep, startDaemonChild, stopChild, table, tempDir, type Bench, type Daemon } from './lib.js'

const NODES = 5
const GOAL_P99_MS = 100
/** A post that has not reached all others by then fails the bench. */
const PER_POST_TIMEOUT_MS = 10_000

async function local<T>(d: Daemon, path: string, body?: unknown, timeoutMs = 30_000): Promise<T> {
  const res = await request(`${d.url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${d.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  })
  const text = await res.body.text()
  if (res.statusCode !== 200) throw new Error(`${d.url}${path}: HTTP ${res.statusCode} ${text.slice(0, 300)}`)
  return JSON.parse(text) as T
}

/** Who holds which model since when (performance.now()), fed by the nodes' event streams. */
class Arrivals {
  readonly #seen = new Map<string, Map<number, number>>()
  readonly #waiters = new Map<string, () => void>()
  readonly errors: string[] = []

  note(node: number, id: string, at: number): void {
    let m = this.#seen.get(id)
    if (!m) this.#seen.set(id, (m = new Map()))
    if (m.has(node)) this.errors.push(`node ${node} announced ${id} twice`)
    else m.set(node, at)
    this.#waiters.get(id)?.()
  }

  times(id: string): Map<number, number> {
    return this.#seen.get(id) ?? new Map()
  }

  /** Resolves once every node in `nodes` has announced `id`; rejects after `timeoutMs`. */
  waitAll(id: string, nodes: number[], timeoutMs: number): Promise<Map<number, number>> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = this.times(id)
        if (nodes.every((n) => m.has(n))) {
          clearTimeout(timer)
          this.#waiters.delete(id)
          resolve(m)
        }
      }
      const timer = setTimeout(() => {
        this.#waiters.delete(id)
        const m = this.times(id)
        reject(new Error(`${id} reached only nodes [${[...m.keys()].join(', ')}] of [${nodes.join(', ')}] within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#waiters.set(id, check)
      check()
    })
  }
}

/** Reads one node's SSE feed until `signal` aborts; resolves once the stream is open, with the reading's end. */
async function follow(d: Daemon, node: number, arrivals: Arrivals, signal: AbortSignal): Promise<{ reading: Promise<void> }> {
  const res = await request(`${d.url}/api/local/events`, {
    method: 'GET',
    headers: { authorization: `Bearer ${d.token}`, accept: 'text/event-stream' },
    headersTimeout: 10_000,
    bodyTimeout: 0, // the feed stays open; keep-alive comments come every 15 s
    signal,
  })
  if (res.statusCode !== 200) throw new Error(`${d.url}/api/local/events: HTTP ${res.statusCode}`)
  res.body.setEncoding('utf8')
  const reading = (async () => {
    let buf = ''
    try {
      for await (const chunk of res.body) {
        const at = performance.now()
        buf += chunk as string
        let end: number
        while ((end = buf.indexOf('\n\n')) !== -1) {
          const block = buf.slice(0, end)
          buf = buf.slice(end + 2)
          const data = block.split('\n').find((l) => l.startsWith('data: '))
          if (data === undefined) continue
          const j = JSON.parse(data.slice('data: '.length)) as { id: string }
          arrivals.note(node, j.id, at)
        }
      }
    } catch (e) {
      if (!signal.aborted) arrivals.errors.push(`feed of node ${node} failed: ${String(e)}`)
    }
  })()
  return { reading }
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[i]!
}

interface PeerView {
  url: string
  outbox?: { queue: number; state?: { pushed: number; failures: number } }
}

export async function runPush(args: string[]): Promise<Record<string, unknown>> {
  const n = argInt(args, 'n', 200, 1, 1_000_000)
  const seed = argInt(args, 'seed', 1, 0, 2 ** 31)
  const keepRateLimit = argFlag(args, 'keep-rate-limit')
  installExitHandlers()
  const out = (s: string) => process.stdout.write(s)
  const abort = new AbortController()
  try {
    const dirs: string[] = []
    for (let i = 0; i < NODES; i++) {
      const d = await tempDir(`push-${i}`)
      if (!keepRateLimit) await writeFile(join(d, 'settings.json'), JSON.stringify({ rateLimit: { max: 0 } }))
      dirs.push(d)
    }
    const cores = await coresAvailable(500)
    const host = machine()
    out(`push: cores free for this bench right now: ${cores} of 2 (${host.cpu}, ${host.cores} cores; Node ${host.node})\n`)
    out(`push: starting ${NODES} daemons (dipd serve, child processes)…\n`)
    const nodes = await Promise.all(dirs.map((d) => startDaemonChild(d)))
    for (const a of nodes) for (const b of nodes) if (a !== b) await local(a, '/api/local/call', { op: 'addPeer', args: [b.url, { push: true }] })

    const arrivals = new Arrivals()
    const readers = await Promise.all(nodes.map((d, i) => follow(d, i, arrivals, abort.signal)))
    const rand = rng(seed)
    const all = nodes.map((_, i) => i)

    async function one(origin: number, title: string): Promise<{ allMs: number; firstMs: number; authorMs: number; id: string }> {
      const t0 = performance.now()
      const { id } = await local<{ id: string }>(nodes[origin]!, '/api/local/models', { model: 'post', fields: { title, text: `${title}: pushed to the pool`, tags: ['bench'] } })
      const authorMs = performance.now() - t0
      const others = all.filter((i) => i !== origin)
      const times = await arrivals.waitAll(id, others, PER_POST_TIMEOUT_MS)
      const at = others.map((i) => times.get(i)! - t0)
      return { allMs: Math.max(...at), firstMs: Math.min(...at), authorMs, id }
    }

    out('push: warm-up (one post per node, not counted)…\n')
    const ids: string[] = []
    for (let i = 0; i < NODES; i++) ids.push((await one(i, `warm-up ${i}`)).id)

    out(`push: ${fmt(n)} posts, one at a time, each on a random node…\n`)
    const allMs: number[] = []
    const firstMs: number[] = []
    const authorMs: number[] = []
    const perOrigin = new Array<number>(NODES).fill(0)
    const t0 = performance.now()
    for (let k = 0; k < n; k++) {
      const origin = Math.floor(rand() * NODES)
      perOrigin[origin]!++
      const r = await one(origin, `post ${k}`)
      ids.push(r.id)
      allMs.push(r.allMs)
      firstMs.push(r.firstMs)
      authorMs.push(r.authorMs)
    }
    const wallMs = performance.now() - t0

    // Correctness: every node holds all of them once, and the outboxes drain.
    let drained = false
    const drainDeadline = performance.now() + 15_000
    let queues: number[] = []
    while (performance.now() < drainDeadline) {
      queues = await Promise.all(nodes.map(async (d) => (await local<{ result: PeerView[] }>(d, '/api/local/call', { op: 'peers', args: [] })).result.reduce((s, p) => s + (p.outbox?.queue ?? 0), 0)))
      if (queues.every((q) => q === 0)) {
        drained = true
        break
      }
      await sleep(50)
    }
    const peerViews = await Promise.all(nodes.map(async (d) => (await local<{ result: PeerView[] }>(d, '/api/local/call', { op: 'peers', args: [] })).result))
    const pushedStored = peerViews.flat().reduce((s, p) => s + (p.outbox?.state?.pushed ?? 0), 0)
    const failures = peerViews.flat().reduce((s, p) => s + (p.outbox?.state?.failures ?? 0), 0)
    const rows = await Promise.all(nodes.map(async (d) => (await local<{ rows: { id: string }[] }>(d, '/api/local/list', { filter: {} })).rows.map((r) => r.id)))
    const want = [...ids].sort().join('\n')
    const listsOk = rows.every((r) => r.length === ids.length && [...r].sort().join('\n') === want)
    abort.abort()
    await Promise.all(nodes.map((d) => stopChild(d.child)))
    await Promise.allSettled(readers.map((r) => r.reading))

    const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b)
    const all_ = sorted(allMs)
    const first = sorted(firstMs)
    const auth = sorted(authorMs)
    const p = (xs: number[]) => ({ p50: round(quantile(xs, 0.5), 2), p90: round(quantile(xs, 0.9), 2), p99: round(quantile(xs, 0.99), 2), max: round(xs.at(-1) ?? NaN, 2) })
    const postsPerS = n / (wallMs / 1000)
    const met = quantile(all_, 0.99) < GOAL_P99_MS
    const correct = listsOk && drained && arrivals.errors.length === 0 && pushedStored === (NODES - 1) * ids.length
    const figures = {
      bench: 'push',
      n,
      nodes: NODES,
      seed,
      rate_limit: keepRateLimit ? 'default' : 'off',
      all_ms: p(all_),
      first_ms: p(first),
      author_ms: p(auth),
      mean_all_ms: round(allMs.reduce((s, x) => s + x, 0) / Math.max(1, n), 2),
      posts_per_s: round(postsPerS, 1),
      total_s: round(wallMs / 1000, 3),
      per_origin: perOrigin,
      goal_p99_ms: GOAL_P99_MS,
      goal_met: met,
      machine: host,
      cores_free_before: cores,
      puts_stored: pushedStored,
      outbox_failures: failures,
      drained,
      correct,
    }
    const row = (label: string, q: { p50: number; p90: number; p99: number; max: number }, note?: string): [string, string, string?] => [label, `${fmt(q.p50, 1)} / ${fmt(q.p90, 1)} / ${fmt(q.p99, 1)} / ${fmt(q.max, 1)} ms`, note]
    out(
      '\n' +
        table(`push: ${fmt(n)} posts, each authored on a random node of a ${NODES}-node push pool (loopback), until all ${NODES - 1} others hold it`, [
          row('post -> all 4 others  p50/p90/p99/max', figures.all_ms, `goal p99 < ${GOAL_P99_MS} ms: ${met ? 'met' : 'NOT met'}`),
          row('post -> first peer    p50/p90/p99/max', figures.first_ms),
          row('authoring round trip  p50/p90/p99/max', figures.author_ms, 'POST /api/local/models on the origin'),
          ['throughput (one post at a time)', `${fmt(postsPerS, 1)} posts/s`, `${fmt(wallMs / 1000, 2)} s in all`],
          ['posts per origin node', perOrigin.join(' / ')],
          ['puts answered "stored"', `${fmt(pushedStored)}`, `expected ${fmt((NODES - 1) * ids.length)} (each model once on each other node)`],
          ['check: lists equal / outboxes drained', `${listsOk} / ${drained}`, `${ids.length} models per node; queues ${queues.join(' ')}; ${arrivals.errors.length} feed errors`],
          ['context: cores free (2-thread probe)', `${cores}`, 'before the run; below 2 = other work on the machine'],
          ['sync rate limit', keepRateLimit ? 'default' : 'off', 'all peers share 127.0.0.1 here'],
        ]),
    )
    process.stdout.write('BENCH_JSON ' + JSON.stringify(figures) + '\n')
    if (!correct) {
      throw new Error(`push: wrong result: lists equal ${listsOk}, drained ${drained} (queues ${queues.join(' ')}), stored puts ${pushedStored} of ${(NODES - 1) * ids.length}, feed errors: ${arrivals.errors.slice(0, 5).join('; ')}`)
    }
    return figures
  } finally {
    abort.abort()
    await cleanup()
  }
}

export const pushBench: Bench = {
  name: 'push',
  question: 'push fan-out latency in a 5-node pool: post -> all others',
  run: runPush,
}
