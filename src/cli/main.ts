#!/usr/bin/env node
// dipd: the command line. Every failure prints its DIP_* code and exits
// non-zero (1 for a failed operation, 2 for a usage mistake).
import { Command, CommanderError, Option } from 'commander'
import { DipError } from '../errors.js'
import { initDataDir, readKeyFile } from '../data-dir.js'
import { startDaemon } from '../daemon.js'
import type { LocalFilter } from '../node.js'
import type { PullProgress, PullSummary } from '../sync/pull.js'
import type { PeerRecord } from '../store/graph-store.js'
import type { LocalOp } from '../http/local-routes.js'
import type { PeerStatus } from '../sync/replicator.js'
import { applyHeapSetting, withNode } from './target.js'
import { ProgressView } from './progress.js'
import { prettyXml } from './pretty.js'

const DEFAULT_DATA = process.env.DIPD_DATA ?? './dipd-data'
const collect = (v: string, prev: string[] = []) => [...prev, v]

function dataOption(): Option {
  return new Option('--data <dir>', 'data folder (LevelDB store and node key)').default(DEFAULT_DATA)
}

function withFilters(cmd: Command): Command {
  return cmd
    .option('--model <name>', 'the model: post (the default) or message')
    .option('--tag <tag>', 'only opening posts with this tag (repeatable: any of them)', collect)
    .option('--thread <id>', 'only this thread: the opening post and its replies')
    .option('--since <time>', 'update-time from (inclusive): 2017-01-01T00:00:00Z, "2017-01-01 00:00:00" or Unix seconds')
    .option('--until <time>', 'update-time to (exclusive)')
    .option('--allow <key>', 'only models by this sender key (repeatable)', collect)
    .option('--deny <key>', 'never models by this sender key (repeatable)', collect)
    .option('--to <recipient>', 'messages only: to this key or group:NAME (repeatable: any of them)', collect)
    .option('--kind <kind>', 'messages only: of this kind, chat, notice or announce (repeatable: any of them)', collect)
}

/** The filter flags as commander gives them: LocalFilter's fields, with the repeatable flags named in the singular. */
type FilterOpts = Omit<LocalFilter, 'tags' | 'kinds'> & { tag?: string[]; kind?: string[] }

function toFilter(o: FilterOpts): LocalFilter {
  const f: LocalFilter = {}
  if (o.model !== undefined) f.model = o.model
  if (o.tag) f.tags = o.tag
  if (o.thread !== undefined) f.thread = o.thread
  if (o.since !== undefined) f.since = o.since
  if (o.until !== undefined) f.until = o.until
  if (o.allow) f.allow = o.allow
  if (o.deny) f.deny = o.deny
  if (o.to) f.to = o.to
  if (o.kind) f.kinds = o.kind
  return f
}

function printSummary(s: PullSummary): void {
  const lines = [
    `pulled from ${s.from} in ${(s.ms / 1000).toFixed(1)} s${s.interrupted ? ' (interrupted)' : ''}${s.retried ? ` (went on ${s.retried} time${s.retried === 1 ? '' : 's'} after the link failed)` : ''}`,
    `  listed    ${s.listed}`,
    `  skipped   ${s.skipped} (already held)`,
    `  fetched   ${s.fetched}`,
    `  stored    ${s.stored}`,
    `  duplicate ${s.duplicate}`,
  ]
  const rejected = Object.entries(s.rejected)
  lines.push(`  rejected  ${rejected.reduce((n, [, c]) => n + c, 0)}`)
  for (const [code, n] of rejected) lines.push(`    ${code} ${n}`)
  if (s.askedAgain) lines.push(`  asked again ${s.askedAgain} (listed by an earlier pull, not returned then)`)
  if (s.missing > 0) lines.push(`  missing   ${s.missing} (listed, not returned by get; the next pull asks for each once more)`)
  const st = s.stages
  const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`
  lines.push(`  time in stages (overlapping): list ${sec(st.listMs)}, get ${sec(st.getMs)} (staging ${sec(st.stageMs)}), checks ${sec(st.verifyMs)}, commits ${sec(st.commitMs)}`)
  process.stdout.write(lines.join('\n') + '\n')
}

const program = new Command()
program.name('dipd').description('A replication daemon for DIP, the Data Interchange Protocol').version('0.1.0').showHelpAfterError()
// Set before the commands are added, so that every subcommand inherits them.
program.exitOverride()
program.configureOutput({ writeErr: (s) => process.stderr.write(s.replace(/^error: /, 'DIP_USAGE: ')) })

program
  .command('init')
  .description('create the data folder and its node key; prints the node key')
  .addOption(dataOption())
  .option('--key-file <file>', 'import this secret key (a dipd key file, or 64 hex digits) instead of generating one: nodes of a pool may share a key')
  .action(async (o: { data: string; keyFile?: string }) => {
    const identity = await initDataDir(o.data, o.keyFile === undefined ? undefined : await readKeyFile(o.keyFile))
    process.stdout.write(`${identity.nodeKey}\n`)
  })

program
  .command('serve')
  .description('run the node (initialises an empty data folder)')
  .addOption(dataOption())
  .option('--port <port>', 'TCP port (0 = any free port)', '8080')
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--log', 'log requests as JSON lines')
  .action(async (o: { data: string; port: string; host: string; log?: boolean }) => {
    const port = Number(o.port)
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new DipError('DIP_USAGE', `--port ${o.port} is not a port`)
    const daemon = await startDaemon({ dataDir: o.data, host: o.host, port, logger: o.log ?? false })
    applyHeapSetting(daemon.settings)
    process.stdout.write(`dipd serving ${daemon.node.nodeKey} at ${daemon.url} (data ${o.data})\n`)
    const stop = () => {
      daemon.close().then(
        () => process.exit(0),
        () => process.exit(1),
      )
    }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })

program
  .command('post')
  .description('author a signed post; prints its global id')
  .addOption(dataOption())
  .requiredOption('--title <title>', 'title (may be empty)')
  .requiredOption('--text <text>', 'text; [post]ID[/post] references another post')
  .option('--tag <tag>', 'tag of an opening post (repeatable)', collect)
  .option('--thread <id>', 'the opening post this one replies to')
  .action(async (o: { data: string; title: string; text: string; tag?: string[]; thread?: string }) => {
    const fields = { title: o.title, text: o.text, tags: o.tag ?? [], thread: o.thread }
    const r = await withNode(o.data, {
      local: (node) => node.author('post', fields),
      remote: (api) => api.json<{ id: string }>('POST', '/api/local/models', { model: 'post', fields }),
    })
    process.stdout.write(r.id + '\n')
  })

program
  .command('message')
  .description('author a signed message (the F140-style model: at most 140 characters to a key or a group); prints its global id')
  .addOption(dataOption())
  .option('--to <key>', 'the recipient key (64 hex or ed25519::<hex>)')
  .option('--group <name>', 'the recipient group')
  .requiredOption('--text <text>', '1 to 140 characters')
  .option('--kind <kind>', 'chat, notice or announce', 'chat')
  .action(async (o: { data: string; to?: string; group?: string; text: string; kind: string }) => {
    if ((o.to === undefined) === (o.group === undefined)) throw new DipError('DIP_USAGE', 'say --to KEY or --group NAME')
    const fields = { to: o.group !== undefined ? { group: o.group } : o.to, text: o.text, kind: o.kind }
    const r = await withNode(o.data, {
      local: (node) => node.author('message', fields),
      remote: (api) => api.json<{ id: string }>('POST', '/api/local/models', { model: 'message', fields }),
    })
    process.stdout.write(r.id + '\n')
  })

withFilters(
  program
    .command('pull')
    .description('copy models (all, or a filtered subset) from a peer into the data folder')
    .addOption(dataOption())
    .requiredOption('--from <url>', 'base URL of the peer, e.g. http://127.0.0.1:8080')
    .option('--full', 'list everything again instead of only what the peer stored since the last pull of this filter')
    .option('--retries <n>', 'when the link to the peer fails midway, go on from the checkpoint up to n more times, waiting 1 s, 2 s, 4 s… (at most a minute) before each', '5')
    .option('--json', 'print the summary as JSON'),
).action(async (o: FilterOpts & { data: string; from: string; full?: boolean; retries: string; json?: boolean }) => {
  // A whole number; how many pull() allows is its to say.
  if (!/^[0-9]{1,9}$/.test(o.retries)) throw new DipError('DIP_USAGE', `--retries takes a whole number, not ${JSON.stringify(o.retries.slice(0, 20))}`)
  const filter = { ...toFilter(o), ...(o.full ? { full: true } : {}), retries: Number(o.retries) }
  const view = new ProgressView(process.stderr)
  let stored = 0
  const onProgress = (p: PullProgress) => {
    stored = p.stored
    if (p.retry) {
      view.stop()
      const r = p.retry
      process.stderr.write(`${r.error.code}: ${r.error.message}\n${p.stored} models stored so far are kept; going on from the checkpoint in ${r.inMs / 1000} s (retry ${r.attempt} of ${r.of})\n`)
    } else view.update(p)
  }
  // Ctrl-C stops the pull, committing the batches in flight; a second one quits at once.
  const interrupt = new AbortController()
  const onSigint = () => {
    interrupt.abort()
    view.stop()
    process.stderr.write('interrupted: committing the batches in flight (Ctrl-C again quits at once)\n')
    process.once('SIGINT', () => process.exit(130))
  }
  process.once('SIGINT', onSigint)
  let daemon = false
  try {
    const summary = await withNode(o.data, {
      local: (node) => node.pull(o.from, filter, onProgress, interrupt.signal),
      remote: (api) => {
        daemon = true
        return api.pull(o.from, filter, onProgress, interrupt.signal)
      },
    }, true) // a pull into a new folder makes its node (README: dipd pull --data ./mirror)
    view.stop()
    if (o.json) process.stdout.write(JSON.stringify(summary) + '\n')
    else printSummary(summary)
    if (summary.interrupted) {
      process.stderr.write('interrupted: the same command goes on from here\n')
      process.exitCode = 130
    }
  } catch (e) {
    view.stop()
    if (stored > 0) process.stderr.write(`${daemon ? 'at least ' : ''}${stored} models were stored before the error and are kept; the same command goes on from there\n`)
    throw e
  } finally {
    process.removeListener('SIGINT', onSigint)
    view.stop()
  }
})

withFilters(
  program
    .command('list')
    .description('what the data folder holds, in store order')
    .addOption(dataOption())
    .option('--json', 'print an array of {id, updateTime, hash}'),
).action(async (o: FilterOpts & { data: string; json?: boolean }) => {
  const filter = toFilter(o)
  const rows = await withNode(o.data, {
    local: (node) => node.list(filter),
    remote: async (api) => (await api.json<{ rows: { id: string; updateTime: string; hash: string }[] }>('POST', '/api/local/list', { filter })).rows,
  })
  if (o.json) process.stdout.write(JSON.stringify(rows) + '\n')
  else for (const r of rows) process.stdout.write(`${r.id}\t${r.updateTime}\t${r.hash}\n`)
})

program
  .command('show')
  .description('a model as XML')
  .addOption(dataOption())
  .argument('<id>', 'global id key-type::key::local-id')
  .option('--pretty', 'indent for reading (the signed bytes are the unindented form)')
  .action(async (id: string, o: { data: string; pretty?: boolean }) => {
    const xml = await withNode(o.data, {
      local: (node) => node.show(id),
      remote: async (api) => (await api.json<{ xml: string }>('GET', `/api/local/models/${encodeURIComponent(id)}`)).xml,
    })
    if (xml === undefined) throw new DipError('DIP_NOT_FOUND', `no model ${id}`)
    process.stdout.write((o.pretty ? prettyXml(xml) : xml) + '\n')
  })

/** Runs an operation of the node, in the daemon if one holds DIR (POST /api/local/call). */
function op<T>(dir: string, name: LocalOp, ...args: unknown[]): Promise<T> {
  return withNode(dir, {
    local: (node) => (node[name] as (...a: unknown[]) => Promise<T>).apply(node, args),
    remote: async (api) => (await api.json<{ result: T }>('POST', '/api/local/call', { op: name, args })).result,
  })
}

const print = (json: boolean | undefined, value: unknown, text: () => string) => process.stdout.write((json ? JSON.stringify(value) : text()) + '\n')

const peers = program
  .command('peers')
  .alias('peer')
  .description('the peers of this node: pinned key, life, proof, last sync, counts, sender policy, push/pull and outbox')
peers
  .command('list', { isDefault: true })
  .description('show every peer (the default)')
  .addOption(dataOption())
  .option('--json', 'print JSON')
  .action(async (o: { data: string; json?: boolean }) => {
    const list = await op<(PeerRecord & { outbox?: PeerStatus })[]>(o.data, 'peers')
    print(o.json, list, () =>
      list.length === 0
        ? 'no peers yet'
        : list
            .map((p) =>
              [
                p.url,
                `  key       ${p.key === undefined ? '- (pinned at the first sync)' : `${p.key} (life ${p.life}, pinned ${p.pinnedAt})`}`,
                `  proof     ${p.proof ? `${p.proof.turf} (life ${p.proof.life})` : '-'}`,
                `  last sync ${p.lastSync ?? '-'}; pulls ${p.pulls}, stored ${p.stored}, rejected ${p.rejected}`,
                ...(p.allow ? [`  allow     ${p.allow.join(' ')}`] : []),
                ...(p.deny && p.deny.length > 0 ? [`  deny      ${p.deny.join(' ')}`] : []),
                ...(p.push || p.pull ? [`  replicate ${[p.push ? 'push' : '', p.pull ? 'pull' : ''].filter(Boolean).join(' + ')}${p.filter && Object.keys(p.filter).length > 0 ? ` filter ${JSON.stringify(p.filter)}` : ''}`] : []),
                ...(p.outbox?.state
                  ? [
                      `  outbox    ${p.outbox.queue} queued, ${p.outbox.state.pushed} delivered${p.outbox.circuitOpen ? ', circuit open' : ''}`,
                      ...(p.outbox.state.lastError ? [`  error     ${p.outbox.state.lastError}; next attempt ${p.outbox.state.nextAttempt ?? 'now'}`] : []),
                    ]
                  : []),
                ...(p.outbox?.pullError ? [`  pull      failed ${p.outbox.pullError.at}: ${p.outbox.pullError.error}`] : []),
              ].join('\n'),
            )
            .join('\n'),
    )
  })
withFilters(
  peers
    .command('add')
    .description('replicate with a peer: --push offers it every model stored here from now on, --pull pulls from it on a schedule; filters narrow both')
    .addOption(dataOption())
    .requiredOption('--url <url>', 'base URL of the peer')
    .option('--push', 'push newly stored models to it (pools, followers)')
    .option('--pull', 'pull from it every pullIntervalSeconds and when it pings'),
).action(async (o: FilterOpts & { data: string; url: string; push?: boolean; pull?: boolean }) => {
  if (!o.push && !o.pull) throw new DipError('DIP_USAGE', 'say --push, --pull or both')
  const r = await op<PeerRecord>(o.data, 'addPeer', o.url, { push: o.push === true, pull: o.pull === true, filter: toFilter(o) })
  process.stdout.write(`${r.url}: ${[r.push ? 'push' : '', r.pull ? 'pull' : ''].filter(Boolean).join(' + ')}\n`)
})
peers
  .command('remove')
  .description('stop replicating with a peer and forget it (its pin and outbox too)')
  .addOption(dataOption())
  .requiredOption('--url <url>', 'base URL of the peer')
  .action(async (o: { data: string; url: string }) => {
    const r = await op<{ url: string; removed: boolean }>(o.data, 'removePeer', o.url)
    if (!r.removed) throw new DipError('DIP_NOT_FOUND', `no peer ${r.url}`)
    process.stdout.write(`${r.url}: removed\n`)
  })
peers
  .command('repin')
  .description("accept a peer's new node key after checking it: the one given, or the one its manifest names now")
  .addOption(dataOption())
  .argument('<url>', 'base URL of the peer')
  .option('--key <key>', 'pin exactly this key (ed25519::<hex>)')
  .action(async (url: string, o: { data: string; key?: string }) => {
    const r = await op<{ url: string; from?: string; to: string }>(o.data, 'repin', url, o.key)
    process.stdout.write(`${r.url}: pinned ${r.to}${r.from && r.from !== r.to ? ` (was ${r.from})` : ''}\n`)
  })
peers
  .command('set')
  .description('sender policy for one peer: take only models by --allow keys (if any), never by --deny keys')
  .addOption(dataOption())
  .argument('<url>', 'base URL of the peer')
  .option('--allow <key>', 'take only this sender key (repeatable)', collect)
  .option('--deny <key>', 'never this sender key (repeatable)', collect)
  .action(async (url: string, o: { data: string; allow?: string[]; deny?: string[] }) => {
    const r = await op<PeerRecord>(o.data, 'setPeer', url, { allow: o.allow, deny: o.deny })
    process.stdout.write(`${r.url}: allow ${r.allow?.join(' ') ?? 'all'}; deny ${r.deny?.join(' ') || 'none'}\n`)
  })

program
  .command('proof')
  .description('proofs of this node: `proof add --turf HOST` signs dip-proof:<turf>:<life>, published in the manifest')
  .argument('<action>', 'add')
  .addOption(dataOption())
  .requiredOption('--turf <host>', 'the host name peers reach this node at')
  .action(async (action: string, o: { data: string; turf: string }) => {
    if (action !== 'add') throw new DipError('DIP_USAGE', `unknown proof action ${action} (add)`)
    const p = await op<{ turf: string; life: number; key: string }>(o.data, 'addProof', o.turf)
    process.stdout.write(`proof for ${p.turf}, life ${p.life}, key ${p.key}\n`)
  })

program
  .command('key')
  .description('`key rotate`: a new node key, with a rotation signed by the old one (peers follow it without a manual step)')
  .argument('<action>', 'rotate')
  .addOption(dataOption())
  .action(async (action: string, o: { data: string }) => {
    if (action !== 'rotate') throw new DipError('DIP_USAGE', `unknown key action ${action} (rotate)`)
    const r = await op<{ from: string; to: string; life: number }>(o.data, 'rotateKey')
    process.stdout.write(`rotated ${r.from} -> ${r.to} (life ${r.life})\n`)
  })

program
  .command('ban')
  .description('ban a sender key node-wide: its models are removed, never served, refused on put and skipped on pull')
  .addOption(dataOption())
  .argument('<key>', 'sender key (64 hex or ed25519::<hex>)')
  .action(async (key: string, o: { data: string }) => {
    const r = await op<{ key: string; removed: number }>(o.data, 'ban', key)
    process.stdout.write(`banned ${r.key}; removed ${r.removed} models\n`)
  })

program
  .command('unban')
  .description('lift a ban (removed models come back with a later `dipd pull --full`)')
  .addOption(dataOption())
  .argument('<key>', 'sender key')
  .action(async (key: string, o: { data: string }) => {
    const r = await op<{ key: string }>(o.data, 'unban', key)
    process.stdout.write(`unbanned ${r.key}\n`)
  })

function fail(e: unknown): never {
  if (e instanceof CommanderError) {
    process.exit(e.exitCode === 0 ? 0 : 2) // commander printed the help or the DIP_USAGE line
  }
  if (e instanceof DipError) {
    process.stderr.write(`${e.code}${e.peerCode ? ` (${e.peerCode})` : ''}: ${e.message}\n`)
    process.exit(e.code === 'DIP_USAGE' ? 2 : 1)
  }
  process.stderr.write(`DIP_INTERNAL: ${(e as Error)?.stack ?? String(e)}\n`)
  process.exit(1)
}

program.parseAsync(process.argv).catch(fail)
