// Summary of V8 .cpuprofile files (from `node --cpu-prof`): where the main
// thread's time goes, as self time by area and inclusive time of the
// functions on the pull path. Only the JS main thread is sampled: work on
// libuv's thread pool (async crypto.verify, LevelDB) is not in here, only
// the main thread waiting for it ("(idle)").
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { fmt, table } from './lib.js'

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
}
interface ProfileNode {
  id: number
  callFrame: CallFrame
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
  startTime: number
  endTime: number
}

/** Self-time areas, first match wins. */
const AREAS: [string, (f: CallFrame) => boolean][] = [
  ['(idle)', (f) => f.functionName === '(idle)'],
  ['(garbage collector)', (f) => f.functionName === '(garbage collector)'],
  ['(program: native, unattributed)', (f) => f.functionName === '(program)'],
  ['fast-xml-parser validator', (f) => f.url.includes('fast-xml-parser') && /validator/i.test(f.url)],
  ['fast-xml-parser parser', (f) => f.url.includes('fast-xml-parser')],
  ['dipd protocol/xml (convert, refs, checks)', (f) => f.url.endsWith('/src/protocol/xml.js')],
  ['dipd protocol/canonical', (f) => f.url.endsWith('/src/protocol/canonical.js')],
  ['dipd protocol/envelope, id, time', (f) => /\/src\/protocol\/(envelope|id|time|version)\.js$/.test(f.url)],
  ['dipd model/ (stageModel, post)', (f) => f.url.includes('/src/model/')],
  ['dipd crypto/ed25519', (f) => f.url.endsWith('/src/crypto/ed25519.js')],
  ['dipd store/ (graph-store, ingest)', (f) => f.url.includes('/src/store/')],
  ['dipd sync/ (pull, client)', (f) => f.url.includes('/src/sync/')],
  ['dipd http/', (f) => f.url.includes('/src/http/')],
  ['dipd other', (f) => f.url.includes('/dist/src/')],
  ['level / abstract-level / classic-level', (f) => /node_modules\/(classic-level|abstract-level|level|level-transcoder|module-error|maybe-combine-errors)\//.test(f.url)],
  ['undici', (f) => f.url.includes('node_modules/undici')],
  ['fastify + deps', (f) => /node_modules\/(fastify|@fastify|avvio|find-my-way|light-my-request|pino|fast-json-stringify|secure-json-parse|toad-cache|process-warning)/.test(f.url)],
  ['p-queue', (f) => /node_modules\/(p-queue|eventemitter3|p-timeout)/.test(f.url)],
  ['node: internals', (f) => f.url.startsWith('node:')],
  ['native / builtins (JSON.parse, RegExp, Buffer…)', (f) => f.url === ''],
  ['other', () => true],
]

/** Functions whose inclusive time is shown (name, and a file suffix to tell same names apart). */
const FUNCTIONS: [string, string, string][] = [
  ['fetchBatch', '/src/sync/pull.js', 'pull: one get batch (request + parse + stage + ingest, main-thread part)'],
  ['call', '/src/sync/client.js', 'client.call: request, read body, parseXml, head'],
  ['parseXml', '/src/protocol/xml.js', 'parseXml (whole answers: list and get)'],
  ['validate', 'fast-xml-parser', '  fast-xml-parser XMLValidator.validate'],
  ['parse', 'fast-xml-parser', '  fast-xml-parser XMLParser.parse'],
  ['convert', '/src/protocol/xml.js', '  convert (fxp tree -> XmlElement)'],
  ['readListAnswer', '/src/protocol/envelope.js', 'readListAnswer'],
  ['wanted', '/src/store/graph-store.js', 'store.wanted (main-thread part)'],
  ['stageModel', '/src/model/signed.js', 'stageModel'],
  ['canonicalize', '/src/protocol/canonical.js', '  canonicalize'],
  ['fromContent', '/src/model/post/post.js', '  post fromContent'],
  ['accept', '/src/store/ingest.js', 'ingest.accept (main-thread part)'],
  ['verifySignatures', '/src/model/signed.js', '  verifySignatures (dispatch only)'],
  ['_batch', 'classic-level', 'LevelDB batch(), main-thread part (commit: ops copied to native)'],
  ['_getMany', 'classic-level', 'LevelDB getMany, main-thread part (wanted, commit, get)'],
  ['get', '/src/http/sync-routes.js', 'server: get answer (A)'],
  ['list', '/src/http/sync-routes.js', 'server: list answer (A)'],
  ['getModels', '/src/store/graph-store.js', '  store.getModels (A)'],
]

export async function summariseProfile(path: string, title: string): Promise<string> {
  const p = JSON.parse(await readFile(path, 'utf8')) as Profile
  const byId = new Map<number, ProfileNode>(p.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const self = new Map<number, number>()
  // timeDeltas[i+1] is the time spent at samples[i] (Chrome DevTools' convention).
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i + 1] ?? 0
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + dt)
  }
  const total = p.endTime - p.startTime
  const area = new Map<string, number>()
  const inclusive = new Map<string, number>()
  const selfFn = new Map<string, number>()
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame
    const name = AREAS.find(([, test]) => test(f))![0]
    area.set(name, (area.get(name) ?? 0) + us)
    const fk = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${f.lineNumber + 1}`
    selfFn.set(fk, (selfFn.get(fk) ?? 0) + us)
    const seen = new Set<string>()
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const cf = byId.get(at)!.callFrame
      for (const [fn, file] of FUNCTIONS) {
        const key = `${fn}|${file}`
        if (cf.functionName === fn && cf.url.includes(file) && !seen.has(key)) {
          seen.add(key)
          inclusive.set(key, (inclusive.get(key) ?? 0) + us)
        }
      }
    }
  }
  const idle = area.get('(idle)') ?? 0
  const busy = total - idle
  const ms = (us: number) => `${fmt(us / 1000)} ms`
  const pct = (us: number) => `${fmt((100 * us) / busy, 1)}% of busy`
  const areaRows: [string, string, string][] = [...area.entries()]
    .filter(([name]) => name !== '(idle)')
    .sort((x, y) => y[1] - x[1])
    .filter(([, us]) => us >= busy * 0.005)
    .map(([name, us]) => [name, ms(us), pct(us)])
  const fnRows: [string, string, string][] = FUNCTIONS.map(([fn, file, label]): [string, string, string] => {
    const us = inclusive.get(`${fn}|${file}`) ?? 0
    return [label, ms(us), pct(us)]
  }).filter((r) => r[1] !== '0 ms')
  const topRows: [string, string, string][] = [...selfFn.entries()]
    .filter(([k]) => !k.startsWith('(idle)'))
    .sort((x, y) => y[1] - x[1])
    .slice(0, 15)
    .map(([k, us]) => [k, ms(us), pct(us)])
  return (
    table(`${title}: ${ms(total)} profiled, ${ms(busy)} busy, ${ms(idle)} idle (${path})`, [['self time by area', '', ''], ...areaRows]) +
    '\n' +
    table(`${title}: inclusive time of pull-path functions (main thread only)`, fnRows.length > 0 ? fnRows : [['(none found)', '', '']]) +
    '\n' +
    table(`${title}: top self-time functions`, topRows)
  )
}

/** Summarises every .cpuprofile in a folder (one per process). */
export async function summariseProfiles(dir: string, title: string): Promise<string> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).sort()
  if (files.length === 0) return `${title}: no .cpuprofile in ${dir}\n`
  const parts: string[] = []
  for (const f of files) parts.push(await summariseProfile(join(dir, f), title))
  return parts.join('\n')
}

// `node dist/bench/cpuprofile.js FILE|DIR…`: summarise profiles taken by hand.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const a of process.argv.slice(2)) {
    const text = a.endsWith('.cpuprofile') ? await summariseProfile(a, a) : await summariseProfiles(a, a)
    process.stdout.write(text + '\n')
  }
}
