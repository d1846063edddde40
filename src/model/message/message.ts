// The "message" model, version 1.0: a short message to one person or one
// group, after F140 (../seeds/f140-documentation.txt), whose basic message is
// `<msg kind="basic"><text>…140 characters…</text></msg>`. Reference:
// spec/message-model.md.
//
//   <content kind="chat|notice|announce">     kind: required attribute of <content>
//     id            required  the message's own global id
//     to            required  exactly one of <key>64 hex</key> (a person) or <group>name</group>
//     text          required  plain text, 1..140 Unicode code points
//     pub-time      required  time
//     update-time   required  time; grows with every edit
//   </content>
//
// Known children missing, repeated or out of order are DIP_MODEL_INVALID;
// unknown elements (a newer minor) are skipped, and kept in the signed bytes,
// which are never rebuilt. Other attributes of <content> are ignored and
// kept the same way. An unknown kind is DIP_MODEL_INVALID: the set of kinds
// is closed in 1.x (a new kind needs a new major).
//
// Why `kind` is an attribute of <content>: F140 puts it on the message's root
// element, and <content> is the DIP model's root; its start tag is part of
// the signed canonical bytes (attributes sorted), so the kind is signed like
// every field, and the children keep the id-first layout of every DIP model.
import { DipError, fail, ok, type Result } from '../../errors.js'
import { idElement, parseIdElement, type GlobalId } from '../../protocol/id.js'
import { parseContentTime } from '../../protocol/time.js'
import { version } from '../../protocol/version.js'
import { childElements, childrenNamed, escapeText, rawText, type XmlElement } from '../../protocol/xml.js'
import type { FacetFilter, ModelDefinition, ModelMeta } from '../types.js'
import { orderedChildren, plainText } from '../content.js'

export const MESSAGE_KINDS = ['chat', 'notice', 'announce'] as const
export type MessageKind = (typeof MESSAGE_KINDS)[number]
/** At most this many Unicode code points of text (F140's 140 characters). */
export const MAX_TEXT_CODE_POINTS = 140

/** A message's recipient: one person (a public key) or one group. */
export type Recipient = { key: string } | { group: string }

export interface Message {
  id: GlobalId
  kind: MessageKind
  to: Recipient
  text: string
  pubTime: string
  pubTimeKey: string
  updateTime: string
  updateTimeKey: string
}

/** Fields of a message authored on this node (id and times are filled in by the node). */
export interface MessageFields {
  id: GlobalId
  kind: MessageKind
  to: Recipient
  text: string
  pubTime: string
  updateTime: string
}

const ORDER = ['id', 'to', 'text', 'pub-time', 'update-time'] as const
const KINDS: ReadonlySet<string> = new Set(MESSAGE_KINDS)
const KEY_RE = /^[0-9a-f]{64}$/
export const GROUP_RE = /^[0-9A-Za-z._-]{1,64}$/
/** Characters XML 1.0 does not allow, and lone surrogates (not encodable in UTF-8). */
const BAD_CHAR_RE = /[\x00-\x08\x0B\x0C\x0E-\x1F\uFFFE\uFFFF]|[\uD800-\uDFFF]/u
const WS_RE = /^[ \t\r\n]*$/
const GROUP_PREFIX = 'group:'

const invalid = (msg: string) => fail<never>('DIP_MODEL_INVALID', msg)
const badFilter = (msg: string) => fail<never>('DIP_FILTER_INVALID', msg)

/** Number of Unicode code points (an astral character is one, not two UTF-16 units). */
export function codePoints(s: string): number {
  let n = 0
  for (const _ of s) n++
  return n
}


/** `<to>`: exactly one element, `<key>` or `<group>`, and no other text than whitespace. */
function parseTo(el: XmlElement): Result<Recipient> {
  const kids = childElements(el)
  if (kids.length !== 1) return invalid('<to> holds exactly one <key> or <group>')
  if (!el.children.every((c) => typeof c !== 'string' || WS_RE.test(c))) return invalid('<to> holds no text besides its element')
  const only = kids[0]!
  const v = plainText(only)
  if (!v.ok) return v
  // Content text is exact: no trimming, so " abc…" is not a key.
  if (only.name === 'key') return KEY_RE.test(v.value) ? ok({ key: v.value }) : invalid('a recipient key is 64 lowercase hex digits')
  if (only.name === 'group') return GROUP_RE.test(v.value) ? ok({ group: v.value }) : invalid('a group name is 1 to 64 of [0-9A-Za-z._-]')
  return invalid(`<to> holds <key> or <group>, not <${only.name}>`)
}

function checkText(text: string): Result<string> {
  if (text === '') return invalid('a message text may not be empty')
  if (codePoints(text) > MAX_TEXT_CODE_POINTS) return invalid(`a message text is at most ${MAX_TEXT_CODE_POINTS} code points`)
  return ok(text)
}

function fromContent(content: XmlElement): Result<Message> {
  const kind = content.attrs.kind
  if (kind === undefined) return invalid('<content> needs a kind attribute')
  if (!KINDS.has(kind)) return invalid(`unknown message kind ${JSON.stringify(kind.slice(0, 64))}`)
  const children = orderedChildren(content, ORDER, ORDER)
  if (!children.ok) return children
  const [idEl, toEl, bodyEl, pubEl, updEl] = children.value

  const id = parseIdElement(idEl!)
  if (!id.ok) return id
  const to = parseTo(toEl!)
  if (!to.ok) return to
  const raw = plainText(bodyEl!)
  if (!raw.ok) return raw
  const text = checkText(raw.value)
  if (!text.ok) return text
  const pub = plainText(pubEl!)
  if (!pub.ok) return pub
  const pubKey = parseContentTime(pub.value)
  if (!pubKey.ok) return pubKey
  const upd = plainText(updEl!)
  if (!upd.ok) return upd
  const updKey = parseContentTime(upd.value)
  if (!updKey.ok) return updKey
  return ok({
    id: id.value,
    kind: kind as MessageKind,
    to: to.value,
    text: text.value,
    pubTime: pub.value,
    pubTimeKey: pubKey.value,
    updateTime: upd.value,
    updateTimeKey: updKey.value,
  })
}

/** The value of the `to` facet: the key's 64 hex, or `group:` and the name (hex has no ':', so they never collide). */
export function recipientFacet(to: Recipient): string {
  return 'key' in to ? to.key : GROUP_PREFIX + to.group
}

function meta(m: Message): ModelMeta {
  return {
    id: m.id,
    updateTimeKey: m.updateTimeKey,
    updateTime: m.updateTime,
    facets: { to: [recipientFacet(m.to)], kind: [m.kind] },
    links: [],
    attachments: [],
  }
}

function attrs(record: Record<string, string> = {}): Record<string, string> {
  return Object.assign(Object.create(null) as Record<string, string>, record)
}

function textEl(name: string, value: string): XmlElement {
  return { name, attrs: attrs(), children: value === '' ? [] : [value] }
}

function toContent(f: MessageFields): XmlElement {
  const recipient = 'key' in f.to ? textEl('key', f.to.key) : textEl('group', f.to.group)
  return {
    name: 'content',
    attrs: attrs({ kind: f.kind }),
    children: [idElement(f.id), { name: 'to', attrs: attrs(), children: [recipient] }, textEl('text', f.text), textEl('pub-time', f.pubTime), textEl('update-time', f.updateTime)],
  }
}

const FIELD_NAMES = new Set(['to', 'text', 'kind'])

/**
 * Checks fields from a local author (CLI, local API, host application):
 * `{ to: '<64 hex>' | 'ed25519::<64 hex>' | { group: name }, text, kind? }`
 * (kind defaults to chat). The id and times are filled in by the node.
 */
function checkFields(input: unknown): Result<MessageFields> {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return invalid('message fields must be an object')
  const f = input as Record<string, unknown>
  for (const name of Object.keys(f)) if (!FIELD_NAMES.has(name)) return invalid(`unknown message field ${JSON.stringify(name)} (fields: to, text, kind)`)
  let to: Recipient
  if (typeof f.to === 'string') {
    const hex = f.to.startsWith('ed25519::') ? f.to.slice('ed25519::'.length) : f.to
    if (!KEY_RE.test(hex)) return invalid('to must be a key (64 lowercase hex, or ed25519::<hex>) or { group: name }')
    to = { key: hex }
  } else if (typeof f.to === 'object' && f.to !== null && !Array.isArray(f.to)) {
    const g = f.to as Record<string, unknown>
    if (Object.keys(g).length !== 1 || typeof g.group !== 'string' || !GROUP_RE.test(g.group)) return invalid('to.group must be 1 to 64 of [0-9A-Za-z._-]')
    to = { group: g.group }
  } else return invalid('a message needs to: a key or { group: name }')
  if (typeof f.text !== 'string') return invalid('a message needs a text (a string)')
  if (BAD_CHAR_RE.test(f.text)) return invalid('text holds a character XML 1.0 (or UTF-8) does not allow')
  const text = checkText(f.text)
  if (!text.ok) return text
  const kind = f.kind ?? 'chat'
  if (typeof kind !== 'string' || !KINDS.has(kind)) return invalid(`kind must be one of ${MESSAGE_KINDS.join(', ')}`)
  // Placeholders: DipNode.author sets the id and both times before signing.
  return ok({ id: undefined as unknown as GlobalId, kind: kind as MessageKind, to, text: text.value, pubTime: '', updateTime: '' })
}

/** Filter text is read with XML whitespace stripped (PROTOCOL.md §1). */
const filterText = (el: XmlElement) => rawText(el).replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, '')

/**
 * List filters of a message (children of `<model>`), every one optional:
 *   <to><key>64 hex</key>…<group>name</group>…</to>   the recipient is any of them; `<to/>` is no filter
 *   <kinds><kind>chat</kind>…</kinds>                  the kind is any of them; `<kinds/>` is no filter
 * Unknown elements (here and inside <to>/<kinds>) are ignored, as for every model.
 */
function parseFilter(model: XmlElement): Result<FacetFilter> {
  const out: FacetFilter = []
  for (const el of childElements(model)) {
    if (el.name === 'to') {
      const values: string[] = []
      for (const r of childElements(el)) {
        const v = filterText(r)
        if (r.name === 'key') {
          if (!KEY_RE.test(v)) return badFilter('a <key> in <to> is 64 lowercase hex digits')
          values.push(v)
        } else if (r.name === 'group') {
          if (!GROUP_RE.test(v)) return badFilter('a <group> in <to> is 1 to 64 of [0-9A-Za-z._-]')
          values.push(GROUP_PREFIX + v)
        }
      }
      if (values.length > 0) out.push({ facet: 'to', values })
    } else if (el.name === 'kinds') {
      const values: string[] = []
      for (const k of childrenNamed(el, 'kind')) {
        const v = filterText(k)
        if (!KINDS.has(v)) return badFilter(`a <kind> is one of ${MESSAGE_KINDS.join(', ')}`)
        values.push(v)
      }
      if (values.length > 0) out.push({ facet: 'kind', values })
    }
  }
  return ok(out)
}

/** Writes the filters back (the pull client); a facet this model does not have is refused rather than dropped. */
function filterXml(filter: FacetFilter): string {
  let out = ''
  for (const f of filter) {
    // An empty list would pass nothing in the local store but be no filter on the wire: refuse it.
    if (f.values.length === 0) throw new DipError('DIP_FILTER_INVALID', `an empty ${f.facet} filter`)
    if (f.facet === 'to') {
      out += '<to>'
      for (const v of f.values) {
        if (v.startsWith(GROUP_PREFIX) && GROUP_RE.test(v.slice(GROUP_PREFIX.length))) out += `<group>${escapeText(v.slice(GROUP_PREFIX.length))}</group>`
        else if (KEY_RE.test(v)) out += `<key>${v}</key>`
        else throw new DipError('DIP_FILTER_INVALID', `not a message recipient: ${JSON.stringify(v.slice(0, 80))}`)
      }
      out += '</to>'
    } else if (f.facet === 'kind') {
      for (const v of f.values) if (!KINDS.has(v)) throw new DipError('DIP_FILTER_INVALID', `not a message kind: ${JSON.stringify(v.slice(0, 80))}`)
      out += `<kinds>${f.values.map((v) => `<kind>${v}</kind>`).join('')}</kinds>`
    } else throw new DipError('DIP_FILTER_INVALID', `messages have no ${JSON.stringify(f.facet)} filter (filters: to, kind)`)
  }
  return out
}

export const messageModel: ModelDefinition<Message, MessageFields> = {
  name: 'message',
  version: version('1.0'),
  fromContent,
  meta,
  toContent,
  checkFields,
  parseFilter,
  filterXml,
}
