// Canonical form of an element (PROTOCOL.md §4): the bytes that are signed
// and content-addressed. Neither XML C14N nor any serializer's default:
//
// - UTF-8, no declaration, no comments, no processing instructions.
// - `<name`, attributes sorted by name in code-point order, each
//   ` name="value"`, then `/>` (no children and empty text; no space before
//   `/>`) or `>` + content + `</name>`.
// - An element with no child elements keeps its text exactly, even when it
//   is only whitespace. In an element with child elements, a text run made
//   only of XML whitespace is dropped; any other run is kept exactly.
//   Nothing is ever trimmed.
// - Text escapes & < > CR; attribute escapes & < > " tab LF CR; every other
//   character is raw UTF-8.
import { escapeAttr, escapeText, hasElementChildren, type XmlElement } from './xml.js'

const WS_ONLY_RE = /^[ \t\r\n]*$/

/** Code-point order (JS string comparison is UTF-16 code-unit order). */
export function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]()
  const ib = b[Symbol.iterator]()
  for (;;) {
    const x = ia.next()
    const y = ib.next()
    if (x.done) return y.done ? 0 : -1
    if (y.done) return 1
    const d = x.value.codePointAt(0)! - y.value.codePointAt(0)!
    if (d !== 0) return d
  }
}

function sortedAttrNames(attrs: Record<string, string>): string[] {
  const names = Object.keys(attrs)
  if (names.length < 2) return names
  // ASCII names (the usual case) sort the same by code unit and code point.
  return names.every((n) => /^[\x00-\x7f]*$/.test(n)) ? names.sort() : names.sort(compareCodePoints)
}

/**
 * The canonical form of `el`. An element the parser found already canonical
 * in its document (`src`) is that text; `walk` true ignores `src` all the
 * way down (tests check the two agree).
 */
export function canonicalize(el: XmlElement, walk = false): string {
  if (el.src !== undefined && !walk) return el.src
  let out = '<' + el.name
  for (const n of sortedAttrNames(el.attrs)) out += ` ${n}="${escapeAttr(el.attrs[n]!)}"`
  const mixed = hasElementChildren(el)
  let inner = ''
  for (const c of el.children) {
    if (typeof c === 'string') {
      if (mixed && WS_ONLY_RE.test(c)) continue
      inner += escapeText(c)
    } else {
      inner += canonicalize(c, walk)
    }
  }
  return inner === '' ? out + '/>' : out + '>' + inner + '</' + el.name + '>'
}
