// Property-based fuzzing of the sync API (PROTOCOL.md §1, §6-§8) through the
// real HTTP app on loopback, on a real LevelDB store.
//
// Every case starts from a VALID request (list with filters, get with ids,
// put with 1-5 signed models, fresh or already stored), applies 1-3
// mutations (bit and byte flips, truncation, inserted bytes / UTF-8 / XML
// specials, tree edits re-serialized with canonicalize: duplicate, delete,
// shuffle, rename, attribute and text replacement, a 1 MiB text, 10,000
// tags, 2,000 ids; deep nesting inserted textually), picks a path (usually
// the one the request names, sometimes another or an unknown type) and a
// Content-Type (sometimes wrong), and POSTs it. For every answer:
//   1. the server answers (no reset, no hang: per-request timeouts);
//   2. it is a signed DIP envelope: <response>, readResponseHead ok,
//      application/xml; charset=utf-8, DIP-Node-Key and a DIP-Signature over
//      "dip-response:" + body that verifies;
//   3. error / not supported: a whole-answer wire code, HTTP status and
//      <status> from WIRE_CODES, <supported> on not supported, no stack trace
//      or local path in <description>; plus the codes the request itself
//      decides (unknown type 501, wrong media type 415, not XML 400
//      DIP_XML_INVALID, wrong root or type 400 DIP_REQUEST_INVALID);
//   4. put success: one <result> per <model> of <models>, in order (ids and
//      content hashes of the request's models), row codes only, hashes on
//      stored / duplicate rows; (get success: held ids only, in request
//      order, each once; list success: a readable page);
//   5. the store changes only through rows that say stored (lastSeq grows by
//      exactly their number; count() changes by at most that, and the store
//      holds the hash each stored row names); list and get never change it;
//   6. after the run a plain list still succeeds.
// Plain tests beside the properties: a few hand-made hostile bodies with
// their documented codes, and paths under /api/sync/ that the router refuses.
//
// Reproducible: fixed seeds (printed; override with FUZZ_SEED) and fixed
// author keys. FUZZ_RUNS sets the total number of cases (split 30% list,
// 30% get, 40% put; default 10,000). A failure prints fast-check's seed and
// path, the shrunk case description and the request it built.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { connect } from 'node:net'
import fc from 'fast-check'
import type { FastifyInstance } from 'fastify'
import { request } from 'undici'
import { WIRE_CODES, isWireCode, type WireCode } from '../../src/errors.js'
import { buildApp } from '../../src/http/app.js'
import { defaultRegistry } from '../../src/daemon.js'
import { GraphStore } from '../../src/store/graph-store.js'
import { Ingest } from '../../src/store/ingest.js'
import { commonFilterXml, DEFAULT_LIMITS, getRequestXml, listRequestXml, putRequestXml, readGetAnswer, readListAnswer, readPutAnswer, readResponseHead, type ResponseHead } from '../../src/protocol/envelope.js'
import { childElements, firstChild, childrenNamed, parseXml, type XmlElement, type XmlNode } from '../../src/protocol/xml.js'
import { canonicalize } from '../../src/protocol/canonical.js'
import { generateKeyPair, keyPairFromSecret, verify, type NodeKeyPair } from '../../src/crypto/ed25519.js'
import type { StagedModel } from '../../src/model/signed.js'
import { NodeIdentity } from '../../src/trust/identity.js'
import { postModel } from '../../src/model/post/post.js'
import type { AttachmentRef } from '../../src/model/types.js'
import { tempDir } from '../helpers.js'
import { makePost } from '../factory.js'

// ---- configuration ----

const TOTAL = Math.max(3, Number(process.env.FUZZ_RUNS ?? 10_000) | 0)
const RUNS = { list: Math.round(TOTAL * 0.3), get: Math.round(TOTAL * 0.3), put: 0 }
RUNS.put = TOTAL - RUNS.list - RUNS.get
const BASE_SEED = Number(process.env.FUZZ_SEED ?? 20_261_123) | 0
const SEEDS = { list: BASE_SEED + 1, get: BASE_SEED + 2, put: BASE_SEED + 3 }
/** per-request limits: an answer must start and finish within these */
const REQUEST_TIMEOUT_MS = 20_000

// ---- fixed keys and models (reproducible bytes) ----

const fixedPair = (label: string): NodeKeyPair => keyPairFromSecret(createHash('sha256').update(`dipd-fuzz:${label}`).digest())
const ALICE = fixedPair('alice')
const BOB = fixedPair('bob')
const CAROL = fixedPair('carol') // holds nothing before the run
const AUTHORS = [ALICE, BOB, CAROL] as const
const registry = defaultRegistry()
const limits = DEFAULT_LIMITS
const POST = { name: 'post', version: '1.1' }
const SUPPORTED = { requests: { list: '1.0', get: '1.0', put: '1.0', ping: '1.0' }, models: { post: '1.1', message: '1.0' } }
const TIMES = ['2018-05-05T00:00:00Z', '2020-01-01T00:00:00Z', '2022-02-02T02:02:02.5Z', '2999-01-01T00:00:00Z'] as const
const sha = (b: Uint8Array | string) => 'sha256:' + createHash('sha256').update(b).digest('hex')

interface PostSpec {
  author: number
  localId: string
  title?: string
  text?: string
  tags?: string[]
  thread?: string | undefined
  time?: string
  attachments?: AttachmentRef[]
  tripcode?: string | undefined
}

function post(spec: PostSpec): StagedModel {
  return makePost(AUTHORS[spec.author % AUTHORS.length]!, {
    localId: spec.localId,
    title: spec.title,
    text: spec.text,
    tags: spec.tags,
    thread: spec.thread,
    pubTime: '2018-01-01T00:00:00Z',
    updateTime: spec.time ?? TIMES[1],
    tripcode: spec.tripcode,
    attachments: spec.attachments,
  })
}

const ATT_BYTES = Buffer.from('fuzz attachment bytes \u00e9\u{1F600}')
const ATT: AttachmentRef = { hash: sha(ATT_BYTES), mimetype: 'image/png', name: 'a.png', size: ATT_BYTES.length }
const withData = (xml: string, bytes: Buffer, hash = ATT.hash) => xml.replace(/<\/model>$/, `<attachment-data hash="${hash}">${bytes.toString('base64')}</attachment-data></model>`)

/** What the store holds before the run (stored through a put over HTTP in before()). */
const SEED_SPECS: (PostSpec & { data?: boolean })[] = [
  { author: 0, localId: '1', tags: ['cats'] },
  { author: 1, localId: '1', tags: ['dogs', 'cats'], time: TIMES[0] },
  { author: 0, localId: '3', tags: ['news'], attachments: [ATT], data: true },
  { author: 1, localId: 'x.y-z_9', text: 'a & b < c > d "q" \u00e9\u{1F600} ]]> [post]ed25519::' + '00'.repeat(32) + '::1[/post]', time: '2021-03-04T05:06:07.123456Z', tripcode: '!trip' },
]
const SEEDS_OP = SEED_SPECS.map(post)
// replies of the two opening posts
SEED_SPECS.push({ author: 0, localId: '2', thread: SEEDS_OP[0]!.idText }, { author: 1, localId: '2', thread: SEEDS_OP[1]!.idText, time: TIMES[2] })
const SEED = SEED_SPECS.map(post)
const SEED_XML = SEED.map((m, i) => (SEED_SPECS[i]!.data ? withData(m.xml, ATT_BYTES) : m.xml))
const OPENING = [0, 1, 2, 3] // indexes of seeds without thread

// ---- case descriptions (what fast-check generates, prints and shrinks) ----

type After = { k: 'cursor'; seq: number } | { k: 'foreign' } | { k: 'empty' } | { k: 'text'; s: string }
type IdSpec = { k: 'seed'; i: number } | { k: 'unknown'; author: number; localId: string }
type ModelSpec =
  | { k: 'seed'; i: number; data: boolean }
  | { k: 'fresh'; author: number; localId: string; title: string; text: string; tags: string[]; reply: number | null; time: number; attach: 'none' | 'good' | 'bad' | 'ref' | 'signed-only' }
  | { k: 'edit'; i: number; time: number; text: string }
type Base =
  | { type: 'list'; model: readonly [string, string]; from?: string; to?: string; allow?: number[]; deny?: number[]; tags?: string[]; thread?: number; after?: After }
  | { type: 'get'; model: readonly [string, string]; ids: IdSpec[] }
  | { type: 'put'; models: ModelSpec[] }
type Mutation =
  | { m: 'bitflip'; pos: number; bit: number }
  | { m: 'byte'; pos: number; value: number }
  | { m: 'truncate'; pos: number }
  | { m: 'insert'; pos: number; what: string | Uint8Array }
  | { m: 'between-tags'; tag: number; what: string }
  | { m: 'dup'; el: number }
  | { m: 'del'; el: number }
  | { m: 'shuffle'; el: number; swaps: number[] }
  | { m: 'attr'; el: number; attr: number; name: string; value: string }
  | { m: 'rename'; el: number; name: string }
  | { m: 'text'; el: number; value: string }
  | { m: 'huge-text'; el: number; unit: string }
  | { m: 'many-tags'; el: number }
  | { m: 'many-ids'; el: number; n: number }
  | { m: 'deep'; tag: number; depth: number }
interface Case {
  base: Base
  mutations: Mutation[]
  /** the path's request type: 'same' (the base's own type), another one, or an unknown one */
  path: { type: string; slash: boolean }
  contentType: string | undefined
}

// ---- arbitraries ----

const KEY_CHOICES = [ALICE.publicKeyHex, BOB.publicKeyHex, CAROL.publicKeyHex, 'ab'.repeat(32), ALICE.publicKeyHex.toUpperCase(), ALICE.publicKeyHex.slice(1), 'nope']
const safeText = fc.string({ unit: fc.constantFrom('a', 'b', ' ', '\n', '\t', '\r', '&', '<', '>', '"', "'", '\u00e9', '\u{1F600}', ']]>', '[post]', '&amp;'), maxLength: 16 })
const localIdArb = fc.string({ unit: fc.constantFrom(...'0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ._-'), minLength: 6, maxLength: 14 })
const tagArb = fc.constantFrom('cats', 'dogs', 'news', 'Cats', '\u00fc\u{1F600}', 'a b', '&<>')
const FILTER_TIMES = ['0', '2019-01-01T00:00:00Z', '2020-01-01 00:00:00', '1577836800', '2021-03-04T05:06:07.123456Z', '9999-12-31T23:59:59Z', ' 0 ', '', 'yesterday', '2020-02-30T00:00:00Z', '999999999999999']
const modelHeader = fc.oneof(
  { arbitrary: fc.constant(['post', '1.1'] as const), weight: 12 },
  { arbitrary: fc.constantFrom(['post', '1.0'] as const, ['post', '1.7'] as const, ['post', '2.0'] as const, ['chat', '1.0'] as const, ['post', 'x'] as const), weight: 1 },
)
const afterArb: fc.Arbitrary<After> = fc.oneof(
  { arbitrary: fc.record({ k: fc.constant('cursor' as const), seq: fc.nat({ max: 6 }) }), weight: 6 },
  { arbitrary: fc.constantFrom({ k: 'foreign' as const }, { k: 'empty' as const }), weight: 1 },
  { arbitrary: fc.record({ k: fc.constant('text' as const), s: safeText }), weight: 1 },
)
const listBase: fc.Arbitrary<Base> = fc.record(
  {
    type: fc.constant('list' as const),
    model: modelHeader,
    from: fc.constantFrom(...FILTER_TIMES),
    to: fc.constantFrom(...FILTER_TIMES),
    allow: fc.array(fc.nat({ max: KEY_CHOICES.length - 1 }), { maxLength: 3 }),
    deny: fc.array(fc.nat({ max: KEY_CHOICES.length - 1 }), { maxLength: 3 }),
    tags: fc.array(tagArb, { maxLength: 3 }),
    thread: fc.nat({ max: SEED.length }),
    after: afterArb,
  },
  { requiredKeys: ['type', 'model'] },
)
const idSpec: fc.Arbitrary<IdSpec> = fc.oneof(
  { arbitrary: fc.record({ k: fc.constant('seed' as const), i: fc.nat({ max: SEED.length - 1 }) }), weight: 3 },
  { arbitrary: fc.record({ k: fc.constant('unknown' as const), author: fc.nat({ max: 2 }), localId: localIdArb }), weight: 1 },
)
const getBase: fc.Arbitrary<Base> = fc.record({ type: fc.constant('get' as const), model: modelHeader, ids: fc.array(idSpec, { maxLength: 12 }) })
const modelSpec: fc.Arbitrary<ModelSpec> = fc.oneof(
  { arbitrary: fc.record({ k: fc.constant('seed' as const), i: fc.nat({ max: SEED.length - 1 }), data: fc.boolean() }), weight: 2 },
  {
    arbitrary: fc.record({
      k: fc.constant('fresh' as const),
      author: fc.nat({ max: 2 }),
      // Mostly from a small space, so that versions of one id race (stored, stale, duplicate) and
      // the store stays small (count() walks it after every case); sometimes a never-seen id.
      localId: fc.oneof({ arbitrary: fc.nat({ max: 49 }).map((n) => `f${n}`), weight: 9 }, { arbitrary: localIdArb, weight: 1 }),
      title: safeText,
      text: safeText,
      tags: fc.array(tagArb, { maxLength: 3 }),
      reply: fc.option(fc.constantFrom(...OPENING), { nil: null }),
      time: fc.nat({ max: TIMES.length - 1 }),
      attach: fc.constantFrom('none' as const, 'none' as const, 'good' as const, 'bad' as const, 'ref' as const, 'signed-only' as const),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ k: fc.constant('edit' as const), i: fc.nat({ max: SEED.length - 1 }), time: fc.nat({ max: TIMES.length - 1 }), text: safeText }), weight: 1 },
)
const putBase: fc.Arbitrary<Base> = fc.record({ type: fc.constant('put' as const), models: fc.array(modelSpec, { minLength: 1, maxLength: 5 }) })

const SNIPPETS = [
  '<', '>', '&', '&amp;', '&#0;', '&#x110000;', '&bogus;', '&lt;', ']]>', '<![CDATA[x]]>', '<!DOCTYPE x>', '<!ENTITY a "b">',
  '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>', '<!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>', '&b;',
  '"', "'", '="', '<?xml version="1.0"?>', '<?pi x?>', '<!-- c -->', '<!-- -- -->', '</model>', '<model>', '<model name="post" version="1.1"/>',
  '\u0000', '\u0007', '\uFEFF', '\uFFFF', '\uD800', '\r\n', '\r', ' xmlns="urn:x"', ' a="1"', ' a="1" a="2"', '<a:b/>', '<x/>', '</x>', '\u00e9', '\u{1F600}',
]
const BENIGN = [' ', '\n', '\t', '\r\n', '<!-- fuzz -->', '<?pi data?>', '<x/>', '<![CDATA[]]>']
const ATTR_NAMES = ['type', 'version', 'name', 'key', 'local-id', 'hash', 'value', 'status', 'code', 'xmlns', 'extra']
const ATTR_VALUES = [
  '1.9', '2.0', 'x', '', '1.0', '1.1', '0.1', '1.', '.1', ' 1.0', '01.1', '1.0000000000', '99999999999999999999.0', '4294967296.0',
  'post', 'POST', 'chat', 'list', 'get', 'put', 'sub', 'ed25519', 'ED25519', 'rsa',
  ALICE.publicKeyHex.toUpperCase(), ALICE.publicKeyHex.slice(1), ALICE.publicKeyHex + '0', BOB.publicKeyHex, 'g'.repeat(64),
  '042', 'a'.repeat(64), 'a'.repeat(65), 'a b', '../x', '1', '\u00e9', 'sha256:' + '0'.repeat(64), 'sha256:' + 'A'.repeat(64), '0'.repeat(128), '&<>"\t\n\r',
]
const ELEMENT_NAMES = ['request', 'response', 'model', 'models', 'id', 'content', 'signatures', 'signature', 'tags', 'tag', 'thread', 'after', 'timestamp_from', 'timestamp_to', 'sender', 'allow', 'deny', 'key', 'x', 'ID', 'Model', 'a:b']
const TEXT_VALUES = [...FILTER_TIMES, 'cats', 'x'.repeat(100), '&', '<', '\u00e9', '0'.repeat(64), 'sha256:0']
const pos = fc.nat()
/** an element in pre-order (modulo their number) */
const el = fc.nat({ max: 60 })
/** big inputs go where they matter half of the time: -1 = the first <model>, -2 = the first <content> */
const bigEl = fc.oneof(fc.constantFrom(-1, -2), el)
const smallMutation: fc.Arbitrary<Mutation> = fc.oneof(
  { arbitrary: fc.record({ m: fc.constant('bitflip' as const), pos, bit: fc.nat({ max: 7 }) }), weight: 4 },
  { arbitrary: fc.record({ m: fc.constant('byte' as const), pos, value: fc.nat({ max: 255 }) }), weight: 3 },
  { arbitrary: fc.record({ m: fc.constant('truncate' as const), pos }), weight: 2 },
  {
    arbitrary: fc.record({
      m: fc.constant('insert' as const),
      pos,
      what: fc.oneof(fc.constantFrom(...SNIPPETS), fc.uint8Array({ minLength: 1, maxLength: 8 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 8 })),
    }),
    weight: 4,
  },
  { arbitrary: fc.record({ m: fc.constant('between-tags' as const), tag: pos, what: fc.constantFrom(...BENIGN) }), weight: 3 },
  { arbitrary: fc.record({ m: fc.constant('dup' as const), el }), weight: 3 },
  { arbitrary: fc.record({ m: fc.constant('del' as const), el }), weight: 3 },
  { arbitrary: fc.record({ m: fc.constant('shuffle' as const), el, swaps: fc.array(fc.nat({ max: 15 }), { minLength: 1, maxLength: 6 }) }), weight: 2 },
  {
    arbitrary: fc.record({
      m: fc.constant('attr' as const),
      el,
      attr: fc.nat({ max: 4 }),
      name: fc.constantFrom(...ATTR_NAMES),
      value: fc.oneof({ arbitrary: fc.constantFrom(...ATTR_VALUES), weight: 4 }, { arbitrary: safeText, weight: 1 }),
    }),
    weight: 4,
  },
  { arbitrary: fc.record({ m: fc.constant('rename' as const), el, name: fc.constantFrom(...ELEMENT_NAMES) }), weight: 2 },
  { arbitrary: fc.record({ m: fc.constant('text' as const), el, value: fc.oneof(fc.constantFrom(...TEXT_VALUES), safeText) }), weight: 2 },
  { arbitrary: fc.record({ m: fc.constant('deep' as const), tag: pos, depth: fc.constantFrom(1, 3, 40, 63, 64, 65, 100) }), weight: 1 },
)
/** Big inputs cost milliseconds each: about 2% of the mutations. */
const hugeMutation: fc.Arbitrary<Mutation> = fc.oneof(
  { arbitrary: fc.record({ m: fc.constant('huge-text' as const), el: bigEl, unit: fc.constantFrom('a', 'a', '\u00e9', '\u{1F600}', '&', '<', ' ') }), weight: 1 },
  { arbitrary: fc.record({ m: fc.constant('many-tags' as const), el: bigEl }), weight: 1 },
  { arbitrary: fc.record({ m: fc.constant('many-ids' as const), el: bigEl, n: fc.constantFrom(1000, 1001, 2000) }), weight: 1 },
  { arbitrary: fc.record({ m: fc.constant('deep' as const), tag: pos, depth: fc.constantFrom(1000, 50_000) }), weight: 1 },
)
const mutation = fc.oneof({ arbitrary: smallMutation, weight: 49 }, { arbitrary: hugeMutation, weight: 1 })
const CONTENT_TYPES = ['text/xml', 'application/xml; charset=utf-8', 'Application/XML', 'text/xml;charset=UTF-8']
const WRONG_TYPES = ['application/json', 'text/plain', 'application/octet-stream', 'text/html; charset=utf-8', 'application/xml+x', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded']
const isWrongType = (ct: string | undefined) => ct !== undefined && WRONG_TYPES.includes(ct)
const contentType = fc.oneof(
  { arbitrary: fc.constant('application/xml'), weight: 14 },
  { arbitrary: fc.constantFrom<string | undefined>(undefined, ...CONTENT_TYPES), weight: 3 },
  { arbitrary: fc.constantFrom(...WRONG_TYPES), weight: 1 },
)
const caseArb = (base: fc.Arbitrary<Base>): fc.Arbitrary<Case> =>
  fc.record({
    base,
    mutations: fc.array(mutation, { minLength: 1, maxLength: 3 }),
    path: fc.record({
      // 'same': the type the request names
      type: fc.oneof({ arbitrary: fc.constant('same'), weight: 16 }, { arbitrary: fc.constantFrom('list', 'get', 'put'), weight: 3 }, { arbitrary: fc.constantFrom('sub', 'LIST', 'list2'), weight: 1 }),
      slash: fc.boolean(),
    }),
    contentType,
  })

// ---- building a case's request ----

let storeId = '' // set in before(); cursors of this store are `${storeId}.${seq}`

function seedIdText(i: number): string {
  return SEED[i]!.idText
}

function baseXml(b: Base): string {
  if (b.type === 'list') {
    const allow = b.allow?.map((k) => KEY_CHOICES[k]!)
    const deny = b.deny?.map((k) => KEY_CHOICES[k]!)
    let filters = commonFilterXml({ from: b.from, to: b.to, allow, deny })
    if (b.tags !== undefined) filters += postModel.filterXml(b.tags.length > 0 ? [{ facet: 'tag', values: b.tags }] : []) || '<tags/>'
    if (b.thread !== undefined) filters += b.thread < SEED.length ? postModel.filterXml([{ facet: 'thread', values: [seedIdText(b.thread)] }]) : '<thread/>'
    const a = b.after
    const cursor = a === undefined ? undefined : a.k === 'cursor' ? `${storeId}.${a.seq}` : a.k === 'foreign' ? '0123456789abcdef.1' : a.k === 'empty' ? '' : a.s
    return listRequestXml({ name: b.model[0], version: b.model[1] }, filters, cursor)
  }
  if (b.type === 'get') {
    const ids = b.ids.map((s) => (s.k === 'seed' ? seedIdText(s.i) : `ed25519::${AUTHORS[s.author]!.publicKeyHex}::${s.localId}`))
    return getRequestXml({ name: b.model[0], version: b.model[1] }, ids)
  }
  return putRequestXml(b.models.map(modelXml))
}

function modelXml(s: ModelSpec): string {
  if (s.k === 'seed') return s.data && SEED_SPECS[s.i]!.data ? SEED_XML[s.i]! : SEED[s.i]!.xml
  if (s.k === 'edit') return post({ ...SEED_SPECS[s.i]!, time: TIMES[s.time]!, text: s.text }).xml
  const spec: PostSpec = { author: s.author, localId: s.localId, title: s.title, text: s.text, time: TIMES[s.time]! }
  if (s.reply === null) spec.tags = s.tags
  else spec.thread = seedIdText(s.reply)
  if (s.attach !== 'none') spec.attachments = [ATT]
  const m = post(spec)
  if (s.attach === 'good') return withData(m.xml, ATT_BYTES)
  if (s.attach === 'bad') return withData(m.xml, Buffer.from('other bytes'))
  if (s.attach === 'ref') return m.xml.replace(/<\/model>$/, `<attachment-ref hash="${ATT.hash}" url="https://example.com/a.png"/></model>`)
  return m.xml
}

/** pre-order elements with their parents */
function elements(root: XmlElement): { el: XmlElement; parent: XmlElement | undefined }[] {
  const out: { el: XmlElement; parent: XmlElement | undefined }[] = []
  const walk = (e: XmlElement, parent: XmlElement | undefined) => {
    out.push({ el: e, parent })
    for (const c of e.children) if (typeof c !== 'string') walk(c, e)
  }
  walk(root, undefined)
  return out
}

const clone = (e: XmlElement): XmlElement => ({ name: e.name, attrs: Object.assign(Object.create(null), e.attrs) as Record<string, string>, children: e.children.map((c) => (typeof c === 'string' ? c : clone(c))) })
const bytes = (s: string) => Buffer.from(s, 'utf8')
const idEl = (author: number, localId: string): XmlElement => ({ name: 'id', attrs: Object.assign(Object.create(null), { key: AUTHORS[author % 3]!.publicKeyHex, 'local-id': localId, type: 'ed25519' }), children: [] })

/** Tree mutations: parse, edit, re-serialize canonically; a body that does not parse is left as it is. */
function treeMutation(body: Buffer, mu: Extract<Mutation, { el: number }>): Buffer {
  const parsed = parseXml(body)
  if (!parsed.ok) return body
  const root = parsed.value
  const all = elements(root)
  const named = mu.el === -1 ? 'model' : mu.el === -2 ? 'content' : undefined
  const { el: target, parent } = (named && all.find((e) => e.el.name === named)) || all[Math.max(0, mu.el) % all.length]!
  switch (mu.m) {
    case 'dup':
      if (!parent) return bytes(canonicalize(root) + canonicalize(root))
      parent.children.splice(parent.children.indexOf(target) + 1, 0, clone(target))
      break
    case 'del':
      if (!parent) return Buffer.alloc(0)
      parent.children.splice(parent.children.indexOf(target), 1)
      break
    case 'shuffle': {
      const ch = target.children
      if (ch.length < 2) break
      mu.swaps.forEach((j, i) => {
        const a = i % ch.length
        const b = j % ch.length
        ;[ch[a], ch[b]] = [ch[b]!, ch[a]!]
      })
      break
    }
    case 'attr': {
      const names = Object.keys(target.attrs)
      const name = mu.attr < names.length ? names[mu.attr]! : mu.name
      target.attrs[name] = mu.value
      break
    }
    case 'rename':
      target.name = mu.name
      break
    case 'text':
      if (childElements(target).length === 0) target.children = mu.value === '' ? [] : [mu.value]
      else target.children.push(mu.value)
      break
    case 'huge-text': {
      // 1 MiB on the wire once escaped
      const wire = Buffer.byteLength(mu.unit === '&' ? '&amp;' : mu.unit === '<' ? '&lt;' : mu.unit)
      target.children.push(mu.unit.repeat(Math.ceil((1024 * 1024) / wire)))
      break
    }
    case 'many-tags':
      target.children.push({ name: 'tags', attrs: Object.create(null), children: Array.from({ length: 10_000 }, (_, i): XmlNode => ({ name: 'tag', attrs: Object.create(null), children: [`t${i % 97}`] })) })
      break
    case 'many-ids':
      for (let i = 0; i < mu.n; i++) target.children.push(idEl(i, `m${i}`))
      break
  }
  return bytes(canonicalize(root))
}

/** Offsets just after every `>` (between tags), or with startOnly just after start tags that are not self-closing. */
function tagEnds(body: Buffer, startOnly: boolean): number[] {
  const out: number[] = []
  for (let i = 0; i < body.length; i++) {
    if (body[i] !== 0x3e) continue
    if (startOnly) {
      if (body[i - 1] === 0x2f || body[i - 1] === 0x3f || body[i - 1] === 0x2d) continue
      const lt = body.lastIndexOf(0x3c, i)
      if (lt === -1 || body[lt + 1] === 0x2f || body[lt + 1] === 0x21 || body[lt + 1] === 0x3f) continue
    }
    out.push(i + 1)
  }
  return out
}

function splice(body: Buffer, at: number, insert: Uint8Array): Buffer {
  return Buffer.concat([body.subarray(0, at), insert, body.subarray(at)])
}

function mutate(body: Buffer, mu: Mutation): Buffer {
  switch (mu.m) {
    case 'bitflip': {
      if (body.length === 0) return body
      const out = Buffer.from(body)
      const p = mu.pos % out.length
      out[p] = out[p]! ^ (1 << mu.bit)
      return out
    }
    case 'byte': {
      if (body.length === 0) return Buffer.from([mu.value])
      const out = Buffer.from(body)
      out[mu.pos % out.length] = mu.value
      return out
    }
    case 'truncate':
      return body.subarray(0, mu.pos % (body.length + 1))
    case 'insert':
      return splice(body, mu.pos % (body.length + 1), typeof mu.what === 'string' ? bytes(mu.what) : mu.what)
    case 'between-tags': {
      const ends = tagEnds(body, false)
      return ends.length === 0 ? body : splice(body, ends[mu.tag % ends.length]!, bytes(mu.what))
    }
    case 'deep': {
      const ends = tagEnds(body, true)
      const at = ends.length === 0 ? body.length : ends[mu.tag % ends.length]!
      return splice(body, at, bytes('<a>'.repeat(mu.depth) + '</a>'.repeat(mu.depth)))
    }
    default:
      return treeMutation(body, mu)
  }
}

const pathType = (c: Case) => (c.path.type === 'same' ? c.base.type : c.path.type)

function build(c: Case): { path: string; body: Buffer } {
  let body: Buffer = bytes(baseXml(c.base))
  for (const mu of c.mutations) body = mutate(body, mu)
  return { path: `/api/sync/${pathType(c)}${c.path.slash ? '/' : ''}`, body }
}

// ---- the node under test ----

let app: FastifyInstance
let store: GraphStore
let base: string
let dir: { path: string; remove(): Promise<void> }
const nodeKey = generateKeyPair()
const NODE_KEY = `ed25519::${nodeKey.publicKeyHex}`
const RESPONSE_PREFIX = Buffer.from('dip-response:')
/** the store's count() as of the end of the last case; recounted when a case ended abnormally */
let knownCount: number | undefined

const stats = { cases: 0, crashes: 0, byStatus: new Map<string, number>(), rows: new Map<string, number>(), stored: 0 }
const bump = (m: Map<string, number>, k: string, n = 1) => m.set(k, (m.get(k) ?? 0) + n)

before(async () => {
  dir = await tempDir('dipd-fuzz-')
  store = await GraphStore.openLevel(dir.path)
  storeId = store.storeId
  // No rateLimit option: this node has no rate limiter.
  app = buildApp({ store, ingest: new Ingest(store), registry, limits, identity: new NodeIdentity({ current: nodeKey }) })
  base = await app.listen({ host: '127.0.0.1', port: 0 })
  const seeded = await post_(putRequestXml(SEED_XML))
  assert.equal(seeded.status, 200)
  const rows = readPutAnswer(seeded.root!)
  assert.ok(rows.ok)
  assert.deepEqual(rows.value.map((r) => r.status), SEED.map(() => 'stored'))
  assert.equal(await store.count(), SEED.length)
})

after(async () => {
  await app?.close()
  await store?.close()
  await dir?.remove()
})

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  root: XmlElement | undefined
}

async function send(path: string, body: Buffer | string, ct: string | undefined): Promise<Answer> {
  const res = await request(base + path, {
    method: 'POST',
    body,
    headers: ct === undefined ? {} : { 'content-type': ct },
    headersTimeout: REQUEST_TIMEOUT_MS,
    bodyTimeout: REQUEST_TIMEOUT_MS,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS * 2),
  })
  const buf = Buffer.from(await res.body.arrayBuffer())
  const root = parseXml(buf)
  return { status: res.statusCode, headers: res.headers, body: buf, root: root.ok ? root.value : undefined }
}
const post_ = (xml: string) => send('/api/sync/put', xml, 'application/xml')

const header = (a: Answer, name: string) => {
  const v = a.headers[name]
  return Array.isArray(v) ? v.join(',') : v
}
/** what a stack trace or a local path looks like (descriptions echo bits of the request, which never hold these) */
const LEAKS = [/\/work\//, /node_modules/, / {4}at /, /\bat [^\s()]+ \([^)]*:\d+:\d+\)/, /\.[jt]s:\d+:\d+/]
const leakOk = (s: string) => !LEAKS.some((re) => re.test(s)) && !s.includes(dir.path) && !s.includes(process.cwd())

const idOf = (e: XmlElement) => `${e.attrs.type}::${e.attrs.key}::${e.attrs['local-id']}`

/** Property 2 (a signed DIP envelope) and, for error / not supported, property 3. */
function checkEnvelope(a: Answer): ResponseHead & { root: XmlElement } {
  assert.ok(a.root, `the answer is XML: HTTP ${a.status} ${JSON.stringify(a.body.subarray(0, 300).toString())}`)
  assert.equal(a.root.name, 'response')
  const head = readResponseHead(a.root)
  assert.ok(head.ok, 'readResponseHead')
  assert.equal(header(a, 'content-type'), 'application/xml; charset=utf-8')
  assert.equal(header(a, 'content-encoding'), undefined)
  assert.equal(header(a, 'dip-node-key'), NODE_KEY)
  const sig = header(a, 'dip-signature') ?? ''
  assert.match(sig, /^[0-9a-f]{128}$/, 'DIP-Signature')
  assert.ok(verify(nodeKey.publicKeyHex, Buffer.concat([RESPONSE_PREFIX, a.body]), Buffer.from(sig, 'hex')), 'DIP-Signature verifies')
  const h = head.value
  if (h.status !== 'success') {
    const code = h.code ?? ''
    assert.ok(isWireCode(code), `a wire code: ${code}`)
    const entry: WireCode = WIRE_CODES[code]
    assert.ok(entry.http !== undefined, `${code} may be a whole answer`)
    assert.equal(a.status, entry.http, `HTTP status of ${code}`)
    assert.equal(h.status, entry.status, `envelope status of ${code}`)
    assert.notEqual(a.status, 500, 'no internal error')
    if (h.status === 'not supported') assert.deepEqual(h.supported, SUPPORTED, '<supported> on not supported')
    assert.ok(leakOk(h.description ?? ''), `no stack trace or local path in the description: ${JSON.stringify(h.description)}`)
  } else assert.equal(a.status, 200)
  return { ...h, root: a.root }
}

/** Properties 2 and 3 (every answer), 4 (put rows); returns the number of stored rows and the last hash stored per id. */
function checkAnswer(c: Case, reqBody: Buffer, a: Answer): { rows: number; ids: Map<string, string> } {
  const stored = { rows: 0, ids: new Map<string, string>() }
  const h = checkEnvelope(a)
  bump(stats.byStatus, `${a.status} ${h.code ?? h.status}`)

  // What the request itself decides (spec/errors.md "Which code wins").
  const pathType = c.path.type === 'same' ? c.base.type : c.path.type
  const known = pathType === 'list' || pathType === 'get' || pathType === 'put'
  const reqRoot = parseXml(reqBody)
  let expected: [number, string] | undefined
  if (!known) expected = [501, 'DIP_REQUEST_NOT_SUPPORTED']
  else if (isWrongType(c.contentType)) expected = [415, 'DIP_UNSUPPORTED_MEDIA_TYPE']
  else if (!reqRoot.ok) expected = [400, 'DIP_XML_INVALID']
  else if (reqRoot.value.name !== 'request' || reqRoot.value.attrs.type !== pathType) expected = [400, 'DIP_REQUEST_INVALID']
  if (expected) assert.deepEqual([a.status, h.code], expected, 'the code the request decides')

  if (h.status !== 'success') return stored // property 3: checked by checkEnvelope

  assert.ok(known && reqRoot.ok && reqRoot.value.attrs.type === pathType, 'success only for a request of the path type')
  if (pathType === 'list') {
    const list = readListAnswer(h.root)
    assert.ok(list.ok, 'a list answer')
    assert.ok(list.value.rows.length <= limits.maxListPage)
    return stored
  }
  if (pathType === 'get') {
    const models = readGetAnswer(h.root)
    assert.ok(models.ok, 'a get answer')
    // held ids only, in request order, each once (PROTOCOL.md §7)
    const asked = [...new Set(childrenNamed(firstChild(reqRoot.value as XmlElement, 'model')!, 'id').map(idOf))]
    const got = models.value.map((m) => {
      const id = firstChild(firstChild(m, 'content') ?? m, 'id')
      assert.ok(id, 'a get answer model has <content><id/>')
      return idOf(id)
    })
    let at = 0
    for (const id of got) {
      const i = asked.indexOf(id, at)
      assert.ok(i !== -1, `get answered ${id}, not asked for or out of order`)
      at = i + 1
    }
    return stored
  }
  // 4. one row per <model> of <models>, in order
  const rows = readPutAnswer(h.root)
  assert.ok(rows.ok, 'a put answer')
  const rowEls = childrenNamed(firstChild(h.root, 'results')!, 'result')
  const sent = childrenNamed(firstChild(reqRoot.value as XmlElement, 'models')!, 'model')
  assert.equal(rowEls.length, sent.length, 'one row per model')
  rowEls.forEach((row, n) => {
    const st = row.attrs.status
    bump(stats.rows, st === 'rejected' ? String(row.attrs.code) : String(st))
    const model = sent[n]!
    const content = firstChild(model, 'content')
    const rowId = firstChild(row, 'id')
    if (rowId) {
      const sentId = content && firstChild(content, 'id')
      assert.ok(sentId, `row ${n} names an id only when the model has one`)
      assert.equal(rowId.attrs.key, sentId.attrs.key, `row ${n} is the row of model ${n}`)
      assert.equal(rowId.attrs['local-id'], sentId.attrs['local-id'], `row ${n} is the row of model ${n}`)
    }
    if (st === 'stored' || st === 'duplicate') {
      assert.match(row.attrs.hash ?? '', /^sha256:[0-9a-f]{64}$/)
      assert.ok(content && rowId, `a ${st} row has an id and its model a content`)
      assert.equal(row.attrs.hash, sha(canonicalize(content)), `row ${n} carries the hash of model ${n}`)
      assert.equal(row.attrs.code, undefined)
      if (st === 'stored') {
        stored.rows++
        stored.ids.delete(idOf(rowId))
        stored.ids.set(idOf(rowId), row.attrs.hash!)
      }
    } else {
      assert.equal(st, 'rejected', `row status ${st}`)
      const code = row.attrs.code ?? ''
      assert.ok(isWireCode(code) && WIRE_CODES[code].row, `a row code: ${code}`)
      assert.equal(row.attrs.hash, undefined, 'a rejected row has no hash')
    }
  })
  return stored
}

async function runCase(c: Case): Promise<void> {
  const { path, body } = build(c)
  if (knownCount === undefined) knownCount = await store.count()
  const before = { seq: store.lastSeq, count: knownCount }
  knownCount = undefined
  stats.cases++
  try {
    let a: Answer
    try {
      a = await send(path, body, c.contentType)
    } catch (e) {
      stats.crashes++
      throw new Error(`no answer: ${(e as Error).message}`)
    }
    if (a.status >= 500 && a.status !== 501) stats.crashes++
    const afterCount = await store.count()
    const afterSeq = store.lastSeq
    knownCount = afterCount
    const { rows: stored, ids: storedIds } = checkAnswer(c, body, a)
    stats.stored += stored
    // 5. the store changes only through stored rows, and holds what they say
    assert.equal(afterSeq - before.seq, stored, 'lastSeq grows by the number of stored rows')
    assert.ok(afterCount >= before.count && afterCount - before.count <= stored, `count ${before.count} -> ${afterCount} with ${stored} stored rows`)
    if (storedIds.size > 0) {
      const held = await store.rows([...storedIds.keys()])
      assert.deepEqual(held.map((r) => r?.h), [...storedIds.values()], 'the store holds the version its stored rows name')
    }
  } catch (e) {
    const err = e as Error
    const head = body.subarray(0, 1500)
    const utf8 = head.toString('utf8')
    const shown = Buffer.from(utf8, 'utf8').equals(head) ? JSON.stringify(utf8) : `base64:${head.toString('base64')}`
    const original = err.message
    err.message += `\n    request: POST ${path} content-type=${JSON.stringify(c.contentType)} body (${body.length} bytes${body.length > 1500 ? ', first 1500' : ''}): ${shown}`
    if (err.stack) err.stack = err.stack.replace(original, err.message) // fast-check reports the stack
    throw err
  }
}

async function fuzz(t: { diagnostic(msg: string): void }, name: keyof typeof RUNS, arb: fc.Arbitrary<Base>): Promise<void> {
  const started = Date.now()
  t.diagnostic(`fuzz ${name}: seed ${SEEDS[name]}, ${RUNS[name]} runs (FUZZ_SEED=${BASE_SEED}, FUZZ_RUNS=${TOTAL})`)
  await fc.assert(
    fc.asyncProperty(caseArb(arb), (c) => runCase(c)),
    { seed: SEEDS[name], numRuns: RUNS[name], includeErrorInReport: true },
  )
  t.diagnostic(`fuzz ${name}: ${RUNS[name]} cases in ${((Date.now() - started) / 1000).toFixed(1)} s`)
}

test('fuzz: mutated list requests', { timeout: 600_000 }, (t) => fuzz(t, 'list', listBase))
test('fuzz: mutated get requests', { timeout: 600_000 }, (t) => fuzz(t, 'get', getBase))
test('fuzz: mutated put requests', { timeout: 600_000 }, (t) => fuzz(t, 'put', putBase))

test('hand-made hostile bodies get their documented status and code', async () => {
  const count = await store.count()
  const seq = store.lastSeq
  const get2000 = getRequestXml(POST, Array.from({ length: 2000 }, (_, i) => `ed25519::${ALICE.publicKeyHex}::${i}`))
  const cases: [string, string, number, string][] = [
    ['50,000 deep', '<request type="list" version="1.0">' + '<a>'.repeat(50_000) + '</a>'.repeat(50_000) + '</request>', 400, 'DIP_XML_INVALID'],
    ['billion laughs', '<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><request type="put" version="1.0"><models>&c;</models></request>', 400, 'DIP_XML_INVALID'],
    ['2,000 ids', get2000, 413, 'DIP_REQUEST_TOO_LARGE'],
  ]
  for (const [name, body, status, code] of cases) {
    const path = `/api/sync/${/type="(\w+)"/.exec(body)![1]}`
    const a = await send(path, body, 'application/xml')
    const head = readResponseHead(a.root!)
    assert.ok(head.ok, name)
    assert.deepEqual([a.status, head.value.status, head.value.code], [status, 'error', code], name)
  }
  // 17 MiB announced: 413 before the body is sent.
  const url = new URL(base)
  const raw = await new Promise<string>((resolve, reject) => {
    let data = ''
    const sock = connect(Number(url.port), url.hostname, () => {
      sock.write(`POST /api/sync/put HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\nContent-Length: ${17 * 1024 * 1024}\r\n\r\n<request`)
    })
    const timer = setTimeout(() => {
      sock.destroy()
      reject(new Error(`no answer within 5 s: ${JSON.stringify(data)}`))
    }, 5000)
    sock.on('data', (d) => {
      data += d.toString()
      if (data.includes('</response>')) {
        clearTimeout(timer)
        sock.destroy()
        resolve(data)
      }
    })
    sock.on('error', reject)
  })
  assert.match(raw, /^HTTP\/1\.1 413 /)
  assert.match(raw, /<status>error<\/status><code>DIP_REQUEST_TOO_LARGE<\/code>/)
  assert.deepEqual([await store.count(), store.lastSeq], [count, seq], 'nothing stored')
})

test('paths under /api/sync/ that the router itself refuses still get a signed DIP envelope', async () => {
  // PROTOCOL.md §1 and §8: every answer under /api/sync/ is a signed <response>;
  // an unknown /api/sync/<x>/ is 501 not supported, however long x is.
  const body = listRequestXml(POST, '', undefined)
  const long = await send(`/api/sync/${'x'.repeat(600)}/`, body, 'application/xml')
  assert.deepEqual([long.status, checkEnvelope(long).code], [501, 'DIP_REQUEST_NOT_SUPPORTED'], 'a type over the router\'s maxParamLength')
  const badEscape = await send('/api/sync/%ZZ/', body, 'application/xml')
  assert.equal(checkEnvelope(badEscape).status, 'error', 'a path with a malformed %-escape')
})

test('after the run the node still serves a plain list; summary', async (t) => {
  const a = await send('/api/sync/list/', listRequestXml(POST, '', undefined), 'application/xml')
  assert.equal(a.status, 200)
  const head = readResponseHead(a.root!)
  assert.ok(head.ok && head.value.status === 'success')
  const list = readListAnswer(a.root!)
  assert.ok(list.ok && list.value.rows.length > 0)
  const top = (m: Map<string, number>) => [...m].sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k}: ${v}`).join(', ')
  t.diagnostic(`answers: ${top(stats.byStatus)}`)
  t.diagnostic(`put rows: ${top(stats.rows)}`)
  t.diagnostic(`fuzz: ${stats.cases} cases, ${stats.crashes} crashes (store: ${await store.count()} ids, lastSeq ${store.lastSeq})`)
  assert.equal(stats.crashes, 0)
})
