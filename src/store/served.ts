// A model as a node sends it (get answers, pushes): its stored XML, with the
// bytes of its attachments inline when the node holds them and they are
// small (PROTOCOL.md §5: <attachment-data> after <signatures>); larger ones
// are left to the blob path.
import type { GraphStore, Row } from './graph-store.js'

export const INLINE_BLOB_MAX = 256 * 1024

/** Whether a row links attachments (the only models servedModelXml may change). */
export function hasAttachments(row: Pick<Row, 'l'>): boolean {
  return row.l.some((l) => l.startsWith('attachment\0'))
}

export async function servedModelXml(store: GraphStore, row: Pick<Row, 'l'>, xml: string): Promise<string> {
  let extra = ''
  for (const l of row.l) {
    if (!l.startsWith('attachment\0')) continue
    const hash = l.slice('attachment\0'.length)
    const b = await store.blob(hash)
    if (b && b.bytes.length <= INLINE_BLOB_MAX) extra += `<attachment-data hash="${hash}">${b.bytes.toString('base64')}</attachment-data>`
  }
  return extra === '' ? xml : xml.slice(0, -'</model>'.length) + extra + '</model>'
}
