// The real CLI, spawned as a child process against temp data folders:
// init, post (directly and through a running daemon's local API), serve,
// list, show, pull, help, failure codes and exit statuses, file modes, and
// a clean stop on SIGTERM. Every child is killed in `after`.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { parseXml } from '../../src/protocol/xml.js'
import { httpGet, removeDir, tempDir, verifyServed } from './helpers.js'

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))
const CMD_TIMEOUT_MS = 30_000

interface Run {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

const children = new Set<ChildProcess>()

function env(): NodeJS.ProcessEnv {
  const e = { ...process.env }
  delete e.DIPD_DATA
  return e
}

function waitExit(child: ChildProcess, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child ${child.pid} did not exit within ${ms} ms`)), ms)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal })
    })
  })
}

describe('dipd CLI', () => {
  let root: string
  let one: string
  let two: string
  let key: string
  let server: ChildProcess | undefined
  let serverUrl: string
  let id1: string
  let id2: string
  let id3: string

  /** Runs one CLI command to its end (bounded). */
  function cli(args: string[]): Promise<Run> {
    const child = spawn(process.execPath, [MAIN, ...args], { cwd: root, env: env(), stdio: ['ignore', 'pipe', 'pipe'] })
    children.add(child)
    let stdout = ''
    let stderr = ''
    child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s))
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s))
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        reject(new Error(`dipd ${args.join(' ')} did not finish within ${CMD_TIMEOUT_MS} ms; stderr: ${stderr}`))
      }, CMD_TIMEOUT_MS)
      child.once('error', (e) => {
        clearTimeout(timer)
        reject(e)
      })
      child.once('close', (code, signal) => {
        clearTimeout(timer)
        children.delete(child)
        resolve({ code, signal, stdout, stderr })
      })
    })
  }

  /** Asserts a failed run: the exit status and the DIP_* code at the start of a stderr line. */
  function assertFails(r: Run, code: string, exit: number): void {
    assert.equal(r.code, exit, `exit status; stderr: ${r.stderr}`)
    assert.match(r.stderr, new RegExp(`^${code}\\b`, 'm'), `stderr names ${code}: ${r.stderr}`)
  }

  async function waitForDaemonInfo(dir: string, child: ChildProcess): Promise<{ url: string; token: string; pid: number }> {
    const deadline = Date.now() + 15_000
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`serve exited early (${child.exitCode ?? child.signalCode})`)
      try {
        const info = JSON.parse(await readFile(join(dir, 'daemon.json'), 'utf8')) as { url: string; token: string; pid: number }
        if (typeof info.url === 'string') return info
      } catch {
        /* not written yet */
      }
      await sleep(50)
    }
    throw new Error('daemon.json did not appear within 15 s')
  }

  const mode = async (path: string) => (await stat(path)).mode & 0o777

  before(async () => {
    root = await tempDir('cli')
    one = join(root, 'one')
    two = join(root, 'two')
  })

  after(async () => {
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGKILL')
        await waitExit(c, 5_000).catch(() => {})
      }
    }
    children.clear()
    await removeDir(root)
  })

  test('init prints the node key; node.key is mode 0600; init again keeps the key', async () => {
    const r = await cli(['init', '--data', one])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^ed25519::[0-9a-f]{64}\n$/)
    key = r.stdout.trim()
    assert.equal(await mode(join(one, 'node.key')), 0o600)
    const again = await cli(['init', '--data', one])
    assert.equal(again.code, 0)
    assert.equal(again.stdout.trim(), key)
  })

  test('post without a daemon prints a global id under the node key', async () => {
    const r = await cli(['post', '--data', one, '--title', 'first', '--text', 'hello & <world>', '--tag', 't'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^ed25519::[0-9a-f]{64}::[0-9A-Za-z._-]{1,64}\n$/)
    id1 = r.stdout.trim()
    assert.ok(id1.startsWith(key + '::'))
  })

  test('the bin runs by its own shebang, as `npx dipd` runs it (the build makes it executable)', async () => {
    const { spawnSync } = await import('node:child_process')
    assert.ok(((await stat(MAIN)).mode & 0o111) !== 0, `${MAIN} is not executable`)
    const r = spawnSync(MAIN, ['--version'], { encoding: 'utf8', timeout: 20_000 })
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stdout, /^\d+\.\d+\.\d+\n$/)
  })

  test('--help exits 0 for the program and each command', async () => {
    const all = [['--help'], ['init', '--help'], ['serve', '--help'], ['post', '--help'], ['pull', '--help'], ['list', '--help'], ['show', '--help']]
    const runs = await Promise.all(all.map((args) => cli(args)))
    runs.forEach((r, n) => {
      const args = all[n]!.join(' ')
      assert.equal(r.code, 0, `dipd ${args}: ${r.stderr}`)
      assert.ok(r.stdout.length > 0, `dipd ${args} prints help`)
    })
  })

  test('serve --port 0 writes daemon.json (0600) and serves the node key', async () => {
    server = spawn(process.execPath, [MAIN, 'serve', '--data', one, '--port', '0'], { cwd: root, env: env(), stdio: ['ignore', 'pipe', 'pipe'] })
    children.add(server)
    server.stdout!.resume()
    server.stderr!.resume()
    const info = await waitForDaemonInfo(one, server)
    assert.match(info.url, /^http:\/\/127\.0\.0\.1:[1-9][0-9]*$/)
    assert.equal(info.pid, server.pid)
    serverUrl = info.url
    assert.equal(await mode(join(one, 'daemon.json')), 0o600)
    const manifest = await httpGet(`${serverUrl}/.well-known/dip.json`)
    assert.equal(manifest.status, 200)
    assert.equal((JSON.parse(manifest.body.toString('utf8')) as { node: string }).node, key)
  })

  test('while serve runs, post and list go through the local API', async () => {
    const r = await cli(['post', '--data', one, '--title', 'second', '--text', 'untagged'])
    assert.equal(r.code, 0, r.stderr)
    id2 = r.stdout.trim()
    assert.ok(id2.startsWith(key + '::'))
    assert.notEqual(id2, id1)
    const reply = await cli(['post', '--data', one, '--title', '', '--text', 'a reply', '--thread', id1])
    assert.equal(reply.code, 0, reply.stderr)
    id3 = reply.stdout.trim()
    const list = await cli(['list', '--data', one, '--json'])
    assert.equal(list.code, 0, list.stderr)
    const rows = JSON.parse(list.stdout) as { id: string; updateTime: string; hash: string }[]
    assert.deepEqual(
      rows.map((x) => x.id),
      [id1, id2, id3],
    )
    for (const x of rows) assert.match(x.hash, /^sha256:[0-9a-f]{64}$/)
    const tagged = await cli(['list', '--data', one, '--json', '--tag', 't'])
    assert.deepEqual(
      (JSON.parse(tagged.stdout) as { id: string }[]).map((x) => x.id),
      [id1],
    )
    const thread = await cli(['list', '--data', one, '--json', '--thread', id1])
    assert.deepEqual((JSON.parse(thread.stdout) as { id: string }[]).map((x) => x.id).sort(), [id1, id3].sort())
  })

  test('show ID prints the model XML, which verifies', async () => {
    const r = await cli(['show', '--data', one, id1])
    assert.equal(r.code, 0, r.stderr)
    const [, k, localId] = id1.split('::') as [string, string, string]
    assert.ok(r.stdout.includes(`<id key="${k}" local-id="${localId}" type="ed25519"/>`), r.stdout)
    const el = parseXml(r.stdout.trim())
    assert.ok(el.ok)
    const v = await verifyServed(el.value)
    assert.equal(v.code, undefined)
    assert.equal(v.staged?.idText, id1)
  })

  test('failures through the daemon print DIP_ codes and exit non-zero', async () => {
    assertFails(await cli(['show', '--data', one, 'not-an-id']), 'DIP_ID_INVALID', 1)
    assertFails(await cli(['show', '--data', one, `${key}::999999`]), 'DIP_NOT_FOUND', 1)
    assertFails(await cli(['post', '--data', one, '--title', 'x', '--text', 'y', '--thread', 'ed25519::nope::1']), 'DIP_ID_INVALID', 1)
    assertFails(await cli(['post', '--data', one, '--title', 'x', '--text', 'y', '--tag', 'a', '--thread', id1]), 'DIP_MODEL_INVALID', 1)
    // A second daemon cannot take the folder.
    assertFails(await cli(['serve', '--data', one, '--port', '0']), 'DIP_DATA_LOCKED', 1)
  })

  test('the local API refuses a client without the token', async () => {
    const res = await request(`${serverUrl}/api/local/list`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })
    const body = (await res.body.json()) as { error?: { code?: string } }
    assert.equal(res.statusCode, 403)
    assert.equal(body.error?.code, 'DIP_LOCAL_FORBIDDEN')
  })

  test('pull --from URL --tag t into a second folder pulls the subset and prints a summary', async () => {
    const r = await cli(['pull', '--data', two, '--from', serverUrl, '--tag', 't'])
    assert.equal(r.code, 0, r.stderr)
    assert.ok(r.stdout.trim().length > 0, 'a summary is printed')
    const list = await cli(['list', '--data', two, '--json'])
    assert.equal(list.code, 0, list.stderr)
    assert.deepEqual(
      (JSON.parse(list.stdout) as { id: string }[]).map((x) => x.id),
      [id1],
    )
    const all = await cli(['pull', '--data', two, '--from', serverUrl, '--json'])
    assert.equal(all.code, 0, all.stderr)
    const s = JSON.parse(all.stdout) as { stored: number; listed: number; rejected: Record<string, number> }
    assert.equal(s.listed, 3)
    assert.equal(s.stored, 2)
    assert.deepEqual(s.rejected, {})
    const again = await cli(['pull', '--data', two, '--from', serverUrl, '--json'])
    assert.equal((JSON.parse(again.stdout) as { stored: number }).stored, 0)
    const both = await cli(['list', '--data', two, '--json'])
    assert.deepEqual((JSON.parse(both.stdout) as { id: string }[]).map((x) => x.id).sort(), [id1, id2, id3].sort())
  })

  test("a daemon.json a killed daemon left, naming another folder's daemon, is passed over: the command opens its folder", async () => {
    const stale = join(two, 'daemon.json')
    const gone = spawn(process.execPath, ['-e', ''])
    await waitExit(gone, 10_000)
    // A dead pid, then the live pid of the daemon on `one` (its URL too) with a token it never gave.
    for (const pid of [gone.pid!, server!.pid!]) {
      await writeFile(stale, JSON.stringify({ pid, url: serverUrl, token: 'f'.repeat(64) }))
      const list = await cli(['list', '--data', two, '--json'])
      assert.equal(list.code, 0, list.stderr)
      assert.deepEqual((JSON.parse(list.stdout) as { id: string }[]).map((x) => x.id).sort(), [id1, id2, id3].sort())
    }
    await rm(stale)
  })

  test('failures without a daemon print DIP_ codes; usage mistakes exit 2', async () => {
    assertFails(await cli(['show', '--data', two, 'not-an-id']), 'DIP_ID_INVALID', 1)
    assertFails(await cli(['pull', '--data', two, '--from', 'http://127.0.0.1:1']), 'DIP_PEER_UNREACHABLE', 1)
    assertFails(await cli(['list', '--data', two, '--bogus']), 'DIP_USAGE', 2)
    assertFails(await cli(['bogus-command']), 'DIP_USAGE', 2)
    assertFails(await cli(['post', '--data', two, '--title', 'no text']), 'DIP_USAGE', 2)
    assertFails(await cli(['pull', '--data', two]), 'DIP_USAGE', 2)
    assertFails(await cli(['pull', '--data', two, '--from', 'not a url']), 'DIP_USAGE', 2)
    assertFails(await cli(['serve', '--data', two, '--port', 'eighty']), 'DIP_USAGE', 2)
    assertFails(await cli(['list', '--data', two, '--since', 'yesterday']), 'DIP_FILTER_INVALID', 1)
    // The environment's refusals get codes too, not a stack trace: a port in use, a folder that cannot be made.
    const taken = await cli(['serve', '--data', join(root, 'three'), '--port', new URL(serverUrl).port])
    assertFails(taken, 'DIP_USAGE', 2)
    assert.match(taken.stderr, /is in use: choose another with --port/)
    assert.doesNotMatch(taken.stderr, /\n\s+at /, 'no stack trace')
    // A mistyped --data (no such folder) is an error, not a new node with a new key (only init, serve and pull make one).
    for (const args of [['list'], ['key', 'rotate'], ['post', '--title', 't', '--text', 'x']]) {
      const typo = join(root, 'no-such-folder')
      assertFails(await cli([...args, '--data', typo]), 'DIP_DATA_INVALID', 1)
      await assert.rejects(stat(typo), (e: NodeJS.ErrnoException) => e.code === 'ENOENT', `${args[0]} made no folder`)
    }
    const underFile = await cli(['list', '--data', join(one, 'node.key', 'sub')])
    assertFails(underFile, 'DIP_DATA_INVALID', 1)
    assert.doesNotMatch(underFile.stderr, /\n\s+at /, 'no stack trace')
  })

  test('the daemon stops on SIGTERM and removes daemon.json', async () => {
    assert.ok(server, 'serve is running')
    server.kill('SIGTERM')
    const exit = await waitExit(server, 10_000)
    children.delete(server)
    assert.deepEqual(exit, { code: 0, signal: null })
    await assert.rejects(stat(join(one, 'daemon.json')), (e: NodeJS.ErrnoException) => e.code === 'ENOENT')
    // The folder is free again: commands open it directly and find everything.
    const list = await cli(['list', '--data', one, '--json'])
    assert.equal(list.code, 0, list.stderr)
    assert.deepEqual(
      (JSON.parse(list.stdout) as { id: string }[]).map((x) => x.id),
      [id1, id2, id3],
    )
  })
})
