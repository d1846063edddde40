#!/usr/bin/env node
// dipd: the command line. Every failure prints its DIP_* code and exits
// non-zero (1 for a failed operation, 2 for a usage mistake).
import { Command, CommanderError, Option } from 'commander'
import { DipError } from '../errors.js'
import { initDataDir } from '../data-dir.js'
import { startDaemon } from '../daemon.js'
import type { LocalFilter } from '../node.js'
import type { PullProgress, PullSummary } from '../sync/pull.js'
import { withNode } from './target.js'
import { ProgressView } from './progress.js'
import { prettyXml } from './pretty.js'

const DEFAULT_DATA = process.env.DIPD_DATA ?? './dipd-data'
const collect = (v: string, prev: string[] = []) => [...prev, v]

function dataOption(): Option {
  return new Option('--data <dir>', 'data folder (LevelDB store and node key)').default(DEFAULT_DATA)
}

function withFilters(cmd: Command): Command {
  return cmd
    .option('--tag <tag>', 'only opening posts with this tag (repeatable: any of them)', collect)
    .option('--thread <id>', 'only this thread: the opening post and its replies')
    .option('--since <time>', 'update-time from (inclusive): 2017-01-01T00:00:00Z, "2017-01-01 00:00:00" or Unix seconds')
    .option('--until <time>', 'update-time to (exclusive)')
    .option('--allow <key>', 'only models by this sender key (repeatable)', collect)
    .option('--deny <key>', 'never models by this sender key (repeatable)', collect)
}

interface FilterOpts {
  tag?: string[]
  thread?: string
  since?: string
  until?: string
  allow?: string[]
  deny?: string[]
}

function toFilter(o: FilterOpts): LocalFilter {
  const f: LocalFilter = {}
  if (o.tag) f.tags = o.tag
  if (o.thread !== undefined) f.thread = o.thread
  if (o.since !== undefined) f.since = o.since
  if (o.until !== undefined) f.until = o.until
  if (o.allow) f.allow = o.allow
  if (o.deny) f.deny = o.deny
  return f
}

function printSummary(s: PullSummary): void {
  const lines = [
    `pulled from ${s.from} in ${(s.ms / 1000).toFixed(1)} s`,
    `  listed    ${s.listed}`,
    `  skipped   ${s.skipped} (already held)`,
    `  fetched   ${s.fetched}`,
    `  stored    ${s.stored}`,
    `  duplicate ${s.duplicate}`,
  ]
  const rejected = Object.entries(s.rejected)
  lines.push(`  rejected  ${rejected.reduce((n, [, c]) => n + c, 0)}`)
  for (const [code, n] of rejected) lines.push(`    ${code} ${n}`)
  if (s.missing > 0) lines.push(`  missing   ${s.missing} (listed, not returned by get)`)
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
  .action(async (o: { data: string }) => {
    const pair = await initDataDir(o.data)
    process.stdout.write(`ed25519::${pair.publicKeyHex}\n`)
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

withFilters(
  program
    .command('pull')
    .description('copy models (all, or a filtered subset) from a peer into the data folder')
    .addOption(dataOption())
    .requiredOption('--from <url>', 'base URL of the peer, e.g. http://127.0.0.1:8080')
    .option('--json', 'print the summary as JSON'),
).action(async (o: FilterOpts & { data: string; from: string; json?: boolean }) => {
  const filter = toFilter(o)
  const view = new ProgressView(process.stderr)
  const onProgress = (p: PullProgress) => view.update(p)
  try {
    const summary = await withNode(o.data, {
      local: (node) => node.pull(o.from, filter, onProgress),
      remote: (api) => api.pull(o.from, filter, onProgress),
    })
    view.stop()
    if (o.json) process.stdout.write(JSON.stringify(summary) + '\n')
    else printSummary(summary)
  } finally {
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
