// batchify(): the Node host of the core's provider batching engine. It intercepts fetch calls,
// hands them to the engine, performs the provider calls the engine asks for with the real fetch,
// keeps the cache journal on disk, and answers callers with the engine's synthetic responses.
import { AsyncLocalStorage } from "node:async_hooks";
import { randomInt } from "node:crypto";
import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, resolve as resolvePath } from "node:path";
import { loadInterceptorBackend, type InterceptorEngine } from "./engine.js";
import { BatchlingError, InvalidOptionError } from "./errors.js";
import { checkCount, checkKnownKeys, engineOptionError, now, timerDelay } from "./host-util.js";

export type BatchlingEvent =
  | { kind: "requestQueued"; provider: string; endpoint: string; model: string }
  | { kind: "cacheHit"; provider: string; model: string; resumedBatch: string | null }
  | { kind: "batchSubmitting"; job: number; provider: string; model: string; requests: number; dryRun: boolean }
  | { kind: "batchSubmitted"; job: number; provider: string; batchId: string; requests: number }
  | { kind: "batchPolled"; job: number; batchId: string; state: string; total: number; completed: number; failed: number }
  | { kind: "batchFinished"; job: number; batchId: string; state: string }
  | { kind: "resultsReceived"; job: number; batchId: string; results: number }
  | { kind: "retry"; job: number; step: string; attempt: number; delayMs: number; reason: string }
  | { kind: "warning"; message: string };

export interface BatchifyOptions {
  /** Requests per provider batch (default 100). */
  batchSize?: number;
  /** How long a queue's first request waits for others (default 2 000 ms). */
  batchWindowMs?: number;
  /** Time between two polls of a provider batch (default 10 000 ms). */
  pollIntervalMs?: number;
  /** Queue and group as usual but send nothing: callers get synthetic 200s. */
  dryRun?: boolean;
  /** The persistent request cache (default on, at `.batchling/cache.jsonl`). */
  cache?: boolean | { path: string };
  /** Retries of provider calls on 429 / 5xx / transport errors. */
  retry?: { attempts?: number; backoffMs?: number; maxBackoffMs?: number };
  /** Lifecycle events: queued, submitting, submitted, polled, finished, results, cache hit, retry. */
  onEvent?: (event: BatchlingEvent) => void;
}

export interface QueueReport {
  provider: string;
  endpoint: string;
  model: string;
  requests: number;
  batches: number;
  cacheHits: number;
  estimatedSyncUsd: number | null;
  estimatedBatchUsd: number | null;
  priceNote: string;
}

export interface BatchifyReport {
  dryRun: boolean;
  queues: QueueReport[];
}

export interface BatchifyContext {
  /** Run `fn` with every `fetch` it makes (and SDKs make for it) going through this context. */
  run<T>(fn: () => T | Promise<T>): Promise<T>;
  /** A fetch to hand to an SDK explicitly: `new OpenAI({ fetch: ctx.fetch })`. */
  fetch: typeof fetch;
  /** Send what is queued now (without waiting for the window). */
  flush(): void;
  /** Flush, wait for every answer, release timers; returns the report. */
  close(): Promise<BatchifyReport>;
  /** The report so far. */
  report(): BatchifyReport;
}

type Output =
  | { type: "passThrough"; request: number; reason: string }
  | { type: "send"; call: number; http: { method: string; url: string; headers: [string, string][]; body: string } }
  | { type: "respond"; request: number; status: number; headers: [string, string][]; body: string }
  | { type: "fail"; request: number; code: string; message: string }
  | { type: "persist"; line: string }
  | { type: "event"; event: BatchlingEvent }
  | { type: "drained" };

interface Pending {
  request: Request;
  resolve: (response: Response) => void;
  reject: (error: unknown) => void;
  onAbort?: () => void;
}

const realFetch: typeof fetch = globalThis.fetch.bind(globalThis);
const scope = new AsyncLocalStorage<Context>();
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

function validate(options: BatchifyOptions): void {
  if (options === null || typeof options !== "object") {
    throw new InvalidOptionError("options", "pass an options object, e.g. batchify({ batchSize: 100 })");
  }
  checkKnownKeys(options, ["batchSize", "batchWindowMs", "pollIntervalMs", "dryRun", "cache", "retry", "onEvent"]);
  checkCount("batchSize", options.batchSize, 1);
  checkCount("batchWindowMs", options.batchWindowMs, 0);
  checkCount("pollIntervalMs", options.pollIntervalMs, 1);
  if (options.dryRun !== undefined && typeof options.dryRun !== "boolean") {
    throw new InvalidOptionError("dryRun", `must be a boolean, got ${String(options.dryRun)}`);
  }
  const cache = options.cache;
  if (cache !== undefined && typeof cache !== "boolean") {
    if (cache === null || typeof cache !== "object" || typeof cache.path !== "string" || cache.path === "") {
      throw new InvalidOptionError("cache", "must be true, false or { path: string }");
    }
  }
  if (options.retry !== undefined) {
    if (options.retry === null || typeof options.retry !== "object") {
      throw new InvalidOptionError("retry", "must be an object { attempts?, backoffMs?, maxBackoffMs? }");
    }
    checkKnownKeys(options.retry, ["attempts", "backoffMs", "maxBackoffMs"], "retry.");
    checkCount("retry.attempts", options.retry.attempts, 1);
    checkCount("retry.backoffMs", options.retry.backoffMs, 0);
    checkCount("retry.maxBackoffMs", options.retry.maxBackoffMs, 0);
  }
  if (options.onEvent !== undefined && typeof options.onEvent !== "function") {
    throw new InvalidOptionError("onEvent", "must be a function (event) => void");
  }
}

class Context implements BatchifyContext {
  readonly #engine: InterceptorEngine;
  readonly #options: BatchifyOptions;
  readonly #cachePath: string | undefined;
  readonly #pending = new Map<number, Pending>();
  #nextRequest = 1;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  #inFlightCalls = 0;
  #closed: Promise<BatchifyReport> | undefined;
  #resolveClosed: (() => void) | undefined;
  #drained = false;

  constructor(options: BatchifyOptions) {
    validate(options);
    this.#options = options;
    const caching = options.cache !== false;
    this.#cachePath = caching
      ? resolvePath(typeof options.cache === "object" ? options.cache.path : DEFAULT_CACHE_PATH)
      : undefined;
    const { NativeInterceptor } = loadInterceptorBackend();
    const engineOptions = {
      batchSize: options.batchSize,
      batchWindowMs: options.batchWindowMs,
      pollIntervalMs: options.pollIntervalMs,
      dryRun: options.dryRun ?? false,
      cache: caching,
      retryAttempts: options.retry?.attempts,
      retryBackoffMs: options.retry?.backoffMs,
      retryMaxBackoffMs: options.retry?.maxBackoffMs,
      tagSeed: randomInt(0, 2 ** 47),
    };
    try {
      this.#engine = new NativeInterceptor(JSON.stringify(engineOptions));
    } catch (error) {
      throw engineOptionError(error);
    }
    if (this.#cachePath && existsSync(this.#cachePath)) {
      const lines = readFileSync(this.#cachePath, "utf8").split("\n");
      this.#apply(this.#engine.loadCache(lines));
    }
    installHook();
    this.fetch = this.fetch.bind(this) as typeof fetch;
  }

  run<T>(fn: () => T | Promise<T>): Promise<T> {
    return scope.run(this, async () => fn());
  }

  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    return this.#intercept(input, init);
  }

  flush(): void {
    this.#apply(this.#engine.flush(now()));
  }

  close(): Promise<BatchifyReport> {
    if (!this.#closed) {
      const drained = new Promise<void>((resolve) => (this.#resolveClosed = resolve));
      this.#apply(this.#engine.close(now()));
      this.#closed = drained.then(() => this.report());
    }
    return this.#closed;
  }

  report(): BatchifyReport {
    return { dryRun: this.#options.dryRun ?? false, queues: JSON.parse(this.#engine.report()) as QueueReport[] };
  }

  async #intercept(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    const request = new Request(input, init);
    const contentType = request.headers.get("content-type") ?? "";
    // Only JSON POSTs can be batched; everything else goes out untouched, body unread.
    if (request.method !== "POST" || !contentType.includes("json") || this.#closed) {
      return realFetch(request);
    }
    if (request.signal.aborted) throw request.signal.reason;
    const body = await request.clone().text();
    const id = this.#nextRequest++;
    const headers = JSON.stringify([...request.headers]);
    return new Promise<Response>((resolve, reject) => {
      const pending: Pending = { request, resolve, reject };
      this.#pending.set(id, pending);
      if (init?.signal || input instanceof Request) {
        pending.onAbort = () => this.#apply(this.#engine.cancel(now(), id));
        request.signal.addEventListener("abort", pending.onAbort, { once: true });
      }
      this.#apply(this.#engine.submit(now(), id, request.method, request.url, headers, body));
    });
  }

  #settle(id: number): Pending | undefined {
    const pending = this.#pending.get(id);
    if (!pending) return undefined;
    this.#pending.delete(id);
    if (pending.onAbort) pending.request.signal.removeEventListener("abort", pending.onAbort);
    return pending;
  }

  #apply(json: string): void {
    const { deadline, outputs } = JSON.parse(json) as { deadline: number | null; outputs: Output[] };
    for (const output of outputs) {
      switch (output.type) {
        case "passThrough": {
          const pending = this.#settle(output.request);
          if (pending) realFetch(pending.request).then(pending.resolve, pending.reject);
          break;
        }
        case "send":
          this.#send(output.call, output.http);
          break;
        case "respond": {
          const pending = this.#settle(output.request);
          pending?.resolve(new Response(output.body, { status: output.status, headers: output.headers }));
          break;
        }
        case "fail": {
          const pending = this.#settle(output.request);
          if (!pending) break;
          const cancelled = output.code === "ERR_BATCHLING_CANCELLED";
          pending.reject(cancelled ? pending.request.signal.reason : new BatchlingError(output.code, output.message));
          break;
        }
        case "persist":
          this.#persist(output.line);
          break;
        case "event":
          this.#emit(output.event);
          break;
        case "drained":
          this.#drained = true;
          this.#resolveClosed?.();
          break;
      }
    }
    this.#schedule(deadline);
  }

  #emit(event: BatchlingEvent): void {
    const onEvent = this.#options.onEvent;
    if (onEvent) {
      try {
        onEvent(event);
      } catch {
        // An observer must not break batching.
      }
    } else if (event.kind === "warning") {
      process.emitWarning(event.message, "BatchlingWarning");
    }
  }

  #persist(line: string): void {
    const path = this.#cachePath;
    if (!path) return;
    // Synchronous append: the record is on disk before the next provider call is made, so a
    // crash at any point leaves a journal that a re-run can trust.
    if (!existsSync(path)) {
      mkdirSync(dirname(path), { recursive: true });
      appendFileSync(path, "", { mode: 0o600 });
      chmodSync(path, 0o600);
    }
    appendFileSync(path, line + "\n");
  }

  #send(call: number, http: { method: string; url: string; headers: [string, string][]; body: string }): void {
    this.#inFlightCalls++;
    const init: RequestInit = { method: http.method, headers: http.headers };
    if (http.method !== "GET" && http.method !== "HEAD") init.body = http.body;
    realFetch(http.url, init)
      .then(async (response) => {
        const body = await response.text();
        return this.#engine.response(now(), call, response.status, JSON.stringify([...response.headers]), body);
      })
      .catch((error: unknown) => {
        const message = error instanceof Error ? `${error.message}${error.cause ? ` (${String(error.cause)})` : ""}` : String(error);
        return this.#engine.transportError(now(), call, message);
      })
      .then((json) => {
        this.#inFlightCalls--;
        this.#apply(json);
      });
  }

  #schedule(deadline: number | null): void {
    if (deadline === null || this.#drained) {
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#timerAt = Infinity;
      return;
    }
    if (this.#timer !== undefined && this.#timerAt === deadline) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = deadline;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Infinity;
      this.#apply(this.#engine.tick(now()));
    }, timerDelay(deadline));
  }
}

/** Create a batching scope: SDK calls made inside `ctx.run()` or through `ctx.fetch` are batched. */
export function batchify(options: BatchifyOptions = {}): BatchifyContext {
  return new Context(options);
}
