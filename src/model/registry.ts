import type { ModelDefinition } from './types.js'
import { formatVersion } from '../protocol/version.js'

export class ModelRegistry {
  readonly #models = new Map<string, ModelDefinition<any, any>>()

  constructor(models: ModelDefinition<any, any>[]) {
    for (const m of models) {
      if (this.#models.has(m.name)) throw new TypeError(`model ${m.name} registered twice`)
      this.#models.set(m.name, m)
    }
  }

  get(name: string): ModelDefinition<any, any> | undefined {
    return this.#models.get(name)
  }

  all(): ModelDefinition<any, any>[] {
    return [...this.#models.values()]
  }

  /** `{ post: "1.1" }`, as the manifest and `<supported>` publish it */
  versions(): Record<string, string> {
    return Object.fromEntries(this.all().map((m) => [m.name, formatVersion(m.version)]))
  }
}
