// Signed test models.
import { generateKeyPair, type NodeKeyPair } from '../src/crypto/ed25519.js'
import { defaultRegistry } from '../src/daemon.js'
import { DEFAULT_LIMITS } from '../src/protocol/envelope.js'
import { authorModel, type StagedModel } from '../src/model/signed.js'
import { postModel } from '../src/model/post/post.js'
import type { AttachmentRef } from '../src/model/types.js'

export const registry = defaultRegistry()
export const limits = DEFAULT_LIMITS

export interface PostSpec {
  localId: string | number
  title?: string
  text?: string
  tags?: string[]
  thread?: string
  updateTime?: string
  pubTime?: string
  attachments?: AttachmentRef[]
  tripcode?: string | undefined
}

export function makePost(pair: NodeKeyPair, spec: PostSpec): StagedModel {
  const time = spec.updateTime ?? '2020-01-01T00:00:00Z'
  const [, threadKey, threadLocal] = spec.thread?.split('::') ?? []
  const r = authorModel(
    postModel,
    {
      id: { type: 'ed25519', key: pair.publicKeyHex, localId: String(spec.localId) },
      title: spec.title ?? `title ${spec.localId}`,
      text: spec.text ?? `text of ${spec.localId}`,
      tags: spec.tags ?? [],
      thread: spec.thread ? { type: 'ed25519', key: threadKey!, localId: threadLocal! } : undefined,
      pubTime: spec.pubTime ?? '2020-01-01T00:00:00Z',
      updateTime: time,
      tripcode: spec.tripcode,
      attachments: spec.attachments,
    },
    pair,
    registry,
    limits,
  )
  if (!r.ok) throw r.error
  return r.value
}

export { generateKeyPair, type NodeKeyPair }
