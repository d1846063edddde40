// `npm run bench [-- args]`: runs every bench in order, passing the args
// through (e.g. `--n 5000`). `--only NAME[,NAME]` picks some, `--all` adds
// the ones that are off by default (profiling aids like pull-stages). Each bench
// prints its own table and one `BENCH_JSON {…}` line; a failed bench makes
// the exit code non-zero but the others still run.
//
// To add a bench: write bench/<question>.ts exporting a `Bench`, add it below.
import { pathToFileURL } from 'node:url'
import { argValue, cleanup, type Bench } from './lib.js'
import { memoryBench } from './memory.js'
import { pullBench } from './pull.js'
import { pullStagesBench } from './pull-stages.js'
import { pushBench } from './push.js'
import { replayBench } from './replay.js'

/** In order; `byDefault: false` ones run only when named with --only, or with --all. */
export const BENCHES: (Bench & { byDefault: boolean })[] = [
  { ...pullBench, byDefault: true },
  { ...memoryBench, byDefault: true },
  { ...pullStagesBench, byDefault: false },
  { ...pushBench, byDefault: true },
  { ...replayBench, byDefault: false },
]

export async function main(args: string[]): Promise<number> {
  const only = argValue(args, 'only')?.split(',')
  const all = args.includes('--all')
  const picked = only ? BENCHES.filter((b) => only.includes(b.name)) : BENCHES.filter((b) => all || b.byDefault)
  if (only && picked.length !== only.length) {
    process.stderr.write(`unknown bench in --only ${only.join(',')}; have: ${BENCHES.map((b) => b.name).join(', ')}\n`)
    return 2
  }
  let failed = 0
  for (const b of picked) {
    process.stdout.write(`\n== ${b.name}: ${b.question}\n`)
    const t0 = performance.now()
    try {
      await b.run(args)
      process.stdout.write(`== ${b.name}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`)
    } catch (e) {
      failed++
      process.stderr.write(`== ${b.name}: FAILED: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
      await cleanup()
    }
  }
  return failed === 0 ? 0 : 1
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2))
}
