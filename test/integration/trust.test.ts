// Trust between nodes (PROTOCOL.md §8, §9) with real daemons (LevelDB in temp
// folders, HTTP on 127.0.0.1:0) and small fake peers: trust on first use,
// a key changed without a rotation (refused), a signed rotation (followed),
// forged rotations and proofs (refused), re-pinning, node-wide bans, per-peer
// sender policy, version negotiation, the rate limit and DIR/settings.json.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { startDaemon, type Daemon, type DaemonConfig } from '../../src/daemon.js'
import { initDataDir } from '../../src/data-dir.js'
import { DipError } from '../../src/errors.js'
import { generateKeyPair, sign, verify, type NodeKeyPair } from '../../src/crypto/ed25519.js'
import { makeProof, makeRotation, type Proof, type Rotation } from '../../src/trust/chain.js'
import { ModelRegistry } from '../../src/model/registry.js'
import { postModel } from '../../src/model/post/post.js'
import type { StagedModel } from '../../src/model/signed.js'
import { listXml, listRequestXml } from '../../src/protocol/envelope.js'
import { parseXml } from '../../src/protocol/xml.js'
import { pull } from '../../src/sync/pull.js'
import type { PeerRecord } from '../../src/store/graph-store.js'
import {
  dip,
  fakePeer,
  getModels,
  httpGet,
  httpPost,
  idsInGet,
  listAll,
  putModels,
  removeDir,
  signPost,
  tempDir,
  verifyDirect,
  verifyServed,
  POST,
  type FakePeer,
  type FakeReply,
  type HttpAnswer,
} from './helpers.js'

// ---- helpers of this file ----

const RESPONSE_PREFIX = Buffer.from('dip-response:')
const nodeKeyOf = (pair: NodeKeyPair) => `ed25519::${pair.publicKeyHex}`
const hexOf = (nodeKey: string) => nodeKey.replace(/^ed25519::/, '')
const keyOfId = (id: string) => id.split('::')[1]!

/** Rejects with a DipError of exactly `code` (the assertion message shows the code actually thrown). */
async function rejectsWith(p: Promise<unknown>, code: string, what: string): Promise<void> {
  let caught: unknown
  try {
    await p
  } catch (e) {
    caught = e
  }
  assert.ok(caught !== undefined, `${what}: expected ${code}, but it succeeded`)
  assert.ok(caught instanceof DipError, `${what}: expected a DipError ${code}, got ${String(caught)}`)
  assert.equal(caught.code, code, `${what}: expected ${code}, got ${caught.code} (${caught.message})`)
}

/** DIP-Node-Key is `nodeKey` and DIP-Signature verifies over "dip-response:" + the body (PROTOCOL.md §8). */
function assertSigned(h: HttpAnswer, nodeKey: string, what: string): void {
  assert.equal(h.headers['dip-node-key'], nodeKey, `${what}: DIP-Node-Key`)
  const sig = h.headers['dip-signature']
  assert.equal(typeof sig, 'string', `${what}: DIP-Signature present`)
  assert.match(sig as string, /^[0-9a-f]{128}$/, `${what}: DIP-Signature is 128 lowercase hex`)
  assert.ok(verify(hexOf(nodeKey), Buffer.concat([RESPONSE_PREFIX, h.body]), Buffer.from(sig as string, 'hex')), `${what}: DIP-Signature verifies with ${nodeKey}`)
}

interface ManifestJson {
  node: string
  life: number
  requests: Record<string, string>
  models: Record<string, string>
  limits: Record<string, number>
  proofs: Proof[]
  rotations: Rotation[]
}

async function manifestOf(base: string): Promise<{ http: HttpAnswer; json: ManifestJson }> {
  const http = await httpGet(`${base}/.well-known/dip.json`)
  assert.equal(http.status, 200, 'the manifest answers 200')
  return { http, json: JSON.parse(http.body.toString('utf8')) as ManifestJson }
}

/** Sorted global ids a node holds (its own store, every page). */
async function held(d: Daemon): Promise<string[]> {
  return (await d.node.list()).map((r) => r.id).sort()
}

async function peerRecord(d: Daemon, url: string): Promise<PeerRecord | undefined> {
  return (await d.node.peers()).find((p) => p.url === url)
}

/** A daemon in a new temp folder (pushed to `dirs` for cleanup). */
async function startIn(dirs: string[], prefix: string, extra: Partial<DaemonConfig> = {}): Promise<Daemon> {
  const dir = await tempDir(prefix)
  dirs.push(dir)
  return startDaemon({ dataDir: dir, host: '127.0.0.1', port: 0, ...extra })
}

/** Stops `old` and starts a daemon on another folder (a new identity) on the same port: the same URL, another key. */
async function restartElsewhere(old: Daemon, dirs: string[], prefix: string): Promise<Daemon> {
  const port = Number(new URL(old.url).port)
  await old.close()
  const dir = await tempDir(prefix)
  dirs.push(dir)
  const d = await startDaemon({ dataDir: dir, host: '127.0.0.1', port })
  assert.equal(d.url, old.url, 'test setup: the new daemon answers at the old URL')
  return d
}

/** A base64 signature with one bit flipped (still 64 bytes, still well-formed base64). */
function flipB64(b64: string): string {
  const b = Buffer.from(b64, 'base64')
  b[10] = b[10]! ^ 0x01
  return b.toString('base64')
}

let seq = 0
const nextTime = () => new Date(Date.UTC(2024, 2, 1) + ++seq * 1000).toISOString().replace('.000Z', 'Z')
/** A post by `pair` with a unique local id and a strictly growing update-time. */
const post = (pair: NodeKeyPair, extra: { text?: string; updateTime?: string } = {}) => signPost(pair, { localId: `p${++seq}`, updateTime: nextTime(), ...extra })

// ---- a fake DIP peer over a set of models, with a configurable manifest ----

interface Board {
  peer: FakePeer
  url: string
  models: StagedModel[]
  /** the JSON served at /.well-known/dip.json; undefined = 404 */
  manifest: Record<string, unknown> | undefined
  /** every request: path and body */
  requests: { type: string; body: string }[]
  /** answers a request before the default behaviour when it returns a reply */
  intercept?: ((type: string, body: Buffer) => FakeReply | undefined) | undefined
}

function baseManifest(key: NodeKeyPair, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    node: nodeKeyOf(key),
    life: 1,
    requests: { list: '1.0', get: '1.0', put: '1.0' },
    models: { post: '1.1' },
    limits: { maxBodyBytes: 16777216, maxIdsPerGet: 1000, maxListPage: 1000, maxContentBytes: 65536 },
    proofs: [],
    rotations: [],
    ...extra,
  }
}

async function fakeBoard(key: NodeKeyPair): Promise<Board> {
  const board = { models: [], manifest: baseManifest(key), requests: [], intercept: undefined } as unknown as Board
  board.peer = await fakePeer(key, (type, body) => {
    board.requests.push({ type, body: body.toString('utf8') })
    const i = board.intercept?.(type, body)
    if (i) return i
    if (type === '/.well-known/dip.json') {
      if (!board.manifest) return { status: 404, contentType: 'text/plain', body: 'no manifest' }
      return { contentType: 'application/json; charset=utf-8', body: JSON.stringify(board.manifest) }
    }
    if (type === 'list') {
      const rows = board.models.map((m) => ({ name: 'post', version: m.version, id: m.idText, updateTime: m.meta.updateTime, hash: m.hash }))
      return { body: listXml(rows, 'cursor-1', false) }
    }
    if (type === 'get') {
      const byId = new Map(board.models.map((m) => [m.idText, m.xml]))
      return { body: `<response><status>success</status><models>${idsInGet(body).map((id) => byId.get(id) ?? '').join('')}</models></response>` }
    }
    return { status: 501, body: '<response><status>not supported</status><code>DIP_REQUEST_NOT_SUPPORTED</code><description/></response>' }
  })
  board.url = board.peer.url
  return board
}

/** The version attributes of a DIP request body: the request's own and its model's. */
function versionsOf(body: string): { request: string | undefined; model: string | undefined } {
  const root = parseXml(Buffer.from(body, 'utf8'))
  assert.ok(root.ok, 'a request the client sent is XML')
  const model = root.value.children.find((c) => typeof c !== 'string' && c.name === 'model')
  return { request: root.value.attrs.version, model: typeof model === 'object' ? model.attrs.version : undefined }
}

// ---- 1, 2, 5: trust on first use, a new key without rotation, re-pinning ----

describe('trust on first use; a key change without rotation is refused until re-pinned', () => {
  const dirs: string[] = []
  let A: Daemon
  let B: Daemon
  let aKey: string
  let firstIds: string[]

  before(async () => {
    A = await startIn(dirs, 'tofu-A')
    B = await startIn(dirs, 'tofu-B')
    aKey = A.node.nodeKey
    firstIds = []
    for (let i = 0; i < 3; i++) firstIds.push((await A.node.author('post', { title: `a${i}`, text: 'first', tags: ['t'] })).id)
  })

  after(async () => {
    await A?.close().catch(() => {})
    await B?.close().catch(() => {})
    for (const d of dirs) await removeDir(d)
  })

  test('the first pull pins the peer key under the normalised URL, with life 1 and counts', async () => {
    assert.equal((await B.node.peers()).length, 0, 'no peer before the first sync')
    const s = await B.node.pull(`${A.url}/`, {})
    assert.equal(s.stored, 3)
    const peers = await B.node.peers()
    assert.equal(peers.length, 1)
    const p = peers[0]!
    assert.equal(p.url, A.url, 'the URL as DipClient normalises it (no trailing slash)')
    assert.equal(p.key, aKey, "the pinned key is A's node key")
    assert.equal(p.life, 1)
    assert.equal(p.pulls, 1)
    assert.equal(p.stored, 3)
    assert.equal(p.rejected, 0)
    assert.equal(typeof p.pinnedAt, 'string')
    assert.ok(!Number.isNaN(Date.parse(p.pinnedAt!)), 'pinnedAt is a time')
    assert.deepEqual(await held(B), [...firstIds].sort())
    // A second pull keeps the pin and adds up.
    await A.node.author('post', { title: 'a3', text: 'more', tags: [] })
    const s2 = await B.node.pull(A.url, {})
    assert.equal(s2.stored, 1)
    const p2 = (await peerRecord(B, A.url))!
    assert.equal(p2.key, aKey)
    assert.equal(p2.pulls, 2)
    assert.equal(p2.stored, 4)
    assert.equal(p2.pinnedAt, p.pinnedAt, 'the pin time stays while the key stays')
  })

  test('a peer restarted with a new key and no rotation is refused: DIP_PEER_KEY_CHANGED, nothing stored', async () => {
    const before = await held(B)
    const pinBefore = await peerRecord(B, A.url)
    A = await restartElsewhere(A, dirs, 'tofu-A2')
    assert.notEqual(A.node.nodeKey, aKey, 'test setup: a new identity')
    const fresh = await A.node.author('post', { title: 'by the new key', text: 'new', tags: ['t'] })
    await rejectsWith(B.node.pull(A.url, {}), 'DIP_PEER_KEY_CHANGED', 'pull after the key changed')
    assert.deepEqual(await held(B), before, "B's store is unchanged")
    assert.equal(await B.node.show(fresh.id), undefined, 'the new model is absent')
    assert.deepEqual(await peerRecord(B, A.url), pinBefore, 'the pin is unchanged')
    // A filtered pull (another checkpoint) is refused as well.
    await rejectsWith(B.node.pull(A.url, { tags: ['t'] }), 'DIP_PEER_KEY_CHANGED', 'filtered pull after the key changed')
    assert.deepEqual(await held(B), before)
  })

  test('re-pin with an explicit key: a wrong key still refuses; the right one lets the next pull store the new model', async () => {
    const before = await held(B)
    await rejectsWith(B.node.repin(A.url, 'ed25519::nothex'), 'DIP_USAGE', 'repin with a malformed key')
    const wrong = nodeKeyOf(generateKeyPair())
    const r1 = await B.node.repin(A.url, wrong)
    assert.equal(r1.to, wrong)
    await rejectsWith(B.node.pull(A.url, {}), 'DIP_PEER_KEY_CHANGED', 'pull with a wrong key re-pinned')
    assert.deepEqual(await held(B), before)

    const r2 = await B.node.repin(`${A.url}/`, A.node.nodeKey)
    assert.equal(r2.url, A.url)
    assert.equal(r2.from, wrong)
    assert.equal(r2.to, A.node.nodeKey)
    const s = await B.node.pull(A.url, {})
    assert.equal(s.stored, 1, 'the model authored under the new key is stored')
    const now = await held(B)
    assert.equal(now.length, before.length + 1)
    const added = now.filter((id) => !before.includes(id))
    assert.equal(added.length, 1)
    assert.equal(keyOfId(added[0]!), A.node.deps.identity.current.publicKeyHex)
    const p = (await peerRecord(B, A.url))!
    assert.equal(p.key, A.node.nodeKey)
    assert.equal(p.life, 1)
  })

  test('re-pin from the manifest: after another key change, repin(url) takes the key the peer publishes now', async () => {
    const oldKey = A.node.nodeKey
    A = await restartElsewhere(A, dirs, 'tofu-A3')
    const fresh = await A.node.author('post', { title: 'third key', text: 'x', tags: [] })
    await rejectsWith(B.node.pull(A.url, {}), 'DIP_PEER_KEY_CHANGED', 'pull after the second key change')
    assert.equal(await B.node.show(fresh.id), undefined)
    // As `dipd peers repin URL` asks B's daemon: with no --key, JSON carries the missing argument as null.
    const info = JSON.parse(await readFile(join(dirs[1]!, 'daemon.json'), 'utf8')) as { token: string }
    const res = await request(`${B.url}/api/local/call`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${info.token}` },
      body: JSON.stringify({ op: 'repin', args: [A.url, undefined] }),
    })
    const text = await res.body.text()
    assert.equal(res.statusCode, 200, text.slice(0, 200))
    const r = (JSON.parse(text) as { result: { from: string; to: string } }).result
    assert.equal(r.from, oldKey)
    assert.equal(r.to, A.node.nodeKey)
    const s = await B.node.pull(A.url, {})
    assert.equal(s.stored, 1)
    assert.notEqual(await B.node.show(fresh.id), undefined, 'the new model is stored')
    assert.equal((await peerRecord(B, A.url))!.key, A.node.nodeKey)
  })
})

// ---- 3: a signed rotation is followed ----

describe('a key rotation signed by the pinned key is followed', () => {
  const dirs: string[] = []
  let A: Daemon
  let B: Daemon
  let oldKey: string
  let oldIds: string[]

  before(async () => {
    A = await startIn(dirs, 'rot-A')
    B = await startIn(dirs, 'rot-B')
    oldKey = A.node.nodeKey
    oldIds = [(await A.node.author('post', { title: 'before', text: 'old key', tags: ['r'] })).id, (await A.node.author('post', { title: 'before 2', text: 'old key', tags: [] })).id]
    const s = await B.node.pull(A.url, {})
    assert.equal(s.stored, 2)
    assert.equal((await peerRecord(B, A.url))!.key, oldKey)
  })

  after(async () => {
    await A?.close().catch(() => {})
    await B?.close().catch(() => {})
    for (const d of dirs) await removeDir(d)
  })

  test('a rotation whose key file cannot be written changes nothing: the node keeps signing with its key at life 1', async () => {
    // node.key made a folder that is not empty: the rename over it fails, as a full disk would fail the write.
    const keyFile = join(dirs[0]!, 'node.key')
    await rename(keyFile, `${keyFile}.aside`)
    await mkdir(join(keyFile, 'in-the-way'), { recursive: true })
    try {
      await assert.rejects(A.node.rotateKey())
      await assert.rejects(A.node.addProof('example.org'))
      assert.equal(A.node.nodeKey, oldKey)
      const { json } = await manifestOf(A.url)
      assert.deepEqual([json.node, json.life, json.rotations.length, json.proofs.length], [oldKey, 1, 0, 0])
    } finally {
      await rm(keyFile, { recursive: true })
      await rename(`${keyFile}.aside`, keyFile)
    }
  })

  test('rotate; the next pull follows, moves the pin to the new key at life 2, old ids keep verifying', async () => {
    const rotation = await A.node.rotateKey()
    const newKey = A.node.nodeKey
    assert.notEqual(newKey, oldKey)
    assert.equal(rotation.from, oldKey)
    assert.equal(rotation.to, newKey)
    assert.equal(rotation.life, 2)

    const fresh = await A.node.author('post', { title: 'after', text: 'new key', tags: ['r'] })
    assert.equal(keyOfId(fresh.id), hexOf(newKey), 'a post authored after the rotation carries the new key in its id')
    for (const id of oldIds) assert.equal(keyOfId(id), hexOf(oldKey))

    const s = await B.node.pull(A.url, {})
    assert.equal(s.stored, 1)
    const p = (await peerRecord(B, A.url))!
    assert.equal(p.key, newKey, 'the pin moved to the new key')
    assert.equal(p.life, 2)
    assert.equal(p.pulls, 2)
    assert.deepEqual(await held(B), [...oldIds, fresh.id].sort(), 'old posts keep their ids; the new one is there')

    // Every copy verifies, on A and on B.
    for (const base of [A.url, B.url]) {
      const els = await getModels(base, [...oldIds, fresh.id])
      assert.equal(els.length, 3)
      for (const el of els) {
        const v = await verifyServed(el)
        assert.equal(v.code, undefined, `a model served by ${base} verifies`)
        assert.ok(verifyDirect(v.staged!))
      }
    }
    // A later pull goes on without a word.
    const s2 = await B.node.pull(A.url, {})
    assert.equal(s2.stored, 0)
    assert.equal((await peerRecord(B, A.url))!.life, 2)
  })

  test("A's manifest lists the rotation and life 2, and A's answers are signed by the new key", async () => {
    const newKey = A.node.nodeKey
    const { http, json } = await manifestOf(A.url)
    assertSigned(http, newKey, 'manifest')
    assert.equal(json.node, newKey)
    assert.equal(json.life, 2)
    assert.equal(json.rotations.length, 1)
    const r = json.rotations[0]!
    assert.equal(r.from, oldKey)
    assert.equal(r.to, newKey)
    assert.equal(r.life, 2)
    assert.match(r.sign, /^[A-Za-z0-9+/]{86}==$/, 'standard padded base64 of 64 bytes')
    const msg = Buffer.from(`dip-rotate:${oldKey}:${newKey}:2`, 'utf8')
    assert.ok(verify(hexOf(oldKey), msg, Buffer.from(r.sign, 'base64')), 'the rotation is signed by the old key')
    const list = await dip(A.url, 'list', listRequestXml(POST, '', undefined))
    assert.equal(list.status, 'success')
    assertSigned(list.http, newKey, 'list answer after the rotation')
    const bad = await httpPost(`${A.url}/api/sync/get/`, '<not xml')
    assert.equal(bad.status, 400)
    assertSigned(bad, newKey, 'error answer after the rotation')
  })

  test('the rotation survives a restart of A on its folder', async () => {
    const newKey = A.node.nodeKey
    const port = Number(new URL(A.url).port)
    const dirA = dirs[0]!
    await A.close()
    A = await startDaemon({ dataDir: dirA, host: '127.0.0.1', port })
    assert.equal(A.node.nodeKey, newKey)
    const { json } = await manifestOf(A.url)
    assert.equal(json.life, 2)
    assert.equal(json.rotations.length, 1)
    const s = await B.node.pull(A.url, {})
    assert.equal(s.stored, 0)
    assert.equal((await peerRecord(B, A.url))!.key, newKey)
  })

  test('a rotation through the local API (what `dipd key rotate` asks a running daemon) is followed to life 3', async () => {
    const before = A.node.nodeKey
    const dirA = dirs[0]!
    const info = JSON.parse(await readFile(join(dirA, 'daemon.json'), 'utf8')) as { token: string }
    const res = await request(`${A.url}/api/local/call`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${info.token}` },
      body: JSON.stringify({ op: 'rotateKey', args: [] }),
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    })
    const text = await res.body.text()
    assert.equal(res.statusCode, 200, text.slice(0, 200))
    const r = (JSON.parse(text) as { result: Rotation }).result
    assert.equal(r.from, before)
    assert.equal(r.life, 3)
    assert.equal(r.to, A.node.nodeKey)
    const { http, json } = await manifestOf(A.url)
    assertSigned(http, r.to, 'manifest after the second rotation')
    assert.equal(json.life, 3)
    assert.equal(json.rotations.length, 2)
    const fresh = await A.node.author('post', { title: 'third', text: 'x', tags: [] })
    assert.equal(keyOfId(fresh.id), hexOf(r.to))
    const s = await B.node.pull(A.url, {})
    assert.equal(s.stored, 1)
    const p = (await peerRecord(B, A.url))!
    assert.equal(p.key, r.to)
    assert.equal(p.life, 3)
  })
})

// ---- 4: forged rotations ----

describe('forged rotations are refused and nothing is stored', () => {
  const dirs: string[] = []
  let B: Daemon
  let board: Board
  const K1 = generateKeyPair()
  const K2 = generateKeyPair()
  const K3 = generateKeyPair()
  const author = generateKeyPair()

  before(async () => {
    B = await startIn(dirs, 'forge-B')
    board = await fakeBoard(K1)
    board.models.push(post(author))
    const s = await B.node.pull(board.url, {})
    assert.equal(s.stored, 1)
    const p = (await peerRecord(B, board.url))!
    assert.equal(p.key, nodeKeyOf(K1))
    assert.equal(p.life, 1)
  })

  after(async () => {
    await board?.peer.close().catch(() => {})
    await B?.close().catch(() => {})
    for (const d of dirs) await removeDir(d)
  })

  /** The peer now answers as `node` with `rotations`; B's pull must fail with `code` and change nothing. */
  async function refused(code: string, what: string, rotations: unknown[], node: NodeKeyPair = K2, life = 2): Promise<void> {
    board.peer.key = node
    board.manifest = baseManifest(node, { life, rotations })
    const m = post(author)
    board.models.push(m)
    const before = await held(B)
    const pin = await peerRecord(B, board.url)
    await rejectsWith(B.node.pull(board.url, {}), code, what)
    assert.deepEqual(await held(B), before, `${what}: nothing stored`)
    assert.equal(await B.node.show(m.idText), undefined, `${what}: the new model is absent`)
    assert.deepEqual(await peerRecord(B, board.url), pin, `${what}: the pin is unchanged`)
  }

  test('a new key with no rotation: DIP_PEER_KEY_CHANGED', async () => {
    await refused('DIP_PEER_KEY_CHANGED', 'no rotation', [])
  })

  test('a rotation whose signature does not verify: DIP_ROTATION_SIGNATURE_INVALID', async () => {
    const good = makeRotation(K1, K2, 2)
    await refused('DIP_ROTATION_SIGNATURE_INVALID', 'flipped bit', [{ ...good, sign: flipB64(good.sign) }])
    // Signed by the new key instead of the pinned one.
    const byNew = { from: nodeKeyOf(K1), to: nodeKeyOf(K2), life: 2, sign: Buffer.from(sign(K2, Buffer.from(`dip-rotate:${nodeKeyOf(K1)}:${nodeKeyOf(K2)}:2`))).toString('base64') }
    await refused('DIP_ROTATION_SIGNATURE_INVALID', 'signed by the new key', [byNew])
    // A valid rotation to K3 whose `to` was rewritten to K2.
    await refused('DIP_ROTATION_SIGNATURE_INVALID', 'rewritten successor', [{ ...makeRotation(K1, K3, 2), to: nodeKeyOf(K2) }])
    // A valid rotation whose life was rewritten.
    await refused('DIP_ROTATION_SIGNATURE_INVALID', 'rewritten life', [{ ...makeRotation(K1, K2, 2), life: 3 }], K2, 3)
  })

  test('a rotation whose life does not grow: DIP_ROTATION_LIFE_INVALID', async () => {
    await refused('DIP_ROTATION_LIFE_INVALID', 'same life', [makeRotation(K1, K2, 1)], K2, 1)
    await refused('DIP_ROTATION_LIFE_INVALID', 'life 0', [makeRotation(K1, K2, 0)], K2, 0)
    // The second step of a chain goes back in life.
    await refused('DIP_ROTATION_LIFE_INVALID', 'second step goes back', [makeRotation(K1, K2, 3), makeRotation(K2, K3, 2)], K3, 3)
  })

  test('two rotations from the pinned key to different keys: DIP_ROTATION_FORK', async () => {
    await refused('DIP_ROTATION_FORK', 'fork, same life', [makeRotation(K1, K2, 2), makeRotation(K1, K3, 2)])
    await refused('DIP_ROTATION_FORK', 'fork, other lives', [makeRotation(K1, K3, 3), makeRotation(K1, K2, 2)], K2, 2)
  })

  test('control: the same peer with a valid chain K1 -> K2 -> K3 is followed and everything offered is stored', async () => {
    board.peer.key = K3
    board.manifest = baseManifest(K3, { life: 3, rotations: [makeRotation(K1, K2, 2), makeRotation(K2, K3, 3)] })
    const before = await held(B)
    const s = await B.node.pull(board.url, {})
    assert.equal(s.stored, board.models.length - before.length)
    assert.deepEqual(await held(B), board.models.map((m) => m.idText).sort())
    const p = (await peerRecord(B, board.url))!
    assert.equal(p.key, nodeKeyOf(K3))
    assert.equal(p.life, 3)
  })
})

// ---- 6: bans ----

describe('a banned sender key never comes back', () => {
  const dirs: string[] = []
  let A: Daemon
  let B: Daemon
  let dirB: string
  const bad = generateKeyPair()
  const good = generateKeyPair()
  let badIds: string[]
  let goodIds: string[]
  const badModels: StagedModel[] = []

  before(async () => {
    A = await startIn(dirs, 'ban-A')
    B = await startIn(dirs, 'ban-B')
    dirB = dirs[1]!
    for (let i = 0; i < 3; i++) badModels.push(post(bad))
    const goods = [post(good), post(good)]
    const rows = await putModels(A.url, [...badModels, ...goods].map((m) => m.xml))
    assert.deepEqual(
      rows.map((r) => r.status),
      ['stored', 'stored', 'stored', 'stored', 'stored'],
    )
    badIds = badModels.map((m) => m.idText)
    goodIds = goods.map((m) => m.idText)
    goodIds.push((await A.node.author('post', { title: 'own', text: 'by A', tags: [] })).id)
    const s = await B.node.pull(A.url, {})
    assert.equal(s.stored, 6)
  })

  after(async () => {
    await A?.close().catch(() => {})
    await B?.close().catch(() => {})
    for (const d of dirs) await removeDir(d)
  })

  test('ban removes every model by the key; list and get over HTTP no longer show them', async () => {
    const r = await B.node.ban(`ed25519::${bad.publicKeyHex}`)
    assert.equal(r.key, bad.publicKeyHex)
    assert.equal(r.removed, 3)
    assert.deepEqual(await B.node.bans(), [bad.publicKeyHex])
    assert.deepEqual(await held(B), [...goodIds].sort())
    const listed = (await listAll(B.url)).rows.map((x) => x.id)
    for (const id of badIds) assert.ok(!listed.includes(id), `${id} is not listed`)
    assert.equal(listed.length, 3)
    assert.deepEqual(await getModels(B.url, badIds), [], 'get returns none of them')
    for (const id of badIds) assert.equal(await B.node.show(id), undefined)
    // The key's models are not listed through a sender filter either.
    const byKey = await listAll(B.url, `<sender><allow><key>${bad.publicKeyHex}</key></allow></sender>`)
    assert.equal(byKey.rows.length, 0)
  })

  test('a put of a banned key\'s model is a rejected row DIP_REFUSED; others are still stored', async () => {
    const fresh = post(bad)
    const ok = post(good)
    const rows = await putModels(B.url, [badModels[0]!.xml, fresh.xml, ok.xml])
    assert.equal(rows.length, 3)
    assert.equal(rows[0]!.status, 'rejected')
    assert.equal(rows[0]!.code, 'DIP_REFUSED')
    assert.equal(rows[1]!.status, 'rejected')
    assert.equal(rows[1]!.code, 'DIP_REFUSED')
    assert.equal(rows[2]!.status, 'stored')
    assert.equal(await B.node.show(fresh.idText), undefined)
    goodIds.push(ok.idText)
  })

  test('a later pull from A (and a full one) skips them; they stay absent, also after a restart', async () => {
    const fresh = post(bad)
    const ok = post(good)
    const rows = await putModels(A.url, [fresh.xml, ok.xml])
    assert.deepEqual(
      rows.map((r) => r.status),
      ['stored', 'stored'],
    )
    badIds.push(fresh.idText)
    goodIds.push(ok.idText)
    const s = await B.node.pull(A.url, {})
    assert.equal(s.stored, 1, 'only the good new model is stored')
    assert.deepEqual(await held(B), [...goodIds].sort())
    const full = await pull(B.node.deps, { from: A.url, full: true })
    assert.equal(full.stored, 0, 'a full pull stores none of the banned models')
    assert.deepEqual(await held(B), [...goodIds].sort())

    // Restart B on its folder: the ban is kept.
    await B.close()
    B = await startDaemon({ dataDir: dirB, host: '127.0.0.1', port: 0 })
    assert.deepEqual(await B.node.bans(), [bad.publicKeyHex])
    const again = await pull(B.node.deps, { from: A.url, full: true })
    assert.equal(again.stored, 0)
    const put = await putModels(B.url, [badModels[1]!.xml])
    assert.equal(put[0]!.code, 'DIP_REFUSED')
    assert.deepEqual(await held(B), [...goodIds].sort())
  })

  test('unban, then a full pull brings them back', async () => {
    await B.node.unban(bad.publicKeyHex)
    assert.deepEqual(await B.node.bans(), [])
    const s = await pull(B.node.deps, { from: A.url, full: true })
    assert.equal(s.stored, badIds.length)
    assert.deepEqual(await held(B), [...goodIds, ...badIds].sort())
  })
})

// ---- 7: per-peer sender policy ----

describe('per-peer sender policy (setPeer)', () => {
  const dirs: string[] = []
  let A: Daemon
  let B: Daemon
  let board: Board
  const denied = generateKeyPair()
  const other = generateKeyPair()

  before(async () => {
    A = await startIn(dirs, 'policy-A')
    B = await startIn(dirs, 'policy-B')
    board = await fakeBoard(generateKeyPair())
    const rows = await putModels(A.url, [post(denied).xml, post(other).xml])
    assert.deepEqual(
      rows.map((r) => r.status),
      ['stored', 'stored'],
    )
    assert.equal((await B.node.pull(A.url, {})).stored, 2)
  })

  after(async () => {
    await board?.peer.close().catch(() => {})
    await A?.close().catch(() => {})
    await B?.close().catch(() => {})
    for (const d of dirs) await removeDir(d)
  })

  test('setPeer on a peer never synced is DIP_NOT_FOUND; a bad key is DIP_USAGE', async () => {
    await rejectsWith(B.node.setPeer('http://127.0.0.1:1', { deny: [denied.publicKeyHex] }), 'DIP_NOT_FOUND', 'unknown peer')
    await rejectsWith(B.node.setPeer(A.url, { deny: ['zz'] }), 'DIP_USAGE', 'bad key')
  })

  test('deny K: a later pull does not store the new models by K, and stores the others', async () => {
    const rec = await B.node.setPeer(`${A.url}/`, { deny: [`ed25519::${denied.publicKeyHex}`] })
    assert.deepEqual(rec.deny, [denied.publicKeyHex])
    assert.deepEqual((await peerRecord(B, A.url))!.deny, [denied.publicKeyHex])
    const before = await held(B)
    const d = post(denied)
    const o = post(other)
    const own = await A.node.author('post', { title: 'own', text: 'by A', tags: [] })
    const rows = await putModels(A.url, [d.xml, o.xml])
    assert.deepEqual(
      rows.map((r) => r.status),
      ['stored', 'stored'],
    )
    const s = await B.node.pull(A.url, {})
    assert.equal(s.stored, 2)
    assert.equal(await B.node.show(d.idText), undefined, "the denied key's new model is not stored")
    assert.notEqual(await B.node.show(o.idText), undefined)
    assert.notEqual(await B.node.show(own.id), undefined)
    assert.deepEqual(await held(B), [...before, o.idText, own.id].sort())
    const p = (await peerRecord(B, A.url))!
    assert.deepEqual(p.deny, [denied.publicKeyHex], 'the policy survives the pull')
    assert.equal(p.key, A.node.nodeKey)
  })

  test('the policy holds even when a peer ignores the sender filter (deny, then allow)', async () => {
    const o1 = post(other)
    board.models.push(o1)
    assert.equal((await B.node.pull(board.url, {})).stored, 1)
    await B.node.setPeer(board.url, { deny: [denied.publicKeyHex] })
    const d1 = post(denied)
    const o2 = post(other)
    board.models.push(d1, o2)
    board.requests.length = 0
    const s = await B.node.pull(board.url, {})
    const list = board.requests.find((r) => r.type === 'list')
    assert.ok(list?.body.includes(`<deny><key>${denied.publicKeyHex}</key></deny>`), 'the list request carries the deny filter')
    assert.equal(s.stored, 1)
    assert.equal(await B.node.show(d1.idText), undefined, 'the denied model is not stored though the peer offered it')
    assert.notEqual(await B.node.show(o2.idText), undefined)

    const third = generateKeyPair()
    await B.node.setPeer(board.url, { allow: [other.publicKeyHex] })
    const t1 = post(third)
    const o3 = post(other)
    board.models.push(t1, o3)
    const s2 = await B.node.pull(board.url, {})
    // The new policy replaces the old one: only `other` is taken (o3); t1 and d1 are not.
    assert.equal(s2.stored, 1)
    assert.equal(await B.node.show(t1.idText), undefined, 'a key outside allow is not stored')
    assert.equal(await B.node.show(d1.idText), undefined, 'a key outside allow is not stored')
    assert.notEqual(await B.node.show(o3.idText), undefined)
  })
})

// ---- 8: proofs ----

describe('proofs (dip-proof:<turf>:<life>)', () => {
  const dirs: string[] = []
  let A: Daemon
  let B: Daemon
  const boards: Board[] = []
  const author = generateKeyPair()

  before(async () => {
    A = await startIn(dirs, 'proof-A')
    B = await startIn(dirs, 'proof-B')
    await A.node.author('post', { title: 'p', text: 'x', tags: [] })
  })

  after(async () => {
    for (const b of boards) await b.peer.close().catch(() => {})
    await A?.close().catch(() => {})
    await B?.close().catch(() => {})
    for (const d of dirs) await removeDir(d)
  })

  test("A's proof for 127.0.0.1 is published and recorded by B's pull", async () => {
    const proof = await A.node.addProof('127.0.0.1')
    assert.equal(proof.turf, '127.0.0.1')
    assert.equal(proof.life, 1)
    const { http, json } = await manifestOf(A.url)
    assertSigned(http, A.node.nodeKey, 'manifest')
    assert.equal(json.proofs.length, 1)
    const p = json.proofs[0]!
    assert.equal(p.turf, '127.0.0.1')
    assert.equal(p.life, 1)
    assert.equal(p.key, A.node.nodeKey)
    assert.match(p.sign, /^[A-Za-z0-9+/]{86}==$/)
    assert.ok(verify(hexOf(p.key), Buffer.from('dip-proof:127.0.0.1:1', 'utf8'), Buffer.from(p.sign, 'base64')), 'the proof verifies')
    assert.ok(A.url.startsWith('http://127.0.0.1:'))
    const s = await B.node.pull(A.url, {})
    assert.equal(s.stored, 1)
    assert.deepEqual((await peerRecord(B, A.url))!.proof, { turf: '127.0.0.1', life: 1 })
  })

  /** A fake peer at 127.0.0.1 whose manifest holds `proofs`; B's first pull must fail with `code`, store nothing and pin nothing. */
  async function proofRefused(proofs: (key: NodeKeyPair) => unknown[], what: string): Promise<void> {
    const key = generateKeyPair()
    const board = await fakeBoard(key)
    boards.push(board)
    board.manifest = baseManifest(key, { proofs: proofs(key) })
    const m = post(author)
    board.models.push(m)
    await rejectsWith(B.node.pull(board.url, {}), 'DIP_PROOF_INVALID', what)
    assert.equal(await B.node.show(m.idText), undefined, `${what}: nothing stored`)
    assert.equal(await peerRecord(B, board.url), undefined, `${what}: nothing pinned`)
  }

  test('a proof for 127.0.0.1 with a bad signature: DIP_PROOF_INVALID', async () => {
    await proofRefused((k) => {
      const p = makeProof(k, '127.0.0.1', 1)
      return [{ ...p, sign: flipB64(p.sign) }]
    }, 'flipped bit')
    await proofRefused((k) => [{ ...makeProof(k, 'example.com', 1), turf: '127.0.0.1' }], 'signed for another turf')
    await proofRefused((k) => [{ ...makeProof(k, '127.0.0.1', 1), life: 2 }], 'rewritten life')
    await proofRefused(() => [makeProof(generateKeyPair(), '127.0.0.1', 1)], 'valid, but by a key the peer does not answer with')
  })

  test('control: a fake peer with a valid proof is pulled and its proof recorded', async () => {
    const key = generateKeyPair()
    const board = await fakeBoard(key)
    boards.push(board)
    board.manifest = baseManifest(key, { proofs: [makeProof(key, '127.0.0.1', 1)] })
    const m = post(author)
    board.models.push(m)
    const s = await B.node.pull(board.url, {})
    assert.equal(s.stored, 1)
    assert.deepEqual((await peerRecord(B, board.url))!.proof, { turf: '127.0.0.1', life: 1 })
  })

  test('a proof made before a key rotation does not make the node unreachable after it', async () => {
    // A holds a proof for 127.0.0.1 signed by its first key (test above); now it rotates.
    await A.node.rotateKey()
    const fresh = await A.node.author('post', { title: 'after rotation', text: 'x', tags: [] })
    const s = await B.node.pull(A.url, {})
    assert.equal(s.stored, 1)
    assert.notEqual(await B.node.show(fresh.id), undefined)
    const rec = (await peerRecord(B, A.url))!
    assert.equal(rec.key, A.node.nodeKey)
    assert.equal(rec.life, 2)
    // The proof the manifest publishes now is signed by the current key at the current life.
    const { json } = await manifestOf(A.url)
    const p = json.proofs.find((x) => x.turf === '127.0.0.1')
    assert.ok(p, 'the proof is still published')
    assert.equal(p.key, A.node.nodeKey)
    assert.ok(verify(hexOf(p.key), Buffer.from(`dip-proof:127.0.0.1:${p.life}`, 'utf8'), Buffer.from(p.sign, 'base64')))
    assert.deepEqual(rec.proof, { turf: '127.0.0.1', life: p.life })
  })
})

// ---- 9: version negotiation ----

describe('version negotiation', () => {
  const dirs: string[] = []
  let B: Daemon
  let A10: Daemon | undefined
  const boards: Board[] = []
  const peers: FakePeer[] = []
  const author = generateKeyPair()

  before(async () => {
    B = await startIn(dirs, 'neg-B')
  })

  after(async () => {
    for (const p of peers) await p.close().catch(() => {})
    for (const b of boards) await b.peer.close().catch(() => {})
    await A10?.close().catch(() => {})
    await B?.close().catch(() => {})
    for (const d of dirs) await removeDir(d)
  })

  test('a daemon speaking post 1.0 only: B pulls from it and asks for post 1.0', async () => {
    A10 = await startIn(dirs, 'neg-A10', { registry: new ModelRegistry([{ ...postModel, version: { major: 1, minor: 0 } }]) })
    const ids = [(await A10.node.author('post', { title: 'one', text: 'x', tags: ['v'] })).id, (await A10.node.author('post', { title: 'two', text: 'y', tags: [] })).id]
    const { json } = await manifestOf(A10.url)
    assert.equal(json.models.post, '1.0')
    // A transparent proxy in front of A10 records what B sends. It signs with A10's own key, so its
    // answers carry exactly A10's signatures (ed25519 is deterministic).
    const seen: { path: string; body: string }[] = []
    const proxy = await fakePeer(A10.node.deps.identity.current, async (_type, body, req) => {
      const path = req.url ?? '/'
      seen.push({ path, body: body.toString('utf8') })
      const res = req.method === 'POST' ? await httpPost(`${A10!.url}${path}`, body, req.headers['content-type'] ?? 'application/xml') : await httpGet(`${A10!.url}${path}`)
      return { status: res.status, contentType: String(res.headers['content-type'] ?? 'application/xml'), body: res.body }
    })
    peers.push(proxy)
    const s = await B.node.pull(proxy.url, {})
    assert.equal(s.stored, 2)
    assert.deepEqual((await B.node.list()).map((r) => r.id).sort(), [...ids].sort())
    const syncReqs = seen.filter((r) => r.path.startsWith('/api/sync/'))
    assert.ok(syncReqs.some((r) => r.path.startsWith('/api/sync/list')), 'B listed')
    assert.ok(syncReqs.some((r) => r.path.startsWith('/api/sync/get')), 'B fetched')
    for (const r of syncReqs) {
      assert.match(r.body, /<model name="post" version="1\.0">/, `${r.path} asks for post 1.0`)
      assert.equal(versionsOf(r.body).model, '1.0')
    }
    // B keeps and serves the model version as received.
    const xml = await B.node.show(ids[0]!)
    assert.ok(xml?.startsWith('<model name="post" version="1.0">'), 'B relays the 1.0 model as received')
  })

  test('a peer announcing list/get 2.0 that refuses 2.x requests: B asks with 1.0 and succeeds', async () => {
    const key = generateKeyPair()
    const board = await fakeBoard(key)
    boards.push(board)
    board.manifest = baseManifest(key, { requests: { list: '2.0', get: '2.0', put: '2.0' } })
    board.intercept = (type, body) => {
      if (type !== 'list' && type !== 'get') return undefined
      const v = versionsOf(body.toString('utf8')).request ?? ''
      if (v.startsWith('1.')) return undefined
      return {
        status: 501,
        body: '<response><status>not supported</status><code>DIP_VERSION_NOT_SUPPORTED</code><description/><supported><request type="list" version="1.0"/><request type="get" version="1.0"/><model name="post" version="1.1"/></supported></response>',
      }
    }
    const m = post(author)
    board.models.push(m)
    const s = await B.node.pull(board.url, {})
    assert.equal(s.stored, 1)
    assert.notEqual(await B.node.show(m.idText), undefined)
    const sync = board.requests.filter((r) => r.type === 'list' || r.type === 'get')
    assert.ok(sync.length >= 2)
    for (const r of sync) assert.equal(versionsOf(r.body).request, '1.0', `${r.type} used request version 1.0`)
  })

  test('a peer whose model post is 0.9: DIP_PEER_INCOMPATIBLE, nothing stored, nothing pinned', async () => {
    const key = generateKeyPair()
    const board = await fakeBoard(key)
    boards.push(board)
    board.manifest = baseManifest(key, { models: { post: '0.9' } })
    const m = post(author)
    board.models.push(m)
    await rejectsWith(B.node.pull(board.url, {}), 'DIP_PEER_INCOMPATIBLE', 'post 0.9')
    assert.equal(await B.node.show(m.idText), undefined)
    assert.equal(await peerRecord(B, board.url), undefined)
  })

  test('a peer whose list request is 0.5: DIP_PEER_INCOMPATIBLE', async () => {
    const key = generateKeyPair()
    const board = await fakeBoard(key)
    boards.push(board)
    board.manifest = baseManifest(key, { requests: { list: '0.5', get: '1.0', put: '1.0' } })
    const m = post(author)
    board.models.push(m)
    await rejectsWith(B.node.pull(board.url, {}), 'DIP_PEER_INCOMPATIBLE', 'list 0.5')
    assert.equal(await B.node.show(m.idText), undefined)
  })
})

// ---- 10: rate limit ----

describe('rate limit', () => {
  const dirs: string[] = []
  let R: Daemon

  before(async () => {
    R = await startIn(dirs, 'rate', { rateLimit: { max: 5, windowSeconds: 60 } })
  })

  after(async () => {
    await R?.close().catch(() => {})
    for (const d of dirs) await removeDir(d)
  })

  test('the 6th sync request from one address is 429 DIP_RATE_LIMITED, signed; the local API is not limited', async () => {
    const xml = listRequestXml(POST, '', undefined)
    for (let i = 1; i <= 5; i++) {
      const a = await dip(R.url, 'list', xml)
      assert.equal(a.http.status, 200, `request ${i} is served`)
      assert.equal(a.status, 'success')
    }
    const sixth = await dip(R.url, 'list', xml)
    assert.equal(sixth.http.status, 429)
    assert.equal(sixth.status, 'error')
    assert.equal(sixth.code, 'DIP_RATE_LIMITED')
    assert.match(String(sixth.http.headers['content-type']), /^application\/xml/)
    assertSigned(sixth.http, R.node.nodeKey, '429 answer')

    const info = JSON.parse(await readFile(join(dirs[0]!, 'daemon.json'), 'utf8')) as { token: string }
    for (let i = 0; i < 10; i++) {
      const res = await request(`${R.url}/api/local/list`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${info.token}` },
        body: '{}',
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      })
      const text = await res.body.text()
      assert.equal(res.statusCode, 200, `local request ${i + 1}: ${text.slice(0, 200)}`)
      assert.ok(Array.isArray((JSON.parse(text) as { rows: unknown }).rows))
    }
    const still = await dip(R.url, 'get', '<request type="get" version="1.0"><model name="post" version="1.1"/></request>')
    assert.equal(still.code, 'DIP_RATE_LIMITED', 'sync requests stay limited within the window')
  })
})

// ---- 11: settings ----

describe('DIR/settings.json', () => {
  const dirs: string[] = []
  let S: Daemon | undefined

  after(async () => {
    await S?.close().catch(() => {})
    for (const d of dirs) await removeDir(d)
  })

  test('limits and clock skew from settings.json are published and enforced', async () => {
    const dir = await tempDir('settings')
    dirs.push(dir)
    await writeFile(join(dir, 'settings.json'), JSON.stringify({ limits: { maxContentBytes: 2000 }, maxFutureSeconds: 60 }))
    S = await startDaemon({ dataDir: dir, host: '127.0.0.1', port: 0 })
    const { http, json } = await manifestOf(S.url)
    assertSigned(http, S.node.nodeKey, 'manifest')
    assert.equal(json.limits.maxContentBytes, 2000)
    assert.equal(json.limits.maxFutureSeconds, 60)
    assert.equal(json.limits.maxIdsPerGet, 1000, 'the other limits keep their defaults')

    const k = generateKeyPair()
    const big = signPost(k, { localId: 'big', text: 'x'.repeat(2500) })
    assert.ok(big.contentBytes.length > 2000)
    const small = signPost(k, { localId: 'small', text: 'x'.repeat(1000) })
    assert.ok(small.contentBytes.length <= 2000)
    const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z')
    const ahead5m = signPost(k, { localId: 'future', updateTime: iso(Date.now() + 5 * 60_000) })
    const ahead10s = signPost(k, { localId: 'near', updateTime: iso(Date.now() + 10_000) })
    const rows = await putModels(S.url, [big.xml, small.xml, ahead5m.xml, ahead10s.xml])
    assert.equal(rows.length, 4)
    assert.equal(rows[0]!.status, 'rejected')
    assert.equal(rows[0]!.code, 'DIP_MODEL_TOO_LARGE')
    assert.equal(rows[1]!.status, 'stored')
    assert.equal(rows[2]!.status, 'rejected')
    assert.equal(rows[2]!.code, 'DIP_TIME_IN_FUTURE')
    assert.equal(rows[3]!.status, 'stored', 'within the 60 s skew')
  })

  for (const [name, text] of [
    ['not JSON', '{"limits": '],
    ['a limit that is not a positive integer', '{"limits":{"maxContentBytes":-1}}'],
    ['an unknown limit', '{"limits":{"maxFoo":10}}'],
    ['maxFutureSeconds not a number', '{"maxFutureSeconds":"soon"}'],
    ['not an object', '[1,2]'],
    ['heapGrowingPercent out of range', '{"heapGrowingPercent":-5}'],
    ['limits not an object', '{"limits":5}'],
    ['limits a list', '{"limits":[]}'],
    ['rateLimit not an object', '{"rateLimit":"abc"}'],
  ] as const) {
    test(`a malformed settings.json (${name}) makes startDaemon reject with DIP_USAGE`, async () => {
      const dir = await tempDir('settings-bad')
      dirs.push(dir)
      await writeFile(join(dir, 'settings.json'), text)
      let d: Daemon | undefined
      try {
        await rejectsWith(
          startDaemon({ dataDir: dir, host: '127.0.0.1', port: 0 }).then((x) => {
            d = x
            return x
          }),
          'DIP_USAGE',
          name,
        )
      } finally {
        await d?.close()
      }
    })
  }
})

describe('nodes of a pool that share an imported key never give one id to two models', () => {
  const dirs: string[] = []
  const daemons: Daemon[] = []
  after(async () => {
    for (const d of daemons) await d.close()
    for (const d of dirs) await removeDir(d)
  })

  test('each authors before they sync: both posts reach both nodes under their own ids; the mark survives a restart', async () => {
    const shared = generateKeyPair()
    for (let i = 0; i < 3; i++) dirs.push(await tempDir(`pool-key-${i}-`))
    const open = (dir: string, importKey?: NodeKeyPair) => startDaemon({ dataDir: dir, host: '127.0.0.1', port: 0, rateLimit: { max: 0, windowSeconds: 60 }, ...(importKey ? { importKey } : {}) })
    const [a, b] = [await open(dirs[0]!, shared), await open(dirs[1]!, shared)]
    daemons.push(a, b)
    const fromA = await a.node.author('post', { title: 'on A', text: 'written on A' })
    const fromB = await b.node.author('post', { title: 'on B', text: 'written on B' })
    assert.notEqual(fromA.id, fromB.id, 'the same key, the same counter, two ids')
    assert.equal(fromA.id, `ed25519::${shared.publicKeyHex}::1.${a.node.deps.store.storeId.slice(0, 8)}`)
    assert.equal(fromB.id, `ed25519::${shared.publicKeyHex}::1.${b.node.deps.store.storeId.slice(0, 8)}`)
    await a.node.pull(b.url, {})
    await b.node.pull(a.url, {})
    for (const d of [a, b]) assert.deepEqual((await d.node.list()).map((r) => r.id).sort(), [fromA.id, fromB.id].sort(), 'nothing replaced')
    // The key file says the key was imported; a restart keeps marking.
    assert.equal(JSON.parse(await readFile(join(dirs[0]!, 'node.key'), 'utf8')).shared, true)
    await a.close()
    daemons.splice(daemons.indexOf(a), 1)
    const again = await open(dirs[0]!)
    daemons.push(again)
    assert.match((await again.node.author('post', { title: 'again', text: 'after the restart' })).id, new RegExp(`::2\\.${again.node.deps.store.storeId.slice(0, 8)}$`))
    // A node whose key was generated here keeps plain counters.
    const own = await open(dirs[2]!)
    daemons.push(own)
    assert.match((await own.node.author('post', { title: 'own', text: 'own key' })).id, /::1$/)
    await own.close()
    daemons.splice(daemons.indexOf(own), 1)
    // A key imported before keys were marked (no `shared` in node.key): importing the same key again marks it, and nothing else changes.
    const keyFile = join(dirs[1]!, 'node.key')
    await b.close()
    daemons.splice(daemons.indexOf(b), 1)
    const before = JSON.parse(await readFile(keyFile, 'utf8')) as Record<string, unknown>
    delete before.shared
    await writeFile(keyFile, JSON.stringify(before))
    assert.equal((await initDataDir(dirs[1]!)).shared, false)
    assert.equal((await initDataDir(dirs[1]!, shared)).shared, true)
    assert.deepEqual(JSON.parse(await readFile(keyFile, 'utf8')), { ...before, shared: true })
    await assert.rejects(initDataDir(dirs[1]!, generateKeyPair()), (e: DipError) => e.code === 'DIP_USAGE')
  })
})

test('a data folder started twice at once gets one key: the second to write node.key takes the first one', async () => {
  const dir = await tempDir('two-inits')
  try {
    const ids = await Promise.all(Array.from({ length: 8 }, () => initDataDir(dir)))
    const keys = new Set(ids.map((id) => id.nodeKey))
    assert.equal(keys.size, 1, `one key for all of them, not ${keys.size}`)
    const file = JSON.parse(await readFile(join(dir, 'node.key'), 'utf8')) as { publicKey: string }
    assert.equal(`ed25519::${file.publicKey}`, [...keys][0])
  } finally {
    await removeDir(dir)
  }
})
