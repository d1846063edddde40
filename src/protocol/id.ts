// Global ids (PROTOCOL.md §3).
//
//   text form:  key-type::key::local-id
//   XML form:   <id key="KEY" local-id="LOCAL" type="KEY-TYPE"/>  (exactly these attributes)
//
// key-type is `ed25519`; key is the 32-byte public key as 64 lowercase hex
// digits; local-id is 1..64 characters of [0-9A-Za-z._-], an exact string
// ("042" and "42" differ). Anything else is DIP_ID_INVALID, never guessed at.
import { fail, ok, type Result } from '../errors.js'
import { escapeAttr, type XmlElement } from './xml.js'

export interface GlobalId {
  readonly type: 'ed25519'
  /** 64 lowercase hex digits */
  readonly key: string
  readonly localId: string
}

export const KEY_HEX_RE = /^[0-9a-f]{64}$/
const LOCAL_ID_RE = /^[0-9A-Za-z._-]{1,64}$/
const TEXT_ID_RE = /^ed25519::([0-9a-f]{64})::([0-9A-Za-z._-]{1,64})$/

export function parseIdText(text: string): Result<GlobalId> {
  const m = TEXT_ID_RE.exec(text)
  if (!m) return fail('DIP_ID_INVALID', `not a global id: ${JSON.stringify(text.slice(0, 200))}`)
  return ok({ type: 'ed25519', key: m[1]!, localId: m[2]! })
}

export function formatId(id: GlobalId): string {
  // Joined: one flat string (a template makes a tree of parts, copied again when it is first used as a key).
  return [id.type, '::', id.key, '::', id.localId].join('')
}

/** Reads `<id key local-id type/>`: exactly those three attributes, no children. */
export function parseIdElement(el: XmlElement): Result<GlobalId> {
  if (el.name !== 'id') return fail('DIP_ID_INVALID', `expected <id>, got <${el.name}>`)
  const attrs = el.attrs
  const names = Object.keys(attrs)
  if (names.length !== 3 || attrs.key === undefined || attrs['local-id'] === undefined || attrs.type === undefined) {
    return fail('DIP_ID_INVALID', '<id> must have exactly the attributes key, local-id and type')
  }
  if (el.children.some((c) => typeof c !== 'string' || !/^[ \t\r\n]*$/.test(c))) {
    return fail('DIP_ID_INVALID', '<id> must be empty')
  }
  if (attrs.type !== 'ed25519') return fail('DIP_ID_INVALID', `unknown key type ${JSON.stringify(attrs.type)}`)
  if (!KEY_HEX_RE.test(attrs.key)) return fail('DIP_ID_INVALID', 'id key must be 64 lowercase hex digits')
  if (!LOCAL_ID_RE.test(attrs['local-id'])) return fail('DIP_ID_INVALID', 'local-id must be 1 to 64 of [0-9A-Za-z._-]')
  return ok({ type: 'ed25519', key: attrs.key, localId: attrs['local-id'] })
}

export function idElementXml(id: GlobalId): string {
  return `<id key="${id.key}" local-id="${escapeAttr(id.localId)}" type="${id.type}"/>`
}

export function idElement(id: GlobalId): XmlElement {
  return { name: 'id', attrs: { key: id.key, 'local-id': id.localId, type: id.type }, children: [] }
}
