// Fixed keys and helpers for the fixture generator (test/tools/make-fixtures.ts).
//
// Both keys are RFC 8032 §7.1 test vectors, so anyone can re-derive every
// signature in fixtures/: ed25519 signing is deterministic.
//   K1 (test 1): the author of most fixture models
//   K2 (test 2): the "foreign" key and the co-signer
// Signing uses node:crypto directly, not src/, so that the fixtures do not
// depend on the code they test.
import { createHash, createPrivateKey, createPublicKey, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto'

const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')

export interface FixtureKey {
  secretHex: string
  publicHex: string
  privateKey: KeyObject
}

function fixedKey(secretHex: string, publicHex: string): FixtureKey {
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, Buffer.from(secretHex, 'hex')]), format: 'der', type: 'pkcs8' })
  return { secretHex, publicHex, privateKey }
}

export const K1 = fixedKey(
  '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
  'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
)
export const K2 = fixedKey(
  '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
  '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
)

/** ed25519 signature of the UTF-8 bytes of `text`, 128 lowercase hex. */
export function signHex(key: FixtureKey, text: string): string {
  return nodeSign(null, Buffer.from(text, 'utf8'), key.privateKey).toString('hex')
}

export function sha256(data: string | Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex')
}

/** The signature with one bit of its first byte flipped. */
export function flipFirstByte(sigHex: string): string {
  const b = Buffer.from(sigHex, 'hex')
  b[0] = b[0]! ^ 0x01
  return b.toString('hex')
}

/** ed25519 group order L. */
const L = (1n << 252n) + 27742317777372353535851937790883648493n

/** The same signature with S replaced by S + L: valid under lax (zip215) rules, invalid under RFC 8032 strict ones. */
export function nonCanonicalS(sigHex: string): string {
  const b = Buffer.from(sigHex, 'hex')
  let s = 0n
  for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(b[i]!)
  s += L
  if (s >= 1n << 256n) throw new TypeError('S + L does not fit in 32 bytes')
  for (let i = 32; i < 64; i++) {
    b[i] = Number(s & 0xffn)
    s >>= 8n
  }
  return b.toString('hex')
}

/** Text form of a fixture id. */
export const idText = (key: FixtureKey, localId: string) => `ed25519::${key.publicHex}::${localId}`

/** XML form of a fixture id. */
export const idXml = (key: FixtureKey, localId: string) => `<id key="${key.publicHex}" local-id="${localId}" type="ed25519"/>`

const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

/** Strict ed25519 verification (OpenSSL) of a 128-hex signature by a 64-hex public key. */
export function verifyHex(publicHex: string, message: Uint8Array, sigHex: string): boolean {
  if (!/^[0-9a-f]{64}$/.test(publicHex) || !/^[0-9a-f]{128}$/.test(sigHex)) return false
  const key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, Buffer.from(publicHex, 'hex')]), format: 'der', type: 'spki' })
  return nodeVerify(null, message, key, Buffer.from(sigHex, 'hex'))
}
