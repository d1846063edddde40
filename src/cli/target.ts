// Where a command runs: LevelDB allows one process per store, so while
// `dipd serve` holds the data folder, commands go to it over the loopback
// local API (token in DIR/daemon.json); otherwise they open the folder
// themselves.
import { stat } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { setFlagsFromString } from 'node:v8'
import { request } from 'undici'
import { DipError, isDipCode, type DipCode } from '../errors.js'
import { readDaemonInfo, type DaemonInfo } from '../data-dir.js'
import { openNode } from '../daemon.js'
import type { DipNode, LocalFilter } from '../node.js'
import type { Settings } from '../settings.js'
import type { PullProgress, PullSummary } from '../sync/pull.js'

export class LocalApi {
  readonly #info: DaemonInfo

  constructor(info: DaemonInfo) {
    this.#info = info
  }

  /** `waitLong`: no time limit of the client's own (a pull: the daemon's limits on its peer govern, and its answer starts with its first progress). */
  async #send(method: 'GET' | 'POST', path: string, body?: unknown, waitLong = false) {
    try {
      return await request(this.#info.url + path, {
        method,
        headers: { authorization: `Bearer ${this.#info.token}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        ...(waitLong ? { headersTimeout: 0, bodyTimeout: 0 } : {}),
      })
    } catch (cause) {
      throw new DipError('DIP_DATA_LOCKED', `the daemon at ${this.#info.url} does not answer`, { cause })
    }
  }

  async json<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const res = await this.#send(method, path, body)
    const j = (await res.body.json().catch(() => ({}))) as { error?: { code: string; message: string; peerCode?: string } }
    if (res.statusCode !== 200 || j.error) throw toError(j.error)
    return j as T
  }

  /**
   * `signal` asks the daemon to stop the pull (POST /api/local/pull/stop):
   * it commits the batches in flight, and the stream ends with the summary,
   * `interrupted` set, as a pull run here would.
   */
  async pull(from: string, filter: LocalFilter, onProgress: (p: PullProgress) => void, signal?: AbortSignal): Promise<PullSummary> {
    const id = randomBytes(8).toString('hex')
    const stop = () => void this.json('POST', '/api/local/pull/stop', { id }).catch(() => {})
    signal?.addEventListener('abort', stop, { once: true })
    try {
      return await this.#pull(from, filter, onProgress, id)
    } finally {
      signal?.removeEventListener('abort', stop)
    }
  }

  async #pull(from: string, filter: LocalFilter, onProgress: (p: PullProgress) => void, id: string): Promise<PullSummary> {
    const res = await this.#send('POST', '/api/local/pull', { from, filter, id }, true)
    if (res.statusCode !== 200) {
      const j = (await res.body.json().catch(() => ({}))) as { error?: { code: string; message: string } }
      throw toError(j.error)
    }
    let buf = ''
    try {
      for await (const chunk of res.body) {
        buf += chunk.toString()
        let nl: number
        while ((nl = buf.indexOf('\n')) !== -1) {
          const line = JSON.parse(buf.slice(0, nl)) as { progress?: PullProgress; summary?: PullSummary; error?: { code: string; message: string; peerCode?: string } }
          buf = buf.slice(nl + 1)
          if (line.progress) onProgress(line.progress)
          if (line.summary) return line.summary
          if (line.error) throw toError(line.error)
        }
      }
    } catch (cause) {
      if (cause instanceof DipError) throw cause
      // The daemon went away mid-pull (killed, say): what it committed stays, and the same command goes on from there.
      throw new DipError('DIP_DATA_LOCKED', `the daemon at ${this.#info.url} stopped answering during the pull`, { cause })
    }
    throw new DipError('DIP_DATA_LOCKED', 'the daemon ended the pull without a summary')
  }
}

function toError(e: { code: string; message: string; peerCode?: string } | undefined): DipError {
  const code: DipCode = e && isDipCode(e.code) ? e.code : 'DIP_INTERNAL'
  return new DipError(code, e?.message ?? 'the daemon answered an error', e?.peerCode ? { peerCode: e.peerCode } : {})
}

/**
 * Whether DIR/daemon.json names a daemon that runs and holds DIR: its
 * process is there, and the local API at its URL takes its token and says
 * the same pid. A file a killed daemon left names a dead pid, or a URL that
 * another folder's daemon may listen on since.
 */
async function daemonAlive(info: DaemonInfo): Promise<boolean> {
  try {
    process.kill(info.pid, 0)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false
  }
  try {
    const res = await request(info.url + '/api/local/status', { method: 'GET', headers: { authorization: `Bearer ${info.token}` }, headersTimeout: 2000, bodyTimeout: 2000 })
    const j = (await res.body.json().catch(() => ({}))) as { pid?: unknown }
    return res.statusCode === 200 && j.pid === info.pid
  } catch {
    return false
  }
}

/**
 * V8's heap growth as DIR/settings.json says (heapGrowingPercent). A
 * process-wide flag, so the CLI sets it (for `serve`, and for a command
 * that opens the store itself, such as a long pull), not the library calls.
 */
export function applyHeapSetting(settings: Settings): void {
  if (settings.heapGrowingPercent > 0) setFlagsFromString(`--heap-growing-percent=${settings.heapGrowingPercent}`)
}

const folderExists = (dir: string) =>
  stat(dir).then(
    () => true,
    () => false,
  )

/**
 * Runs an operation in the daemon that holds `dir`, or on the folder
 * directly. Only `create` (a pull into a new folder) makes the folder when
 * it is not there: a mistyped --data is an error, not a new node with a new
 * key. (A folder that is there but empty gets its node, as before.)
 */
export async function withNode<T>(dir: string, how: { local: (node: DipNode) => Promise<T>; remote: (api: LocalApi) => Promise<T> }, create = false): Promise<T> {
  const info = await readDaemonInfo(dir)
  if (info && (await daemonAlive(info))) return how.remote(new LocalApi(info))
  if (!create && !(await folderExists(dir))) throw new DipError('DIP_DATA_INVALID', `there is no folder ${dir}: make its node with dipd init --data ${dir} (or dipd serve)`)
  const node = await openNode({ dataDir: dir })
  applyHeapSetting(node.settings)
  try {
    return await how.local(node)
  } finally {
    await node.close()
  }
}
