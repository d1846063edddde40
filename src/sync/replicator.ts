// Push and scheduled pull for the peers an operator added (dipd peer add).
//
// Push (after Tent): every model newly stored here, authored or received, is
// offered with `put` to each push peer whose filter it passes, except the
// peer it came from. The outbox is the store-order log itself plus, per
// peer, the position that peer acknowledged (Q!<url>): nothing is copied,
// nothing is lost on a crash (the position moves only after the peer
// answered), an edit is offered again (it moves to the end of the log), and
// a restart resumes where the last answer left off. A duplicate answered
// `duplicate` is not stored again by the peer, so a pool never loops.
//
// Failures back off exponentially with jitter; after CIRCUIT_AFTER failures
// in a row the peer's circuit opens and it is tried only at the (long)
// backoff or when it pings (F140). Each peer has its own loop and its own
// connection budget: a dead peer costs the others nothing.
//
// Pull peers are pulled every `pullIntervalSeconds` and when they ping.
import { DipError } from '../errors.js'
import { pingRequestXml, putRequestXml, readPutAnswer } from '../protocol/envelope.js'
import type { GraphStore, PeerRecord, PushState, Row } from '../store/graph-store.js'
import { rowMatches } from '../store/graph-store.js'
import { DipClient } from './client.js'
import { followRotations } from '../trust/chain.js'
import { listQuery, type LocalFilter } from './filter.js'

export const PUSH_BATCH = 500
/** half the default request limit of PROTOCOL.md §1 */
const PUT_MAX_BYTES = 8 * 1024 * 1024
const BACKOFF_BASE_MS = 250
const BACKOFF_MAX_MS = 5 * 60_000
/** failures in a row after which a push peer's circuit is open (tried only at the long backoff or when it pings) */
export const CIRCUIT_AFTER = 5

export interface ReplicatorDeps {
  store: GraphStore
  /** this node's own base URL, sent as DIP-From on puts and in pings */
  selfUrl: () => string | undefined
  /** runs a pull of one peer with its filter (DipNode.pull); `signal` stops it cleanly (PullOptions.signal) */
  pullPeer: (url: string, filter: Record<string, unknown>, signal: AbortSignal) => Promise<unknown>
  /** attachment bytes for pushed models (inline, as in get answers) */
  withAttachments: (row: Row, xml: string) => Promise<string>
  pullIntervalSeconds?: number
  /** ms for one put exchange */
  timeoutMs?: number
}

interface PeerLoop {
  rec: PeerRecord
  client: DipClient
  /** bytes of models one put carries: PUT_MAX_BYTES, halved at each 413 the peer answers */
  putBytes: number
  running: boolean
  again: boolean
  timer: NodeJS.Timeout | undefined
  state: PushState
  /** the last pull's end, ms */
  lastPull: number
  pulling: boolean
  /** how the last scheduled or pinged pull failed (cleared by one that succeeds) */
  pullError: { at: string; error: string } | undefined
}

export interface PeerStatus {
  url: string
  push: boolean
  pull: boolean
  /** models stored here and not yet acknowledged by the peer (push peers; an upper bound: filters apply on delivery) */
  queue: number
  state: PushState | undefined
  circuitOpen: boolean
  /** pull peers: how the last pull round failed, if it did (a key change to re-pin, a peer away) */
  pullError: { at: string; error: string } | undefined
}

function jitter(ms: number): number {
  return Math.round(ms * (0.5 + Math.random()))
}

/** The list-filter query of a peer's filter (the same fields as the CLI's; checked when the peer was added). */
function queryOf(filter: Record<string, unknown> | undefined) {
  const f = (filter ?? {}) as LocalFilter
  return { model: f.model, ...listQuery(f) }
}

export class Replicator {
  readonly #deps: ReplicatorDeps
  readonly #peers = new Map<string, PeerLoop>()
  #unsubscribe: (() => void) | undefined
  #pullTimer: NodeJS.Timeout | undefined
  #stopped = false
  /** stops pulls in flight when the replicator stops: they commit their batches in flight and end */
  readonly #stopping = new AbortController()

  constructor(deps: ReplicatorDeps) {
    this.#deps = deps
  }

  async start(): Promise<void> {
    await this.reload()
    this.#unsubscribe = this.#deps.store.onStored(() => {
      for (const p of this.#peers.values()) if (p.rec.push) this.#kick(p)
    })
    const every = (this.#deps.pullIntervalSeconds ?? 60) * 1000
    this.#pullTimer = setInterval(() => {
      for (const p of this.#peers.values()) if (p.rec.pull && Date.now() - p.lastPull >= every) void this.#pull(p)
    }, Math.min(every, 5000))
    this.#pullTimer.unref()
  }

  /** Reads the peers again (after dipd peer add / remove) and starts what is new. */
  async reload(): Promise<void> {
    const recs = await this.#deps.store.peers()
    const seen = new Set<string>()
    for (const rec of recs) {
      if (!rec.push && !rec.pull) continue
      seen.add(rec.url)
      const have = this.#peers.get(rec.url)
      if (have) {
        const pushBefore = have.rec.push === true
        have.rec = rec
        // addPeer writes the outbox position when push is turned on: take it.
        have.state = (await this.#deps.store.pushState(rec.url)) ?? have.state
        if (rec.push && !pushBefore) this.#kick(have)
        if (rec.pull && have.lastPull === 0) void this.#pull(have)
        continue
      }
      const state = (await this.#deps.store.pushState(rec.url)) ?? { ackSeq: rec.push ? this.#deps.store.lastSeq : 0, pushed: 0, failures: 0 }
      // A peer that answers slowly is given up at the timeout too, not only one that keeps silent for it.
      const timeoutMs = this.#deps.timeoutMs ?? 10_000
      const loop: PeerLoop = { rec, client: new DipClient(rec.url, { timeoutMs, slowGraceMs: timeoutMs }), putBytes: PUT_MAX_BYTES, running: false, again: false, timer: undefined, state, lastPull: 0, pulling: false, pullError: undefined }
      this.#peers.set(rec.url, loop)
      if (rec.push) {
        await this.#deps.store.savePushState(rec.url, state)
        this.#kick(loop)
      }
      if (rec.pull) void this.#pull(loop)
    }
    for (const [url, p] of this.#peers) {
      if (seen.has(url)) continue
      clearTimeout(p.timer)
      p.timer = undefined
      this.#peers.delete(url) // a delivery in flight sees it is gone (#live) and stops there
    }
  }

  /** F140's ping: the peer at `url` is back. Deliver to it now and pull from it now. */
  ping(url: string): boolean {
    const p = this.#peers.get(url.replace(/\/+$/, ''))
    if (!p) return false
    p.state.failures = 0
    p.state.nextAttempt = undefined
    clearTimeout(p.timer)
    p.timer = undefined
    if (p.rec.push) this.#kick(p)
    if (p.rec.pull) void this.#pull(p)
    return true
  }

  /** Tells every peer this node is back (at start), so they flush their outboxes to it. */
  async pingAll(): Promise<void> {
    const self = this.#deps.selfUrl()
    if (!self) return
    await Promise.all(
      [...this.#peers.values()].map((p) =>
        p.client.call('ping', pingRequestXml(self)).catch(() => undefined),
      ),
    )
  }

  status(): PeerStatus[] {
    const last = this.#deps.store.lastSeq
    return [...this.#peers.values()].map((p) => ({
      url: p.rec.url,
      push: p.rec.push === true,
      pull: p.rec.pull === true,
      queue: p.rec.push ? Math.max(0, last - p.state.ackSeq) : 0,
      state: p.rec.push ? { ...p.state } : undefined,
      circuitOpen: p.state.failures >= CIRCUIT_AFTER,
      pullError: p.pullError,
    }))
  }

  async stop(): Promise<void> {
    this.#stopped = true
    this.#stopping.abort()
    this.#unsubscribe?.()
    clearInterval(this.#pullTimer)
    for (const p of this.#peers.values()) clearTimeout(p.timer)
    // Let deliveries and pulls in flight finish briefly; a delivery cut short is offered again later
    // (answered duplicate), a pull goes on from its checkpoint.
    const deadline = Date.now() + 2_000
    while ([...this.#peers.values()].some((p) => p.running || p.pulling) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  }

  /** False once the peer was removed (or the replicator stopped): its loop must not save or retry. */
  #live(p: PeerLoop): boolean {
    return !this.#stopped && this.#peers.get(p.rec.url) === p
  }

  #kick(p: PeerLoop): void {
    if (!this.#live(p)) return
    if (p.running) {
      p.again = true
      return
    }
    if (p.timer !== undefined) return // backing off: the timer will come
    void this.#deliver(p)
  }

  async #deliver(p: PeerLoop): Promise<void> {
    p.running = true
    try {
      do {
        p.again = false
        while (this.#live(p) && (await this.#sendBatch(p))) {
          /* more after this batch */
        }
      } while (p.again && this.#live(p))
      if (this.#live(p) && (p.state.failures > 0 || p.state.lastError)) {
        p.state.failures = 0
        p.state.lastError = undefined
        p.state.nextAttempt = undefined
        await this.#deps.store.savePushState(p.rec.url, p.state)
      }
    } catch (e) {
      if (!this.#live(p)) return
      p.state.failures++
      p.state.lastError = e instanceof DipError ? `${e.code}${e.peerCode ? ` (${e.peerCode})` : ''}: ${e.message}` : String(e)
      const delay = jitter(Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(p.state.failures - 1, 20)))
      p.state.nextAttempt = new Date(Date.now() + delay).toISOString()
      await this.#deps.store.savePushState(p.rec.url, p.state).catch(() => {})
      if (this.#live(p)) {
        p.timer = setTimeout(() => {
          p.timer = undefined
          this.#kick(p)
        }, delay)
        p.timer.unref()
      }
    } finally {
      p.running = false
    }
  }

  /** One put of the next models the peer has not acknowledged. True if there may be more. */
  async #sendBatch(p: PeerLoop): Promise<boolean> {
    const { store } = this.#deps
    const rows = await store.log(p.state.ackSeq, PUSH_BATCH)
    if (rows.length === 0) return false
    // The pin as it is now: a pull, `dipd peers repin` or a followed rotation may have moved it.
    const latest = await store.peer(p.rec.url)
    if (latest) p.rec = latest
    const q = queryOf(p.rec.filter)
    const pinnedKey = p.rec.key
    const send = rows.filter((r) => rowMatches(r, q) && r.o !== p.rec.url && !(pinnedKey !== undefined && r.o === pinnedKey))
    const xml = await store.modelXml(send)
    const chosen = new Map(send.map((r, n) => [r, xml[n]]))
    // Walk the log in order; stop before a put would grow past PUT_MAX_BYTES (attachments travel inline).
    const models: string[] = []
    let bytes = 0
    let ack = p.state.ackSeq
    let cut = false
    for (const r of rows) {
      const x = chosen.get(r)
      if (x !== undefined) {
        const served = await this.#deps.withAttachments(r, x)
        if (models.length > 0 && bytes + served.length > p.putBytes) {
          cut = true
          break
        }
        models.push(served)
        bytes += served.length
      }
      ack = r.s
    }
    if (models.length > 0) {
      // The answer is signed by the peer; its key must be the pinned one once there is a pin.
      p.client.expectKey = pinnedKey
      let answer
      try {
        answer = await p.client.success('put', putRequestXml(models), { 'DIP-From': this.#deps.selfUrl() })
      } catch (e) {
        if (!(e instanceof DipError)) throw e
        // A rotation the pinned key signed: follow it, as a pull does, and send again (what arrived is answered duplicate).
        if (e.code === 'DIP_PEER_KEY_CHANGED' && (await this.#followRotation(p))) return true
        // Over the peer's body limit: smaller puts from now on; a model over it alone is not for this peer (put is advice).
        if (e.code === 'DIP_PEER_ERROR' && e.peerCode === 'DIP_REQUEST_TOO_LARGE') {
          if (models.length > 1) {
            p.putBytes = Math.max(1, Math.floor(bytes / 2))
            return true
          }
          p.state.lastError = `${e.code} (${e.peerCode}): one model of ${bytes} bytes is over ${p.rec.url}'s limit; passed over`
        } else throw e
      }
      const results = answer ? readPutAnswer(answer.root) : undefined
      if (results && !results.ok) throw results.error
      if (results?.ok) {
        if (results.value.length !== models.length) throw new DipError('DIP_PEER_RESPONSE_INVALID', `${p.rec.url} answered ${results.value.length} rows for ${models.length} models`)
        p.state.pushed += results.value.filter((r) => r.status === 'stored').length
      }
      if (pinnedKey === undefined && p.client.expectKey !== undefined) {
        // Trust on first use, as for pulls.
        const now = await store.peer(p.rec.url)
        if (now && now.key === undefined) {
          p.rec = { ...now, key: p.client.expectKey, life: 1, pinnedAt: new Date().toISOString() }
          await store.savePeer(p.rec)
        }
      }
    }
    // Every model up to `ack` was answered (stored, duplicate or refused: put is advice) or is not for this peer.
    if (!this.#live(p)) return false
    p.state.ackSeq = ack
    await store.savePushState(p.rec.url, p.state)
    return cut || rows.length === PUSH_BATCH
  }

  /**
   * After DIP_PEER_KEY_CHANGED: whether the peer's manifest shows a chain of
   * rotations from the pinned key to the key it answers with now (PROTOCOL.md
   * §8); if so the pin moves there, as a pull's does. No chain: the error
   * stands, until the operator re-pins.
   */
  async #followRotation(p: PeerLoop): Promise<boolean> {
    const pin = p.rec
    if (pin.key === undefined) return false
    const manifest = await p.client.manifest().catch(() => undefined)
    if (manifest === undefined || manifest.node === pin.key) return false
    const moved = followRotations({ key: pin.key, life: pin.life }, manifest.rotations, manifest.node)
    if (!moved.ok) return false
    const latest = (await this.#deps.store.peer(pin.url)) ?? pin
    if (latest.key !== pin.key) return true // moved meanwhile (a pull, a repin): try with that
    p.rec = { ...latest, key: moved.value.key, life: moved.value.life }
    await this.#deps.store.savePeer(p.rec)
    return true
  }

  async #pull(p: PeerLoop): Promise<void> {
    if (p.pulling || this.#stopped) return
    p.pulling = true
    try {
      await this.#deps.pullPeer(p.rec.url, p.rec.filter ?? {}, this.#stopping.signal)
      p.pullError = undefined
    } catch (e) {
      // The next round tries again; `dipd peer list` shows why this one failed (DIP_PEER_KEY_CHANGED wants the operator).
      p.pullError = { at: new Date().toISOString(), error: e instanceof DipError ? `${e.code}${e.peerCode ? ` (${e.peerCode})` : ''}: ${e.message}` : String(e) }
    } finally {
      p.lastPull = Date.now()
      p.pulling = false
    }
  }
}
