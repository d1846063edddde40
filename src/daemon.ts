// Composition root: builds the registry, opens the key and the store, and
// (for serve) the HTTP app with the local API. Nothing global: tests start
// as many daemons as they like in one process.
import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { DipError } from './errors.js'
import { buildApp } from './http/app.js'
import { initDataDir, removeDaemonInfo, saveIdentity, storePath, writeDaemonInfo } from './data-dir.js'
import type { Limits } from './protocol/envelope.js'
import { loadSettings, type RateLimit, type Settings } from './settings.js'
import { Replicator } from './sync/replicator.js'
import { Metrics } from './metrics.js'
import { servedModelXml } from './store/served.js'
import type { NodeKeyPair } from './crypto/ed25519.js'
import { ModelRegistry } from './model/registry.js'
import { postModel } from './model/post/post.js'
import { messageModel } from './model/message/message.js'
import { GraphStore } from './store/graph-store.js'
import { Ingest } from './store/ingest.js'
import { DipNode, type LocalFilter } from './node.js'

export function defaultRegistry(): ModelRegistry {
  return new ModelRegistry([postModel, messageModel])
}

export interface NodeConfig {
  dataDir: string
  /** over DIR/settings.json */
  limits?: Partial<Limits>
  /** refuse update-times further ahead than this (seconds); over DIR/settings.json */
  maxFutureSeconds?: number
  /** a key to import when DIR is new (a pool sharing one key) */
  importKey?: NodeKeyPair
  /** the models this node speaks (default: defaultRegistry(), post and message) */
  registry?: ModelRegistry
}

export interface DaemonConfig extends NodeConfig {
  host?: string
  port?: number
  logger?: boolean
  /** over DIR/settings.json; max 0 = off */
  rateLimit?: RateLimit
  /** the base URL peers reach this node at (sent in pings and as DIP-From); default: the listen URL */
  publicUrl?: string
  /** over DIR/settings.json */
  pullIntervalSeconds?: number
  /** over DIR/settings.json: a get for ids this node lacks fetches them from the peer their key is pinned to */
  fetchOnMiss?: boolean
}

/** Opens (and if needed initialises) a data folder as a node. */
export async function openNode(config: NodeConfig): Promise<DipNode & { close(): Promise<void>; rateLimit: RateLimit; settings: Settings }> {
  const identity = await initDataDir(config.dataDir, config.importKey)
  const settings = await loadSettings(config.dataDir)
  const store = await GraphStore.openLevel(storePath(config.dataDir))
  const limits = { ...settings.limits, ...config.limits }
  const ingest = new Ingest(store, { maxFutureMs: 1000 * (config.maxFutureSeconds ?? settings.maxFutureSeconds) })
  for (const k of await store.bannedKeys()) ingest.banned.add(k)
  const node = new DipNode({
    store,
    ingest,
    registry: config.registry ?? defaultRegistry(),
    limits,
    identity,
    saveIdentity: (next) => saveIdentity(config.dataDir, next),
  })
  return Object.assign(node, { close: () => store.close(), rateLimit: settings.rateLimit, settings })
}

/**
 * A pull peer's pull: of its filter's model, or with none given (`dipd peer
 * add` without --model) of every model this node speaks, as push sends them
 * all. A model the filter does not fit (tags are a post's) or the peer does
 * not speak is passed over; another failure ends the round.
 */
async function pullEveryModel(node: DipNode, url: string, filter: LocalFilter, signal: AbortSignal): Promise<void> {
  if (filter.model !== undefined) {
    await node.pull(url, filter, undefined, signal)
    return
  }
  for (const def of node.deps.registry.all()) {
    if (signal.aborted) return
    try {
      await node.pull(url, { ...filter, model: def.name }, undefined, signal)
    } catch (e) {
      const passed = e instanceof DipError && (e.code === 'DIP_FILTER_INVALID' || e.code === 'DIP_PEER_INCOMPATIBLE' || (e.code === 'DIP_PEER_ERROR' && e.peerCode === 'DIP_MODEL_NOT_SUPPORTED'))
      if (!passed) throw e
    }
  }
}

export interface Daemon {
  url: string
  node: DipNode
  /** DIR/settings.json as read at start */
  settings: Settings
  app: FastifyInstance
  close(): Promise<void>
}

export async function startDaemon(config: DaemonConfig): Promise<Daemon> {
  const node = await openNode(config)
  const token = randomBytes(32).toString('hex')
  let selfUrl: string | undefined = config.publicUrl
  const replicator = new Replicator({
    store: node.deps.store,
    selfUrl: () => selfUrl,
    pullPeer: (url, filter, signal) => pullEveryModel(node, url, filter as LocalFilter, signal),
    withAttachments: (row, xml) => servedModelXml(node.deps.store, row, xml),
    pullIntervalSeconds: config.pullIntervalSeconds ?? node.settings.pullIntervalSeconds,
  })
  node.replicator = replicator
  const metrics = new Metrics({ lastSeq: () => node.deps.store.lastSeq, outboxes: () => replicator.status().filter((s) => s.push) })
  node.metrics = metrics
  node.deps.ingest.onStored = (via, n) => metrics.stored.inc({ via }, n)
  const app = buildApp({
    ...node.deps,
    logger: config.logger ?? false,
    rateLimit: config.rateLimit ?? node.rateLimit,
    local: { token, node, store: node.deps.store, registry: node.deps.registry },
    onPing: (from) => replicator.ping(from),
    metrics,
    fetchOnMiss: (config.fetchOnMiss ?? node.settings.fetchOnMiss) ? (model, ids) => node.fetchMissing(model, ids) : undefined,
  })
  let url: string
  try {
    url = await app.listen({ host: config.host ?? '127.0.0.1', port: config.port ?? 8080 })
  } catch (e) {
    await node.close()
    const code = (e as NodeJS.ErrnoException).code
    const where = `${config.host ?? '127.0.0.1'} port ${config.port ?? 8080}`
    if (code === 'EADDRINUSE') throw new DipError('DIP_USAGE', `${where} is in use: choose another with --port`, { cause: e })
    if (code === 'EACCES' || code === 'EADDRNOTAVAIL') throw new DipError('DIP_USAGE', `cannot listen on ${where} (${code}): choose another --host or --port`, { cause: e })
    throw e
  }
  const addr = app.server.address()
  const port = typeof addr === 'object' && addr ? addr.port : config.port
  const host = config.host ?? '127.0.0.1'
  // The CLI reaches the daemon over loopback whatever address it serves on.
  const localHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host
  url = `http://${localHost.includes(':') ? `[${localHost}]` : localHost}:${port}`
  await writeDaemonInfo(config.dataDir, { pid: process.pid, url, token })
  selfUrl ??= url
  await replicator.start()
  // F140: tell the peers this node is back, so they deliver what they queued for it now.
  void replicator.pingAll()
  let closed = false
  return {
    url,
    node,
    settings: node.settings,
    app,
    async close() {
      if (closed) return
      closed = true
      await removeDaemonInfo(config.dataDir, token)
      await replicator.stop()
      await app.close()
      await node.close()
    },
  }
}
