// /metrics in Prometheus text format (prom-client), one registry per daemon
// (several daemons can share a process, as the tests do):
//
//   dipd_store_seq                      the store-order number: grows by one per stored version
//   dipd_models_stored_total{via}       versions stored since start, by how they came (local, put, pull, fetch)
//   dipd_requests_total{type,status}    answers to /api/sync/<type>/ by HTTP status
//   dipd_outbox_depth{peer}             models stored here and not yet acknowledged by a push peer
//   dipd_outbox_failures{peer}          failed deliveries in a row to that peer (circuit opens at 5)
//   dipd_outbox_delivered_total{peer}   models a push peer stored
//   dipd_pull_models_total{peer}        models stored by pulls, per peer
//   dipd_pull_seconds{peer}             duration of pulls (histogram)
//   dipd_verify_engine{engine}          1 for the library that checks signatures first: libsodium
//                                       (its worker), or openssl once the worker failed (about half as fast)
//
// and prom-client's default process metrics: process_resident_memory_bytes,
// nodejs_heap_size_total_bytes / _used_bytes, nodejs_external_memory_bytes,
// nodejs_eventloop_lag_seconds, nodejs_gc_duration_seconds, CPU, handles.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import { verifyEngine, verifyWorkerFailures } from './crypto/ed25519.js'

export interface OutboxView {
  url: string
  queue: number
  state?: { failures: number; pushed: number } | undefined
}

export class Metrics {
  readonly registry = new Registry()
  readonly stored: Counter<'via'>
  readonly requests: Counter<'type' | 'status'>
  readonly pullModels: Counter<'peer'>
  readonly pullSeconds: Histogram<'peer'>

  constructor(source: { lastSeq: () => number; outboxes: () => OutboxView[] }) {
    const registers = [this.registry]
    collectDefaultMetrics({ register: this.registry })
    new Gauge({
      name: 'dipd_store_seq',
      help: 'The store-order number: grows by one per stored model version',
      registers,
      collect() {
        this.set(source.lastSeq())
      },
    })
    this.stored = new Counter({ name: 'dipd_models_stored_total', help: 'Model versions stored since start, by how they came', labelNames: ['via'], registers })
    this.requests = new Counter({ name: 'dipd_requests_total', help: 'Answers to /api/sync/<type>/ by HTTP status', labelNames: ['type', 'status'], registers })
    const outbox = (name: string, help: string, value: (o: OutboxView) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['peer'],
        registers,
        collect() {
          this.reset()
          for (const o of source.outboxes()) this.set({ peer: o.url }, value(o))
        },
      })
    outbox('dipd_outbox_depth', 'Models stored here and not yet acknowledged by a push peer', (o) => o.queue)
    outbox('dipd_outbox_failures', 'Failed deliveries in a row to a push peer', (o) => o.state?.failures ?? 0)
    outbox('dipd_outbox_delivered_total', 'Models a push peer stored', (o) => o.state?.pushed ?? 0)
    this.pullModels = new Counter({ name: 'dipd_pull_models_total', help: 'Models stored by pulls, per peer', labelNames: ['peer'], registers })
    new Gauge({
      name: 'dipd_verify_engine',
      help: 'The library that checks signatures first (1): libsodium in a worker, or openssl (no libsodium, or the pause after the worker failed)',
      labelNames: ['engine'],
      registers,
      collect() {
        this.reset()
        this.set({ engine: verifyEngine() }, 1)
      },
    })
    new Counter({
      name: 'dipd_verify_worker_failures_total',
      help: 'Times the libsodium worker failed (died, threw, or held a batch 30 s unanswered); it is started again after a pause, OpenSSL checking meanwhile',
      registers,
      collect() {
        this.reset()
        this.inc(verifyWorkerFailures())
      },
    })
    this.pullSeconds = new Histogram({ name: 'dipd_pull_seconds', help: 'Duration of pulls', labelNames: ['peer'], buckets: [0.05, 0.2, 1, 5, 30, 120, 600], registers })
  }
}
