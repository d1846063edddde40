// Shared test helpers: paths, temp folders, fixtures.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository root (tests run from dist/test/…). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const FIXTURES = join(ROOT, 'fixtures')

export async function tempDir(prefix = 'dipd-test-'): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix))
  return { path, remove: () => rm(path, { recursive: true, force: true }) }
}

/** Runs `fn` with a new temporary folder's path; the folder is removed afterwards, whatever `fn` does. */
export async function withTempDir<T>(fn: (path: string) => Promise<T>): Promise<T> {
  const dir = await tempDir()
  try {
    return await fn(dir.path)
  } finally {
    await dir.remove()
  }
}
