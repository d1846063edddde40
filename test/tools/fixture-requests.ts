// Request fixtures (fixtures/requests/): bodies of list, get and put
// requests with the answer each must get. List and get fixtures marked
// `seeded` run against a node that first stored the models of
// put-seed.valid.xml; put fixtures run against an empty node.
import { idText, idXml, K1, K2, sha256 } from './fixture-keys.js'
import { authored, C, MESSAGE_GROUP, MODEL_FIXTURES, SEED, seedHash } from './fixture-models.js'

export interface RowExpected {
  status: 'stored' | 'duplicate' | 'rejected'
  code?: string
  hash?: string
  /** text form; null = the row carries no <id> */
  id: string | null
}

export interface RequestExpected {
  /** the last part of the URL, POST /api/sync/<path>/ */
  path: string
  /** the exact URL path when it is not /api/sync/<path>/ */
  url?: string
  http: number
  /** the <code> of an error or not-supported answer; absent = success */
  code?: string
  /** Content-Type to send; absent = application/xml; "" = no Content-Type header */
  contentType?: string
  /** list/get: the node first stored the models of put-seed.valid.xml */
  seeded?: boolean
  /** list/get success: the ids answered, in answer order */
  ids?: string[]
  /** put success: one row per model sent */
  rows?: RowExpected[]
}

export interface RequestFixture {
  file: string
  body: string | Buffer
  expected: RequestExpected
}

const ID = {
  a1: idText(K1, '1'),
  a2: idText(K1, '2'),
  a3: idText(K1, '3'),
  a4: idText(K1, '4'),
  a5: idText(K1, '5'),
  b1: idText(K2, '1'),
}
const ALL = [ID.a1, ID.a2, ID.a3, ID.a4, ID.a5, ID.b1]
/** The seed messages: K1 to K2 (chat), K1 to the group (announce), K2 to K1 (notice). */
const MSG = { toKey: idText(K1, 'm1'), toGroup: idText(K1, 'm2'), notice: idText(K2, 'm1') }
const ALL_MESSAGES = [MSG.toKey, MSG.toGroup, MSG.notice]
const MESSAGE_MODEL = '<model name="message" version="1.0">'
const listMessages = (filters: string[]) => list(filters, { model: MESSAGE_MODEL })

/** A list request with one filter element per line. */
function list(filters: string[], opts: { version?: string; model?: string } = {}): string {
  const head = `<request type="list" version="${opts.version ?? '1.0'}">\n`
  const model = opts.model ?? '<model name="post" version="1.1">'
  const body = filters.length === 0 ? `  ${model.replace(/>$/, '/>')}\n` : `  ${model}\n${filters.map((f) => `    ${f}\n`).join('')}  </model>\n`
  return head + body + '</request>\n'
}

function get(ids: string[], opts: { version?: string; model?: string } = {}): string {
  const head = `<request type="get" version="${opts.version ?? '1.0'}">\n`
  const model = opts.model ?? '<model name="post" version="1.1">'
  const body = ids.length === 0 ? `  ${model.replace(/>$/, '/>')}\n` : `  ${model}\n${ids.map((i) => `    ${i}\n`).join('')}  </model>\n`
  return head + body + '</request>\n'
}

function put(models: string[], version = '1.0'): string {
  return `<request type="put" version="${version}">\n<models>\n${models.join('')}</models>\n</request>\n`
}

const modelFile = (file: string) => {
  const m = MODEL_FIXTURES.find((f) => f.file === file)
  if (!m) throw new TypeError(`no model fixture ${file}`)
  return m.xml
}

const listOk = (file: string, body: string, ids: string[], extra: Partial<RequestExpected> = {}): RequestFixture => ({
  file,
  body,
  expected: { path: 'list', http: 200, seeded: true, ids, ...extra },
})
const getOk = (file: string, body: string, ids: string[], extra: Partial<RequestExpected> = {}): RequestFixture => ({
  file,
  body,
  expected: { path: 'get', http: 200, seeded: true, ids, ...extra },
})
const fails = (file: string, body: string | Buffer, path: string, http: number, code: string, extra: Partial<RequestExpected> = {}): RequestFixture => ({
  file,
  body,
  expected: { path, http, code, ...extra },
})

const MINIMAL_LIST = list([])
const I1 = idXml(K1, '1')
const keyEl = (hex: string) => `<key>${hex}</key>`
const idWith = (attrs: string) => `<id ${attrs}/>`

// An edit of the opening post, and two versions with equal update-times.
const openingEdit = C.opening.replace('2017-01-01T00:00:00Z</update-time>', '2017-01-01T01:00:00Z</update-time>')
const openingTwin = C.opening.replace('Hello DIP', 'Hello again')
const [lowTwin, highTwin] = sha256(C.opening) < sha256(openingTwin) ? [C.opening, openingTwin] : [openingTwin, C.opening]

const BILLION_LAUGHS = `<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<request type="list" version="1.0">
  <model name="post" version="1.1">
    <tags><tag>&lol9;</tag></tags>
  </model>
</request>
`

const EXTERNAL_ENTITY = `<?xml version="1.0"?>
<!DOCTYPE request [
  <!ENTITY xxe SYSTEM "file:///etc/passwd">
]>
<request type="list" version="1.0">
  <model name="post" version="1.1">
    <tags><tag>&xxe;</tag></tags>
  </model>
</request>
`

export const REQUEST_FIXTURES: RequestFixture[] = [
  // ---- list: valid ----
  listOk('list-minimal.valid.xml', MINIMAL_LIST, ALL),
  listOk('list-no-slash.valid.xml', MINIMAL_LIST, ALL, { url: '/api/sync/list' }),
  listOk(
    'list-all-filters.valid.xml',
    list([
      '<timestamp_from>2017-01-01T00:00:00Z</timestamp_from>',
      '<timestamp_to>0</timestamp_to>',
      '<tags><tag>dip</tag></tags>',
      `<thread>${I1}</thread>`,
      `<sender><allow>${keyEl(K1.publicHex)}</allow><deny>${keyEl(K2.publicHex)}</deny></sender>`,
    ]),
    [ID.a1],
  ),
  listOk('list-from-inclusive.valid.xml', list(['<timestamp_from>2017-06-01T12:00:00.5Z</timestamp_from>', '<timestamp_to>0</timestamp_to>']), [ID.a3, ID.a4, ID.a5, ID.b1]),
  listOk('list-to-exclusive-space-form.valid.xml', list(['<timestamp_to>2017-01-02 00:00:00</timestamp_to>']), [ID.a1]),
  listOk('list-unix-seconds.valid.xml', list(['<timestamp_from>1514764800</timestamp_from>', '<timestamp_to>1546300800</timestamp_to>']), [ID.a4]),
  listOk('list-zero-is-unbounded.valid.xml', list(['<timestamp_from>0</timestamp_from>', '<timestamp_to>0</timestamp_to>']), ALL),
  listOk('list-epoch-is-unbounded.valid.xml', list(['<timestamp_from>1970-01-01T00:00:00Z</timestamp_from>', '<timestamp_to>1970-01-01 00:00:00</timestamp_to>']), ALL),
  listOk('list-microseconds.valid.xml', list(['<timestamp_from>2018-03-04T05:06:07.123457Z</timestamp_from>']), [ID.a5, ID.b1]),
  listOk('list-microseconds-equal.valid.xml', list(['<timestamp_from>2018-03-04T05:06:07.123456Z</timestamp_from>']), [ID.a4, ID.a5, ID.b1]),
  listOk('list-from-equals-to.valid.xml', list(['<timestamp_from>2017-01-01T00:00:00Z</timestamp_from>', '<timestamp_to>2017-01-01T00:00:00Z</timestamp_to>']), []),
  listOk('list-from-not-before-to.valid.xml', list(['<timestamp_from>2019-01-01T00:00:00Z</timestamp_from>', '<timestamp_to>2018-01-01T00:00:00Z</timestamp_to>']), []),
  listOk('list-time-whitespace.valid.xml', list(['<timestamp_from>\n      2019-01-01T00:00:00Z\n    </timestamp_from>']), [ID.a5, ID.b1]),
  listOk('list-time-cdata.valid.xml', list(['<timestamp_from><![CDATA[2019-01-01T00:00:00Z]]></timestamp_from>']), [ID.a5, ID.b1]),
  listOk('list-tags.valid.xml', list(['<tags><tag>dip</tag></tags>']), [ID.a1, ID.b1]),
  listOk('list-tags-any.valid.xml', list(['<tags><tag>cats</tag><tag>test</tag></tags>']), [ID.a1, ID.a3, ID.a5]),
  listOk('list-tags-case-sensitive.valid.xml', list(['<tags><tag>DIP</tag></tags>']), []),
  listOk('list-tags-empty.valid.xml', list(['<tags/>']), ALL),
  listOk('list-thread.valid.xml', list([`<thread>${I1}</thread>`]), [ID.a1, ID.a2, ID.a4]),
  listOk('list-thread-no-replies.valid.xml', list([`<thread>${idXml(K1, '3')}</thread>`]), [ID.a3]),
  listOk('list-thread-of-reply.valid.xml', list([`<thread>${idXml(K1, '2')}</thread>`]), []),
  listOk('list-thread-unknown.valid.xml', list([`<thread>${idXml(K1, '999')}</thread>`]), []),
  listOk('list-sender-allow.valid.xml', list([`<sender><allow>${keyEl(K2.publicHex)}</allow></sender>`]), [ID.b1]),
  listOk('list-sender-deny.valid.xml', list([`<sender><deny>${keyEl(K2.publicHex)}</deny></sender>`]), [ID.a1, ID.a2, ID.a3, ID.a4, ID.a5]),
  listOk('list-sender-allow-and-deny.valid.xml', list([`<sender><allow>${keyEl(K1.publicHex)}</allow><deny>${keyEl(K1.publicHex)}</deny></sender>`]), []),
  listOk('list-sender-empty-allow.valid.xml', list(['<sender><allow/></sender>']), []),
  listOk('list-sender-key-whitespace.valid.xml', list([`<sender><allow><key>\n      ${K2.publicHex}\n    </key></allow></sender>`]), [ID.b1]),
  listOk('list-newer-minor.valid.xml', list(['<mood>curious</mood>', '<tags><tag>cats</tag></tags>', '<near><place>Berlin</place></near>'], { version: '1.7', model: '<model name="post" version="1.3">' }), [ID.a3]),
  listOk('list-bom-declaration.valid.xml', '\uFEFF<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + MINIMAL_LIST, ALL),
  listOk('list-comments-pi.valid.xml', `<!-- a comment before the root -->\n<request type="list" version="1.0"><?app ignore me?>\n  <model name="post" version="1.1"><!-- no filters --></model>\n</request>\n`, ALL),
  listOk('list-stylesheet-pi.valid.xml', '<?xml-stylesheet href="dip.css" type="text/css"?>\n' + MINIMAL_LIST, ALL),
  listOk('list-media-text-xml.valid.xml', MINIMAL_LIST, ALL, { contentType: 'text/xml' }),
  listOk('list-media-params.valid.xml', MINIMAL_LIST, ALL, { contentType: 'Application/XML; charset=UTF-8' }),
  listOk('list-media-none.valid.xml', MINIMAL_LIST, ALL, { contentType: '' }),

  // ---- list: invalid ----
  fails('list-timestamp-empty.invalid.xml', list(['<timestamp_from/>']), 'list', 400, 'DIP_FILTER_INVALID'),
  fails('list-timestamp-blank.invalid.xml', list(['<timestamp_to> \n </timestamp_to>']), 'list', 400, 'DIP_FILTER_INVALID'),
  fails('list-timestamp-words.invalid.xml', list(['<timestamp_from>yesterday</timestamp_from>']), 'list', 400, 'DIP_FILTER_INVALID'),
  fails('list-timestamp-feb-30.invalid.xml', list(['<timestamp_from>2017-02-30T00:00:00Z</timestamp_from>']), 'list', 400, 'DIP_FILTER_INVALID'),
  fails('list-timestamp-negative.invalid.xml', list(['<timestamp_from>-1</timestamp_from>']), 'list', 400, 'DIP_FILTER_INVALID'),
  fails('list-timestamp-fractional-seconds.invalid.xml', list(['<timestamp_from>1514764800.5</timestamp_from>']), 'list', 400, 'DIP_FILTER_INVALID'),
  fails('list-timestamp-no-zone.invalid.xml', list(['<timestamp_to>2017-01-01T00:00:00</timestamp_to>']), 'list', 400, 'DIP_FILTER_INVALID'),
  fails('list-sender-key-uppercase.invalid.xml', list([`<sender><allow>${keyEl(K1.publicHex.toUpperCase())}</allow></sender>`]), 'list', 400, 'DIP_FILTER_INVALID'),
  fails('list-sender-key-short.invalid.xml', list([`<sender><deny>${keyEl(K1.publicHex.slice(2))}</deny></sender>`]), 'list', 400, 'DIP_FILTER_INVALID'),
  fails('list-sender-key-id-form.invalid.xml', list([`<sender><allow>${keyEl('ed25519::' + K1.publicHex)}</allow></sender>`]), 'list', 400, 'DIP_FILTER_INVALID'),
  fails('list-tag-empty.invalid.xml', list(['<tags><tag/></tags>']), 'list', 400, 'DIP_FILTER_INVALID'),
  fails('list-thread-two-ids.invalid.xml', list([`<thread>${I1}${idXml(K1, '3')}</thread>`]), 'list', 400, 'DIP_FILTER_INVALID'),
  fails('list-thread-bad-id.invalid.xml', list([`<thread>${idWith(`key="${K1.publicHex}" local-id="1" type="ecdsa"`)}</thread>`]), 'list', 400, 'DIP_ID_INVALID'),
  fails('list-after-foreign.invalid.xml', list(['<after>0123456789abcdef.1</after>']), 'list', 400, 'DIP_CURSOR_INVALID'),
  fails('list-after-empty.invalid.xml', list(['<after/>']), 'list', 400, 'DIP_CURSOR_INVALID'),
  fails('list-no-model.invalid.xml', '<request type="list" version="1.0"/>\n', 'list', 400, 'DIP_REQUEST_INVALID'),
  fails('list-two-models.invalid.xml', `<request type="list" version="1.0">\n  <model name="post" version="1.1"/>\n  <model name="post" version="1.1"/>\n</request>\n`, 'list', 400, 'DIP_REQUEST_INVALID'),
  fails('list-model-no-name.invalid.xml', list([], { model: '<model version="1.1">' }), 'list', 400, 'DIP_REQUEST_INVALID'),
  fails('list-model-version-text.invalid.xml', list([], { model: '<model name="post" version="1.1a">' }), 'list', 400, 'DIP_REQUEST_INVALID'),
  fails('list-model-version-missing.invalid.xml', list([], { model: '<model name="post">' }), 'list', 400, 'DIP_REQUEST_INVALID'),
  fails('list-version-text.invalid.xml', list([], { version: '1' }), 'list', 400, 'DIP_REQUEST_INVALID'),
  fails('list-version-three-parts.invalid.xml', list([], { version: '1.0.0' }), 'list', 400, 'DIP_REQUEST_INVALID'),
  fails('list-version-missing.invalid.xml', MINIMAL_LIST.replace(' version="1.0"', ''), 'list', 400, 'DIP_REQUEST_INVALID'),
  fails('list-type-get.invalid.xml', MINIMAL_LIST.replace('type="list"', 'type="get"'), 'list', 400, 'DIP_REQUEST_INVALID'),
  fails('list-type-uppercase.invalid.xml', MINIMAL_LIST.replace('type="list"', 'type="LIST"'), 'list', 400, 'DIP_REQUEST_INVALID'),
  fails('list-type-missing.invalid.xml', MINIMAL_LIST.replace(' type="list"', ''), 'list', 400, 'DIP_REQUEST_INVALID'),
  fails('list-root-response.invalid.xml', '<response><status>success</status></response>\n', 'list', 400, 'DIP_REQUEST_INVALID'),
  fails('list-major-2.invalid.xml', list([], { version: '2.0' }), 'list', 501, 'DIP_VERSION_NOT_SUPPORTED'),
  fails('list-model-major-2.invalid.xml', list([], { model: '<model name="post" version="2.0">' }), 'list', 501, 'DIP_VERSION_NOT_SUPPORTED'),
  fails('list-unknown-model.invalid.xml', list([], { model: '<model name="wiki-page" version="1.0">' }), 'list', 501, 'DIP_MODEL_NOT_SUPPORTED'),
  fails('list-media-json.invalid.xml', MINIMAL_LIST, 'list', 415, 'DIP_UNSUPPORTED_MEDIA_TYPE', { contentType: 'application/json' }),
  fails('list-media-text-plain.invalid.xml', MINIMAL_LIST, 'list', 415, 'DIP_UNSUPPORTED_MEDIA_TYPE', { contentType: 'text/plain; charset=utf-8' }),

  // ---- list: the message model (spec/message-model.md) ----
  listOk('list-message.valid.xml', listMessages([]), ALL_MESSAGES),
  listOk('list-message-to.valid.xml', listMessages([`<to>${keyEl(K2.publicHex)}<group>${MESSAGE_GROUP}</group></to>`]), [MSG.toKey, MSG.toGroup]),
  listOk('list-message-to-key.valid.xml', listMessages([`<to>${keyEl(K1.publicHex)}</to>`]), [MSG.notice]),
  listOk('list-message-to-empty.valid.xml', listMessages(['<to/>']), ALL_MESSAGES),
  listOk('list-message-kinds.valid.xml', listMessages(['<kinds><kind>notice</kind><kind>announce</kind></kinds>']), [MSG.toGroup, MSG.notice]),
  listOk(
    'list-message-filters.valid.xml',
    listMessages([`<to>${keyEl(K1.publicHex)}<group>${MESSAGE_GROUP}</group></to>`, '<kinds><kind>announce</kind></kinds>', `<sender><allow>${keyEl(K1.publicHex)}</allow></sender>`]),
    [MSG.toGroup],
  ),
  listOk('list-message-to-whitespace.valid.xml', listMessages([`<to>\n      <group>\n        ${MESSAGE_GROUP}\n      </group>\n    </to>`]), [MSG.toGroup]),
  listOk('list-message-post-filters-ignored.valid.xml', listMessages(['<tags><tag>dip</tag></tags>']), ALL_MESSAGES),
  fails('list-message-to-key-uppercase.invalid.xml', listMessages([`<to>${keyEl(K2.publicHex.toUpperCase())}</to>`]), 'list', 400, 'DIP_FILTER_INVALID'),
  fails('list-message-to-group-bad.invalid.xml', listMessages(['<to><group>dip dev</group></to>']), 'list', 400, 'DIP_FILTER_INVALID'),
  fails('list-message-kind-unknown.invalid.xml', listMessages(['<kinds><kind>basic</kind></kinds>']), 'list', 400, 'DIP_FILTER_INVALID'),
  fails('list-message-kind-empty.invalid.xml', listMessages(['<kinds><kind/></kinds>']), 'list', 400, 'DIP_FILTER_INVALID'),
  fails('list-message-major-2.invalid.xml', list([], { model: '<model name="message" version="2.0">' }), 'list', 501, 'DIP_VERSION_NOT_SUPPORTED'),

  // ---- XML that is not a DIP body ----
  fails('xml-malformed.invalid.xml', '<request type="list" version="1.0">\n  <model name="post" version="1.1">\n</request>\n', 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-empty.invalid.xml', '', 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-text-only.invalid.xml', 'list everything, please\n', 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-two-roots.invalid.xml', MINIMAL_LIST + MINIMAL_LIST, 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-text-after-root.invalid.xml', MINIMAL_LIST + 'trailing text\n', 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-text-after-empty-root.invalid.xml', '<request type="list" version="1.0"/>\ntrailing text\n', 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-two-declarations.invalid.xml', '<?xml version="1.0"?>\n<?xml version="1.0"?>\n' + MINIMAL_LIST, 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-two-declarations-adjacent.invalid.xml', '<?xml version="1.0"?><?xml version="1.0"?>\n' + MINIMAL_LIST, 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-doctype.invalid.xml', '<!DOCTYPE request>\n' + MINIMAL_LIST, 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-billion-laughs.invalid.xml', BILLION_LAUGHS, 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-external-entity.invalid.xml', EXTERNAL_ENTITY, 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-undefined-entity.invalid.xml', list(['<tags><tag>&nbsp;</tag></tags>']), 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-bare-ampersand.invalid.xml', list(['<tags><tag>cats & dogs</tag></tags>']), 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-lt-in-attribute.invalid.xml', list([], { model: '<model name="post" version="1.1" note="a<b">' }), 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-cdata-end-in-text.invalid.xml', list(['<tags><tag>a]]>b</tag></tags>']), 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-namespace-default.invalid.xml', MINIMAL_LIST.replace('<request ', '<request xmlns="urn:dip" '), 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-namespace-prefix.invalid.xml', `<dip:request xmlns:dip="urn:dip" type="list" version="1.0">\n  <dip:model name="post" version="1.1"/>\n</dip:request>\n`, 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-namespace-attribute.invalid.xml', MINIMAL_LIST.replace('<request ', '<request x:flag="1" '), 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-encoding-latin1.invalid.xml', '<?xml version="1.0" encoding="ISO-8859-1"?>\n' + MINIMAL_LIST, 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-bytes-latin1.invalid.xml', Buffer.from(list(['<tags><tag>caf\u00e9</tag></tags>']), 'latin1'), 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-bytes-utf16.invalid.xml', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(MINIMAL_LIST, 'utf16le')]), 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-control-character.invalid.xml', list(['<tags><tag>a\u0001b</tag></tags>']), 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-char-ref-nul.invalid.xml', list(['<tags><tag>a&#0;b</tag></tags>']), 'list', 400, 'DIP_XML_INVALID'),
  fails('xml-declaration-not-first.invalid.xml', '\n<?xml version="1.0"?>\n' + MINIMAL_LIST, 'list', 400, 'DIP_XML_INVALID'),

  // ---- get ----
  getOk('get-one.valid.xml', get([I1]), [ID.a1]),
  getOk('get-request-order.valid.xml', get([idXml(K2, '1'), idXml(K1, '3'), I1]), [ID.b1, ID.a3, ID.a1]),
  getOk('get-missing-omitted.valid.xml', get([idXml(K1, '999'), idXml(K1, '2')]), [ID.a2]),
  getOk('get-each-id-once.valid.xml', get([I1, idXml(K1, '2'), I1]), [ID.a1, ID.a2]),
  getOk('get-local-id-exact.valid.xml', get([idXml(K1, '01')]), []),
  getOk('get-no-ids.valid.xml', get([]), []),
  getOk('get-newer-minor.valid.xml', get([idXml(K1, '5')], { version: '1.3', model: '<model name="post" version="1.9">' }), [ID.a5]),
  getOk('get-message.valid.xml', get([idXml(K2, 'm1'), idXml(K1, 'm1')], { model: MESSAGE_MODEL }), [MSG.notice, MSG.toKey]),
  getOk('get-message-as-post.valid.xml', get([idXml(K1, 'm1'), I1]), [ID.a1]),
  fails('get-id-uppercase-hex.invalid.xml', get([idWith(`key="${K1.publicHex.toUpperCase()}" local-id="1" type="ed25519"`)]), 'get', 400, 'DIP_ID_INVALID'),
  fails('get-id-short-key.invalid.xml', get([idWith(`key="${K1.publicHex.slice(0, 62)}" local-id="1" type="ed25519"`)]), 'get', 400, 'DIP_ID_INVALID'),
  fails('get-id-bad-local-id.invalid.xml', get([idWith(`key="${K1.publicHex}" local-id="a/b" type="ed25519"`)]), 'get', 400, 'DIP_ID_INVALID'),
  fails('get-id-empty-local-id.invalid.xml', get([idWith(`key="${K1.publicHex}" local-id="" type="ed25519"`)]), 'get', 400, 'DIP_ID_INVALID'),
  fails('get-id-long-local-id.invalid.xml', get([idWith(`key="${K1.publicHex}" local-id="${'7'.repeat(65)}" type="ed25519"`)]), 'get', 400, 'DIP_ID_INVALID'),
  fails('get-id-extra-attribute.invalid.xml', get([idWith(`key="${K1.publicHex}" local-id="1" type="ed25519" node="x"`)]), 'get', 400, 'DIP_ID_INVALID'),
  fails('get-id-missing-attribute.invalid.xml', get([idWith(`key="${K1.publicHex}" local-id="1"`)]), 'get', 400, 'DIP_ID_INVALID'),
  fails('get-id-type-ecdsa.invalid.xml', get([idWith(`key="${K1.publicHex}" local-id="1" type="ecdsa"`)]), 'get', 400, 'DIP_ID_INVALID'),
  fails('get-id-with-text.invalid.xml', get([`<id key="${K1.publicHex}" local-id="1" type="ed25519">1</id>`]), 'get', 400, 'DIP_ID_INVALID'),
  fails('get-unknown-model.invalid.xml', get([I1], { model: '<model name="wiki-page" version="1.0">' }), 'get', 501, 'DIP_MODEL_NOT_SUPPORTED'),
  fails('get-model-major-2.invalid.xml', get([I1], { model: '<model name="post" version="2.1">' }), 'get', 501, 'DIP_VERSION_NOT_SUPPORTED'),
  fails('get-major-2.invalid.xml', get([I1], { version: '2.0' }), 'get', 501, 'DIP_VERSION_NOT_SUPPORTED'),
  fails('get-type-list.invalid.xml', get([I1]).replace('type="get"', 'type="list"'), 'get', 400, 'DIP_REQUEST_INVALID'),

  // ---- put ----
  {
    file: 'put-seed.valid.xml',
    body: put(SEED.map((s) => s.xml)),
    expected: { path: 'put', http: 200, rows: SEED.map((s, n) => ({ status: 'stored', hash: seedHash(n), id: idText(s.key, s.localId) })) },
  },
  { file: 'put-empty.valid.xml', body: put([]).replace('<models>\n</models>', '<models/>'), expected: { path: 'put', http: 200, rows: [] } },
  {
    file: 'put-rows.valid.xml',
    body: put([SEED[0]!.xml, SEED[0]!.xml, modelFile('bad-signature.invalid.xml'), modelFile('unknown-model.invalid.xml'), modelFile('model-major-2.invalid.xml'), SEED[1]!.xml]),
    expected: {
      path: 'put',
      http: 200,
      rows: [
        { status: 'stored', hash: seedHash(0), id: ID.a1 },
        { status: 'duplicate', hash: seedHash(0), id: ID.a1 },
        { status: 'rejected', code: 'DIP_SIGNATURE_INVALID', id: ID.a1 },
        { status: 'rejected', code: 'DIP_MODEL_NOT_SUPPORTED', id: ID.a1 },
        { status: 'rejected', code: 'DIP_VERSION_NOT_SUPPORTED', id: ID.a1 },
        { status: 'stored', hash: seedHash(1), id: ID.a2 },
      ],
    },
  },
  {
    file: 'put-newer-wins.valid.xml',
    body: put([authored(openingEdit), SEED[0]!.xml]),
    expected: {
      path: 'put',
      http: 200,
      rows: [
        { status: 'stored', hash: sha256(openingEdit), id: ID.a1 },
        { status: 'rejected', code: 'DIP_MODEL_STALE', id: ID.a1 },
      ],
    },
  },
  {
    file: 'put-equal-times-greater-hash-wins.valid.xml',
    body: put([authored(highTwin), authored(lowTwin)]),
    expected: {
      path: 'put',
      http: 200,
      rows: [
        { status: 'stored', hash: sha256(highTwin), id: ID.a1 },
        { status: 'rejected', code: 'DIP_MODEL_STALE', id: ID.a1 },
      ],
    },
  },
  {
    file: 'put-row-codes.valid.xml',
    body: put([
      modelFile('fields-out-of-order.invalid.xml'),
      modelFile('id-uppercase-hex.invalid.xml'),
      modelFile('attachment-wrong-bytes.invalid.xml'),
      modelFile('update-time-in-future.invalid.xml'),
      `<model name="post" version="1.1"><signatures/></model>\n`,
    ]),
    expected: {
      path: 'put',
      http: 200,
      rows: [
        { status: 'rejected', code: 'DIP_MODEL_INVALID', id: idText(K1, '100') },
        { status: 'rejected', code: 'DIP_ID_INVALID', id: null },
        { status: 'rejected', code: 'DIP_ATTACHMENT_INVALID', id: ID.a3 },
        { status: 'rejected', code: 'DIP_TIME_IN_FUTURE', id: idText(K1, '113') },
        { status: 'rejected', code: 'DIP_MODEL_INVALID', id: null },
      ],
    },
  },
  {
    file: 'put-reply-before-thread.valid.xml',
    body: put([SEED[1]!.xml, SEED[0]!.xml]),
    expected: {
      path: 'put',
      http: 200,
      rows: [
        { status: 'stored', hash: seedHash(1), id: ID.a2 },
        { status: 'stored', hash: seedHash(0), id: ID.a1 },
      ],
    },
  },
  {
    file: 'put-message-rows.valid.xml',
    body: put([SEED[6]!.xml, modelFile('message-141-code-points.invalid.xml'), modelFile('message-kind-edited.invalid.xml'), modelFile('message-major-2.invalid.xml')]),
    expected: {
      path: 'put',
      http: 200,
      rows: [
        { status: 'stored', hash: seedHash(6), id: MSG.toKey },
        { status: 'rejected', code: 'DIP_MODEL_INVALID', id: idText(K1, 'm12') },
        { status: 'rejected', code: 'DIP_SIGNATURE_INVALID', id: MSG.toKey },
        { status: 'rejected', code: 'DIP_VERSION_NOT_SUPPORTED', id: MSG.toKey },
      ],
    },
  },
  fails('put-no-models.invalid.xml', '<request type="put" version="1.0"/>\n', 'put', 400, 'DIP_REQUEST_INVALID'),
  fails('put-major-2.invalid.xml', put([SEED[0]!.xml], '2.0'), 'put', 501, 'DIP_VERSION_NOT_SUPPORTED'),
  fails('put-type-list.invalid.xml', put([SEED[0]!.xml]).replace('type="put"', 'type="list"'), 'put', 400, 'DIP_REQUEST_INVALID'),

  // ---- other paths ----
  fails('unknown-request-type.invalid.xml', '<request type="subscribe" version="1.0"/>\n', 'subscribe', 501, 'DIP_REQUEST_NOT_SUPPORTED'),
]
