// Where the request cache's journal lives. The engine emits journal lines; a store keeps them
// in order and hands them back at start. Node uses a file; browsers and edge runtimes use any
// async key-value storage (in memory by default, Workers KV, Durable Object storage, …).
import type { AnswerPlace, CompactLine } from "./generated/core.js";

/** The async get/put/delete a key-value store offers (Workers KV and Durable Object storage fit). */
export interface KeyValueStorage {
  get(key: string): Promise<string | null | undefined>;
  put(key: string, value: string): Promise<void>;
  delete(key: string): Promise<void>;
}

/** A journal: read once at start, then append. Appends must be durable in order, each line
 * ended by `\n` (the core counts where each line is from that); the lines of one call (the
 * records of one engine step) go out in one write where the store can. Cached answers are not
 * kept in memory: a hit reads its line back from the store, at the place the core names. */
export interface JournalStore {
  /** Hand the journal to `consume` in order, in chunks of whole lines each ended by `\n` (the
   * last chunk may end with an unterminated, torn line). */
  load(consume: (text: string) => void): Promise<void>;
  append(lines: string[]): Promise<void>;
  /** The line at a place the core named (a file reads its bytes, a key-value store its key). */
  read(place: AnswerPlace): string | Promise<string>;
  /** Replace the journal with these lines, atomically: `false` (journal unchanged) if it could
   * not. A store that cannot replace itself atomically has no `compact`. */
  compact?(lines: CompactLine[]): Promise<boolean>;
  /** Release what reading holds (an open file). */
  close?(): void;
  /** `false` for a store that drops answers (the job runner's state file): the engine then
   * indexes none. */
  readonly keepsAnswers?: boolean;
}

/** Lines a key-value journal hands the core per chunk. */
const LOAD_CHUNK_LINES = 1024;

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

  async load(consume: (text: string) => void): Promise<void> {
    let chunk = "";
    let inChunk = 0;
    for (;;) {
      const line = await this.#storage.get(`${this.#prefix}:${this.#count}`);
      if (line === null || line === undefined) break;
      this.#count++;
      chunk += line + "\n";
      if (++inChunk === LOAD_CHUNK_LINES) {
        consume(chunk);
        chunk = "";
        inChunk = 0;
      }
    }
    if (chunk) consume(chunk);
  }

  /** A line by its number: its key. */
  async read(place: AnswerPlace): Promise<string> {
    const line = await this.#storage.get(`${this.#prefix}:${place.line}`);
    if (line === null || line === undefined) throw new Error(`key ${this.#prefix}:${place.line} is missing`);
    return line;
  }

  async append(lines: string[]): Promise<void> {
    for (const line of lines) await this.#storage.put(`${this.#prefix}:${this.#count++}`, line);
  }
}
