// Writes the generated fixtures (test/tools/fixture-files.ts) under fixtures/.
//
//   npx tsc -p . && node dist/test/tools/make-fixtures.js --write
//   node dist/test/tools/make-fixtures.js          (check only: lists files that differ)
//
// Deterministic: ed25519 signatures are, and nothing else is random, so a
// second run writes the same bytes.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { fixtureFiles } from './fixture-files.js'

const root = fileURLToPath(new URL('../../../fixtures/', import.meta.url))
const write = process.argv.includes('--write')
let differ = 0
for (const [path, data] of fixtureFiles()) {
  const file = join(root, path)
  const same = existsSync(file) && readFileSync(file).equals(data)
  if (same) continue
  differ++
  if (write) {
    mkdirSync(dirname(file), { recursive: true })
    writeFileSync(file, data)
    console.log(`wrote ${path}`)
  } else console.log(`differs: ${path}`)
}
console.log(`${differ} file(s) ${write ? 'written' : 'differ'}`)
if (!write && differ > 0) process.exitCode = 1
