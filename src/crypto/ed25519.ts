// The only module that touches signature libraries.
//
// Hot path: Node's built-in crypto (OpenSSL), with one KeyObject cached per
// public key (re-creating it per call halves the rate) and the callback form
// of crypto.verify, which runs on libuv's thread pool so both cores verify.
// Portable path: @noble/ed25519 with RFC 8032 strict checks (zip215: false),
// cross-checked against the built-in one in tests.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto'
import * as noble from '@noble/ed25519'

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

export function generateKeyPair(): NodeKeyPair {
  const { privateKey } = generateKeyPairSync('ed25519')
  const d = privateKey.export({ format: 'jwk' }).d!
  return keyPairFromSecret(Buffer.from(d, 'base64url'))
}

export function sign(pair: NodeKeyPair, message: Uint8Array): Uint8Array {
  return nodeSign(null, message, pair.privateKey)
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

/** Verify on the thread pool; many in flight use every core. */
export function verifyAsync(keyHex: string, message: Uint8Array, signature: Uint8Array): Promise<boolean> {
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
