// The only module that touches signature libraries.
//
// Signing and single checks: Node's built-in crypto (OpenSSL), with one
// KeyObject cached per public key (re-creating it per call halves the rate).
// Bulk checks (verifyMany, verifyAsync): batches of signatures go to a worker thread that
// checks them with libsodium (sodium-native), twice as fast as OpenSSL here;
// whatever libsodium refuses is checked again with OpenSSL on libuv's thread
// pool, so the answer is always OpenSSL's (PROTOCOL.md §4: "as OpenSSL
// verifies"). libsodium is the stricter of the two (it also refuses keys and
// R of small order), so its yes is OpenSSL's yes; tests check both ways.
// Messages over 64 KB (whole answers) go to OpenSSL directly. A worker that
// fails is started again after a pause, OpenSSL answering meanwhile; without
// libsodium (sodium-native does not load) every check is OpenSSL's.
// Portable path: @noble/ed25519 with RFC 8032 strict checks (zip215: false),
// cross-checked against the built-in one in tests.
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto'
import { Worker } from 'node:worker_threads'
import * as noble from '@noble/ed25519'
import type { BatchAnswer, BatchMessage } from './verify-worker.js'

noble.hashes.sha512 = (message: Uint8Array) => new Uint8Array(createHash('sha512').update(message).digest())

const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const KEY_CACHE_MAX = 50_000
const keyCache = new Map<string, KeyObject>()

/** A public KeyObject for a 64-hex key, cached. Throws TypeError on a malformed key (callers validate ids first). */
export function publicKeyObject(keyHex: string): KeyObject {
  let k = keyCache.get(keyHex)
  if (k === undefined) {
    if (!/^[0-9a-f]{64}$/.test(keyHex)) throw new TypeError('public key must be 64 lowercase hex digits')
    k = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, Buffer.from(keyHex, 'hex')]), format: 'der', type: 'spki' })
    if (keyCache.size >= KEY_CACHE_MAX) keyCache.clear()
    // A key read from an answer is a slice of the whole body: the cache keeps a copy, not the body.
    keyCache.set(Buffer.from(keyHex, 'latin1').toString('latin1'), k)
  }
  return k
}

export interface NodeKeyPair {
  /** 32-byte seed (RFC 8032 secret key) */
  readonly secretKey: Uint8Array
  /** 64 lowercase hex digits */
  readonly publicKeyHex: string
  readonly privateKey: KeyObject
}

export function keyPairFromSecret(secretKey: Uint8Array): NodeKeyPair {
  if (secretKey.length !== 32) throw new TypeError('an ed25519 secret key is 32 bytes')
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, secretKey]), format: 'der', type: 'pkcs8' })
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' })
  const publicKeyHex = Buffer.from(jwk.x!, 'base64url').toString('hex')
  return { secretKey: new Uint8Array(secretKey), publicKeyHex, privateKey }
}

/**
 * A new key pair from 32 random bytes. Not through generateKeyPairSync: on
 * Node 20, exporting a key it made can deadlock the thread, when a garbage
 * collection inside the export destroys the generating job, which takes the
 * lock the export holds (it hung a CI run; test/unit/crypto.test.ts shows it).
 */
export function generateKeyPair(): NodeKeyPair {
  return keyPairFromSecret(randomBytes(32))
}

export function sign(pair: NodeKeyPair, message: Uint8Array): Uint8Array {
  return nodeSign(null, message, pair.privateKey)
}

/** The order of ed25519's base point. */
const L = 2n ** 252n + 27742317777372353535851937790883648493n
/** A little-endian byte string as a number. */
const littleEndian = (b: Uint8Array): bigint => BigInt('0x' + Buffer.from(b).reverse().toString('hex'))
/** RFC 8032 §5.1.5: the secret scalar of a 32-byte seed's SHA-512 (its first half, clamped). */
function clamped(h: Uint8Array): bigint {
  const c = Buffer.from(h.subarray(0, 32))
  c[0]! &= 248
  c[31]! &= 127
  c[31]! |= 64
  return littleEndian(c)
}
/** Per key pair: its secret scalar a (mod L), the nonce prefix (RFC 8032 §5.1.6) and A's 32 bytes. */
const expanded = new WeakMap<NodeKeyPair, { a: bigint; prefix: Buffer; publicKey: Buffer }>()
/** Answers this long or longer are signed with signOnePass (app.ts, responseSignature). */
export const ONE_PASS_SIGN_MIN = 64 * 1024

/**
 * An ed25519 signature of a long message with one SHA-512 pass over it
 * instead of RFC 8032's two. The nonce r is not SHA-512(prefix || M) but
 * SHA-512(prefix || m) for m, 32 fresh random bytes, and R = rB is read off
 * OpenSSL's own signature of m by the same key (whose R is that r times B;
 * that signature is thrown away). The signature (R, S = r +
 * SHA-512(R || A || M)·a mod L) is an ordinary one: verifiers cannot tell
 * how r was chosen, only that it must be secret and never repeat, as a hash
 * of the secret prefix and fresh random bytes is. It is not deterministic:
 * two signatures of one message differ. (A nonce from a generated key pair,
 * as before 2026-11-24, could deadlock: see generateKeyPair.)
 */
export function signOnePass(pair: NodeKeyPair, message: Uint8Array): Uint8Array {
  let k = expanded.get(pair)
  if (k === undefined) {
    const h = createHash('sha512').update(pair.secretKey).digest()
    k = { a: clamped(h) % L, prefix: h.subarray(32), publicKey: Buffer.from(pair.publicKeyHex, 'hex') }
    expanded.set(pair, k)
  }
  const m = randomBytes(32)
  const R = nodeSign(null, m, pair.privateKey).subarray(0, 32)
  const r = littleEndian(createHash('sha512').update(k.prefix).update(m).digest()) % L
  const h = littleEndian(createHash('sha512').update(R).update(k.publicKey).update(message).digest()) % L
  const S = Buffer.from(((r + h * k.a) % L).toString(16).padStart(64, '0'), 'hex').reverse()
  return Buffer.concat([R, S])
}

/** Synchronous strict verify; false for any malformed input. */
export function verify(keyHex: string, message: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== 64) return false
  try {
    return nodeVerify(null, message, publicKeyObject(keyHex), signature)
  } catch {
    return false
  }
}

/** OpenSSL's check on libuv's thread pool; many in flight use every core. */
export function verifyOpenSsl(keyHex: string, message: Uint8Array, signature: Uint8Array): Promise<boolean> {
  if (signature.length !== 64) return Promise.resolve(false)
  let key: KeyObject
  try {
    key = publicKeyObject(keyHex)
  } catch {
    return Promise.resolve(false)
  }
  return new Promise((resolve) => {
    nodeVerify(null, message, key, signature, (err, valid) => resolve(!err && valid))
  })
}

/** A message to the worker goes out at once when it holds this many checks, else at the end of the event-loop turn. */
const BATCH_MAX = 256
/** Longer messages (whole answers, §8) go to OpenSSL at once: its SHA-512 is faster than libsodium's from ~100 KB on. */
const LONG_MESSAGE = 64 * 1024
const KEY_RE = /^[0-9a-f]{64}$/
const SIG_HEX_RE = /^[0-9a-f]{128}$/

/** One ed25519 check: a 64-hex public key, the signed bytes, the signature (64 bytes, or 128 lowercase hex digits). */
export interface SignatureCheck {
  key: string
  message: Uint8Array
  signature: Uint8Array | string
}

const wellFormed = (c: SignatureCheck) => KEY_RE.test(c.key) && (typeof c.signature === 'string' ? SIG_HEX_RE.test(c.signature) : c.signature.length === 64)
const signatureBytes = (s: Uint8Array | string) => (typeof s === 'string' ? Buffer.from(s, 'hex') : s)

/**
 * The checks of one verifyMany call, answered as the worker or OpenSSL
 * gives them: one promise and one answer array per call, however many
 * checks (a pull checks hundreds per answer; a promise, a closure and a
 * signature buffer per check lived until the worker answered).
 */
interface Group {
  checks: readonly SignatureCheck[]
  /** indexes of the checks that go to the worker, in the order they are written */
  sent: number[]
  ok: Uint8Array
  left: number
  resolve(ok: Uint8Array): void
}

/** A failed worker is started again after this long, doubled after each failure in a row, at most WORKER_RETRY_MAX. */
const WORKER_RETRY_MS = 1000
const WORKER_RETRY_MAX = 60_000
/** A batch the worker has not answered after this long means it hangs: it is ended like a failed one (a batch of BATCH_MAX checks takes ~12 ms). */
const WORKER_HUNG_MS = 30_000

/**
 * Collects checks into batches for the libsodium worker (see the header).
 * A worker that fails (throws, exits, dies) is started again for later
 * batches after a pause that doubles with each failure in a row (1 s up to
 * a minute; a batch it answers resets it); meanwhile, and for what it held,
 * OpenSSL answers. A worker that holds a batch unanswered for 30 s is taken
 * for hung and ended the same way, so that no check waits for ever. Without
 * libsodium (sodium-native does not load), or once closed, OpenSSL answers
 * everything.
 */
export class BatchVerifier {
  readonly #workerUrl: URL
  readonly #retryMs: number
  readonly #hungMs: number
  #worker: Worker | undefined
  /** for good: libsodium is unavailable, or the verifier is closed */
  #broken = false
  /** no worker is started before this time (ms since the epoch) */
  #retryAt = 0
  #retryDelay: number
  #failures = 0
  #workerChecks = 0
  #queue: Group[] = []
  #count = 0
  #bytes = 0
  #scheduled = false
  /** batches the worker holds, oldest first, with when they were sent (performance.now()) */
  readonly #pending = new Map<number, { groups: Group[]; at: number }>()
  #nextId = 1
  /** fires when the oldest batch held may have waited hungMs */
  #watchdog: NodeJS.Timeout | undefined

  /**
   * `workerUrl`: the worker script (tests give broken ones); `retryMs`: the
   * first pause before a failed worker is started again; `hungMs`: how long
   * a batch may go unanswered before the worker is taken for hung.
   */
  constructor(workerUrl = new URL('./verify-worker.js', import.meta.url), options: { retryMs?: number; hungMs?: number } = {}) {
    this.#workerUrl = workerUrl
    this.#retryMs = options.retryMs ?? WORKER_RETRY_MS
    this.#hungMs = options.hungMs ?? WORKER_HUNG_MS
    this.#retryDelay = this.#retryMs
  }

  /** Which library gives the first answer now: libsodium, or OpenSSL alone (no libsodium, or a failed worker's pause). */
  get engine(): 'libsodium' | 'openssl' {
    return this.#broken || (this.#worker === undefined && Date.now() < this.#retryAt) ? 'openssl' : 'libsodium'
  }

  /** How many times the worker failed, and how many checks it answered. */
  get stats(): { workerFailures: number; workerChecks: number } {
    return { workerFailures: this.#failures, workerChecks: this.#workerChecks }
  }

  verify(key: string, message: Uint8Array, signature: Uint8Array): Promise<boolean> {
    return this.verifyMany([{ key, message, signature }]).then((ok) => ok[0] === 1)
  }

  /** One byte per check, 1 where the signature verifies (OpenSSL's answer, see the header); 0 for malformed input. */
  verifyMany(checks: readonly SignatureCheck[]): Promise<Uint8Array> {
    // The work is done here, not in the promise's executor: a closure made per call has its optimised code compiled again and again.
    let resolve!: (ok: Uint8Array) => void
    const done = new Promise<Uint8Array>((r) => (resolve = r))
    const group: Group = { checks, sent: [], ok: new Uint8Array(checks.length), left: checks.length + 1, resolve }
    for (let n = 0; n < checks.length; n++) {
      const c = checks[n]!
      if (!wellFormed(c)) this.#settle(group, n, false)
      else if (this.#broken || c.message.length > LONG_MESSAGE) this.#openSsl(group, n)
      else {
        group.sent.push(n)
        this.#bytes += 100 + c.message.length
      }
    }
    if (group.sent.length > 0) {
      this.#queue.push(group)
      this.#count += group.sent.length
      if (this.#count >= BATCH_MAX) this.#flush()
      else if (!this.#scheduled) {
        this.#scheduled = true
        setImmediate(() => {
          this.#scheduled = false
          this.#flush()
        })
      }
    }
    // The extra count in `left` kept the group open while its checks were placed.
    this.#release(group)
    return done
  }

  #settle(group: Group, n: number, ok: boolean): void {
    if (ok) group.ok[n] = 1
    this.#release(group)
  }

  #release(group: Group): void {
    if (--group.left === 0) group.resolve(group.ok)
  }

  #flush(): void {
    const groups = this.#queue
    if (groups.length === 0) return
    const count = this.#count
    const buf = new ArrayBuffer(this.#bytes)
    this.#queue = []
    this.#count = 0
    this.#bytes = 0
    const worker = this.#start()
    if (!worker) {
      for (const g of groups) for (const n of g.sent) this.#openSsl(g, n)
      return
    }
    const bytes = Buffer.from(buf)
    let at = 0
    for (const g of groups) {
      for (const n of g.sent) {
        const c = g.checks[n]!
        bytes.writeUInt32LE(c.message.length, at)
        bytes.write(c.key, at + 4, 32, 'hex')
        if (typeof c.signature === 'string') bytes.write(c.signature, at + 36, 64, 'hex')
        else bytes.set(c.signature, at + 36)
        bytes.set(c.message, at + 100)
        at += 100 + c.message.length
      }
    }
    const id = this.#nextId++
    this.#pending.set(id, { groups, at: performance.now() })
    worker.ref()
    worker.postMessage({ id, count, buf } satisfies BatchMessage, [buf])
    this.#watch()
  }

  /** Arms the watchdog for the oldest batch held, unless it is armed or nothing is held. */
  #watch(): void {
    if (this.#watchdog !== undefined) return
    const oldest = this.#pending.values().next().value
    if (oldest === undefined) return
    this.#watchdog = setTimeout(() => {
      this.#watchdog = undefined
      const first = this.#pending.values().next().value
      if (first !== undefined && performance.now() - first.at >= this.#hungMs) this.#lost(false)
      else this.#watch()
    }, Math.max(0, oldest.at + this.#hungMs - performance.now()))
    // Never keeps the process alive: the worker's ref does while it holds batches.
    this.#watchdog.unref()
  }

  /** Disarms the watchdog: nothing is held any more. */
  #unwatch(): void {
    clearTimeout(this.#watchdog)
    this.#watchdog = undefined
  }

  #start(): Worker | undefined {
    if (this.#worker || this.#broken || Date.now() < this.#retryAt) return this.#worker
    try {
      // The worker allocates only a few small objects per batch: a 2 MB young
      // generation instead of V8's default keeps ~6 MB out of the process's RSS.
      const w = new Worker(this.#workerUrl, { resourceLimits: { maxYoungGenerationSizeMb: 2 } })
      // Only the current worker's events count: a failed one still says 'exit' after its 'error'.
      w.on('message', (m: BatchAnswer | { unavailable: string }) => {
        if (this.#worker !== w) return
        if ('unavailable' in m) this.#lost(true)
        else this.#answer(m)
      })
      w.on('error', () => this.#worker === w && this.#lost(false))
      w.on('exit', () => this.#worker === w && this.#lost(false))
      w.unref()
      this.#worker = w
    } catch {
      this.#broken = true
    }
    return this.#worker
  }

  #answer({ id, ok }: BatchAnswer): void {
    const groups = this.#pending.get(id)?.groups
    if (!groups) return
    this.#pending.delete(id)
    if (this.#pending.size === 0) {
      this.#worker?.unref()
      this.#unwatch()
    }
    this.#retryDelay = this.#retryMs
    this.#workerChecks += ok.length
    let i = 0
    for (const g of groups) {
      for (const n of g.sent) {
        if (ok[i++] === 1) this.#settle(g, n, true)
        else this.#openSsl(g, n)
      }
    }
  }

  #openSsl(g: Group, n: number): void {
    const c = g.checks[n]!
    void verifyOpenSsl(c.key, c.message, signatureBytes(c.signature)).then((ok) => this.#settle(g, n, ok))
  }

  /** Ends the worker for good (answers still due are given by OpenSSL). */
  async close(): Promise<void> {
    this.#lost(true)
  }

  /**
   * The worker is gone: what it held is checked by OpenSSL, and so is all
   * that follows, for good (`forGood`) or until the pause is over.
   */
  #lost(forGood: boolean): void {
    if (this.#broken) return
    const worker = this.#worker
    this.#worker = undefined
    if (forGood) this.#broken = true
    else {
      this.#failures++
      this.#retryAt = Date.now() + this.#retryDelay
      this.#retryDelay = Math.min(this.#retryDelay * 2, WORKER_RETRY_MAX)
    }
    void worker?.terminate()
    this.#unwatch()
    for (const { groups } of this.#pending.values()) for (const g of groups) for (const n of g.sent) this.#openSsl(g, n)
    this.#pending.clear()
  }
}

const batchVerifier = new BatchVerifier()

/** Which library verifyAsync asks first (see BatchVerifier.engine). */
export const verifyEngine = (): 'libsodium' | 'openssl' => batchVerifier.engine

/** How many times verifyAsync's worker failed (it is started again, see BatchVerifier). */
export const verifyWorkerFailures = (): number => batchVerifier.stats.workerFailures

/**
 * Strict verify for bulk use, off the main thread: libsodium in a worker,
 * OpenSSL for whatever it refuses (see the header). False for any malformed input.
 */
export function verifyAsync(keyHex: string, message: Uint8Array, signature: Uint8Array): Promise<boolean> {
  return batchVerifier.verify(keyHex, message, signature)
}

/** verifyAsync for many checks at once: one byte per check, 1 where it verifies. */
export function verifyMany(checks: readonly SignatureCheck[]): Promise<Uint8Array> {
  return batchVerifier.verifyMany(checks)
}

/** The portable implementation (RFC 8032 strict). */
export const portable = {
  publicKey(secretKey: Uint8Array): Uint8Array {
    return noble.getPublicKey(secretKey)
  },
  sign(secretKey: Uint8Array, message: Uint8Array): Uint8Array {
    return noble.sign(message, secretKey)
  },
  verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
    try {
      return noble.verify(signature, message, publicKey, { zip215: false })
    } catch {
      return false
    }
  },
}

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex')
}
