// fast-xml-parser (with its validator) as an oracle for dipd's own parser:
// on every well-formed document both must build the same tree, and every
// document the oracle's validator refuses, dipd refuses too.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { XMLParser, XMLValidator } from 'fast-xml-parser'
import { canonicalize } from '../../src/protocol/canonical.js'
import { parseXml, type XmlElement, type XmlNode } from '../../src/protocol/xml.js'
import { FIXTURES } from '../helpers.js'
import { xmlTree as tree } from '../arbitraries.js'

const oracle = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  allowBooleanAttributes: false,
  trimValues: false,
  parseTagValue: false,
  parseAttributeValue: false,
  processEntities: false,
  cdataPropName: '#cdata',
  commentPropName: '#comment',
  ignoreDeclaration: true,
  ignorePiTags: true,
})

const NAMED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }
const decode = (s: string) =>
  s.replace(/&(?:(amp|lt|gt|quot|apos)|#([0-9]+)|#x([0-9a-fA-F]+));/g, (_, n: string | undefined, d: string | undefined, h: string | undefined) =>
    n ? NAMED[n]! : String.fromCodePoint(d ? Number(d) : parseInt(h!, 16)),
  )

type Fxp = Record<string, unknown>
function fromOracle(nodes: Fxp[]): XmlNode[] {
  const out: XmlNode[] = []
  let text: string | undefined
  for (const node of nodes) {
    if ('#text' in node) text = (text ?? '') + decode(String(node['#text']))
    else if ('#cdata' in node) text = (text ?? '') + (node['#cdata'] as Fxp[]).map((p) => String(p['#text'] ?? '')).join('')
    else if ('#comment' in node) continue
    else {
      const name = Object.keys(node).find((k) => k !== ':@')!
      if (text !== undefined) out.push(text)
      text = undefined
      const attrs: Record<string, string> = Object.create(null)
      for (const [k, v] of Object.entries((node[':@'] as Record<string, string>) ?? {})) attrs[k] = decode(v.replace(/[\t\n]/g, ' '))
      out.push({ name, attrs, children: fromOracle(node[name] as Fxp[]) })
    }
  }
  if (text !== undefined) out.push(text)
  return out
}

function oracleTree(doc: string): XmlElement | undefined {
  const body = doc.replace(/^\ufeff/, '').replace(/\r\n?/g, '\n')
  if (XMLValidator.validate(body) !== true) return undefined
  const top = fromOracle(oracle.parse(body) as Fxp[]).filter((n): n is XmlElement => typeof n !== 'string')
  return top.length === 1 ? top[0] : undefined
}

const plain = (n: XmlNode): unknown => (typeof n === 'string' ? n : { name: n.name, attrs: { ...n.attrs }, children: n.children.map(plain) })

function* xmlFiles(dir: string): Generator<string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) yield* xmlFiles(join(dir, e.name))
    else if (e.name.endsWith('.xml')) yield join(dir, e.name)
  }
}

test('oracle: every fixture dipd accepts builds the same tree in fast-xml-parser', () => {
  let compared = 0
  for (const file of xmlFiles(FIXTURES)) {
    const doc = readFileSync(file, 'utf8')
    const ours = parseXml(doc)
    if (!ours.ok) continue
    const theirs = oracleTree(doc)
    assert.ok(theirs, `the oracle refuses what dipd accepts: ${file}`)
    assert.deepEqual(plain(ours.value), plain(theirs), file)
    compared++
  }
  assert.ok(compared > 100, `compared ${compared} fixtures`)
})

test('oracle: every fixture the oracle refuses, dipd refuses too', () => {
  let refused = 0
  for (const file of xmlFiles(FIXTURES)) {
    const doc = readFileSync(file, 'utf8')
    if (/^(\ufeff)?<\?xml/.test(doc) || doc.includes('<!DOCTYPE')) continue // the oracle reads declarations and DTDs its own way
    if (XMLValidator.validate(doc.replace(/\r\n?/g, '\n')) === true) continue
    assert.equal(parseXml(doc).ok, false, file)
    refused++
  }
  assert.ok(refused > 0)
})

test('oracle: random documents (canonical, pretty-printed, with comments and CDATA) parse alike', () => {
  fc.assert(
    fc.property(tree, fc.constantFrom('canonical', 'pretty', 'decorated'), (el, style) => {
      let doc = canonicalize(el)
      if (style === 'pretty') doc = doc.replace(/></g, '>\n  <')
      if (style === 'decorated') doc = `<?xml version="1.0" encoding="UTF-8"?>\n<!-- head -->\n${doc.replace(/^(<[^>]*[^/]>)/, '$1<![CDATA[x&y]]><!-- c --><?pi data?>')}\n`
      const ours = parseXml(doc)
      const theirs = oracleTree(doc)
      assert.ok(ours.ok, doc)
      assert.ok(theirs, doc)
      assert.deepEqual(plain(ours.value), plain(theirs))
    }),
    { numRuns: 400 },
  )
})

/** Every element of a tree, depth first. */
function* elements(el: XmlElement): Generator<XmlElement> {
  yield el
  for (const c of el.children) if (typeof c !== 'string') yield* elements(c)
}

// The parser marks elements whose source is already canonical (`src`), and
// canonicalize() then returns that text: the mark must never be wrong, and
// it must be found on canonical documents (the bulk path relies on it).
const respellings: [RegExp, string][] = [
  [/ ([a-z][a-z0-9.-]*)="/, " $1 = \""], // spaces around =
  [/="([^"]*)"/, "='$1'"], // single quotes (a value without ' only)
  [/<([a-z][a-z0-9.-]*)\/>/, '<$1></$1>'], // empty element written open and closed
  [/<([a-z][a-z0-9.-]*)/, '<$1 '], // space before > or an attribute
  [/&amp;/, '&#38;'], // another spelling of the same character
  [/&gt;/, '>'],
  [/&#13;/, '&#xD;'],
  [/<\/([a-z][a-z0-9.-]*)>/, '</$1 >'],
  [/(<[a-z][a-z0-9.-]*)( [^>]*?")( [^>]*?")(\/?>)/, '$1$3$2$4'], // two attributes swapped
  [/></, '>\n<'], // white space between tags
  [/>([^<]+)</, '><!--c-->$1<'],
  [/>([^<]+)</, '><![CDATA[$1]]><'],
]

test('canonical spans: src, when the parser sets it, is the canonical form; canonical documents get it', () => {
  fc.assert(
    fc.property(tree, fc.array(fc.nat(respellings.length - 1), { maxLength: 3 }), (el, edits) => {
      const canonical = canonicalize(el)
      const parsed = parseXml(canonical)
      assert.ok(parsed.ok)
      assert.equal(parsed.value.src, canonical, 'a canonical document is its own canonical form, found in one pass')
      let doc = canonical
      for (const e of edits) doc = doc.replace(respellings[e]![0], respellings[e]![1])
      const again = parseXml(doc)
      if (!again.ok) return // a respelling may break well-formedness (a quote inside a value)
      for (const x of elements(again.value)) if (x.src !== undefined) assert.equal(x.src, canonicalize(x, true), doc)
    }),
    { numRuns: 2000 },
  )
})

test('canonical spans: fixtures and hand-picked spellings', () => {
  let marked = 0
  for (const file of xmlFiles(FIXTURES)) {
    const parsed = parseXml(readFileSync(file, 'utf8'))
    if (!parsed.ok) continue
    for (const x of elements(parsed.value)) {
      if (x.src === undefined) continue
      assert.equal(x.src, canonicalize(x, true), file)
      marked++
    }
  }
  assert.ok(marked > 1000, `${marked} marked elements`)
  const src = (doc: string) => parseXml(doc).ok && (parseXml(doc) as { value: XmlElement }).value.src
  assert.equal(src('<a b="1" c="&amp;&lt;&gt;&quot;&#9;&#10;&#13;"><x/>t&amp;&lt;&gt;&#13;</a>'), '<a b="1" c="&amp;&lt;&gt;&quot;&#9;&#10;&#13;"><x/>t&amp;&lt;&gt;&#13;</a>')
  for (const doc of ['<a c="1" b="2"/>', "<a b='1'/>", '<a b="1" />', '<a></a>', '<a>x&quot;</a>', '<a b="x&apos;"/>', '<a>&#65;</a>', '<a><b/> </a>', '<a><b/>&#13;</a>', '<a b="\t"/>', '<a>x</a >', '<a><!--c--></a>', '<a><?p?></a>']) {
    assert.equal(src(doc), undefined, doc)
  }
})

test('take: an element found canonical comes with its source bytes, a view into the document given as bytes (after a BOM and the declaration); none for a string, or once line ends were normalised', () => {
  fc.assert(
    fc.property(fc.array(tree, { minLength: 1, maxLength: 4 }), fc.boolean(), fc.boolean(), fc.constantFrom('', ' ', '\n'), (els, bom, decl, sep) => {
      const doc = `${decl ? '<?xml version="1.0" encoding="UTF-8"?>' : ''}<r>${sep}${els.map((e) => canonicalize(e)).join(sep)}${sep}</r>`
      const bytes = Buffer.concat([bom ? Buffer.from([0xef, 0xbb, 0xbf]) : Buffer.alloc(0), Buffer.from(doc, 'utf8')])
      let n = 0
      const parsed = parseXml(bytes, (el, _parent, depth, source) => {
        if (depth !== 2) return false
        const b = source.bytes()
        if (el.src === undefined || doc.includes('\r')) assert.equal(b, undefined)
        else {
          assert.ok(b !== undefined && b.buffer === bytes.buffer, 'a view into the document')
          assert.deepEqual(Buffer.from(b), Buffer.from(el.src, 'utf8'))
          n++
        }
        return true
      })
      assert.ok(parsed.ok)
      // Every element of `els` is canonical: each comes with its bytes, unless a CR was normalised.
      assert.equal(n, doc.includes('\r') ? 0 : els.length)
    }),
    { numRuns: 300 },
  )
  const sources = (input: string | Uint8Array) => {
    const out: (string | undefined)[] = []
    assert.ok(
      parseXml(input, (_el, _p, depth, source) => {
        if (depth === 2) {
          const b = source.bytes()
          out.push(b && Buffer.from(b).toString())
        }
        return false
      }).ok,
    )
    return out
  }
  const doc = '<r><a x="é">𝄞 naïve</a><b>x</b>\n<c/></r>'
  assert.deepEqual(sources(Buffer.from(doc)), ['<a x="é">𝄞 naïve</a>', '<b>x</b>', '<c/>'])
  assert.deepEqual(sources(doc), [undefined, undefined, undefined], 'a string has no bytes')
  assert.deepEqual(sources(Buffer.from(doc.replace('\n', '\r\n'))), [undefined, undefined, undefined], 'CR LF became LF: the text no longer maps onto the bytes')
  assert.deepEqual(sources(Buffer.from('<r><a b="2" a="1"/><b>x</b></r>')), [undefined, '<b>x</b>'], 'an element not in canonical form has no source')
})

test('take: elements taken as they close leave the tree, the rest is the same tree; refusals are the same', () => {
  const doc = '<response><status>success</status><models><model n="1"><x/></model><model n="2"/><other/></models><models><model n="3"/></models></response>'
  const seen: [string, string, number][] = []
  const taken = parseXml(doc, (el, parent, depth) => {
    seen.push([el.name + (el.attrs.n ?? ''), parent.name, depth])
    return el.name === 'model' && depth === 3 && el.attrs.n !== '3'
  })
  assert.ok(taken.ok)
  assert.deepEqual(seen, [['status', 'response', 2], ['x', 'model', 4], ['model1', 'models', 3], ['model2', 'models', 3], ['other', 'models', 3], ['models', 'response', 2], ['model3', 'models', 3], ['models', 'response', 2]])
  const whole = parseXml(doc)
  assert.ok(whole.ok)
  const models = whole.value.children[1] as XmlElement
  models.children.splice(0, 2)
  assert.deepEqual(plain(taken.value), plain(whole.value))
  assert.equal(taken.value.src, undefined, 'a tree with parts taken out is not its source any more')
  assert.equal(parseXml('<a><b/><b></a>', () => true).ok, false)
})
