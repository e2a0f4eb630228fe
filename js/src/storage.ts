// Where the request cache's journal lives. The engine emits journal lines; a store keeps them
// in order and hands them back at start. Node uses a file; browsers and edge runtimes use any
// async key-value storage (in memory by default, Workers KV, Durable Object storage, …).

/** The async get/put/delete a key-value store offers (Workers KV and Durable Object storage fit). */
export interface KeyValueStorage {
  get(key: string): Promise<string | null | undefined>;
  put(key: string, value: string): Promise<void>;
  delete(key: string): Promise<void>;
}

/** A journal: read all lines once at start, then append. Appends must be durable in order; the
 * lines of one call (the records of one engine step) go out in one write where the store can. */
export interface JournalStore {
  load(): Promise<string[]>;
  append(lines: string[]): Promise<void>;
}

/** A KeyValueStorage in memory: the default where there is no file system. */
export class MemoryStorage implements KeyValueStorage {
  readonly #map = new Map<string, string>();
  async get(key: string): Promise<string | undefined> {
    return this.#map.get(key);
  }
  async put(key: string, value: string): Promise<void> {
    this.#map.set(key, value);
  }
  async delete(key: string): Promise<void> {
    this.#map.delete(key);
  }
}

/**
 * A journal over key-value storage: one key per line (`<prefix>:<n>`), each written once, so an
 * append is one small write and never rewrites a shared key (Workers KV allows one write per
 * second per key). `load()` reads `<prefix>:0`, `:1`, … until the first missing key.
 */
export class KeyValueJournal implements JournalStore {
  readonly #storage: KeyValueStorage;
  readonly #prefix: string;
  #count = 0;

  constructor(storage: KeyValueStorage, prefix = "batchling-cache") {
    this.#storage = storage;
    this.#prefix = prefix;
  }

  async load(): Promise<string[]> {
    const lines: string[] = [];
    for (;;) {
      const line = await this.#storage.get(`${this.#prefix}:${lines.length}`);
      if (line === null || line === undefined) break;
      lines.push(line);
    }
    this.#count = lines.length;
    return lines;
  }

  async append(lines: string[]): Promise<void> {
    for (const line of lines) await this.#storage.put(`${this.#prefix}:${this.#count++}`, line);
  }
}
