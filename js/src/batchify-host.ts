// The batchify() host, independent of the runtime: it hands intercepted requests to the core's
// provider batching engine, performs the provider calls the engine asks for with the runtime's
// real fetch, appends the cache journal to a JournalStore, and answers callers with the
// engine's synthetic responses. Node (batchify.ts) and browsers / edge runtimes (browser.ts)
// give it their fetch, storage and (in Node) an async scope.
import { coreAnswer, refusalError, type CoreRefusal } from "./core-errors.js";
import { loadInterceptorBackend, type InterceptorEngine } from "./engine.js";
import { BatchlingError } from "./errors.js";
import { DeadlineTimer, now, optionsJson } from "./host-util.js";
import type {
  AnswerPlace,
  CompactLine,
  HostSpec,
  InterceptorOptions,
  LifecycleEvent,
  Output,
  PriceOverride,
  QueueReport,
  RedisStore,
  SerializableRequest,
  StoreAction,
  StoreOutcome,
} from "./generated/core.js";
import type { JournalStore } from "./storage.js";

/** A lifecycle event of the engine (generated from the core's `LifecycleEvent`). */
export type BatchlingEvent = LifecycleEvent;
/** One declared batch host (see `BatchifyOptions.hosts`; generated from the core's `HostSpec`). */
export type HostDeclaration = HostSpec;
/** One row of the report (generated from the core's `QueueReport`). */
export type { QueueReport };
/** A provider call the core asks the host to make (`redirect: "manual"`: hand the redirect
 * answer back rather than following it). */
type ProviderCall = SerializableRequest;


export interface BatchifyOptions {
  /** Requests per provider batch (default 100). */
  batchSize?: number;
  /** How long a queue's first request waits for others (default 2 000 ms). */
  batchWindowMs?: number;
  /** Time between two polls of a provider batch (default 10 000 ms). */
  pollIntervalMs?: number;
  /** Queue and group as usual but send nothing: callers get synthetic 200s. */
  dryRun?: boolean;
  /** The persistent request cache. Node: on by default, at `.batchling/cache.jsonl`; `{ path }`
   * picks the file. Browsers and edge runtimes: `{ storage }`, any async get/put/delete store
   * (in memory by default). `false` turns it off. `maxAgeDays` (default 30, the providers' result
   * retention): answers journalled longer ago are dropped when the journal is loaded (and left
   * out when it is compacted), so they are asked again.
   * Node only: `{ redis: "redis://host:port/db" }` (or `{ redis: { url, … } }`) shares one journal
   * in Redis across every process of a fleet, so a request is batched once whichever process
   * gets it (see the README's Fleet section); `maxAgeDays` is then the answers' TTL there. */
  cache?:
    | boolean
    | { path: string; maxAgeDays?: number }
    | { storage: import("./storage.js").KeyValueStorage; prefix?: string; maxAgeDays?: number }
    | { redis: string | RedisCacheOptions; maxAgeDays?: number }
    | { maxAgeDays: number };
  /** Delete a batch's files at the provider (uploaded input, output and error files) once its
   * answers are journalled (default true), so they do not fill your storage quota there. Best
   * effort: a failed delete is a warning event; the close report counts both. */
  deleteProviderFiles?: boolean;
  /** Retries of provider calls on 429 / 5xx / transport errors. */
  retry?: { attempts?: number; backoffMs?: number; maxBackoffMs?: number };
  /** Lifecycle events: queued, submitting, submitted, polled, finished, results, cache hit, retry. */
  onEvent?: (event: BatchlingEvent) => void;
  /** Batch hosts to know besides the built-in ones: requests whose URL starts with `baseUrl`
   * speak `provider`'s batch protocol, and their batch calls go under that base. Declared hosts
   * win over built-in ones. Use it for any OpenAI-compatible batch host
   * (`{ baseUrl: "https://api.novita.ai/openai/v1", provider: "openai", completionWindow: "48h" }`),
   * a proxy, or a local server. */
  hosts?: HostDeclaration[];
  /** Batches a request may go through without running, counting the first (default 3): a
   * request missing from its batch's results, or whose batch expired or was cancelled before
   * it ran, goes into a new batch; after this many, its caller gets `ERR_BATCHLING_LINES_NOT_RUN`
   * naming the batches. */
  lineAttempts?: number;
  /** `false`: requests a batch did not run are not resubmitted; their callers get the batch's
   * end as an error response (504 expired, 499 cancelled, 500 otherwise). Default `true`. */
  resubmit?: boolean;
  /** Estimated input tokens (JSON chars / 4, as the cost estimate counts them) allowed in flight
   * at once per provider, host, model and API key: the providers' enqueued-token limits. A batch
   * that would pass it waits until a batch of its model ends; one above it alone is split.
   * Without it, batchling still waits and resubmits when a provider refuses a batch for its limit. */
  maxEnqueuedTokens?: number;
  /** Your prices by model id (`{ "<model>": { provider?, inputPerMTok, outputPerMTok,
   * cachedInputPerMTok?, cacheWritePerMTok?, cacheReadPerMTok? } }`), list USD per million
   * tokens, over the built-in table, for the report's estimate and the cost limit; batchling
   * applies the provider's batch discount. */
  prices?: Record<string, PriceOverride>;
  /** Milliseconds a request may wait for its batch: past it, the request is sent to the
   * provider's normal endpoint (with its caller's headers) and answered from there; its batch
   * line is discarded. Shorter than the batch window plus one poll interval: sent there at once.
   * Per call: the `x-batchling-deadline-ms` request header (never sent to the provider). */
  deadlineMs?: number;
  /** Sync fallbacks (see `deadlineMs`) in flight at once; default 8. */
  maxSyncFallbacks?: number;
}

/** `cache: { redis: { … } }`: where the fleet's Redis is, and its timings. */
export interface RedisCacheOptions {
  /** `redis://[user:password@]host[:port][/db]` or `rediss://…` (TLS). */
  url: string;
  /** Put before every key (default `batchling:`): fleets sharing a Redis need different ones. */
  prefix?: string;
  /** How long the first connection may take (default 2 000 ms). */
  connectTimeoutMs?: number;
  /** How long a store action waits for Redis to come back before its callers fail with
   * `ERR_BATCHLING_STORE_UNAVAILABLE` (default 10 000 ms). */
  retryForMs?: number;
  /** How long a process's claim on a request lasts unless renewed (default 30 000 ms): a killed
   * process's requests are taken over this long (plus `graceMs`) after its last renew. */
  leaseMs?: number;
  /** How long a create may take to reach the provider (default 10 000 ms): a process taking over
   * a request whose batch's create may have been sent waits this long, then looks it up by tag. */
  graceMs?: number;
  /** How often a process waiting on another's request polls Redis for its answer (default 1 000 ms). */
  pollMs?: number;
}

/** The per-call deadline header: read by the core, never forwarded. */
const DEADLINE_HEADER = "x-batchling-deadline-ms";

/** `init` without the deadline header (a copy, only when it has one). */
function withoutDeadline(init: RequestInit, headers: Headers): RequestInit {
  if (!headers.has(DEADLINE_HEADER)) return init;
  const copy = new Headers(headers);
  copy.delete(DEADLINE_HEADER);
  return { ...init, headers: copy };
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


/** What the host keeps of an intercepted call while it waits: how to settle it, and its signal
 * while it has a listener there. The request and its body are not kept: the core has the body. */
interface Pending {
  resolve: (response: Response) => void;
  reject: (error: unknown) => void;
  /** The caller's signal (a cancelled call is rejected with its reason) and its listener. */
  signal?: AbortSignal;
  onAbort?: () => void;
}

/** The call being handed to the core: a pass-through (decided while it is submitted) is sent
 * by `send`, from the caller's request and its body already read. */
interface Submitting {
  id: number;
  send: () => Promise<Response>;
}

/** The answer to a job submitted with `submitJobs`: its result line, or why it has none. */
export type JobAnswer = Extract<Output, { type: "jobResult" } | { type: "fail" }>;

/** The fleet's shared store (Redis, `js/src/fleet-redis.ts`): runs the core's store actions. */
export interface FleetStore {
  /** `answerOf` gives the body a `putAnswer` stores (the core's output carries it). */
  execute(op: StoreAction, answerOf: (fingerprint: string) => string | undefined): Promise<StoreOutcome>;
  close(): Promise<void>;
}

/** What a runtime gives the host. */
export interface Platform {
  /** Fleet mode (`cache: { redis }`): opens the store. Submits wait for it; a store that cannot
   * be opened fails them with its typed error (nothing is sent), and the next submit tries again. */
  openStore?: () => Promise<FleetStore>;
  engine: InterceptorEngine;
  /** The runtime's own fetch, never the intercepting one. */
  realFetch: typeof fetch;
  /** The cache journal; undefined when caching is off. */
  journal: JournalStore | undefined;
  /** Runs `fn` with this context as the current scope (Node's AsyncLocalStorage). */
  runInScope?: <T>(ctx: BatchifyHost, fn: () => Promise<T>) => Promise<T>;
  /** Where warnings go when there is no onEvent. */
  warn: (message: string) => void;
  /** The answers to jobs submitted with `submitJobs`, all those of one engine step at once. */
  onJobAnswers?: (answers: JobAnswer[]) => void;
}


export class BatchifyHost implements BatchifyContext {
  readonly #engine: InterceptorEngine;
  readonly #options: BatchifyOptions;
  readonly #platform: Platform;
  /** Journal loaded into the engine; submits wait for it. */
  readonly #ready: Promise<void>;
  /** Appends in order; a provider call waits for the appends made before it. */
  #persisted: Promise<void> = Promise.resolve();
  readonly #pending = new Map<number, Pending>();
  #submitting: Submitting | undefined;
  #nextRequest = 1;
  /** Fetches whose body is still being read, before they reach the engine. */
  #intake = 0;
  #flushOnIntake = false;
  readonly #timer = new DeadlineTimer(() => this.#apply(this.#engine.tick(now())));
  #inFlightCalls = 0;
  #closed: Promise<BatchifyReport> | undefined;
  #resolveClosed: (() => void) | undefined;
  #drained = false;
  /** Fleet mode: the store, once open, and its opening while under way. */
  #store: FleetStore | undefined;
  #storeOpening: Promise<void> | undefined;

  constructor(options: BatchifyOptions, platform: Platform) {
    this.#options = options;
    this.#platform = platform;
    this.#engine = platform.engine;
    const journal = platform.journal;
    this.#ready = journal ? this.#load(journal) : Promise.resolve();
    // Opened at once (a bad URL or a Redis that is down shows on the first call, not later).
    if (platform.openStore) this.#whenReady().catch(() => {});
    this.fetch = this.fetch.bind(this) as typeof fetch;
  }

  /** The journal loaded, or in fleet mode the store open (opened again after a failure). */
  #whenReady(): Promise<void> {
    const open = this.#platform.openStore;
    if (!open || this.#store) return this.#ready;
    this.#storeOpening ??= open().then(
      (store) => {
        this.#store = store;
      },
      (error: unknown) => {
        this.#storeOpening = undefined;
        throw error;
      },
    );
    return this.#storeOpening;
  }

  /** Stream the journal into the engine, then rewrite it if the engine finds most of it
   * superseded (a store that can replace itself atomically). */
  async #load(journal: JournalStore): Promise<void> {
    await journal.load((text) => this.#apply(this.#engine.loadCache(text)));
    if (!journal.compact) return;
    const plan = JSON.parse(this.#engine.journalCompaction()) as CompactLine[] | null;
    if (plan && (await journal.compact(plan))) this.#engine.journalCompacted();
  }

  run<T>(fn: () => T | Promise<T>): Promise<T> {
    const runInScope = this.#platform.runInScope;
    if (!runInScope) {
      throw new BatchlingError(
        "ERR_BATCHLING_NO_SCOPE",
        "ctx.run() needs an async scope (Node's AsyncLocalStorage), which this runtime lacks: pass ctx.fetch to the SDK instead, e.g. new OpenAI({ fetch: ctx.fetch })",
      );
    }
    return runInScope(this, async () => fn());
  }

  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    return this.#intercept(input, init);
  }

  flush(): void {
    this.#apply(this.#engine.flush(now()));
  }

  /** Flush once every fetch already started has reached the engine (their bodies are read
   * asynchronously): how a job run cuts its last, partial batch without waiting for a window. */
  flushWhenSubmitted(): void {
    if (this.#intake === 0) this.flush();
    else this.#flushOnIntake = true;
  }

  close(): Promise<BatchifyReport> {
    if (!this.#closed) {
      const drained = new Promise<void>((resolve) => (this.#resolveClosed = resolve));
      this.#apply(this.#engine.close(now()));
      // Wait for the journal too: a Worker's pending I/O ends with its response, so records
      // still being written after close() would be lost.
      this.#closed = drained
        .then(() => this.#persisted)
        .then(async () => {
          this.#platform.journal?.close?.();
          // Drained: every answer of this process's is in the store and every claim released.
          await this.#storeOpening?.catch(() => {});
          await this.#store?.close();
          return this.report();
        });
    }
    return this.#closed;
  }

  /** `count` request ids for a `submitJobs` call; returns the first (the others follow it). */
  reserveRequests(count: number): number {
    const first = this.#nextRequest;
    this.#nextRequest += count;
    return first;
  }

  /** Jobs in bulk (the job builder's run): `specsJson` (`[JobSpec, …]`, requests `first`,
   * `first + 1`, …) crosses into the core in one call; the core builds each request and answers
   * each job with its result line, through `Platform.onJobAnswers`. A job that does not build
   * throws its typed error, and none of the call's jobs is submitted. */
  async submitJobs(first: number, specsJson: string, endpointsJson: string): Promise<void> {
    this.#intake++;
    try {
      await this.#whenReady();
    } finally {
      this.#intake--;
    }
    const json = this.#engine.submitJobs(now(), first, specsJson, endpointsJson);
    if (json.startsWith('{"ok":false')) throw refusalError(JSON.parse(json) as CoreRefusal);
    this.#apply(json);
    if (this.#flushOnIntake && this.#intake === 0) {
      this.#flushOnIntake = false;
      this.flush();
    }
  }

  /** Provider batches not yet ended: in flight, or cut and waiting for admission. */
  liveBatches(): number {
    return this.#engine.liveBatches();
  }

  report(): BatchifyReport {
    return { dryRun: this.#options.dryRun ?? false, queues: JSON.parse(this.#engine.report()) as QueueReport[] };
  }

  async #intercept(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    // What SDKs send (a URL and a string body): read from `init` as is, no Request built.
    if (!(input instanceof Request) && typeof init?.body === "string") return this.#interceptInit(input, init, init.body);
    const request = new Request(input, init);
    const contentType = request.headers.get("content-type") ?? "";
    // Only JSON POSTs can be batched; everything else goes out untouched, body unread.
    if (request.method !== "POST" || !contentType.includes("json") || this.#closed) {
      if (!request.headers.has(DEADLINE_HEADER)) return this.#platform.realFetch(request);
      const headers = new Headers(request.headers);
      headers.delete(DEADLINE_HEADER);
      return this.#platform.realFetch(new Request(request, { headers }));
    }
    if (request.signal.aborted) throw request.signal.reason;
    const arrived = now();
    this.#intake++;
    let body: string;
    try {
      // Read once, without a clone: a pass-through is rebuilt from the request and this text.
      body = await request.text();
      await this.#whenReady();
    } finally {
      this.#intake--;
    }
    // The caller's own signal (the Request's follows it), so the Request is not kept alive.
    const signal = init?.signal ? init.signal : input instanceof Request ? request.signal : undefined;
    const send = () => {
      const headers = new Headers(request.headers);
      headers.delete(DEADLINE_HEADER);
      return this.#platform.realFetch(new Request(request, { body, headers }));
    };
    return this.#submit(request.url, request.headers, body, signal, arrived, send);
  }

  async #interceptInit(input: string | URL, init: RequestInit, body: string): Promise<Response> {
    // SDKs (openai, Anthropic) pass a `Headers` already: read it, not a copy (only read here).
    const headers = init.headers instanceof Headers ? init.headers : new Headers(init.headers);
    const contentType = headers.get("content-type") ?? "";
    if ((init.method ?? "GET").toUpperCase() !== "POST" || !contentType.includes("json") || this.#closed) {
      return this.#platform.realFetch(input, withoutDeadline(init, headers));
    }
    const url = new URL(input instanceof URL ? input.href : input).href;
    const signal = init.signal ?? undefined;
    if (signal?.aborted) throw signal.reason;
    const arrived = now();
    this.#intake++;
    try {
      await this.#whenReady();
    } finally {
      this.#intake--;
    }
    return this.#submit(url, headers, body, signal, arrived, () => this.#platform.realFetch(input, withoutDeadline(init, headers)));
  }

  /** Hand a read call to the core. Only `pending` (no request, no body) outlives this call;
   * `send` makes it as is, if the core passes it through (decided during the submission).
   * `arrived`: when the call reached the host, before its body was read and the journal loaded
   * (the core counts a client's own timer from then). */
  #submit(url: string, headers: Headers, body: string, signal: AbortSignal | undefined, arrived: number, send: () => Promise<Response>): Promise<Response> {
    const id = this.#nextRequest++;
    const headersJson = JSON.stringify([...headers]);
    return new Promise<Response>((resolve, reject) => {
      const pending: Pending = { resolve, reject };
      this.#pending.set(id, pending);
      if (signal) this.#watchAbort(id, pending, signal);
      this.#submitting = { id, send };
      try {
        this.#apply(this.#engine.submit(now(), id, "POST", url, headersJson, body, arrived));
      } finally {
        this.#submitting = undefined;
      }
      // Aborted while its body was read: the listener came too late to hear it.
      if (signal?.aborted) pending.onAbort?.();
      if (this.#flushOnIntake && this.#intake === 0) {
        this.#flushOnIntake = false;
        this.flush();
      }
    });
  }

  /** Listen for the caller's abort and tell the core (which keeps the call if it was its
   * client's own timer, else cancels it); the listener holds the signal, not the body. */
  #watchAbort(id: number, pending: Pending, signal: AbortSignal): void {
    pending.signal = signal;
    pending.onAbort = () => {
      const reason: unknown = signal.reason;
      const timeoutReason = reason instanceof DOMException && reason.name === "TimeoutError";
      this.#apply(this.#engine.abort(now(), id, timeoutReason));
    };
    signal.addEventListener("abort", pending.onAbort, { once: true });
  }

  #settle(id: number): Pending | undefined {
    const pending = this.#pending.get(id);
    if (!pending) return undefined;
    this.#pending.delete(id);
    if (pending.onAbort) pending.signal?.removeEventListener("abort", pending.onAbort);
    return pending;
  }

  #apply(json: string): void {
    const { deadline, outputs } = JSON.parse(json) as { deadline: number | null; outputs: Output[] };
    // Journal lines of this step, written together before any provider call it asks for.
    let lines: string[] | undefined;
    let answers: JobAnswer[] | undefined;
    for (const output of outputs) {
      if (output.type === "persist") {
        (lines ??= []).push(output.line);
        continue;
      }
      if (lines) {
        this.#persist(lines);
        lines = undefined;
      }
      switch (output.type) {
        case "passThrough": {
          const pending = this.#settle(output.request);
          const submitting = this.#submitting;
          if (!pending) break;
          // The core decides a pass-through while the call is submitted, so it is at hand.
          if (submitting?.id !== output.request) {
            pending.reject(new BatchlingError("ERR_BATCHLING_INTERNAL", `pass-through of request ${output.request} outside its submission`));
            break;
          }
          submitting.send().then(pending.resolve, pending.reject);
          break;
        }
        case "send":
          this.#send(output.call, output.http, output.stream);
          break;
        case "respond": {
          const pending = this.#settle(output.request);
          pending?.resolve(new Response(output.body, { status: output.status, headers: output.headers }));
          break;
        }
        case "respondStored": {
          const pending = this.#settle(output.request);
          if (pending) this.#respondStored(pending, output.fingerprint, output.place);
          break;
        }
        case "jobResult":
          (answers ??= []).push(output);
          break;
        case "fail": {
          const pending = this.#settle(output.request);
          if (!pending) {
            // A job's (submitJobs): it has no caller waiting.
            if (this.#platform.onJobAnswers) (answers ??= []).push(output);
            break;
          }
          const cancelled = output.code === "ERR_BATCHLING_CANCELLED";
          pending.reject(cancelled ? pending.signal?.reason : new BatchlingError(output.code, output.message));
          break;
        }
        case "event":
          this.#emit(output.event);
          break;
        case "drained":
          this.#drained = true;
          this.#resolveClosed?.();
          break;
        case "store":
          this.#storeAction(output.action, output.op, output.answer);
          break;
      }
    }
    if (lines) this.#persist(lines);
    if (answers) this.#platform.onJobAnswers?.(answers);
    this.#schedule(deadline);
  }

  /** A cache hit: the answer's line is read from the journal (after the appends made before,
   * which may hold it) and answered as stored. */
  #respondStored(pending: Pending, fingerprint: string, place: AnswerPlace): void {
    const journal = this.#platform.journal;
    this.#persisted
      .then(() => {
        if (!journal) throw new Error("no journal");
        return journal.read(place);
      })
      .then((line) => {
        const record = JSON.parse(line) as { type?: string; fingerprint?: string; status: number; headers: [string, string][]; body: string };
        if (record.type !== "result" || record.fingerprint !== fingerprint) throw new Error("the line there is another record");
        pending.resolve(new Response(record.body, { status: record.status, headers: record.headers }));
      })
      .catch((error: unknown) => {
        const why = error instanceof Error ? error.message : String(error);
        pending.reject(
          new BatchlingError(
            "ERR_BATCHLING_CACHE_READ",
            `the cached answer at line ${place.line + 1} (byte ${place.offset}) of the cache journal could not be read (${why}); was the journal edited during the run? Delete it (or run without a cache) to call again`,
          ),
        );
      });
  }

  /** Run one of the core's store actions (they run concurrently; the core sequences what
   * depends on what) and hand back its outcome, or its failure (the core fails the callers
   * that hung on it: nothing is sent without the store). */
  #storeAction(action: number, op: StoreAction, answer: string | undefined): void {
    const store = this.#store;
    const run = store
      ? store.execute(op, () => answer)
      : Promise.reject(new BatchlingError("ERR_BATCHLING_INTERNAL", "a store action before the store was open"));
    run
      .then(
        (outcome) => this.#engine.storeOutcome(now(), action, JSON.stringify(outcome)),
        (error: unknown) => this.#engine.storeFailed(now(), action, error instanceof Error ? error.message : String(error)),
      )
      .then((json) => this.#apply(json));
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
      this.#platform.warn(event.message);
    }
  }

  #persist(lines: string[]): void {
    const journal = this.#platform.journal;
    if (!journal) return;
    this.#persisted = this.#persisted.then(() => journal.append(lines));
  }


  #send(call: number, http: ProviderCall, stream?: "lines"): void {
    this.#inFlightCalls++;
    const init: RequestInit = { method: http.method, headers: http.headers };
    // The core reads this call's redirect itself (Together's presigned upload).
    if (http.redirect === "manual") init.redirect = "manual";
    if (http.method !== "GET" && http.method !== "HEAD") init.body = http.body;
    // The journal records written before this call (e.g. the intent before a create) must be
    // durable before the call goes out, or a crash could make a re-run pay twice.
    this.#persisted
      .then(() => this.#platform.realFetch(http.url, init))
      .then(async (response) => {
        if (response.type === "opaqueredirect") {
          // Browsers hide a manual redirect's status and Location.
          throw new Error(`${http.method} ${http.url} answered with a redirect this runtime does not expose (a browser's opaque redirect)`);
        }
        const headersJson = JSON.stringify([...response.headers]);
        // A results file (up to hundreds of MB) is handed over as it arrives, never held whole.
        const streamed = stream === "lines" && response.ok && response.body !== null;
        const body = streamed ? await this.#streamLines(call, response.body!) : await response.text();
        return this.#engine.response(now(), call, response.status, headersJson, body);
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

  /** Read a body of lines (JSONL) and hand the engine chunks of whole lines of about
   * `STREAM_CHUNK_CHARS` as they arrive (each chunk's callers are answered at once); returns the
   * rest after the last newline, for the final `response`. Holds at most a chunk and one partial
   * line. */
  async #streamLines(call: number, body: ReadableStream<Uint8Array>): Promise<string> {
    const reader = body.getReader();
    const decoder = new TextDecoder(); // UTF-8; a sequence cut between reads waits for its rest
    let pending = "";
    let end = 0; // just after the last newline in `pending`; 0: none yet
    try {
      for (;;) {
        const { done, value } = await reader.read();
        const text = done ? decoder.decode() : decoder.decode(value, { stream: true });
        const newline = text.lastIndexOf("\n");
        if (newline >= 0) end = pending.length + newline + 1; // only the new text is searched
        pending += text;
        if (done) return pending;
        // Below a chunk, or one line longer than a chunk so far: read on.
        if (pending.length < STREAM_CHUNK_CHARS || end === 0) continue;
        const chunk = pending.slice(0, end);
        pending = pending.slice(end);
        end = 0;
        this.#apply(this.#engine.responseChunk(now(), call, chunk));
      }
    } catch (error) {
      reader.cancel(error).catch(() => {}); // the connection is not kept for a body left unread
      throw error;
    }
  }

  #schedule(deadline: number | null): void {
    this.#timer.set(this.#drained ? null : deadline);
  }

}


/** About how much of a streamed results file the host hands the engine at a time (UTF-16 code
 * units: ~1 MiB of ASCII), cut at the last newline. */
const STREAM_CHUNK_CHARS = 1 << 20;

/**
 * Build an engine. The core checks the user's options (every rule is there; a refusal is thrown
 * as an InvalidOptionError naming the option) and answers with the engine's options, over the
 * host's own: whether it keeps a journal, the tag seed, and `Batch`'s limits.
 */
export function newEngine(
  Engine: new (optionsJson: string) => InterceptorEngine,
  options: BatchifyOptions,
  caching: boolean,
  tagSeed: number,
  limits: { maxConcurrentBatches?: number; costLimitUsd?: number; keepAnswers?: boolean } = {},
): InterceptorEngine {
  return newEngineAndStore(Engine, options, caching, tagSeed, limits).engine;
}

/**
 * `newEngine`, for a host that can open a Redis store: with `fleetOwner` (this engine's fresh
 * owner id), the core accepts `cache: { redis }`, turns fleet mode on with that owner, and
 * answers with the store to open (`redis`, absent otherwise and in a dry run).
 */
export function newEngineAndStore(
  Engine: new (optionsJson: string) => InterceptorEngine,
  options: BatchifyOptions,
  caching: boolean,
  tagSeed: number,
  limits: { maxConcurrentBatches?: number; costLimitUsd?: number; keepAnswers?: boolean; fleetOwner?: string } = {},
): { engine: InterceptorEngine; redis?: RedisStore } {
  // Journal times are wall-clock times; the engine's `now` is monotonic: both at one instant.
  const host = JSON.stringify({ ...limits, cache: caching, tagSeed, clockWallMs: Date.now(), clockMonotonicMs: Math.floor(now()) });
  // A cache's storage is the host's object: the core only needs to know it is one.
  const user = optionsJson(options, { hostObjects: ["storage"] });
  const checked = coreAnswer<{ options: InterceptorOptions; redis?: RedisStore }>(loadInterceptorBackend().checkInterceptorOptions(user, host));
  return { engine: new Engine(JSON.stringify(checked.options)), redis: checked.redis };
}
