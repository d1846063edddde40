// Reading helpers shared by models: content children in a fixed order, and
// text-only elements. Untrusted input: Results, never throws.
import { fail, ok, type Result } from '../errors.js'
import { hasElementChildren, rawText, type XmlElement } from '../protocol/xml.js'

const invalid = (msg: string) => fail<never>('DIP_MODEL_INVALID', msg)

/**
 * The known children of `<content>`, one per name of `order`, at its place
 * (undefined where absent): known children missing (of `required`),
 * repeated or out of order are DIP_MODEL_INVALID; unknown elements are
 * skipped (a newer minor's, kept in the signed bytes).
 */
export function orderedChildren(content: XmlElement, order: readonly string[], required: readonly string[]): Result<(XmlElement | undefined)[]> {
  const seen = new Array<XmlElement | undefined>(order.length).fill(undefined)
  let last = -1
  for (const child of content.children) {
    if (typeof child === 'string') continue
    const pos = order.indexOf(child.name)
    if (pos === -1) continue
    if (seen[pos] !== undefined) return invalid(`<${child.name}> repeated`)
    if (pos < last) return invalid(`<${child.name}> out of order`)
    last = pos
    seen[pos] = child
  }
  for (const name of required) if (seen[order.indexOf(name)] === undefined) return invalid(`<${name}> missing`)
  return ok(seen)
}

/** The exact text of an element that may hold no child elements. */
export function plainText(el: XmlElement): Result<string> {
  if (hasElementChildren(el)) return invalid(`<${el.name}> must hold text only`)
  return ok(rawText(el))
}
