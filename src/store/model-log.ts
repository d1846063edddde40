// The model log: the bytes of every stored model version (its XML as
// served), appended in store order to segment files (`models/00000001.log`,
// …), each found again by the place its row records: [segment, offset,
// length].
//
// Why not a LevelDB of their own (layout 3): a value there is written to its
// log, its memtable and a table file, and read back through a table's index
// and block. Here a commit writes its models' bytes with one write and one
// fdatasync, and a get answer of models listed in store order reads them
// with one read (adjacent places coalesce). Measured on pulls of 100,000:
// the server ~3.5 µs less CPU per post, the puller ~3, the pull ~4% faster;
// and the server's RSS no longer holds LevelDB's mapped table files of every
// byte it served (its peak 165–169 MB against 239–265). The bytes are not
// compressed, where LevelDB's snappy halved them.
//
// Crash safety (graph-store.ts commits in this order): a commit's bytes are
// written and synced before the batch that holds the rows naming them. A
// crash in between leaves bytes at the tail that no row names; the next
// open cuts them off (`cut`: the store keeps where the named bytes end). Bytes at a place a row names never change, so a
// reader holding a row always reads what it named, except after `scrub`
// (a banned key's models), which overwrites them with zeros: readers see
// those as gone, and so does a read that races the scrub and sees only
// some of the zeros (model XML holds no NUL). The bytes of replaced
// versions stay where they are until the store compacts their segment
// (graph-store.ts, on open): it copies the live models to the tail,
// renames them in their rows, then removes the segment.
import { read as readAt } from 'node:fs'
import { mkdir, open, readdir, rm, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { DipError } from '../errors.js'

/** Where a version's bytes are: segment number, byte offset, length. */
export type Place = [segment: number, offset: number, length: number]

/** What the store needs of a model log (on disk, or the in-memory twin). */
export interface ModelLog {
  /** Places a model's bytes after everything placed so far; they are written by the next flush (kept till then, not copied). */
  add(bytes: Buffer): Place
  /** Writes and syncs every model added since the last flush. */
  flush(): Promise<void>
  /** The bytes at each place, in order; undefined for no place or bytes scrubbed. */
  read(places: (Place | undefined)[]): Promise<(Buffer | undefined)[]>
  /** Overwrites the bytes at these places with zeros, synced. */
  scrub(places: Place[]): Promise<void>
  close(): Promise<void>
}

/** A model log whose segments can be compacted (the in-memory twin's never are). */
export interface SegmentedLog extends ModelLog {
  /** Every segment and its size in bytes, oldest first; the last is the tail. */
  segments(): Promise<{ seg: number; size: number }[]>
  /** Starts a new tail segment: what is added next goes there. */
  roll(): void
  /** Deletes a segment that is not the tail (no row may name it any more). */
  remove(seg: number): Promise<void>
  /** Drops every byte past `end` of segment `seg` (and in the segments after it), synced; what is added next goes there. */
  cut(seg: number, end: number): Promise<void>
}

/** A segment is closed once it holds this many bytes. */
export const SEGMENT_MAX = 256 * 1024 * 1024
/** Adjacent places are read with one read up to this many bytes. */
const READ_RUN_MAX = 4 * 1024 * 1024
/** Model XML always begins with `<`. */
const LT = 0x3c

/**
 * Whether bytes read at a place are a model's: model XML begins with `<`
 * and holds no NUL (XML 1.0 allows none: the parser refuses a body with one,
 * authored models included). Scrubbed bytes are zeros, and a read that
 * races a scrub may see some of them and not others: both read as gone.
 */
const intact = (b: Buffer) => b[0] === LT && b.indexOf(0) === -1

const segmentName = (n: number) => `${String(n).padStart(8, '0')}.log`

async function segmentNumbers(dir: string): Promise<number[]> {
  return (await readdir(dir))
    .filter((f) => /^[0-9]{8}\.log$/.test(f))
    .map((f) => Number(f.slice(0, 8)))
    .sort((a, b) => a - b)
}

/** Runs of adjacent places (same segment, each starting where the last ended) read as one. */
function runs(places: (Place | undefined)[]): { seg: number; off: number; len: number; members: number[] }[] {
  const out: { seg: number; off: number; len: number; members: number[] }[] = []
  let cur: { seg: number; off: number; len: number; members: number[] } | undefined
  for (let n = 0; n < places.length; n++) {
    const p = places[n]
    if (p === undefined) continue
    if (cur && cur.seg === p[0] && cur.off + cur.len === p[1] && cur.len + p[2] <= READ_RUN_MAX) {
      cur.len += p[2]
      cur.members.push(n)
    } else {
      cur = { seg: p[0], off: p[1], len: p[2], members: [n] }
      out.push(cur)
    }
  }
  return out
}

/**
 * Reads `len` bytes at `pos` of an open file into `buf` from `at` on, with
 * fs.read's callback: FileHandle.read cost ~5 times its CPU per call (~10
 * against ~2 µs), and a get of scattered ids reads one place at a time.
 */
function readFully(fd: number, buf: Buffer, len: number, pos: number, what: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0
    const next = (err: NodeJS.ErrnoException | null, n: number) => {
      if (err) return reject(new DipError('DIP_DATA_INVALID', `${what()} cannot be read`, { cause: err }))
      got += n
      if (got === len) return resolve()
      if (n === 0) return reject(new DipError('DIP_DATA_INVALID', `the model log ends before ${what()}`))
      readAt(fd, buf, got, len - got, pos + got, next)
    }
    readAt(fd, buf, 0, len, pos, next)
  })
}

/** The model log in a folder of segment files. */
export class FileModelLog implements SegmentedLog {
  readonly #dir: string
  readonly #segmentMax: number
  readonly #handles = new Map<number, Promise<FileHandle>>()
  /** the segment appended to, and where the next model goes in it */
  #tail: number
  #end = 0
  /** added and not yet written: segment, offset, each model's bytes */
  #pending: { seg: number; off: number; bytes: Buffer[] }[] = []
  /** reads in flight on the segments' descriptors (a handle is closed only once they are done), and who waits for them */
  #reading = 0
  #drained: (() => void)[] = []

  private constructor(dir: string, tail: number, segmentMax: number) {
    this.#dir = dir
    this.#tail = tail
    this.#segmentMax = segmentMax
  }

  static async open(dir: string, segmentMax = SEGMENT_MAX): Promise<FileModelLog> {
    try {
      await mkdir(dir, { recursive: true })
      const segs = await segmentNumbers(dir)
      const tail = segs.at(-1) ?? 1
      const log = new FileModelLog(dir, tail, segmentMax)
      // Whatever a crashed commit left past the last synced row stays there, unnamed.
      log.#end = (await (await log.#handle(tail, true)).stat()).size
      return log
    } catch (cause) {
      throw new DipError('DIP_DATA_INVALID', `cannot open the model log in ${dir}`, { cause })
    }
  }

  /** The open file of a segment; `create` makes it when missing (a flush into a new segment). */
  #handle(seg: number, create = false): Promise<FileHandle> {
    let h = this.#handles.get(seg)
    if (h === undefined) {
      h = this.#openSegment(seg, create)
      this.#handles.set(seg, h)
      h.catch(() => this.#handles.delete(seg))
    }
    return h
  }

  async #openSegment(seg: number, create: boolean): Promise<FileHandle> {
    const path = join(this.#dir, segmentName(seg))
    try {
      return await open(path, 'r+')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || !create) throw e
    }
    const h = await open(path, 'w+')
    // A new segment's name is synced too, or an OS crash could lose the file with every byte synced in it.
    const d = await open(this.#dir, 'r')
    await d.sync().finally(() => d.close())
    return h
  }

  add(bytes: Buffer): Place {
    const len = bytes.length
    if (this.#end > 0 && this.#end + len > this.#segmentMax) {
      this.#tail++
      this.#end = 0
    }
    const place: Place = [this.#tail, this.#end, len]
    const last = this.#pending.at(-1)
    if (last && last.seg === this.#tail) last.bytes.push(bytes)
    else this.#pending.push({ seg: this.#tail, off: this.#end, bytes: [bytes] })
    this.#end += len
    return place
  }

  async flush(): Promise<void> {
    const pending = this.#pending
    this.#pending = []
    for (const p of pending) {
      const h = await this.#handle(p.seg, true)
      await writeAll(h, p.bytes, p.off)
      await h.datasync()
    }
  }

  async read(places: (Place | undefined)[]): Promise<(Buffer | undefined)[]> {
    const out = new Array<Buffer | undefined>(places.length).fill(undefined)
    this.#reading++
    try {
      await Promise.all(
        runs(places).map(async (r) => {
          const buf = Buffer.allocUnsafe(r.len)
          const h = await this.#handle(r.seg).catch((cause: unknown) => {
            throw new DipError('DIP_DATA_INVALID', `the model log's segment ${r.seg}, which the store names, cannot be read`, { cause })
          })
          await readFully(h.fd, buf, r.len, r.off, () => `segment ${r.seg} byte ${r.off + r.len} that the store names`)
          let at = 0
          for (const n of r.members) {
            const b = buf.subarray(at, at + places[n]![2])
            out[n] = intact(b) ? b : undefined
            at += b.length
          }
        }),
      )
    } finally {
      if (--this.#reading === 0) for (const done of this.#drained.splice(0)) done()
    }
    return out
  }

  /** Once no read is in flight (their descriptors may be closed then). */
  async #quiet(): Promise<void> {
    while (this.#reading > 0) await new Promise<void>((resolve) => this.#drained.push(resolve))
  }

  async scrub(places: Place[]): Promise<void> {
    const touched = new Set<number>()
    for (const [seg, off, len] of places) {
      const h = await this.#handle(seg)
      await writeAll(h, [Buffer.alloc(len)], off)
      touched.add(seg)
    }
    for (const seg of touched) await (await this.#handle(seg)).datasync()
  }

  async segments(): Promise<{ seg: number; size: number }[]> {
    const out: { seg: number; size: number }[] = []
    for (const seg of await segmentNumbers(this.#dir)) out.push({ seg, size: seg === this.#tail ? this.#end : (await stat(join(this.#dir, segmentName(seg)))).size })
    return out
  }

  roll(): void {
    if (this.#end === 0) return
    this.#tail++
    this.#end = 0
  }

  async cut(seg: number, end: number): Promise<void> {
    for (const s of await segmentNumbers(this.#dir)) {
      if (s < seg) continue
      const keep = s === seg ? end : 0
      const h = await this.#handle(s)
      if ((await h.stat()).size <= keep) continue
      await h.truncate(keep)
      await h.datasync()
    }
    if (this.#tail === seg) this.#end = Math.min(this.#end, end)
    else if (this.#tail > seg) this.#end = 0
  }

  async remove(seg: number): Promise<void> {
    if (seg >= this.#tail) throw new Error(`segment ${seg} is the tail`)
    const h = this.#handles.get(seg)
    this.#handles.delete(seg)
    await this.#quiet()
    await h?.then((f) => f.close(), () => {})
    await rm(join(this.#dir, segmentName(seg)), { force: true })
  }

  async close(): Promise<void> {
    await this.#quiet()
    const hs = [...this.#handles.values()]
    this.#handles.clear()
    await Promise.all(hs.map((h) => h.then((f) => f.close(), () => {})))
  }
}

/** The in-memory twin: one growing list of each flush's bytes. */
export class MemoryModelLog implements ModelLog {
  /** each flush's bytes and the offset they start at (one segment, 1) */
  readonly #chunks: { off: number; bytes: Buffer }[] = []
  #end = 0
  #pending: Buffer[] = []

  add(bytes: Buffer): Place {
    const len = bytes.length
    this.#pending.push(bytes)
    const place: Place = [1, this.#end, len]
    this.#end += len
    return place
  }

  async flush(): Promise<void> {
    if (this.#pending.length === 0) return
    const bytes = Buffer.concat(this.#pending)
    this.#pending = []
    this.#chunks.push({ off: this.#end - bytes.length, bytes })
  }

  #chunk(off: number): { off: number; bytes: Buffer } | undefined {
    let lo = 0
    let hi = this.#chunks.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      const c = this.#chunks[mid]!
      if (off < c.off) hi = mid - 1
      else if (off >= c.off + c.bytes.length) lo = mid + 1
      else return c
    }
    return undefined
  }

  async read(places: (Place | undefined)[]): Promise<(Buffer | undefined)[]> {
    return places.map((p) => {
      const c = p && this.#chunk(p[1])
      if (!p || !c) return undefined
      const b = c.bytes.subarray(p[1] - c.off, p[1] - c.off + p[2])
      return intact(b) ? b : undefined
    })
  }

  async scrub(places: Place[]): Promise<void> {
    for (const p of places) {
      const c = this.#chunk(p[1])
      if (c) c.bytes.fill(0, p[1] - c.off, p[1] - c.off + p[2])
    }
  }

  async close(): Promise<void> {}
}

/**
 * Writes `bufs` one after another at `off`, with writev, going on after a
 * short write. A commit's models' bytes go from the answers they came in to
 * the file without being copied into one buffer first (~800 KB a commit
 * that glibc's heap had to find room for); a scrub's zeros go the same way.
 */
export async function writeAll(h: { writev(bufs: Buffer[], position: number): Promise<{ bytesWritten: number }> }, bufs: Buffer[], off: number): Promise<void> {
  let rest = bufs.filter((b) => b.length > 0)
  // Each round writes at least a byte or throws: bounded by the bytes to write.
  while (rest.length > 0) {
    const { bytesWritten } = await h.writev(rest, off)
    if (bytesWritten <= 0) throw new DipError('DIP_INTERNAL', 'a write to the model log wrote no bytes')
    off += bytesWritten
    let left = bytesWritten
    let i = 0
    while (i < rest.length && left >= rest[i]!.length) left -= rest[i++]!.length
    rest = rest.slice(i)
    if (left > 0) rest[0] = rest[0]!.subarray(left)
  }
}
