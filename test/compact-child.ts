// Opens a graph store with small model log segments, as a child process of
// test/integration/compact-crash.test.ts, so that opening it compacts the
// log. With a crash point it kills itself with SIGKILL there:
//   preflush:N  right before the N-th flush of the model log (copies added,
//             not written yet)
//   flush:N   right after the N-th flush (copies synced, their rows not
//             renamed yet)
//   remove    right after the first segment is removed (its dead count not
//             dropped yet)
// Not a test file: the runner loads only *.test.js.
import { GraphStore } from '../src/store/graph-store.js'
import { FileModelLog } from '../src/store/model-log.js'

export const COMPACT_SIZES = { segmentMax: 64 * 1024, compactTailMin: 32 * 1024 }

const [dir, crash] = process.argv.slice(2)
if (dir !== undefined && process.argv[1]?.endsWith('compact-child.js')) {
  const die = () => process.kill(process.pid, 'SIGKILL')
  if (crash?.startsWith('flush:') || crash?.startsWith('preflush:')) {
    const before = crash.startsWith('pre')
    let n = Number(crash.slice(crash.indexOf(':') + 1))
    const flush = FileModelLog.prototype.flush
    FileModelLog.prototype.flush = async function (this: FileModelLog) {
      if (before && --n === 0) die()
      await flush.call(this)
      if (!before && --n === 0) die()
    }
  } else if (crash === 'remove') {
    const remove = FileModelLog.prototype.remove
    FileModelLog.prototype.remove = async function (this: FileModelLog, seg: number) {
      await remove.call(this, seg)
      die()
    }
  }
  const store = await GraphStore.openLevel(dir, COMPACT_SIZES)
  await store.close()
  process.stdout.write('opened\n')
}
