// The manifest sample (fixtures/manifest/manifest.valid.json, shown in
// spec/trust.md): what a dipd node publishes at /.well-known/dip.json after
// one key rotation and one proof, with the default settings.
//
// The node started with K1 (life 1), rotated to K2 (life 2), then signed a
// proof for example.com with K2. Signatures are made here with node:crypto,
// not with src/trust/, so that the sample checks the code instead of
// copying it: dip-rotate:<from>:<to>:<life> by the `from` key,
// dip-proof:<turf>:<life> by the proof's key, standard padded base64.
import { sign as nodeSign } from 'node:crypto'
import { K1, K2, type FixtureKey } from './fixture-keys.js'

const nodeKey = (k: FixtureKey) => `ed25519::${k.publicHex}`
const signB64 = (k: FixtureKey, text: string) => nodeSign(null, Buffer.from(text, 'utf8'), k.privateKey).toString('base64')

/** The rotation, proof and node of the sample. */
export const MANIFEST_FROM = K1
export const MANIFEST_NODE = K2
export const MANIFEST_TURF = 'example.com'

const from = nodeKey(K1)
const to = nodeKey(K2)
const life = 2

/**
 * Fields in the order PROTOCOL.md §9 lists them and dipd writes them
 * (src/http/app.ts); limits are dipd's defaults (src/settings.ts), the first
 * four those of PROTOCOL.md §1, then dipd's own additions.
 */
export const MANIFEST = {
  node: to,
  life,
  requests: { list: '1.0', get: '1.0', put: '1.0', ping: '1.0' },
  models: { post: '1.1', message: '1.0' },
  limits: {
    maxBodyBytes: 16777216,
    maxIdsPerGet: 1000,
    maxListPage: 1000,
    maxContentBytes: 65536,
    maxAttachmentBytes: 16777216,
    maxFutureSeconds: 900,
    rateLimitMax: 3000,
    rateLimitWindowSeconds: 60,
  },
  proofs: [{ turf: MANIFEST_TURF, life, key: to, sign: signB64(K2, `dip-proof:${MANIFEST_TURF}:${life}`) }],
  rotations: [{ from, to, life, sign: signB64(K1, `dip-rotate:${from}:${to}:${life}`) }],
}

/** The file's text: indented for reading; the node serves the same JSON without whitespace. */
export const MANIFEST_JSON = JSON.stringify(MANIFEST, null, 2) + '\n'
