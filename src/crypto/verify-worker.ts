// A worker thread of the batch verifier in ed25519.ts: checks batches of
// ed25519 signatures with libsodium. A batch is one transferred buffer of
// items, each [message length u32 LE][public key 32][signature 64][message];
// the answer is one byte per item, 1 where libsodium accepts the signature.
// If sodium-native cannot load, the worker says so and the verifier uses
// OpenSSL alone.
import { parentPort } from 'node:worker_threads'

export interface BatchMessage {
  id: number
  count: number
  buf: ArrayBuffer
}

export interface BatchAnswer {
  id: number
  ok: Uint8Array
}

const port = parentPort!
try {
  const verify = (await import('sodium-native')).default.crypto_sign_verify_detached
  port.on('message', ({ id, count, buf }: BatchMessage) => {
    const bytes = new Uint8Array(buf)
    const view = new DataView(buf)
    const ok = new Uint8Array(count)
    let at = 0
    for (let n = 0; n < count; n++) {
      const len = view.getUint32(at, true)
      const key = bytes.subarray(at + 4, at + 36)
      const sig = bytes.subarray(at + 36, at + 100)
      at += 100
      ok[n] = verify(sig, bytes.subarray(at, at + len), key) ? 1 : 0
      at += len
    }
    port.postMessage({ id, ok } satisfies BatchAnswer, [ok.buffer])
  })
} catch (e) {
  port.postMessage({ unavailable: e instanceof Error ? e.message : String(e) })
}
