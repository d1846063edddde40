// Every generated file under fixtures/, by path relative to fixtures/.
// test/tools/make-fixtures.ts writes them; test/fixtures.test.ts checks that
// the files on disk are exactly these bytes.
import { MODEL_FIXTURES, type ModelExpected } from './fixture-models.js'
import { REQUEST_FIXTURES, type RequestExpected } from './fixture-requests.js'
import { MANIFEST_JSON } from './fixture-manifest.js'
import { CANONICAL_PAIRS, IDS_INVALID, IDS_VALID, RESPONSE_FIXTURES, type ResponseExpected } from './fixture-texts.js'

const json = (value: unknown) => Buffer.from(JSON.stringify(value, null, 2) + '\n', 'utf8')
const bytes = (s: string | Buffer) => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s)

export function fixtureFiles(): Map<string, Buffer> {
  const files = new Map<string, Buffer>()
  const add = (path: string, data: Buffer) => {
    if (files.has(path)) throw new TypeError(`fixture ${path} defined twice`)
    files.set(path, data)
  }

  const models: Record<string, ModelExpected> = {}
  for (const m of MODEL_FIXTURES) {
    add(`models/${m.file}`, bytes(m.xml))
    models[m.file] = m.expected
  }
  add('models/expected.json', json(models))

  const requests: Record<string, RequestExpected> = {}
  for (const r of REQUEST_FIXTURES) {
    add(`requests/${r.file}`, bytes(r.body))
    requests[r.file] = r.expected
  }
  add('requests/expected.json', json(requests))

  const responses: Record<string, ResponseExpected> = {}
  for (const r of RESPONSE_FIXTURES) {
    add(`responses/${r.file}`, bytes(r.body))
    responses[r.file] = r.expected
  }
  add('responses/expected.json', json(responses))

  for (const p of CANONICAL_PAIRS) {
    add(`canonical/${p.name}.input.xml`, bytes(p.input))
    add(`canonical/${p.name}.canonical.xml`, bytes(p.canonical))
  }

  add('manifest/manifest.valid.json', Buffer.from(MANIFEST_JSON, 'utf8'))

  add('ids.valid.txt', Buffer.from(IDS_VALID.join('\n') + '\n'))
  add('ids.invalid.txt', Buffer.from(IDS_INVALID.join('\n') + '\n'))
  return files
}
