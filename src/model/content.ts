// Reading helpers shared by models: content children in a fixed order, and
// text-only elements. Untrusted input: Results, never throws.
import { fail, ok, type Result } from '../errors.js'
import { childElements, hasElementChildren, rawText, type XmlElement } from '../protocol/xml.js'

const invalid = (msg: string) => fail<never>('DIP_MODEL_INVALID', msg)

/**
 * The known children of `<content>` by name, in `order`: known children
 * missing (of `required`), repeated or out of order are DIP_MODEL_INVALID;
 * unknown elements are skipped (a newer minor's, kept in the signed bytes).
 */
export function orderedChildren(content: XmlElement, order: readonly string[], required: readonly string[]): Result<Map<string, XmlElement>> {
  const seen = new Map<string, XmlElement>()
  let last = -1
  for (const child of childElements(content)) {
    const pos = order.indexOf(child.name)
    if (pos === -1) continue
    if (seen.has(child.name)) return invalid(`<${child.name}> repeated`)
    if (pos < last) return invalid(`<${child.name}> out of order`)
    last = pos
    seen.set(child.name, child)
  }
  for (const name of required) if (!seen.has(name)) return invalid(`<${name}> missing`)
  return ok(seen)
}

/** The exact text of an element that may hold no child elements. */
export function plainText(el: XmlElement): Result<string> {
  if (hasElementChildren(el)) return invalid(`<${el.name}> must hold text only`)
  return ok(rawText(el))
}
