// The DIP-2 "post" model, version 1.1 (PROTOCOL.md §5).
//
// <content> children, in this order; known children missing, repeated or out
// of order are DIP_MODEL_INVALID; unknown elements are skipped (and kept in
// the signed bytes, which are never rebuilt):
//   id            required  the post's own global id
//   title         required  text, may be empty
//   text          required  markup; [post]key-type::key::local-id[/post] references a post
//   tags          optional  opening posts only: <tag>name</tag>… (exact, case-sensitive)
//   thread        optional  replies only: <id/> of the opening post
//   pub-time      required  time
//   update-time   required  time; grows with every edit
//   tripcode      optional  text
//   attachments   optional  <attachment hash mimetype name size/>…
import { DipError, fail, ok, type Result } from '../../errors.js'
import { formatId, idElement, parseIdElement, parseIdText, type GlobalId } from '../../protocol/id.js'
import { parseContentTime } from '../../protocol/time.js'
import { version } from '../../protocol/version.js'
import { childElements, childrenNamed, rawText, escapeText, type XmlElement } from '../../protocol/xml.js'
import type { AttachmentRef, FacetFilter, Link, ModelDefinition, ModelMeta } from '../types.js'
import { orderedChildren, plainText } from '../content.js'

export interface Post {
  id: GlobalId
  title: string
  text: string
  tags: string[]
  thread: GlobalId | undefined
  pubTime: string
  pubTimeKey: string
  updateTime: string
  updateTimeKey: string
  tripcode: string | undefined
  attachments: AttachmentRef[]
}

/** Fields of a post authored on this node. */
export interface PostFields {
  id: GlobalId
  title: string
  text: string
  tags?: string[]
  thread?: GlobalId | undefined
  pubTime: string
  updateTime: string
  tripcode?: string | undefined
  attachments?: AttachmentRef[]
}

const ORDER = ['id', 'title', 'text', 'tags', 'thread', 'pub-time', 'update-time', 'tripcode', 'attachments'] as const
const REQUIRED = ['id', 'title', 'text', 'pub-time', 'update-time'] as const
const HASH_RE = /^sha256:[0-9a-f]{64}$/
/** PROTOCOL.md §5 gives sizes, mimetypes and tags no grammar beyond "1234", "image/png" and "exact, case-sensitive strings": what another node may send is taken. */
const SIZE_RE = /^[0-9]{1,15}$/
/** type/subtype, parameters allowed, printable ASCII (it is served as the blob's Content-Type) */
const MIMETYPE_RE = /^[\x21-\x7e]+\/[\x21-\x7e]+(?:[\x20-\x7e]*[\x21-\x7e])?$/
export const POST_REF_RE = /\[post\](ed25519::[0-9a-f]{64}::[0-9A-Za-z._-]{1,64})\[\/post\]/g

const invalid = (msg: string) => fail<never>('DIP_MODEL_INVALID', msg)


function parseAttachment(el: XmlElement): Result<AttachmentRef> {
  const { hash, mimetype, name, size } = el.attrs
  if (hash === undefined || !HASH_RE.test(hash)) return invalid('attachment hash must be sha256:<64 hex>')
  if (size === undefined || !SIZE_RE.test(size)) return invalid('attachment size must be a decimal byte count')
  if (mimetype === undefined || !MIMETYPE_RE.test(mimetype)) return invalid('attachment mimetype must be type/subtype of printable ASCII')
  return ok({ hash, mimetype, name: name ?? '', size: Number(size) })
}

function fromContent(content: XmlElement): Result<Post> {
  const children = orderedChildren(content, ORDER, REQUIRED)
  if (!children.ok) return children
  const [idEl, titleEl, bodyEl, tagsEl, threadEl, pubEl, updEl, tripEl, attEl] = children.value

  const id = parseIdElement(idEl!)
  if (!id.ok) return id
  const title = plainText(titleEl!)
  if (!title.ok) return title
  const text = plainText(bodyEl!)
  if (!text.ok) return text

  const tags: string[] = []
  if (tagsEl) {
    for (const t of childrenNamed(tagsEl, 'tag')) {
      const v = plainText(t)
      if (!v.ok) return v
      tags.push(v.value) // an empty tag too: a string like any other (authoring here makes none, and no filter asks for one)
    }
  }
  let thread: GlobalId | undefined
  if (threadEl) {
    const ids = childElements(threadEl)
    if (ids.length !== 1) return invalid('<thread> holds exactly one <id>')
    const t = parseIdElement(ids[0]!)
    if (!t.ok) return t
    thread = t.value
    if (tagsEl) return invalid('a reply may not have tags')
  }
  const pub = plainText(pubEl!)
  if (!pub.ok) return pub
  const pubUs = parseContentTime(pub.value)
  if (!pubUs.ok) return pubUs
  const upd = plainText(updEl!)
  if (!upd.ok) return upd
  const updUs = parseContentTime(upd.value)
  if (!updUs.ok) return updUs
  let tripcode: string | undefined
  if (tripEl) {
    const v = plainText(tripEl)
    if (!v.ok) return v
    tripcode = v.value
  }
  const attachments: AttachmentRef[] = []
  if (attEl) {
    for (const a of childrenNamed(attEl, 'attachment')) {
      const r = parseAttachment(a)
      if (!r.ok) return r
      attachments.push(r.value)
    }
  }
  return ok({
    id: id.value,
    title: title.value,
    text: text.value,
    tags,
    thread,
    pubTime: pub.value,
    pubTimeKey: pubUs.value,
    updateTime: upd.value,
    updateTimeKey: updUs.value,
    tripcode,
    attachments,
  })
}

function meta(post: Post): ModelMeta {
  const thread = post.thread ? formatId(post.thread) : undefined
  const links: Link[] = []
  if (thread !== undefined) links.push({ kind: 'thread', target: thread })
  // Most texts reference no post: a plain search first is cheaper than the pattern's.
  if (post.text.includes('[post]')) for (const m of post.text.matchAll(POST_REF_RE)) links.push({ kind: 'ref', target: m[1]! })
  for (const a of post.attachments) links.push({ kind: 'attachment', target: a.hash })
  return {
    id: post.id,
    updateTimeKey: post.updateTimeKey,
    updateTime: post.updateTime,
    // PROTOCOL.md §6: a thread filter lists the opening post and its replies;
    // a tags filter matches the post's own tags (replies have none).
    facets: { tag: post.tags.length < 2 ? post.tags : [...new Set(post.tags)], thread: [thread ?? formatId(post.id)] },
    links,
    attachments: post.attachments,
  }
}

function textEl(name: string, value: string): XmlElement {
  return { name, attrs: Object.create(null), children: value === '' ? [] : [value] }
}

function toContent(f: PostFields): XmlElement {
  const children: XmlElement[] = [idElement(f.id), textEl('title', f.title), textEl('text', f.text)]
  if (f.tags && f.tags.length > 0) children.push({ name: 'tags', attrs: Object.create(null), children: f.tags.map((t) => textEl('tag', t)) })
  if (f.thread) children.push({ name: 'thread', attrs: Object.create(null), children: [idElement(f.thread)] })
  children.push(textEl('pub-time', f.pubTime), textEl('update-time', f.updateTime))
  if (f.tripcode !== undefined) children.push(textEl('tripcode', f.tripcode))
  if (f.attachments && f.attachments.length > 0) {
    children.push({
      name: 'attachments',
      attrs: Object.create(null),
      children: f.attachments.map((a) => ({
        name: 'attachment',
        attrs: { hash: a.hash, mimetype: a.mimetype, name: a.name, size: String(a.size) },
        children: [],
      })),
    })
  }
  return { name: 'content', attrs: Object.create(null), children }
}

/** Checks fields from a local author (CLI or local API); ids and times are filled in by the node. */
function checkFields(input: unknown): Result<PostFields> {
  const bad = (msg: string) => fail<never>('DIP_MODEL_INVALID', msg)
  if (typeof input !== 'object' || input === null) return bad('post fields must be an object')
  const f = input as Record<string, unknown>
  if (typeof f.title !== 'string' || typeof f.text !== 'string') return bad('a post needs a title and a text (strings, may be empty)')
  const tags = f.tags ?? []
  if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string' || t === '')) return bad('tags must be non-empty strings')
  let thread: GlobalId | undefined
  if (f.thread !== undefined && f.thread !== null) {
    if (typeof f.thread !== 'string') return bad('thread must be a global id')
    const t = parseIdText(f.thread)
    if (!t.ok) return t
    thread = t.value
    if (tags.length > 0) return bad('a reply may not have tags')
  }
  if (f.tripcode !== undefined && typeof f.tripcode !== 'string') return bad('tripcode must be a string')
  for (const s of [f.title, f.text, ...(tags as string[])]) {
    // XML 1.0 characters only; a lone surrogate would be stored as U+FFFD, silently unlike what the author gave.
    if (/[\x00-\x08\x0B\x0C\x0E-\x1F\uFFFE\uFFFF]|\p{Cs}/u.test(s)) return bad('text holds a character XML 1.0 does not allow')
  }
  return ok({
    id: f.id as GlobalId,
    title: f.title,
    text: f.text,
    tags: tags as string[],
    thread,
    pubTime: String(f.pubTime ?? ''),
    updateTime: String(f.updateTime ?? ''),
    tripcode: f.tripcode as string | undefined,
  })
}

function parseFilter(model: XmlElement): Result<FacetFilter> {
  const out: FacetFilter = []
  for (const el of childElements(model)) {
    if (el.name === 'tags') {
      const values: string[] = []
      for (const t of childrenNamed(el, 'tag')) {
        // Filter text is read with XML whitespace stripped (PROTOCOL.md §1).
        const v = rawText(t).replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, '')
        if (v === '') return fail('DIP_FILTER_INVALID', 'an empty <tag> in a filter')
        values.push(v)
      }
      if (values.length > 0) out.push({ facet: 'tag', values }) // empty <tags/> is no filter
    } else if (el.name === 'thread') {
      const ids = childElements(el)
      if (ids.length !== 1) return fail('DIP_FILTER_INVALID', '<thread> holds exactly one <id>')
      const id = parseIdElement(ids[0]!)
      if (!id.ok) return id
      out.push({ facet: 'thread', values: [formatId(id.value)] })
    }
  }
  return ok(out)
}

function filterXml(filter: FacetFilter): string {
  let out = ''
  for (const f of filter) {
    if (f.facet === 'tag') out += `<tags>${f.values.map((t) => `<tag>${escapeText(t)}</tag>`).join('')}</tags>`
    else if (f.facet === 'thread') {
      const id = parseIdText(f.values[0] ?? '')
      if (!id.ok) throw new TypeError('thread filter needs a global id')
      out += `<thread><id key="${id.value.key}" local-id="${id.value.localId}" type="ed25519"/></thread>`
    } else {
      // Dropping a filter would make a pull ask for more than meant.
      throw new DipError('DIP_FILTER_INVALID', `posts have no ${f.facet} filter`)
    }
  }
  return out
}

export const postModel: ModelDefinition<Post, PostFields> = {
  name: 'post',
  version: version('1.1'),
  fromContent,
  meta,
  toContent,
  checkFields,
  parseFilter,
  filterXml,
}
