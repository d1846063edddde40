// Verify before you write: every model that enters the store (put, pull,
// local authoring) passes here. Signatures are checked concurrently, off the
// main thread (verifyMany); the survivors are committed in one batch with the caller's
// checkpoint, and each model gets its row: stored, duplicate or rejected.
import type { RowCode } from '../errors.js'
import { verifyMany, type SignatureCheck } from '../crypto/ed25519.js'
import { badSignature, checkAttachments, signatureChecks, type Rejection, type StagedModel } from '../model/signed.js'
import { timeKeyFromMs } from '../protocol/time.js'
import type { Checkpoint, GraphStore } from './graph-store.js'

export type IngestResult = { status: 'stored' | 'duplicate'; model: StagedModel } | { status: 'rejected'; code: RowCode; message: string; model: StagedModel }

export type Policy = (m: StagedModel) => Rejection | undefined
/** how models came: authored here, put by a peer, pulled, fetched on a miss */
export type Via = 'local' | 'put' | 'pull' | 'fetch'

/** Where accept's time goes, added to by each call: checks and signatures, then the commit (its wait for the writer included). */
export interface IngestTiming {
  verifyMs: number
  commitMs: number
}

export interface IngestOptions {
  /** refuse update-times further ahead of this node's clock (PROTOCOL.md §5); default 15 minutes */
  maxFutureMs?: number
  /** a refusal policy (sender bans, …): a code to reject with, or undefined */
  policy?: Policy
}

export const DEFAULT_MAX_FUTURE_MS = 15 * 60 * 1000

export class Ingest {
  readonly #store: GraphStore
  readonly #maxFutureMs: number
  readonly #policy: IngestOptions['policy']
  /** sender keys (hex) this node refuses everywhere (dipd ban) */
  readonly banned = new Set<string>()
  /** counts stored models (metrics) */
  onStored: ((via: Via, n: number) => void) | undefined

  /** the clock-skew setting, published in the manifest */
  get maxFutureSeconds(): number {
    return Math.round(this.#maxFutureMs / 1000)
  }

  constructor(store: GraphStore, options: IngestOptions = {}) {
    this.#store = store
    this.#maxFutureMs = options.maxFutureMs ?? DEFAULT_MAX_FUTURE_MS
    this.#policy = options.policy
  }

  /**
   * `policy` adds a caller's own refusals (a pull's per-peer sender policy)
   * to the node's; `origin` names where the models came from (push does not
   * send them back there); `checkpoint` commits with them.
   */
  async accept(models: StagedModel[], opts: { checkpoint?: Checkpoint; policy?: Policy; origin?: string; via?: Via; timing?: IngestTiming } = {}): Promise<IngestResult[]> {
    const { checkpoint, policy, origin, timing } = opts
    const t0 = timing ? performance.now() : 0
    const limit = timeKeyFromMs(Date.now() + this.#maxFutureMs)
    // The cheap checks first; signatures only for what passes them, all in one verifyMany.
    const verdicts: (Rejection | undefined)[] = new Array(models.length)
    const checks: SignatureCheck[] = []
    /** the model of each check */
    const of: number[] = []
    for (let n = 0; n < models.length; n++) {
      const m = models[n]!
      const refused =
        m.meta.updateTimeKey > limit
          ? { code: 'DIP_TIME_IN_FUTURE' as const, message: 'update-time is too far in the future' }
          : this.banned.has(m.id.key)
            ? { code: 'DIP_REFUSED' as const, message: 'the sender key is banned here' }
            : (this.#policy?.(m) ?? policy?.(m) ?? checkAttachments(m))
      const mine = refused ?? signatureChecks(m)
      if (!Array.isArray(mine)) verdicts[n] = mine
      else {
        for (const c of mine) {
          checks.push(c)
          of.push(n)
        }
      }
    }
    if (checks.length > 0) {
      const ok = await verifyMany(checks)
      for (let i = 0; i < ok.length; i++) {
        const n = of[i]!
        if (ok[i] !== 1) verdicts[n] ??= badSignature(models[n]!)
      }
    }
    const good: StagedModel[] = []
    for (let n = 0; n < models.length; n++) if (verdicts[n] === undefined) good.push(models[n]!)
    const t1 = timing ? performance.now() : 0
    const statuses = await this.#store.commit(good, checkpoint, origin)
    if (timing) {
      timing.verifyMs += t1 - t0
      timing.commitMs += performance.now() - t1
    }
    let stored = 0
    for (const x of statuses) if (x === 'stored') stored++
    if (stored > 0) this.onStored?.(opts.via ?? 'put', stored)
    let g = 0
    const results = new Array<IngestResult>(models.length)
    for (let n = 0; n < models.length; n++) {
      const model = models[n]!
      const v = verdicts[n]
      if (v) {
        results[n] = { status: 'rejected', code: v.code, message: v.message, model }
        continue
      }
      const s = statuses[g++]!
      results[n] = s === 'stale' ? { status: 'rejected', code: 'DIP_MODEL_STALE', message: 'a newer version is held', model } : { status: s, model }
    }
    return results
  }
}
