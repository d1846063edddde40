// A `<model>` element as it travels (PROTOCOL.md §4):
//
//   <model name="post" version="1.1">
//     <content>…</content>
//     <signatures><signature key="<64 hex>" type="ed25519" value="<128 hex>"/>…</signatures>
//     <attachment-data hash="sha256:…">BASE64</attachment-data> | <attachment-ref hash="sha256:…" url="…"/>   (optional)
//   </model>
//
// A node keeps the canonical content bytes, the signatures (unknown types
// included) and the model version as received, and serves exactly those:
// relaying never rebuilds content from parsed fields.
import { hash as digest } from 'node:crypto'
import { fail, ok, type Result, type RowCode } from '../errors.js'
import { canonicalize } from '../protocol/canonical.js'
import { formatId, KEY_HEX_RE, type GlobalId } from '../protocol/id.js'
import { isCompatible, parseVersion, shownVersion } from '../protocol/version.js'
import { childElements, escapeAttr, firstChild, parseXml, rawText, type XmlElement } from '../protocol/xml.js'
import { sign, verifyMany, type NodeKeyPair, type SignatureCheck } from '../crypto/ed25519.js'
import type { ModelRegistry } from './registry.js'
import type { ModelDefinition, ModelMeta } from './types.js'

export interface Signature {
  type: string
  key: string
  value: string
}

/** A parsed, not yet verified model. */
export interface StagedModel {
  name: string
  /** the model version exactly as received */
  version: string
  def: ModelDefinition<any, any>
  id: GlobalId
  idText: string
  /** canonical form of <content> */
  content: string
  /** its UTF-8 bytes, which the signatures sign: a part of `bytes` */
  contentBytes: Buffer
  /** `sha256:<hex>` of the canonical bytes */
  hash: string
  meta: ModelMeta
  signatures: Signature[]
  /** what the node stores and serves: <model> with canonical content and signatures */
  xml: string
  /** `xml` in UTF-8, as the model log stores it */
  bytes: Buffer
  /** inline attachment bytes by hash (checked against the signed hash and size by checkAttachments) */
  attachmentData: ReadonlyMap<string, Buffer>
  /** attachment URLs by hash */
  attachmentRefs: ReadonlyMap<string, string>
}

export interface Rejection {
  code: RowCode
  message: string
  /** the model's id when it could be read */
  id?: GlobalId
}

export type Staged = { ok: true; value: StagedModel } | { ok: false; rejection: Rejection }

export interface ModelLimits {
  maxContentBytes: number
  maxAttachmentBytes: number
}

const SIG_VALUE_RE = /^[0-9a-f]{128}$/
const HASH_RE = /^sha256:[0-9a-f]{64}$/
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/

/** Most models carry no attachment bytes or URLs: one shared empty map. */
const NONE: ReadonlyMap<string, never> = new Map<string, never>()

const reject = (code: RowCode, message: string, id?: GlobalId): Staged => ({ ok: false, rejection: id ? { code, message, id } : { code, message } })

/** The id of a refused model, for its row, when it can be read (read only on the way out). */
function tryId(content: XmlElement | undefined): GlobalId | undefined {
  const el = content && firstChild(content, 'id')
  if (!el) return undefined
  const { key, type } = el.attrs
  const localId = el.attrs['local-id']
  if (type === 'ed25519' && key && KEY_HEX_RE.test(key) && localId && /^[0-9A-Za-z._-]{1,64}$/.test(localId) && Object.keys(el.attrs).length === 3) {
    return { type: 'ed25519', key, localId }
  }
  return undefined
}

/**
 * Parses a `<model>` element; untrusted input, never throws. `source`: the
 * element's source bytes as the parser saw them (Take), copied when the
 * model is its own source text instead of encoding that again.
 */
export function stageModel(el: XmlElement, registry: ModelRegistry, limits: ModelLimits, source?: Uint8Array): Staged {
  if (el.name !== 'model') return reject('DIP_MODEL_INVALID', `expected <model>, got <${el.name}>`)
  const contentEl = firstChild(el, 'content')
  const name = el.attrs.name
  const def = name === undefined ? undefined : registry.get(name)
  if (!def) return reject('DIP_MODEL_NOT_SUPPORTED', `model ${JSON.stringify(name ?? null)} is not supported`, tryId(contentEl))
  const v = parseVersion(el.attrs.version)
  if (!v.ok) return reject('DIP_MODEL_INVALID', v.error.message, tryId(contentEl))
  if (!isCompatible(def.version, v.value)) return reject('DIP_VERSION_NOT_SUPPORTED', `model ${def.name} ${shownVersion(el.attrs.version!)} is not supported`, tryId(contentEl))
  if (!contentEl) return reject('DIP_MODEL_INVALID', '<content> missing', tryId(contentEl))

  const content = canonicalize(contentEl)
  const contentLength = Buffer.byteLength(content)
  if (contentLength > limits.maxContentBytes) return reject('DIP_MODEL_TOO_LARGE', `content is ${contentLength} bytes, over ${limits.maxContentBytes}`, tryId(contentEl))
  const parsed = def.fromContent(contentEl)
  if (!parsed.ok) {
    const code = parsed.error.code === 'DIP_ID_INVALID' ? 'DIP_ID_INVALID' : 'DIP_MODEL_INVALID'
    return reject(code, parsed.error.message, tryId(contentEl))
  }
  const meta = def.meta(parsed.value)

  const sigsEl = firstChild(el, 'signatures')
  const signatures: Signature[] = []
  let sigXml = ''
  for (const s of sigsEl ? childElements(sigsEl) : []) {
    if (s.name !== 'signature') continue
    const { type, key, value } = s.attrs
    if (type === 'ed25519') {
      // The author's key (most signatures) was checked as the id was read.
      if (!key || (key !== meta.id.key && !KEY_HEX_RE.test(key)) || !value || !SIG_VALUE_RE.test(value)) return reject('DIP_SIGNATURE_INVALID', 'an ed25519 signature needs a 64-hex key and a 128-hex value', meta.id)
    }
    signatures.push({ type: type ?? '', key: key ?? '', value: value ?? '' })
    sigXml += canonicalize(s)
  }
  if (signatures.length === 0) return reject('DIP_SIGNATURE_INVALID', 'a model needs at least one signature', meta.id)

  let attachmentData: Map<string, Buffer> | undefined
  let attachmentRefs: Map<string, string> | undefined
  for (const a of childElements(el)) {
    if (a.name !== 'attachment-data' && a.name !== 'attachment-ref') continue
    const hash = a.attrs.hash
    if (!hash || !HASH_RE.test(hash)) return reject('DIP_ATTACHMENT_INVALID', `<${a.name}> needs hash="sha256:<hex>"`, meta.id)
    if (a.name === 'attachment-data') {
      const b64 = rawText(a).replace(/[ \t\r\n]+/g, '')
      if (b64.length % 4 !== 0 || !BASE64_RE.test(b64)) return reject('DIP_ATTACHMENT_INVALID', 'attachment-data is not padded base64', meta.id)
      const bytes = Buffer.from(b64, 'base64')
      if (bytes.length > limits.maxAttachmentBytes) return reject('DIP_MODEL_TOO_LARGE', `attachment ${hash} is over ${limits.maxAttachmentBytes} bytes`, meta.id)
      ;(attachmentData ??= new Map()).set(hash, bytes)
    } else {
      const url = a.attrs.url
      if (!url || !URL.canParse(url)) return reject('DIP_ATTACHMENT_INVALID', 'attachment-ref needs an absolute url', meta.id)
      ;(attachmentRefs ??= new Map()).set(hash, url)
    }
  }

  const version = el.attrs.version!
  // What the node stores and serves; a model that arrived in exactly that form (a dipd peer's) is its own source text.
  const asServed = el.src !== undefined && el.children.length === 2 && el.children[0] === contentEl && el.children[1] === sigsEl && sigsEl !== undefined && sigsEl.children.length === signatures.length && Object.keys(el.attrs).length === 2
  const xml = asServed ? el.src! : `<model name="${escapeAttr(def.name)}" version="${version}">${content}<signatures>${sigXml}</signatures></model>`
  // Encoded once (or copied from the source bytes): the content's bytes are the part after the start tag, whose first '>' ends it.
  const bytes = asServed && source !== undefined && source[0] === 0x3c && source[source.length - 1] === 0x3e ? Buffer.from(source) : Buffer.from(xml, 'utf8')
  const at = bytes.indexOf(0x3e) + 1
  const contentBytes = bytes[at] === 0x3c && bytes[at + contentLength] === 0x3c ? bytes.subarray(at, at + contentLength) : Buffer.from(content, 'utf8')
  return {
    ok: true,
    value: {
      name: def.name,
      version,
      def,
      id: meta.id,
      idText: formatId(meta.id),
      content,
      contentBytes,
      hash: ['sha256:', digest('sha256', contentBytes, 'hex')].join(''),
      meta,
      signatures,
      xml,
      bytes,
      attachmentData: attachmentData ?? NONE,
      attachmentRefs: attachmentRefs ?? NONE,
    },
  }
}

/**
 * PROTOCOL.md §4 rules: every ed25519 signature verifies (duplicates too),
 * at least one is by the id's key; unknown types are ignored but kept.
 * The checks a model needs, or its refusal before any: without its
 * author's signature no check is started for it.
 */
export function signatureChecks(m: StagedModel): SignatureCheck[] | Rejection {
  if (!m.signatures.some((s) => s.type === 'ed25519' && s.key === m.id.key)) return { code: 'DIP_SIGNATURE_INVALID', message: 'no signature by the key in the id', id: m.id }
  const checks: SignatureCheck[] = []
  for (const s of m.signatures) if (s.type === 'ed25519') checks.push({ key: s.key, message: m.contentBytes, signature: s.value })
  return checks
}

/** The refusal of a model one of whose signatures does not verify. */
export const badSignature = (m: StagedModel): Rejection => ({ code: 'DIP_SIGNATURE_INVALID', message: 'a signature does not verify', id: m.id })

/** signatureChecks, checked (verifyMany): undefined when the model's signatures hold. */
export async function verifySignatures(m: StagedModel): Promise<Rejection | undefined> {
  const checks = signatureChecks(m)
  if (!Array.isArray(checks)) return checks
  return (await verifyMany(checks)).every((ok) => ok === 1) ? undefined : badSignature(m)
}

/** Inline attachment bytes must match a signed attachment's hash and size. */
export function checkAttachments(m: StagedModel): Rejection | undefined {
  for (const [hash, bytes] of m.attachmentData) {
    const signed = m.meta.attachments.find((a) => a.hash === hash)
    if (!signed) return { code: 'DIP_ATTACHMENT_INVALID', message: `attachment ${hash} is not in the signed content`, id: m.id }
    const actual = 'sha256:' + digest('sha256', bytes, 'hex')
    if (actual !== hash || bytes.length !== signed.size) return { code: 'DIP_ATTACHMENT_INVALID', message: `attachment bytes do not match ${hash}`, id: m.id }
  }
  return undefined
}

/** Signs content built from local fields and stages it the same way as a received model. */
export function authorModel(def: ModelDefinition<any, any>, fields: unknown, pair: NodeKeyPair, registry: ModelRegistry, limits: ModelLimits): Result<StagedModel> {
  const content = canonicalize(def.toContent(fields))
  const sig = Buffer.from(sign(pair, Buffer.from(content, 'utf8'))).toString('hex')
  const xml = `<model name="${escapeAttr(def.name)}" version="${def.version.major}.${def.version.minor}">${content}<signatures><signature key="${pair.publicKeyHex}" type="ed25519" value="${sig}"/></signatures></model>`
  const el = parseXml(xml)
  if (!el.ok) return el
  const staged = stageModel(el.value, registry, limits)
  if (!staged.ok) return fail(staged.rejection.code, staged.rejection.message)
  return ok(staged.value)
}
