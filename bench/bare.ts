// The bare pipeline: the ceiling a pull is measured against. Two child
// processes on loopback, like A and B in the pull bench, doing only what
// any puller must do:
//   server  every model of A's store read into memory first, served as
//           prebuilt get answers of 500 (no LevelDB reads, no answer
//           signature, no request parsing)
//   puller  4 gets in flight; parse each answer (dipd's parser); per model
//           its canonical content, its hash and its author's signature
//           checked by `openssl` (Node's crypto.verify on the thread pool,
//           the ceiling as issue 5 measured it) or by `dipd` (dipd's
//           verifyAsync: libsodium in a worker); one LevelDB batch per answer with
//           one put per model (no index rows, no checks of what is held,
//           no checkpoint, no answer-signature check)
// What dipd adds on top (signed answers, list pages, indexes, graph edges,
// checkpoints, policy) is the difference between the two figures.
//
// As a child: node dist/bench/bare.js serve <store dir>
//             node dist/bench/bare.js pull <url> <answers> <store dir> openssl|dipd
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createServer } from 'node:http'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { Level } from 'level'
import { request } from 'undici'
import { verifyAsync, verifyOpenSsl } from '../src/crypto/ed25519.js'
import { canonicalize } from '../src/protocol/canonical.js'
import { readGetAnswer } from '../src/protocol/envelope.js'
import { GraphStore } from '../src/store/graph-store.js'
import { firstChild, parseXml } from '../src/protocol/xml.js'
import { tempDir, trackChild } from './lib.js'

const PER_ANSWER = 500
const IN_FLIGHT = 4

async function serve(dir: string): Promise<void> {
  // The model bytes of a dipd store (a copy: DIR/store), in store order.
  const store = await GraphStore.openLevel(join(dir, 'store'))
  const models: Buffer[] = []
  for (let after = 0; ; ) {
    const rows = await store.log(after, 10_000)
    if (rows.length === 0) break
    for (const xml of await store.modelXml(rows)) if (xml !== undefined) models.push(Buffer.from(xml))
    after = rows.at(-1)!.s
  }
  await store.close()
  if (models.length === 0) throw new Error(`bare pipeline: no models in the store in ${dir}/store`)
  const head = Buffer.from('<response><status>success</status><models>')
  const tail = Buffer.from('</models></response>')
  const answers: Buffer[] = []
  for (let i = 0; i < models.length; i += PER_ANSWER) answers.push(Buffer.concat([head, ...models.slice(i, i + PER_ANSWER), tail]))
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      const body = answers[Number(req.url!.slice('/get/'.length))]
      if (!body) return void res.writeHead(404).end()
      res.writeHead(200, { 'content-type': 'application/xml; charset=utf-8', 'content-length': body.length }).end(body)
    })
  })
  server.listen(0, '127.0.0.1', () => {
    const addr = server.address() as { port: number }
    process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${addr.port}`, answers: answers.length, models: models.length }) + '\n')
  })
}

/** Who checks the authors' signatures in the bare puller (see the header). */
export type Verifier = 'openssl' | 'dipd'

async function pullAll(url: string, answers: number, dir: string, verifier: Verifier): Promise<void> {
  const verify = verifier === 'openssl' ? verifyOpenSsl : verifyAsync
  const db = new Level<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8', writeBufferSize: 32 * 1024 * 1024 })
  await db.open()
  let next = 0
  let stored = 0
  let bad = 0
  const t0 = performance.now()
  const cpu0 = process.cpuUsage()
  const worker = async () => {
    while (next < answers) {
      const res = await request(`${url}/get/${next++}`, { method: 'POST', body: '<request/>' })
      const body = Buffer.from(await res.body.arrayBuffer())
      const root = parseXml(body)
      if (!root.ok) throw root.error
      const els = readGetAnswer(root.value)
      if (!els.ok) throw els.error
      const checks = els.value.map(async (el) => {
        const content = Buffer.from(canonicalize(firstChild(el, 'content')!), 'utf8')
        const sig = firstChild(firstChild(el, 'signatures')!, 'signature')!.attrs
        const ok = await verify(sig.key!, content, Buffer.from(sig.value!, 'hex'))
        return ok ? { type: 'put' as const, key: 'M!sha256:' + createHash('sha256').update(content).digest('hex'), value: el.src ?? canonicalize(el) } : undefined
      })
      const puts = (await Promise.all(checks)).filter((p) => p !== undefined)
      bad += els.value.length - puts.length
      await db.batch(puts)
      stored += puts.length
    }
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
  const ms = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  await db.close()
  process.stdout.write(JSON.stringify({ stored, bad, ms, cpuMs: (cpu.user + cpu.system) / 1000 }) + '\n')
}

const HERE = fileURLToPath(import.meta.url)

function child(args: string[]): { lines: AsyncIterable<string>; done: Promise<number | null>; kill(): void } {
  const c = spawn(process.execPath, [HERE, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  trackChild(c)
  c.stdout!.setEncoding('utf8')
  const done = new Promise<number | null>((r) => c.once('exit', (code) => r(code)))
  async function* lines() {
    let buf = ''
    for await (const chunk of c.stdout! as AsyncIterable<string>) {
      buf += chunk
      for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
        yield buf.slice(0, nl)
        buf = buf.slice(nl + 1)
      }
    }
  }
  return { lines: lines(), done, kill: () => c.kill('SIGTERM') }
}

/** The first line a child prints, as JSON; bounded in time (the child is killed on the way out). */
async function firstLine<T>(it: AsyncIterable<string>, what: string, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`bare pipeline: the ${what} printed nothing within ${ms / 1000} s`)), ms)
  })
  const first = (async () => {
    for await (const line of it) return JSON.parse(line) as T
    throw new Error(`bare pipeline: the ${what} exited without a figure`)
  })()
  try {
    return await Promise.race([first, late])
  } finally {
    clearTimeout(timer)
  }
}

export interface BareFigures {
  models: number
  stored: number
  ms: number
  postsPerS: number
  /** CPU of the puller process, all threads */
  pullerCpuMs: number
}

/** Serves the model bytes of the (closed) dipd store in `storeDir` and pulls them all once; both as child processes. */
export async function bareCeiling(storeDir: string, verifier: Verifier): Promise<BareFigures> {
  const server = child(['serve', storeDir])
  let puller: ReturnType<typeof child> | undefined
  try {
    const s = await firstLine<{ url: string; answers: number; models: number }>(server.lines, 'server', 120_000)
    puller = child(['pull', s.url, String(s.answers), join(await tempDir('bare'), 'store'), verifier])
    const p = await firstLine<{ stored: number; bad: number; ms: number; cpuMs: number }>(puller.lines, 'puller', 600_000)
    if ((await puller.done) !== 0 || p.stored !== s.models || p.bad !== 0) throw new Error(`bare pipeline: stored ${p.stored} of ${s.models}, ${p.bad} bad`)
    return { models: s.models, stored: p.stored, ms: p.ms, postsPerS: p.stored / (p.ms / 1000), pullerCpuMs: p.cpuMs }
  } finally {
    puller?.kill()
    server.kill()
    await Promise.all([server.done, puller?.done])
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [mode, ...rest] = process.argv.slice(2)
  if (mode === 'serve') await serve(rest[0]!)
  else if (mode === 'pull' && (rest[3] === 'openssl' || rest[3] === 'dipd')) await pullAll(rest[0]!, Number(rest[1]), rest[2]!, rest[3])
  else {
    process.stderr.write('usage: bare.js serve <store dir> | pull <url> <answers> <store dir> openssl|dipd\n')
    process.exitCode = 2
  }
}
