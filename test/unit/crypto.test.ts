import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import sodium from 'sodium-native'
import { BatchVerifier, generateKeyPair, keyPairFromSecret, portable, sign, signOnePass, verify, verifyAsync, verifyMany, type SignatureCheck } from '../../src/crypto/ed25519.js'
import { FIXTURES, tempDir } from '../helpers.js'

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
const vectors = JSON.parse(readFileSync(join(FIXTURES, 'signatures', 'rfc8032.json'), 'utf8')).vectors as {
  secretKey: string
  publicKey: string
  message: string
  signature: string
}[]

test('RFC 8032 vectors: built-in and portable implementations derive, sign and verify alike', async () => {
  for (const v of vectors) {
    const sk = Buffer.from(v.secretKey, 'hex')
    const msg = Buffer.from(v.message, 'hex')
    const sig = Buffer.from(v.signature, 'hex')
    const pair = keyPairFromSecret(sk)
    assert.equal(pair.publicKeyHex, v.publicKey)
    assert.equal(hex(portable.publicKey(sk)), v.publicKey)
    assert.equal(hex(sign(pair, msg)), v.signature)
    assert.equal(hex(portable.sign(sk, msg)), v.signature)
    assert.equal(verify(v.publicKey, msg, sig), true)
    assert.equal(await verifyAsync(v.publicKey, msg, sig), true)
    assert.equal(portable.verify(Buffer.from(v.publicKey, 'hex'), msg, sig), true)
  }
})

test('any flipped bit of message or signature fails on both implementations', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), fc.nat(), fc.boolean(), (msg, bitSeed, inSig) => {
      const pair = keyPairFromSecret(Buffer.from(vectors[0]!.secretKey, 'hex'))
      const sig = Buffer.from(sign(pair, msg))
      const m = Buffer.from(msg)
      const target = inSig || m.length === 0 ? sig : m
      const bit = bitSeed % (target.length * 8)
      target[bit >> 3]! ^= 1 << (bit & 7)
      assert.equal(verify(pair.publicKeyHex, m, sig), false)
      assert.equal(portable.verify(Buffer.from(pair.publicKeyHex, 'hex'), m, sig), false)
    }),
    { numRuns: 200 },
  )
})

test('signOnePass: ordinary ed25519 signatures that OpenSSL, libsodium, noble and verifyMany accept; a fresh nonce each time; a flipped bit fails', async () => {
  const L = 2n ** 252n + 27742317777372353535851937790883648493n
  const pairs = [keyPairFromSecret(Buffer.from(vectors[0]!.secretKey, 'hex')), generateKeyPair(), generateKeyPair()]
  const checks: SignatureCheck[] = []
  const Rs = new Set<string>()
  for (const [n, len] of [0, 1, 63, 64, 1000, 65_536, 300_001, 1_600_000].entries()) {
    const pair = pairs[n % pairs.length]!
    const msg = randomBytes(len)
    const sig = Buffer.from(signOnePass(pair, msg))
    const again = Buffer.from(signOnePass(pair, msg))
    assert.equal(sig.length, 64)
    assert.notEqual(hex(sig), hex(again), 'not deterministic: a new nonce per signature')
    for (const s of [sig, again]) {
      Rs.add(hex(s.subarray(0, 32)))
      assert.ok(BigInt('0x' + hex(Buffer.from(s.subarray(32)).reverse())) < L, 'S is reduced mod L')
      assert.equal(verify(pair.publicKeyHex, msg, s), true, `OpenSSL, ${len} B`)
      assert.equal(portable.verify(Buffer.from(pair.publicKeyHex, 'hex'), msg, s), true, `noble, ${len} B`)
      assert.equal(sodium.crypto_sign_verify_detached(s, msg, Buffer.from(pair.publicKeyHex, 'hex')), true, `libsodium, ${len} B`)
      checks.push({ key: pair.publicKeyHex, message: msg, signature: s })
    }
    const flipped = Buffer.from(sig)
    flipped[(n * 7) % 64]! ^= 1 << n % 8
    assert.equal(verify(pair.publicKeyHex, msg, flipped), false)
    if (len > 0) {
      const m2 = Buffer.from(msg)
      m2[len >> 1]! ^= 1
      assert.equal(verify(pair.publicKeyHex, m2, sig), false)
    }
    assert.equal(verify(pairs[(n + 1) % pairs.length]!.publicKeyHex, msg, sig), false, 'another key')
  }
  assert.equal(Rs.size, 16, 'no nonce point repeats')
  assert.deepEqual([...(await verifyMany(checks))], checks.map(() => 1))
})

test('built-in and portable agree on random keys, messages and forged signatures', () => {
  for (let i = 0; i < 50; i++) {
    const pair = generateKeyPair()
    const msg = randomBytes(i * 7)
    const sig = sign(pair, msg)
    assert.equal(hex(portable.sign(pair.secretKey, msg)), hex(sig), 'deterministic signatures match')
    const forged = i % 2 === 0 ? randomBytes(64) : sig
    const other = i % 2 === 0 ? pair.publicKeyHex : generateKeyPair().publicKeyHex
    assert.equal(verify(other, msg, forged), portable.verify(Buffer.from(other, 'hex'), msg, forged))
  }
})

test('strict RFC 8032: a non-canonical S (S + L) is refused by both', () => {
  const L = (1n << 252n) + 27742317777372353535851937790883648493n
  const pair = keyPairFromSecret(Buffer.from(vectors[1]!.secretKey, 'hex'))
  const msg = Buffer.from('72', 'hex')
  const sig = Buffer.from(sign(pair, msg))
  const s = BigInt('0x' + Buffer.from(sig.subarray(32)).reverse().toString('hex'))
  const s2 = s + L
  assert.ok(s2 < 1n << 256n)
  const le = Buffer.from(s2.toString(16).padStart(64, '0'), 'hex').reverse()
  const bad = Buffer.concat([sig.subarray(0, 32), le])
  assert.equal(verify(pair.publicKeyHex, msg, bad), false)
  assert.equal(portable.verify(Buffer.from(pair.publicKeyHex, 'hex'), msg, bad), false)
})

test('malformed inputs verify false instead of throwing', async () => {
  const pair = generateKeyPair()
  assert.equal(verify(pair.publicKeyHex, Buffer.from('x'), Buffer.alloc(63)), false)
  assert.equal(await verifyAsync(pair.publicKeyHex, Buffer.from('x'), Buffer.alloc(65)), false)
  assert.equal(verify('zz'.repeat(32), Buffer.from('x'), Buffer.alloc(64)), false)
  assert.equal(await verifyAsync('00'.repeat(31), Buffer.from('x'), Buffer.alloc(64)), false)
})

/** Cases where libsodium and OpenSSL may differ: a key and R of small order (the identity point, anyone can forge with it), S + L, bit flips. */
function edgeCases(): { key: string; msg: Buffer; sig: Buffer; label: string }[] {
  const identity = Buffer.alloc(32)
  identity[0] = 1
  const base = Buffer.from('5866666666666666666666666666666666666666666666666666666666666666', 'hex')
  const one = Buffer.alloc(32)
  one[0] = 1
  const out = [{ key: identity.toString('hex'), msg: Buffer.from('anything'), sig: Buffer.concat([base, one]), label: 'small-order key, R = B, S = 1' }]
  const pair = keyPairFromSecret(Buffer.from(vectors[1]!.secretKey, 'hex'))
  const msg = Buffer.from('72', 'hex')
  const sig = Buffer.from(sign(pair, msg))
  const L = (1n << 252n) + 27742317777372353535851937790883648493n
  const s = BigInt('0x' + Buffer.from(sig.subarray(32)).reverse().toString('hex')) + L
  out.push({ key: pair.publicKeyHex, msg, sig: Buffer.concat([sig.subarray(0, 32), Buffer.from(s.toString(16).padStart(64, '0'), 'hex').reverse()]), label: 'S + L' })
  out.push({ key: pair.publicKeyHex, msg, sig: Buffer.concat([identity, sig.subarray(32)]), label: 'R of small order' })
  for (let i = 0; i < 40; i++) {
    const p = generateKeyPair()
    // Mostly model-sized; some answer-sized (those go to OpenSSL directly).
    const m = randomBytes(i % 10 === 9 ? 100_000 + i : 1 + i * 37)
    const good = Buffer.from(sign(p, m))
    out.push({ key: p.publicKeyHex, msg: m, sig: good, label: `valid ${i}` })
    const bad = Buffer.from(good)
    bad[i % 64]! ^= 1 << i % 8
    out.push({ key: p.publicKeyHex, msg: m, sig: bad, label: `flipped ${i}` })
  }
  return out
}

test('verifyAsync (libsodium in a worker, OpenSSL for what it refuses) answers exactly as OpenSSL, in batches of any size', { timeout: 30_000 }, async () => {
  const cases = edgeCases()
  // Over BATCH_MAX checks at once: several batches, answered in order.
  const many = Array.from({ length: 700 }, (_, n) => cases[n % cases.length]!)
  const got = await Promise.all(many.map((c) => verifyAsync(c.key, c.msg, c.sig)))
  many.forEach((c, n) => assert.equal(got[n], verify(c.key, c.msg, c.sig), c.label))
  // The fallback is not idle: OpenSSL takes the small-order key that libsodium refuses.
  const weak = cases[0]!
  assert.equal(verify(weak.key, weak.msg, weak.sig), true)
  assert.equal(sodium.crypto_sign_verify_detached(weak.sig, weak.msg, Buffer.from(weak.key, 'hex')), false)
})

test('verifyMany answers each check of a batch as OpenSSL does: hex or byte signatures, malformed ones, long messages, calls that interleave', { timeout: 30_000 }, async () => {
  const cases = edgeCases()
  const pair = generateKeyPair()
  const long = Buffer.alloc(100_000, 7) // over the worker's limit: OpenSSL at once
  const longSig = Buffer.from(sign(pair, long))
  const checks: SignatureCheck[] = [
    ...cases.map((c, n) => ({ key: c.key, message: c.msg, signature: n % 2 === 0 ? c.sig : Buffer.from(c.sig).toString('hex') })),
    { key: pair.publicKeyHex, message: long, signature: longSig },
    { key: pair.publicKeyHex, message: long, signature: longSig.toString('hex').toUpperCase() }, // not lowercase hex
    { key: pair.publicKeyHex, message: long, signature: longSig.subarray(1) },
    { key: 'zz'.repeat(32), message: long, signature: longSig },
  ]
  const expected = [...cases.map((c) => verify(c.key, c.msg, c.sig)), true, false, false, false]
  const [all, firstHalf, none] = await Promise.all([verifyMany(checks), verifyMany(checks.slice(0, 300)), verifyMany([])])
  assert.deepEqual([...all].map((b) => b === 1), expected)
  assert.deepEqual([...firstHalf].map((b) => b === 1), expected.slice(0, 300))
  assert.equal(none.length, 0)
})

test("libsodium's yes is OpenSSL's yes on random forgeries and valid signatures", () => {
  for (const c of edgeCases()) {
    if (sodium.crypto_sign_verify_detached(c.sig, c.msg, Buffer.from(c.key, 'hex'))) assert.equal(verify(c.key, c.msg, c.sig), true, c.label)
  }
})

/** A good signature, a flipped one and one of another message, asked of `v`: [true, false, false] when it answers right. */
function threeChecks(v: BatchVerifier): Promise<boolean[]> {
  const pair = generateKeyPair()
  const msg = Buffer.from('hello')
  const sig = Buffer.from(sign(pair, msg))
  const bad = Buffer.from(sig)
  bad[0]! ^= 1
  return Promise.all([v.verify(pair.publicKeyHex, msg, sig), v.verify(pair.publicKeyHex, msg, bad), v.verify(pair.publicKeyHex, Buffer.from('other'), sig)])
}

test('a batch verifier whose worker fails or never starts answers with OpenSSL', { timeout: 30_000 }, async () => {
  for (const url of [new URL('data:text/javascript,process.exit(3)'), new URL('data:text/javascript,throw new Error("no")'), new URL('file:///nonexistent/verify-worker.js')]) {
    const v = new BatchVerifier(url, { retryMs: 600_000 })
    assert.equal(v.engine, 'libsodium')
    assert.deepEqual(await threeChecks(v), [true, false, false], url.href)
    assert.equal(v.engine, 'openssl', url.href)
    assert.deepEqual(await threeChecks(v), [true, false, false], 'later checks too')
    await v.close()
  }
})

test('a batch verifier starts its worker again after it failed, OpenSSL answering meanwhile', { timeout: 30_000 }, async () => {
  const dir = await tempDir()
  // The worker dies on its first batch; started again, it is the real one.
  process.env.DIPD_TEST_CRASH_ONCE = join(dir.path, 'crashed')
  const v = new BatchVerifier(new URL('../crash-once-worker.js', import.meta.url), { retryMs: 50 })
  try {
    assert.deepEqual(await threeChecks(v), [true, false, false], 'the batch the worker held')
    assert.deepEqual(v.stats, { workerFailures: 1, workerChecks: 0 })
    await new Promise((r) => setTimeout(r, 100))
    assert.equal(v.engine, 'libsodium', 'the pause is over')
    assert.deepEqual(await threeChecks(v), [true, false, false], 'the next batch')
    assert.deepEqual(v.stats, { workerFailures: 1, workerChecks: 3 }, 'answered by the new worker')
  } finally {
    delete process.env.DIPD_TEST_CRASH_ONCE
    await v.close()
    await dir.remove()
  }
})

test('a batch verifier whose worker says libsodium is unavailable answers with OpenSSL', { timeout: 30_000 }, async () => {
  const v = new BatchVerifier(new URL(`data:text/javascript,${encodeURIComponent("import { parentPort } from 'node:worker_threads'; parentPort.postMessage({ unavailable: 'test' })")}`))
  const pair = generateKeyPair()
  const msg = Buffer.from('hello')
  assert.equal(await v.verify(pair.publicKeyHex, msg, Buffer.from(sign(pair, msg))), true)
  assert.equal(v.engine, 'openssl')
})

test('a batch verifier whose worker holds a batch too long takes it for hung: it is ended and OpenSSL answers', { timeout: 30_000 }, async () => {
  // A worker that takes batches and never answers.
  const silent = new URL(`data:text/javascript,${encodeURIComponent("import { parentPort } from 'node:worker_threads'; parentPort.on('message', () => {})")}`)
  const v = new BatchVerifier(silent, { retryMs: 600_000, hungMs: 300 })
  try {
    const t0 = performance.now()
    assert.deepEqual(await threeChecks(v), [true, false, false], 'the batch the worker held')
    assert.ok(performance.now() - t0 >= 290, 'answered once the worker was taken for hung')
    assert.deepEqual(v.stats, { workerFailures: 1, workerChecks: 0 })
    assert.equal(v.engine, 'openssl', 'during the pause')
  } finally {
    await v.close()
  }
  // A worker that answers is not taken for hung: batches answered over longer than hungMs in all (its start-up included).
  const real = new BatchVerifier(undefined, { hungMs: 3000 })
  try {
    const t0 = performance.now()
    let rounds = 0
    while (performance.now() - t0 < 3500 && rounds < 100) {
      assert.deepEqual(await threeChecks(real), [true, false, false])
      rounds++
      await new Promise((r) => setTimeout(r, 200))
    }
    assert.deepEqual(real.stats, { workerFailures: 0, workerChecks: 3 * rounds })
  } finally {
    await real.close()
  }
})

test('signOnePass and generateKeyPair go on under constant garbage collection (with a generated key pair as the nonce, a collection inside the key export deadlocked Node 20 within 2,000-20,000 signatures)', { timeout: 90_000 }, async () => {
  const module = new URL('../../src/crypto/ed25519.js', import.meta.url).href
  const script = `const { keyPairFromSecret, generateKeyPair, signOnePass } = await import(${JSON.stringify(module)})
const pair = keyPairFromSecret(Buffer.alloc(32, 7))
const msg = Buffer.alloc(100, 1)
for (let i = 0; i < 50000; i++) signOnePass(pair, msg)
for (let i = 0; i < 200; i++) generateKeyPair()
process.stdout.write('done')`
  // A 1 MB young generation: a scavenge every few hundred signatures.
  const child = spawn(process.execPath, ['--max-semi-space-size=1', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (b: Buffer) => (out += b))
  child.stderr.on('data', (b: Buffer) => (err += b))
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000)
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
  clearTimeout(killer)
  assert.equal(code, 0, `the child ended with ${code} (killed after 60 s if it hung): ${err.slice(0, 500)}`)
  assert.equal(out, 'done')
})
