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
// fast-xml-parser does the tokenizing; its validator checks well-formedness
// first (the parser itself is lenient). Everything returns a Result.
import { XMLParser, XMLValidator } from 'fast-xml-parser'
import { fail, ok, type Result } from '../errors.js'

export interface XmlElement {
  name: string
  /** null-prototype record; attribute order is not significant */
  attrs: Record<string, string>
  /** child elements and text runs (adjacent text and CDATA merged) */
  children: XmlNode[]
}
export type XmlNode = XmlElement | string

export const MAX_DEPTH = 64

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  allowBooleanAttributes: false,
  trimValues: false,
  parseTagValue: false,
  parseAttributeValue: false,
  processEntities: false,
  htmlEntities: false,
  cdataPropName: '#cdata',
  commentPropName: '#comment',
  ignoreDeclaration: true,
  ignorePiTags: true,
  removeNSPrefix: false,
  // fast-xml-parser counts the elements above the current one.
  maxNestedTags: MAX_DEPTH - 1,
})

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false })
// XML 1.0 §2.2 Char, as a "not allowed" class (lone surrogates cannot
// survive the fatal UTF-8 decode).
const BAD_CHAR_RE = /[\x00-\x08\x0B\x0C\x0E-\x1F\uFFFE\uFFFF]/
const DECL_RE = /^<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(["'])1\.[0-9]+\1(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*(["'])([A-Za-z][A-Za-z0-9._-]*)\2)?(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*(["'])(?:yes|no)\4)?[ \t\r\n]*\?>/
const REF_RE = /&(?:(amp|lt|gt|quot|apos)|#([0-9]{1,7})|#x([0-9a-fA-F]{1,6}));|&/g
const NAMED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }
const WS_ONLY_RE = /^[ \t\r\n]*$/

function isXmlChar(cp: number): boolean {
  return cp === 0x9 || cp === 0xa || cp === 0xd || (cp >= 0x20 && cp <= 0xd7ff) || (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff)
}

class RefError extends Error {}

/** Expands the built-in entities and character references; any other `&` is an error. */
function decodeRefs(raw: string): string {
  if (raw.indexOf('&') === -1) return raw
  return raw.replace(REF_RE, (whole, named: string | undefined, dec: string | undefined, hex: string | undefined) => {
    if (named !== undefined) return NAMED[named]!
    if (dec === undefined && hex === undefined) throw new RefError(`undefined entity or bare & near ${JSON.stringify(whole)}`)
    const cp = dec !== undefined ? Number(dec) : parseInt(hex!, 16)
    if (!isXmlChar(cp)) throw new RefError(`character reference to a non-XML character ${cp}`)
    return String.fromCodePoint(cp)
  })
}

/** True if a `<!DOCTYPE` stands outside comments and CDATA sections. */
function hasDoctype(text: string): boolean {
  if (text.indexOf('<!DOCTYPE') === -1) return false
  const stripped = text.replace(/<!--[\s\S]*?-->/g, '').replace(/<!\[CDATA\[[\s\S]*?\]\]>/g, '')
  return stripped.indexOf('<!DOCTYPE') !== -1
}

function checkName(name: string): void {
  if (name.indexOf(':') !== -1) throw new RefError(`namespaced name ${JSON.stringify(name)} is not allowed`)
}

type FxpNode = Record<string, unknown>

function convert(nodes: FxpNode[], into: XmlNode[]): void {
  let text: string | undefined
  for (const node of nodes) {
    if (Object.hasOwn(node, '#text')) {
      const raw = String(node['#text'])
      if (raw.indexOf(']]>') !== -1) throw new RefError('"]]>" may not stand in character data') // XML 1.0 §2.4
      text = (text ?? '') + decodeRefs(raw)
      continue
    }
    if (Object.hasOwn(node, '#cdata')) {
      const inner = node['#cdata'] as FxpNode[]
      for (const part of inner) text = (text ?? '') + String(part['#text'] ?? '')
      continue
    }
    if (Object.hasOwn(node, '#comment')) continue // comments are dropped; text around them joins
    let name: string | undefined
    for (const k in node) if (k !== ':@') name = k
    if (name === undefined) continue
    if (text !== undefined) {
      into.push(text)
      text = undefined
    }
    checkName(name)
    const attrs: Record<string, string> = Object.create(null)
    const rawAttrs = node[':@'] as Record<string, string> | undefined
    if (rawAttrs) {
      for (const [k, v] of Object.entries(rawAttrs)) {
        if (k === 'xmlns') throw new RefError('namespace declarations are not allowed')
        checkName(k)
        if (v.indexOf('<') !== -1) throw new RefError('"<" may not stand in an attribute value') // XML 1.0 §3.1
        attrs[k] = decodeRefs(v.replace(/[\t\n]/g, ' '))
      }
    }
    const el: XmlElement = { name, attrs, children: [] }
    convert(node[name] as FxpNode[], el.children)
    into.push(el)
  }
  if (text !== undefined) into.push(text)
}

/** Parses one DIP XML document (bytes or an already decoded string). */
export function parseXml(input: Uint8Array | string): Result<XmlElement> {
  let text: string
  if (typeof input === 'string') {
    text = input.charCodeAt(0) === 0xfeff ? input.slice(1) : input
  } else {
    try {
      text = decoder.decode(input) // strips a BOM
    } catch (cause) {
      return fail('DIP_XML_INVALID', 'the body is not valid UTF-8', cause)
    }
  }
  // The declaration is `<?xml` + white space; `<?xml-stylesheet …?>` is a processing instruction.
  if (/^<\?xml[ \t\r\n]/.test(text)) {
    const m = DECL_RE.exec(text)
    if (!m) return fail('DIP_XML_INVALID', 'malformed XML declaration')
    if (m[3] !== undefined && m[3].toLowerCase() !== 'utf-8') return fail('DIP_XML_INVALID', `encoding ${m[3]} is not UTF-8`)
    text = text.slice(m[0].length)
    if (/^<\?xml[ \t\r\n?]/i.test(text)) return fail('DIP_XML_INVALID', 'a second XML declaration')
  }
  // Character data after the root element (fast-xml-parser would drop it silently).
  let end = text.length - 1
  while (end >= 0 && (text[end] === ' ' || text[end] === '\t' || text[end] === '\n' || text[end] === '\r')) end--
  if (text[end] !== '>') return fail('DIP_XML_INVALID', 'text after the root element')
  if (BAD_CHAR_RE.test(text)) return fail('DIP_XML_INVALID', 'the body holds a character XML 1.0 does not allow')
  if (hasDoctype(text)) return fail('DIP_XML_INVALID', 'DOCTYPE is not allowed')
  if (text.indexOf('\r') !== -1) text = text.replace(/\r\n?/g, '\n')
  const valid = XMLValidator.validate(text, { allowBooleanAttributes: false })
  if (valid !== true) return fail('DIP_XML_INVALID', `not well-formed XML: ${valid.err.msg} (line ${valid.err.line})`)
  let tree: FxpNode[]
  try {
    tree = parser.parse(text) as FxpNode[]
  } catch (cause) {
    return fail('DIP_XML_INVALID', cause instanceof Error && /nested/i.test(cause.message) ? `nesting deeper than ${MAX_DEPTH}` : 'not well-formed XML', cause)
  }
  const top: XmlNode[] = []
  try {
    convert(tree, top)
  } catch (cause) {
    if (cause instanceof RefError) return fail('DIP_XML_INVALID', cause.message)
    throw cause
  }
  const roots = top.filter((n): n is XmlElement => typeof n !== 'string')
  if (roots.length !== 1 || top.some((n) => typeof n === 'string' && !WS_ONLY_RE.test(n))) {
    return fail('DIP_XML_INVALID', 'a document has exactly one root element')
  }
  return ok(roots[0]!)
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
