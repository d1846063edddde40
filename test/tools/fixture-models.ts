// Model fixtures (fixtures/models/): `<model>` elements with real ed25519
// signatures by the fixed keys of fixture-keys.ts.
//
// Every canonical form below is written out by hand, never produced by
// src/protocol/canonical.ts: the signatures are made over these strings, so
// a canonicalizer that disagrees with them fails the signature check and the
// expected hash.
import { flipFirstByte, idText, idXml, K1, K2, nonCanonicalS, sha256, signHex, type FixtureKey } from './fixture-keys.js'

export type ModelExpected =
  | { result: 'ok'; id: string; hash: string; signatures: number }
  | { result: 'rejected'; code: string }

export interface ModelFixture {
  file: string
  xml: string
  expected: ModelExpected
}

// ---- building blocks ----

export interface PostSpec {
  key?: FixtureKey
  localId: string
  title?: string
  text?: string
  tags?: string[]
  thread?: string
  pub: string
  upd?: string
  tripcode?: string
  attachments?: string
  /** raw canonical XML inserted after <text> (unknown elements of a newer minor) */
  extraAfterText?: string
}

/** The canonical content of a post, written out by hand. Values are already escaped. */
export function postContent(p: PostSpec): string {
  const key = p.key ?? K1
  const leaf = (name: string, v: string) => (v === '' ? `<${name}/>` : `<${name}>${v}</${name}>`)
  let out = '<content>' + idXml(key, p.localId) + leaf('title', p.title ?? '') + leaf('text', p.text ?? '')
  out += p.extraAfterText ?? ''
  if (p.tags) out += '<tags>' + p.tags.map((t) => `<tag>${t}</tag>`).join('') + '</tags>'
  if (p.thread) out += `<thread>${p.thread}</thread>`
  out += leaf('pub-time', p.pub) + leaf('update-time', p.upd ?? p.pub)
  if (p.tripcode !== undefined) out += leaf('tripcode', p.tripcode)
  if (p.attachments) out += `<attachments>${p.attachments}</attachments>`
  return out + '</content>'
}

export const sigEl = (key: FixtureKey, value: string) => `<signature key="${key.publicHex}" type="ed25519" value="${value}"/>`
export const signedBy = (key: FixtureKey, canonical: string) => sigEl(key, signHex(key, canonical))

export interface ModelSpec {
  name?: string
  version?: string
  content: string
  signatures: string[]
  /** elements after <signatures>: attachment-data / attachment-ref */
  after?: string[]
}

/** A `<model>` element laid out one child per line (whitespace between model children is not signed). */
export function modelXml(m: ModelSpec): string {
  let out = `<model name="${m.name ?? 'post'}" version="${m.version ?? '1.1'}">\n  ${m.content}\n`
  out += m.signatures.length === 0 ? '  <signatures/>\n' : `  <signatures>\n${m.signatures.map((s) => `    ${s}\n`).join('')}  </signatures>\n`
  for (const a of m.after ?? []) out += `  ${a}\n`
  return out + '</model>\n'
}

/** A model signed by its author over `content`. */
export const authored = (content: string, key: FixtureKey = K1, extra: Partial<ModelSpec> = {}) => modelXml({ content, signatures: [signedBy(key, content)], ...extra })

// ---- the seed posts (also put through /put/ by the request fixtures) ----

export const THREAD_1 = idXml(K1, '1')

export const ATTACHMENT_BYTES = Buffer.from('=^.^= meow\n', 'utf8')
export const ATTACHMENT_HASH = sha256(ATTACHMENT_BYTES)
const attachmentEl = (size: number) => `<attachment hash="${ATTACHMENT_HASH}" mimetype="text/plain" name="cat.txt" size="${size}"/>`

export const C = {
  opening: postContent({ localId: '1', title: 'Hello DIP', text: 'The first post &amp; its tags.', tags: ['dip', 'test'], pub: '2017-01-01T00:00:00Z' }),
  reply: postContent({ localId: '2', text: 'Agreed with [post]' + idText(K1, '1') + '[/post].', thread: THREAD_1, pub: '2017-01-02T00:00:00Z' }),
  attachment: postContent({
    localId: '3',
    title: 'A cat',
    tags: ['cats'],
    pub: '2017-06-01T12:00:00Z',
    upd: '2017-06-01T12:00:00.5Z',
    attachments: attachmentEl(ATTACHMENT_BYTES.length),
  }),
  pretty: postContent({ localId: '4', title: 'Pretty', text: 'line one\nline two', thread: THREAD_1, pub: '2018-03-04T05:06:07Z', upd: '2018-03-04T05:06:07.123456Z', tripcode: '!Ab3' }),
  newerMinor: postContent({ localId: '5', title: 'From 1.4', text: 'has a field 1.1 does not know', extraAfterText: '<mood>curious</mood>', tags: ['test'], pub: '2019-01-01T00:00:00Z' }),
  cosigned: postContent({ key: K2, localId: '1', title: 'Co-signed', tags: ['dip'], pub: '2020-01-01T00:00:00Z' }),
}

/** The pretty-printed form of C.pretty, as another node might send it: attributes unsorted, indented. */
const PRETTY_CONTENT = `<content>
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
  </content>`

const ATTACHMENT_DATA = `<attachment-data hash="${ATTACHMENT_HASH}">\n    ${ATTACHMENT_BYTES.toString('base64').slice(0, 8)}\n    ${ATTACHMENT_BYTES.toString('base64').slice(8)}\n  </attachment-data>`

const POST_SEED: { file: string; content: string; xml: string; key: FixtureKey; localId: string; signatures: number }[] = [
  { file: 'opening-post.valid.xml', content: C.opening, xml: authored(C.opening), key: K1, localId: '1', signatures: 1 },
  { file: 'reply.valid.xml', content: C.reply, xml: authored(C.reply), key: K1, localId: '2', signatures: 1 },
  { file: 'attachment-data.valid.xml', content: C.attachment, xml: authored(C.attachment, K1, { after: [ATTACHMENT_DATA] }), key: K1, localId: '3', signatures: 1 },
  {
    file: 'pretty-printed.valid.xml',
    content: C.pretty,
    xml: modelXml({ content: PRETTY_CONTENT, signatures: [signedBy(K1, C.pretty)] }),
    key: K1,
    localId: '4',
    signatures: 1,
  },
  { file: 'newer-minor.valid.xml', content: C.newerMinor, xml: authored(C.newerMinor, K1, { version: '1.4' }), key: K1, localId: '5', signatures: 1 },
  {
    file: 'co-signed.valid.xml',
    content: C.cosigned,
    xml: modelXml({ content: C.cosigned, signatures: [signedBy(K2, C.cosigned), signedBy(K1, C.cosigned)] }),
    key: K2,
    localId: '1',
    signatures: 2,
  },
]

// ---- the seed messages (the "message" model 1.0, spec/message-model.md) ----

export interface MessageSpec {
  key?: FixtureKey
  localId: string
  /** the kind attribute; null = none */
  kind?: string | null
  /** raw canonical attributes of <content> after kind (sorted by hand), e.g. ` priority="high"` */
  moreAttrs?: string
  /** the children of <to>, canonical, e.g. `<key>…</key>` */
  to: string
  /** escaped text */
  text: string
  pub: string
  upd?: string
  /** raw canonical XML inserted after <text> (unknown elements of a newer minor) */
  extraAfterText?: string
}

/** The canonical content of a message, written out by hand. Values are already escaped. */
export function messageContent(m: MessageSpec): string {
  const leaf = (name: string, v: string) => (v === '' ? `<${name}/>` : `<${name}>${v}</${name}>`)
  const kind = m.kind === null ? '' : ` kind="${m.kind ?? 'chat'}"`
  let out = `<content${kind}${m.moreAttrs ?? ''}>` + idXml(m.key ?? K1, m.localId) + (m.to === '' ? '<to/>' : `<to>${m.to}</to>`) + leaf('text', m.text)
  out += m.extraAfterText ?? ''
  return out + leaf('pub-time', m.pub) + leaf('update-time', m.upd ?? m.pub) + '</content>'
}

export const toKey = (k: FixtureKey) => `<key>${k.publicHex}</key>`
export const toGroup = (name: string) => `<group>${name}</group>`
export const MESSAGE_GROUP = 'dip-dev'

export const M = {
  toKey: messageContent({ localId: 'm1', kind: 'chat', to: toKey(K2), text: 'Lunch at noon? Bring the ed25519 slides.', pub: '2021-01-01T12:00:00Z' }),
  toGroup: messageContent({ localId: 'm2', kind: 'announce', to: toGroup(MESSAGE_GROUP), text: 'dipd 1.0 is out &amp; signed.', pub: '2021-01-02T09:30:00Z' }),
  notice: messageContent({ key: K2, localId: 'm1', kind: 'notice', to: toKey(K1), text: 'My node key rotates tonight.', pub: '2021-01-03T18:00:00Z' }),
}

const message = (file: string, content: string, key: FixtureKey, localId: string) => ({ file, content, xml: authored(content, key, { name: 'message', version: '1.0' }), key, localId, signatures: 1 })

/** The seed models, in the order the request fixtures put them: six posts, then three messages. */
export const SEED: { file: string; content: string; xml: string; key: FixtureKey; localId: string; signatures: number }[] = [
  ...POST_SEED,
  message('message-to-key.valid.xml', M.toKey, K1, 'm1'),
  message('message-to-group.valid.xml', M.toGroup, K1, 'm2'),
  message('message-notice.valid.xml', M.notice, K2, 'm1'),
]

export const seedHash = (n: number) => sha256(SEED[n]!.content)

// ---- more valid models ----

const unknownSig = postContent({ localId: '6', title: 'Two kinds of signature', pub: '2019-06-01T00:00:00Z' })
const duplicateSig = postContent({ localId: '7', title: 'Signed twice', pub: '2019-06-02T00:00:00Z' })
const withRef = postContent({ localId: '8', title: 'Big cat', pub: '2019-06-03T00:00:00Z', attachments: attachmentEl(ATTACHMENT_BYTES.length) })
const emptyish = postContent({ localId: 'a.B_c-9', text: '  ', pub: '2019-06-04T00:00:00.000001Z', upd: '2019-06-04T00:00:01Z', tripcode: '' })

const okModel = (file: string, xml: string, content: string, key: FixtureKey, localId: string, signatures: number): ModelFixture => ({
  file,
  xml,
  expected: { result: 'ok', id: idText(key, localId), hash: sha256(content), signatures },
})

// ---- rejected models ----

/** C.opening with a different title: a signature over C.opening does not cover it. */
const openingEdited = C.opening.replace('Hello DIP', 'Hello DIP!')
/** A post defective in one field only (the callers override it). */
const badContent = (p: Partial<PostSpec> & { localId: string }) => postContent({ pub: '2017-01-01T00:00:00Z', ...p })

const rejected = (file: string, xml: string, code: string): ModelFixture => ({ file, xml, expected: { result: 'rejected', code } })

const outOfOrder = `<content><title>first</title>${idXml(K1, '100')}<text/><pub-time>2017-01-01T00:00:00Z</pub-time><update-time>2017-01-01T00:00:00Z</update-time></content>`
const missingUpdate = `<content>${idXml(K1, '101')}<title/><text/><pub-time>2017-01-01T00:00:00Z</pub-time></content>`
const repeatedText = `<content>${idXml(K1, '102')}<title/><text>one</text><text>two</text><pub-time>2017-01-01T00:00:00Z</pub-time><update-time>2017-01-01T00:00:00Z</update-time></content>`
const replyWithTags = badContent({ localId: '103', tags: ['dip'], thread: THREAD_1 })
const spaceTime = badContent({ localId: '104', pub: '2017-01-01 00:00:00', upd: '2017-01-01T00:00:00Z' })
const sevenDigits = badContent({ localId: '105', upd: '2017-01-01T00:00:00.1234567Z' })
const offsetTime = badContent({ localId: '106', upd: '2017-01-01T00:00:00+00:00' })
const feb30 = badContent({ localId: '107', pub: '2017-02-30T00:00:00Z' })
const twoThreads = badContent({ localId: '108', thread: THREAD_1 + idXml(K1, '3') })
const markupTitle = `<content>${idXml(K1, '109')}<title><b>bold</b></title><text/><pub-time>2017-01-01T00:00:00Z</pub-time><update-time>2017-01-01T00:00:00Z</update-time></content>`
const badAttachmentHash = badContent({ localId: '110', attachments: `<attachment hash="${ATTACHMENT_HASH.toUpperCase().replace('SHA256', 'sha256')}" mimetype="text/plain" name="cat.txt" size="11"/>` })
const upperId = `<content><id key="${K1.publicHex.toUpperCase()}" local-id="111" type="ed25519"/><title/><text/><pub-time>2017-01-01T00:00:00Z</pub-time><update-time>2017-01-01T00:00:00Z</update-time></content>`
const badThreadId = badContent({ localId: '112', thread: `<id key="${K1.publicHex}" local-id="1" type="ecdsa"/>` })
const future = badContent({ localId: '113', upd: '9999-12-31T23:59:59Z' })
const wrongSize = badContent({ localId: '114', attachments: attachmentEl(ATTACHMENT_BYTES.length + 1) })
const forOtherData = badContent({ localId: '115' })

const WRONG_BYTES = Buffer.from('woof woof\n', 'utf8')

// ---- messages beyond the seed ----

/** U+1D11E MUSICAL SYMBOL G CLEF: one code point, two UTF-16 units, four UTF-8 bytes. */
const CLEF = '\u{1D11E}'
const msg = (m: Partial<MessageSpec> & { localId: string }) => messageContent({ to: toKey(K2), text: 'hello', pub: '2021-02-01T00:00:00Z', ...m })
const asMessage = (content: string, extra: Partial<ModelSpec> = {}) => authored(content, K1, { name: 'message', version: '1.0', ...extra })
const m140 = msg({ localId: 'm10', text: CLEF.repeat(140) })
const mNewerMinor = msg({ localId: 'm11', moreAttrs: ' priority="high"', to: toGroup('ops'), text: 'From 1.3: two things 1.0 does not know.', extraAfterText: '<lang>en</lang>' })
const mKindEdited = M.toKey.replace('kind="chat"', 'kind="announce"')
const mOutOfOrder = `<content kind="chat">${idXml(K1, 'm20')}<text>hello</text><to>${toKey(K2)}</to><pub-time>2021-02-01T00:00:00Z</pub-time><update-time>2021-02-01T00:00:00Z</update-time></content>`
const mMissingTo = `<content kind="chat">${idXml(K1, 'm21')}<text>hello</text><pub-time>2021-02-01T00:00:00Z</pub-time><update-time>2021-02-01T00:00:00Z</update-time></content>`
const mRepeatedText = `<content kind="chat">${idXml(K1, 'm22')}<to>${toKey(K2)}</to><text>one</text><text>two</text><pub-time>2021-02-01T00:00:00Z</pub-time><update-time>2021-02-01T00:00:00Z</update-time></content>`

export const MODEL_FIXTURES: ModelFixture[] = [
  ...SEED.map((s) => okModel(s.file, s.xml, s.content, s.key, s.localId, s.signatures)),
  okModel(
    'unknown-signature-type.valid.xml',
    modelXml({ content: unknownSig, signatures: [signedBy(K1, unknownSig), '<signature key="0xDEADBEEF" type="x-future-sig" value="not checked, kept and relayed"/>'] }),
    unknownSig,
    K1,
    '6',
    2,
  ),
  okModel('duplicate-signatures.valid.xml', modelXml({ content: duplicateSig, signatures: [signedBy(K1, duplicateSig), signedBy(K1, duplicateSig)] }), duplicateSig, K1, '7', 2),
  okModel(
    'attachment-ref.valid.xml',
    authored(withRef, K1, { after: [`<attachment-ref hash="${ATTACHMENT_HASH}" url="https://example.com/blobs/cat.txt"/>`] }),
    withRef,
    K1,
    '8',
    1,
  ),
  okModel('whitespace-text.valid.xml', authored(emptyish), emptyish, K1, 'a.B_c-9', 1),

  // signatures
  rejected('bad-signature.invalid.xml', modelXml({ content: C.opening, signatures: [sigEl(K1, flipFirstByte(signHex(K1, C.opening)))] }), 'DIP_SIGNATURE_INVALID'),
  rejected('edited-content.invalid.xml', modelXml({ content: openingEdited, signatures: [signedBy(K1, C.opening)] }), 'DIP_SIGNATURE_INVALID'),
  rejected('foreign-signature-only.invalid.xml', modelXml({ content: C.opening, signatures: [signedBy(K2, C.opening)] }), 'DIP_SIGNATURE_INVALID'),
  rejected('bad-co-signature.invalid.xml', modelXml({ content: C.cosigned, signatures: [signedBy(K2, C.cosigned), sigEl(K1, flipFirstByte(signHex(K1, C.cosigned)))] }), 'DIP_SIGNATURE_INVALID'),
  rejected('no-signatures.invalid.xml', modelXml({ content: C.opening, signatures: [] }), 'DIP_SIGNATURE_INVALID'),
  rejected('signature-uppercase-hex.invalid.xml', modelXml({ content: C.opening, signatures: [sigEl(K1, signHex(K1, C.opening).toUpperCase())] }), 'DIP_SIGNATURE_INVALID'),
  rejected('signature-s-not-canonical.invalid.xml', modelXml({ content: C.opening, signatures: [sigEl(K1, nonCanonicalS(signHex(K1, C.opening)))] }), 'DIP_SIGNATURE_INVALID'),
  rejected('signed-non-canonical-bytes.invalid.xml', modelXml({ content: PRETTY_CONTENT, signatures: [sigEl(K1, signHex(K1, PRETTY_CONTENT))] }), 'DIP_SIGNATURE_INVALID'),

  // content
  rejected('reply-with-tags.invalid.xml', authored(replyWithTags), 'DIP_MODEL_INVALID'),
  rejected('fields-out-of-order.invalid.xml', authored(outOfOrder), 'DIP_MODEL_INVALID'),
  rejected('field-missing.invalid.xml', authored(missingUpdate), 'DIP_MODEL_INVALID'),
  rejected('field-repeated.invalid.xml', authored(repeatedText), 'DIP_MODEL_INVALID'),
  rejected('time-space-form.invalid.xml', authored(spaceTime), 'DIP_MODEL_INVALID'),
  rejected('time-seven-digits.invalid.xml', authored(sevenDigits), 'DIP_MODEL_INVALID'),
  rejected('time-offset.invalid.xml', authored(offsetTime), 'DIP_MODEL_INVALID'),
  rejected('time-feb-30.invalid.xml', authored(feb30), 'DIP_MODEL_INVALID'),
  rejected('thread-two-ids.invalid.xml', authored(twoThreads), 'DIP_MODEL_INVALID'),
  rejected('title-markup.invalid.xml', authored(markupTitle), 'DIP_MODEL_INVALID'),
  rejected('attachment-hash-uppercase.invalid.xml', authored(badAttachmentHash), 'DIP_MODEL_INVALID'),
  rejected('no-content.invalid.xml', modelXml({ content: '<signed-thing/>', signatures: [signedBy(K1, '<signed-thing/>')] }), 'DIP_MODEL_INVALID'),
  rejected('model-version-text.invalid.xml', authored(C.opening, K1, { version: '1' }), 'DIP_MODEL_INVALID'),
  rejected('id-uppercase-hex.invalid.xml', authored(upperId), 'DIP_ID_INVALID'),
  rejected('thread-id-ecdsa.invalid.xml', authored(badThreadId), 'DIP_ID_INVALID'),

  // versions and names
  rejected('model-major-2.invalid.xml', authored(C.opening, K1, { version: '2.0' }), 'DIP_VERSION_NOT_SUPPORTED'),
  rejected('unknown-model.invalid.xml', authored(C.opening, K1, { name: 'thread' }), 'DIP_MODEL_NOT_SUPPORTED'),

  // attachments
  rejected(
    'attachment-wrong-bytes.invalid.xml',
    authored(C.attachment, K1, { after: [`<attachment-data hash="${ATTACHMENT_HASH}">${WRONG_BYTES.toString('base64')}</attachment-data>`] }),
    'DIP_ATTACHMENT_INVALID',
  ),
  rejected(
    'attachment-wrong-size.invalid.xml',
    authored(wrongSize, K1, { after: [`<attachment-data hash="${ATTACHMENT_HASH}">${ATTACHMENT_BYTES.toString('base64')}</attachment-data>`] }),
    'DIP_ATTACHMENT_INVALID',
  ),
  rejected(
    'attachment-data-not-signed.invalid.xml',
    authored(forOtherData, K1, { after: [`<attachment-data hash="${ATTACHMENT_HASH}">${ATTACHMENT_BYTES.toString('base64')}</attachment-data>`] }),
    'DIP_ATTACHMENT_INVALID',
  ),
  rejected('attachment-data-bad-base64.invalid.xml', authored(C.attachment, K1, { after: [`<attachment-data hash="${ATTACHMENT_HASH}">PV4uXj0g*bWVvdwo</attachment-data>`] }), 'DIP_ATTACHMENT_INVALID'),
  rejected('attachment-ref-relative-url.invalid.xml', authored(withRef, K1, { after: [`<attachment-ref hash="${ATTACHMENT_HASH}" url="blobs/cat.txt"/>`] }), 'DIP_ATTACHMENT_INVALID'),

  // time
  rejected('update-time-in-future.invalid.xml', authored(future), 'DIP_TIME_IN_FUTURE'),

  // messages (the seed ones are above)
  okModel('message-140-code-points.valid.xml', asMessage(m140), m140, K1, 'm10', 1),
  okModel('message-newer-minor.valid.xml', asMessage(mNewerMinor, { version: '1.3' }), mNewerMinor, K1, 'm11', 1),
  rejected('message-141-code-points.invalid.xml', asMessage(msg({ localId: 'm12', text: CLEF.repeat(141) })), 'DIP_MODEL_INVALID'),
  rejected('message-text-empty.invalid.xml', asMessage(msg({ localId: 'm13', text: '' })), 'DIP_MODEL_INVALID'),
  rejected('message-text-markup.invalid.xml', asMessage(msg({ localId: 'm14', text: '<b>hello</b>' })), 'DIP_MODEL_INVALID'),
  rejected('message-kind-missing.invalid.xml', asMessage(msg({ localId: 'm15', kind: null })), 'DIP_MODEL_INVALID'),
  rejected('message-kind-unknown.invalid.xml', asMessage(msg({ localId: 'm16', kind: 'basic' })), 'DIP_MODEL_INVALID'),
  rejected('message-kind-edited.invalid.xml', modelXml({ name: 'message', version: '1.0', content: mKindEdited, signatures: [signedBy(K1, M.toKey)] }), 'DIP_SIGNATURE_INVALID'),
  rejected('message-to-two-recipients.invalid.xml', asMessage(msg({ localId: 'm17', to: toKey(K2) + toGroup(MESSAGE_GROUP) })), 'DIP_MODEL_INVALID'),
  rejected('message-to-empty.invalid.xml', asMessage(msg({ localId: 'm18', to: '' })), 'DIP_MODEL_INVALID'),
  rejected('message-to-key-uppercase.invalid.xml', asMessage(msg({ localId: 'm19', to: `<key>${K2.publicHex.toUpperCase()}</key>` })), 'DIP_MODEL_INVALID'),
  rejected('message-to-key-id-form.invalid.xml', asMessage(msg({ localId: 'm23', to: `<key>ed25519::${K2.publicHex}</key>` })), 'DIP_MODEL_INVALID'),
  rejected('message-to-group-bad-name.invalid.xml', asMessage(msg({ localId: 'm24', to: toGroup('dip dev') })), 'DIP_MODEL_INVALID'),
  rejected('message-fields-out-of-order.invalid.xml', asMessage(mOutOfOrder), 'DIP_MODEL_INVALID'),
  rejected('message-field-missing.invalid.xml', asMessage(mMissingTo), 'DIP_MODEL_INVALID'),
  rejected('message-field-repeated.invalid.xml', asMessage(mRepeatedText), 'DIP_MODEL_INVALID'),
  rejected('message-time-offset.invalid.xml', asMessage(msg({ localId: 'm25', upd: '2021-02-01T01:00:00+01:00' })), 'DIP_MODEL_INVALID'),
  rejected('message-major-2.invalid.xml', asMessage(M.toKey, { version: '2.0' }), 'DIP_VERSION_NOT_SUPPORTED'),
]

