// B alone: how much CPU does a pull cost the puller when the peer costs
// nothing? A (seeded with N posts, as the pull bench seeds it) is put
// behind a caching proxy in this process; one pull goes through to A and
// fills the cache, and every later pull, each by a fresh `dipd serve`, is
// answered from it, byte for byte (signatures included), while A idles.
// B's CPU per post is read from /proc per thread: main, and all the others.
// Full pulls share the two cores with A and vary by several per cent from
// run to run; this takes A's share and timing out, for weighing changes of
// a few µs per post on the puller.
//
// `--builds DIR[,DIR…]`: the dist folders of other builds to run B from,
// pulls interleaved (ABBA…); default this build. `--runs R` per build (3),
// `--n N` (100,000). Not run by default (`--only replay`).
import { createHash } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, resolve } from 'node:path'
import { request } from 'undici'
import { argInt, argValue, CLI_JS, cpuDelta, fmt, round, settle, startDaemonChild, stopChild, tempDir, threadCpu, type Bench } from './lib.js'
import { pullOverLocalApi, seed } from './pull.js'

interface Cached {
  status: number
  headers: Record<string, string | string[]>
  body: Buffer
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

export async function runReplay(args: string[]): Promise<Record<string, unknown>> {
  const n = argInt(args, 'n', 100_000, 100, 1_000_000)
  const runs = argInt(args, 'runs', 3, 1, 50)
  const builds = argValue(args, 'builds')?.split(',').map((d) => resolve(d)) ?? []
  const clis = builds.length > 0 ? builds.map((d) => join(d, 'src/cli/main.js')) : [CLI_JS]
  const dir = await tempDir('replay')
  process.stdout.write(`replay: seeding A with ${fmt(n)} posts…\n`)
  await seed(join(dir, 'a'), n)
  const a = await startDaemonChild(join(dir, 'a'))
  const cache = new Map<string, Cached>()
  let misses = 0
  const proxy = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      const key = createHash('sha256').update(`${req.method} ${req.url}\n`).update(body).digest('hex')
      const answer = async (): Promise<Cached> => {
        const hit = cache.get(key)
        if (hit) return hit
        misses++
        const r = await request(a.url + req.url, { method: req.method as 'GET' | 'POST', body: req.method === 'GET' ? undefined : body, headers: { 'content-type': req.headers['content-type'] ?? 'application/xml' } })
        const headers: Record<string, string | string[]> = {}
        for (const [k, v] of Object.entries(r.headers)) if (v !== undefined && !['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'date'].includes(k)) headers[k] = v
        const got = { status: r.statusCode, headers, body: Buffer.from(await r.body.arrayBuffer()) }
        cache.set(key, got)
        return got
      }
      answer().then(
        (c) => res.writeHead(c.status, { ...c.headers, 'content-length': c.body.length }).end(c.body),
        () => res.writeHead(502).end(),
      )
    })
  })
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r))
  const url = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
  let nth = 0
  const pullOnce = async (cli: string) => {
    const b = await startDaemonChild(join(dir, `b${nth++}`), { cli })
    try {
      await settle([b.pid, a.pid])
      const before = threadCpu(b.pid)
      const { wallMs: ms, summary } = await pullOverLocalApi(b, url, n)
      const used = cpuDelta(before, threadCpu(b.pid))
      if (summary.stored !== n) throw new Error(`replay: a pull stored ${summary.stored} of ${n}`)
      const main = used.main ?? 0
      let other = 0
      for (const [kind, ms] of Object.entries(used)) if (kind !== 'main') other += ms
      return { postsPerS: round((n / ms) * 1000), mainUs: round((main * 1000) / n, 1), otherUs: round((other * 1000) / n, 1) }
    } finally {
      await stopChild(b.child)
    }
  }
  try {
    process.stdout.write(`replay: one pull through to A (${a.url}) fills the cache…\n`)
    await pullOnce(clis[0]!)
    const filled = misses
    const results: { postsPerS: number; mainUs: number; otherUs: number }[][] = clis.map(() => [])
    for (let r = 0; r < runs; r++) {
      for (let j = 0; j < clis.length; j++) {
        const i = r % 2 === 0 ? j : clis.length - 1 - j
        const x = await pullOnce(clis[i]!)
        results[i]!.push(x)
        process.stdout.write(`replay: ${builds[i] ?? 'this build'}: ${fmt(x.postsPerS)} posts/s, B ${x.mainUs} µs per post on its main thread, ${x.otherUs} on the others\n`)
      }
    }
    if (misses !== filled) throw new Error(`replay: ${misses - filled} requests were not in the cache (the pulls did not ask the same)`)
    const out = clis.map((_, i) => {
      const xs = results[i]!
      return { build: builds[i] ?? 'this build', runs: xs, median: { postsPerS: median(xs.map((x) => x.postsPerS)), mainUs: median(xs.map((x) => x.mainUs)), totalUs: median(xs.map((x) => x.mainUs + x.otherUs)) } }
    })
    for (const o of out) process.stdout.write(`replay: median, ${o.build}: B ${o.median.totalUs} µs per post (main ${o.median.mainUs}), ${fmt(o.median.postsPerS)} posts/s\n`)
    const json = { bench: 'replay', n, runs, cachedAnswers: cache.size, builds: out }
    process.stdout.write(`BENCH_JSON ${JSON.stringify(json)}\n`)
    return json
  } finally {
    proxy.close()
    await stopChild(a.child)
  }
}

export const replayBench: Bench = {
  name: 'replay',
  question: "how much CPU per post does a pull cost the puller alone, A's answers replayed from a cache (to weigh changes of a few µs between builds)?",
  run: runReplay,
}
