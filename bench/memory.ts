// Question: does a pull's memory stay flat as N grows? The issue asks for
// peak RSS ≤ 300 MB per process, "flat as N grows (show N = 20k and 100k)".
//
// Setup (not timed): for each N (ascending), a fresh A is seeded with N
// posts exactly as the pull bench seeds it (bench/pull.ts `seed`), then A
// and an empty B run as `dipd serve` child processes, and B pulls
// everything from A over loopback (POST /api/local/pull, filter {}). A's
// and B's folders are removed before the next N.
//
// Figures per N, for the puller B (and A's peak RSS):
//   peak RSS       VmRSS sampled from /proc every 100 ms, and VmHWM
//   what it was    at (about) B's largest RSS, from /proc/<pid>/smaps (read
//                  when RSS grew past the largest seen, at most every 300
//                  ms): [heap] (glibc's main malloc arena, mostly the main
//                  thread's), other anonymous memory (V8's heap pages,
//                  the other threads' malloc arenas, stacks), LevelDB's
//                  table files mapped into the process (.ldb: LevelDB reads
//                  tables through mmap; clean pages the kernel may drop, but
//                  counted in RSS), and the rest (node's binary, libraries)
//   V8             the largest heap total, heap used and external memory B
//                  reported on /metrics (every 500 ms)
//   growth         each figure at the largest N minus at the smallest
// "Flat" is read here as: B's peak RSS at the largest N at most 10% above
// its peak at the smallest (the issue gives no number; this one is the
// bench's, and it prints the growth either way).
// Correctness: every pull must store N, reject and miss nothing.
//
// Options: --n N[,N…] (default 20000,100000)
//          --env-b "K=V[,K=V…]"  environment for B (e.g. MALLOC_ARENA_MAX=1)
//          --node-args-b "…"     extra node flags for B
import { readFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { argValue, argWords, cleanup, fmt, installExitHandlers, machine, memoryOf, procStatusKb, round, sampleRss, settle, startDaemonChild, stopChild, table, tempDir, type Bench, type Daemon } from './lib.js'
import { pullOverLocalApi, seed, TARGET_RSS_MB } from './pull.js'

/** B's peak RSS at the largest N may be this much above the smallest N's and count as flat. */
const FLAT_GROWTH = 0.1

/** Where a process's resident memory is, MB: smaps regions by kind. */
interface Parts {
  heap: number
  anon: number
  tables: number
  rest: number
  total: number
}

/** /proc/<pid>/smaps summed by kind; undefined when the process is gone. */
function residentParts(pid: number): Parts | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/smaps`, 'utf8')
  } catch {
    return undefined
  }
  const kb = { heap: 0, anon: 0, tables: 0, rest: 0 }
  let kind: keyof typeof kb = 'rest'
  for (const line of text.split('\n')) {
    const region = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line)
    if (region) {
      const name = region[1]!
      kind = name === '[heap]' ? 'heap' : name === '' ? 'anon' : name.endsWith('.ldb') ? 'tables' : 'rest'
      continue
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line)
    if (rss) kb[kind] += Number(rss[1])
  }
  const mb = (x: number) => round(x / 1024, 1)
  return { heap: mb(kb.heap), anon: mb(kb.anon), tables: mb(kb.tables), rest: mb(kb.rest), total: mb(kb.heap + kb.anon + kb.tables + kb.rest) }
}

interface Row {
  n: number
  postsPerS: number
  rssA: number
  rssB: number
  hwmB: number | undefined
  atPeak: Parts
  v8: { heapTotal: number; heapUsed: number; external: number }
}

/**
 * B's smaps at (about) its largest RSS: /proc/<pid>/status is read every
 * 100 ms, smaps (dearer) when RSS passed the largest seen by 2 MB, at most
 * every 300 ms; and the largest V8 figures B reports, every 500 ms; until stop().
 */
function watch(b: Daemon): { stop(): Promise<{ atPeak: Parts; v8: Row['v8'] }> } {
  let atPeak: Parts = { heap: 0, anon: 0, tables: 0, rest: 0, total: 0 }
  const v8 = { heapTotal: 0, heapUsed: 0, external: 0 }
  let stopped = false
  let lastSmaps = 0
  const parts = setInterval(() => {
    const now = performance.now()
    if (now - lastSmaps < 300 || (procStatusKb(b.pid).VmRSS ?? 0) / 1024 < atPeak.total + 2) return
    lastSmaps = now
    const p = residentParts(b.pid)
    if (p && p.total > atPeak.total) atPeak = p
  }, 100)
  const metrics = (async () => {
    // Bounded: the pull ends (and stop() is called) or its own timeout fails the bench first.
    for (let i = 0; i < 2 * 60 * 60 && !stopped; i++) {
      try {
        const m = await memoryOf(b)
        v8.heapTotal = Math.max(v8.heapTotal, m.heapTotal)
        v8.heapUsed = Math.max(v8.heapUsed, m.heapUsed)
        v8.external = Math.max(v8.external, m.external)
      } catch {
        /* a busy moment: the next sample */
      }
      await new Promise((r) => setTimeout(r, 500))
    }
  })()
  return {
    async stop() {
      stopped = true
      clearInterval(parts)
      await metrics
      return { atPeak, v8 }
    },
  }
}

function parseEnv(text: string | undefined): Record<string, string> | undefined {
  if (text === undefined || text === '') return undefined
  const env: Record<string, string> = {}
  for (const kv of text.split(',')) {
    const at = kv.indexOf('=')
    if (at <= 0) throw new Error(`--env-b: ${kv} is not K=V`)
    env[kv.slice(0, at)] = kv.slice(at + 1)
  }
  return env
}

export async function runMemory(args: string[]): Promise<Record<string, unknown>> {
  const ns = (argValue(args, 'n') ?? '20000,100000').split(',').map(Number)
  if (ns.length === 0 || !ns.every((n) => Number.isSafeInteger(n) && n >= 1 && n <= 10_000_000)) throw new Error('--n: whole numbers from 1 to 10,000,000, comma-separated')
  ns.sort((x, y) => x - y)
  const envB = parseEnv(argValue(args, 'env-b'))
  const nodeArgsB = argWords(args, 'node-args-b')
  installExitHandlers()
  const out = (s: string) => process.stdout.write(s)
  const rows: Row[] = []
  try {
    for (const n of ns) {
      const dirA = await tempDir('mem-a')
      const dirB = await tempDir('mem-b')
      out(`memory: seeding A with ${fmt(n)} posts…\n`)
      await seed(dirA, n)
      const [a, b] = await Promise.all([startDaemonChild(dirA), startDaemonChild(dirB, { nodeArgs: nodeArgsB, ...(envB ? { env: envB } : {}) })])
      try {
        const calm = await settle([a.pid, b.pid])
        out(`memory: B pulls ${fmt(n)} from A (after ${fmt(calm.ms)} ms for A and B to go quiet)…\n`)
        const rss = sampleRss([a.pid, b.pid], 100)
        const seen = watch(b)
        const pulled = await pullOverLocalApi(b, a.url, n).then(
          (r) => ({ ok: true as const, r }),
          (e: unknown) => ({ ok: false as const, e }),
        )
        const { atPeak, v8 } = await seen.stop()
        const peaks = rss.stop()
        if (!pulled.ok) {
          process.stderr.write(`A stderr:\n${a.stderr()}\nB stderr:\n${b.stderr()}\n`)
          throw pulled.e
        }
        const run = pulled.r
        const s = run.summary
        const rejected = Object.values(s.rejected).reduce((x, y) => x + y, 0)
        if (s.stored !== n || rejected !== 0 || s.missing !== 0) throw new Error(`pull of ${n}: stored ${s.stored}, rejected ${rejected}, missing ${s.missing}`)
        rows.push({ n, postsPerS: round(n / (run.wallMs / 1000)), rssA: peaks[a.pid]!.peakRssMb, rssB: peaks[b.pid]!.peakRssMb, hwmB: peaks[b.pid]!.hwmMb, atPeak, v8 })
      } finally {
        await stopChild(a.child)
        await stopChild(b.child)
        await rm(dirA, { recursive: true, force: true })
        await rm(dirB, { recursive: true, force: true })
      }
    }
  } finally {
    await cleanup()
  }

  const first = rows[0]!
  const last = rows[rows.length - 1]!
  const growth = round(last.rssB - first.rssB, 1)
  const growthPct = round((100 * (last.rssB - first.rssB)) / first.rssB, 1)
  const under = rows.every((r) => r.rssB <= TARGET_RSS_MB && r.rssA <= TARGET_RSS_MB)
  const flat = rows.length > 1 && last.rssB <= first.rssB * (1 + FLAT_GROWTH)
  const host = machine()
  const mark = (ok: boolean) => (ok ? 'met' : 'NOT met')
  const d = (x: number, y: number) => `${x - y >= 0 ? '+' : ''}${fmt(x - y, 1)}`
  out(
    table(
      `memory of a pull as N grows (${host.cpu}, ${host.cores} cores; Node ${host.node})${envB ? `; B's environment: ${Object.entries(envB).map(([k, v]) => `${k}=${v}`).join(' ')}` : ''}`,
      [
        ...rows.map((r): [string, string, string] => [
          `N = ${fmt(r.n)}`,
          `B ${fmt(r.rssB, 1)} MB (VmHWM ${r.hwmB ?? '?'}), A ${fmt(r.rssA, 1)} MB`,
          `${fmt(r.postsPerS)} posts/s; at B's peak: [heap] ${fmt(r.atPeak.heap)}, other anonymous ${fmt(r.atPeak.anon)}, LevelDB tables mapped ${fmt(r.atPeak.tables)}, binary and libraries ${fmt(r.atPeak.rest)} MB; V8 heap total ≤ ${fmt(r.v8.heapTotal)}, used ≤ ${fmt(r.v8.heapUsed)}, external ≤ ${fmt(r.v8.external)} MB`,
        ]),
        ...(rows.length > 1
          ? [
              [
                `growth ${fmt(first.n)} → ${fmt(last.n)}`,
                `B ${d(last.rssB, first.rssB)} MB (${growthPct}%)`,
                `[heap] ${d(last.atPeak.heap, first.atPeak.heap)}, other anonymous ${d(last.atPeak.anon, first.atPeak.anon)}, tables ${d(last.atPeak.tables, first.atPeak.tables)} MB; V8 heap total ${d(last.v8.heapTotal, first.v8.heapTotal)}, used ${d(last.v8.heapUsed, first.v8.heapUsed)} MB`,
              ] as [string, string, string],
            ]
          : []),
        [`peak RSS ≤ ${TARGET_RSS_MB} MB, every N, A and B`, mark(under), ''],
        ['flat: B at the largest N ≤ 110% of the smallest', rows.length > 1 ? mark(flat) : 'one N: not judged', ''],
      ],
    ),
  )
  const json = { bench: 'memory', machine: host, envB: envB ?? null, nodeArgsB, rows, growth_mb: growth, growth_pct: growthPct, targets: { rss_within_target: under, flat: rows.length > 1 ? flat : null } }
  out(`BENCH_JSON ${JSON.stringify(json)}\n`)
  return json
}

export const memoryBench: Bench = {
  name: 'memory',
  question: "does the puller's peak RSS stay flat as N grows (a fresh A of N posts and an empty B for each N)?",
  run: runMemory,
}
