// Pull: list (every page) -> skip what the store holds -> get in batches
// (p-queue, a few in flight) -> stage and verify -> commit.
//
// Idempotent: a repeated pull finds everything held and fetches nothing.
// Versions: the store keeps the winner (newer update-time, then greater
// hash), whatever the order of arrival. A reply that arrives before its
// thread is stored, and its edge resolves when the thread comes.
// A finished pull keeps the peer's final cursor for (peer, model, filter);
// the next pull of the same filter asks only for what the peer stored since.
import { createHash } from 'node:crypto'
import PQueue from 'p-queue'
import { DipError } from '../errors.js'
import { commonFilterXml, getRequestXml, listRequestXml, readGetAnswer, readListAnswer, type Limits, type ListRowIn } from '../protocol/envelope.js'
import { stageModel } from '../model/signed.js'
import type { FacetFilter } from '../model/types.js'
import type { ModelRegistry } from '../model/registry.js'
import type { GraphStore } from '../store/graph-store.js'
import type { Ingest } from '../store/ingest.js'
import { DipClient } from './client.js'

export interface PullFilter {
  /** filter times as the wire accepts them (content time, `YYYY-MM-DD HH:MM:SS`, Unix seconds) */
  since?: string | undefined
  until?: string | undefined
  allow?: string[] | undefined
  deny?: string[] | undefined
  facets?: FacetFilter | undefined
}

export interface PullOptions {
  from: string
  model?: string
  filter?: PullFilter
  /** ids per get (at most the peer's limit) */
  batchSize?: number
  /** gets in flight */
  concurrency?: number
  /** ignore the kept cursor and list from the start */
  full?: boolean
  onProgress?: (p: PullProgress) => void
}

export interface PullProgress {
  listed: number
  /** list pages finished; more=false once the listing is complete */
  listing: boolean
  wanted: number
  fetched: number
  stored: number
}

export interface PullSummary {
  from: string
  listed: number
  /** listed rows already held (or beaten by what is held) */
  skipped: number
  fetched: number
  stored: number
  duplicate: number
  /** rejected models by code */
  rejected: Record<string, number>
  /** listed ids the peer did not return on get */
  missing: number
  requests: number
  bytesIn: number
  ms: number
}

export interface PullDeps {
  store: GraphStore
  ingest: Ingest
  registry: ModelRegistry
  limits: Limits
}

export function checkpointName(from: string, model: string, filterXml: string): string {
  return 'pull:' + createHash('sha256').update(`${from}\n${model}\n${filterXml}`).digest('hex')
}

export async function pull(deps: PullDeps, options: PullOptions): Promise<PullSummary> {
  const started = performance.now()
  const client = new DipClient(options.from)
  const modelName = options.model ?? 'post'
  const def = deps.registry.get(modelName)
  if (!def) throw new DipError('DIP_USAGE', `model ${modelName} is not registered`)
  const model = { name: def.name, version: `${def.version.major}.${def.version.minor}` }
  const f = options.filter ?? {}
  const filterXml = commonFilterXml({ from: f.since, to: f.until, allow: f.allow, deny: f.deny }) + def.filterXml(f.facets ?? [])
  const cpName = checkpointName(client.base, modelName, filterXml)
  const batchSize = Math.min(options.batchSize ?? 500, deps.limits.maxIdsPerGet)
  const queue = new PQueue({ concurrency: options.concurrency ?? 4 })

  const s: PullSummary = { from: client.base, listed: 0, skipped: 0, fetched: 0, stored: 0, duplicate: 0, rejected: {}, missing: 0, requests: 0, bytesIn: 0, ms: 0 }
  const progress: PullProgress = { listed: 0, listing: true, wanted: 0, fetched: 0, stored: 0 }
  const report = () => options.onProgress?.({ ...progress })
  let failure: unknown

  async function fetchBatch(rows: ListRowIn[]): Promise<void> {
    const answer = await client.success('get', getRequestXml(model, rows.map((r) => r.id)))
    const models = readGetAnswer(answer.root)
    if (!models.ok) throw models.error
    const asked = new Set(rows.map((r) => r.id))
    const staged = []
    const got = new Set<string>()
    for (const el of models.value) {
      const st = stageModel(el, deps.registry, deps.limits)
      if (!st.ok) {
        s.rejected[st.rejection.code] = (s.rejected[st.rejection.code] ?? 0) + 1
        continue
      }
      // A peer may answer anything; take only what was asked, once.
      if (!asked.has(st.value.idText) || got.has(st.value.idText)) {
        s.rejected.DIP_REFUSED = (s.rejected.DIP_REFUSED ?? 0) + 1
        continue
      }
      got.add(st.value.idText)
      staged.push(st.value)
    }
    s.fetched += staged.length
    s.missing += rows.length - got.size
    for (const r of await deps.ingest.accept(staged)) {
      if (r.status === 'stored') s.stored++
      else if (r.status === 'duplicate') s.duplicate++
      else if (r.status === 'rejected') s.rejected[r.code] = (s.rejected[r.code] ?? 0) + 1
    }
    progress.fetched = s.fetched
    progress.stored = s.stored
    report()
  }

  let after = options.full ? undefined : await deps.store.checkpoint(cpName)
  let restarted = false
  for (;;) {
    if (failure) break
    let page
    try {
      page = await client.success('list', listRequestXml(model, filterXml, after))
    } catch (e) {
      // A kept cursor the peer no longer knows (its store was rebuilt): list from the start.
      if (e instanceof DipError && e.peerCode === 'DIP_CURSOR_INVALID' && after !== undefined && !restarted) {
        after = undefined
        restarted = true
        continue
      }
      throw e
    }
    const answer = readListAnswer(page.root)
    if (!answer.ok) throw answer.error
    const rows = answer.value.rows.filter((r) => r.name === modelName)
    s.listed += rows.length
    const wanted = new Set((await deps.store.wanted(rows.map((r) => ({ id: r.id, hash: r.hash, timeKey: r.updateTimeKey })))).map((w) => w.hash))
    const todo = rows.filter((r) => wanted.has(r.hash))
    s.skipped += rows.length - todo.length
    progress.listed = s.listed
    progress.wanted += todo.length
    report()
    for (let i = 0; i < todo.length; i += batchSize) {
      const batch = todo.slice(i, i + batchSize)
      queue.add(() => fetchBatch(batch)).catch((e: unknown) => {
        failure ??= e
        queue.clear()
      })
    }
    if (!answer.value.more) {
      after = answer.value.next
      break
    }
    // <more/> means the page was cut at its limit: it must bring rows and move the cursor.
    if (answer.value.rows.length === 0 || answer.value.next === after) {
      throw new DipError('DIP_PEER_RESPONSE_INVALID', `${client.base} answered <more/> without progress`)
    }
    after = answer.value.next
    // Bounded memory: list ahead only while few batches wait.
    await queue.onSizeLessThan(2)
  }
  await queue.onIdle()
  if (failure) throw failure
  // Every listed model was fetched and decided: keep the cursor for next time.
  if (after !== undefined) await deps.store.commit([], { name: cpName, cursor: after })
  progress.listing = false
  report()
  s.requests = client.requests
  s.bytesIn = client.bytesIn
  s.ms = Math.round(performance.now() - started)
  return s
}
