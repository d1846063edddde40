// Request and response envelopes of list, get and put (PROTOCOL.md §1, §6, §7).
//
// Requests:  <request type="list|get|put" version="1.0">…</request>
// Answers:   <response><status>success|error|not supported</status>
//              [<code/><description/>[<supported/>]] | <models/>… | <results/>…</response>
//
// Reading is strict where the contract is (types, versions, ids, filters)
// and lenient where it says so (unknown children are ignored). Answers on the
// bulk path are built with string templates and the one escape function of
// xml.ts; tests check them against the same fixtures as everything else.
import { DipError, fail, ok, type Result, type DipCode } from '../errors.js'
import { formatId, idElementXml, parseIdElement, KEY_HEX_RE, type GlobalId } from './id.js'
import { EPOCH, parseFilterTime, type TimeKey } from './time.js'
import { formatVersion, isCompatible, parseVersion, shownVersion, type Version } from './version.js'
import { childElements, childrenNamed, escapeText, firstChild, rawText, text, type XmlElement } from './xml.js'

/**
 * dipd's header on the gets fetch on miss makes (spec/push.md): a node that
 * lacks the ids too does not fetch them in turn. Nodes of a pool sharing one
 * key pin it to each other, and without it each asked the other for ever.
 */
export const FETCH_ON_MISS_HEADER = 'dip-fetch-on-miss'

export const REQUEST_TYPES = ['list', 'get', 'put'] as const
export type RequestType = (typeof REQUEST_TYPES)[number]
/** The request versions this node speaks (highest of each). */
export const REQUEST_VERSIONS: Record<RequestType, Version> = {
  list: { major: 1, minor: 0 },
  get: { major: 1, minor: 0 },
  put: { major: 1, minor: 0 },
}

export interface Limits {
  maxBodyBytes: number
  maxIdsPerGet: number
  maxListPage: number
  maxContentBytes: number
  /** bytes of one attachment (attachments are not part of the content limit) */
  maxAttachmentBytes: number
}

export const DEFAULT_LIMITS: Limits = {
  maxBodyBytes: 16 * 1024 * 1024,
  maxIdsPerGet: 1000,
  maxListPage: 1000,
  maxContentBytes: 65536,
  maxAttachmentBytes: 16 * 1024 * 1024,
}

/** What a list request asks, before the model's own filters are read. */
export interface ListRequest {
  type: 'list'
  version: Version
  model: XmlElement
  modelName: string
  modelVersion: Version
  /** inclusive; undefined = unbounded */
  from: TimeKey | undefined
  /** exclusive; undefined = unbounded */
  to: TimeKey | undefined
  allow: Set<string> | undefined
  deny: Set<string> | undefined
  /** the cursor exactly as sent */
  after: string | undefined
}

export interface GetRequest {
  type: 'get'
  version: Version
  modelName: string
  modelVersion: Version
  /** the asked ids in text form (formatId), each once */
  ids: string[]
}

export interface PutRequest {
  type: 'put'
  version: Version
  models: XmlElement[]
}

export type Request = ListRequest | GetRequest | PutRequest

export interface Speaks {
  /** model name -> highest version spoken */
  models: ReadonlyMap<string, Version>
}

const err = (code: DipCode, msg: string) => fail<never>(code, msg)

/** The `<model name version>` of a list or get: known name, same major. */
function readModelHeader(model: XmlElement | undefined, speaks: Speaks): Result<{ name: string; version: Version }> {
  if (!model) return err('DIP_REQUEST_INVALID', 'the request names no <model>')
  const name = model.attrs.name
  if (name === undefined) return err('DIP_REQUEST_INVALID', '<model> has no name')
  const v = parseVersion(model.attrs.version)
  if (!v.ok) return v
  const ours = speaks.models.get(name)
  if (!ours) return err('DIP_MODEL_NOT_SUPPORTED', `model ${JSON.stringify(name)} is not supported`)
  if (!isCompatible(ours, v.value)) return err('DIP_VERSION_NOT_SUPPORTED', `model ${name} ${shownVersion(model.attrs.version!)} is not supported`)
  return ok({ name, version: v.value })
}

function readKeys(el: XmlElement): Result<Set<string>> {
  const keys = new Set<string>()
  for (const k of childrenNamed(el, 'key')) {
    const v = text(k)
    if (!KEY_HEX_RE.test(v)) return err('DIP_FILTER_INVALID', 'sender keys are 64 lowercase hex digits')
    keys.add(v)
  }
  return ok(keys)
}

function readTime(el: XmlElement): Result<TimeKey | undefined> {
  const v = text(el)
  if (v === '') return err('DIP_FILTER_INVALID', `<${el.name}> is empty`)
  const t = parseFilterTime(v)
  if (!t.ok) return t
  return ok(t.value === EPOCH ? undefined : t.value)
}

/** Reads a request whose path said `type`; the type attribute must agree. */
export function parseRequest(root: XmlElement, type: RequestType, speaks: Speaks, limits: Limits): Result<Request> {
  if (root.name !== 'request') return err('DIP_REQUEST_INVALID', `expected <request>, got <${root.name}>`)
  if (root.attrs.type !== type) return err('DIP_REQUEST_INVALID', `the type attribute ${JSON.stringify(root.attrs.type ?? null)} does not match the path /${type}/`)
  const version = parseVersion(root.attrs.version)
  if (!version.ok) return version
  if (!isCompatible(REQUEST_VERSIONS[type], version.value)) return err('DIP_VERSION_NOT_SUPPORTED', `${type} ${shownVersion(root.attrs.version!)} is not supported`)

  if (type === 'put') {
    // Every model sent gets its row (PROTOCOL.md §7), in however many <models> it came.
    const lists = childrenNamed(root, 'models')
    if (lists.length === 0) return err('DIP_REQUEST_INVALID', 'a put holds <models>')
    return ok({ type, version: version.value, models: lists.length === 1 ? childrenNamed(lists[0]!, 'model') : lists.flatMap((m) => childrenNamed(m, 'model')) })
  }
  const models = childrenNamed(root, 'model')
  if (models.length > 1) return err('DIP_REQUEST_INVALID', `a ${type} names one <model>`)
  const model = models[0]
  const header = readModelHeader(model, speaks)
  if (!header.ok) return header
  if (type === 'get') {
    const idEls = childrenNamed(model!, 'id')
    if (idEls.length > limits.maxIdsPerGet) return err('DIP_REQUEST_TOO_LARGE', `at most ${limits.maxIdsPerGet} ids per get`)
    const seen = new Set<string>()
    const ids: string[] = []
    for (const el of idEls) {
      const id = parseIdElement(el)
      if (!id.ok) return id
      const t = formatId(id.value)
      if (!seen.has(t)) ids.push(t) // each id once (PROTOCOL.md §7)
      seen.add(t)
    }
    return ok({ type, version: version.value, modelName: header.value.name, modelVersion: header.value.version, ids })
  }
  // A model is listed iff it passes every filter given (PROTOCOL.md §6):
  // a filter element given twice applies twice, as two <tags> do.
  let from: TimeKey | undefined
  let to: TimeKey | undefined
  let allow: Set<string> | undefined
  let deny: Set<string> | undefined
  let afterEl: XmlElement | undefined
  for (const el of childElements(model!)) {
    if (el.name === 'timestamp_from' || el.name === 'timestamp_to') {
      const t = readTime(el)
      if (!t.ok) return t
      if (t.value === undefined) continue
      if (el.name === 'timestamp_from') from = from === undefined || t.value > from ? t.value : from
      else to = to === undefined || t.value < to ? t.value : to
    } else if (el.name === 'sender') {
      for (const part of childElements(el)) {
        if (part.name !== 'allow' && part.name !== 'deny') continue
        const keys = readKeys(part)
        if (!keys.ok) return keys
        if (part.name === 'deny') deny = deny ? new Set([...deny, ...keys.value]) : keys.value
        else allow = allow ? new Set([...allow].filter((k) => keys.value.has(k))) : keys.value
      }
    } else if (el.name === 'after') {
      if (afterEl) return err('DIP_REQUEST_INVALID', 'a list has at most one <after>')
      afterEl = el
    }
  }
  return ok({
    type,
    version: version.value,
    model: model!,
    modelName: header.value.name,
    modelVersion: header.value.version,
    from,
    to,
    allow,
    deny,
    after: afterEl ? rawText(afterEl) : undefined, // the cursor is echoed exactly
  })
}

/**
 * F140's ping (dipd extension, request type `ping` 1.0): a peer says it is
 * back. `<request type="ping" version="1.0"><from>BASE URL</from></request>`.
 */
export function parsePing(root: XmlElement): Result<{ from: string }> {
  if (root.name !== 'request' || root.attrs.type !== 'ping') return err('DIP_REQUEST_INVALID', 'expected <request type="ping">')
  const version = parseVersion(root.attrs.version)
  if (!version.ok) return version
  if (version.value.major !== PING_VERSION.major) return err('DIP_VERSION_NOT_SUPPORTED', `ping ${shownVersion(root.attrs.version!)} is not supported`)
  const fromEl = firstChild(root, 'from')
  const from = fromEl ? text(fromEl) : ''
  if (!URL.canParse(from) || !/^https?:/.test(from)) return err('DIP_REQUEST_INVALID', '<from> must be the base URL of the pinging node')
  return ok({ from: new URL(from).href.replace(/\/+$/, '') })
}

export const PING_VERSION: Version = { major: 1, minor: 0 }

/** PROTOCOL.md §8: an answer's signature is over these bytes followed by the exact body. */
export const RESPONSE_PREFIX = Buffer.from('dip-response:')

export function pingRequestXml(from: string): string {
  return `<request type="ping" version="${formatVersion(PING_VERSION)}"><from>${escapeText(from)}</from></request>`
}

// ---- answers (server side) ----

export interface SupportedSet {
  requests: Record<string, string>
  models: Record<string, string>
}

export function supportedXml(s: SupportedSet): string {
  let out = '<supported>'
  for (const [t, v] of Object.entries(s.requests)) out += `<request type="${t}" version="${v}"/>`
  for (const [n, v] of Object.entries(s.models)) out += `<model name="${escapeText(n)}" version="${v}"/>`
  return out + '</supported>'
}

/** An error or not-supported answer for a DipError. */
export function errorXml(e: DipError, supported: SupportedSet): string {
  const status = e.dipStatus
  const sup = status === 'not supported' ? supportedXml(supported) : ''
  return `<response><status>${status}</status><code>${e.code}</code><description>${escapeText(e.message)}</description>${sup}</response>`
}

export interface ListRowOut {
  name: string
  version: string
  id: string
  updateTime: string
  hash: string
}

/** idElementXml of an id's text form (`type::key::local-id`), read off it without splitting (a list row and a get's every id). */
function idXmlFromText(idText: string): string {
  const a = idText.indexOf('::')
  const b = idText.indexOf('::', a + 2)
  return idElementXml({ type: idText.slice(0, a) as 'ed25519', key: idText.slice(a + 2, b), localId: idText.slice(b + 2) })
}

export function listXml(rows: ListRowOut[], next: string, more: boolean): string {
  let out = '<response><status>success</status><models>'
  for (const r of rows) {
    out += `<model name="${r.name}" version="${r.version}">${idXmlFromText(r.id)}<update-time>${escapeText(r.updateTime)}</update-time><hash>${r.hash}</hash></model>`
  }
  return out + `</models><next>${escapeText(next)}</next>${more ? '<more/>' : ''}</response>`
}

export type PutRow = { status: 'stored' | 'duplicate'; hash: string; id: GlobalId } | { status: 'rejected'; code: DipCode; id?: GlobalId | undefined }

export function putXml(rows: PutRow[]): string {
  let out = '<response><status>success</status><results>'
  for (const r of rows) {
    const id = r.id ? idElementXml(r.id) : ''
    out += r.status === 'rejected' ? `<result status="rejected" code="${r.code}">${id}</result>` : `<result status="${r.status}" hash="${r.hash}">${id}</result>`
  }
  return out + '</results></response>'
}

// ---- requests and answers (client side) ----

export function listRequestXml(model: { name: string; version: string }, filterXml: string, after: string | undefined, version = formatVersion(REQUEST_VERSIONS.list)): string {
  const a = after === undefined ? '' : `<after>${escapeText(after)}</after>`
  return `<request type="list" version="${version}"><model name="${model.name}" version="${model.version}">${filterXml}${a}</model></request>`
}

export function getRequestXml(model: { name: string; version: string }, ids: string[], version = formatVersion(REQUEST_VERSIONS.get)): string {
  return `<request type="get" version="${version}"><model name="${model.name}" version="${model.version}">${ids.map(idXmlFromText).join('')}</model></request>`
}

export function putRequestXml(modelsXml: string[]): string {
  return `<request type="put" version="${formatVersion(REQUEST_VERSIONS.put)}"><models>${modelsXml.join('')}</models></request>`
}

/** Filter elements shared by every model: time range and sender keys. */
export function commonFilterXml(f: { from?: string | undefined; to?: string | undefined; allow?: string[] | undefined; deny?: string[] | undefined }): string {
  let out = ''
  if (f.from !== undefined) out += `<timestamp_from>${escapeText(f.from)}</timestamp_from>`
  if (f.to !== undefined) out += `<timestamp_to>${escapeText(f.to)}</timestamp_to>`
  if (f.allow !== undefined || f.deny !== undefined) {
    out += '<sender>'
    if (f.allow !== undefined) out += `<allow>${f.allow.map((k) => `<key>${k}</key>`).join('')}</allow>`
    if (f.deny !== undefined) out += `<deny>${f.deny.map((k) => `<key>${k}</key>`).join('')}</deny>`
    out += '</sender>'
  }
  return out
}

export interface ResponseHead {
  status: 'success' | 'error' | 'not supported'
  code: string | undefined
  description: string | undefined
  supported: SupportedSet | undefined
}

const bad = (msg: string) => fail<never>('DIP_PEER_RESPONSE_INVALID', msg)

export function readResponseHead(root: XmlElement): Result<ResponseHead> {
  if (root.name !== 'response') return bad(`expected <response>, got <${root.name}>`)
  const statusEl = firstChild(root, 'status')
  const status = statusEl ? text(statusEl) : ''
  if (status !== 'success' && status !== 'error' && status !== 'not supported') return bad(`unknown status ${JSON.stringify(status)}`)
  const codeEl = firstChild(root, 'code')
  const descEl = firstChild(root, 'description')
  const supEl = firstChild(root, 'supported')
  let supported: SupportedSet | undefined
  if (supEl) {
    supported = { requests: {}, models: {} }
    for (const r of childrenNamed(supEl, 'request')) if (r.attrs.type && r.attrs.version) supported.requests[r.attrs.type] = r.attrs.version
    for (const m of childrenNamed(supEl, 'model')) if (m.attrs.name && m.attrs.version) supported.models[m.attrs.name] = m.attrs.version
  }
  return ok({ status, code: codeEl ? text(codeEl) : undefined, description: descEl ? rawText(descEl) : undefined, supported })
}

export interface ListRowIn {
  name: string
  version: string
  id: string
  updateTime: string
  updateTimeKey: TimeKey
  hash: string
}

export function readListAnswer(root: XmlElement): Result<{ rows: ListRowIn[]; next: string; more: boolean }> {
  const models = firstChild(root, 'models')
  const nextEl = firstChild(root, 'next')
  if (!models || !nextEl) return bad('a list answer holds <models> and <next>')
  const rows: ListRowIn[] = []
  for (const m of childrenNamed(models, 'model')) {
    const idEl = firstChild(m, 'id')
    const id = idEl ? parseIdElement(idEl) : undefined
    const utEl = firstChild(m, 'update-time')
    const updateTime = utEl ? text(utEl) : ''
    const hashEl = firstChild(m, 'hash')
    const hash = hashEl ? text(hashEl) : ''
    const time = utEl ? parseFilterTime(updateTime) : undefined
    if (!id?.ok || !time?.ok || !/^sha256:[0-9a-f]{64}$/.test(hash) || !m.attrs.name || !m.attrs.version) return bad('a list row is malformed')
    rows.push({ name: m.attrs.name, version: m.attrs.version, id: formatId(id.value), updateTime, updateTimeKey: time.value, hash })
  }
  return ok({ rows, next: rawText(nextEl), more: firstChild(root, 'more') !== undefined })
}

export function readGetAnswer(root: XmlElement): Result<XmlElement[]> {
  const models = firstChild(root, 'models')
  if (!models) return bad('a get answer holds <models>')
  return ok(childrenNamed(models, 'model'))
}

export interface PutResultIn {
  status: string
  code: string | undefined
  hash: string | undefined
  id: string | undefined
}

export function readPutAnswer(root: XmlElement): Result<PutResultIn[]> {
  const results = firstChild(root, 'results')
  if (!results) return bad('a put answer holds <results>')
  return ok(
    childrenNamed(results, 'result').map((r) => {
      const idEl = firstChild(r, 'id')
      const id = idEl ? parseIdElement(idEl) : undefined
      return { status: r.attrs.status ?? '', code: r.attrs.code, hash: r.attrs.hash, id: id?.ok ? formatId(id.value) : undefined }
    }),
  )
}

