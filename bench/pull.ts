// Question: how fast does B pull N signed ~1 KB posts from A over loopback,
// against the verify-only ceiling of this machine?
//
// Setup (not timed): A's store is seeded in this process through openNode +
// authorModel + ingest.accept (batches of 1,000), by A's key and three more.
// A fifth of the posts are replies, a tenth reference another post.
// Baselines (this process, before the daemons start, so nothing competes):
//   verify async   N signatures via verifyAsync, 256 in flight (thread pool, every core)
//   verify sync    the same with the synchronous verify (one core)
//   parse+stage    parseXml + readGetAnswer + stageModel of a 1,000-model get answer
// Figure: A and B run as `dipd serve` child processes; B's local API is asked
// to pull everything from A; time from request to the summary line. Peak RSS
// of both is sampled from /proc every 100 ms (and VmHWM at the end); CPU time
// of every thread of A and B over the pull comes from /proc/<pid>/task, so
// "CPU per post" (A+B) bounds the rate on 2 cores however well work overlaps.
// The machine is shared: a 2-thread probe before and after says how many
// cores were free, so noisy figures can be read for what they are.
// Correctness: B's summary must say stored == N, nothing rejected or missing,
// and B's local list must hold N rows; otherwise the bench fails.
//
// Options: --n N (default 20000)  --concurrency-verify K (256)
//          --cpu-prof DIR  (children run with --cpu-prof; a summary of B's
//                           main-thread profile is printed, profiles kept in DIR)
//          --node-args-b "…"  extra node flags for B (e.g. "--max-semi-space-size=64")
import { mkdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { request } from 'undici'
import { defaultRegistry, openNode } from '../src/daemon.js'
import { authorModel, stageModel, type StagedModel } from '../src/model/signed.js'
import { postModel, type PostFields } from '../src/model/post/post.js'
import { generateKeyPair, sign, verify, verifyAsync, type NodeKeyPair } from '../src/crypto/ed25519.js'
import { parseXml } from '../src/protocol/xml.js'
import { DEFAULT_LIMITS, readGetAnswer } from '../src/protocol/envelope.js'
import type { GlobalId } from '../src/protocol/id.js'
import type { PullSummary } from '../src/sync/pull.js'
import { summariseProfiles } from './cpuprofile.js'
import { argInt, argValue, cleanup, coresAvailable, cpuDelta, threadCpu, threadDeltas, fmt, installExitHandlers, round, sampleRss, startDaemonChild, stopChild, table, tempDir, type Bench } from './lib.js'

const TARGET_POSTS_PER_S = 4000

const WORDS = (
  'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua ' +
  'replication daemon signed post thread reply graph store verify canonical content signature peer node list get put cursor ' +
  'café naïve'
).split(' ')
const TAGS = ['news', 'tech', 'music', 'books', 'films', 'games', 'travel', 'food', 'science', 'art', 'dip', 'meta']

/** Deterministic PRNG (mulberry32), so every run seeds the same shape of data. */
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function makeText(rand: () => number, chars: number): string {
  let s = ''
  while (s.length < chars) {
    s += WORDS[Math.floor(rand() * WORDS.length)]!
    s += rand() < 0.08 ? '.\n' : rand() < 0.05 ? ' & ' : ' '
  }
  return s.slice(0, chars)
}

export interface Sample {
  key: string
  content: Buffer
  sig: Buffer
}

export interface Seeded {
  samples: Sample[]
  /** served XML of the first (up to) 1,000 models, for the parse baseline */
  xml: string[]
  avgContentBytes: number
  avgModelBytes: number
  seedMs: number
}

/** Seeds A's store directly (no HTTP): N posts in batches of 1,000. */
export async function seed(dataDir: string, n: number): Promise<Seeded> {
  const t0 = performance.now()
  const node = await openNode({ dataDir })
  try {
    const { registry, limits, ingest } = node.deps
    const pairs: NodeKeyPair[] = [node.deps.identity.current, generateKeyPair(), generateKeyPair(), generateKeyPair()]
    const rand = rng(42)
    const openings: GlobalId[] = []
    const all: GlobalId[] = []
    const samples: Sample[] = []
    const xml: string[] = []
    let contentBytes = 0
    let modelBytes = 0
    let batch: StagedModel[] = []
    const base = Date.parse('2024-01-01T00:00:00Z')
    const flush = async () => {
      const results = await ingest.accept(batch)
      const bad = results.filter((r) => r.status !== 'stored')
      if (bad.length > 0) throw new Error(`seeding: ${bad.length} of ${batch.length} not stored, first: ${JSON.stringify(bad[0]!.status === 'rejected' ? bad[0]!.code : bad[0]!.status)}`)
      batch = []
    }
    for (let i = 0; i < n; i++) {
      const pair = pairs[i % pairs.length]!
      const id: GlobalId = { type: 'ed25519', key: pair.publicKeyHex, localId: String(i + 1) }
      const reply = openings.length > 0 && rand() < 0.2
      const thread = reply ? openings[openings.length - 1 - Math.floor(rand() * Math.min(200, openings.length))] : undefined
      let text = makeText(rand, 900)
      if (all.length > 0 && rand() < 0.1) {
        const target = all[Math.floor(rand() * all.length)]!
        text = text.slice(0, 780) + ` see [post]${target.type}::${target.key}::${target.localId}[/post]`
      }
      const tags = reply ? [] : [...new Set([TAGS[Math.floor(rand() * TAGS.length)]!, TAGS[Math.floor(rand() * TAGS.length)]!])]
      const time = new Date(base + i * 1000).toISOString()
      const fields: PostFields = { id, title: `Post ${i + 1}: ${makeText(rand, 40).trim()}`, text, tags, thread, pubTime: time, updateTime: time }
      const staged = authorModel(postModel, fields, pair, registry, limits)
      if (!staged.ok) throw new Error(`seeding: authorModel failed: ${staged.error.code} ${staged.error.message}`)
      const m = staged.value
      samples.push({ key: m.signatures[0]!.key, content: m.contentBytes, sig: Buffer.from(m.signatures[0]!.value, 'hex') })
      if (xml.length < 1000) xml.push(m.xml)
      contentBytes += m.contentBytes.length
      modelBytes += Buffer.byteLength(m.xml)
      if (!reply) openings.push(id)
      all.push(id)
      batch.push(m)
      if (batch.length === 1000) await flush()
    }
    if (batch.length > 0) await flush()
    return { samples, xml, avgContentBytes: contentBytes / n, avgModelBytes: modelBytes / n, seedMs: performance.now() - t0 }
  } finally {
    await node.close()
  }
}

// ---- baselines ----

async function verifyAsyncRate(samples: Sample[], inFlight: number): Promise<number> {
  let next = 0
  const t0 = performance.now()
  const worker = async () => {
    while (next < samples.length) {
      const s = samples[next++]!
      if (!(await verifyAsync(s.key, s.content, s.sig))) throw new Error('baseline: a seeded signature does not verify')
    }
  }
  await Promise.all(Array.from({ length: Math.min(inFlight, samples.length) }, worker))
  return samples.length / ((performance.now() - t0) / 1000)
}

function verifySyncRate(samples: Sample[]): number {
  const t0 = performance.now()
  for (const s of samples) if (!verify(s.key, s.content, s.sig)) throw new Error('baseline: a seeded signature does not verify')
  return samples.length / ((performance.now() - t0) / 1000)
}

/** parseXml of a whole get answer, then stageModel of each model: models/s, and the two parts apart. */
function parseRate(xml: string[], registry: Parameters<typeof stageModel>[1], reps: number): { all: number; parse: number; stage: number; answerBytes: number } {
  const answer = Buffer.from(`<response><status>success</status><models>${xml.join('')}</models></response>`, 'utf8')
  let parseMs = 0
  let stageMs = 0
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now()
    const root = parseXml(answer)
    if (!root.ok) throw root.error
    const models = readGetAnswer(root.value)
    if (!models.ok) throw models.error
    const t1 = performance.now()
    for (const el of models.value) {
      const s = stageModel(el, registry, DEFAULT_LIMITS)
      if (!s.ok) throw new Error(`baseline: stageModel rejected ${s.rejection.code}`)
    }
    parseMs += t1 - t0
    stageMs += performance.now() - t1
  }
  const models = xml.length * reps
  return { all: models / ((parseMs + stageMs) / 1000), parse: models / (parseMs / 1000), stage: models / (stageMs / 1000), answerBytes: answer.length }
}

/** Signing one get answer as the server does (ed25519 over "dip-response:" + body): µs per model. */
function signRate(xml: string[], reps: number): { usPerModel: number; msPerAnswer: number; models: number; answerBytes: number } {
  const models = Math.min(500, xml.length) // the puller's default batch
  const body = Buffer.from(`<response><status>success</status><models>${xml.slice(0, models).join('')}</models></response>`, 'utf8')
  const pair = generateKeyPair()
  const prefix = Buffer.from('dip-response:')
  let best = Infinity
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now()
    sign(pair, Buffer.concat([prefix, body]))
    best = Math.min(best, performance.now() - t0)
  }
  return { usPerModel: (1000 * best) / models, msPerAnswer: best, models, answerBytes: body.length }
}

// ---- the pull ----

interface PullRun {
  wallMs: number
  summary: PullSummary
  progressLines: number
}

async function pullOverLocalApi(b: { url: string; token: string }, from: string, n: number): Promise<PullRun> {
  const timeoutMs = Math.max(120_000, n * 20)
  const t0 = performance.now()
  const res = await request(`${b.url}/api/local/pull`, {
    method: 'POST',
    headers: { authorization: `Bearer ${b.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ from, filter: {} }),
    headersTimeout: timeoutMs,
    bodyTimeout: 60_000,
    signal: AbortSignal.timeout(timeoutMs),
  })
  let buf = ''
  let summary: PullSummary | undefined
  let error: unknown
  let progressLines = 0
  const onLine = (line: string) => {
    if (line.trim() === '') return
    const j = JSON.parse(line) as { progress?: unknown; summary?: PullSummary; error?: unknown }
    if (j.summary) summary = j.summary
    else if (j.error) error = j.error
    else progressLines++
  }
  res.body.setEncoding('utf8')
  for await (const chunk of res.body) {
    buf += chunk as string
    let nl: number
    while ((nl = buf.indexOf('\n')) !== -1) {
      onLine(buf.slice(0, nl))
      buf = buf.slice(nl + 1)
    }
  }
  onLine(buf)
  const wallMs = performance.now() - t0
  if (res.statusCode !== 200) throw new Error(`pull: HTTP ${res.statusCode}`)
  if (error !== undefined) throw new Error(`pull failed: ${JSON.stringify(error)}`)
  if (!summary) throw new Error('pull: the stream ended without a summary line')
  return { wallMs, summary, progressLines }
}

async function countOnB(b: { url: string; token: string }): Promise<number> {
  const res = await request(`${b.url}/api/local/list`, {
    method: 'POST',
    headers: { authorization: `Bearer ${b.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ filter: {} }),
    headersTimeout: 120_000,
    bodyTimeout: 120_000,
  })
  const j = (await res.body.json()) as { rows?: unknown[] }
  if (res.statusCode !== 200 || !Array.isArray(j.rows)) throw new Error(`list on B: HTTP ${res.statusCode}`)
  return j.rows.length
}

export async function runPull(args: string[]): Promise<Record<string, unknown>> {
  const n = argInt(args, 'n', 20000, 1, 10_000_000)
  const inFlight = argInt(args, 'concurrency-verify', 256, 1, 100_000)
  const profDir = argValue(args, 'cpu-prof')
  installExitHandlers()
  const out = (s: string) => process.stdout.write(s)
  try {
    const dirA = await tempDir('a')
    const dirB = await tempDir('b')

    out(`pull: seeding A with ${fmt(n)} posts (4 keys, batches of 1,000)…\n`)
    const seeded = await seed(dirA, n)
    out(`pull: seeded in ${fmt(seeded.seedMs / 1000, 1)} s (${fmt(seeded.avgContentBytes)} B content, ${fmt(seeded.avgModelBytes)} B model XML on average)\n`)

    const coresBefore = await coresAvailable(700)
    out(`pull: cores free for this bench right now: ${coresBefore} of 2\n`)
    out('pull: baselines (verify, parse)…\n')
    const vAsync = await verifyAsyncRate(seeded.samples, inFlight)
    const vSync = verifySyncRate(seeded.samples.slice(0, Math.min(n, 20000)))
    const parse = parseRate(seeded.xml, defaultRegistry(), Math.min(20, Math.max(3, Math.ceil(n / 1000))))
    const signing = signRate(seeded.xml, Math.min(20, Math.max(3, Math.ceil(n / 1000))))
    // CPU the receiving side needs per post if it did only parse+stage (one core) and sync verify:
    // with both cores busy, the best it could do.
    const cpuUsPerPost = 1e6 / parse.all + 1e6 / vSync
    const twoCoreCeiling = 2e6 / cpuUsPerPost

    const extraB = (argValue(args, 'node-args-b') ?? '').split(' ').filter((x) => x !== '')
    const nodeArgs = (who: string) => [...(profDir ? ['--cpu-prof', '--cpu-prof-dir', join(resolve(profDir), who)] : []), ...(who === 'b' ? extraB : [])]
    if (profDir) {
      await mkdir(join(resolve(profDir), 'a'), { recursive: true })
      await mkdir(join(resolve(profDir), 'b'), { recursive: true })
    }
    out('pull: starting A and B (dipd serve, child processes)…\n')
    const [a, b] = await Promise.all([startDaemonChild(dirA, { nodeArgs: nodeArgs('a') }), startDaemonChild(dirB, { nodeArgs: nodeArgs('b') })])
    const rss = sampleRss([a.pid, b.pid], 100)
    const cpu0 = [threadCpu(a.pid), threadCpu(b.pid)] as const
    let run: PullRun
    try {
      out(`pull: B pulls from A (${a.url})…\n`)
      run = await pullOverLocalApi(b, a.url, n)
    } catch (e) {
      process.stderr.write(`A stderr:\n${a.stderr()}\nB stderr:\n${b.stderr()}\n`)
      throw e
    }
    const cpu1 = [threadCpu(a.pid), threadCpu(b.pid)] as const
    const cpuA = cpuDelta(cpu0[0], cpu1[0])
    const cpuB = cpuDelta(cpu0[1], cpu1[1])
    const mem = rss.stop()
    const s = run.summary
    const rejected = Object.values(s.rejected).reduce((x, y) => x + y, 0)
    const held = await countOnB(b)
    await Promise.all([stopChild(a.child), stopChild(b.child)])
    const coresAfter = await coresAvailable(700)

    const postsPerS = n / (run.wallMs / 1000)
    const cpuSum = (c: Record<string, number>) => Object.values(c).reduce((x, y) => x + y, 0)
    const cpuAll = cpuSum(cpuA) + cpuSum(cpuB)
    // Both sides' CPU per post bounds the rate on this 2-core machine, whatever the overlap.
    const cpuBound = (2e6 * n) / (1000 * cpuAll)
    const figures = {
      bench: 'pull',
      n,
      posts_per_s: round(postsPerS),
      total_s: round(run.wallMs / 1000, 3),
      pull_ms_reported_by_b: s.ms,
      bytes_in: s.bytesIn,
      mb_per_s: round(s.bytesIn / 1e6 / (run.wallMs / 1000), 1),
      requests: s.requests,
      rss_a_peak_mb: mem[a.pid]!.peakRssMb,
      rss_b_peak_mb: mem[b.pid]!.peakRssMb,
      hwm_a_mb: mem[a.pid]!.hwmMb,
      hwm_b_mb: mem[b.pid]!.hwmMb,
      verify_async_per_s: round(vAsync),
      verify_sync_per_s: round(vSync),
      sign_us_per_model: round(signing.usPerModel, 2),
      sign_ms_per_answer: round(signing.msPerAnswer, 3),
      parse_stage_models_per_s: round(parse.all),
      parse_only_models_per_s: round(parse.parse),
      stage_only_models_per_s: round(parse.stage),
      two_core_cpu_ceiling_per_s: round(twoCoreCeiling),
      pct_of_verify_ceiling: round((100 * postsPerS) / vAsync, 1),
      avg_content_bytes: round(seeded.avgContentBytes),
      avg_model_bytes: round(seeded.avgModelBytes),
      seed_s: round(seeded.seedMs / 1000, 2),
      target_posts_per_s: TARGET_POSTS_PER_S,
      target_met: postsPerS >= TARGET_POSTS_PER_S,
      node_args_b: extraB,
      cores_free_before: coresBefore,
      cores_free_after: coresAfter,
      correct: s.stored === n && rejected === 0 && held === n && s.missing === 0,
      cpu_us_per_post_a_plus_b: round((1000 * cpuAll) / n),
      cpu_bound_2_cores_posts_per_s: round(cpuBound),
      cpu_ms_a: cpuA,
      cpu_ms_b: cpuB,
      cpu_ms_b_by_thread: threadDeltas(cpu0[1], cpu1[1]),
      cpu_ms_a_by_thread: threadDeltas(cpu0[0], cpu1[0]),
      summary: s,
    }
    const cpuText = (c: Record<string, number>) =>
      ['main', 'pool', 'v8', 'other']
        .filter((k) => c[k])
        .map((k) => `${k} ${fmt(c[k]! / 1000, 2)}`)
        .join(', ')
    const wallS = run.wallMs / 1000

    out(
      '\n' +
        table(`pull: B pulls ${fmt(n)} signed posts (~${fmt(seeded.avgContentBytes)} B content) from A over loopback`, [
          ['pull throughput', `${fmt(postsPerS)} posts/s`, `target ${fmt(TARGET_POSTS_PER_S)}: ${postsPerS >= TARGET_POSTS_PER_S ? 'met' : 'NOT met'}`],
          ['pull total', `${fmt(run.wallMs / 1000, 2)} s`, `B's own figure ${fmt(s.ms / 1000, 2)} s`],
          ['bytes moved (get+list answers)', `${fmt(s.bytesIn / 1e6, 1)} MB`, `${fmt(s.bytesIn / 1e6 / (run.wallMs / 1000), 1)} MB/s, ${s.requests} requests`],
          ['CPU s during pull, B (puller)', `${fmt(cpuSum(cpuB) / 1000, 2)} s`, `${cpuText(cpuB)}; main thread busy ${fmt((100 * (cpuB.main ?? 0)) / run.wallMs)}% of wall`],
          ['CPU s during pull, A (server)', `${fmt(cpuSum(cpuA) / 1000, 2)} s`, `${cpuText(cpuA)}`],
          ['CPU per post, A+B (all threads)', `${fmt((1000 * cpuAll) / n)} µs`, `B ${fmt((1000 * cpuSum(cpuB)) / n)} (main ${fmt((1000 * (cpuB.main ?? 0)) / n)}), A ${fmt((1000 * cpuSum(cpuA)) / n)}: at most ${fmt(cpuBound)} posts/s on 2 free cores`],
          ['cores busy (A+B) during pull', `${fmt((cpuSum(cpuA) + cpuSum(cpuB)) / 1000 / wallS, 2)}`, 'of 2 (other work on the machine not counted)'],
          ['peak RSS A (server)', `${fmt(mem[a.pid]!.peakRssMb)} MB`, `VmHWM ${mem[a.pid]!.hwmMb ?? '?'} MB`],
          ['peak RSS B (puller)', `${fmt(mem[b.pid]!.peakRssMb)} MB`, `VmHWM ${mem[b.pid]!.hwmMb ?? '?'} MB`],
          ['baseline: verify async (all cores)', `${fmt(vAsync)} sig/s`, `${inFlight} in flight; pull is ${fmt((100 * postsPerS) / vAsync, 1)}% of it`],
          ['baseline: verify sync (one core)', `${fmt(vSync)} sig/s`],
          ['baseline: parse+stage (one core)', `${fmt(parse.all)} models/s`, `parseXml ${fmt(parse.parse)}/s, stageModel ${fmt(parse.stage)}/s`],
          ['response signing (A, PROTOCOL.md §8)', `${fmt(signing.usPerModel, 1)} µs/model`, `${fmt(signing.msPerAnswer, 2)} ms per get answer of ${signing.models} models (${fmt(signing.answerBytes / 1024)} KB): ${fmt((100 * signing.usPerModel * n) / 1000 / Math.max(1, cpuSum(cpuA)), 1)}% of A's CPU in this pull`],
          ['derived: 2-core CPU ceiling of B', `${fmt(twoCoreCeiling)} posts/s`, `(parse+stage+verify ${fmt(cpuUsPerPost)} µs/post over 2 cores)`],
          ['context: cores free (2-thread probe)', `${coresBefore} / ${coresAfter}`, 'before / after; below 2 = other work on the machine'],
          ['check: stored / rejected / on B', `${s.stored} / ${rejected} / ${held}`, `listed ${s.listed}, fetched ${s.fetched}, missing ${s.missing}`],
        ]),
    )

    if (profDir) {
      out('\n' + (await summariseProfiles(join(resolve(profDir), 'b'), 'B (puller) main thread')))
      out('\n' + (await summariseProfiles(join(resolve(profDir), 'a'), 'A (server) main thread')))
    }

    process.stdout.write('BENCH_JSON ' + JSON.stringify(figures) + '\n')
    // Fail loudly on a wrong result: a fast wrong pull is no figure.
    if (s.stored !== n || rejected !== 0 || held !== n || s.missing !== 0) {
      throw new Error(`pull: wrong result: stored ${s.stored} of ${n}, rejected ${JSON.stringify(s.rejected)}, missing ${s.missing}, held on B ${held}`)
    }
    return figures
  } finally {
    await cleanup()
  }
}

export const pullBench: Bench = {
  name: 'pull',
  question: 'how fast does B pull N signed ~1 KB posts from A over loopback, against the verify-only ceiling?',
  run: runPull,
}
