// /metrics: Prometheus text with the store, requests, outbox and pull figures.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { request } from 'undici'
import { startDaemon } from '../../src/daemon.js'
import { listRequestXml } from '../../src/protocol/envelope.js'
import { tempDir } from '../helpers.js'

function value(text: string, metric: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(metric + ' '))
  return line === undefined ? undefined : Number(line.slice(metric.length + 1))
}

test('metrics count stored models, answers by type and status, pulls and the outbox of a dead push peer', async () => {
  const a = await tempDir('metrics-a-')
  const b = await tempDir('metrics-b-')
  const A = await startDaemon({ dataDir: a.path, host: '127.0.0.1', port: 0 })
  const B = await startDaemon({ dataDir: b.path, host: '127.0.0.1', port: 0 })
  try {
    for (let i = 0; i < 3; i++) await A.node.author('post', { title: `m${i}`, text: 'x' })
    await request(`${A.url}/api/sync/list/`, { method: 'POST', body: '<oops' }).then((r) => r.body.dump())
    await B.node.pull(A.url, {})
    // A push peer where nothing listens: its outbox fills and fails.
    await A.node.addPeer('http://127.0.0.1:1', { push: true })
    await A.node.author('post', { title: 'queued', text: 'x' })
    const deadline = Date.now() + 5000
    let text = ''
    while (Date.now() < deadline) {
      text = await (await request(`${A.url}/metrics`)).body.text()
      if ((value(text, 'dipd_outbox_failures{peer="http://127.0.0.1:1"}') ?? 0) >= 1) break
      await new Promise((r) => setTimeout(r, 50))
    }
    assert.equal(value(text, 'dipd_store_seq'), 4)
    assert.equal(value(text, 'dipd_models_stored_total{via="local"}'), 4)
    assert.ok((value(text, 'dipd_requests_total{type="list",status="200"}') ?? 0) >= 1)
    assert.equal(value(text, 'dipd_requests_total{type="list",status="400"}'), 1)
    assert.ok((value(text, 'dipd_requests_total{type="get",status="200"}') ?? 0) >= 1)
    assert.equal(value(text, 'dipd_outbox_depth{peer="http://127.0.0.1:1"}'), 1)
    assert.ok((value(text, 'dipd_outbox_failures{peer="http://127.0.0.1:1"}') ?? 0) >= 1)
    const tb = await (await request(`${B.url}/metrics`)).body.text()
    assert.equal(value(tb, `dipd_pull_models_total{peer="${A.url}"}`), 3)
    assert.equal(value(tb, 'dipd_models_stored_total{via="pull"}'), 3)
    assert.equal(value(tb, `dipd_pull_seconds_count{peer="${A.url}"}`), 1)
    // B checked A's signatures with libsodium (its worker runs in this test process).
    assert.equal(value(tb, 'dipd_verify_engine{engine="libsodium"}'), 1)
    assert.equal(value(tb, 'dipd_verify_worker_failures_total'), 0)
    // The process figures an operator sizes a node by.
    const rss = value(tb, 'process_resident_memory_bytes') ?? 0
    const heap = value(tb, 'nodejs_heap_size_used_bytes') ?? 0
    assert.ok(rss > 10e6 && heap > 1e6 && heap < rss, `RSS ${rss}, heap used ${heap}`)
    // Still answering the sync API normally.
    const ok = await request(`${A.url}/api/sync/list/`, { method: 'POST', body: listRequestXml({ name: 'post', version: '1.1' }, '', undefined) })
    assert.equal(ok.statusCode, 200)
    await ok.body.dump()
  } finally {
    await B.close()
    await A.close()
    await a.remove()
    await b.remove()
  }
})
