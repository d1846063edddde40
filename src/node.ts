// A DIP node's operations over its store: author, list, show, pull. The
// daemon serves them on the local API; the CLI calls them directly when no
// daemon holds the data folder. One implementation for both paths.
import { DipError, isWireCode, WIRE_CODES, type WireCode } from './errors.js'
import { authorModel, stageModel } from './model/signed.js'
import type { ModelRegistry } from './model/registry.js'
import type { FacetFilter } from './model/types.js'
import { parseIdText, type GlobalId } from './protocol/id.js'
import { formatNow } from './protocol/time.js'
import { FETCH_ON_MISS_HEADER, getRequestXml, readGetAnswer, type Limits } from './protocol/envelope.js'
import { formatVersion } from './protocol/version.js'
import type { NodeIdentity } from './trust/identity.js'
import { checkNodeKey, type Proof, type Rotation } from './trust/chain.js'
import type { GraphStore, PeerRecord } from './store/graph-store.js'
import { DipClient } from './sync/client.js'
import { CIRCUIT_AFTER, type PeerStatus, type Replicator } from './sync/replicator.js'
import type { Metrics } from './metrics.js'
import type { Ingest } from './store/ingest.js'
import { pull, type PullFilter, type PullProgress, type PullSummary } from './sync/pull.js'
import { facetsOf, filterKeys, filterTime, listQuery, type LocalFilter } from './sync/filter.js'

export type { LocalFilter }

export interface ListedRow {
  id: string
  updateTime: string
  hash: string
}

export interface NodeDeps {
  store: GraphStore
  ingest: Ingest
  registry: ModelRegistry
  limits: Limits
  identity: NodeIdentity
  /** writes an identity to DIR/node.key (a rotation or a new proof, before the node takes it on) */
  saveIdentity: (identity: NodeIdentity) => Promise<void>
}

/** Options that came through the local API as JSON: an object, or a caller's mistake (DIP_USAGE), never a TypeError. */
function optionsObject(v: unknown, op: string): void {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new DipError('DIP_USAGE', `${op}: its options are an object`)
}

export class DipNode {
  readonly deps: NodeDeps

  constructor(deps: NodeDeps) {
    this.deps = deps
    this.replicator = undefined
    this.metrics = undefined
  }

  get nodeKey(): string {
    return this.deps.identity.nodeKey
  }

  /** Signs and stores a model authored here; returns its global id. */
  async author(modelName: string, input: unknown): Promise<{ id: string; hash: string }> {
    const { registry, store, ingest, limits, identity } = this.deps
    const key = identity.current
    const def = registry.get(modelName)
    if (!def) throw new DipError('DIP_MODEL_NOT_SUPPORTED', `model ${modelName} is not registered`)
    const checked = def.checkFields(input)
    if (!checked.ok) throw checked.error
    const localId = await store.allocateLocalId(key.publicKeyHex, identity.shared)
    const id: GlobalId = { type: 'ed25519', key: key.publicKeyHex, localId }
    const now = formatNow()
    const staged = authorModel(def, { ...(checked.value as object), id, pubTime: now, updateTime: now }, key, registry, limits)
    if (!staged.ok) throw staged.error
    const [r] = await ingest.accept([staged.value], { via: 'local' })
    if (r?.status !== 'stored') throw new DipError('DIP_INTERNAL', `authored model was not stored: ${r?.status === 'rejected' ? r.code : r?.status}`)
    return { id: staged.value.idText, hash: staged.value.hash }
  }

  /** What the store holds, in store order, filtered like a list request. */
  async list(filter: LocalFilter = {}): Promise<ListedRow[]> {
    const out: ListedRow[] = []
    for await (const page of this.listPages(filter)) out.push(...page)
    return out
  }

  /** list() a page of up to 1,000 rows at a time (the filter is checked before the first page). */
  listPages(filter: LocalFilter = {}): AsyncGenerator<ListedRow[]> {
    const q = { model: filter.model ?? 'post', ...listQuery(filter, (f) => this.#facets(f)) }
    const store = this.deps.store
    return (async function* () {
      let afterSeq = 0
      for (;;) {
        const page = await store.list({ ...q, afterSeq, limit: 1000 })
        yield page.rows.map((r) => ({ id: r.i, updateTime: r.t, hash: r.h }))
        const last = page.rows.at(-1)
        if (!page.more || !last) return
        afterSeq = last.s
      }
    })()
  }

  /** The filter's facets, checked against its model: a filter the model has not is refused (DIP_FILTER_INVALID), never dropped. */
  #facets(filter: LocalFilter): FacetFilter {
    const def = this.deps.registry.get(filter.model ?? 'post')
    if (!def) throw new DipError('DIP_USAGE', `model ${filter.model} is not registered`)
    const facets = facetsOf(filter)
    def.filterXml(facets)
    return facets
  }

  /** A model as the node serves it (XML), or undefined. */
  async show(idText: string): Promise<string | undefined> {
    if (typeof idText !== 'string') throw new DipError('DIP_ID_INVALID', 'a global id is text: ed25519::<64 hex>::<local id>')
    const id = parseIdText(idText)
    if (!id.ok) throw id.error
    const [found] = await this.deps.store.getModels([idText])
    return found?.xml
  }

  /**
   * `filter.full`: list from the start instead of the kept cursor (after an
   * unban, say); `filter.retries`: how many more tries after a failure of the
   * link (PullOptions.retries, 0 to 100); `signal` stops it early (PullOptions.signal).
   */
  async pull(from: string, filter: LocalFilter & { full?: boolean; retries?: number }, onProgress?: (p: PullProgress) => void, signal?: AbortSignal): Promise<PullSummary> {
    const pf: PullFilter = {
      since: filter.since,
      until: filter.until,
      allow: filterKeys(filter.allow, '--allow'),
      deny: filterKeys(filter.deny, '--deny'),
      facets: this.#facets(filter),
    }
    // The pull sends the times as given; a bad one fails here, before anything is asked of the peer.
    filterTime(filter.since, '--since')
    filterTime(filter.until, '--until')
    const started = performance.now()
    const summary = await pull(this.deps, { from, model: filter.model ?? 'post', filter: pf, full: filter.full === true, ...(filter.retries !== undefined ? { retries: filter.retries } : {}), ...(onProgress ? { onProgress } : {}), ...(signal ? { signal } : {}) })
    this.metrics?.pullModels.inc({ peer: summary.from }, summary.stored)
    this.metrics?.pullSeconds.observe({ peer: summary.from }, (performance.now() - started) / 1000)
    return summary
  }

  /**
   * Fetch on miss (after Tent): ids this node lacks whose key is pinned to a
   * known peer are fetched from that peer (its answer signed by the pinned
   * key), verified and stored. A refusal by the origin (a DIP error, or a
   * bare 403) is thrown as a DipError carrying the origin's code, for the
   * caller to pass through; an unreachable origin just leaves the ids out.
   */
  async fetchMissing(modelName: string, ids: string[]): Promise<number> {
    const { store, registry, limits, ingest } = this.deps
    const def = registry.get(modelName)
    if (!def || ids.length === 0) return 0
    const byKey = new Map<string, PeerRecord>()
    for (const p of await store.peers()) if (p.key !== undefined && !byKey.has(p.key)) byKey.set(p.key, p)
    const groups = new Map<PeerRecord, string[]>()
    for (const id of ids) {
      const peer = byKey.get(`ed25519::${id.split('::')[1]}`)
      if (peer) groups.set(peer, [...(groups.get(peer) ?? []), id])
    }
    let stored = 0
    for (const [peer, wanted] of groups) {
      const client = new DipClient(peer.url, { timeoutMs: 10_000 })
      client.expectKey = peer.key
      let answer
      try {
        answer = await client.success('get', getRequestXml({ name: def.name, version: formatVersion(def.version) }, wanted.slice(0, limits.maxIdsPerGet)), { [FETCH_ON_MISS_HEADER]: '1' })
      } catch (e) {
        if (e instanceof DipError && e.code === 'DIP_PEER_ERROR' && e.peerCode && isWireCode(e.peerCode) && (WIRE_CODES[e.peerCode] as WireCode).http !== undefined) {
          throw new DipError(e.peerCode, `${peer.url} refused: ${e.message}`, { cause: e })
        }
        continue // unreachable or broken: the ids stay missing
      }
      const els = readGetAnswer(answer.root)
      if (!els.ok) continue
      const asked = new Set(wanted)
      const staged = []
      for (const el of els.value) {
        const st = stageModel(el, registry, limits)
        if (st.ok && asked.has(st.value.idText)) staged.push(st.value)
      }
      for (const r of await ingest.accept(staged, { origin: peer.url, via: 'fetch' })) if (r.status === 'stored') stored++
    }
    return stored
  }

  /** Set by the daemon: push and scheduled pulls run there. */
  replicator: Replicator | undefined
  /** Set by the daemon */
  metrics: Metrics | undefined

  /** Every peer with its pin, settings and (while a daemon runs) its outbox. */
  async peers(): Promise<(PeerRecord & { outbox?: PeerStatus | undefined })[]> {
    const status = new Map((this.replicator?.status() ?? []).map((s) => [s.url, s]))
    const recs = await this.deps.store.peers()
    const out: (PeerRecord & { outbox?: PeerStatus | undefined })[] = []
    for (const r of recs) {
      let outbox = status.get(r.url)
      if (!outbox && r.push) {
        // No daemon: the outbox as it stands in the store.
        const state = await this.deps.store.pushState(r.url)
        outbox = { url: r.url, push: true, pull: r.pull === true, queue: Math.max(0, this.deps.store.lastSeq - (state?.ackSeq ?? 0)), state, circuitOpen: (state?.failures ?? 0) >= CIRCUIT_AFTER, pullError: undefined }
      }
      out.push({ ...r, outbox })
    }
    return out
  }

  /**
   * Adds (or changes) a peer the node replicates with: `push` offers it every
   * model newly stored here from now on, `pull` pulls from it on a schedule;
   * `filter` narrows both (same fields as the list filters).
   */
  async addPeer(url: string, opts: { push?: boolean; pull?: boolean; filter?: LocalFilter } = {}): Promise<PeerRecord> {
    optionsObject(opts, 'addPeer')
    if (opts.filter !== undefined) optionsObject(opts.filter, 'addPeer: the filter')
    const base = new DipClient(url).base
    const filter = opts.filter ?? {}
    listQuery(filter, (f) => this.#facets(f)) // validates the filter now, not at the first delivery
    const old = await this.deps.store.peer(base)
    const rec: PeerRecord = { life: 1, pulls: 0, stored: 0, rejected: 0, ...old, url: base, push: opts.push === true, pull: opts.pull === true, filter: filter as Record<string, unknown> }
    await this.deps.store.savePeer(rec)
    if (rec.push && !(await this.deps.store.pushState(base))) {
      // The outbox starts now: models stored from here on are offered.
      await this.deps.store.savePushState(base, { ackSeq: this.deps.store.lastSeq, pushed: 0, failures: 0 })
    }
    await this.replicator?.reload()
    return rec
  }

  async removePeer(url: string): Promise<{ url: string; removed: boolean }> {
    const base = new DipClient(url).base
    const removed = await this.deps.store.removePeer(base)
    await this.replicator?.reload()
    return { url: base, removed }
  }

  /** Accepts a peer's new key after the operator checked it: the given one, or the one its manifest names now. */
  async repin(url: string, key?: string): Promise<{ url: string; from: string | undefined; to: string }> {
    const client = new DipClient(url)
    if (key !== undefined) checkNodeKey(key, '--key')
    const manifest = key === undefined ? await client.manifest() : await client.manifest().catch(() => undefined)
    const to = key ?? manifest?.node
    if (to === undefined) throw new DipError('DIP_PEER_RESPONSE_INVALID', `${client.base} publishes no manifest: give the key with --key`)
    const life = manifest?.node === to && Number.isInteger(manifest.life) ? manifest.life! : 1
    const old = await this.deps.store.peer(client.base)
    const now = new Date().toISOString()
    await this.deps.store.savePeer({ pulls: 0, stored: 0, rejected: 0, ...old, url: client.base, key: to, life, pinnedAt: now, proof: undefined })
    return { url: client.base, from: old?.key, to }
  }

  /** Per-peer sender policy: only models by `allow` keys (when given), never by `deny` keys. */
  async setPeer(url: string, policy: { allow?: string[] | undefined; deny?: string[] | undefined } = {}): Promise<PeerRecord> {
    optionsObject(policy, 'setPeer')
    const base = new DipClient(url).base
    const old = await this.deps.store.peer(base)
    if (!old) throw new DipError('DIP_NOT_FOUND', `no peer ${base} yet: pull from it first`)
    const rec = { ...old, allow: filterKeys(policy.allow, '--allow', 'DIP_USAGE'), deny: filterKeys(policy.deny, '--deny', 'DIP_USAGE') }
    await this.deps.store.savePeer(rec)
    return rec
  }

  /** A new node key; the old one signs the rotation, published in the manifest. */
  async rotateKey(): Promise<Rotation> {
    return this.#changeIdentity((id) => id.rotate())
  }

  /**
   * Changes the identity on a copy, saves it, and only then signs with it:
   * a save that fails (a full disk) leaves the node as it was, instead of
   * serving a key that no file holds and a restart forgets.
   */
  #changeIdentity<T>(change: (identity: NodeIdentity) => T): Promise<T> {
    // One change at a time: two copies of one identity would each lose the other's.
    const run = this.#identityChanged.then(async () => {
      const next = this.deps.identity.copy()
      const out = change(next)
      await this.deps.saveIdentity(next)
      this.deps.identity.adopt(next)
      return out
    })
    this.#identityChanged = run.catch(() => {})
    return run
  }

  #identityChanged: Promise<unknown> = Promise.resolve()

  async addProof(turf: string): Promise<Proof> {
    if (typeof turf !== 'string' || !/^[A-Za-z0-9.-]{1,253}$/.test(turf)) throw new DipError('DIP_USAGE', `--turf ${String(turf).slice(0, 80)} is not a host name`)
    return this.#changeIdentity((id) => id.addProof(turf.toLowerCase()))
  }

  /** Bans a sender key node-wide: its models are removed, never served, refused on put, skipped on pull. */
  async ban(key: string): Promise<{ key: string; removed: number }> {
    const [hex] = filterKeys([key], 'ban', 'DIP_USAGE')!
    const removed = await this.deps.store.ban(hex!)
    this.deps.ingest.banned.add(hex!)
    return { key: hex!, removed }
  }

  async unban(key: string): Promise<{ key: string }> {
    const [hex] = filterKeys([key], 'unban', 'DIP_USAGE')!
    await this.deps.store.unban(hex!)
    this.deps.ingest.banned.delete(hex!)
    return { key: hex! }
  }

  async bans(): Promise<string[]> {
    return this.deps.store.bannedKeys()
  }
}
