// The "message" model 1.0 (spec/message-model.md): validation table, the
// 140-code-point limit, local fields, round trips, list filters, and the
// model end to end: on a memory store (Ingest + list with facets) and between
// two real daemons over HTTP (a pull of messages only).
// Tests assert DIP_* codes, never message text.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { messageModel, type MessageFields, type MessageKind, type Recipient } from '../../src/model/message/message.js'
import { postModel } from '../../src/model/post/post.js'
import { authorModel, type StagedModel } from '../../src/model/signed.js'
import { defaultRegistry, openNode, startDaemon, type Daemon } from '../../src/daemon.js'
import { GraphStore } from '../../src/store/graph-store.js'
import { Ingest } from '../../src/store/ingest.js'
import { pull } from '../../src/sync/pull.js'
import { canonicalize } from '../../src/protocol/canonical.js'
import { DEFAULT_LIMITS } from '../../src/protocol/envelope.js'
import { formatId, type GlobalId } from '../../src/protocol/id.js'
import { parseXml, type XmlElement } from '../../src/protocol/xml.js'
import type { FacetFilter } from '../../src/model/types.js'
import { generateKeyPair, type NodeKeyPair } from '../../src/crypto/ed25519.js'
import { tempDir } from '../helpers.js'

const registry = defaultRegistry()
const KA = 'a'.repeat(64)
const KB = '0123456789abcdef'.repeat(4)
const ID = `<id key="${KA}" local-id="1" type="ed25519"/>`
const T = '2021-01-01T00:00:00Z'
/** U+1F600: one code point, two UTF-16 units, four UTF-8 bytes. */
const ASTRAL = '\u{1F600}'

function parse(xml: string): XmlElement {
  const r = parseXml(xml)
  if (!r.ok) throw new Error(`test bug: ${r.error.message}`)
  return r.value
}

interface Parts {
  attrs?: string
  id?: string
  to?: string
  text?: string
  pub?: string
  upd?: string
}
/** A message's content; each part replaces the default (an empty string leaves the element out). */
function content(p: Parts = {}): string {
  const pick = (v: string | undefined, d: string) => (v === undefined ? d : v)
  return (
    `<content${pick(p.attrs, ' kind="chat"')}>` +
    pick(p.id, ID) +
    pick(p.to, `<to><key>${KB}</key></to>`) +
    pick(p.text, '<text>hello</text>') +
    pick(p.pub, `<pub-time>${T}</pub-time>`) +
    pick(p.upd, `<update-time>${T}</update-time>`) +
    '</content>'
  )
}
const read = (xml: string) => messageModel.fromContent(parse(xml))
const codeOf = (xml: string) => {
  const r = read(xml)
  return r.ok ? 'ok' : r.error.code
}

// ---- validation ----

describe('message content: validation table', () => {
  const cases: [string, string, string][] = [
    ['a message to a key', content(), 'ok'],
    ['a message to a group', content({ to: '<to><group>dip-dev.2_x</group></to>' }), 'ok'],
    ['kind notice', content({ attrs: ' kind="notice"' }), 'ok'],
    ['kind announce', content({ attrs: ' kind="announce"' }), 'ok'],
    ['another attribute of <content> is kept (newer minor)', content({ attrs: ' kind="chat" priority="high"' }), 'ok'],
    ['unknown elements anywhere are skipped', `<content kind="chat"><x/>${ID}<y>1</y><to><key>${KB}</key></to><text>hi</text><z/><pub-time>${T}</pub-time><update-time>${T}</update-time><w/></content>`, 'ok'],
    ['pretty-printed <to>', content({ to: `<to>\n  <key>${KB}</key>\n</to>` }), 'ok'],
    ['whitespace-only text is text', content({ text: '<text>   </text>' }), 'ok'],
    ['a group of 64 characters', content({ to: `<to><group>${'g'.repeat(64)}</group></to>` }), 'ok'],
    ['times with fractions', content({ pub: `<pub-time>2021-01-01T00:00:00.123456Z</pub-time>` }), 'ok'],

    ['kind missing', content({ attrs: '' }), 'DIP_MODEL_INVALID'],
    ['kind unknown (F140 basic)', content({ attrs: ' kind="basic"' }), 'DIP_MODEL_INVALID'],
    ['kind in upper case', content({ attrs: ' kind="Chat"' }), 'DIP_MODEL_INVALID'],
    ['kind empty', content({ attrs: ' kind=""' }), 'DIP_MODEL_INVALID'],
    ['id missing', content({ id: '' }), 'DIP_MODEL_INVALID'],
    ['to missing', content({ to: '' }), 'DIP_MODEL_INVALID'],
    ['text missing', content({ text: '' }), 'DIP_MODEL_INVALID'],
    ['pub-time missing', content({ pub: '' }), 'DIP_MODEL_INVALID'],
    ['update-time missing', content({ upd: '' }), 'DIP_MODEL_INVALID'],
    ['to repeated', content({ to: `<to><key>${KB}</key></to><to><key>${KB}</key></to>` }), 'DIP_MODEL_INVALID'],
    ['text repeated', content({ text: '<text>a</text><text>b</text>' }), 'DIP_MODEL_INVALID'],
    ['text before to', `<content kind="chat">${ID}<text>hi</text><to><key>${KB}</key></to><pub-time>${T}</pub-time><update-time>${T}</update-time></content>`, 'DIP_MODEL_INVALID'],
    ['update-time before pub-time', `<content kind="chat">${ID}<to><key>${KB}</key></to><text>hi</text><update-time>${T}</update-time><pub-time>${T}</pub-time></content>`, 'DIP_MODEL_INVALID'],
    ['id after to', `<content kind="chat"><to><key>${KB}</key></to>${ID}<text>hi</text><pub-time>${T}</pub-time><update-time>${T}</update-time></content>`, 'DIP_MODEL_INVALID'],
    ['empty text', content({ text: '<text/>' }), 'DIP_MODEL_INVALID'],
    ['markup in text', content({ text: '<text>a <b>b</b></text>' }), 'DIP_MODEL_INVALID'],
    ['empty <to>', content({ to: '<to/>' }), 'DIP_MODEL_INVALID'],
    ['a key and a group', content({ to: `<to><key>${KB}</key><group>g</group></to>` }), 'DIP_MODEL_INVALID'],
    ['two keys', content({ to: `<to><key>${KB}</key><key>${KA}</key></to>` }), 'DIP_MODEL_INVALID'],
    ['an unknown recipient element', content({ to: '<to><node>x</node></to>' }), 'DIP_MODEL_INVALID'],
    ['text beside the recipient', content({ to: `<to>to: <key>${KB}</key></to>` }), 'DIP_MODEL_INVALID'],
    ['a key in upper case', content({ to: `<to><key>${KB.toUpperCase()}</key></to>` }), 'DIP_MODEL_INVALID'],
    ['a key of 63 digits', content({ to: `<to><key>${KB.slice(1)}</key></to>` }), 'DIP_MODEL_INVALID'],
    ['a key in id form', content({ to: `<to><key>ed25519::${KB}</key></to>` }), 'DIP_MODEL_INVALID'],
    ['a key with spaces (content text is exact)', content({ to: `<to><key> ${KB} </key></to>` }), 'DIP_MODEL_INVALID'],
    ['a key holding markup', content({ to: `<to><key><b>${KB}</b></key></to>` }), 'DIP_MODEL_INVALID'],
    ['an empty group', content({ to: '<to><group/></to>' }), 'DIP_MODEL_INVALID'],
    ['a group of 65 characters', content({ to: `<to><group>${'g'.repeat(65)}</group></to>` }), 'DIP_MODEL_INVALID'],
    ['a group with a space', content({ to: '<to><group>dip dev</group></to>' }), 'DIP_MODEL_INVALID'],
    ['a group with a colon', content({ to: '<to><group>group:x</group></to>' }), 'DIP_MODEL_INVALID'],
    ['a time in the space form', content({ pub: '<pub-time>2021-01-01 00:00:00</pub-time>' }), 'DIP_MODEL_INVALID'],
    ['a time with an offset', content({ upd: '<update-time>2021-01-01T00:00:00+00:00</update-time>' }), 'DIP_MODEL_INVALID'],
    ['February 30', content({ upd: '<update-time>2021-02-30T00:00:00Z</update-time>' }), 'DIP_MODEL_INVALID'],
    ['an id of type ecdsa', content({ id: `<id key="${KA}" local-id="1" type="ecdsa"/>` }), 'DIP_ID_INVALID'],
    ['an id with upper-case hex', content({ id: `<id key="${KA.toUpperCase()}" local-id="1" type="ed25519"/>` }), 'DIP_ID_INVALID'],
  ]
  for (const [name, xml, code] of cases) test(`${name}: ${code}`, () => assert.equal(codeOf(xml), code))

  test('what is read', () => {
    const r = read(content({ attrs: ' kind="notice"', to: '<to><group>ops</group></to>', text: '<text>a &amp; b\n</text>', pub: '<pub-time>2021-01-01T00:00:00.5Z</pub-time>' }))
    assert.ok(r.ok)
    assert.deepEqual(r.value, {
      id: { type: 'ed25519', key: KA, localId: '1' },
      kind: 'notice',
      to: { group: 'ops' },
      text: 'a & b\n',
      pubTime: '2021-01-01T00:00:00.5Z',
      pubTimeKey: '20210101000000500000',
      updateTime: T,
      updateTimeKey: '20210101000000000000',
    })
  })

  test('never throws on random trees under <content>', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constant(ID), fc.constant(`<to><key>${KB}</key></to>`), fc.constant('<to><group>g</group></to>'), fc.constant('<text>x</text>'), fc.constant(`<pub-time>${T}</pub-time>`), fc.constant(`<update-time>${T}</update-time>`), fc.constant('<x/>'), fc.constant('t')), { maxLength: 8 }), (parts) => {
        const r = read(`<content kind="chat">${parts.join('')}</content>`)
        assert.ok(r.ok || r.error.code === 'DIP_MODEL_INVALID' || r.error.code === 'DIP_ID_INVALID')
      }),
    )
  })
})

describe('message text: at most 140 Unicode code points', () => {
  const withText = (t: string) => content({ text: `<text>${t}</text>` })
  test('140 astral characters (280 UTF-16 units, 560 UTF-8 bytes) are accepted', () => {
    const t = ASTRAL.repeat(140)
    assert.equal(t.length, 280)
    assert.equal(Buffer.byteLength(t), 560)
    assert.equal(codeOf(withText(t)), 'ok')
  })
  test('141 astral characters are DIP_MODEL_INVALID', () => {
    assert.equal(codeOf(withText(ASTRAL.repeat(141))), 'DIP_MODEL_INVALID')
  })
  test('139 BMP characters and one astral one are 140', () => {
    assert.equal(codeOf(withText('é'.repeat(139) + ASTRAL)), 'ok')
    assert.equal(codeOf(withText('é'.repeat(140) + ASTRAL)), 'DIP_MODEL_INVALID')
  })
  test('an escape is one character: 140 × &amp; is 140', () => {
    assert.equal(codeOf(withText('&amp;'.repeat(140))), 'ok')
    assert.equal(codeOf(withText('&amp;'.repeat(141))), 'DIP_MODEL_INVALID')
  })
  test('a combining sequence counts each code point (e + U+0301 is two)', () => {
    assert.equal(codeOf(withText('e\u0301'.repeat(70))), 'ok')
    assert.equal(codeOf(withText('e\u0301'.repeat(70) + 'x')), 'DIP_MODEL_INVALID')
  })
  test('checkFields counts the same way', () => {
    assert.ok(messageModel.checkFields({ to: KB, text: ASTRAL.repeat(140) }).ok)
    const r = messageModel.checkFields({ to: KB, text: ASTRAL.repeat(141) })
    assert.equal(r.ok ? 'ok' : r.error.code, 'DIP_MODEL_INVALID')
  })
})

// ---- local fields ----

describe('message checkFields (local authoring)', () => {
  const good: [string, unknown, Partial<MessageFields>][] = [
    ['a 64-hex key, kind defaults to chat', { to: KB, text: 'hi' }, { to: { key: KB }, kind: 'chat', text: 'hi' }],
    ['a key in id form', { to: `ed25519::${KB}`, text: 'hi', kind: 'notice' }, { to: { key: KB }, kind: 'notice', text: 'hi' }],
    ['a group', { to: { group: 'dip-dev' }, text: 'hi', kind: 'announce' }, { to: { group: 'dip-dev' }, kind: 'announce', text: 'hi' }],
  ]
  for (const [name, input, want] of good) {
    test(`ok: ${name}`, () => {
      const r = messageModel.checkFields(input)
      assert.ok(r.ok, r.ok ? '' : r.error.message)
      assert.deepEqual({ to: r.value.to, kind: r.value.kind, text: r.value.text }, want)
    })
  }
  const bad: [string, unknown][] = [
    ['not an object', 'hello'],
    ['null', null],
    ['an array', [KB, 'hi']],
    ['no to', { text: 'hi' }],
    ['no text', { to: KB }],
    ['text not a string', { to: KB, text: 42 }],
    ['empty text', { to: KB, text: '' }],
    ['141 characters', { to: KB, text: 'x'.repeat(141) }],
    ['a control character', { to: KB, text: 'a\u0001b' }],
    ['a lone surrogate', { to: KB, text: 'a\uD83Db' }],
    ['U+FFFF', { to: KB, text: 'a\uFFFFb' }],
    ['an upper-case key', { to: KB.toUpperCase(), text: 'hi' }],
    ['a short key', { to: KB.slice(2), text: 'hi' }],
    ['a global id as recipient', { to: `ed25519::${KB}::1`, text: 'hi' }],
    ['a bad group', { to: { group: 'a b' }, text: 'hi' }],
    ['a group and a key', { to: { group: 'g', key: KB }, text: 'hi' }],
    ['group not a string', { to: { group: 7 }, text: 'hi' }],
    ['an unknown kind', { to: KB, text: 'hi', kind: 'basic' }],
    ['kind not a string', { to: KB, text: 'hi', kind: 1 }],
    ['an unknown field', { to: KB, text: 'hi', title: 'x' }],
  ]
  for (const [name, input] of bad) {
    test(`DIP_MODEL_INVALID: ${name}`, () => {
      const r = messageModel.checkFields(input)
      assert.equal(r.ok ? 'ok' : r.error.code, 'DIP_MODEL_INVALID')
    })
  }
})

// ---- round trips ----

const KINDS: MessageKind[] = ['chat', 'notice', 'announce']
const hex64 = fc.stringMatching(/^[0-9a-f]{64}$/)
const recipient: fc.Arbitrary<Recipient> = fc.oneof(hex64.map((key) => ({ key })), fc.stringMatching(/^[0-9A-Za-z._-]{1,64}$/).map((group) => ({ group })))
/** Any XML 1.0 character, astral ones included (lone surrogates excluded by the 'binary' unit). */
const xmlChar = fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }).filter((c) => !/[\x00-\x08\x0B\x0C\x0E-\x1F\uFFFE\uFFFF]/.test(c))
const messageText = fc.array(fc.oneof(xmlChar, fc.constantFrom('&', '<', '>', '\r', '\n', ' ', ']]>', ASTRAL)), { minLength: 1, maxLength: 46 }).map((a) => a.join('')).filter((t) => [...t].length <= 140)
const time = fc.date({ min: new Date('1971-01-01T00:00:00Z'), max: new Date('2999-12-31T23:59:59Z'), noInvalidDate: true }).map((d) => d.toISOString())
const fieldsArb: fc.Arbitrary<MessageFields> = fc.record({
  id: fc.record({ type: fc.constant('ed25519' as const), key: hex64, localId: fc.stringMatching(/^[0-9A-Za-z._-]{1,64}$/) }),
  kind: fc.constantFrom(...KINDS),
  to: recipient,
  text: messageText,
  pubTime: time,
  updateTime: time,
})
/** Plain objects of the compared fields (fast-check records have a null prototype). */
const project = (m: { id: GlobalId; kind: string; to: Recipient; text: string; pubTime: string; updateTime: string }) => ({
  id: formatId(m.id),
  kind: m.kind,
  to: 'key' in m.to ? { key: m.to.key } : { group: m.to.group },
  text: m.text,
  pubTime: m.pubTime,
  updateTime: m.updateTime,
})

describe('message round trips (properties)', () => {
  test('fromContent(toContent(fields)) gives the fields back', () => {
    fc.assert(
      fc.property(fieldsArb, (f) => {
        const r = messageModel.fromContent(messageModel.toContent(f))
        assert.ok(r.ok, r.ok ? '' : r.error.message)
        assert.deepEqual(project(r.value), project(f))
      }),
      { numRuns: 300 },
    )
  })
  test('… and so does the canonical form, parsed again (what a peer receives)', () => {
    fc.assert(
      fc.property(fieldsArb, (f) => {
        const canonical = canonicalize(messageModel.toContent(f))
        const again = parse(canonical)
        assert.equal(canonicalize(again), canonical)
        const r = messageModel.fromContent(again)
        assert.ok(r.ok, r.ok ? '' : r.error.message)
        assert.deepEqual(project(r.value), project(f))
      }),
      { numRuns: 300 },
    )
  })
  test('checkFields accepts what toContent can write, and meta indexes it', () => {
    fc.assert(
      fc.property(fieldsArb, (f) => {
        const input = { to: 'key' in f.to ? f.to.key : { group: f.to.group }, text: f.text, kind: f.kind }
        const r = messageModel.checkFields(input)
        assert.ok(r.ok, r.ok ? '' : r.error.message)
        assert.deepEqual({ to: r.value.to, text: r.value.text, kind: r.value.kind }, { to: project(f).to, text: f.text, kind: f.kind })
        const m = messageModel.fromContent(messageModel.toContent(f))
        assert.ok(m.ok)
        const meta = messageModel.meta(m.value)
        assert.deepEqual(meta.facets, { to: ['key' in f.to ? f.to.key : `group:${f.to.group}`], kind: [f.kind] })
        assert.deepEqual(meta.links, [])
        assert.equal(formatId(meta.id), formatId(f.id))
      }),
      { numRuns: 100 },
    )
  })
  test('parseFilter(filterXml(filter)) gives the filter back', () => {
    const filterArb: fc.Arbitrary<FacetFilter> = fc.array(
      fc.oneof(
        fc.array(recipient, { minLength: 1, maxLength: 4 }).map((rs) => ({ facet: 'to', values: rs.map((r) => ('key' in r ? r.key : `group:${r.group}`)) })),
        fc.array(fc.constantFrom(...KINDS), { minLength: 1, maxLength: 3 }).map((values) => ({ facet: 'kind', values })),
      ),
      { maxLength: 3 },
    )
    fc.assert(
      fc.property(filterArb, (filter) => {
        const r = messageModel.parseFilter(parse(`<model name="message" version="1.0">${messageModel.filterXml(filter)}</model>`))
        assert.ok(r.ok)
        assert.deepEqual(r.value, filter)
      }),
    )
  })
})

// ---- list filters ----

describe('message list filters', () => {
  const filterOf = (inner: string) => {
    const r = messageModel.parseFilter(parse(`<model name="message" version="1.0">${inner}</model>`))
    return r.ok ? r.value : r.error.code
  }
  const cases: [string, string, FacetFilter | string][] = [
    ['none', '', []],
    ['keys and groups, any of them', `<to><key>${KA}</key><group>ops</group></to>`, [{ facet: 'to', values: [KA, 'group:ops'] }]],
    ['text is read with whitespace stripped', `<to><key>\n ${KA} \n</key><group> ops </group></to>`, [{ facet: 'to', values: [KA, 'group:ops'] }]],
    ['an empty <to/> is no filter', '<to/>', []],
    ['unknown elements in <to> are ignored', `<to><node>x</node><key>${KA}</key></to>`, [{ facet: 'to', values: [KA] }]],
    ['kinds, any of them', '<kinds><kind>chat</kind><kind>notice</kind></kinds>', [{ facet: 'kind', values: ['chat', 'notice'] }]],
    ['an empty <kinds/> is no filter', '<kinds/>', []],
    ['post filters and unknown elements are ignored', '<tags><tag>x</tag></tags><mood>ok</mood>', []],
    ['two <to> elements must both pass', `<to><key>${KA}</key></to><to><group>g</group></to>`, [{ facet: 'to', values: [KA] }, { facet: 'to', values: ['group:g'] }]],
    ['an upper-case key', `<to><key>${KA.toUpperCase()}</key></to>`, 'DIP_FILTER_INVALID'],
    ['a key in id form', `<to><key>ed25519::${KA}</key></to>`, 'DIP_FILTER_INVALID'],
    ['an empty key', '<to><key/></to>', 'DIP_FILTER_INVALID'],
    ['a bad group', '<to><group>a b</group></to>', 'DIP_FILTER_INVALID'],
    ['an empty group', '<to><group/></to>', 'DIP_FILTER_INVALID'],
    ['an unknown kind', '<kinds><kind>basic</kind></kinds>', 'DIP_FILTER_INVALID'],
    ['an empty kind', '<kinds><kind/></kinds>', 'DIP_FILTER_INVALID'],
  ]
  for (const [name, inner, want] of cases) test(name, () => assert.deepEqual(filterOf(inner), want))

  test('filterXml writes the documented forms and refuses what it cannot write', () => {
    assert.equal(messageModel.filterXml([{ facet: 'to', values: [KA, 'group:ops'] }, { facet: 'kind', values: ['notice'] }]), `<to><key>${KA}</key><group>ops</group></to><kinds><kind>notice</kind></kinds>`)
    for (const f of [[{ facet: 'tag', values: ['x'] }], [{ facet: 'to', values: ['nope'] }], [{ facet: 'kind', values: ['basic'] }], [{ facet: 'to', values: [] }]]) {
      assert.throws(() => messageModel.filterXml(f), { code: 'DIP_FILTER_INVALID' })
    }
  })
})

// ---- on a memory store ----

function signMessage(pair: NodeKeyPair, localId: string, to: Recipient, kind: MessageKind, text: string, t = T): StagedModel {
  const fields: MessageFields = { id: { type: 'ed25519', key: pair.publicKeyHex, localId }, kind, to, text, pubTime: t, updateTime: t }
  const r = authorModel(messageModel, fields, pair, registry, DEFAULT_LIMITS)
  if (!r.ok) throw new Error(`test bug: ${r.error.message}`)
  return r.value
}

describe('messages in a memory store', () => {
  const alice = generateKeyPair()
  const bob = generateKeyPair()
  let store: GraphStore
  const ids: Record<string, string> = {}

  before(async () => {
    store = await GraphStore.openMemory()
    const ingest = new Ingest(store)
    const post = authorModel(postModel, { id: { type: 'ed25519', key: alice.publicKeyHex, localId: 'p1' }, title: 'a post', text: 'not a message', tags: ['ops'], pubTime: T, updateTime: T }, alice, registry, DEFAULT_LIMITS)
    assert.ok(post.ok)
    const models = [
      signMessage(alice, 'a1', { key: bob.publicKeyHex }, 'chat', 'hi bob'),
      signMessage(alice, 'a2', { group: 'ops' }, 'announce', 'deploy at 5'),
      signMessage(bob, 'b1', { key: alice.publicKeyHex }, 'chat', 'hi alice'),
      post.value,
      signMessage(bob, 'b2', { group: 'ops' }, 'notice', 'disk 90% full'),
      signMessage(bob, 'b3', { key: bob.publicKeyHex }, 'notice', 'note to self'),
    ]
    const rows = await ingest.accept(models)
    assert.deepEqual(rows.map((r) => r.status), models.map(() => 'stored'))
    for (const m of models) ids[m.id.localId] = m.idText
  })
  after(async () => {
    await store.close()
  })

  /** What a list request with these message filter elements answers (as the sync route runs it). */
  async function listed(inner: string, extra: { allow?: Set<string> } = {}): Promise<string[]> {
    const facets = messageModel.parseFilter(parse(`<model name="message" version="1.0">${inner}</model>`))
    assert.ok(facets.ok)
    const page = await store.list({ model: 'message', facets: facets.value, afterSeq: 0, limit: 100, ...extra })
    return page.rows.map((r) => r.i)
  }
  const I = (...local: string[]) => local.map((l) => ids[l]!)

  test('no filter: every message in store order, never the post', async () => {
    assert.deepEqual(await listed(''), I('a1', 'a2', 'b1', 'b2', 'b3'))
    const posts = await store.list({ model: 'post', facets: [], afterSeq: 0, limit: 100 })
    assert.deepEqual(posts.rows.map((r) => r.i), I('p1'))
  })
  test('to one key', async () => {
    assert.deepEqual(await listed(`<to><key>${bob.publicKeyHex}</key></to>`), I('a1', 'b3'))
  })
  test('to a group: only messages to the group, not a post tagged the same', async () => {
    assert.deepEqual(await listed('<to><group>ops</group></to>'), I('a2', 'b2'))
  })
  test('to any of a key and a group', async () => {
    assert.deepEqual(await listed(`<to><key>${alice.publicKeyHex}</key><group>ops</group></to>`), I('a2', 'b1', 'b2'))
  })
  test('by kind, any of them', async () => {
    assert.deepEqual(await listed('<kinds><kind>notice</kind></kinds>'), I('b2', 'b3'))
    assert.deepEqual(await listed('<kinds><kind>chat</kind><kind>announce</kind></kinds>'), I('a1', 'a2', 'b1'))
  })
  test('to and kind together: both must pass', async () => {
    assert.deepEqual(await listed('<to><group>ops</group></to><kinds><kind>notice</kind></kinds>'), I('b2'))
    assert.deepEqual(await listed(`<to><key>${bob.publicKeyHex}</key></to><kinds><kind>announce</kind></kinds>`), [])
  })
  test('with the sender filter', async () => {
    assert.deepEqual(await listed('<kinds><kind>chat</kind></kinds>', { allow: new Set([bob.publicKeyHex]) }), I('b1'))
  })
  test('an edit that changes the kind moves the message between kind filters', async () => {
    const edit = signMessage(alice, 'a1', { key: bob.publicKeyHex }, 'notice', 'hi bob (edited)', '2021-01-01T00:05:00Z')
    assert.deepEqual((await new Ingest(store).accept([edit])).map((r) => r.status), ['stored'])
    assert.deepEqual(await listed('<kinds><kind>chat</kind></kinds>'), I('b1'))
    assert.deepEqual(await listed('<kinds><kind>notice</kind></kinds>'), I('b2', 'b3', 'a1'))
  })
})

// ---- two daemons over HTTP ----

describe('messages between two daemons over HTTP', () => {
  let dirA: Awaited<ReturnType<typeof tempDir>>
  let dirB: Awaited<ReturnType<typeof tempDir>>
  let dirC: Awaited<ReturnType<typeof tempDir>>
  let A: Daemon
  let B: Daemon
  const friend = generateKeyPair().publicKeyHex

  before(async () => {
    dirA = await tempDir('dipd-msg-a-')
    dirB = await tempDir('dipd-msg-b-')
    dirC = await tempDir('dipd-msg-c-')
    A = await startDaemon({ dataDir: dirA.path, host: '127.0.0.1', port: 0 })
    B = await startDaemon({ dataDir: dirB.path, host: '127.0.0.1', port: 0 })
  })
  after(async () => {
    await A?.close()
    await B?.close()
    await dirA.remove()
    await dirB.remove()
    await dirC.remove()
  })

  test('B pulls only messages, and holds exactly the ones A authored', async () => {
    const post = await A.node.author('post', { title: 'a post', text: 'stays on A', tags: ['ops'] })
    const m1 = await A.node.author('message', { to: friend, text: `hi ${ASTRAL}` })
    const m2 = await A.node.author('message', { to: { group: 'ops' }, text: 'deploy at 5', kind: 'announce' })
    const m3 = await A.node.author('message', { to: `ed25519::${friend}`, text: 'ping', kind: 'notice' })
    await assert.rejects(A.node.author('message', { to: friend, text: 'x'.repeat(141) }), { code: 'DIP_MODEL_INVALID' })
    await assert.rejects(A.node.author('message', { to: friend, text: 'hi', kind: 'basic' }), { code: 'DIP_MODEL_INVALID' })
    assert.deepEqual((await A.node.list({ model: 'message' })).map((r) => r.id), [m1.id, m2.id, m3.id])

    const summary = await B.node.pull(A.url, { model: 'message' })
    assert.equal(summary.stored, 3)
    assert.deepEqual((await B.node.list({ model: 'message' })).map((r) => ({ id: r.id, hash: r.hash })), [m1, m2, m3].map((m) => ({ id: m.id, hash: m.hash })))
    assert.deepEqual(await B.node.list({ model: 'post' }), [])
    assert.equal(await B.node.show(post.id), undefined)
    // Served exactly as A stored it: kind on <content>, the astral character raw.
    const xml = await B.node.show(m1.id)
    assert.equal(xml, await A.node.show(m1.id))
    assert.match(xml!, new RegExp(`^<model name="message" version="1.0"><content kind="chat"><id [^>]*/><to><key>${friend}</key></to><text>hi ${ASTRAL}</text>`))
    // A second pull asks only for what is new.
    const again = await B.node.pull(A.url, { model: 'message' })
    assert.equal(again.stored, 0)
  })

  test('a pull with message filters sends <to>/<kinds> and takes only the matches', async () => {
    const C = await openNode({ dataDir: dirC.path })
    try {
      const [, m2, m3] = (await A.node.list({ model: 'message' })).map((r) => r.id)
      const s = await pull(C.deps, {
        from: A.url,
        model: 'message',
        filter: { facets: [{ facet: 'to', values: [friend, 'group:ops'] }, { facet: 'kind', values: ['announce', 'notice'] }] },
      })
      assert.equal(s.stored, 2)
      assert.deepEqual((await C.list({ model: 'message' })).map((r) => r.id), [m2, m3])
      const groupOnly = await C.deps.store.list({ model: 'message', facets: [{ facet: 'to', values: ['group:ops'] }], afterSeq: 0, limit: 10 })
      assert.deepEqual(groupOnly.rows.map((r) => r.i), [m2])
    } finally {
      await C.close()
    }
  })
})
