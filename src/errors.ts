// The one table of DIP_* codes (PROTOCOL.md §1 "Codes").
//
// Wire codes travel in `<code>` of an error / not-supported answer, or on a
// put result row. Local codes are dipd's own (a pull's or a command's
// outcome) and never appear on the wire. spec/errors.md lists every code;
// test/errors.test.ts keeps the two in step. Tests assert codes, never
// message text.

export type DipStatus = 'error' | 'not supported'

export interface WireCode {
  /** envelope status when the code is a whole answer; undefined = row only */
  status?: DipStatus
  /** HTTP status when the code is a whole answer */
  http?: number
  /** the code may appear on a put result row */
  row: boolean
  /** a retry may help */
  transient: boolean
}

export const WIRE_CODES = {
  DIP_XML_INVALID: { status: 'error', http: 400, row: false, transient: false },
  DIP_REQUEST_INVALID: { status: 'error', http: 400, row: false, transient: false },
  DIP_FILTER_INVALID: { status: 'error', http: 400, row: false, transient: false },
  DIP_CURSOR_INVALID: { status: 'error', http: 400, row: false, transient: false },
  DIP_ID_INVALID: { status: 'error', http: 400, row: true, transient: false },
  DIP_REQUEST_TOO_LARGE: { status: 'error', http: 413, row: false, transient: false },
  DIP_UNSUPPORTED_MEDIA_TYPE: { status: 'error', http: 415, row: false, transient: false },
  DIP_RATE_LIMITED: { status: 'error', http: 429, row: false, transient: true },
  DIP_NOT_FOUND: { status: 'error', http: 404, row: false, transient: false },
  DIP_INTERNAL: { status: 'error', http: 500, row: false, transient: true },
  DIP_UNAVAILABLE: { status: 'error', http: 503, row: false, transient: true },
  DIP_REQUEST_NOT_SUPPORTED: { status: 'not supported', http: 501, row: false, transient: false },
  DIP_MODEL_NOT_SUPPORTED: { status: 'not supported', http: 501, row: true, transient: false },
  DIP_VERSION_NOT_SUPPORTED: { status: 'not supported', http: 501, row: true, transient: false },
  DIP_MODEL_INVALID: { row: true, transient: false },
  DIP_MODEL_TOO_LARGE: { row: true, transient: false },
  DIP_MODEL_STALE: { row: true, transient: false },
  DIP_SIGNATURE_INVALID: { row: true, transient: false },
  DIP_ATTACHMENT_INVALID: { row: true, transient: false },
  DIP_TIME_IN_FUTURE: { row: true, transient: false },
  // A whole answer only when fetch on miss passes an origin's refusal through (a bare HTTP 403).
  DIP_REFUSED: { status: 'error', http: 403, row: true, transient: false },
} as const satisfies Record<string, WireCode>

/** dipd's own codes: outcomes of local commands and of the pull client. */
export const LOCAL_CODES = {
  /** a peer could not be reached, or the connection broke */
  DIP_PEER_UNREACHABLE: { transient: true },
  /** a peer answered something that is not a valid DIP answer */
  DIP_PEER_RESPONSE_INVALID: { transient: false },
  /** a peer answered with a DIP error envelope (its code is in `peerCode`) */
  DIP_PEER_ERROR: { transient: false },
  /** a command line or setting is wrong */
  DIP_USAGE: { transient: false },
  /** the data folder is missing, unreadable or holds a damaged key */
  DIP_DATA_INVALID: { transient: false },
  /** the data folder is held by a daemon that does not answer */
  DIP_DATA_LOCKED: { transient: true },
  /** the local API refused the token or the address */
  DIP_LOCAL_FORBIDDEN: { transient: false },
  /** a peer answered signed by another key than the pinned one, with no valid rotation to it (PROTOCOL.md §8) */
  DIP_PEER_KEY_CHANGED: { transient: false },
  /** a peer's answer lacks DIP-Node-Key / DIP-Signature, or the signature does not verify */
  DIP_PEER_SIGNATURE_INVALID: { transient: false },
  /** a rotation in the peer's chain does not verify */
  DIP_ROTATION_SIGNATURE_INVALID: { transient: false },
  /** a rotation in the peer's chain does not grow the life */
  DIP_ROTATION_LIFE_INVALID: { transient: false },
  /** the peer's chain names two different successors of one key */
  DIP_ROTATION_FORK: { transient: false },
  /** a proof for the peer's host does not verify or names a key the peer does not hold */
  DIP_PROOF_INVALID: { transient: false },
  /** no request or model version both sides speak */
  DIP_PEER_INCOMPATIBLE: { transient: false },
} as const satisfies Record<string, { transient: boolean }>

export type WireCodeName = keyof typeof WIRE_CODES
export type LocalCodeName = keyof typeof LOCAL_CODES
export type DipCode = WireCodeName | LocalCodeName
export type RowCode = {
  [K in WireCodeName]: (typeof WIRE_CODES)[K]['row'] extends true ? K : never
}[WireCodeName]

export function isWireCode(code: string): code is WireCodeName {
  return Object.hasOwn(WIRE_CODES, code)
}

export function isDipCode(code: string): code is DipCode {
  return isWireCode(code) || Object.hasOwn(LOCAL_CODES, code)
}

export class DipError extends Error {
  readonly code: DipCode
  readonly transient: boolean
  /** for DIP_PEER_ERROR: the code the peer answered */
  readonly peerCode: string | undefined

  constructor(code: DipCode, message: string, options: { cause?: unknown; peerCode?: string; transient?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'DipError'
    this.code = code
    this.peerCode = options.peerCode
    this.transient = options.transient ?? (isWireCode(code) ? WIRE_CODES[code].transient : LOCAL_CODES[code].transient)
  }

  /** HTTP status when this error is a whole answer (500 for anything that is not a wire answer code) */
  get httpStatus(): number {
    const entry: WireCode | undefined = isWireCode(this.code) ? WIRE_CODES[this.code] : undefined
    return entry?.http ?? 500
  }

  /** envelope status when this error is a whole answer */
  get dipStatus(): DipStatus {
    const entry: WireCode | undefined = isWireCode(this.code) ? WIRE_CODES[this.code] : undefined
    return entry?.status ?? 'error'
  }
}

/** Untrusted input returns a Result; programmer mistakes throw. */
export type Result<T> = { ok: true; value: T } | { ok: false; error: DipError }

export const ok = <T>(value: T): Result<T> => ({ ok: true, value })
export const fail = <T = never>(code: DipCode, message: string, cause?: unknown): Result<T> => ({
  ok: false,
  error: new DipError(code, message, { cause }),
})
