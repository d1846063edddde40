// Canonical-form pairs (fixtures/canonical/), id lists (fixtures/ids.*.txt)
// and answer samples (fixtures/responses/). Every expected canonical form is
// written out by hand.
import { idText, idXml, K1, K2, sha256 } from './fixture-keys.js'
import { C, seedHash } from './fixture-models.js'

export interface CanonicalPair {
  name: string
  input: string | Buffer
  canonical: string
}

const PRETTY_POST = `<content>
  <id type="ed25519" local-id="4" key="${K1.publicHex}"/>
  <title>Pretty</title>
  <text>line one
line two</text>
  <thread>
    <id local-id="1" key="${K1.publicHex}" type="ed25519"></id>
  </thread>
  <pub-time>2018-03-04T05:06:07Z</pub-time>
  <update-time>2018-03-04T05:06:07.123456Z</update-time>
  <tripcode>!Ab3</tripcode>
</content>
`

export const CANONICAL_PAIRS: CanonicalPair[] = [
  {
    name: 'protocol-example',
    input: '<content>\n  <id type="ed25519" local-id="7" key="ab…"/>\n  <title></title>\n  <text>a &amp; b\nc</text>\n</content>\n',
    canonical: '<content><id key="ab…" local-id="7" type="ed25519"/><title/><text>a &amp; b\nc</text></content>',
  },
  { name: 'post-pretty-printed', input: PRETTY_POST, canonical: C.pretty },
  {
    name: 'attribute-order',
    input: '<e z="1" a="2" b-c="3" B="4" ab="5" a-b="6" é="7"/>\n',
    canonical: '<e B="4" a="2" a-b="6" ab="5" b-c="3" z="1" é="7"/>',
  },
  {
    name: 'text-escapes',
    input: `<t>a &amp; b &lt; c &gt; d &#13; e " ' &quot;&apos; f > g &#65;&#x3C;</t>\n`,
    canonical: `<t>a &amp; b &lt; c &gt; d &#13; e " ' "' f &gt; g A&lt;</t>`,
  },
  { name: 'line-ends', input: '<t>a\r\nb\rc&#13;&#10;d</t>\r\n', canonical: '<t>a\nb\nc&#13;\nd</t>' },
  {
    name: 'attribute-escapes',
    input: `<a v="&amp;&lt;&gt;&quot;'&#9;&#10;&#13;" w="x&#x9;y" l="a\tb\nc" q='say "hi"' g="1>2"/>\n`,
    canonical: `<a g="1&gt;2" l="a b c" q="say &quot;hi&quot;" v="&amp;&lt;&gt;&quot;'&#9;&#10;&#13;" w="x&#9;y"/>`,
  },
  { name: 'cdata', input: '<t><![CDATA[<b>&amp;</b>]]> and x<![CDATA[y]]>z</t>\n', canonical: '<t>&lt;b&gt;&amp;amp;&lt;/b&gt; and xyz</t>' },
  { name: 'whitespace-leaf-kept', input: '<content>\n  <title>  \n\t </title>\n  <text> </text>\n</content>\n', canonical: '<content><title>  \n\t </title><text> </text></content>' },
  { name: 'whitespace-between-dropped', input: '<a>\n  <b>\n    <c>1</c>\n  </b>\n\t<d/>\r\n</a>\n', canonical: '<a><b><c>1</c></b><d/></a>' },
  { name: 'mixed-text-not-trimmed', input: '<p>\n  hello <b>x</b>\n</p>\n', canonical: '<p>\n  hello <b>x</b></p>' },
  {
    name: 'empty-elements',
    input: '<a><b></b><c x="1" ></c><d/><e><!-- gone --></e><f> </f></a>\n',
    canonical: '<a><b/><c x="1"/><d/><e/><f> </f></a>',
  },
  {
    name: 'comments-and-pis',
    input: '<?xml version="1.0"?>\n<!-- before -->\n<a><!-- x --><?pi y?><b>1<!-- c -->2</b>\n <!-- c --> \n<c/></a>\n<!-- after -->\n',
    canonical: '<a><b>12</b><c/></a>',
  },
  { name: 'non-ascii-raw', input: '<t é="ü">日本語 – 🙂 &#x1F642; &#233;</t>\n', canonical: '<t é="ü">日本語 – 🙂 🙂 é</t>' },
  { name: 'bom-and-declaration', input: '\uFEFF<?xml version="1.0" encoding="utf-8"?>\n<a/>\n', canonical: '<a/>' },
]

const k1 = K1.publicHex
export const IDS_VALID = [
  `ed25519::${k1}::1`,
  `ed25519::${k1}::42`,
  `ed25519::${k1}::042`,
  `ed25519::${K2.publicHex}::0`,
  `ed25519::${k1}::a.B_c-9`,
  `ed25519::${k1}::${'Zz09._-'.repeat(9)}z`,
  `ed25519::${'0'.repeat(64)}::-`,
]

export const IDS_INVALID = [
  `ed25519::${k1.toUpperCase()}::1`,
  `ed25519::${k1.slice(0, 62)}::1`,
  `ed25519::${k1}00::1`,
  `ecdsa::${k1}::1`,
  `ED25519::${k1}::1`,
  `ed25519::${k1}::`,
  `ed25519::${k1}::${'1'.repeat(65)}`,
  `ed25519::${k1}::a/b`,
  `ed25519::${k1}::a b`,
  `ed25519::${k1}::1::2`,
  `ed25519::${k1}::é`,
  `ed25519:${k1}:1`,
  `ed25519::${k1}`,
  `${k1}::1`,
  `ed25519::::1`,
]

// ---- answers, as a client reads them ----

export interface ResponseExpected {
  /** which reader runs after the head */
  kind: 'head' | 'list' | 'get' | 'put'
  /** the reader's outcome: absent = ok */
  code?: string
  status?: string
  /** the <code> of an error or not-supported answer */
  answerCode?: string
  supported?: { requests: Record<string, string>; models: Record<string, string> }
  ids?: string[]
  next?: string
  more?: boolean
  rows?: { status: string; code?: string; hash?: string; id?: string }[]
}

export interface ResponseFixture {
  file: string
  body: string
  expected: ResponseExpected
}

const listRow = (localId: string, version: string, time: string, hash: string, key = K1) =>
  `    <model name="post" version="${version}">${idXml(key, localId)}<update-time>${time}</update-time><hash>${hash}</hash></model>\n`

export const RESPONSE_FIXTURES: ResponseFixture[] = [
  {
    file: 'list-page.valid.xml',
    body: `<response>\n  <status>success</status>\n  <models>\n${listRow('1', '1.1', '2017-01-01T00:00:00Z', seedHash(0))}${listRow('5', '1.4', '2019-01-01T00:00:00Z', seedHash(4))}  </models>\n  <next>5c1f0e2a9b3d7c48.2</next>\n  <more/>\n</response>\n`,
    expected: { kind: 'list', status: 'success', ids: [idText(K1, '1'), idText(K1, '5')], next: '5c1f0e2a9b3d7c48.2', more: true },
  },
  {
    file: 'list-last-page.valid.xml',
    body: '<response>\n  <status>success</status>\n  <models/>\n  <next>5c1f0e2a9b3d7c48.2</next>\n</response>\n',
    expected: { kind: 'list', status: 'success', ids: [], next: '5c1f0e2a9b3d7c48.2', more: false },
  },
  {
    file: 'list-newer-peer.valid.xml',
    body: `<response>\n  <status>success</status>\n  <server-time>2024-01-01T00:00:00Z</server-time>\n  <models>\n${listRow('1', '1.2', '2017-01-01T00:00:00.250Z', seedHash(0), K2)}  </models>\n  <next>opaque/cursor+1</next>\n</response>\n`,
    expected: { kind: 'list', status: 'success', ids: [idText(K2, '1')], next: 'opaque/cursor+1', more: false },
  },
  {
    file: 'put-results.valid.xml',
    body: `<response>\n  <status>success</status>\n  <results>\n    <result status="stored" hash="${seedHash(0)}">${idXml(K1, '1')}</result>\n    <result status="duplicate" hash="${seedHash(0)}">${idXml(K1, '1')}</result>\n    <result status="rejected" code="DIP_SIGNATURE_INVALID">${idXml(K1, '2')}</result>\n    <result status="rejected" code="DIP_MODEL_INVALID"/>\n  </results>\n</response>\n`,
    expected: {
      kind: 'put',
      status: 'success',
      rows: [
        { status: 'stored', hash: seedHash(0), id: idText(K1, '1') },
        { status: 'duplicate', hash: seedHash(0), id: idText(K1, '1') },
        { status: 'rejected', code: 'DIP_SIGNATURE_INVALID', id: idText(K1, '2') },
        { status: 'rejected', code: 'DIP_MODEL_INVALID' },
      ],
    },
  },
  {
    file: 'error.valid.xml',
    body: '<response>\n  <status>error</status>\n  <code>DIP_FILTER_INVALID</code>\n  <description>timestamp_from is empty</description>\n</response>\n',
    expected: { kind: 'head', status: 'error', answerCode: 'DIP_FILTER_INVALID' },
  },
  {
    file: 'not-supported.valid.xml',
    body: '<response>\n  <status>not supported</status>\n  <code>DIP_VERSION_NOT_SUPPORTED</code>\n  <description/>\n  <supported>\n    <request type="list" version="1.0"/>\n    <request type="get" version="1.0"/>\n    <request type="put" version="1.0"/>\n    <request type="ping" version="1.0"/>\n    <model name="post" version="1.1"/>\n    <model name="message" version="1.0"/>\n  </supported>\n</response>\n',
    expected: {
      kind: 'head',
      status: 'not supported',
      answerCode: 'DIP_VERSION_NOT_SUPPORTED',
      supported: { requests: { list: '1.0', get: '1.0', put: '1.0', ping: '1.0' }, models: { post: '1.1', message: '1.0' } },
    },
  },
  {
    file: 'status-unknown.invalid.xml',
    body: '<response>\n  <status>ok</status>\n</response>\n',
    expected: { kind: 'head', code: 'DIP_PEER_RESPONSE_INVALID' },
  },
  {
    file: 'list-no-next.invalid.xml',
    body: '<response>\n  <status>success</status>\n  <models/>\n</response>\n',
    expected: { kind: 'list', status: 'success', code: 'DIP_PEER_RESPONSE_INVALID' },
  },
  {
    file: 'list-bad-hash.invalid.xml',
    body: `<response>\n  <status>success</status>\n  <models>\n${listRow('1', '1.1', '2017-01-01T00:00:00Z', sha256('x').toUpperCase())}  </models>\n  <next>5c1f0e2a9b3d7c48.1</next>\n</response>\n`,
    expected: { kind: 'list', status: 'success', code: 'DIP_PEER_RESPONSE_INVALID' },
  },
]
