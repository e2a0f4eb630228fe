// batchify() for Node: the native engine (or wasm), the global fetch hook scoped with
// AsyncLocalStorage, and the cache journal in a file.
import { AsyncLocalStorage } from "node:async_hooks";
import { randomInt } from "node:crypto";
import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, resolve as resolvePath } from "node:path";
import { BatchifyHost, newEngine, type BatchifyContext, type BatchifyOptions } from "./batchify-host.js";
import "./engine-node.js";
import { loadInterceptorBackend } from "./engine.js";
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

const DEFAULT_CACHE_PATH = ".batchling/cache.jsonl";

/** The journal as a file of JSON lines, created 0600. Appends are synchronous, so a record is
 * on disk before the provider call that depends on it is made. */
class FileJournal implements JournalStore {
  constructor(readonly path: string) {}
  async load(): Promise<string[]> {
    return existsSync(this.path) ? readFileSync(this.path, "utf8").split("\n") : [];
  }
  /** One write for the records of one engine step (a batch's results come together). */
  async append(lines: string[]): Promise<void> {
    if (!existsSync(this.path)) {
      mkdirSync(dirname(this.path), { recursive: true });
      appendFileSync(this.path, "", { mode: 0o600 });
      chmodSync(this.path, 0o600);
    }
    appendFileSync(this.path, lines.join("\n") + "\n");
  }
}

function journalFor(cache: BatchifyOptions["cache"]): JournalStore | undefined {
  if (cache === false) return undefined;
  if (cache && typeof cache === "object" && "storage" in cache) return new KeyValueJournal(cache.storage, cache.prefix);
  const path = cache && typeof cache === "object" && "path" in cache ? cache.path : DEFAULT_CACHE_PATH;
  return new FileJournal(resolvePath(path));
}

/** Create a batching scope: SDK calls made inside `ctx.run()` or through `ctx.fetch` are batched. */
export function batchify(options: BatchifyOptions = {}): BatchifyContext {
  // The engine is built first: the core checks the options before anything is set up.
  const caching = options?.cache !== false;
  const engine = newEngine(loadInterceptorBackend().NativeInterceptor, options, caching, randomInt(0, 2 ** 47));
  const journal = journalFor(options.cache);
  installHook();
  return new BatchifyHost(options, {
    engine,
    realFetch,
    journal,
    runInScope: (ctx, fn) => scope.run(ctx, fn),
    warn: (message) => process.emitWarning(message, "BatchlingWarning"),
  });
}
