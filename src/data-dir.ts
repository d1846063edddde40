// The data folder of a node:
//
//   DIR/node.key      the node's identity, mode 0600: JSON {type, secretKey, publicKey (hex),
//                     life, previous: [{secretKey, publicKey, life}], rotations, proofs}
//   DIR/settings.json optional: limits, clock skew, rate limit (settings.ts)
//   DIR/store/        the LevelDB graph store (rows, indexes, peers), and in
//   DIR/store/models/ the models' bytes (append-only segment files; model-log.ts)
//   DIR/daemon.json   while `dipd serve` runs: {pid, url, token}, mode 0600; the
//                     token guards the loopback-only local API (/api/local/)
//
// Files are written to a temporary name, synced and renamed, so a crash never
// leaves half a key.
import { randomBytes } from 'node:crypto'
import { link, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { DipError } from './errors.js'
import { generateKeyPair, keyPairFromSecret, type NodeKeyPair } from './crypto/ed25519.js'
import { NodeIdentity } from './trust/identity.js'
import type { Proof, Rotation } from './trust/chain.js'

export const keyPath = (dir: string) => join(dir, 'node.key')
export const storePath = (dir: string) => join(dir, 'store')
export const daemonInfoPath = (dir: string) => join(dir, 'daemon.json')

/**
 * Writes `path` whole or not at all: a temporary file, synced, then renamed
 * over it, and the folder synced. `create`: only if `path` does not exist yet
 * (EEXIST otherwise), for what two processes might both create.
 */
async function writeFileAtomic(path: string, data: string, mode: number, create = false): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  const fh = await open(tmp, 'wx', mode)
  try {
    await fh.writeFile(data)
    await fh.sync()
  } finally {
    await fh.close()
  }
  if (create) await link(tmp, path).finally(() => rm(tmp, { force: true }))
  else await rename(tmp, path)
  const folder = await open(dirname(path), 'r')
  await folder.sync().finally(() => folder.close())
}

/**
 * Creates DIR and its key if missing (or imports `importKey`); returns the
 * identity. Idempotent. Importing the key DIR already holds marks it shared
 * (NodeIdentity.shared): the way for a pool node whose key was imported
 * before keys were marked.
 */
export async function initDataDir(dir: string, importKey?: NodeKeyPair): Promise<NodeIdentity> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
  } catch (cause) {
    throw new DipError('DIP_DATA_INVALID', `cannot make the data folder ${dir} (${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message})`, { cause })
  }
  if (await dataDirExists(dir)) {
    const identity = await loadIdentity(dir)
    if (importKey && identity.current.publicKeyHex !== importKey.publicKeyHex) {
      throw new DipError('DIP_USAGE', `${dir} already holds the key ${identity.nodeKey}; import a key into a new folder`)
    }
    if (importKey && !identity.shared) {
      identity.shared = true
      await saveIdentity(dir, identity)
    }
    return identity
  }
  const identity = importKey ? new NodeIdentity({ current: importKey, shared: true }) : new NodeIdentity({ current: generateKeyPair() })
  try {
    await saveIdentity(dir, identity, true)
  } catch (e) {
    // Another process (a second `dipd serve` started at once) made the key first: that one is the node's.
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    return initDataDir(dir, importKey)
  }
  return identity
}

interface KeyFile {
  type: 'ed25519'
  secretKey: string
  publicKey: string
  life?: number
  previous?: { secretKey: string; publicKey: string; life: number }[]
  rotations?: Rotation[]
  proofs?: Proof[]
  /** true for an imported key (NodeIdentity.shared) */
  shared?: boolean
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')

function pairFrom(secretKey: unknown, publicKey: unknown): NodeKeyPair {
  if (typeof secretKey !== 'string' || !/^[0-9a-f]{64}$/.test(secretKey)) throw new Error('bad secret key')
  const pair = keyPairFromSecret(Buffer.from(secretKey, 'hex'))
  if (publicKey !== undefined && publicKey !== pair.publicKeyHex) throw new Error('public key does not match the secret key')
  return pair
}

/** Writes DIR/node.key; `create`: only if there is none yet (EEXIST otherwise). */
export async function saveIdentity(dir: string, id: NodeIdentity, create = false): Promise<void> {
  const file: KeyFile = {
    type: 'ed25519',
    secretKey: hex(id.current.secretKey),
    publicKey: id.current.publicKeyHex,
    life: id.life,
    previous: id.previous.map((p) => ({ secretKey: hex(p.pair.secretKey), publicKey: p.pair.publicKeyHex, life: p.life })),
    rotations: id.rotations,
    proofs: id.proofs,
    ...(id.shared ? { shared: true } : {}),
  }
  await writeFileAtomic(keyPath(dir), JSON.stringify(file, null, 2) + '\n', 0o600, create)
}

export async function loadIdentity(dir: string): Promise<NodeIdentity> {
  let text: string
  try {
    text = await readFile(keyPath(dir), 'utf8')
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') throw new DipError('DIP_DATA_INVALID', `no key in ${dir} (run: dipd init --data ${dir})`, { cause })
    throw new DipError('DIP_DATA_INVALID', `cannot read the key in ${dir}`, { cause })
  }
  try {
    const j = JSON.parse(text) as KeyFile
    if (j.type !== 'ed25519') throw new Error('unknown key type')
    return new NodeIdentity({
      current: pairFrom(j.secretKey, j.publicKey),
      life: Number.isInteger(j.life) ? j.life! : 1,
      previous: (j.previous ?? []).map((p) => ({ pair: pairFrom(p.secretKey, p.publicKey), life: p.life })),
      rotations: j.rotations ?? [],
      proofs: j.proofs ?? [],
      shared: j.shared === true,
    })
  } catch (cause) {
    throw new DipError('DIP_DATA_INVALID', `the key file ${keyPath(dir)} is damaged`, { cause })
  }
}

/** Reads a key to import (`dipd init --key-file`): a dipd key file, or 64 hex digits of a secret key. */
export async function readKeyFile(path: string): Promise<NodeKeyPair> {
  let text: string
  try {
    text = (await readFile(path, 'utf8')).trim()
  } catch (cause) {
    throw new DipError('DIP_USAGE', `cannot read the key file ${path}`, { cause })
  }
  try {
    if (/^[0-9a-f]{64}$/.test(text)) return keyPairFromSecret(Buffer.from(text, 'hex'))
    const j = JSON.parse(text) as KeyFile
    return pairFrom(j.secretKey, j.publicKey)
  } catch (cause) {
    throw new DipError('DIP_USAGE', `${path} holds no ed25519 secret key`, { cause })
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
