// spec/errors.md and src/errors.ts list the same codes with the same
// status, HTTP status, row flag and transient flag.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { DipError, LOCAL_CODES, WIRE_CODES, type WireCode } from '../src/errors.js'

const md = readFileSync(fileURLToPath(new URL('../../spec/errors.md', import.meta.url)), 'utf8')
const HEADER = '| code | status | HTTP | row | meaning |'

interface Entry {
  status: string
  http: string
  row: string
}

function readTable(): Map<string, Entry> {
  const lines = md.split('\n')
  const start = lines.indexOf(HEADER)
  assert.notEqual(start, -1, `spec/errors.md has no table headed ${HEADER}`)
  assert.match(lines[start + 1]!, /^\|(-+\|){5}$/)
  const table = new Map<string, Entry>()
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break
    const cells = line.split('|').slice(1, -1).map((c) => c.trim())
    assert.equal(cells.length, 5, `a row of 5 cells: ${line}`)
    const [code, status, http, row, meaning] = cells as [string, string, string, string, string]
    assert.ok(!table.has(code), `${code} listed twice`)
    assert.ok(meaning.length > 0, `${code} has no meaning`)
    table.set(code, { status, http, row })
  }
  return table
}

/** What the table must say of each code, from src/errors.ts. */
function fromSource(): Map<string, Entry> {
  const out = new Map<string, Entry>()
  for (const [code, c] of Object.entries(WIRE_CODES) as [string, WireCode][]) {
    out.set(code, { status: c.status ?? '—', http: c.http === undefined ? '—' : String(c.http), row: c.row ? 'yes' : 'no' })
  }
  for (const code of Object.keys(LOCAL_CODES)) out.set(code, { status: 'local', http: '—', row: 'no' })
  return out
}

test('spec/errors.md lists exactly the codes of WIRE_CODES and LOCAL_CODES', () => {
  assert.deepEqual([...readTable().keys()].sort(), [...fromSource().keys()].sort())
})

test('spec/errors.md gives each code the status, HTTP status and row flag of src/errors.ts', () => {
  const table = readTable()
  for (const [code, want] of fromSource()) assert.deepEqual(table.get(code), want, code)
})

test('spec/errors.md names the transient codes of src/errors.ts', () => {
  const line = md.split('\n').find((l) => l.startsWith('Transient codes:'))
  assert.ok(line, 'no "Transient codes:" line')
  const listed = [...line.matchAll(/`(DIP_[A-Z_]+)`/g)].map((m) => m[1]!).sort()
  const transient = Object.keys({ ...WIRE_CODES, ...LOCAL_CODES })
    .filter((code) => new DipError(code as keyof typeof WIRE_CODES, '').transient)
    .sort()
  assert.deepEqual(listed, transient)
})

test('a code that is a whole answer has both a status and an HTTP status; row-only codes have neither', () => {
  for (const [code, c] of Object.entries(WIRE_CODES) as [string, WireCode][]) {
    assert.equal(c.status === undefined, c.http === undefined, code)
    if (c.status === undefined) assert.equal(c.row, true, `${code} is neither an answer nor a row`)
    if (c.status === 'not supported') assert.equal(c.http, 501, code)
  }
})
