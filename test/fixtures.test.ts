// Runs every file of fixtures/ (see fixtures/README.md):
//   requests/   POSTed through the real HTTP stack (buildApp + undici); every
//               answer must be a signed <response> envelope
//   models/     parse -> stage -> Ingest.accept on a memory store
//   responses/  read with the client-side readers
//   canonical/  canonicalize(input) is byte-identical to the canonical file
//   ids.*.txt   text-form ids round-trip or are DIP_ID_INVALID
//   manifest/   the manifest sample: PROTOCOL.md §9's fields, proofs and
//               rotations that verify, and what buildApp serves for them
// and checks that every ```xml and ```json sample in spec/ is a fixture
// file, and that the generated fixtures on disk match
// test/tools/make-fixtures.ts.
// Tests assert DIP_* codes, never message text.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import type { FastifyInstance } from 'fastify'
import { WIRE_CODES, isWireCode, type WireCode } from '../src/errors.js'
import { NodeIdentity } from '../src/trust/identity.js'
import { buildApp } from '../src/http/app.js'
import { defaultRegistry } from '../src/daemon.js'
import { GraphStore } from '../src/store/graph-store.js'
import { Ingest } from '../src/store/ingest.js'
import { DEFAULT_LIMITS, readGetAnswer, readListAnswer, readPutAnswer, readResponseHead } from '../src/protocol/envelope.js'
import { childElements, parseXml, type XmlElement } from '../src/protocol/xml.js'
import { canonicalize } from '../src/protocol/canonical.js'
import { formatId, idElementXml, parseIdElement, parseIdText } from '../src/protocol/id.js'
import { checkAttachments, stageModel, verifySignatures } from '../src/model/signed.js'
import { fixtureFiles } from './tools/fixture-files.js'
import { idText, idXml, K1, K2, sha256, signHex, verifyHex } from './tools/fixture-keys.js'
import { keyPairFromSecret } from '../src/crypto/ed25519.js'
import { ATTACHMENT_BYTES, ATTACHMENT_HASH, modelXml, postContent, signedBy } from './tools/fixture-models.js'
import type { RequestExpected } from './tools/fixture-requests.js'
import type { ModelExpected } from './tools/fixture-models.js'
import type { ResponseExpected } from './tools/fixture-texts.js'
import { MANIFEST_FROM, MANIFEST_NODE, MANIFEST_TURF } from './tools/fixture-manifest.js'
import { followRotations, verifyProof, type Proof } from '../src/trust/chain.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const FIXTURES = join(ROOT, 'fixtures')
const SPEC = join(ROOT, 'spec')
const registry = defaultRegistry()
/** The node under test signs its answers with K2 (PROTOCOL.md §8). */
const NODE_PAIR = keyPairFromSecret(Buffer.from(K2.secretHex, 'hex'))
const NODE_KEY = 'ed25519::' + K2.publicHex
const SUPPORTED = { requests: { list: '1.0', get: '1.0', put: '1.0', ping: '1.0' }, models: { post: '1.1', message: '1.0' } }

const readJson = <T>(path: string): Record<string, T> => JSON.parse(readFileSync(join(FIXTURES, path), 'utf8')) as Record<string, T>
const fixtureBytes = (path: string) => readFileSync(join(FIXTURES, path))

function parse(bytes: Uint8Array | string): XmlElement {
  const r = parseXml(bytes)
  assert.ok(r.ok, r.ok ? '' : `fixture does not parse: ${r.error.code}`)
  return r.value
}

/** The xml files of a fixture folder must be exactly the keys of its expected.json. */
function filesMatchExpected(dir: string, expected: Record<string, unknown>): string[] {
  const files = readdirSync(join(FIXTURES, dir)).filter((f) => f.endsWith('.xml')).sort()
  assert.deepEqual(files, Object.keys(expected).sort(), `${dir}/ files and ${dir}/expected.json disagree`)
  return files
}

// ---- a node on 127.0.0.1 ----

interface TestNode {
  app: FastifyInstance
  store: GraphStore
  base: string
  close(): Promise<void>
}

async function startNode(): Promise<TestNode> {
  const store = await GraphStore.openMemory()
  const app = buildApp({ store, ingest: new Ingest(store), registry, limits: DEFAULT_LIMITS, identity: new NodeIdentity({ current: NODE_PAIR }) })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const addr = app.server.address()
  assert.ok(addr && typeof addr === 'object')
  return {
    app,
    store,
    base: `http://127.0.0.1:${addr.port}`,
    async close() {
      await app.close()
      await store.close()
    },
  }
}

interface Answer {
  http: number
  headers: Record<string, string | string[] | undefined>
  root: XmlElement
}

async function post(node: TestNode, url: string, body: string | Buffer, contentType = 'application/xml'): Promise<Answer> {
  const headers: Record<string, string> = contentType === '' ? {} : { 'content-type': contentType }
  const res = await request(node.base + url, { method: 'POST', body, headers })
  const bytes = Buffer.from(await res.body.arrayBuffer())
  // PROTOCOL.md §1: every answer is an XML <response>, never content-encoded.
  assert.equal(res.headers['content-type'], 'application/xml; charset=utf-8')
  assert.equal(res.headers['content-encoding'], undefined)
  // PROTOCOL.md §8: the node key and its signature over "dip-response:" + the exact body bytes.
  assert.equal(res.headers['dip-node-key'], NODE_KEY)
  const sig = String(res.headers['dip-signature'])
  assert.ok(verifyHex(K2.publicHex, Buffer.concat([Buffer.from('dip-response:'), bytes]), sig), 'DIP-Signature does not verify')
  const parsed = parseXml(bytes)
  assert.ok(parsed.ok, `the answer is not XML: ${bytes.toString('utf8').slice(0, 200)}`)
  return { http: res.statusCode, headers: res.headers, root: parsed.value }
}

/** Checks the envelope of an answer and returns its head. */
function checkEnvelope(answer: Answer, http: number, code: string | undefined) {
  const head = readResponseHead(answer.root)
  assert.ok(head.ok, 'the answer is not a <response> envelope')
  const names = childElements(answer.root).map((e) => e.name)
  assert.equal(answer.http, http, `HTTP ${answer.http} (code ${head.value.code}), expected ${http}`)
  if (code === undefined) {
    assert.equal(head.value.status, 'success')
    assert.equal(head.value.code, undefined)
  } else {
    assert.ok(isWireCode(code), `${code} is not a wire code`)
    assert.equal(head.value.code, code)
    const status = (WIRE_CODES[code] as WireCode).status
    assert.equal(head.value.status, status)
    // status, code, description, then for not supported: supported
    const order = status === 'not supported' ? ['status', 'code', 'description', 'supported'] : ['status', 'code', 'description']
    assert.deepEqual(names, order)
    if (status === 'not supported') assert.deepEqual(head.value.supported, SUPPORTED)
    else assert.equal(head.value.supported, undefined)
  }
  return { head: head.value, names }
}

// ---- (a) requests through the real HTTP stack ----

describe('fixtures/requests through HTTP', () => {
  const expected = readJson<RequestExpected>('requests/expected.json')
  const files = filesMatchExpected('requests', expected)
  const seedFile = 'put-seed.valid.xml'
  /** id -> served facts of the seed models */
  const seed = new Map<string, { hash: string; version: string; updateTime: string }>()
  let shared: TestNode

  before(async () => {
    shared = await startNode()
    const answer = await post(shared, '/api/sync/put/', fixtureBytes(`requests/${seedFile}`))
    checkEnvelope(answer, 200, undefined)
    const rows = readPutAnswer(answer.root)
    assert.ok(rows.ok)
    assert.deepEqual(
      rows.value.map((r) => r.status),
      expected[seedFile]!.rows!.map(() => 'stored'),
    )
    const models = childElements(childElements(parse(fixtureBytes(`requests/${seedFile}`))).find((e) => e.name === 'models')!)
    models.forEach((m, n) => {
      const staged = stageModel(m, registry, DEFAULT_LIMITS)
      assert.ok(staged.ok)
      assert.equal(staged.value.idText, rows.value[n]!.id)
      seed.set(staged.value.idText, { hash: rows.value[n]!.hash!, version: m.attrs.version!, updateTime: staged.value.meta.updateTime })
    })
  })
  after(async () => {
    await shared.close()
  })

  for (const file of files) {
    const exp = expected[file]!
    test(file, async () => {
      const isPut = exp.path === 'put'
      assert.equal(exp.code === undefined, file.endsWith('.valid.xml'), 'valid fixtures succeed, invalid ones have a code')
      const node = isPut ? await startNode() : shared
      try {
        const answer = await post(node, exp.url ?? `/api/sync/${exp.path}/`, fixtureBytes(`requests/${file}`), exp.contentType)
        const { names } = checkEnvelope(answer, exp.http, exp.code)
        if (exp.code !== undefined) return
        if (exp.path === 'list') {
          assert.ok(names[0] === 'status' && names[1] === 'models' && names[2] === 'next')
          const list = readListAnswer(answer.root)
          assert.ok(list.ok)
          assert.deepEqual(
            list.value.rows.map((r) => r.id),
            exp.ids,
          )
          // Rows carry the stored hash, the model version as received and the update-time as written.
          for (const r of list.value.rows) {
            const { hash, version, updateTime } = seed.get(r.id)!
            assert.deepEqual({ hash: r.hash, version: r.version, updateTime: r.updateTime }, { hash, version, updateTime })
          }
          assert.equal(list.value.more, false)
          assert.notEqual(list.value.next, '')
        } else if (exp.path === 'get') {
          assert.deepEqual(names, ['status', 'models'])
          const models = readGetAnswer(answer.root)
          assert.ok(models.ok)
          const ids: string[] = []
          for (const el of models.value) {
            // Served exactly as stored: same hash, same model version, still verifies.
            const staged = stageModel(el, registry, DEFAULT_LIMITS)
            assert.ok(staged.ok, staged.ok ? '' : staged.rejection.code)
            ids.push(staged.value.idText)
            assert.equal(staged.value.hash, seed.get(staged.value.idText)!.hash)
            assert.equal(staged.value.version, seed.get(staged.value.idText)!.version)
            assert.equal(await verifySignatures(staged.value), undefined)
            assert.equal(checkAttachments(staged.value), undefined)
            assert.equal(staged.value.attachmentData.size, staged.value.meta.attachments.length)
          }
          assert.deepEqual(ids, exp.ids)
        } else {
          assert.deepEqual(names, ['status', 'results'])
          const rows = readPutAnswer(answer.root)
          assert.ok(rows.ok)
          assert.deepEqual(
            rows.value.map((r) => ({ status: r.status, code: r.code, hash: r.hash, id: r.id ?? null })),
            exp.rows!.map((r) => ({ status: r.status, code: r.code, hash: r.hash, id: r.id })),
          )
        }
      } finally {
        if (isPut) await node.close()
      }
    })
  }

  // Generated bodies (too large or too deep to keep as files).
  const listOf = (inner: string) => `<request type="list" version="1.0"><model name="post" version="1.1">${inner}</model></request>`
  const getOf = (n: number) => `<request type="get" version="1.0"><model name="post" version="1.1">${Array.from({ length: n }, (_, i) => idXml(K1, String(i))).join('')}</model></request>`

  test('depth 64 is accepted (unknown filter elements)', async () => {
    const answer = await post(shared, '/api/sync/list/', listOf('<x>'.repeat(62) + '</x>'.repeat(62)))
    checkEnvelope(answer, 200, undefined)
  })
  test('depth 65 is DIP_XML_INVALID', async () => {
    const answer = await post(shared, '/api/sync/list/', listOf('<x>'.repeat(63) + '</x>'.repeat(63)))
    checkEnvelope(answer, 400, 'DIP_XML_INVALID')
  })
  test('depth 50,000 is DIP_XML_INVALID', async () => {
    const answer = await post(shared, '/api/sync/list/', listOf('<x>'.repeat(50_000) + '</x>'.repeat(50_000)))
    checkEnvelope(answer, 400, 'DIP_XML_INVALID')
  })
  test('1,000 ids per get are served, 1,001 are DIP_REQUEST_TOO_LARGE', async () => {
    checkEnvelope(await post(shared, '/api/sync/get/', getOf(DEFAULT_LIMITS.maxIdsPerGet)), 200, undefined)
    checkEnvelope(await post(shared, '/api/sync/get/', getOf(DEFAULT_LIMITS.maxIdsPerGet + 1)), 413, 'DIP_REQUEST_TOO_LARGE')
  })
  test('a body of exactly 16 MiB is read, one byte more is DIP_REQUEST_TOO_LARGE', async () => {
    const body = listOf('')
    const exact = Buffer.alloc(DEFAULT_LIMITS.maxBodyBytes, 0x20)
    exact.write(body, 0, 'utf8')
    checkEnvelope(await post(shared, '/api/sync/list/', exact), 200, undefined)
    const over = Buffer.alloc(DEFAULT_LIMITS.maxBodyBytes + 1, 0x20)
    over.write(body, 0, 'utf8')
    checkEnvelope(await post(shared, '/api/sync/list/', over), 413, 'DIP_REQUEST_TOO_LARGE')
  })
  test('the attachment of a seed model is served at the blob path', async () => {
    for (const path of [ATTACHMENT_HASH, ATTACHMENT_HASH.replace(':', '%3A')]) {
      const res = await request(`${shared.base}/api/sync/blob/${path}`)
      const bytes = Buffer.from(await res.body.arrayBuffer())
      assert.equal(res.statusCode, 200)
      assert.equal(res.headers['content-type'], 'text/plain')
      assert.ok(bytes.equals(ATTACHMENT_BYTES))
    }
    const res = await request(`${shared.base}/api/sync/blob/${sha256('not held')}`)
    const root = parse(Buffer.from(await res.body.arrayBuffer()))
    checkEnvelope({ http: res.statusCode, headers: res.headers, root }, 404, 'DIP_NOT_FOUND')
  })
})

// ---- (b) models ----

async function ingestOne(xml: Uint8Array | string): Promise<{ result: 'ok' | 'rejected'; code?: string; staged?: ReturnType<typeof stageModel> }> {
  const staged = stageModel(parse(xml), registry, DEFAULT_LIMITS)
  if (!staged.ok) return { result: 'rejected', code: staged.rejection.code, staged }
  const store = await GraphStore.openMemory()
  try {
    const [row] = await new Ingest(store).accept([staged.value])
    assert.ok(row)
    if (row.status === 'rejected') return { result: 'rejected', code: row.code, staged }
    assert.equal(row.status, 'stored')
    return { result: 'ok', staged }
  } finally {
    await store.close()
  }
}

describe('fixtures/models', () => {
  const expected = readJson<ModelExpected>('models/expected.json')
  for (const file of filesMatchExpected('models', expected)) {
    const exp = expected[file]!
    test(file, async () => {
      assert.equal(exp.result === 'ok', file.endsWith('.valid.xml'))
      const out = await ingestOne(fixtureBytes(`models/${file}`))
      if (exp.result === 'rejected') {
        assert.deepEqual({ result: out.result, code: out.code }, { result: 'rejected', code: exp.code })
        return
      }
      assert.equal(out.result, 'ok', `rejected with ${out.code}`)
      assert.ok(out.staged?.ok)
      const m = out.staged.value
      assert.equal(m.idText, exp.id)
      assert.equal(m.hash, exp.hash)
      assert.equal(m.hash, sha256(m.contentBytes))
      assert.equal(m.signatures.length, exp.signatures, 'every signature is kept, unknown types included')
      // What a node stores and relays stages to the same model again.
      const again = stageModel(parse(m.xml), registry, DEFAULT_LIMITS)
      assert.ok(again.ok)
      assert.equal(again.value.hash, m.hash)
      assert.equal(again.value.version, m.version)
      assert.equal(again.value.signatures.length, exp.signatures)
      assert.equal(await verifySignatures(again.value), undefined)
    })
  }

  // Content size limit (PROTOCOL.md §1): 65,536 canonical bytes, tags included.
  const sized = (bytes: number) => {
    const base = postContent({ localId: '900', text: '', pub: '2017-01-01T00:00:00Z' })
    const pad = bytes - base.length - '<text></text>'.length + '<text/>'.length
    const content = base.replace('<text/>', `<text>${'x'.repeat(pad)}</text>`)
    assert.equal(Buffer.byteLength(content), bytes)
    return modelXml({ content, signatures: [signedBy(K1, content)] })
  }
  test('content of exactly 65,536 bytes is stored', async () => {
    assert.equal((await ingestOne(sized(DEFAULT_LIMITS.maxContentBytes))).result, 'ok')
  })
  test('content of 65,537 bytes is DIP_MODEL_TOO_LARGE', async () => {
    const out = await ingestOne(sized(DEFAULT_LIMITS.maxContentBytes + 1))
    assert.deepEqual({ result: out.result, code: out.code }, { result: 'rejected', code: 'DIP_MODEL_TOO_LARGE' })
  })
  test('the fixture keys are the RFC 8032 test keys', () => {
    // RFC 8032 §7.1 test 1: the signature of the empty message.
    assert.equal(
      signHex(K1, ''),
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
    )
    assert.equal(idText(K2, '1'), 'ed25519::3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c::1')
  })
})

// ---- (c) answers as a client reads them ----

describe('fixtures/responses', () => {
  const expected = readJson<ResponseExpected>('responses/expected.json')
  for (const file of filesMatchExpected('responses', expected)) {
    const exp = expected[file]!
    test(file, () => {
      assert.equal(exp.code === undefined, file.endsWith('.valid.xml'))
      const root = parse(fixtureBytes(`responses/${file}`))
      const head = readResponseHead(root)
      if (exp.kind === 'head' && exp.code !== undefined) {
        assert.equal(head.ok ? undefined : head.error.code, exp.code)
        return
      }
      assert.ok(head.ok)
      assert.equal(head.value.status, exp.status)
      if (exp.kind === 'head') {
        assert.equal(head.value.code, exp.answerCode)
        assert.deepEqual(head.value.supported, exp.supported)
      } else if (exp.kind === 'list') {
        const list = readListAnswer(root)
        if (exp.code !== undefined) return assert.equal(list.ok ? undefined : list.error.code, exp.code)
        assert.ok(list.ok)
        assert.deepEqual(
          { ids: list.value.rows.map((r) => r.id), next: list.value.next, more: list.value.more },
          { ids: exp.ids, next: exp.next, more: exp.more },
        )
      } else if (exp.kind === 'put') {
        const rows = readPutAnswer(root)
        assert.ok(rows.ok)
        assert.deepEqual(
          rows.value.map((r) => ({ status: r.status, code: r.code, hash: r.hash, id: r.id })),
          exp.rows!.map((r) => ({ status: r.status, code: r.code, hash: r.hash, id: r.id })),
        )
      }
    })
  }
})

// ---- (d) canonical form ----

describe('fixtures/canonical', () => {
  const names = readdirSync(join(FIXTURES, 'canonical'))
    .filter((f) => f.endsWith('.input.xml'))
    .map((f) => f.slice(0, -'.input.xml'.length))
    .sort()
  test('every input has its canonical twin and nothing else is there', () => {
    const all = readdirSync(join(FIXTURES, 'canonical')).sort()
    assert.deepEqual(all, names.flatMap((n) => [`${n}.canonical.xml`, `${n}.input.xml`]).sort())
    assert.ok(names.length > 0)
  })
  for (const name of names) {
    test(name, () => {
      const want = fixtureBytes(`canonical/${name}.canonical.xml`)
      const got = Buffer.from(canonicalize(parse(fixtureBytes(`canonical/${name}.input.xml`))), 'utf8')
      assert.equal(got.toString('utf8'), want.toString('utf8'))
      assert.ok(got.equals(want))
      // The canonical form is a fixed point.
      assert.equal(canonicalize(parse(want)), want.toString('utf8'))
    })
  }
})

// ---- (e) ids ----

describe('fixtures/ids', () => {
  const lines = (file: string) => fixtureBytes(file).toString('utf8').split('\n').filter((l) => l !== '')
  const valid = lines('ids.valid.txt')
  const invalid = lines('ids.invalid.txt')
  test('the lists are not empty', () => {
    assert.ok(valid.length > 0 && invalid.length > 0)
  })
  for (const text of valid) {
    test(`valid: ${text}`, () => {
      const id = parseIdText(text)
      assert.ok(id.ok, id.ok ? '' : id.error.code)
      assert.equal(formatId(id.value), text)
      const el = parseIdElement(parse(idElementXml(id.value)))
      assert.ok(el.ok)
      assert.equal(formatId(el.value), text)
    })
  }
  for (const text of invalid) {
    test(`invalid: ${text}`, () => {
      const id = parseIdText(text)
      assert.equal(id.ok ? 'accepted' : id.error.code, 'DIP_ID_INVALID')
    })
  }
})

// ---- (f) spec samples are fixtures; fixtures are generated ----

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f)
    return statSync(p).isDirectory() ? walk(p) : [p]
  })
}

describe('spec/ and fixtures/', () => {
  // Samples are xml (wire bodies) or json (the manifest); each must be a fixture file.
  for (const lang of ['xml', 'json']) {
    test(`every \`\`\`${lang} block in spec/*.md is the content of a fixture file`, () => {
      const contents = new Set(walk(FIXTURES).map((p) => readFileSync(p, 'utf8')))
      const docs = readdirSync(SPEC).filter((f) => f.endsWith('.md'))
      assert.ok(docs.length > 0)
      let blocks = 0
      for (const doc of docs) {
        const md = readFileSync(join(SPEC, doc), 'utf8')
        for (const m of md.matchAll(new RegExp(`^\`\`\`${lang}\n([\\s\\S]*?)^\`\`\`$`, 'gm'))) {
          blocks++
          const block = m[1]!.replace(/\n$/, '')
          assert.ok(contents.has(block) || contents.has(block + '\n'), `${doc}: a ${lang} sample is not a fixture file:\n${block.slice(0, 300)}`)
        }
      }
      assert.ok(blocks > 0, `spec/ has no ${lang} samples`)
      // A fence the pattern above cannot see (indented, say) would escape the check.
      const fences = docs.reduce((n, doc) => n + (readFileSync(join(SPEC, doc), 'utf8').match(new RegExp('```' + lang + '\\b', 'g'))?.length ?? 0), 0)
      assert.equal(fences, blocks, `every \`\`\`${lang} fence starts a line and is closed`)
    })
  }

  test('the generated fixtures on disk are exactly what test/tools/make-fixtures.ts writes', () => {
    const files = fixtureFiles()
    for (const [path, data] of files) {
      const file = join(FIXTURES, path)
      assert.ok(existsSync(file), `missing ${path}: run node dist/test/tools/make-fixtures.js --write`)
      assert.ok(readFileSync(file).equals(data), `${path} differs from the generator`)
    }
    for (const dir of ['models', 'requests', 'responses', 'canonical', 'manifest']) {
      for (const p of walk(join(FIXTURES, dir))) {
        const rel = relative(FIXTURES, p).split('\\').join('/')
        assert.ok(files.has(rel), `${rel} is not made by the generator`)
      }
    }
  })
})

// ---- (g) the manifest sample ----

describe('fixtures/manifest', () => {
  const text = fixtureBytes('manifest/manifest.valid.json').toString('utf8')
  const m = JSON.parse(text) as Record<string, unknown> & { node: string; life: number; limits: Record<string, number>; proofs: Proof[]; rotations: unknown[] }

  test('has exactly the fields of PROTOCOL.md §9, in its order', () => {
    assert.deepEqual(Object.keys(m), ['node', 'life', 'requests', 'models', 'limits', 'proofs', 'rotations'])
    assert.equal(m.node, 'ed25519::' + MANIFEST_NODE.publicHex)
    assert.deepEqual({ requests: m.requests, models: m.models }, SUPPORTED)
    // PROTOCOL.md §9's four limits with §1's defaults, then dipd's additions (spec/trust.md).
    assert.deepEqual(Object.keys(m.limits), [
      'maxBodyBytes',
      'maxIdsPerGet',
      'maxListPage',
      'maxContentBytes',
      'maxAttachmentBytes',
      'maxFutureSeconds',
      'rateLimitMax',
      'rateLimitWindowSeconds',
    ])
    const { maxBodyBytes, maxIdsPerGet, maxListPage, maxContentBytes } = m.limits
    assert.deepEqual({ maxBodyBytes, maxIdsPerGet, maxListPage, maxContentBytes }, { maxBodyBytes: 16777216, maxIdsPerGet: 1000, maxListPage: 1000, maxContentBytes: 65536 })
  })

  test('its proof verifies (dip-proof:<turf>:<life>) with the node key; a changed turf or life does not', () => {
    assert.equal(m.proofs.length, 1)
    const p = m.proofs[0]!
    assert.deepEqual(Object.keys(p), ['turf', 'life', 'key', 'sign'])
    assert.equal(p.turf, MANIFEST_TURF)
    assert.equal(p.key, m.node)
    assert.equal(p.life, m.life)
    assert.ok(verifyProof(p))
    assert.ok(!verifyProof({ ...p, turf: 'example.org' }))
    assert.ok(!verifyProof({ ...p, life: p.life + 1 }))
  })

  test('its rotation (dip-rotate:<from>:<to>:<life>) leads from the first key to the node key', () => {
    assert.equal(m.rotations.length, 1)
    assert.deepEqual(Object.keys(m.rotations[0] as object), ['from', 'to', 'life', 'sign'])
    const from = 'ed25519::' + MANIFEST_FROM.publicHex
    const moved = followRotations({ key: from, life: 1 }, m.rotations, m.node)
    assert.ok(moved.ok, moved.ok ? '' : moved.error.code)
    assert.deepEqual(moved.value, { key: m.node, life: m.life })
    // A pin already at life 2 cannot be moved by it: life must grow.
    const stale = followRotations({ key: from, life: 2 }, m.rotations, m.node)
    assert.equal(stale.ok ? 'ok' : stale.error.code, 'DIP_ROTATION_LIFE_INVALID')
  })

  test('is what a node that rotated K1 -> K2 and proved example.com serves, signed by K2', async () => {
    const identity = new NodeIdentity({ current: keyPairFromSecret(Buffer.from(MANIFEST_FROM.secretHex, 'hex')) })
    identity.rotate(keyPairFromSecret(Buffer.from(MANIFEST_NODE.secretHex, 'hex')))
    identity.addProof(MANIFEST_TURF)
    const store = await GraphStore.openMemory()
    const app = buildApp({ store, ingest: new Ingest(store), registry, limits: DEFAULT_LIMITS, identity, rateLimit: { max: 3000, windowSeconds: 60 } })
    try {
      const res = await app.inject({ method: 'GET', url: '/.well-known/dip.json' })
      assert.equal(res.statusCode, 200)
      assert.equal(res.headers['content-type'], 'application/json; charset=utf-8')
      // Served without whitespace; the sample is the same JSON, indented.
      assert.equal(res.body, JSON.stringify(m))
      assert.equal(res.headers['dip-node-key'], m.node)
      assert.ok(verifyHex(MANIFEST_NODE.publicHex, Buffer.concat([Buffer.from('dip-response:'), res.rawPayload]), String(res.headers['dip-signature'])))
    } finally {
      await app.close()
      await store.close()
    }
  })
})
