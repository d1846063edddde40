// A node's identity: its current key and life, the keys it rotated away
// from, the chain of rotations it publishes and its proofs. Persisted by
// data-dir.ts (DIR/node.key); the daemon holds one instance and signs answers
// and new models with whatever key is current.
import { generateKeyPair, type NodeKeyPair } from '../crypto/ed25519.js'
import { makeProof, makeRotation, nodeKeyOf, type Proof, type Rotation } from './chain.js'

export class NodeIdentity {
  current: NodeKeyPair
  life: number
  /** keys rotated away from, oldest first (kept: their models keep their ids) */
  readonly previous: { pair: NodeKeyPair; life: number }[]
  readonly rotations: Rotation[]
  readonly proofs: Proof[]
  /**
   * The key was imported (`dipd init --key-file`): other nodes of a pool may
   * hold it too, so the local ids of models authored here carry this store's
   * own mark (GraphStore.allocateLocalId), or two nodes could give the same
   * id to two different models and one would replace the other.
   */
  shared: boolean

  constructor(init: { current: NodeKeyPair; life?: number; previous?: { pair: NodeKeyPair; life: number }[]; rotations?: Rotation[]; proofs?: Proof[]; shared?: boolean }) {
    this.current = init.current
    this.life = init.life ?? 1
    this.previous = init.previous ?? []
    this.rotations = init.rotations ?? []
    this.proofs = init.proofs ?? []
    this.shared = init.shared ?? false
  }

  get nodeKey(): string {
    return nodeKeyOf(this.current)
  }

  /** A new key, and `dip-rotate:<old>:<new>:<life+1>` signed by the old one. */
  rotate(next: NodeKeyPair = generateKeyPair()): Rotation {
    const rotation = makeRotation(this.current, next, this.life + 1)
    this.previous.push({ pair: this.current, life: this.life })
    this.rotations.push(rotation)
    this.current = next
    this.life = rotation.life
    // Proofs vouch for the current key: sign them again at the new life.
    for (const p of [...this.proofs]) this.addProof(p.turf)
    return rotation
  }

  /** A copy to change: rotate or add a proof on it, save it, then `adopt` it (a failed save changes nothing). */
  copy(): NodeIdentity {
    return new NodeIdentity({ current: this.current, life: this.life, previous: [...this.previous], rotations: [...this.rotations], proofs: [...this.proofs], shared: this.shared })
  }

  /** Takes on a saved copy's state (the daemon holds this instance: it signs with whatever is current). */
  adopt(saved: NodeIdentity): void {
    this.current = saved.current
    this.life = saved.life
    this.previous.splice(0, this.previous.length, ...saved.previous)
    this.rotations.splice(0, this.rotations.length, ...saved.rotations)
    this.proofs.splice(0, this.proofs.length, ...saved.proofs)
    this.shared = saved.shared
  }

  /** Signs `dip-proof:<turf>:<life>` with the current key; replaces an older proof of the same turf. */
  addProof(turf: string): Proof {
    const proof = makeProof(this.current, turf, this.life)
    const i = this.proofs.findIndex((p) => p.turf === turf)
    if (i === -1) this.proofs.push(proof)
    else this.proofs[i] = proof
    return proof
  }
}
