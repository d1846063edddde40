import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { canonicalize } from '../../src/protocol/canonical.js'
import { formatId, parseIdElement, parseIdText, type GlobalId } from '../../src/protocol/id.js'
import { EPOCH, MAX_TIME, parseContentTime, parseFilterTime, timeKeyFromMs } from '../../src/protocol/time.js'
import { isCompatible, parseVersion } from '../../src/protocol/version.js'
import { MAX_DEPTH, parseXml } from '../../src/protocol/xml.js'
import { readListAnswer } from '../../src/protocol/envelope.js'
import { stageModel } from '../../src/model/signed.js'
import { generateKeyPair, limits, makePost, registry } from '../factory.js'
import { sign } from '../../src/crypto/ed25519.js'
import { postModel, type PostFields } from '../../src/model/post/post.js'
import { xmlTree as tree } from '../arbitraries.js'

function code(r: { ok: boolean; error?: { code: string } }): string | undefined {
  return r.ok ? undefined : r.error!.code
}

test('hostile XML is DIP_XML_INVALID, never expanded or fetched', () => {
  const cases: Record<string, string | Uint8Array> = {
    doctype: '<!DOCTYPE request><request/>',
    bomb: '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><request>&lol2;</request>',
    external: '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
    undefinedEntity: '<r>&x;</r>',
    bareAmp: '<r>a & b</r>',
    namespaceAttr: '<r xmlns="urn:x"/>',
    prefixed: '<a:r xmlns:a="urn:x"/>',
    prefixedAttr: '<r a:b="1"/>',
    twoRoots: '<a/><b/>',
    textOutside: 'x<a/>',
    unclosed: '<a><b></a>',
    latin1Decl: '<?xml version="1.0" encoding="ISO-8859-1"?><r/>',
    badUtf8: new Uint8Array([0x3c, 0x72, 0x3e, 0xff, 0xfe, 0x3c, 0x2f, 0x72, 0x3e]),
    nulRef: '<r>&#0;</r>',
    controlChar: '<r>\u0001</r>',
    empty: '',
    deep: '<a>'.repeat(50_000) + '</a>'.repeat(50_000),
    tooDeep: '<a>'.repeat(MAX_DEPTH + 1) + '</a>'.repeat(MAX_DEPTH + 1),
    tooDeepSelfClosing: '<a>'.repeat(MAX_DEPTH) + '<b/>' + '</a>'.repeat(MAX_DEPTH),
    duplicateAttr: '<r a="1" a="2"/>',
    unquotedAttr: '<r a=1/>',
  }
  for (const [name, input] of Object.entries(cases)) assert.equal(code(parseXml(input)), 'DIP_XML_INVALID', name)
})

test('well-formed XML parses: BOM, declaration, CDATA, references, depth 64, line ends', () => {
  assert.ok(parseXml('\ufeff<?xml version="1.0" encoding="utf-8"?><r/>').ok)
  assert.ok(parseXml(new Uint8Array([0xef, 0xbb, 0xbf, ...Buffer.from('<r/>')])).ok)
  assert.ok(parseXml('<a>'.repeat(MAX_DEPTH) + '</a>'.repeat(MAX_DEPTH)).ok)
  assert.ok(parseXml('<a>'.repeat(MAX_DEPTH - 1) + '<b/>' + '</a>'.repeat(MAX_DEPTH - 1)).ok)
  // XML 1.0 §4.1 sets no limit on a character reference's digits: leading zeros are allowed.
  const zeros = parseXml(`<r a="&#${'0'.repeat(30)}65;">&#00000065;&#x0000041;</r>`)
  assert.ok(zeros.ok)
  assert.deepEqual([zeros.value.attrs.a, zeros.value.children], ['A', ['AA']])
  const r = parseXml('<r a="x&#9;y\tz&#10;"><![CDATA[<&>]]>&amp;&#13;&#x41;\r\nq\rw<!-- c --><?pi?></r>')
  assert.ok(r.ok)
  assert.deepEqual(r.value.children, ['<&>&\rA\nq\nw'])
  assert.equal(r.value.attrs.a, 'x\ty z\n')
  // An apparent DOCTYPE inside CDATA is text.
  const c = parseXml('<r><![CDATA[<!DOCTYPE x>]]></r>')
  assert.ok(c.ok)
  assert.deepEqual(c.value.children, ['<!DOCTYPE x>'])
})

test('canonical form: the PROTOCOL.md §4 example', () => {
  const key = 'ab'.repeat(32)
  const r = parseXml(`<content>\n  <id type="ed25519" local-id="7" key="${key}"/>\n  <title></title>\n  <text>a &amp; b\nc</text>\n</content>`)
  assert.ok(r.ok)
  assert.equal(canonicalize(r.value), `<content><id key="${key}" local-id="7" type="ed25519"/><title/><text>a &amp; b\nc</text></content>`)
})

test('canonical form: escapes, whitespace, attribute order by code point', () => {
  const r = parseXml('<c z="1" a="&quot;&lt;&#9;&#10;&#13;" \u00e9="2" \uFB01="4" B="5"><t>  </t> <x>&#13;&gt;é</x> mixed <e></e></c>')
  assert.ok(r.ok)
  assert.equal(
    canonicalize(r.value),
    '<c B="5" a="&quot;&lt;&#9;&#10;&#13;" z="1" \u00e9="2" \uFB01="4"><t>  </t><x>&#13;&gt;é</x> mixed <e/></c>',
  )
})

test('property: the canonical form is a fixed point of parse + canonicalize', () => {
  fc.assert(
    fc.property(tree, (el) => {
      const once = canonicalize(el)
      const parsed = parseXml(once)
      assert.ok(parsed.ok, once)
      assert.equal(canonicalize(parsed.value), once)
    }),
    { numRuns: 500 },
  )
})

const globalId = fc.record({
  type: fc.constant('ed25519' as const),
  key: fc.stringMatching(/^[0-9a-f]{64}$/),
  localId: fc.stringMatching(/^[0-9A-Za-z._-]{1,64}$/),
})

test('property: ids round-trip through text and XML forms', () => {
  fc.assert(
    fc.property(globalId, (id: GlobalId) => {
      const t = parseIdText(formatId(id))
      assert.ok(t.ok)
      assert.deepEqual(t.value, { ...id })
      const x = parseXml(`<id key="${id.key}" local-id="${id.localId}" type="ed25519"/>`)
      assert.ok(x.ok)
      const e = parseIdElement(x.value)
      assert.ok(e.ok)
      assert.deepEqual(e.value, { ...id })
    }),
  )
})

test('invalid ids are DIP_ID_INVALID, never guessed at', () => {
  const key = 'ab'.repeat(32)
  for (const t of [`ed25519::${key.toUpperCase()}::1`, `ed25519::${key}::`, `rsa::${key}::1`, `ed25519::${key}::a/b`, `ed25519::${key.slice(2)}::1`, `ed25519::${key}::${'x'.repeat(65)}`]) {
    assert.equal(code(parseIdText(t)), 'DIP_ID_INVALID', t)
  }
  for (const x of [`<id key="${key}" local-id="1"/>`, `<id key="${key}" local-id="1" type="ed25519" extra="1"/>`, `<id key="${key}" local-id="1" type="ecdsa"/>`, `<id key="${key}" local-id="1" type="ed25519">x</id>`]) {
    const el = parseXml(x)
    assert.ok(el.ok)
    assert.equal(code(parseIdElement(el.value)), 'DIP_ID_INVALID', x)
  }
  assert.equal(formatId({ type: 'ed25519', key, localId: '042' }) === formatId({ type: 'ed25519', key, localId: '42' }), false)
})

test('times compare as integer microseconds whatever the written form', () => {
  const a = parseContentTime('2017-01-01T00:00:00Z')
  const b = parseContentTime('2017-01-01T00:00:00.000000Z')
  const c = parseContentTime('2017-01-01T00:00:00.1Z')
  const d = parseContentTime('2017-01-01T00:00:00.099999Z')
  assert.ok(a.ok && b.ok && c.ok && d.ok)
  assert.equal(a.value, b.value)
  assert.ok(d.value < c.value && a.value < d.value)
  const far = parseContentTime('9999-12-31T23:59:59.999999Z')
  const farMinus = parseContentTime('9999-12-31T23:59:59.999998Z')
  assert.ok(far.ok && farMinus.ok && farMinus.value < far.value, 'exact far from 1970')
  for (const bad of ['2017-01-01 00:00:00', '2017-02-30T00:00:00Z', '2017-01-01T24:00:00Z', '2017-01-01T00:00:00.1234567Z', '2017-01-01T00:00:00+01:00', ' 2017-01-01T00:00:00Z']) {
    assert.equal(code(parseContentTime(bad)), 'DIP_MODEL_INVALID', bad)
  }
  const f1 = parseFilterTime('2017-01-01 00:00:00')
  const f2 = parseFilterTime('1483228800')
  assert.ok(f1.ok && f2.ok)
  assert.equal(f1.value, a.value)
  assert.equal(f2.value, a.value)
  const zero = parseFilterTime('0')
  assert.ok(zero.ok)
  assert.equal(zero.value, EPOCH)
  assert.equal(timeKeyFromMs(1e20), MAX_TIME)
  assert.equal(code(parseFilterTime('yesterday')), 'DIP_FILTER_INVALID')
})

test('a list answer: its cursor is kept exactly as sent, whitespace included (PROTOCOL.md §1: echoed exactly)', () => {
  for (const next of [' STORE.5 ', 'a\n\tb', '']) {
    const root = parseXml(`<response><status>success</status><models/><next>${next}</next></response>`)
    assert.ok(root.ok)
    const l = readListAnswer(root.value)
    assert.ok(l.ok)
    assert.equal(l.value.next, next)
  }
})

test('versions: MAJOR.MINOR, same major is compatible', () => {
  for (const bad of ['1', '1.0.0', 'v1.0', '', '1.x', ' 1.0']) assert.equal(code(parseVersion(bad)), 'DIP_REQUEST_INVALID', bad)
  const v = parseVersion('1.7')
  assert.ok(v.ok)
  assert.equal(isCompatible({ major: 1, minor: 1 }, v.value), true)
  assert.equal(isCompatible({ major: 1, minor: 1 }, { major: 2, minor: 0 }), false)
  // PROTOCOL.md §2 sets no limit on the digits: a long minor is a newer one, a long major another.
  const longMinor = parseVersion('1.12345678901234567890')
  assert.ok(longMinor.ok)
  assert.equal(isCompatible({ major: 1, minor: 1 }, longMinor.value), true)
  const zeros = parseVersion('01.0000000000')
  assert.ok(zeros.ok)
  assert.deepEqual(zeros.value, { major: 1, minor: 0 })
  for (const major of ['99999999999999999999', '9'.repeat(400)]) {
    const r = parseVersion(`${major}.0`)
    assert.ok(r.ok)
    assert.equal(isCompatible({ major: 1, minor: 1 }, r.value), false)
  }
})

const text = fc.string({ unit: fc.constantFrom('a', 'b', ' ', '\n', '&', '<', 'é', '[', ']'), maxLength: 30 })
const fields = fc.record({
  id: globalId,
  title: text,
  text,
  tags: fc.array(fc.stringMatching(/^[a-z]{1,5}$/), { maxLength: 3 }),
  pubTime: fc.constant('2020-01-02T03:04:05Z'),
  updateTime: fc.constant('2020-01-02T03:04:05.5Z'),
  tripcode: fc.option(text, { nil: undefined }),
})

test('property: post fromContent(toContent(fields)) keeps every field', () => {
  fc.assert(
    fc.property(fields, (f: PostFields) => {
      const content = canonicalize(postModel.toContent(f))
      const el = parseXml(content)
      assert.ok(el.ok)
      const p = postModel.fromContent(el.value)
      assert.ok(p.ok, content)
      assert.deepEqual(p.value.id, { ...f.id })
      assert.equal(p.value.title, f.title.replace(/\r\n?/g, '\n'))
      assert.equal(p.value.text, f.text)
      assert.deepEqual(p.value.tags, f.tags)
      assert.equal(p.value.tripcode, f.tripcode)
      assert.equal(p.value.updateTime, f.updateTime)
    }),
    { numRuns: 300 },
  )
})

test('stageModel: a model in the served form is kept as its own text; any other spelling is stored in the served form', async () => {
  const { stageModel } = await import('../../src/model/signed.js')
  const { generateKeyPair, makePost } = await import('../factory.js')
  const { defaultRegistry } = await import('../../src/daemon.js')
  const { DEFAULT_LIMITS } = await import('../../src/protocol/envelope.js')
  const registry = defaultRegistry()
  const authored = { value: makePost(generateKeyPair(), { localId: 1, title: 't & <u>', text: 'x\ny', tags: ['a'] }) }
  const served = authored.value.xml
  const stage = (xml: string) => {
    const el = parseXml(xml)
    assert.ok(el.ok)
    const st = stageModel(el.value, registry, DEFAULT_LIMITS)
    assert.ok(st.ok, xml)
    return st.value
  }
  assert.equal(stage(served).xml, served)
  const variants = [
    served.replace('version="1.1">', 'version="1.1" zz="1">'), // an attribute of a newer minor (canonical order)
    served.replace('<signatures>', '\n<signatures>'),
    served.replace('</signatures>', '<note/></signatures>'),
    served.replace('</content>', '</content><extra>1</extra>'),
    served.replace(/<signature (key="[0-9a-f]+") (type="ed25519")/, '<signature $2 $1'),
    served.replace('<model name="post" version="1.1">', "<model version='1.1' name='post'>"),
  ]
  for (const v of variants) {
    assert.notEqual(v, served)
    const st = stage(v)
    assert.equal(st.xml, served, v)
    assert.equal(st.hash, authored.value.hash)
  }
})

test('post fields PROTOCOL.md §5 gives no grammar for are taken as another node may write them: an empty tag, a size with leading zeros, a mimetype with parameters', () => {
  const pair = generateKeyPair()
  const base = makePost(pair, { localId: 1, tags: ['cats'] })
  const stage = (content: string) => {
    const sig = Buffer.from(sign(pair, Buffer.from(content))).toString('hex')
    const root = parseXml(`<model name="post" version="1.1">${content}<signatures><signature key="${pair.publicKeyHex}" type="ed25519" value="${sig}"/></signatures></model>`)
    assert.ok(root.ok)
    return stageModel(root.value, registry, limits)
  }
  const emptyTag = stage(base.content.replace('<tag>cats</tag>', '<tag>cats</tag><tag></tag>'))
  assert.ok(emptyTag.ok, JSON.stringify(!emptyTag.ok && emptyTag.rejection))
  assert.deepEqual(emptyTag.value.meta.facets.tag, ['cats', ''])
  const hash = `sha256:${'ab'.repeat(32)}`
  const withAttachment = (attrs: string) => stage(base.content.replace('</content>', `<attachments><attachment ${attrs}/></attachments></content>`))
  for (const attrs of [`hash="${hash}" mimetype="text/plain; charset=utf-8" name="a.txt" size="12"`, `hash="${hash}" mimetype="image/png" name="a.png" size="012"`]) {
    const r = withAttachment(attrs)
    assert.ok(r.ok, `${attrs}: ${JSON.stringify(!r.ok && r.rejection)}`)
  }
  for (const attrs of [`hash="${hash}" mimetype="png" size="12"`, `hash="${hash}" mimetype="image/png " size="12"`, `hash="${hash}" mimetype="image/png" size="-1"`, `hash="${hash}" mimetype="image/png" size="1e3"`]) {
    const r = withAttachment(attrs)
    assert.ok(!r.ok && r.rejection.code === 'DIP_MODEL_INVALID', attrs)
  }
})
