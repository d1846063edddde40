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
          format: 'pull [{bar}] {value}/{total} models | {speed} models/s | ETA {etaText} | listed {listed}{listing}',
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      )
      this.#bar.start(Math.max(p.wanted, 1), 0, { speed: 0, etaText: '?', listed: 0, listing: '…' })
    }
    this.#bar.setTotal(Math.max(p.wanted, p.fetched, 1))
    const elapsed = (Date.now() - this.#startedAt) / 1000
    const speed = elapsed > 0 ? p.fetched / elapsed : 0
    // The total grows while the listing runs: the ETA is for what is known so far.
    const left = Math.max(p.wanted - p.fetched, 0)
    const etaText = speed > 0 ? `${Math.ceil(left / speed)}s` : '?'
    this.#bar.update(p.fetched, { speed: Math.round(speed), etaText, listed: p.listed, listing: p.listing ? '…' : '' })
  }

  readonly #startedAt = Date.now()

  stop(): void {
    this.#bar?.stop()
    this.#bar = undefined
  }
}
