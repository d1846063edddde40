// Key rotations and proofs (PROTOCOL.md §8, §9; after Urbit's Beacon).
//
//   proof:     sign( "dip-proof:<turf>:<life>" )          with the proof's key
//   rotation:  sign( "dip-rotate:<from>:<to>:<life>" )    with the `from` key
//
// Keys are written `ed25519::<64 hex>`, signatures as standard padded base64.
// Each signed message has its own prefix, so a signature made for one
// purpose never verifies for another (or as model content, or as an answer).
//
// A peer pinned at key K (life L) follows its rotations in increasing life,
// starting from K: each step must verify with the current key and grow the
// life. Two different successors of one key are a fork and are refused.
import { DipError, fail, ok, type Result } from '../errors.js'
import { sign, verify, type NodeKeyPair } from '../crypto/ed25519.js'

export interface Rotation {
  from: string
  to: string
  life: number
  sign: string
}

export interface Proof {
  turf: string
  life: number
  key: string
  sign: string
}

const NODE_KEY_RE = /^ed25519::([0-9a-f]{64})$/

export const proofMessage = (turf: string, life: number) => Buffer.from(`dip-proof:${turf}:${life}`, 'utf8')
export const rotationMessage = (from: string, to: string, life: number) => Buffer.from(`dip-rotate:${from}:${to}:${life}`, 'utf8')

export function nodeKeyOf(pair: NodeKeyPair): string {
  return `ed25519::${pair.publicKeyHex}`
}

/** The hex of `ed25519::<hex>`, or undefined. */
export function keyHex(nodeKey: string): string | undefined {
  return NODE_KEY_RE.exec(nodeKey)?.[1]
}

function verifyB64(nodeKey: string, message: Uint8Array, b64: string): boolean {
  const hex = keyHex(nodeKey)
  if (!hex || typeof b64 !== 'string' || !/^[A-Za-z0-9+/]{86}==$/.test(b64)) return false
  return verify(hex, message, Buffer.from(b64, 'base64'))
}

export function makeRotation(from: NodeKeyPair, to: NodeKeyPair, life: number): Rotation {
  const f = nodeKeyOf(from)
  const t = nodeKeyOf(to)
  return { from: f, to: t, life, sign: Buffer.from(sign(from, rotationMessage(f, t, life))).toString('base64') }
}

export function makeProof(key: NodeKeyPair, turf: string, life: number): Proof {
  return { turf, life, key: nodeKeyOf(key), sign: Buffer.from(sign(key, proofMessage(turf, life))).toString('base64') }
}

export function verifyProof(p: Proof): boolean {
  return typeof p.turf === 'string' && Number.isInteger(p.life) && verifyB64(p.key, proofMessage(p.turf, p.life), p.sign)
}

function isRotation(r: unknown): r is Rotation {
  const x = r as Rotation
  return typeof x === 'object' && x !== null && typeof x.from === 'string' && typeof x.to === 'string' && Number.isInteger(x.life) && typeof x.sign === 'string'
}

/**
 * Follows the rotations from the pinned key to `target`. Returns the key and
 * life reached, or the first rule broken on the way (each with its own code).
 */
export function followRotations(pinned: { key: string; life: number }, rotations: unknown, target: string): Result<{ key: string; life: number }> {
  const list = Array.isArray(rotations) ? rotations.filter(isRotation) : []
  let key = pinned.key
  let life = pinned.life
  for (let steps = 0; key !== target && steps <= list.length; steps++) {
    const next = list.filter((r) => r.from === key)
    if (next.length === 0) break
    if (new Set(next.map((r) => r.to)).size > 1) return fail('DIP_ROTATION_FORK', `${key} has ${next.length} different successors`)
    const r = next[0]!
    if (!verifyB64(r.from, rotationMessage(r.from, r.to, r.life), r.sign)) return fail('DIP_ROTATION_SIGNATURE_INVALID', `the rotation ${r.from} -> ${r.to} does not verify`)
    if (r.life <= life) return fail('DIP_ROTATION_LIFE_INVALID', `the rotation ${r.from} -> ${r.to} has life ${r.life}, not above ${life}`)
    key = r.to
    life = r.life
  }
  if (key !== target) return fail('DIP_PEER_KEY_CHANGED', `the peer answers as ${target}, but ${pinned.key} is pinned and no rotation leads there`)
  return ok({ key, life })
}

export function checkNodeKey(nodeKey: string, what: string): string {
  const hex = keyHex(nodeKey)
  if (!hex) throw new DipError('DIP_USAGE', `${what}: ${nodeKey} is not ed25519::<64 hex>`)
  return hex
}
