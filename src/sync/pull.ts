// Pull: list (every page) -> skip what the store holds -> get in batches
// (p-queue, a few in flight) -> stage and verify -> commit.
//
// Idempotent: a repeated pull finds everything held and fetches nothing.
// Versions: the store keeps the winner (newer update-time, then greater
// hash), whatever the order of arrival. A reply that arrives before its
// thread is stored, and its edge resolves when the thread comes.
// A finished pull keeps the peer's final cursor for (peer, model, filter);
// the next pull of the same filter asks only for what the peer stored since.
//
// Trust (PROTOCOL.md §8, §9): before the first list the client reads the
// peer's manifest, checks the peer's key against the pin (following signed
// rotations), checks a proof for the URL's host, and picks the highest
// versions both sides speak. Every answer must then be signed by that key.
// The first successful pull pins the key.
import { createHash } from 'node:crypto'
import { setTimeout as delay } from 'node:timers/promises'
import PQueue from 'p-queue'
import { DipError } from '../errors.js'
import { commonFilterXml, getRequestXml, listRequestXml, readGetAnswer, readListAnswer, type Limits, type ListRowIn } from '../protocol/envelope.js'
import { stageModel, type StagedModel } from '../model/signed.js'
import { detached, type ElementSource, type XmlElement } from '../protocol/xml.js'
import type { FacetFilter } from '../model/types.js'
import type { ModelRegistry } from '../model/registry.js'
import type { GraphStore } from '../store/graph-store.js'
import type { Ingest } from '../store/ingest.js'
import { DipClient, type Answer, type Manifest } from './client.js'
import { followRotations, verifyProof, type Proof } from '../trust/chain.js'
import { formatVersion, parseVersion, type Version } from '../protocol/version.js'
import { REQUEST_VERSIONS } from '../protocol/envelope.js'
import type { CheckpointWrite, PeerRecord, Want } from '../store/graph-store.js'

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
  /** batches in flight, each from its get to its commit (4) */
  concurrency?: number
  /** ignore the kept cursor and list from the start */
  full?: boolean
  onProgress?: (p: PullProgress) => void
  /**
   * Stops the pull early: no list page or batch is started after it fires,
   * the batches in flight are committed, and the summary says `interrupted`.
   * The kept cursor is where those commits left it: the next pull goes on
   * from there.
   */
  signal?: AbortSignal
  /**
   * After a failure of the link (DIP_PEER_UNREACHABLE: the connection
   * broke, a timeout) once the peer has answered, how many more times the
   * pull goes on from its checkpoint, waiting 1 s, then twice as long each
   * time, at most a minute (0: it fails at once). The summary counts every try.
   */
  retries?: number
}

/** The most tries a pull may be given after failures of the link (options.retries). */
const MAX_PULL_RETRIES = 100
/** The waits between two tries of a pull: the first, and the longest. */
const RETRY_FIRST_MS = 1000
const RETRY_MAX_MS = 60_000
/** At most this many ids found missing earlier are asked for again by one pull (the rest by the next). */
const ASK_AGAIN_MAX = 10_000

export interface PullProgress {
  listed: number
  /** list pages finished; more=false once the listing is complete */
  listing: boolean
  wanted: number
  fetched: number
  stored: number
  /** set on the report made when a failure of the link is followed by another try */
  retry?: { attempt: number; of: number; inMs: number; error: { code: string; message: string } }
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
  /** listed ids the peer did not return on get (asked for again by the next pull of the same filter) */
  missing: number
  /** ids an earlier pull of the same filter found missing, asked for again first */
  askedAgain?: number
  /** set when options.signal stopped the pull before it had listed and fetched everything */
  interrupted?: true
  /** how many times the pull went on after a failure of the link (options.retries) */
  retried?: number
  requests: number
  bytesIn: number
  ms: number
  /**
   * Time in each stage, summed over pages and batches (stages overlap, so
   * the sum exceeds `ms`): list answers (request to parsed), get answers
   * (request to parsed, staging included), staging alone, signature and
   * policy checks, commits (waiting for the writer included).
   */
  stages: { listMs: number; getMs: number; stageMs: number; verifyMs: number; commitMs: number }
}

export interface PullDeps {
  store: GraphStore
  ingest: Ingest
  registry: ModelRegistry
  limits: Limits
}

/**
 * The version to speak with a peer whose highest is `theirs`: the lower of
 * the two within one major; ours when the peer's major is higher (it may
 * speak ours too: the answer tells); none when the peer is behind a major.
 */
export function negotiate(ours: Version, theirs: string | undefined): Version | undefined {
  const t = theirs === undefined ? undefined : parseVersion(theirs)
  if (!t?.ok) return ours
  if (t.value.major === ours.major) return t.value.minor < ours.minor ? t.value : ours
  return t.value.major > ours.major ? ours : undefined
}

interface Session {
  client: DipClient
  /** the peer's record (settings, counts), and its pin when it has a key */
  rec: PeerRecord | undefined
  pin: (PeerRecord & { key: string }) | undefined
  /** the life of the key the peer answers with */
  life: number
  proof: PeerRecord['proof']
  /** the peer's published limit of ids per get */
  maxIdsPerGet: number | undefined
  listVersion: string
  getVersion: string
  modelVersion: string
}

/** The versions to speak given what the peer says it speaks (manifest or `<supported>`). */
function chooseVersions(base: string, ours: Version, modelName: string, requests: Record<string, string> | undefined, models: Record<string, string> | undefined) {
  const v = (mine: Version, theirs: string | undefined, what: string) => {
    const n = negotiate(mine, theirs)
    if (!n) throw new DipError('DIP_PEER_INCOMPATIBLE', `${base} speaks ${what} ${theirs}, this node ${formatVersion(mine)}`)
    return formatVersion(n)
  }
  return {
    listVersion: v(REQUEST_VERSIONS.list, requests?.list, 'list'),
    getVersion: v(REQUEST_VERSIONS.get, requests?.get, 'get'),
    modelVersion: v(ours, models?.[modelName], modelName),
  }
}

/** Manifest, pin, rotations, proof, versions: everything checked before the first list. */
async function openSession(deps: PullDeps, client: DipClient, modelName: string, ours: Version): Promise<Session> {
  const rec = await deps.store.peer(client.base)
  // A peer added by the operator but never synced has no pin yet.
  const pin = rec?.key === undefined ? undefined : (rec as PeerRecord & { key: string })
  const manifest: Manifest | undefined = await client.manifest()
  let key = manifest?.node
  const published = Number.isInteger(manifest?.life) ? manifest!.life! : 1
  // A life never goes down: without a manifest, or with a smaller life for the same key, the pin keeps its own.
  let life = pin && (key === undefined || key === pin.key) ? Math.max(pin.life, published) : published
  if (pin && key && key !== pin.key) {
    const moved = followRotations({ key: pin.key, life: pin.life }, manifest?.rotations, key)
    if (!moved.ok) throw moved.error
    life = moved.value.life
  }
  let proof: PeerRecord['proof']
  const host = new URL(client.base).hostname
  for (const p of Array.isArray(manifest?.proofs) ? (manifest!.proofs as Proof[]) : []) {
    if (p?.turf !== host) continue
    if (!verifyProof(p) || p.key !== key) throw new DipError('DIP_PROOF_INVALID', `the proof for ${host} does not verify with ${key}`)
    proof = { turf: p.turf, life: p.life }
  }
  if (key === undefined && pin) key = pin.key // no manifest: answers must come from the pinned key
  client.expectKey = key
  const peerIds = manifest?.limits?.maxIdsPerGet
  return {
    client,
    rec,
    pin,
    life,
    proof: proof ?? pin?.proof,
    maxIdsPerGet: Number.isSafeInteger(peerIds) && peerIds! > 0 ? peerIds! : undefined,
    ...chooseVersions(client.base, ours, modelName, manifest?.requests, manifest?.models),
  }
}

function intersect(a: string[] | undefined, b: string[] | undefined): string[] | undefined {
  if (a === undefined) return b
  if (b === undefined) return a
  return a.filter((k) => b.includes(k))
}

export function checkpointName(from: string, model: string, filterXml: string): string {
  return 'pull:' + createHash('sha256').update(`${from}\n${model}\n${filterXml}`).digest('hex')
}

/**
 * What an answer is read for, taken from it at once: its parsed tree is
 * dropped when this returns. A suspended async function keeps the locals
 * it holds, so a tree held in fetchBatch's or listPages's frame lived until
 * its batch was committed or its page's batches queued, and every
 * young-generation GC in between copied it.
 */
async function readAnswer<T>(answer: Promise<Answer>, read: (a: Answer) => T): Promise<T> {
  return read(await answer)
}
const readGetRest = (a: Answer) => readGetAnswer(a.root)
const readListPage = (a: Answer) => ({ head: a.head, list: a.head.status === 'success' ? readListAnswer(a.root) : undefined })

export async function pull(deps: PullDeps, options: PullOptions): Promise<PullSummary> {
  const started = performance.now()
  const retries = options.retries ?? 0
  if (!Number.isSafeInteger(retries) || retries < 0 || retries > MAX_PULL_RETRIES) throw new DipError('DIP_USAGE', `retries must be an integer from 0 to ${MAX_PULL_RETRIES}`)
  const client = new DipClient(options.from)
  const modelName = options.model ?? 'post'
  const def = deps.registry.get(modelName)
  if (!def) throw new DipError('DIP_USAGE', `model ${modelName} is not registered`)
  const session = await openSession(deps, client, modelName, def.version)
  let model = { name: def.name, version: session.modelVersion }
  const batchSize = Math.min(options.batchSize ?? 500, session.maxIdsPerGet ?? deps.limits.maxIdsPerGet)
  const f = options.filter ?? {}
  // The peer's sender policy (dipd peers set) narrows the filter; the server applies it, and so does ingest.
  const allow = intersect(f.allow, session.rec?.allow)
  const deny = [...new Set([...(f.deny ?? []), ...(session.rec?.deny ?? [])])]
  const filterXml = commonFilterXml({ from: f.since, to: f.until, allow, deny: deny.length > 0 ? deny : undefined }) + def.filterXml(f.facets ?? [])
  const cpName = checkpointName(client.base, modelName, filterXml)

  const queue = new PQueue({ concurrency: options.concurrency ?? 4 })

  const senderPolicy = (m: { id: { key: string } }) =>
    (allow && !allow.includes(m.id.key)) || deny.includes(m.id.key) ? { code: 'DIP_REFUSED' as const, message: 'sender not taken from this peer' } : undefined
  const stages = { listMs: 0, getMs: 0, stageMs: 0, verifyMs: 0, commitMs: 0 }
  const s: PullSummary = { from: client.base, listed: 0, skipped: 0, fetched: 0, stored: 0, duplicate: 0, rejected: {}, missing: 0, requests: 0, bytesIn: 0, ms: 0, stages }
  const progress: PullProgress = { listed: 0, listing: true, wanted: 0, fetched: 0, stored: 0 }
  const report = () => options.onProgress?.({ ...progress })
  let failure: unknown
  // The first failure (a batch's or the listing's) ends the pull: no batch starts after it, those in flight still commit.
  const fail = (e: unknown) => {
    failure ??= e
    queue.clear()
  }

  // Resume (a pull killed at any point continues where its last commit left
  // off): list pages are numbered in order; a page is done when every batch
  // fetched from it is committed. Each commit writes, in the same LevelDB
  // batch, the cursor after the last page that is done with all the pages
  // before it; what a killed pull had fetched but not committed is fetched
  // again, nothing committed is (the next pull skips it as held).
  const pages: { next: string; pending: number }[] = []
  let donePages = 0
  // Where a retry goes on from: the cursor this pull last committed, else where it started (the start, for a full pull).
  let resumeAt: string | undefined
  const advance = (): { name: string; cursor: string } | undefined => {
    let cursor: string | undefined
    while (donePages < pages.length && pages[donePages]!.pending === 0) cursor = pages[donePages++]!.next
    if (cursor === undefined) return undefined
    resumeAt = cursor
    return { name: cpName, cursor }
  }

  /** Gets and commits one batch of listed rows; `page` undefined: ids found missing before, asked for again. */
  async function fetchBatch(rows: Pick<ListRowIn, 'id' | 'hash' | 'updateTimeKey'>[], page: number | undefined): Promise<void> {
    const asked = new Set(rows.map((r) => r.id))
    const staged: StagedModel[] = []
    const got = new Set<string>()
    const rejected: Record<string, number> = {}
    const consider = (el: XmlElement, source?: Uint8Array) => {
      const t = performance.now()
      const st = stageModel(el, deps.registry, deps.limits, source)
      stages.stageMs += performance.now() - t
      // A peer may answer anything; take only what was asked, once.
      const code = !st.ok ? st.rejection.code : !asked.has(st.value.idText) || got.has(st.value.idText) ? 'DIP_REFUSED' : undefined
      if (code !== undefined) rejected[code] = (rejected[code] ?? 0) + 1
      else if (st.ok) {
        got.add(st.value.idText)
        staged.push(st.value)
      }
    }
    // Models are staged as the answer is parsed, each tree dropped once read
    // (a whole answer's trees would outlive the young generation). They count
    // only if the answer turns out signed and successful.
    let models: XmlElement | undefined
    const take = (el: XmlElement, parent: XmlElement, depth: number, source: ElementSource) => {
      if (depth !== 3 || el.name !== 'model' || parent.name !== 'models' || (models ??= parent) !== parent) return false
      consider(el, source.bytes())
      return true
    }
    const t0 = performance.now()
    const rest = await readAnswer(client.success('get', getRequestXml(model, rows.map((r) => r.id), session.getVersion), undefined, take), readGetRest)
    stages.getMs += performance.now() - t0
    if (!rest.ok) throw rest.error
    for (const el of rest.value) consider(el)
    for (const [code, n] of Object.entries(rejected)) s.rejected[code] = (s.rejected[code] ?? 0) + n
    s.fetched += staged.length
    s.missing += asked.size - got.size // a row listed twice is asked for once
    // PROTOCOL.md §7 omits what a node lacks: the model may have been
    // replaced or removed between list and get, or the peer failed to read
    // it. The next pull of this filter asks for it once more (W! rows, kept
    // in the same batch), since the cursor kept here passes its row.
    const left: Want[] = []
    if (page !== undefined && got.size < asked.size) {
      for (const r of new Map(rows.map((x) => [x.id, x])).values()) if (!got.has(r.id)) left.push({ id: r.id, hash: r.hash, timeKey: r.updateTimeKey })
    }
    // Evaluated inside the store's commit: this batch counts as done there, in commit order.
    const checkpoint = (): CheckpointWrite | undefined => {
      if (page === undefined) return { name: cpName, settled: rows.map((r) => r.id) } // asked again: done with, whatever came
      pages[page]!.pending--
      const moved = advance()
      return left.length === 0 ? moved : { name: cpName, cursor: moved?.cursor, later: left }
    }
    for (const r of await deps.ingest.accept(staged, { policy: senderPolicy, origin: client.base, via: 'pull', checkpoint, timing: stages })) {
      if (r.status === 'stored') s.stored++
      else if (r.status === 'duplicate') s.duplicate++
      else if (r.status === 'rejected') s.rejected[r.code] = (s.rejected[r.code] ?? 0) + 1
    }
    progress.fetched = s.fetched
    progress.stored = s.stored
    report()
  }

  const signal = options.signal
  let after = options.full ? undefined : await deps.store.checkpoint(cpName)
  resumeAt = after
  // Lists page after page, queueing the batches of what is wanted, until the listing ends, fails or is stopped.
  const listPages = async (): Promise<void> => {
    let restarted = false
    let renegotiated = false
    // The cursors this listing was given: a peer that gives one again, with
    // <more/>, would have the pull list in a circle for ever.
    const given = new Set<string>()
    for (;;) {
      if (failure || signal?.aborted) break
      const t0 = performance.now()
      const page = await readAnswer(client.call('list', listRequestXml(model, filterXml, after, session.listVersion)), readListPage)
      stages.listMs += performance.now() - t0
      if (page.head.status !== 'success') {
        // A peer without a manifest says what it speaks in <supported>: adopt it, once.
        if (page.head.status === 'not supported' && page.head.supported && !renegotiated) {
          renegotiated = true
          const before = `${session.listVersion} ${session.getVersion} ${session.modelVersion}`
          Object.assign(session, chooseVersions(client.base, def.version, modelName, page.head.supported.requests, page.head.supported.models))
          if (`${session.listVersion} ${session.getVersion} ${session.modelVersion}` === before) {
            throw new DipError('DIP_PEER_INCOMPATIBLE', `${client.base} does not speak list ${session.listVersion} with ${modelName} ${session.modelVersion}`)
          }
          model = { name: def.name, version: session.modelVersion }
          continue
        }
        // A kept cursor the peer no longer knows (its store was rebuilt): list from the start.
        if (page.head.code === 'DIP_CURSOR_INVALID' && after !== undefined && !restarted) {
          after = undefined
          restarted = true
          given.clear()
          continue
        }
        throw client.peerError(page.head)
      }
      const answer = page.list!
      if (!answer.ok) throw answer.error
      const rows = answer.value.rows.filter((r) => r.name === modelName)
      s.listed += rows.length
      // Held versions, and banned senders (ingest would refuse them anyway), are not fetched.
      const banned = deps.ingest.banned
      const fresh = banned.size === 0 ? rows : rows.filter((r) => !banned.has(r.id.split('::')[1]!))
      const wanted = new Set((await deps.store.wanted(fresh.map((r) => ({ id: r.id, hash: r.hash, timeKey: r.updateTimeKey })))).map((w) => w.hash))
      const todo = fresh.filter((r) => wanted.has(r.hash))
      s.skipped += rows.length - todo.length
      progress.listed = s.listed
      progress.wanted += todo.length
      report()
      if (signal?.aborted) break
      // The cursor is a slice of the list answer: kept as a copy, or every page's body would live until the pull ends.
      const next = detached(answer.value.next)
      const pageNo = pages.push({ next, pending: Math.ceil(todo.length / batchSize) }) - 1
      for (let i = 0; i < todo.length; i += batchSize) {
        const batch = todo.slice(i, i + batchSize)
        queue.add(() => fetchBatch(batch, pageNo)).catch(fail)
      }
      if (!answer.value.more) {
        after = next
        break
      }
      // <more/> means the page was cut at its limit: it must bring rows and move the cursor to a place not seen yet.
      if (answer.value.rows.length === 0 || next === after) {
        throw new DipError('DIP_PEER_RESPONSE_INVALID', `${client.base} answered <more/> without progress`)
      }
      if (after !== undefined) given.add(after)
      if (given.has(next)) throw new DipError('DIP_PEER_RESPONSE_INVALID', `${client.base} listed in a circle: it gave a cursor it had given before`)
      after = next
      // Bounded memory: list ahead only while few batches wait.
      await queue.onSizeLessThan(2)
    }
  }

  // Ids an earlier pull of this filter listed and was not given: asked for
  // once more, before the listing (a full pull lists everything anyway).
  if (!options.full) {
    const earlier = await deps.store.later(cpName, ASK_AGAIN_MAX)
    if (earlier.length > 0) {
      const banned = deps.ingest.banned
      const todo = await deps.store.wanted(banned.size === 0 ? earlier : earlier.filter((w) => !banned.has(w.id.split('::')[1]!)))
      const asking = new Set(todo.map((w) => w.id))
      const done = earlier.filter((w) => !asking.has(w.id)).map((w) => w.id)
      if (done.length > 0) await deps.store.commit([], { name: cpName, settled: done }) // held since, or banned
      s.askedAgain = todo.length
      progress.wanted += todo.length
      for (let i = 0; i < todo.length; i += batchSize) {
        const batch = todo.slice(i, i + batchSize).map((w) => ({ id: w.id, hash: w.hash, updateTimeKey: w.timeKey }))
        queue.add(() => fetchBatch(batch, undefined)).catch(fail)
      }
    }
  }

  // Stopped: batches not started yet are dropped (their page is never done, so the kept cursor stays before it).
  const stop = () => queue.clear()
  for (let attempt = 1; ; attempt++) {
    signal?.addEventListener('abort', stop, { once: true })
    await listPages().catch(fail)
    await queue.onIdle()
    signal?.removeEventListener('abort', stop)
    if (!(failure instanceof DipError && failure.code === 'DIP_PEER_UNREACHABLE') || attempt > retries || signal?.aborted) break
    // The link failed: what was in flight is committed; wait, then go on from the cursor those commits kept (or where this pull began).
    const inMs = Math.min(RETRY_FIRST_MS * 2 ** (attempt - 1), RETRY_MAX_MS)
    progress.wanted = s.fetched // what the next listing still wants is counted again
    options.onProgress?.({ ...progress, retry: { attempt, of: retries, inMs, error: { code: failure.code, message: failure.message } } })
    await delay(inMs, undefined, signal ? { signal } : {}).catch(() => {})
    failure = undefined // stopped while waiting: interrupted, not failed
    if (signal?.aborted) break
    s.retried = attempt
    pages.length = 0
    donePages = 0
    after = resumeAt
  }
  if (failure) throw failure
  if (signal?.aborted) s.interrupted = true
  // Every listed model was fetched and decided: keep the cursor for next time.
  else if (after !== undefined) await deps.store.commit([], { name: cpName, cursor: after })
  // Trust on first use: a successful sync pins the key it was signed with.
  const now = new Date().toISOString()
  const rejected = Object.values(s.rejected).reduce((a, b) => a + b, 0)
  const key = client.expectKey
  if (key !== undefined) {
    const pin = session.pin
    // Read again: the operator may have changed the peer's settings while the pull ran.
    const latest = await deps.store.peer(client.base)
    await deps.store.savePeer({
      ...latest,
      url: client.base,
      key,
      life: session.life,
      pinnedAt: pin?.key === key ? pin.pinnedAt : now,
      lastSync: now,
      proof: session.proof,
      pulls: (latest?.pulls ?? 0) + 1,
      stored: (latest?.stored ?? 0) + s.stored,
      rejected: (latest?.rejected ?? 0) + rejected,
    })
  }
  progress.listing = false
  report()
  s.requests = client.requests
  s.bytesIn = client.bytesIn
  s.ms = Math.round(performance.now() - started)
  for (const k of Object.keys(stages) as (keyof typeof stages)[]) stages[k] = Math.round(stages[k])
  return s
}
