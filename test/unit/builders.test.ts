// The bulk path writes answers with string templates and one escape
// function; xmlbuilder2 builds the same documents the slow, obvious way.
// Both must parse to the same tree, for awkward text too.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { create } from 'xmlbuilder2'
import { DipError } from '../../src/errors.js'
import { errorXml, listXml, putXml } from '../../src/protocol/envelope.js'
import { parseXml, type XmlNode } from '../../src/protocol/xml.js'
import { prettyXml } from '../../src/cli/pretty.js'

const plain = (n: XmlNode): unknown => (typeof n === 'string' ? n : { name: n.name, attrs: { ...n.attrs }, children: n.children.map(plain) })
const tree = (xml: string) => {
  const r = parseXml(xml)
  assert.ok(r.ok, xml)
  return plain(r.value)
}
const key = 'ab'.repeat(32)
const hash = 'sha256:' + 'cd'.repeat(32)
const awkward = fc.string({ unit: fc.constantFrom('a', '&', '<', '>', '"', "'", ' ', '\n', 'é', ']', '\u{1F600}'), maxLength: 20 })

test('list answers: templates and xmlbuilder2 agree', () => {
  fc.assert(
    fc.property(fc.array(fc.stringMatching(/^[0-9A-Za-z._-]{1,8}$/), { maxLength: 5 }), awkward, fc.boolean(), (locals, next, more) => {
      const rows = locals.map((l) => ({ name: 'post', version: '1.1', id: `ed25519::${key}::${l}`, updateTime: '2020-01-01T00:00:00Z', hash }))
      const doc = create().ele('response')
      doc.ele('status').txt('success')
      const models = doc.ele('models')
      for (const l of locals) {
        const m = models.ele('model', { name: 'post', version: '1.1' })
        m.ele('id', { key, 'local-id': l, type: 'ed25519' })
        m.ele('update-time').txt('2020-01-01T00:00:00Z')
        m.ele('hash').txt(hash)
      }
      const nextEl = doc.ele('next')
      if (next !== '') nextEl.txt(next)
      if (more) doc.ele('more')
      assert.deepEqual(tree(listXml(rows, next, more)), tree(doc.end({ headless: true })))
    }),
  )
})

test('error and put answers: templates and xmlbuilder2 agree', () => {
  fc.assert(
    fc.property(awkward, (message) => {
      const doc = create().ele('response')
      doc.ele('status').txt('error')
      doc.ele('code').txt('DIP_FILTER_INVALID')
      const d = doc.ele('description')
      if (message !== '') d.txt(message)
      const ours = errorXml(new DipError('DIP_FILTER_INVALID', message), { requests: {}, models: {} })
      assert.deepEqual(tree(ours), tree(doc.end({ headless: true })))
    }),
  )
  const put = create().ele('response')
  put.ele('status').txt('success')
  const results = put.ele('results')
  results.ele('result', { status: 'stored', hash }).ele('id', { key, 'local-id': '1', type: 'ed25519' })
  results.ele('result', { status: 'rejected', code: 'DIP_MODEL_STALE' })
  const ours = putXml([
    { status: 'stored', hash, id: { type: 'ed25519', key, localId: '1' } },
    { status: 'rejected', code: 'DIP_MODEL_STALE' },
  ])
  assert.deepEqual(tree(ours), tree(put.end({ headless: true })))
})

test('show --pretty indents without changing the content', () => {
  const xml = `<model name="post" version="1.1"><content><title>a &amp; b</title><text>x</text></content></model>`
  const pretty = prettyXml(xml)
  assert.ok(pretty.split('\n').length > 3)
  const strip = (n: unknown): unknown =>
    typeof n === 'string' ? n : { ...(n as object), children: (n as { children: unknown[] }).children.filter((c) => typeof c !== 'string' || c.trim() !== '').map(strip) }
  assert.deepEqual(strip(tree(pretty)), strip(tree(xml)))
})
