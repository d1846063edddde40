// Pluggable models (design: registry passed in, never global). A model is a
// plain object that turns untrusted `<content>` into fields (never throws),
// says what the store indexes about it, and parses its own list filters.
import type { Result } from '../errors.js'
import type { GlobalId } from '../protocol/id.js'
import type { Version } from '../protocol/version.js'
import type { XmlElement } from '../protocol/xml.js'

/** A graph edge from a model to another model or blob. */
export interface Link {
  kind: 'thread' | 'ref' | 'attachment'
  /** a global id in text form, or `sha256:<hex>` for attachments */
  target: string
}

export interface AttachmentRef {
  /** `sha256:<64 hex>` */
  hash: string
  mimetype: string
  name: string
  size: number
}

/** What the store needs to know of a model to index and filter it. */
export interface ModelMeta {
  id: GlobalId
  /** update-time as a time key (protocol/time.ts): compares as integer microseconds */
  updateTimeKey: string
  /** update-time exactly as written in the content (copied into list rows) */
  updateTime: string
  /**
   * Indexed values by facet name, e.g. `{ tag: ['a'], thread: ['ed25519::…::1'] }`.
   * A list filter on a facet passes a model that has any of the asked values.
   */
  facets: Record<string, string[]>
  links: Link[]
  attachments: AttachmentRef[]
}

/** A model's own list filters, as facet conditions (every one must pass). */
export type FacetFilter = { facet: string; values: string[] }[]

export interface ModelDefinition<T = unknown, F = unknown> {
  readonly name: string
  /** the highest version this node speaks */
  readonly version: Version
  /** untrusted input: returns a Result, never throws */
  fromContent(content: XmlElement): Result<T>
  meta(model: T): ModelMeta
  /** builds content for a locally authored model from its fields (trusted input) */
  toContent(fields: F): XmlElement
  /** validates fields given by a local user or host application */
  checkFields(fields: unknown): Result<F>
  /** reads the model's own filter elements of a list request (children of `<model>`); unknown ones are ignored */
  parseFilter(model: XmlElement): Result<FacetFilter>
  /** writes filter elements for a list request (the pull client) */
  filterXml(filter: FacetFilter): string
}
