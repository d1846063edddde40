// fast-check arbitraries shared by property tests.
import fc from 'fast-check'
import type { XmlElement } from '../src/protocol/xml.js'

export const xmlName = fc.stringMatching(/^[a-z][a-z0-9.-]{0,6}$/)
/** text with every character the escapes care about, astral ones and `]]>` pieces */
export const xmlText = fc.string({ unit: fc.constantFrom('a', ' ', '\n', '\t', '\r', '&', '<', '>', '"', "'", 'é', '\u{1F600}', ']]>'), maxLength: 12 })

/** random element trees (attributes as null-prototype records, like the parser's) */
export const xmlTree: fc.Arbitrary<XmlElement> = fc.letrec((tie) => ({
  el: fc.record({
    name: xmlName,
    attrs: fc.dictionary(xmlName, xmlText, { maxKeys: 3 }).map((d) => Object.assign(Object.create(null), d) as Record<string, string>),
    children: fc.array(fc.oneof({ depthSize: 'small' }, xmlText, tie('el') as fc.Arbitrary<XmlElement>), { maxLength: 4 }),
  }),
})).el as fc.Arbitrary<XmlElement>
