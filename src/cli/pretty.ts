// Indented XML for people (`dipd show --pretty`): xmlbuilder2, off the hot
// path. The node's own stored bytes are never rebuilt; this is display only.
import { convert } from 'xmlbuilder2'

export function prettyXml(xml: string): string {
  return convert(xml, { format: 'xml', prettyPrint: true, headless: true })
}
