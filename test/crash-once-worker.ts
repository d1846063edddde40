// A verify worker for tests (test/unit/crypto.test.ts): the first one started
// (no file at $DIPD_TEST_CRASH_ONCE yet) dies on its first batch; later
// ones are dipd's real worker. Run outside a worker (the test runner loads
// every file under test/), it does nothing.
import { existsSync, writeFileSync } from 'node:fs'
import { isMainThread, parentPort } from 'node:worker_threads'

const marker = process.env.DIPD_TEST_CRASH_ONCE
if (!isMainThread && marker !== undefined) {
  if (!existsSync(marker)) {
    writeFileSync(marker, '')
    parentPort!.once('message', () => process.exit(3))
  } else await import('../src/crypto/verify-worker.js')
}
