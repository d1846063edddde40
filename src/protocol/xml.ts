// The one hardened XML parse of dipd (PROTOCOL.md §1).
//
// A DIP body is one XML 1.0 document in UTF-8: an optional BOM, an optional
// declaration whose encoding (if given) is UTF-8, no DOCTYPE, no namespaces
// (`xmlns` attributes or prefixed names), element depth at most 64. Only the
// five built-in entities and character references are expanded, so there is
// no entity expansion to bomb and nothing external to fetch. CDATA sections
// and character references become plain text. Comments and processing
// instructions are dropped. Line ends are normalised (CRLF, CR -> LF) and
// literal tab/LF in attribute values become spaces, as XML 1.0 §2.11 and
// §3.3.3 require; `&#13;`, `&#10;` and `&#9;` survive as the characters.
//
// One strict pass builds the tree. fast-xml-parser (the stack's parser) needs
// its validator as a second pass because its parser is lenient, drops text
// after a self-closing root, lets `<` stand in attribute values and `]]>` in
// text, refuses names beyond U+FFFF, and its tree needs a third pass to merge
// text and decode references: three times the cost on the bulk path
// (bench/pull-stages.ts). It stays in the tests as an oracle: on every
// well-formed document both must build the same tree (test/unit/xml-oracle).
// Everything returns a Result; nothing here throws on input.
import { fail, ok, type Result } from '../errors.js'

export interface XmlElement {
  name: string
  /** record without Object.prototype in its chain; attribute order is not significant */
  attrs: Record<string, string>
  /** child elements and text runs (adjacent text and CDATA merged) */
  children: XmlNode[]
  /**
   * Set by the parser when the element's source text is already in
   * canonical form (canonical.ts): then the canonical form is this slice of
   * the document, and canonicalize() returns it without a walk.
   */
  src?: string | undefined
}
export type XmlNode = XmlElement | string

export const MAX_DEPTH = 64

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false })
// XML 1.0 §2.2 Char, as a "not allowed" class (lone surrogates cannot
// survive the fatal UTF-8 decode).
const BAD_CHAR_RE = /[\x00-\x08\x0B\x0C\x0E-\x1F\uFFFE\uFFFF]/
const DECL_RE = /^<\?xml[ \t\n]+version[ \t\n]*=[ \t\n]*(["'])1\.[0-9]+\1(?:[ \t\n]+encoding[ \t\n]*=[ \t\n]*(["'])([A-Za-z][A-Za-z0-9._-]*)\2)?(?:[ \t\n]+standalone[ \t\n]*=[ \t\n]*(["'])(?:yes|no)\4)?[ \t\n]*\?>/
const NAMED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }
const WS_ONLY_RE = /^[ \t\r\n]*$/
// XML 1.0 (5th edition) §2.3 Name, without ':' (no namespaces in DIP).
const NAME_START = 'A-Z_a-z\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u02FF\\u0370-\\u037D\\u037F-\\u1FFF\\u200C-\\u200D\\u2070-\\u218F\\u2C00-\\u2FEF\\u3001-\\uD7FF\\uF900-\\uFDCF\\uFDF0-\\uFFFD\\u{10000}-\\u{EFFFF}'
const NAME_RE = new RegExp(`[${NAME_START}:][${NAME_START}:\\-.0-9\\u00B7\\u0300-\\u036F\\u203F-\\u2040]*`, 'uy')

function isXmlChar(cp: number): boolean {
  return cp === 0x9 || cp === 0xa || cp === 0xd || (cp >= 0x20 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff)
}

class SyntaxErr extends Error {}

// Attribute records: fast-property objects whose prototype has no
// properties (so `__proto__` or `constructor` are plain attribute names).
// Object.create(null) would make each one a dictionary, twice the memory.
function Attrs(this: Record<string, string>) {}
Attrs.prototype = Object.create(null)
const newAttrs = (): Record<string, string> => new (Attrs as unknown as new () => Record<string, string>)()

/**
 * Whether a raw text run (`attr` false) or attribute value (`attr` true) is
 * written exactly as the canonical form writes what it decodes to: only the
 * canonical escapes, no raw character the canonical form escapes. Sound, not
 * complete: false sends the element to the full canonical walk.
 */
function canonicalRaw(raw: string, attr: boolean): boolean {
  if (raw.indexOf('>') !== -1 || (attr && (raw.indexOf('\t') !== -1 || raw.indexOf('\n') !== -1))) return false
  for (let amp = raw.indexOf('&'); amp !== -1; amp = raw.indexOf('&', amp + 1)) {
    const c = raw.charCodeAt(amp + 1)
    if (c === 0x61 ? raw.startsWith('amp;', amp + 1) : c === 0x6c || c === 0x67 ? raw.charCodeAt(amp + 2) === 0x74 && raw.charCodeAt(amp + 3) === 0x3b : false) continue
    if (raw.startsWith('#13;', amp + 1)) continue
    if (attr && (raw.startsWith('quot;', amp + 1) || raw.startsWith('#9;', amp + 1) || raw.startsWith('#10;', amp + 1))) continue
    return false
  }
  return true
}

/**
 * Expands the built-in entities and character references; any other `&` is
 * an error. One forward scan (a replace callback per reference made a body
 * of 4M `&lt;` cost over a second).
 */
function decodeRefs(raw: string): string {
  let amp = raw.indexOf('&')
  if (amp === -1) return raw
  let out = ''
  let from = 0
  while (amp !== -1) {
    if (amp > from) out += raw.slice(from, amp)
    const c = raw.charCodeAt(amp + 1)
    // The five named entities, without slicing: &lt; &gt; &amp; &quot; &apos;
    if ((c === 0x6c || c === 0x67) && raw.charCodeAt(amp + 2) === 0x74 && raw.charCodeAt(amp + 3) === 0x3b) {
      out += c === 0x6c ? '<' : '>'
      from = amp + 4
      amp = raw.indexOf('&', from)
      continue
    }
    const semi = raw.indexOf(';', amp + 1)
    if (semi === -1) throw new SyntaxErr(`undefined entity or bare & near ${JSON.stringify(raw.slice(amp, amp + 12))}`)
    const name = raw.slice(amp + 1, semi)
    const named = Object.hasOwn(NAMED, name) ? NAMED[name] : undefined
    if (named !== undefined) out += named
    else {
      // XML 1.0 §4.1: any number of digits, leading zeros included (`&#00000065;` is "A").
      const m = /^#(?:0*([0-9]{1,7})|x0*([0-9a-fA-F]{1,6}))$/.exec(name)
      if (!m) throw new SyntaxErr(`undefined entity or bare & near ${JSON.stringify(raw.slice(amp, Math.min(semi + 1, amp + 40)))}`)
      const cp = m[1] !== undefined ? Number(m[1]) : parseInt(m[2]!, 16)
      if (!isXmlChar(cp)) throw new SyntaxErr(`character reference to a non-XML character ${cp}`)
      out += String.fromCodePoint(cp)
    }
    from = semi + 1
    amp = raw.indexOf('&', from)
  }
  return out + raw.slice(from)
}

const CANON = 1
const HAS_EL = 2
const WS_RUN = 4
const HIGH_RE = /[\uD800-\uFFFF]/

/** ASCII name characters (XML 1.0 §2.3, without ':'): 2 may start a name, 1 may only continue one. */
const NAME_CHAR = new Uint8Array(128)
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c)
  NAME_CHAR[c] = /[A-Za-z_]/.test(ch) ? 2 : /[0-9.-]/.test(ch) ? 1 : 0
}

/**
 * A first child gets an array of its own size: push onto [] reserves 17
 * slots, and most elements hold one text run.
 */
function addChild(parent: XmlElement, node: XmlNode): void {
  if (parent.children.length === 0) parent.children = [node]
  else parent.children.push(node)
}

const isWs = (c: number) => c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d

/**
 * Asked of every element as it closes, with its parent and depth (the root
 * is 1): true takes it out of the tree (the caller has used it), so that a
 * large answer's parts can be handled and dropped one at a time. `source`
 * gives, while the element is offered, its source bytes (see ElementSource).
 */
export type Take = (el: XmlElement, parent: XmlElement, depth: number, source: ElementSource) => boolean

/**
 * The source bytes of the element offered to a Take, one object per parse.
 * bytes(): the element's source (`src`) as it stands in a document given as
 * bytes, a view into them (no encoding again); undefined for an element
 * without `src`, a document given as a string or whose line ends were
 * normalised, or an element that starts before the last one asked for
 * (asked in document order, each costs only the bytes since that one).
 */
export class ElementSource {
  readonly #input: Uint8Array | undefined
  #s = ''
  #start = 0
  #src: string | undefined
  /** the last source asked for ended at character `#pos`, byte `#byte` */
  #pos = 0
  #byte: number

  /** `input` holds the document's text from byte `base` on (undefined: the text is not the bytes'). */
  constructor(input: Uint8Array | undefined, base = 0) {
    this.#input = input
    this.#byte = base
  }

  /** The element being offered: its source `src`, which starts at character `start` of `s`. */
  offer(s: string, start: number, src: string | undefined): void {
    this.#s = s
    this.#start = start
    this.#src = src
  }

  bytes(): Uint8Array | undefined {
    const src = this.#src
    if (this.#input === undefined || src === undefined || this.#start < this.#pos) return undefined
    const from = this.#byte + (this.#start === this.#pos ? 0 : Buffer.byteLength(this.#s.slice(this.#pos, this.#start)))
    const to = from + Buffer.byteLength(src)
    this.#pos = this.#start + src.length
    this.#byte = to
    return this.#input.subarray(from, to)
  }
}

const NO_SOURCE = new ElementSource(undefined)

/** Element and attribute names seen last, by first character and length (see readName). */
const names: (string | undefined)[] = new Array(128 * 25)

/** A parse error at offset `at`. */
function syntax(msg: string, at: number): never {
  throw new SyntaxErr(`${msg} (offset ${at})`)
}

/** The name that starts at `at`; `i`, where its markup starts, is the offset an error names. */
function readName(s: string, at: number, i: number): string {
  // ASCII names ended by an ASCII character that cannot continue a name: no regex.
  let k = at
  const first = s.charCodeAt(k)
  if (NAME_CHAR[first] === 2) {
    let c = s.charCodeAt(++k)
    while (NAME_CHAR[c]) c = s.charCodeAt(++k)
    if (c < 0x80 && c !== 0x3a) {
      // The same few names recur (a short slice is a copy): the last one seen per first character and length is reused.
      const len = k - at
      if (len > 24) return s.slice(at, k)
      const slot = first * 25 + len
      const seen = names[slot]
      if (seen !== undefined && s.startsWith(seen, at)) return seen
      return (names[slot] = s.slice(at, k))
    }
  }
  NAME_RE.lastIndex = at
  const m = NAME_RE.exec(s)
  if (m === null) return syntax('a name is expected', i)
  if (m[0].indexOf(':') !== -1) syntax(`namespaced name ${JSON.stringify(m[0].slice(0, 64))} is not allowed`, i)
  return m[0]
}

/** The open element's source is no longer canonical as it stands. */
function notCanonical(flags: number[]): void {
  flags[flags.length - 1]! &= ~CANON
}

/** A text run ends: it becomes the open element's child. */
function addText(stack: XmlElement[], flags: number[], text: string): void {
  const top = flags.length - 1
  if (flags[top]! & CANON && WS_ONLY_RE.test(text)) flags[top]! |= WS_RUN
  addChild(stack[stack.length - 1]!, text)
}

/** Offers a closed element (which starts at `start`) to `take`; a taken one is its parent's last child, and the parent no longer holds its source. */
function offer(take: Take, stack: XmlElement[], flags: number[], el: XmlElement, source: ElementSource, s: string, start: number): void {
  const parent = stack[stack.length - 1]!
  source.offer(s, start, el.src)
  if (take(el, parent, stack.length + 1, source)) {
    parent.children.pop()
    notCanonical(flags)
  }
}

// parseDocument makes no closures: the optimised code of a closure made per
// call was compiled again and again, and calls to it deoptimised the parser.
/** The tree of a document whose characters are already checked and whose line ends are normalised. */
function parseDocument(s: string, take: Take | undefined, source: ElementSource): XmlElement {
  const n = s.length
  const stack: XmlElement[] = []
  // Per open element: where its start tag begins, and CANON | HAS_EL | WS_RUN.
  const starts: number[] = []
  const flags: number[] = []
  let root: XmlElement | undefined
  let text = ''
  let hasText = false
  let i = 0
  while (i < n) {
    const lt = s.indexOf('<', i)
    const end = lt === -1 ? n : lt
    if (end > i) {
      const chunk = s.slice(i, end)
      if (stack.length === 0) {
        if (!WS_ONLY_RE.test(chunk)) syntax(root ? 'text after the root element' : 'text before the root element', i)
      } else {
        if (chunk.indexOf(']]>') !== -1) syntax('"]]>" may not stand in character data', i) // §2.4
        text += decodeRefs(chunk)
        if (flags[flags.length - 1]! & CANON && !canonicalRaw(chunk, false)) notCanonical(flags)
        hasText = true
      }
      i = end
    }
    if (lt === -1) break
    const c = s.charCodeAt(i + 1)
    if (c === 0x2f) {
      // </name S?>: the open element's name, compared in place (no string made), else read for the error
      const top = stack[stack.length - 1]
      const after = top === undefined ? -1 : i + 2 + top.name.length
      const ends = top !== undefined && s.startsWith(top.name, i + 2) && NAME_CHAR[s.charCodeAt(after)] === 0 && s.charCodeAt(after) !== 0x3a
      const nm = ends ? top.name : readName(s, i + 2, i)
      let j = i + 2 + nm.length
      const tight = j
      while (j < n && isWs(s.charCodeAt(j))) j++
      if (s.charCodeAt(j) !== 0x3e) syntax('malformed end tag', i)
      const open = stack[stack.length - 1]
      if (!open || open.name !== nm) syntax(`end tag </${nm.slice(0, 64)}> does not match`, i)
      if (hasText) {
        addText(stack, flags, text)
        text = ''
        hasText = false
      }
      stack.pop()
      const start = starts.pop()!
      const f = flags.pop()!
      i = j + 1
      // Canonical: tight end tag, not <a></a> (that is <a/>), no white-space-only run beside child elements.
      if (f & CANON && j === tight && open!.children.length > 0 && (f & (HAS_EL | WS_RUN)) !== (HAS_EL | WS_RUN)) open!.src = s.slice(start, i)
      else if (flags.length > 0) notCanonical(flags)
      if (take && stack.length > 0) offer(take, stack, flags, open!, source, s, start)
    } else if (c === 0x21) {
      if (s.startsWith('<!--', i)) {
        const e = s.indexOf('-->', i + 4)
        if (e === -1) syntax('unclosed comment', i)
        if (s.slice(i + 4, e).indexOf('--') !== -1 || s.charCodeAt(e - 1) === 0x2d) syntax('"--" inside a comment', i) // §2.5
        if (flags.length > 0) notCanonical(flags)
        i = e + 3
      } else if (s.startsWith('<![CDATA[', i)) {
        if (stack.length === 0) syntax('CDATA outside the root element', i)
        const e = s.indexOf(']]>', i + 9)
        if (e === -1) syntax('unclosed CDATA section', i)
        text += s.slice(i + 9, e)
        hasText = true
        notCanonical(flags)
        i = e + 3
      } else syntax('DOCTYPE and other declarations are not allowed', i)
    } else if (c === 0x3f) {
      // <?target …?>: dropped; `xml` in any case is reserved (§2.6)
      const target = readName(s, i + 2, i)
      if (target.toLowerCase() === 'xml') syntax('an XML declaration may only stand first', i)
      const after = i + 2 + target.length
      const e = s.indexOf('?>', after)
      if (e === -1) syntax('unclosed processing instruction', i)
      if (e !== after && !isWs(s.charCodeAt(after))) syntax('malformed processing instruction', i)
      if (flags.length > 0) notCanonical(flags)
      i = e + 2
    } else {
      if (stack.length === 0 && root) syntax('a document has exactly one root element', i)
      const nm = readName(s, i + 1, i)
      let j = i + 1 + nm.length
      const attrs = newAttrs()
      let selfClosing = false
      // Canonical start tag: one space before each attribute, name="value", names in order, nothing before > or />.
      let canon = true
      let prev = ''
      for (;;) {
        const before = j
        while (j < n && isWs(s.charCodeAt(j))) j++
        const ch = s.charCodeAt(j)
        if (ch === 0x3e || (ch === 0x2f && s.charCodeAt(j + 1) === 0x3e)) {
          if (j !== before) canon = false
          selfClosing = ch === 0x2f
          j += selfClosing ? 2 : 1
          break
        }
        if (j === before) syntax('white space is needed between attributes', i)
        if (j !== before + 1 || s.charCodeAt(before) !== 0x20) canon = false
        const an = readName(s, j, i)
        if (an === 'xmlns') syntax('namespace declarations are not allowed', i)
        // Code-unit order is code-point order below the surrogates.
        if (canon && (an <= prev || HIGH_RE.test(an))) canon = false
        prev = an
        j += an.length
        let k = j
        while (j < n && isWs(s.charCodeAt(j))) j++
        if (s.charCodeAt(j) !== 0x3d) syntax(`attribute ${an.slice(0, 64)} has no value`, i)
        j++
        if (j !== k + 1) canon = false
        k = j
        while (j < n && isWs(s.charCodeAt(j))) j++
        if (j !== k) canon = false
        const q = s.charCodeAt(j)
        if (q !== 0x22) canon = false
        if (q !== 0x22 && q !== 0x27) syntax('attribute values are quoted', i)
        const e = s.indexOf(q === 0x22 ? '"' : "'", j + 1)
        if (e === -1) syntax('unclosed attribute value', i)
        const raw = s.slice(j + 1, e)
        if (raw.indexOf('<') !== -1) syntax('"<" may not stand in an attribute value', i) // §3.1
        if (an in attrs) syntax(`attribute ${an.slice(0, 64)} repeated`, i)
        if (canon && !canonicalRaw(raw, true)) canon = false
        attrs[an] = decodeRefs(raw.indexOf('\t') === -1 && raw.indexOf('\n') === -1 ? raw : raw.replace(/[\t\n]/g, ' '))
        j = e + 1
      }
      // The element's depth is its open ancestors + 1, self-closing or not.
      if (stack.length >= MAX_DEPTH) syntax(`nesting deeper than ${MAX_DEPTH}`, i)
      const el: XmlElement = { name: nm, attrs, children: [], src: undefined }
      if (stack.length === 0) root = el
      else {
        if (hasText) {
          addText(stack, flags, text)
          text = ''
          hasText = false
        }
        addChild(stack[stack.length - 1]!, el)
        flags[flags.length - 1]! |= HAS_EL
      }
      if (!selfClosing) {
        stack.push(el)
        starts.push(i)
        flags.push(canon ? CANON : 0)
      } else {
        if (canon) el.src = s.slice(i, j)
        else if (flags.length > 0) notCanonical(flags)
        if (take && stack.length > 0) offer(take, stack, flags, el, source, s, i)
      }
      i = j
    }
  }
  if (stack.length > 0) syntax(`element <${stack[stack.length - 1]!.name.slice(0, 64)}> is not closed`, i)
  if (!root) syntax('no root element', i)
  return root!
}

/** Parses one DIP XML document (bytes or an already decoded string); `take` may take elements out as they close. */
export function parseXml(input: Uint8Array | string, take?: Take): Result<XmlElement> {
  let text: string
  // Where the text starts in the bytes (after a BOM and the declaration); -1 once it no longer maps onto them.
  let base = -1
  if (typeof input === 'string') {
    text = input.charCodeAt(0) === 0xfeff ? input.slice(1) : input
  } else {
    try {
      text = decoder.decode(input) // strips a BOM
      base = input[0] === 0xef && input[1] === 0xbb && input[2] === 0xbf ? 3 : 0
    } catch (cause) {
      return fail('DIP_XML_INVALID', 'the body is not valid UTF-8', cause)
    }
  }
  if (BAD_CHAR_RE.test(text)) return fail('DIP_XML_INVALID', 'the body holds a character XML 1.0 does not allow')
  if (text.indexOf('\r') !== -1) {
    text = text.replace(/\r\n?/g, '\n')
    base = -1
  }
  // The declaration is `<?xml` + white space; `<?xml-stylesheet …?>` is a processing instruction.
  if (/^<\?xml[ \t\n]/.test(text)) {
    const m = DECL_RE.exec(text)
    if (!m) return fail('DIP_XML_INVALID', 'malformed XML declaration')
    if (m[3] !== undefined && m[3].toLowerCase() !== 'utf-8') return fail('DIP_XML_INVALID', `encoding ${m[3]} is not UTF-8`)
    text = text.slice(m[0].length)
    if (base !== -1) base += m[0].length // the declaration is ASCII
  }
  try {
    return ok(parseDocument(text, take, take && base !== -1 ? new ElementSource(input as Uint8Array, base) : NO_SOURCE))
  } catch (cause) {
    if (cause instanceof SyntaxErr) return fail('DIP_XML_INVALID', `not well-formed XML: ${cause.message}`)
    throw cause
  }
}

/**
 * A copy of `s` that holds no reference to the document it was cut from.
 * Names, attribute values and text are slices of the whole decoded body
 * (V8 sliced strings): anything kept past the request (a cache key, a
 * cursor) must be copied, or it keeps the whole body alive.
 */
export function detached(s: string): string {
  return Buffer.from(s, 'utf8').toString('utf8')
}

// ---- reading helpers (element trees are untrusted: never throw) ----

export function childElements(el: XmlElement): XmlElement[] {
  const out: XmlElement[] = []
  for (const c of el.children) if (typeof c !== 'string') out.push(c)
  return out
}

export function firstChild(el: XmlElement, name: string): XmlElement | undefined {
  for (const c of el.children) if (typeof c !== 'string' && c.name === name) return c
  return undefined
}

export function childrenNamed(el: XmlElement, name: string): XmlElement[] {
  const out: XmlElement[] = []
  for (const c of el.children) if (typeof c !== 'string' && c.name === name) out.push(c)
  return out
}

/** All text of an element (its own runs, not descendants'), exactly. */
export function rawText(el: XmlElement): string {
  let s = ''
  for (const c of el.children) if (typeof c === 'string') s += c
  return s
}

/** Text outside content is read with XML whitespace stripped (PROTOCOL.md §1). */
export function text(el: XmlElement): string {
  return rawText(el).replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, '')
}

export function hasElementChildren(el: XmlElement): boolean {
  return el.children.some((c) => typeof c !== 'string')
}

// ---- escaping (one function each; the bulk path builds XML with templates) ----

const TEXT_ESC_RE = /[&<>\r]/
const ATTR_ESC_RE = /[&<>"\t\n\r]/
const ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', '\t': '&#9;', '\n': '&#10;', '\r': '&#13;' }

/** Text escapes of the canonical form: & < > CR. */
export function escapeText(s: string): string {
  return TEXT_ESC_RE.test(s) ? s.replace(/[&<>\r]/g, (c) => ESC[c]!) : s
}

/** Attribute escapes of the canonical form: & < > " tab LF CR. */
export function escapeAttr(s: string): string {
  return ATTR_ESC_RE.test(s) ? s.replace(/[&<>"\t\n\r]/g, (c) => ESC[c]!) : s
}
