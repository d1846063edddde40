// The CLI's second model: `dipd message`, and `--model` on list and pull.
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { startDaemon, type Daemon } from '../../src/daemon.js'
import { ROOT, tempDir } from '../helpers.js'

const run = promisify(execFile)
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js')
const dirs: { remove(): Promise<void> }[] = []
let A: Daemon | undefined
let M: Daemon | undefined

async function dipd(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [CLI, ...args], { timeout: 30_000 })
    return { code: 0, stdout: r.stdout, stderr: r.stderr }
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string }
    return { code: x.code, stdout: x.stdout, stderr: x.stderr }
  }
}

after(async () => {
  await A?.close()
  await M?.close()
  for (const d of dirs) await d.remove()
})

test('dipd message authors messages to a group or a key; list and pull take --model', async () => {
  const a = await tempDir('climsg-a-')
  const b = await tempDir('climsg-b-')
  dirs.push(a, b)
  const toGroup = await dipd('message', '--data', a.path, '--group', 'dip-dev', '--text', 'hello group')
  assert.equal(toGroup.code, 0, toGroup.stderr)
  const toKey = await dipd('message', '--data', a.path, '--to', 'ab'.repeat(32), '--text', 'hi', '--kind', 'notice')
  assert.equal(toKey.code, 0, toKey.stderr)
  const post = await dipd('post', '--data', a.path, '--title', 't', '--text', 'a post')
  assert.equal(post.code, 0)
  const messages = JSON.parse((await dipd('list', '--data', a.path, '--model', 'message', '--json')).stdout) as { id: string }[]
  assert.deepEqual(messages.map((m) => m.id), [toGroup.stdout.trim(), toKey.stdout.trim()])
  const posts = JSON.parse((await dipd('list', '--data', a.path, '--json')).stdout) as { id: string }[]
  assert.deepEqual(posts.map((p) => p.id), [post.stdout.trim()])

  const tooLong = await dipd('message', '--data', a.path, '--group', 'g', '--text', 'x'.repeat(141))
  assert.equal(tooLong.code, 1)
  assert.match(tooLong.stderr, /^DIP_MODEL_INVALID/m)
  const both = await dipd('message', '--data', a.path, '--text', 'x')
  assert.equal(both.code, 2)
  assert.match(both.stderr, /^DIP_USAGE/m)
  const unknown = await dipd('list', '--data', a.path, '--model', 'nope')
  assert.equal(unknown.code, 2)

  A = await startDaemon({ dataDir: a.path, host: '127.0.0.1', port: 0 })
  const pulled = await dipd('pull', '--data', b.path, '--from', A.url, '--model', 'message', '--json')
  assert.equal(pulled.code, 0, pulled.stderr)
  assert.equal((JSON.parse(pulled.stdout) as { stored: number }).stored, 2)
  const onB = JSON.parse((await dipd('list', '--data', b.path, '--model', 'message', '--json')).stdout) as { id: string }[]
  assert.equal(onB.length, 2)
  assert.deepEqual(JSON.parse((await dipd('list', '--data', b.path, '--json')).stdout), [], 'no posts pulled')
})

test('list and pull take the message filters: --to (a key or group:NAME) and --kind, repeatable; a filter the model has not is refused', async () => {
  const a = await tempDir('climsg-filter-a-')
  const c = await tempDir('climsg-filter-c-')
  dirs.push(a, c)
  const key = 'cd'.repeat(32)
  const author = async (...args: string[]) => {
    const r = await dipd('message', '--data', a.path, ...args)
    assert.equal(r.code, 0, r.stderr)
    return r.stdout.trim()
  }
  const devChat = await author('--group', 'dev', '--text', 'standup at 10')
  const opsNotice = await author('--group', 'ops', '--text', 'deploy at 5', '--kind', 'notice')
  const direct = await author('--to', key, '--text', 'hi', '--kind', 'notice')
  const ids = async (...args: string[]) => {
    const r = await dipd('list', '--data', a.path, '--model', 'message', '--json', ...args)
    assert.equal(r.code, 0, r.stderr)
    return (JSON.parse(r.stdout) as { id: string }[]).map((m) => m.id)
  }
  assert.deepEqual(await ids('--to', 'group:ops'), [opsNotice])
  assert.deepEqual(await ids('--to', `ed25519::${key}`), [direct], 'a key with or without its ed25519:: prefix')
  assert.deepEqual(await ids('--to', 'group:dev', '--to', key), [devChat, direct])
  assert.deepEqual(await ids('--kind', 'notice'), [opsNotice, direct])
  assert.deepEqual(await ids('--kind', 'notice', '--to', 'group:dev'), [])

  for (const bad of [['--to', 'group:dev'], ['--model', 'message', '--kind', 'shout'], ['--model', 'message', '--tag', 'x'], ['--model', 'message', '--to', 'nobody']]) {
    const r = await dipd('list', '--data', a.path, ...bad)
    assert.notEqual(r.code, 0, bad.join(' '))
    assert.match(r.stderr, /^DIP_FILTER_INVALID/m, bad.join(' '))
  }

  M = await startDaemon({ dataDir: a.path, host: '127.0.0.1', port: 0 })
  const pulled = await dipd('pull', '--data', c.path, '--from', M.url, '--model', 'message', '--kind', 'notice', '--to', 'group:ops', '--json')
  assert.equal(pulled.code, 0, pulled.stderr)
  assert.equal((JSON.parse(pulled.stdout) as { stored: number }).stored, 1)
  const onC = JSON.parse((await dipd('list', '--data', c.path, '--model', 'message', '--json')).stdout) as { id: string }[]
  assert.deepEqual(onC.map((m) => m.id), [opsNotice], 'the peer applied both filters')
  // Through the daemon the filters are the same.
  const viaDaemon = JSON.parse((await dipd('list', '--data', a.path, '--model', 'message', '--kind', 'chat', '--json')).stdout) as { id: string }[]
  assert.deepEqual(viaDaemon.map((m) => m.id), [devChat])
})

test('a push peer added with message filters is offered only the messages they pass', async () => {
  const m = await tempDir('climsg-push-m-')
  const p = await tempDir('climsg-push-p-')
  dirs.push(m, p)
  const from = await startDaemon({ dataDir: m.path, host: '127.0.0.1', port: 0 })
  const to = await startDaemon({ dataDir: p.path, host: '127.0.0.1', port: 0 })
  try {
    await from.node.addPeer(to.url, { push: true, filter: { model: 'message', to: ['group:ops'], kinds: ['notice'] } })
    await assert.rejects(from.node.addPeer(to.url, { push: true, filter: { model: 'message', kinds: ['shout'] } }), /DIP_FILTER_INVALID|not a message kind/)
    await from.node.author('message', { to: { group: 'dev' }, text: 'standup at 10' })
    await from.node.author('message', { to: { group: 'ops' }, text: 'deploy at 5' })
    const wanted = await from.node.author('message', { to: { group: 'ops' }, text: 'deploy done', kind: 'notice' })
    await from.node.author('message', { to: 'cd'.repeat(32), text: 'hi', kind: 'notice' })
    // Every model stored on the sender is acknowledged (delivered or filtered out), within 10 s.
    const deadline = Date.now() + 10_000
    for (;;) {
      const [peer] = await from.node.peers()
      if (peer?.outbox?.state?.ackSeq === from.node.deps.store.lastSeq) break
      assert.ok(Date.now() < deadline, `the outbox drains (${JSON.stringify(peer?.outbox)})`)
      await new Promise((r) => setTimeout(r, 20))
    }
    assert.deepEqual((await to.node.list({ model: 'message' })).map((r) => r.id), [wanted.id])
  } finally {
    await from.close()
    await to.close()
  }
})
