// The pull's progress bar (models fetched of models wanted, rate, ETA) on a
// TTY; silent otherwise, so scripts get only the summary.
import cliProgress from 'cli-progress'
import type { PullProgress } from '../sync/pull.js'

export class ProgressView {
  #bar: cliProgress.SingleBar | undefined
  readonly #stream: NodeJS.WriteStream

  constructor(stream: NodeJS.WriteStream) {
    this.#stream = stream
  }

  update(p: PullProgress): void {
    if (!this.#stream.isTTY) return
    if (!this.#bar) {
      this.#bar = new cliProgress.SingleBar(
        {
          stream: this.#stream,
          format: 'pull [{bar}] {value}/{total} models | {speed} models/s | ETA {eta_formatted} | listed {listed}{listing}',
          etaBuffer: 50,
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      )
      this.#bar.start(Math.max(p.wanted, 1), 0, { speed: 0, listed: 0, listing: '…' })
    }
    this.#bar.setTotal(Math.max(p.wanted, p.fetched, 1))
    const elapsed = (Date.now() - this.#startedAt) / 1000
    this.#bar.update(p.fetched, { speed: elapsed > 0 ? Math.round(p.fetched / elapsed) : 0, listed: p.listed, listing: p.listing ? '…' : '' })
  }

  readonly #startedAt = Date.now()

  stop(): void {
    this.#bar?.stop()
    this.#bar = undefined
  }
}
