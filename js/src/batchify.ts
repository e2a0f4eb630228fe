// batchify() for Node: the native engine (or wasm), the global fetch hook scoped with
// AsyncLocalStorage, and the cache journal in a file (or, with `cache: { redis }`, the fleet's
// journal in Redis: fleet-redis.ts runs the engine's store actions).
import { AsyncLocalStorage } from "node:async_hooks";
import { randomBytes, randomInt } from "node:crypto";
import { appendFileSync, chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { dirname, join, resolve as resolvePath } from "node:path";
import { BatchifyHost, newEngineAndStore, type BatchifyContext, type BatchifyOptions } from "./batchify-host.js";
import "./engine-node.js";
import { loadInterceptorBackend } from "./engine.js";
import type { AnswerPlace, CompactLine } from "./generated/core.js";
import { openFleetRedis } from "./fleet-redis.js";
import { KeyValueJournal, type JournalStore } from "./storage.js";

export type { BatchifyContext, BatchifyOptions, BatchifyReport, BatchlingEvent, QueueReport } from "./batchify-host.js";

const realFetch: typeof fetch = globalThis.fetch.bind(globalThis);
const scope = new AsyncLocalStorage<BatchifyHost>();
let hookInstalled = false;

/** Replace the global fetch once; it routes to the context of the current async scope. */
function installHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  const hooked = (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const ctx = scope.getStore();
    return ctx ? ctx.fetch(input, init) : realFetch(input, init);
  };
  globalThis.fetch = hooked as typeof fetch;
}

export const DEFAULT_CACHE_PATH = ".batchling/cache.jsonl";

/** Bytes of the journal file read per chunk while loading. */
const LOAD_CHUNK_BYTES = 1 << 20;

/** The journal as a file of JSON lines, created 0600. Appends are synchronous, so a record is
 * on disk before the provider call that depends on it is made. Loaded in chunks (never the whole
 * file in one string); a cache hit reads its answer's line by offset. A directory it creates
 * gets a `.gitignore` of `*`, so the answers it holds stay out of a repository. */
export class FileJournal implements JournalStore {
  /** Open for reading answers, from the first hit until close. */
  #fd: number | undefined;
  /** The file ends with a torn line without `\n`: end it before the next append. */
  #unterminated = false;
  constructor(readonly path: string) {}

  async load(consume: (text: string) => void): Promise<void> {
    if (!existsSync(this.path)) return;
    const fd = openSync(this.path, "r");
    try {
      const buffer = Buffer.allocUnsafe(LOAD_CHUNK_BYTES);
      let carry = Buffer.alloc(0);
      for (;;) {
        const read = readSync(fd, buffer, 0, buffer.length, null);
        if (read === 0) break;
        const bytes = carry.length ? Buffer.concat([carry, buffer.subarray(0, read)]) : buffer.subarray(0, read);
        const end = bytes.lastIndexOf(10) + 1;
        if (end > 0) consume(decodeLines(bytes.subarray(0, end)));
        carry = Buffer.from(bytes.subarray(end));
      }
      if (carry.length) {
        consume(decodeLines(carry));
        this.#unterminated = true;
      }
    } finally {
      closeSync(fd);
    }
  }

  /** One write for the records of one engine step (a batch's results come together). */
  async append(lines: string[]): Promise<void> {
    if (!existsSync(this.path)) {
      const dir = dirname(this.path);
      // Only a directory made here: a journal in an existing directory leaves it as it is.
      if (mkdirSync(dir, { recursive: true }) !== undefined) {
        writeFileSync(join(dir, ".gitignore"), "# Written by batchling: the cache journal holds model answers.\n*\n", { flag: "wx" });
      }
      appendFileSync(this.path, "", { mode: 0o600 });
      chmodSync(this.path, 0o600);
    }
    appendFileSync(this.path, (this.#unterminated ? "\n" : "") + lines.join("\n") + "\n");
    this.#unterminated = false;
  }

  read(place: AnswerPlace): string {
    this.#fd ??= openSync(this.path, "r");
    const buffer = Buffer.allocUnsafe(place.length);
    const read = readSync(this.#fd, buffer, 0, place.length, place.offset);
    return buffer.toString("utf8", 0, read);
  }

  /** Write the live lines to a temporary file, flush it, and rename it over the journal: a crash
   * at any point leaves the old journal or the new one, whole. */
  async compact(lines: CompactLine[]): Promise<boolean> {
    const tmp = `${this.path}.${process.pid}.compact`;
    let out: number | undefined;
    try {
      out = openSync(tmp, "w", 0o600);
      let chunk: string[] = [];
      let size = 0;
      for (const line of lines) {
        const text = "write" in line ? line.write : this.read(line.copy);
        chunk.push(text);
        size += text.length;
        if (size >= LOAD_CHUNK_BYTES) {
          writeSync(out, chunk.join("\n") + "\n");
          chunk = [];
          size = 0;
        }
      }
      if (chunk.length) writeSync(out, chunk.join("\n") + "\n");
      fsyncSync(out);
      closeSync(out);
      out = undefined;
      renameSync(tmp, this.path);
    } catch {
      if (out !== undefined) closeSync(out);
      rmSync(tmp, { force: true });
      return false;
    }
    this.close();
    this.#unterminated = false;
    return true;
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }
}

/** Whole lines as text with each line's UTF-8 length kept (the core counts places in bytes): a
 * line that is not UTF-8 becomes as many `?` (a damaged line the core skips). */
function decodeLines(bytes: Buffer): string {
  const text = bytes.toString("utf8");
  if (Buffer.byteLength(text) === bytes.length) return text;
  const lines: string[] = [];
  let start = 0;
  while (start < bytes.length) {
    let end = bytes.indexOf(10, start);
    if (end < 0) end = bytes.length;
    const line = bytes.toString("utf8", start, end);
    lines.push(Buffer.byteLength(line) === end - start ? line : "?".repeat(end - start));
    start = end + 1;
  }
  return lines.join("\n") + (bytes[bytes.length - 1] === 10 ? "\n" : "");
}

function journalFor(cache: BatchifyOptions["cache"]): JournalStore | undefined {
  if (cache === false) return undefined;
  // The fleet's journal is Redis (the store the core named), never a file beside it.
  if (cache && typeof cache === "object" && "redis" in cache) return undefined;
  if (cache && typeof cache === "object" && "storage" in cache) return new KeyValueJournal(cache.storage, cache.prefix);
  const path = cache && typeof cache === "object" && "path" in cache ? cache.path : DEFAULT_CACHE_PATH;
  return new FileJournal(resolvePath(path));
}

/** Create a batching scope: SDK calls made inside `ctx.run()` or through `ctx.fetch` are batched. */
export function batchify(options: BatchifyOptions = {}): BatchifyContext {
  // The engine is built first: the core checks the options before anything is set up.
  const caching = options?.cache !== false;
  // A fresh owner id per engine (`cache: { redis }`): its claims in the fleet's store.
  const fleetOwner = `n${randomBytes(12).toString("base64url")}`;
  const { engine, redis } = newEngineAndStore(loadInterceptorBackend().NativeInterceptor, options, caching, randomInt(0, 2 ** 47), { fleetOwner });
  const journal = journalFor(options.cache);
  installHook();
  return new BatchifyHost(options, {
    engine,
    realFetch,
    journal,
    openStore: redis ? () => openFleetRedis(redis) : undefined,
    runInScope: (ctx, fn) => scope.run(ctx, fn),
    warn: (message) => process.emitWarning(message, "BatchlingWarning"),
  });
}
