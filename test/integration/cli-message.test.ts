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
