// Two real daemons (LevelDB in temp folders, HTTP on 127.0.0.1:0) replicate
// a board of > 1,000 posts by three keys in 24 threads: a tag-filtered pull,
// a full pull, list/get over HTTP compared id by id and hash by hash, every
// served model verified, idempotent repeats, thread and sender filtered
// pulls, signed answers (PROTOCOL.md §8), and a restart on the same folder.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { startDaemon, openNode, type Daemon } from '../../src/daemon.js'
import { DipError } from '../../src/errors.js'
import { generateKeyPair, verify, type NodeKeyPair } from '../../src/crypto/ed25519.js'
import { canonicalize } from '../../src/protocol/canonical.js'
import { formatId, parseIdText, type GlobalId } from '../../src/protocol/id.js'
import { pull } from '../../src/sync/pull.js'
import { escapeText } from '../../src/protocol/xml.js'
import { dip, getModels, httpGet, idHashSet, listAll, putModels, removeDir, sha256, signPost, tempDir, verifyDirect, verifyServed } from './helpers.js'

const THREADS = 24
const REPLIES_PER_THREAD = 42 // 24 * (1 + 42) = 1032 posts
const PUT_BATCH = 250

interface Expected {
  id: string
  hash: string
  /** the opening post's id for replies, undefined for opening posts */
  thread: string | undefined
  tags: string[]
  key: string
}

function gid(text: string): GlobalId {
  const r = parseIdText(text)
  if (!r.ok) throw new Error(`test bug: ${text} is not an id`)
  return r.value
}

function tagsOf(t: number): string[] {
  switch (t % 4) {
    case 0:
      return ['X']
    case 1:
      return ['Y', 'X']
    case 2:
      return ['Y']
    default:
      return []
  }
}

/** Text with characters that exercise escaping and non-ASCII, so relaying byte-exactly matters. */
function textFor(n: number, ref: string | undefined): string {
  const variants = ['plain text', 'a & b < c > d', 'ünïcødé — 日本語 ✓', 'line one\nline two', '  leading and trailing  ', '"quotes" and \'apostrophes\'']
  const base = `${variants[n % variants.length]!} #${n}`
  return ref ? `${base} see [post]${ref}[/post]` : base
}

describe('two daemons replicate a board', () => {
  const dirs: string[] = []
  let A: Daemon
  let B: Daemon
  const keys: NodeKeyPair[] = []
  const expected = new Map<string, Expected>()
  const openings: string[] = []

  before(async () => {
    const dirA = await tempDir('A')
    const dirB = await tempDir('B')
    dirs.push(dirA, dirB)
    A = await startDaemon({ dataDir: dirA, host: '127.0.0.1', port: 0 })
    B = await startDaemon({ dataDir: dirB, host: '127.0.0.1', port: 0 })
    keys.push(generateKeyPair(), generateKeyPair())
    const aKey = A.node.deps.identity.current.publicKeyHex

    let clock = Date.UTC(2024, 0, 1)
    const nextTime = () => new Date((clock += 1000 + (clock % 7))).toISOString()
    const pending: string[] = []
    const pendingExpect: Expected[] = []
    const flush = async () => {
      for (let i = 0; i < pending.length; i += PUT_BATCH) {
        const batch = pending.slice(i, i + PUT_BATCH)
        const exp = pendingExpect.slice(i, i + PUT_BATCH)
        const rows = await putModels(A.url, batch)
        assert.equal(rows.length, batch.length, 'one put row per model sent')
        rows.forEach((r, n) => {
          assert.equal(r.status, 'stored', `put row ${n} of a seed batch: ${r.status} ${r.code ?? ''}`)
          assert.equal(r.id, exp[n]!.id)
          assert.equal(r.hash, exp[n]!.hash)
        })
      }
      pending.length = 0
      pendingExpect.length = 0
    }
    const signed = (k: number, localId: string, fields: { title: string; text: string; tags?: string[]; thread?: GlobalId }) => {
      const pair = keys[k - 1]!
      const m = signPost(pair, { localId, ...fields, updateTime: nextTime() })
      const e: Expected = { id: m.idText, hash: m.hash, thread: fields.thread ? formatId(fields.thread) : undefined, tags: fields.tags ?? [], key: pair.publicKeyHex }
      pending.push(m.xml)
      pendingExpect.push(e)
      expected.set(e.id, e)
      return e.id
    }

    // Opening posts: thread t belongs to A (t % 3 == 0) or to one of the two other keys.
    for (let t = 0; t < THREADS; t++) {
      const owner = t % 3
      const fields = { title: t % 5 === 0 ? '' : `thread ${t}`, text: textFor(t, undefined), tags: tagsOf(t) }
      if (owner === 0) {
        const r = await A.node.author('post', fields)
        expected.set(r.id, { id: r.id, hash: r.hash, thread: undefined, tags: fields.tags, key: aKey })
        openings.push(r.id)
      } else {
        openings.push(signed(owner, `t-${t}`, fields))
      }
    }
    await flush()
    // Replies, by all three keys in every thread; some reference other posts.
    let n = 0
    for (let t = 0; t < THREADS; t++) {
      const thread = gid(openings[t]!)
      for (let r = 0; r < REPLIES_PER_THREAD; r++) {
        n++
        const who = (t + r) % 3
        const fields = { title: r % 4 === 0 ? `re: ${t}` : '', text: textFor(n, r % 10 === 0 ? openings[(t + 1) % THREADS] : undefined), thread }
        if (who === 0) {
          const res = await A.node.author('post', { title: fields.title, text: fields.text, thread: openings[t] })
          expected.set(res.id, { id: res.id, hash: res.hash, thread: openings[t], tags: [], key: aKey })
        } else {
          signed(who, `r${t}.${r}`, fields)
        }
      }
      if (pending.length >= PUT_BATCH) await flush()
    }
    await flush()
  })

  after(async () => {
    await B?.close().catch(() => {})
    await A?.close().catch(() => {})
    for (const d of dirs) await removeDir(d)
  })

  const all = () => [...expected.values()]
  const tagX = () => all().filter((e) => e.thread === undefined && e.tags.includes('X'))

  test('A holds the seeded board: > 1,000 posts by 3 keys in >= 20 threads', async () => {
    const rows = await A.node.list()
    assert.ok(rows.length >= 1000, `A holds ${rows.length}`)
    assert.deepEqual(idHashSet(rows), idHashSet(all()))
    assert.equal(new Set(all().map((e) => e.key)).size, 3)
    assert.ok(openings.length >= 20)
    // A's tag filter agrees with what was seeded (computed independently here).
    assert.deepEqual(idHashSet(await A.node.list({ tags: ['X'] })), idHashSet(tagX()))
    assert.ok(tagX().length > 0 && tagX().length < openings.length, 'some opening posts are tagged X, some are not')
    // Several tags: any of them; replies never match; tags are exact strings.
    const xOrY = all().filter((e) => e.thread === undefined && (e.tags.includes('X') || e.tags.includes('Y')))
    assert.deepEqual(idHashSet(await A.node.list({ tags: ['X', 'Y'] })), idHashSet(xOrY))
    assert.deepEqual(idHashSet((await listAll(A.url, '<tags><tag>Y</tag><tag>X</tag></tags>')).rows), idHashSet(xOrY))
    assert.deepEqual(await A.node.list({ tags: ['x', 'nope'] }), [])
  })

  test('B pulls --tag X: exactly the tag-X opening posts of A', async () => {
    const s = await B.node.pull(A.url, { tags: ['X'] })
    const want = await A.node.list({ tags: ['X'] })
    assert.equal(s.listed, want.length)
    assert.equal(s.stored, want.length)
    assert.deepEqual(s.rejected, {})
    assert.equal(s.missing, 0)
    const held = await B.node.list()
    assert.deepEqual(idHashSet(held), idHashSet(want))
    assert.deepEqual(idHashSet(held), idHashSet(tagX()))
  })

  test('B pulls everything: stores the rest, skips what it holds', async () => {
    const total = expected.size
    const s = await B.node.pull(A.url, {})
    assert.equal(s.listed, total)
    assert.equal(s.skipped, tagX().length)
    assert.equal(s.stored, total - tagX().length)
    assert.equal(s.fetched, total - tagX().length)
    assert.deepEqual(s.rejected, {})
    assert.equal(s.missing, 0)
    assert.deepEqual(idHashSet(await B.node.list()), idHashSet(all()))
    // Time in stages: every stage ran; staging is part of the gets.
    const st = s.stages
    assert.ok(st.listMs > 0 && st.getMs > 0 && st.stageMs > 0 && st.verifyMs > 0 && st.commitMs > 0, JSON.stringify(st))
    assert.ok(st.stageMs <= st.getMs, JSON.stringify(st))
  })

  test("B's list over HTTP, paged with <after>/<more/>, equals A's", async () => {
    const a = await listAll(A.url)
    const b = await listAll(B.url)
    // 1,032 rows at the default page limit of 1,000: two pages, <more/> only on the first.
    assert.deepEqual(a.morePerPage, [true, false])
    assert.deepEqual(b.morePerPage, [true, false])
    assert.equal(new Set(b.rows.map((r) => r.id)).size, b.rows.length, 'each id listed once')
    assert.deepEqual(idHashSet(b.rows), idHashSet(a.rows))
    assert.deepEqual(idHashSet(b.rows), idHashSet(all()))
    // update-time copies the content's text: same on both sides, id by id.
    const aTimes = new Map(a.rows.map((r) => [r.id, r.updateTime]))
    for (const r of b.rows) assert.equal(r.updateTime, aTimes.get(r.id), r.id)
  })

  test("B's get over HTTP (batches of <= 1000) equals A's, and every model B serves verifies", async () => {
    const listed = (await listAll(B.url)).rows
    const ids = listed.map((r) => r.id)
    const hashOf = new Map(listed.map((r) => [r.id, r.hash]))
    let checked = 0
    for (let i = 0; i < ids.length; i += 1000) {
      const batch = ids.slice(i, i + 1000)
      const fromB = await getModels(B.url, batch)
      const fromA = await getModels(A.url, batch)
      assert.equal(fromB.length, batch.length, 'every held id answered')
      assert.equal(fromA.length, batch.length)
      for (let n = 0; n < batch.length; n++) {
        const elB = fromB[n]!
        const v = await verifyServed(elB)
        assert.equal(v.code, undefined, `model ${batch[n]} from B does not verify: ${v.code}`)
        const m = v.staged!
        assert.equal(m.idText, batch[n], 'answers come in request order')
        assert.equal(m.hash, hashOf.get(m.idText), 'served content hashes to the listed hash')
        assert.equal(sha256(m.contentBytes), m.hash)
        assert.equal(m.hash, expected.get(m.idText)?.hash, 'the hash the author signed')
        assert.ok(verifyDirect(m), `crypto.verify over the canonical content of ${m.idText}`)
        // Relaying never rebuilds: B serves A's model byte for byte (canonical model element).
        assert.equal(canonicalize(elB), canonicalize(fromA[n]!))
        checked++
      }
    }
    assert.equal(checked, expected.size)
  })

  test('a repeated pull stores nothing new (checkpoint and full re-list)', async () => {
    const before = await B.node.list()
    const s = await B.node.pull(A.url, {})
    assert.equal(s.stored, 0)
    assert.equal(s.fetched, 0)
    assert.deepEqual(s.rejected, {})
    // Even re-listing everything from the start fetches nothing: every row is held.
    const full = await pull(B.node.deps, { from: A.url, full: true })
    assert.equal(full.listed, expected.size)
    assert.equal(full.skipped, expected.size)
    assert.equal(full.stored, 0)
    assert.equal(full.fetched, 0)
    assert.deepEqual(await B.node.list(), before, 'store order and contents unchanged')
  })

  test('an incremental pull gets exactly what A stored since: new, late (old update-time) and edited models', async () => {
    const aKey = A.node.deps.identity.current.publicKeyHex
    const fresh = await A.node.author('post', { title: 'fresh', text: 'new thread', tags: ['Z'] })
    expected.set(fresh.id, { id: fresh.id, hash: fresh.hash, thread: undefined, tags: ['Z'], key: aKey })
    const k1 = keys[0]!
    const late = signPost(k1, { localId: 'late', text: 'arrived late', thread: gid(openings[2]!), updateTime: '2020-01-01T00:00:00Z' })
    // An edit of one of k1's replies in thread 4: same id, newer update-time.
    const old = all().find((e) => e.key === k1.publicKeyHex && e.thread === openings[4])!
    const localId = old.id.split('::')[2]!
    const edited = signPost(k1, { localId, text: 'edited text', thread: gid(openings[4]!), pubTime: '2024-01-01T00:00:00Z', updateTime: '2025-01-01T00:00:00Z' })
    const rows = await putModels(A.url, [late.xml, edited.xml])
    assert.deepEqual(
      rows.map((r) => r.status),
      ['stored', 'stored'],
    )
    expected.set(late.idText, { id: late.idText, hash: late.hash, thread: openings[2], tags: [], key: k1.publicKeyHex })
    expected.set(edited.idText, { id: edited.idText, hash: edited.hash, thread: openings[4], tags: [], key: k1.publicKeyHex })
    const s = await B.node.pull(A.url, {})
    assert.equal(s.listed, 3, 'only what A stored since the last pull is listed')
    assert.equal(s.stored, 3)
    assert.deepEqual(s.rejected, {})
    assert.deepEqual(idHashSet(await B.node.list()), idHashSet(all()))
    assert.deepEqual(idHashSet(await B.node.list()), idHashSet(await A.node.list()))
    const [el] = await getModels(B.url, [edited.idText])
    assert.equal((await verifyServed(el!)).staged?.hash, edited.hash, 'B serves the edited version')
  })

  test('a thread filter pull gives exactly the opening post and its replies', async () => {
    const dir = await tempDir('C')
    dirs.push(dir)
    const C = await openNode({ dataDir: dir })
    try {
      const thread = openings[1]! // opened by another key; replies by all three
      const want = all().filter((e) => e.id === thread || e.thread === thread)
      assert.equal(want.length, 1 + REPLIES_PER_THREAD)
      assert.equal(new Set(want.map((e) => e.key)).size, 3)
      const s = await C.pull(A.url, { thread })
      assert.equal(s.stored, want.length)
      assert.deepEqual(s.rejected, {})
      assert.deepEqual(idHashSet(await C.list()), idHashSet(want))
      assert.deepEqual(idHashSet(await C.list({ thread })), idHashSet(want))
      // The same filter over HTTP on A and on B.
      const id = gid(thread)
      const f = `<thread><id key="${id.key}" local-id="${escapeText(id.localId)}" type="ed25519"/></thread>`
      assert.deepEqual(idHashSet((await listAll(A.url, f)).rows), idHashSet(want))
      assert.deepEqual(idHashSet((await listAll(B.url, f)).rows), idHashSet(want))
    } finally {
      await C.close()
    }
  })

  test('a sender filter pull (allow, deny) gives exactly the posts of those keys', async () => {
    const dir = await tempDir('D')
    dirs.push(dir)
    const D = await openNode({ dataDir: dir })
    try {
      const k1 = keys[0]!.publicKeyHex
      const want = all().filter((e) => e.key === k1)
      const s = await D.pull(A.url, { allow: [k1] })
      assert.equal(s.stored, want.length)
      assert.deepEqual(idHashSet(await D.list()), idHashSet(want))
      const k2 = keys[1]!.publicKeyHex
      const s2 = await D.pull(A.url, { deny: [k1, k2] })
      const aOnly = all().filter((e) => e.key === A.node.deps.identity.current.publicKeyHex)
      assert.equal(s2.stored, aOnly.length)
      assert.deepEqual(idHashSet(await D.list()), idHashSet([...want, ...aOnly]))
    } finally {
      await D.close()
    }
  })

  test("B's sync answers are signed by its node key (PROTOCOL.md §8)", async () => {
    const manifest = await httpGet(`${B.url}/.well-known/dip.json`)
    assert.equal(manifest.status, 200)
    const node = (JSON.parse(manifest.body.toString('utf8')) as { node: string }).node
    assert.equal(node, B.node.nodeKey)
    const answers = [
      (await dip(B.url, 'list', '<request type="list" version="1.0"><model name="post" version="1.1"/></request>')).http,
      (await dip(B.url, 'get', '<request type="get" version="1.0"><model name="post" version="1.1"/></request>')).http,
      (await dip(B.url, 'list', '<not-xml')).http, // an error answer is signed too
      manifest,
    ]
    for (const a of answers) {
      assert.equal(a.headers['dip-node-key'], node, 'DIP-Node-Key header')
      const sig = a.headers['dip-signature']
      assert.equal(typeof sig, 'string', 'DIP-Signature header')
      assert.match(sig as string, /^[0-9a-f]{128}$/)
      const ok = verify(node.slice('ed25519::'.length), Buffer.concat([Buffer.from('dip-response:'), a.body]), Buffer.from(sig as string, 'hex'))
      assert.ok(ok, 'DIP-Signature verifies over dip-response: + body')
    }
  })

  test('restart: a new daemon on the same folder holds everything; cursors stay valid', async () => {
    const held = await B.node.list()
    const http = await listAll(B.url)
    const dirB = dirs[1]!
    await B.close()
    B = await startDaemon({ dataDir: dirB, host: '127.0.0.1', port: 0 })
    assert.deepEqual(await B.node.list(), held, 'same rows in the same store order')
    const again = await listAll(B.url)
    assert.deepEqual(again.rows, http.rows)
    // The final cursor of the earlier listing is a durable checkpoint (PROTOCOL.md §6).
    const since = await listAll(B.url, '', { after: http.next })
    assert.deepEqual(since.rows, [])
    assert.equal(since.next, http.next, 'with no rows, <next> echoes <after>')
    const fresh = await B.node.author('post', { title: 'after restart', text: 'new', tags: ['X'] })
    const since2 = await listAll(B.url, '', { after: http.next })
    assert.deepEqual(idHashSet(since2.rows), idHashSet([fresh]))
    // And a pull from A after the restart finds nothing new.
    const s = await B.node.pull(A.url, {})
    assert.equal(s.stored, 0)
    assert.deepEqual(s.rejected, {})
  })

  test('pull from a node that is gone: DIP_PEER_UNREACHABLE, store unchanged', async () => {
    const dir = await tempDir('E')
    dirs.push(dir)
    const E = await startDaemon({ dataDir: dir, host: '127.0.0.1', port: 0 })
    const url = E.url
    await E.close()
    const before = await B.node.list()
    await assert.rejects(B.node.pull(url, {}), (e: unknown) => e instanceof DipError && e.code === 'DIP_PEER_UNREACHABLE')
    assert.deepEqual(await B.node.list(), before)
  })
})
