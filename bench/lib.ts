// Shared bench plumbing: argument parsing, temp folders, daemons as child
// processes (found through DIR/daemon.json), RSS sampling from /proc, and
// the output format (a table on stdout plus one `BENCH_JSON {…}` line).
//
// Every wait here is bounded in count and in time; children are killed on
// every way out (normal end, error, SIGINT/SIGTERM).
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer, connect, type Socket } from 'node:net'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { readdirSync, readFileSync } from 'node:fs'
import { cpus, tmpdir, totalmem } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'

/** A bench: one question, one function. `args` are passed through from the command line. */
export interface Bench {
  name: string
  question: string
  run(args: string[]): Promise<Record<string, unknown>>
}

/** `--name value` or `--name=value`; undefined if absent. */
export function argValue(args: string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (a === `--${name}`) return args[i + 1]
    if (a.startsWith(`--${name}=`)) return a.slice(name.length + 3)
  }
  return undefined
}

/** `--name "a b c"`: the value's space-separated words (none if absent). */
export function argWords(args: string[], name: string): string[] {
  return (argValue(args, name) ?? '').split(' ').filter((x) => x !== '')
}

export function argFlag(args: string[], name: string): boolean {
  return args.includes(`--${name}`)
}

export function argInt(args: string[], name: string, dflt: number, min: number, max: number): number {
  const v = argValue(args, name)
  if (v === undefined) return dflt
  const n = Number(v)
  if (!Number.isInteger(n) || n < min || n > max) throw new TypeError(`--${name} must be an integer in ${min}..${max}, got ${v}`)
  return n
}

/** dist/bench/ -> dist/src/cli/main.js (both live under dist/ after `tsc -p .`). */
export const CLI_JS = resolve(dirname(fileURLToPath(import.meta.url)), '../src/cli/main.js')

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

// ---- temp folders and children, cleaned up on every way out ----

const tempDirs = new Set<string>()
const children = new Set<ChildProcess>()
/** servers this process runs for a bench (counting proxies): closed by cleanup() */
const closers = new Set<() => Promise<void>>()

/** A child process of a bench's own: killed on every way out, like the daemons. */
export function trackChild(c: ChildProcess): void {
  children.add(c)
}

export async function tempDir(label: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `dipd-bench-${label}-`))
  tempDirs.add(d)
  return d
}

export async function cleanup(): Promise<void> {
  await Promise.all([...closers].map((c) => c()))
  closers.clear()
  await Promise.all([...children].map((c) => stopChild(c)))
  for (const d of tempDirs) await rm(d, { recursive: true, force: true, maxRetries: 3 })
  tempDirs.clear()
}

/** Synchronous last resort (process 'exit'): SIGKILL what is left; temp folders are removed by cleanup(). */
function killAllSync(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
}

let handlersInstalled = false
export function installExitHandlers(): void {
  if (handlersInstalled) return
  handlersInstalled = true
  process.once('exit', killAllSync)
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n${sig}: stopping children, removing temp folders\n`)
      cleanup().finally(() => process.exit(130))
    })
  }
}

export interface Daemon {
  child: ChildProcess
  pid: number
  url: string
  token: string
  dataDir: string
  stderr(): string
}

function exited(c: ChildProcess): boolean {
  return c.exitCode !== null || c.signalCode !== null
}

/** SIGTERM (the daemon closes its store and exits), then SIGKILL after `graceMs`. */
export async function stopChild(c: ChildProcess, graceMs = 5000): Promise<void> {
  if (!exited(c)) {
    const done = new Promise<void>((r) => c.once('exit', () => r()))
    c.kill('SIGTERM')
    const t = setTimeout(() => c.kill('SIGKILL'), graceMs)
    await done
    clearTimeout(t)
  }
  children.delete(c)
}

/** `dipd serve --data DIR --port 0` as a child (`cli`: another build's dist/src/cli/main.js; `env`: added to this process's environment); resolves once DIR/daemon.json names this child. */
export async function startDaemonChild(dataDir: string, opts: { nodeArgs?: string[]; timeoutMs?: number; cli?: string; env?: Record<string, string> } = {}): Promise<Daemon> {
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), opts.cli ?? CLI_JS, 'serve', '--data', dataDir, '--port', '0', '--host', '127.0.0.1'], {
    ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}),
    // DIPD_BENCH_CHILD_STDOUT=1 passes the children's stdout through (with --node-args-b "--trace-gc", say).
    stdio: ['ignore', process.env.DIPD_BENCH_CHILD_STDOUT === '1' ? 'inherit' : 'ignore', 'pipe'],
  })
  children.add(child)
  let err = ''
  child.stderr!.setEncoding('utf8')
  child.stderr!.on('data', (s: string) => {
    if (err.length < 64 * 1024) err += s
  })
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000)
  while (Date.now() < deadline) {
    if (exited(child)) throw new Error(`dipd serve --data ${dataDir} exited (${child.exitCode ?? child.signalCode}) before it served:\n${err}`)
    try {
      const info = JSON.parse(await readFile(join(dataDir, 'daemon.json'), 'utf8')) as { pid: number; url: string; token: string }
      if (info.pid === child.pid && info.url.startsWith('http://127.0.0.1:')) {
        return { child, pid: child.pid, url: info.url, token: info.token, dataDir, stderr: () => err }
      }
    } catch {
      /* not written yet */
    }
    await sleep(25)
  }
  throw new Error(`dipd serve --data ${dataDir} wrote no daemon.json within ${opts.timeoutMs ?? 20_000} ms:\n${err}`)
}

// ---- bytes on the wire ----

export interface WireCount {
  /** bytes client -> server (request lines, headers, bodies) */
  up: number
  /** bytes server -> client (status lines, headers, bodies) */
  down: number
  /** HTTP/1.1 requests seen going up (request lines counted on the wire) */
  requests: number
  connections: number
}

/**
 * A TCP pass-through on 127.0.0.1 in front of `target` (http://127.0.0.1:PORT)
 * that counts the bytes each way, headers included, and the HTTP/1.1
 * request lines going up. `count()` is a snapshot; subtract two snapshots
 * to get one exchange's share. Closed by cleanup() with everything else.
 */
export async function countingProxy(target: string): Promise<{ url: string; count(): WireCount; close(): Promise<void> }> {
  const t = new URL(target)
  if (t.hostname !== '127.0.0.1') throw new Error(`countingProxy: loopback targets only, got ${target}`)
  const c: WireCount = { up: 0, down: 0, requests: 0, connections: 0 }
  const sockets = new Set<Socket>()
  const marker = Buffer.from(' HTTP/1.1\r\n')
  const server = createServer((down) => {
    c.connections++
    const up = connect(Number(t.port), '127.0.0.1')
    sockets.add(down)
    sockets.add(up)
    let tail = Buffer.alloc(0) // the end of the last chunk, for a request line cut between chunks
    down.on('data', (chunk: Buffer) => {
      c.up += chunk.length
      const buf = tail.length > 0 ? Buffer.concat([tail, chunk]) : chunk
      for (let i = buf.indexOf(marker); i !== -1; i = buf.indexOf(marker, i + marker.length)) c.requests++
      tail = Buffer.from(buf.subarray(Math.max(0, buf.length - (marker.length - 1))))
    })
    up.on('data', (chunk: Buffer) => {
      c.down += chunk.length
    })
    down.pipe(up)
    up.pipe(down)
    const end = () => {
      down.destroy()
      up.destroy()
      sockets.delete(down)
      sockets.delete(up)
    }
    down.on('error', end).on('close', end)
    up.on('error', end).on('close', end)
  })
  await new Promise<void>((res, rej) => {
    server.once('error', rej)
    server.listen(0, '127.0.0.1', () => res())
  })
  const port = (server.address() as { port: number }).port
  const close = () =>
    new Promise<void>((res) => {
      for (const s of sockets) s.destroy()
      sockets.clear()
      server.close(() => res())
    })
  closers.add(close)
  return {
    url: `http://127.0.0.1:${port}`,
    count: () => ({ ...c }),
    close: async () => {
      closers.delete(close)
      await close()
    },
  }
}

/** bytes and requests between two snapshots */
export function wireDelta(a: WireCount, b: WireCount): WireCount {
  return { up: b.up - a.up, down: b.down - a.down, requests: b.requests - a.requests, connections: b.connections - a.connections }
}

// ---- memory ----

type StatusField = 'VmRSS' | 'VmHWM' | 'RssAnon' | 'RssFile'

/** Some kB fields of /proc/<pid>/status, read once; empty when the process is gone. */
export function procStatusKb(pid: number): Partial<Record<StatusField, number>> {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return {}
  }
  const out: Partial<Record<StatusField, number>> = {}
  for (const m of text.matchAll(/^(VmRSS|VmHWM|RssAnon|RssFile):\s+(\d+) kB/gm)) out[m[1] as StatusField] = Number(m[2])
  return out
}

/** Samples VmRSS of some pids every `everyMs`; `stop()` returns the peaks (MB), VmHWM included where readable. */
export function sampleRss(pids: number[], everyMs = 100): { stop(): Record<number, { peakRssMb: number; hwmMb: number | undefined; peakAnonMb: number; fileMbAtPeak: number }> } {
  // VmRSS = RssAnon (heap, malloc: what the process holds) + RssFile (mapped
  // files: LevelDB reads its tables through mmap, pages the kernel may drop) + RssShmem.
  const peak = new Map<number, { rss: number; anon: number; file: number }>(pids.map((p) => [p, { rss: 0, anon: 0, file: 0 }]))
  const tick = () => {
    for (const p of pids) {
      const st = procStatusKb(p)
      const kb = st.VmRSS
      const anon = st.RssAnon ?? 0
      const e = peak.get(p)!
      if (kb !== undefined && kb > e.rss) {
        e.rss = kb
        e.file = st.RssFile ?? 0
      }
      if (anon > e.anon) e.anon = anon
    }
  }
  tick()
  const timer = setInterval(tick, everyMs)
  timer.unref()
  return {
    stop() {
      tick()
      clearInterval(timer)
      const out: Record<number, { peakRssMb: number; hwmMb: number | undefined; peakAnonMb: number; fileMbAtPeak: number }> = {}
      for (const p of pids) {
        const hwm = procStatusKb(p).VmHWM
        const e = peak.get(p)!
        out[p] = { peakRssMb: round(e.rss / 1024, 1), hwmMb: hwm === undefined ? undefined : round(hwm / 1024, 1), peakAnonMb: round(e.anon / 1024, 1), fileMbAtPeak: round(e.file / 1024, 1) }
      }
      return out
    },
  }
}

/** A daemon's memory as it reports it on /metrics (prom-client's process metrics), MB. */
export async function memoryOf(d: Daemon): Promise<{ rss: number; heapTotal: number; heapUsed: number; external: number }> {
  const res = await request(`${d.url}/metrics`, { headersTimeout: 10_000, bodyTimeout: 10_000 })
  const text = await res.body.text()
  const mb = (name: string) => round(Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? NaN) / 1048576, 1)
  return { rss: mb('process_resident_memory_bytes'), heapTotal: mb('nodejs_heap_size_total_bytes'), heapUsed: mb('nodejs_heap_size_used_bytes'), external: mb('nodejs_external_memory_bytes') }
}


// ---- CPU time per thread (Linux /proc; clock ticks of 10 ms) ----

const TICK_MS = 10

/** CPU ms used so far by each thread of a process, by thread id. */
type ThreadCpu = Map<string, { comm: string; ms: number }>

/** CPU ms per thread of a process, by thread id; comm is main for the main thread, else the thread's name (node for all of them on Node 20). */
export function threadCpu(pid: number): ThreadCpu {
  const out: ThreadCpu = new Map()
  let tids: string[]
  try {
    tids = readdirSync(`/proc/${pid}/task`)
  } catch {
    return out
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      const close = stat.lastIndexOf(')')
      const comm = stat.slice(stat.indexOf('(') + 1, close)
      const f = stat.slice(close + 2).split(' ') // f[0] is field 3 (state); utime is field 14, stime 15
      out.set(tid, { comm: tid === String(pid) ? 'main' : comm, ms: (Number(f[11]) + Number(f[12])) * TICK_MS })
    } catch {
      /* thread ended */
    }
  }
  return out
}

/**
 * Waits until the processes together use less than `idleCores` of CPU over
 * `windowMs` (LevelDB compaction after a bulk write can run for seconds), at
 * most `maxMs`. Returns the ms waited and whether they went quiet.
 */
export async function settle(pids: number[], opts: { windowMs?: number; idleCores?: number; maxMs?: number } = {}): Promise<{ ms: number; quiet: boolean }> {
  const { windowMs = 500, idleCores = 0.05, maxMs = 60_000 } = opts
  const total = () => pids.reduce((sum, pid) => sum + [...threadCpu(pid).values()].reduce((x, t) => x + t.ms, 0), 0)
  const t0 = performance.now()
  while (performance.now() - t0 < maxMs) {
    const c0 = total()
    await new Promise((r) => setTimeout(r, windowMs))
    if ((total() - c0) / windowMs < idleCores) return { ms: round(performance.now() - t0), quiet: true }
  }
  return { ms: round(performance.now() - t0), quiet: false }
}

/** CPU ms each thread used between two threadCpu snapshots (threads that used none left out). */
function usedBetween(before: ThreadCpu, after: ThreadCpu): { tid: string; comm: string; ms: number }[] {
  const out: { tid: string; comm: string; ms: number }[] = []
  for (const [tid, a] of after) {
    const ms = a.ms - (before.get(tid)?.ms ?? 0)
    if (ms > 0) out.push({ tid, comm: a.comm, ms })
  }
  return out
}

/** CPU ms per thread between two snapshots, largest first: `["tid name", ms]` (the main thread is named main). */
export function threadDeltas(before: ThreadCpu, after: ThreadCpu): [string, number][] {
  return usedBetween(before, after)
    .map(({ tid, comm, ms }): [string, number] => [`${tid} ${comm}`, ms])
    .sort((x, y) => y[1] - x[1])
}

/**
 * CPU ms used between two threadCpu snapshots, by thread kind: main (the JS
 * thread), pool (libuv workers: async crypto.verify, LevelDB reads and
 * writes), v8 (GC and compiler helpers), other (LevelDB's compaction thread…).
 * Node 20 leaves its libuv and V8 threads unnamed ("node"): there they all
 * count as other.
 */
export function cpuDelta(before: ThreadCpu, after: ThreadCpu): Record<string, number> {
  const byKind: Record<string, number> = {}
  for (const { comm, ms } of usedBetween(before, after)) {
    const kind = comm === 'main' ? 'main' : /libuv/.test(comm) ? 'pool' : /V8|DefaultWork/i.test(comm) ? 'v8' : 'other'
    byKind[kind] = (byKind[kind] ?? 0) + ms
  }
  return byKind
}

/**
 * How many cores this process can get right now: two threads spin for `ms`
 * and their CPU time is divided by the wall time (2.0 = both cores free;
 * less means other work on the machine takes its share). Context for noisy figures.
 */
export async function coresAvailable(ms = 500): Promise<number> {
  const { Worker } = await import('node:worker_threads')
  const code = `const { parentPort } = require('node:worker_threads')
    const t = Date.now(); let x = 0; while (Date.now() - t < ${ms}) { for (let i = 0; i < 1e4; i++) x += Math.sqrt(i) }
    parentPort.postMessage(x)`
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  await Promise.all(
    [0, 1].map(
      () =>
        new Promise<void>((res, rej) => {
          const w = new Worker(code, { eval: true })
          w.once('message', () => void w.terminate().then(() => res()))
          w.once('error', rej)
        }),
    ),
  )
  const c = process.cpuUsage(c0)
  return round((c.user + c.system) / 1000 / (performance.now() - t0), 2)
}

/**
 * The machine a run measured: the same code gives other figures on another
 * kind of CPU (OpenSSL's ed25519 is ~35% faster on the AMD EPYC this
 * project has run on than on the Intel Xeon), so every run names it.
 */
export function machine(): { cpu: string; cores: number; memGiB: number; node: string; openssl: string } {
  const cs = cpus()
  return { cpu: cs[0]?.model.trim() ?? 'unknown', cores: cs.length, memGiB: round(totalmem() / 2 ** 30, 1), node: process.versions.node, openssl: process.versions.openssl }
}

// ---- output ----

export function round(x: number, digits = 0): number {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

export function fmt(x: number, digits = 0): string {
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** A two- or three-column table: label, figure, note. */
export function table(title: string, rows: [string, string, string?][]): string {
  const w0 = Math.max(...rows.map((r) => r[0].length))
  const w1 = Math.max(...rows.map((r) => r[1].length))
  const lines = [title, '-'.repeat(Math.min(100, title.length))]
  for (const [a, b, c] of rows) lines.push(`${a.padEnd(w0)}  ${b.padStart(w1)}${c ? `  ${c}` : ''}`)
  return lines.join('\n') + '\n'
}

export { sleep }

/** Deterministic PRNG (mulberry32), so every run seeds the same shape of data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
