// The data folder of a node:
//
//   DIR/node.key      the node's ed25519 key: JSON {type, secretKey, publicKey} (hex), mode 0600
//   DIR/store/        the LevelDB graph store
//   DIR/daemon.json   while `dipd serve` runs: {pid, url, token}, mode 0600; the
//                     token guards the loopback-only local API (/api/local/)
//
// Files are written to a temporary name, synced and renamed, so a crash never
// leaves half a key.
import { randomBytes } from 'node:crypto'
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { DipError } from './errors.js'
import { generateKeyPair, keyPairFromSecret, type NodeKeyPair } from './crypto/ed25519.js'

export const keyPath = (dir: string) => join(dir, 'node.key')
export const storePath = (dir: string) => join(dir, 'store')
export const daemonInfoPath = (dir: string) => join(dir, 'daemon.json')

async function writeFileAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  const fh = await open(tmp, 'wx', mode)
  try {
    await fh.writeFile(data)
    await fh.sync()
  } finally {
    await fh.close()
  }
  await rename(tmp, path)
}

/** Creates DIR and its key if missing; returns the key. Idempotent. */
export async function initDataDir(dir: string): Promise<NodeKeyPair> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const existing = await loadKey(dir).catch((e: unknown) => {
    if (e instanceof DipError && e.message.startsWith('no key')) return undefined
    throw e
  })
  if (existing) return existing
  const pair = generateKeyPair()
  const json = JSON.stringify({ type: 'ed25519', secretKey: Buffer.from(pair.secretKey).toString('hex'), publicKey: pair.publicKeyHex }, null, 2) + '\n'
  await writeFileAtomic(keyPath(dir), json, 0o600)
  return pair
}

export async function loadKey(dir: string): Promise<NodeKeyPair> {
  let text: string
  try {
    text = await readFile(keyPath(dir), 'utf8')
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') throw new DipError('DIP_DATA_INVALID', `no key in ${dir} (run: dipd init --data ${dir})`, { cause })
    throw new DipError('DIP_DATA_INVALID', `cannot read the key in ${dir}`, { cause })
  }
  try {
    const j = JSON.parse(text) as { type?: string; secretKey?: string; publicKey?: string }
    if (j.type !== 'ed25519' || !/^[0-9a-f]{64}$/.test(j.secretKey ?? '')) throw new Error('bad key fields')
    const pair = keyPairFromSecret(Buffer.from(j.secretKey!, 'hex'))
    if (j.publicKey !== undefined && j.publicKey !== pair.publicKeyHex) throw new Error('public key does not match the secret key')
    return pair
  } catch (cause) {
    throw new DipError('DIP_DATA_INVALID', `the key file ${keyPath(dir)} is damaged`, { cause })
  }
}

export interface DaemonInfo {
  pid: number
  /** base URL of the running daemon (loopback) */
  url: string
  token: string
}

export async function writeDaemonInfo(dir: string, info: DaemonInfo): Promise<void> {
  await writeFileAtomic(daemonInfoPath(dir), JSON.stringify(info) + '\n', 0o600)
}

export async function readDaemonInfo(dir: string): Promise<DaemonInfo | undefined> {
  try {
    const j = JSON.parse(await readFile(daemonInfoPath(dir), 'utf8')) as DaemonInfo
    return typeof j.url === 'string' && typeof j.token === 'string' ? j : undefined
  } catch {
    return undefined
  }
}

export async function removeDaemonInfo(dir: string, token: string): Promise<void> {
  const info = await readDaemonInfo(dir)
  if (info?.token === token) await rm(daemonInfoPath(dir), { force: true })
}

export async function dataDirExists(dir: string): Promise<boolean> {
  return stat(keyPath(dir)).then(
    () => true,
    () => false,
  )
}
