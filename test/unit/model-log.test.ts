import { test } from 'node:test'
import assert from 'node:assert/strict'
import { open, readFile, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { FileModelLog, MemoryModelLog, writeAll, type ModelLog, type Place } from '../../src/store/model-log.js'
import { withTempDir } from '../helpers.js'

const models = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `<model n="${from + i}">${'é✓'.repeat((from + i) % 7)}</model>`)
const text = (bufs: (Buffer | undefined)[]) => bufs.map((b) => b?.toString())

async function roundTrip(log: ModelLog): Promise<void> {
  const xml = models(50)
  const places = xml.map((x) => log.add(Buffer.from(x)))
  assert.deepEqual(
    places.map((p) => p[2]),
    xml.map((x) => Buffer.byteLength(x)),
    'lengths in bytes (multi-byte UTF-8 included)',
  )
  for (let i = 1; i < places.length; i++) assert.equal(places[i]![1], places[i - 1]![1] + places[i - 1]![2], 'appended one after another')
  await log.flush()
  // In order, out of order (no run), with gaps and holes.
  assert.deepEqual(text(await log.read(places)), xml)
  const shuffled = [7, 3, 49, 0, 1, 2, 30]
  assert.deepEqual(text(await log.read(shuffled.map((n) => places[n]))), shuffled.map((n) => xml[n]))
  assert.deepEqual(text(await log.read([places[4], undefined, places[5]])), [xml[4], undefined, xml[5]])
  await log.scrub([places[5]!])
  assert.deepEqual(text(await log.read([places[4], places[5], places[6]])), [xml[4], undefined, xml[6]], 'scrubbed bytes read as gone')
}

test('model log, memory: bytes read back as added, in any order; scrubbed ones are gone', async () => {
  await roundTrip(new MemoryModelLog())
})

test('model log, files: bytes read back as added, in any order; scrubbed ones are gone', async () => {
  await withTempDir(async (dir) => {
    const log = await FileModelLog.open(join(dir, 'models'))
    try {
      await roundTrip(log)
    } finally {
      await log.close()
    }
  })
})

test('model log, files: reads of scattered places in flight are finished before close() closes the segments, and read what was written', async () => {
  await withTempDir(async (dir) => {
    const log = await FileModelLog.open(join(dir, 'models'), 4096)
    const xml = models(400)
    const places = xml.map((x) => log.add(Buffer.from(x)))
    await log.flush()
    assert.ok(new Set(places.map((p) => p[0])).size > 3, 'several segments')
    // Every other place: no two adjacent, so each is a read of its own.
    const picked = places.map((_, n) => n).filter((n) => n % 2 === 1).reverse()
    const reads = [1, 2, 3].map(() => log.read(picked.map((n) => places[n])))
    await log.close()
    for (const r of await Promise.all(reads)) assert.deepEqual(text(r), picked.map((n) => xml[n]))
  })
})

test('model log, files: a full segment is closed and the next one begun; a reopen appends to the last, and every place reads back', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'models')
    const max = 300
    const first = models(20)
    let log = await FileModelLog.open(path, max)
    const places: Place[] = first.map((x) => log.add(Buffer.from(x)))
    await log.flush()
    const segs = new Set(places.map((p) => p[0]))
    assert.ok(segs.size >= 3, `20 models over segments of ${max} bytes: ${segs.size} segments`)
    for (const p of places) assert.ok(p[1] === 0 || p[1] + p[2] <= max, 'no model spills past a segment\'s end but a segment\'s first')
    await log.close()
    log = await FileModelLog.open(path, max)
    const more = models(5, 20)
    const morePlaces = more.map((x) => log.add(Buffer.from(x)))
    await log.flush()
    assert.ok(morePlaces[0]![0] >= Math.max(...segs), 'a reopened log goes on in its last segment')
    assert.deepEqual(text(await log.read([...places, ...morePlaces])), [...first, ...more])
    await log.close()
  })
})

test('model log, files: bytes a row names but the segment lacks, or a missing segment, are DIP_DATA_INVALID; a log folder that is a file is too', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'models')
    const log = await FileModelLog.open(path)
    const p = log.add(Buffer.from('<model>whole</model>'))
    await log.flush()
    await truncate(join(path, '00000001.log'), 5)
    await assert.rejects(log.read([p]), { code: 'DIP_DATA_INVALID' })
    await assert.rejects(log.read([[7, 0, 10]]), { code: 'DIP_DATA_INVALID' }, 'a segment that is not there')
    await log.close()
    await writeFile(join(dir, 'file'), 'x')
    await assert.rejects(FileModelLog.open(join(dir, 'file')), { code: 'DIP_DATA_INVALID' })
  })
})

test('model log, files: writeAll goes on after short writes, mid-buffer included, and fails when a write takes nothing', async () => {
  const file = Buffer.alloc(64, '.')
  const calls: number[] = []
  // A handle whose writev takes at most `most` bytes a call (a real one takes them all, or fails).
  const short = (most: number) => ({
    writev: async (bufs: Buffer[], pos: number) => {
      let at = pos
      let took = 0
      for (const b of bufs) {
        const n = Math.min(b.length, most - took)
        b.copy(file, at, 0, n)
        at += n
        took += n
        if (took === most) break
      }
      calls.push(took)
      return { bytesWritten: took }
    },
  })
  const parts = ['ab', 'cdefgh', '', 'ijklmnopq', 'r'].map((x) => Buffer.from(x))
  await writeAll(short(5), parts, 3)
  assert.equal(file.subarray(0, 24).toString(), '...abcdefghijklmnopqr...')
  assert.deepEqual(calls, [5, 5, 5, 3], 'four calls, each going on where the one before stopped')
  await assert.rejects(writeAll(short(0), [Buffer.from('x')], 0), (e: Error & { code?: string }) => e.code === 'DIP_INTERNAL')
})

test('model log, files: writeAll writes more buffers than one writev call takes (IOV_MAX is 1,024 on Linux)', async () => {
  await withTempDir(async (dir) => {
    const bufs = Array.from({ length: 3000 }, (_, i) => Buffer.from(`${i},`))
    const h = await open(join(dir, 'f'), 'w+')
    try {
      await writeAll(h, bufs, 2)
    } finally {
      await h.close()
    }
    assert.equal((await readFile(join(dir, 'f'))).toString(), '\0\0' + bufs.map(String).join(''))
  })
})

test('model log, files: a read that races a scrub and sees only some of its zeros reads the model as gone, its neighbours as written', async () => {
  await withTempDir(async (dir) => {
    const log = await FileModelLog.open(join(dir, 'models'))
    try {
      const xml = models(5, 3).map((x) => x + ' '.repeat(40))
      const places = xml.map((x) => log.add(Buffer.from(x)))
      await log.flush()
      // The scrub's zeros, as far as a racing read saw them: the middle of model 2, its first byte still '<'.
      const [seg, off, len] = places[2]!
      const h = await open(join(dir, 'models', `${String(seg).padStart(8, '0')}.log`), 'r+')
      try {
        await h.write(Buffer.alloc(6), 0, 6, off + Math.floor(len / 2))
      } finally {
        await h.close()
      }
      assert.deepEqual(text(await log.read(places)), [xml[0], xml[1], undefined, xml[3], xml[4]], 'in one read of adjacent places')
      assert.deepEqual(text(await log.read([places[2], places[0]])), [undefined, xml[0]], 'read on its own')
    } finally {
      await log.close()
    }
  })
})
