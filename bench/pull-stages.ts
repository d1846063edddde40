// Question: where does the time of a pull go, stage by stage?
//
// A runs as a `dipd serve` child (seeded like bench/pull.ts). This process
// plays B with its own LevelDB store and does the steps of src/sync/pull.ts
// one at a time (no overlap), with a clock and a CPU meter around each:
//   list request | list parse (parseXml + readListAnswer) | wanted |
//   get request (A builds the answer, loopback) | get parseXml |
//   stageModel | verify (verifySignatures, all in flight) | commit (store.commit)
// GC pauses (PerformanceObserver 'gc') are charged to the stage they fall in.
// Baseline: the sum of the stages is the serial pull; bench/pull.ts gives
// the real, overlapped pull. Then the real pull() of src/sync/pull.ts runs
// in this process for a few batch sizes and concurrencies (--grid), to show
// what the pipeline's knobs are worth without touching src/.
//
// Last, the same pull() against stores opened with other LevelDB options
// (--store-variants): what write buffer size and compression cost.
//
// Options: --n N (default 20000)  --batch B (500)  --grid "500x4,1000x2,…"  --no-grid  --no-store-variants
import { PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks'
import { join } from 'node:path'
import { request } from 'undici'
import { XMLParser, XMLValidator } from 'fast-xml-parser'
import { defaultRegistry } from '../src/daemon.js'
import { DEFAULT_LIMITS, getRequestXml, listRequestXml, readGetAnswer, readListAnswer, readResponseHead } from '../src/protocol/envelope.js'
import { parseXml } from '../src/protocol/xml.js'
import { canonicalize } from '../src/protocol/canonical.js'
import { firstChild } from '../src/protocol/xml.js'
import { stageModel, verifySignatures, type StagedModel } from '../src/model/signed.js'
import { GraphStore } from '../src/store/graph-store.js'
import { FileModelLog } from '../src/store/model-log.js'
import { Ingest } from '../src/store/ingest.js'
import { pull } from '../src/sync/pull.js'
import { Level } from 'level'
import { seed } from './pull.js'
import { argFlag, argInt, argValue, cleanup, fmt, installExitHandlers, round, startDaemonChild, stopChild, table, tempDir, type Bench } from './lib.js'

type StageName =
  | 'list request (A lists, loopback)'
  | 'list parseXml + readListAnswer'
  | 'wanted (store.wanted)'
  | 'get request (A answers, loopback)'
  | 'get parseXml'
  | 'stageModel'
  | 'verify (verifySignatures)'
  | 'commit (store.commit)'

const ORDER: StageName[] = [
  'list request (A lists, loopback)',
  'list parseXml + readListAnswer',
  'wanted (store.wanted)',
  'get request (A answers, loopback)',
  'get parseXml',
  'stageModel',
  'verify (verifySignatures)',
  'commit (store.commit)',
]

interface Meter {
  wallMs: number
  cpuMs: number
  gcMs: number
}

class Stages {
  readonly m = new Map<StageName, Meter>(ORDER.map((n) => [n, { wallMs: 0, cpuMs: 0, gcMs: 0 }]))
  readonly spans: { name: StageName; start: number; end: number }[] = []

  async time<T>(name: StageName, fn: () => Promise<T> | T): Promise<T> {
    const c0 = process.cpuUsage()
    const t0 = performance.now()
    const v = await fn()
    const t1 = performance.now()
    const c = process.cpuUsage(c0)
    const meter = this.m.get(name)!
    meter.wallMs += t1 - t0
    meter.cpuMs += (c.user + c.system) / 1000
    this.spans.push({ name, start: t0, end: t1 })
    return v
  }

  chargeGc(entries: PerformanceEntry[]): number {
    let unassigned = 0
    for (const e of entries) {
      const span = this.spans.find((s) => e.startTime >= s.start && e.startTime < s.end)
      if (span) this.m.get(span.name)!.gcMs += e.duration
      else unassigned += e.duration
    }
    return unassigned
  }
}

async function fetchXml(base: string, type: 'list' | 'get', xml: string): Promise<Buffer> {
  const res = await request(`${base}/api/sync/${type}/`, {
    method: 'POST',
    body: xml,
    headers: { 'content-type': 'application/xml; charset=utf-8' },
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  })
  const body = Buffer.from(await res.body.arrayBuffer())
  if (res.statusCode !== 200) throw new Error(`${type}: HTTP ${res.statusCode}`)
  return body
}

/** The steps of src/sync/pull.ts, serial, each timed. */
async function serialPull(from: string, dataDir: string, n: number, batchSize: number) {
  const registry = defaultRegistry()
  const limits = DEFAULT_LIMITS
  const store = await GraphStore.openLevel(join(dataDir, 'store'))
  const gc: PerformanceEntry[] = []
  const obs = new PerformanceObserver((list) => gc.push(...list.getEntries()))
  obs.observe({ entryTypes: ['gc'] })
  const st = new Stages()
  const model = { name: 'post', version: '1.1' }
  let stored = 0
  let canonMs = 0
  let getBytes = 0
  let listBytes = 0
  let sampleGet: Buffer | undefined
  let sampleList: Buffer | undefined
  let readListMs = 0
  const t0 = performance.now()
  try {
    let after: string | undefined
    for (let page = 0; page < 100_000; page++) {
      const body = await st.time('list request (A lists, loopback)', () => fetchXml(from, 'list', listRequestXml(model, '', after)))
      listBytes += body.length
      sampleList ??= body
      const ans = await st.time('list parseXml + readListAnswer', () => {
        const root = parseXml(body)
        if (!root.ok) throw root.error
        const head = readResponseHead(root.value)
        if (!head.ok || head.value.status !== 'success') throw new Error('list: not a success')
        const r0 = performance.now()
        const a = readListAnswer(root.value)
        readListMs += performance.now() - r0
        if (!a.ok) throw a.error
        return a.value
      })
      const wanted = await st.time('wanted (store.wanted)', () => store.wanted(ans.rows.map((r) => ({ id: r.id, hash: r.hash, timeKey: r.updateTimeKey }))))
      const want = new Set(wanted.map((w) => w.hash))
      const todo = ans.rows.filter((r) => want.has(r.hash))
      for (let i = 0; i < todo.length; i += batchSize) {
        const ids = todo.slice(i, i + batchSize).map((r) => r.id)
        const bytes = await st.time('get request (A answers, loopback)', () => fetchXml(from, 'get', getRequestXml(model, ids)))
        getBytes += bytes.length
        sampleGet ??= bytes
        const els = await st.time('get parseXml', () => {
          const root = parseXml(bytes)
          if (!root.ok) throw root.error
          const m = readGetAnswer(root.value)
          if (!m.ok) throw m.error
          return m.value
        })
        {
          const c0 = performance.now()
          for (const el of els) canonicalize(firstChild(el, 'content')!)
          canonMs += performance.now() - c0
        }
        const staged = await st.time('stageModel', () =>
          els.map((el) => {
            const s = stageModel(el, registry, limits)
            if (!s.ok) throw new Error(`stageModel: ${s.rejection.code}`)
            return s.value
          }),
        )
        await st.time('verify (verifySignatures)', async () => {
          const r = await Promise.all(staged.map((m: StagedModel) => verifySignatures(m)))
          if (r.some((x) => x !== undefined)) throw new Error('verify: a signature failed')
        })
        const statuses = await st.time('commit (store.commit)', () => store.commit(staged))
        stored += statuses.filter((s) => s === 'stored').length
      }
      after = ans.next
      if (!ans.more) break
    }
  } finally {
    await new Promise((r) => setTimeout(r, 50)) // let the last gc entries arrive
    obs.disconnect()
    await store.close()
  }
  const wallMs = performance.now() - t0
  const unassignedGc = st.chargeGc(gc)
  const layout = await storeLayout(join(dataDir, 'store'))
  if (stored !== n) throw new Error(`serial pull stored ${stored} of ${n}`)
  return { st, wallMs, unassignedGc, canonMs, getBytes, listBytes, readListMs, sampleGet: sampleGet!, sampleList: sampleList!, layout, gcTotal: gc.reduce((x, e) => x + e.duration, 0) }
}

// fast-xml-parser as dipd once used it (validator + ordered parser), the baseline for dipd's one-pass parser.
const fxp = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  allowBooleanAttributes: false,
  trimValues: false,
  parseTagValue: false,
  parseAttributeValue: false,
  processEntities: false,
  htmlEntities: false,
  cdataPropName: '#cdata',
  commentPropName: '#comment',
  ignoreDeclaration: true,
  ignorePiTags: true,
  removeNSPrefix: false,
  maxNestedTags: 64,
})

/** parseXml of one answer, taken apart: µs per model (or row) for each step, best of `reps`. */
function parseBreakdown(body: Buffer, items: number, reps: number): [string, number][] {
  const best = (fn: () => unknown) => {
    let min = Infinity
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now()
      fn()
      min = Math.min(min, performance.now() - t0)
    }
    return (1000 * min) / items
  }
  const text = new TextDecoder('utf-8', { fatal: true }).decode(body)
  const decode = best(() => new TextDecoder('utf-8', { fatal: true }).decode(body))
  const validate = best(() => XMLValidator.validate(text, { allowBooleanAttributes: false }))
  const parse = best(() => fxp.parse(text))
  const whole = best(() => parseXml(body))
  return [
    ['TextDecoder (fatal)', decode],
    ['parseXml (dipd, one strict pass, tree built)', whole],
    ['baseline: fast-xml-parser XMLValidator.validate', validate],
    ['baseline: fast-xml-parser XMLParser.parse (tree not yet converted)', parse],
  ]
}

async function storeLayout(dir: string): Promise<Map<string, { entries: number; bytes: number }>> {
  const db = new Level<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' })
  await db.open()
  const out = new Map<string, { entries: number; bytes: number }>()
  try {
    for await (const [k, v] of db.iterator()) {
      const bang = k.indexOf('!')
      const p = bang === -1 ? k : k.slice(0, bang + 1)
      const e = out.get(p) ?? { entries: 0, bytes: 0 }
      e.entries++
      e.bytes += Buffer.byteLength(k) + Buffer.byteLength(v)
      out.set(p, e)
    }
  } finally {
    await db.close()
  }
  return out
}

function parseGrid(text: string): { batchSize: number; concurrency: number }[] {
  return text.split(',').map((p) => {
    const m = /^(\d+)x(\d+)$/.exec(p.trim())
    if (!m) throw new TypeError(`--grid wants BATCHxCONCURRENCY,… (e.g. 500x4), got ${p}`)
    return { batchSize: Number(m[1]), concurrency: Number(m[2]) }
  })
}

/**
 * The serial pull against a running A that holds `n` posts, into a fresh
 * store in this process: the stage table, B's store layout and parseXml
 * taken apart are printed; the figures are returned. bench/pull.ts calls it
 * with --stages.
 */
export async function serialStages(from: string, n: number, batchSize: number, out: (s: string) => void): Promise<Record<string, unknown>> {
  out(`stages: serial pull in this process (batches of ${batchSize})…\n`)
  const r = await serialPull(from, await tempDir('b-serial'), n, batchSize)
  const per = (ms: number) => `${fmt((1000 * ms) / n, 1)} µs/post`
  const rows: [string, string, string][] = ORDER.map((name) => {
    const m = r.st.m.get(name)!
    return [name, `${fmt(m.wallMs)} ms`, `${per(m.wallMs)}  cpu ${fmt(m.cpuMs)} ms (all threads)  gc ${fmt(m.gcMs)} ms  ${fmt((100 * m.wallMs) / r.wallMs, 1)}%`]
  })
  const sum = [...r.st.m.values()].reduce((x, m) => x + m.wallMs, 0)
  rows.push(['sum of stages', `${fmt(sum)} ms`, per(sum)])
  rows.push(['serial pull wall', `${fmt(r.wallMs)} ms`, `${fmt(n / (r.wallMs / 1000))} posts/s serial; gc ${fmt(r.gcTotal)} ms in all (${fmt(r.unassignedGc)} between stages)`])
  rows.push(['  of list parse: readListAnswer', `${fmt(r.readListMs)} ms`, `${per(r.readListMs)} (inside the list stage)`])
  rows.push(['  of stageModel: canonicalize', `${fmt(r.canonMs)} ms`, `${per(r.canonMs)} (measured apart, not in the sums)`])
  rows.push(['bytes: list / get answers', `${fmt(r.listBytes / 1e6, 1)} / ${fmt(r.getBytes / 1e6, 1)} MB`, ''])
  out('\n' + table(`stages: one pull of ${fmt(n)} posts, one step at a time (B in this process)`, rows))

  const layoutRows: [string, string, string][] = [...r.layout.entries()]
    .sort((x, y) => y[1].bytes - x[1].bytes)
    .map(([p, e]) => [p, `${fmt(e.bytes / n)} B/post`, `${fmt(e.entries / n, 2)} entries/post, ${fmt(e.bytes / 1e6, 1)} MB`])
  const totalBytes = [...r.layout.values()].reduce((x, e) => x + e.bytes, 0)
  const totalEntries = [...r.layout.values()].reduce((x, e) => x + e.entries, 0)
  layoutRows.push(['all', `${fmt(totalBytes / n)} B/post`, `${fmt(totalEntries / n, 2)} entries/post, ${fmt(totalBytes / 1e6, 1)} MB (model XML alone is M!)`])
  out('\n' + table("stages: what B's store holds after the pull, by key prefix (keys + values, before compression)", layoutRows))

  const getItems = (r.sampleGet.toString('utf8').match(/<model /g) ?? []).length
  const listItems = (r.sampleList.toString('utf8').match(/<model /g) ?? []).length
  const pg = parseBreakdown(r.sampleGet, getItems, 7)
  const pl = parseBreakdown(r.sampleList, listItems, 7)
  out(
    '\n' +
      table(
        `stages: parseXml taken apart, best of 7 (one get answer of ${getItems} models, ${fmt(r.sampleGet.length / 1e3)} KB; one list page of ${listItems} rows, ${fmt(r.sampleList.length / 1e3)} KB)`,
        pg.map(([name, us], i) => [name, `${fmt(us, 1)} µs/model`, `list: ${fmt(pl[i]![1], 1)} µs/row`]),
      ),
  )

  return {
    batch: batchSize,
    serial_wall_ms: round(r.wallMs),
    serial_posts_per_s: round(n / (r.wallMs / 1000)),
    gc_ms: round(r.gcTotal),
    canonicalize_ms: round(r.canonMs),
    stages_us_per_post: Object.fromEntries(ORDER.map((name) => [name, round((1000 * r.st.m.get(name)!.wallMs) / n, 1)])),
    stages_cpu_ms: Object.fromEntries(ORDER.map((name) => [name, round(r.st.m.get(name)!.cpuMs)])),
    stages_gc_ms: Object.fromEntries(ORDER.map((name) => [name, round(r.st.m.get(name)!.gcMs)])),
    parse_get_us_per_model: Object.fromEntries(pg.map(([k, v]) => [k, round(v, 1)])),
    parse_list_us_per_row: Object.fromEntries(pl.map(([k, v]) => [k, round(v, 1)])),
    read_list_answer_ms: round(r.readListMs),
    store_bytes_per_post: Object.fromEntries([...r.layout.entries()].map(([p, e]) => [p, round(e.bytes / n)])),
  }
}

export async function runStages(args: string[]): Promise<Record<string, unknown>> {
  const n = argInt(args, 'n', 20000, 1, 10_000_000)
  const batchSize = argInt(args, 'batch', 500, 1, 1000)
  const grid = argFlag(args, 'no-grid') ? [] : parseGrid(argValue(args, 'grid') ?? '500x4,1000x2,250x4,500x8,1000x4')
  installExitHandlers()
  const out = (s: string) => process.stdout.write(s)
  try {
    const dirA = await tempDir('a')
    out(`stages: seeding A with ${fmt(n)} posts…\n`)
    await seed(dirA, n)
    const a = await startDaemonChild(dirA)

    const serial = await serialStages(a.url, n, batchSize, out)

    const gridOut: Record<string, number> = {}
    if (grid.length > 0) {
      const gridRows: [string, string, string][] = []
      for (const g of grid) {
        const dir = await tempDir('b-grid')
        const store = await GraphStore.openLevel(join(dir, 'store'))
        try {
          const deps = { store, ingest: new Ingest(store), registry: defaultRegistry(), limits: DEFAULT_LIMITS }
          const t0 = performance.now()
          const s = await pull(deps, { from: a.url, batchSize: g.batchSize, concurrency: g.concurrency })
          const ms = performance.now() - t0
          if (s.stored !== n) throw new Error(`grid ${g.batchSize}x${g.concurrency}: stored ${s.stored} of ${n}`)
          gridOut[`${g.batchSize}x${g.concurrency}`] = round(n / (ms / 1000))
          gridRows.push([`batch ${g.batchSize} x ${g.concurrency} in flight`, `${fmt(n / (ms / 1000))} posts/s`, `${fmt(ms / 1000, 2)} s`])
        } finally {
          await store.close()
        }
      }
      out('\n' + table(`stages: src/sync/pull.ts pull() in this process, by batch size x concurrency (default 500 x 4)`, gridRows))
    }
    const storeOut: Record<string, { posts_per_s: number; cpu_ms: number }> = {}
    if (!argFlag(args, 'no-store-variants')) {
      const variants: [string, Record<string, unknown>][] = [
        ['default (GraphStore.openLevel options)', {}],
        ['writeBufferSize 64 MB', { writeBufferSize: 64 * 1024 * 1024 }],
        ['compression off', { compression: false }],
        ['writeBufferSize 64 MB + compression off', { writeBufferSize: 64 * 1024 * 1024, compression: false }],
      ]
      const storeRows: [string, string, string][] = []
      for (const [label, opts] of variants) {
        const dir = await tempDir('b-store')
        const db = new Level<string, string>(join(dir, 'store'), { keyEncoding: 'utf8', valueEncoding: 'utf8', ...opts })
        await db.open(opts as object)
        const store = new GraphStore(db, await FileModelLog.open(join(dir, 'models'))) // a fresh store: its seq starts at 0, its store id is unused on the pulling side
        try {
          const deps = { store, ingest: new Ingest(store), registry: defaultRegistry(), limits: DEFAULT_LIMITS }
          const c0 = process.cpuUsage()
          const t0 = performance.now()
          const s = await pull(deps, { from: a.url })
          const ms = performance.now() - t0
          const c = process.cpuUsage(c0)
          if (s.stored !== n) throw new Error(`store variant ${label}: stored ${s.stored} of ${n}`)
          const cpuMs = (c.user + c.system) / 1000
          storeOut[label] = { posts_per_s: round(n / (ms / 1000)), cpu_ms: round(cpuMs) }
          storeRows.push([label, `${fmt(n / (ms / 1000))} posts/s`, `CPU of this process during the pull ${fmt(cpuMs)} ms = ${fmt((1000 * cpuMs) / n)} µs/post`])
        } finally {
          await store.close()
        }
      }
      out('\n' + table('stages: pull() into stores with other LevelDB options (B in this process; batch 500 x 4)', storeRows))
    }
    await stopChild(a.child)

    const figures = {
      bench: 'pull-stages',
      n,
      ...serial,
      grid_posts_per_s: gridOut,
      store_variants: storeOut,
    }
    out('BENCH_JSON ' + JSON.stringify(figures) + '\n')
    return figures
  } finally {
    await cleanup()
  }
}

export const pullStagesBench: Bench = {
  name: 'pull-stages',
  question: 'where does the time of a pull go, stage by stage (and what are batch size and concurrency worth)?',
  run: runStages,
}
