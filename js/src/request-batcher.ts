// RequestBatcher: the Node host of the core's generic batching engine.
// The engine decides when to cut, retry, time out and settle; this file only keeps payloads,
// runs the user's handler and turns the engine's actions into promise settlements.
import {
  ADD_CLOSED,
  ADD_QUEUE_FULL,
  type BatcherEngine,
  type EngineOptions,
  type EngineStatus,
  DRAINED,
  GROUP_RELEASED,
  loadBackend,
  REASON_ABORTED,
  REASON_BATCH_FAILED,
  REASON_CANCELLED,
  REASON_ITEM_FAILED,
  REASON_TIMED_OUT,
  REJECT,
  RESOLVE,
  RUN_BATCH,
  slotOf,
} from "./engine.js";
import {
  BatchResultError,
  CancelledError,
  ClosedError,
  InvalidOptionError,
  QueueFullError,
  TimeoutError,
} from "./errors.js";

export interface RetryOptions {
  /** Extra attempts after the first failure of a batch (default 0: no retry). */
  attempts: number;
  /** First backoff, doubled on every further attempt (default 100). */
  backoffMs?: number;
  /** Backoff cap (default 30 000). */
  maxBackoffMs?: number;
}

export interface RequestBatcherOptions<T, R> {
  /** Items per batch; a group is cut as soon as it holds this many. */
  maxBatchSize: number;
  /** How long the first item of a group may wait for others (0: batch what one tick adds). */
  maxDelayMs: number;
  /** Receives the items of one batch; returns one result per item, in order. An `Error` in the
   * array rejects only that item; a throw or rejection fails the whole batch. */
  batchHandler: (items: T[]) => Promise<ReadonlyArray<R | Error>> | ReadonlyArray<R | Error>;
  /** Items with different keys never share a batch. */
  keyGenerator?: (item: T) => unknown;
  /** Called once for each batch that fails for good, with the error and the batch's items. */
  errorHandler?: (error: unknown, items: T[]) => void;
  /** Items allowed to wait at once; an add beyond it rejects with `QueueFullError`. */
  maxQueueSize?: number;
  maxConcurrentBatches?: number;
  retry?: RetryOptions;
  /** Per-item deadline from `add()`: the promise rejects with `TimeoutError`. */
  timeoutMs?: number;
  /** Seed of the retry jitter, for reproducible tests. */
  jitterSeed?: number;
}

export interface AddOptions {
  signal?: AbortSignal;
}

export interface RequestBatcherStatus extends EngineStatus {}

interface ItemRecord<T, R> {
  item: T;
  resolve: (value: R) => void;
  reject: (reason: unknown) => void;
  result: R | Error | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** Engine id; -1 while the add is still buffered in this tick. */
  id: number;
  seq: number;
}

interface BatchRecord<T, R> {
  records: ItemRecord<T, R>[];
  error: unknown;
  reported: boolean;
}

interface FlushWaiter {
  beforeSeq: number;
  remaining: number;
  resolve: () => void;
}

const now = (): number => performance.now();
const EMPTY = new Uint32Array(0);

function checkCount(options: object, name: string, value: unknown, min: number, required = false): void {
  if (value === undefined && !required) return;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
    const what = value === undefined ? "is required" : `got ${String(value)}`;
    throw new InvalidOptionError(name, `must be an integer >= ${min}, ${what}`);
  }
  void options;
}

function validate<T, R>(options: RequestBatcherOptions<T, R>): EngineOptions {
  if (options === null || typeof options !== "object") {
    throw new InvalidOptionError("options", "pass an options object: new RequestBatcher({ maxBatchSize, maxDelayMs, batchHandler })");
  }
  const o = options;
  checkCount(o, "maxBatchSize", o.maxBatchSize, 1, true);
  checkCount(o, "maxDelayMs", o.maxDelayMs, 0, true);
  if (typeof o.batchHandler !== "function") {
    throw new InvalidOptionError("batchHandler", "must be a function (items) => results");
  }
  if (o.keyGenerator !== undefined && typeof o.keyGenerator !== "function") {
    throw new InvalidOptionError("keyGenerator", "must be a function (item) => key");
  }
  if (o.errorHandler !== undefined && typeof o.errorHandler !== "function") {
    throw new InvalidOptionError("errorHandler", "must be a function (error, items) => void");
  }
  checkCount(o, "maxQueueSize", o.maxQueueSize, 1);
  checkCount(o, "maxConcurrentBatches", o.maxConcurrentBatches, 1);
  checkCount(o, "timeoutMs", o.timeoutMs, 1);
  if (o.jitterSeed !== undefined && (!Number.isSafeInteger(o.jitterSeed) || o.jitterSeed < 0)) {
    throw new InvalidOptionError("jitterSeed", `must be a non-negative integer, got ${String(o.jitterSeed)}`);
  }
  const retry = o.retry;
  if (retry !== undefined) {
    if (retry === null || typeof retry !== "object") {
      throw new InvalidOptionError("retry", "must be an object { attempts, backoffMs?, maxBackoffMs? }");
    }
    checkCount(retry, "retry.attempts", retry.attempts, 0, true);
    checkCount(retry, "retry.backoffMs", retry.backoffMs, 0);
    checkCount(retry, "retry.maxBackoffMs", retry.maxBackoffMs, 0);
  }
  const known = new Set([
    "maxBatchSize", "maxDelayMs", "batchHandler", "keyGenerator", "errorHandler", "maxQueueSize",
    "maxConcurrentBatches", "retry", "timeoutMs", "jitterSeed",
  ]);
  for (const key of Object.keys(o)) {
    if (!known.has(key)) throw new InvalidOptionError(key, `unknown option; known options: ${[...known].join(", ")}`);
  }
  return {
    maxBatchSize: o.maxBatchSize,
    maxDelayMs: o.maxDelayMs,
    maxQueueSize: o.maxQueueSize,
    maxConcurrentBatches: o.maxConcurrentBatches,
    retryAttempts: retry?.attempts,
    retryBackoffMs: retry?.backoffMs,
    retryMaxBackoffMs: retry?.maxBackoffMs,
    timeoutMs: o.timeoutMs,
    jitterSeed: o.jitterSeed,
  };
}

export class RequestBatcher<T, R> {
  readonly #options: RequestBatcherOptions<T, R>;
  readonly #engine: BatcherEngine;
  /** Live records by engine slot index. */
  readonly #records: (ItemRecord<T, R> | undefined)[] = [];
  readonly #batches = new Map<number, BatchRecord<T, R>>();
  /** Group keys interned to the u32 ids the engine groups by; released when a group empties. */
  readonly #groupOfKey = new Map<unknown, number>();
  readonly #keyOfGroup: unknown[] = [];
  readonly #freeGroups: number[] = [];
  /** Adds of the current tick, handed to the engine in one call. */
  #buffered: ItemRecord<T, R>[] = [];
  #bufferedGroups: number[] = [];
  #flushQueued = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  #seq = 0;
  #flushWaiters: FlushWaiter[] = [];
  #closed = false;
  #drained: Promise<void> | undefined;
  #resolveDrained: (() => void) | undefined;

  constructor(options: RequestBatcherOptions<T, R>) {
    const engineOptions = validate(options);
    this.#options = options;
    const { NativeBatcher } = loadBackend();
    try {
      this.#engine = new NativeBatcher(engineOptions);
    } catch (error) {
      // The engine checks ranges the type checks above cannot (e.g. maxBackoffMs < backoffMs).
      const message = error instanceof Error ? error.message : String(error);
      const match = /invalid option `([^`]+)`: (.*)/.exec(message);
      throw match ? new InvalidOptionError(match[1]!, match[2]!) : error;
    }
  }

  /** Queue one item; resolves with its result once its batch has run. */
  add(item: T, options?: AddOptions): Promise<R> {
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(new CancelledError(signal.reason));
    let group = 0;
    const keyGenerator = this.#options.keyGenerator;
    if (keyGenerator) {
      try {
        group = this.#intern(keyGenerator(item));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    const record: ItemRecord<T, R> = {
      item,
      resolve: undefined as unknown as (value: R) => void,
      reject: undefined as unknown as (reason: unknown) => void,
      result: undefined,
      signal,
      onAbort: undefined,
      id: -1,
      seq: this.#seq++,
    };
    const promise = new Promise<R>((resolve, reject) => {
      record.resolve = resolve;
      record.reject = reject;
    });
    if (signal) {
      record.onAbort = () => this.#cancel(record);
      signal.addEventListener("abort", record.onAbort, { once: true });
    }
    this.#buffered.push(record);
    this.#bufferedGroups.push(group);
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.#sendBuffered());
    }
    return promise;
  }

  /** Cut every pending group now; resolves once every item added before the call has settled. */
  flush(): Promise<void> {
    this.#sendBuffered();
    const beforeSeq = this.#seq;
    let remaining = 0;
    for (const record of this.#records) if (record && record.seq < beforeSeq) remaining++;
    this.#apply(this.#engine.flush(now()));
    if (remaining === 0) return Promise.resolve();
    // Count again: the flush may have settled some at once (e.g. empty groups, aborts).
    remaining = 0;
    for (const record of this.#records) if (record && record.seq < beforeSeq) remaining++;
    if (remaining === 0) return Promise.resolve();
    return new Promise((resolve) => this.#flushWaiters.push({ beforeSeq, remaining, resolve }));
  }

  /** Counters: pending, processing, processed, failed, batches, averageBatchSize, … */
  getStatus(): RequestBatcherStatus {
    this.#sendBuffered();
    return this.#engine.status();
  }

  /** Refuse new items and wait for every queued one (`abort: true` rejects them instead). */
  close(options?: { abort?: boolean }): Promise<void> {
    this.#sendBuffered();
    if (!this.#drained) {
      this.#closed = true;
      this.#drained = new Promise((resolve) => (this.#resolveDrained = resolve));
      this.#apply(this.#engine.close(now(), options?.abort === true));
    } else if (options?.abort) {
      this.#apply(this.#engine.close(now(), true));
    }
    return this.#drained;
  }

  // ---- host internals --------------------------------------------------------------------

  #intern(key: unknown): number {
    let group = this.#groupOfKey.get(key);
    if (group === undefined) {
      group = this.#freeGroups.pop() ?? this.#keyOfGroup.length + 1; // 0 is the default group
      this.#groupOfKey.set(key, group);
      this.#keyOfGroup[group] = key;
    }
    return group;
  }

  #sendBuffered(): void {
    this.#flushQueued = false;
    const records = this.#buffered;
    if (records.length === 0) return;
    const groups = Uint32Array.from(this.#bufferedGroups);
    this.#buffered = [];
    this.#bufferedGroups = [];
    const out = this.#engine.add(now(), groups);
    for (let i = 0; i < records.length; i++) {
      const id = out[2 + i]!;
      const record = records[i]!;
      if (id >= 0) {
        record.id = id;
        this.#records[slotOf(id)] = record;
      } else {
        this.#settleRejected(
          record,
          id === ADD_QUEUE_FULL ? new QueueFullError(this.#options.maxQueueSize) : new ClosedError(),
        );
        void ADD_CLOSED;
      }
    }
    this.#apply(out, 2 + records.length);
  }

  #cancel(record: ItemRecord<T, R>): void {
    if (record.id === -1) this.#sendBuffered();
    if (record.id >= 0) this.#apply(this.#engine.cancel(now(), record.id));
  }

  /** Carry out the actions of one engine call. `start` skips the header and add results. */
  #apply(out: Float64Array, start = 2 + out[1]!): void {
    let i = start;
    while (i < out.length) {
      const tag = out[i]!;
      if (tag === RESOLVE) {
        const record = this.#take(out[i + 1]!);
        if (record) this.#settle(record, true, record.result);
        i += 2;
      } else if (tag === REJECT) {
        this.#reject(out[i + 1]!, out[i + 2]!, out[i + 3]!);
        i += 5;
      } else if (tag === RUN_BATCH) {
        const batch = out[i + 1]!;
        const count = out[i + 4]!;
        const records = new Array<ItemRecord<T, R>>(count);
        for (let k = 0; k < count; k++) records[k] = this.#records[slotOf(out[i + 5 + k]!)]!;
        this.#run(batch, records);
        i += 5 + count;
      } else if (tag === GROUP_RELEASED) {
        const group = out[i + 1]!;
        this.#groupOfKey.delete(this.#keyOfGroup[group]);
        this.#keyOfGroup[group] = undefined;
        if (group !== 0) this.#freeGroups.push(group);
        i += 2;
      } else if (tag === DRAINED) {
        this.#batches.clear();
        this.#resolveDrained?.();
        i += 1;
      } else {
        throw new Error(`batchling: unknown engine action ${tag}`);
      }
    }
    this.#schedule(out[0]!);
  }

  #take(id: number): ItemRecord<T, R> | undefined {
    const slot = slotOf(id);
    const record = this.#records[slot];
    if (record === undefined || record.id !== id) return undefined;
    this.#records[slot] = undefined;
    return record;
  }

  #reject(id: number, reason: number, batch: number): void {
    const record = this.#take(id);
    if (!record) return;
    let error: unknown;
    if (reason === REASON_ITEM_FAILED) error = record.result;
    else if (reason === REASON_TIMED_OUT) error = new TimeoutError(this.#options.timeoutMs!);
    else if (reason === REASON_CANCELLED) error = new CancelledError(record.signal?.reason);
    else if (reason === REASON_ABORTED) error = new ClosedError("the batcher was closed with abort before this item settled");
    else if (reason === REASON_BATCH_FAILED) {
      const failed = this.#batches.get(batch);
      error = failed?.error;
      if (failed && !failed.reported) {
        failed.reported = true;
        this.#batches.delete(batch);
        this.#reportBatchError(failed);
      }
    }
    this.#settle(record, false, error);
  }

  #reportBatchError(failed: BatchRecord<T, R>): void {
    const errorHandler = this.#options.errorHandler;
    if (!errorHandler) return;
    try {
      errorHandler(failed.error, failed.records.map((r) => r.item));
    } catch {
      // A throwing errorHandler must not break the settlement of the other items.
    }
  }

  #settleRejected(record: ItemRecord<T, R>, error: unknown): void {
    this.#settle(record, false, error);
  }

  #settle(record: ItemRecord<T, R>, ok: boolean, value: unknown): void {
    if (record.onAbort) record.signal!.removeEventListener("abort", record.onAbort);
    if (ok) record.resolve(value as R);
    else record.reject(value);
    if (this.#flushWaiters.length > 0) this.#noteSettled(record.seq);
  }

  #noteSettled(seq: number): void {
    this.#flushWaiters = this.#flushWaiters.filter((waiter) => {
      if (seq < waiter.beforeSeq && --waiter.remaining === 0) {
        waiter.resolve();
        return false;
      }
      return true;
    });
  }

  #run(batch: number, records: ItemRecord<T, R>[]): void {
    let entry = this.#batches.get(batch);
    if (entry) entry.records = records;
    else this.#batches.set(batch, (entry = { records, error: undefined, reported: false }));
    const items = new Array<T>(records.length);
    for (let k = 0; k < records.length; k++) items[k] = records[k]!.item;
    let pending: Promise<ReadonlyArray<R | Error>> | ReadonlyArray<R | Error>;
    try {
      pending = this.#options.batchHandler(items);
    } catch (error) {
      queueMicrotask(() => this.#failed(batch, error, true));
      return;
    }
    Promise.resolve(pending).then(
      (results) => this.#completed(batch, records, results),
      (error) => this.#failed(batch, error, true),
    );
  }

  #completed(batch: number, records: ItemRecord<T, R>[], results: unknown): void {
    if (!Array.isArray(results) || results.length !== records.length) {
      this.#failed(batch, new BatchResultError(records.length, results), false);
      return;
    }
    let failed: number[] | undefined;
    for (let k = 0; k < records.length; k++) {
      const result = results[k];
      records[k]!.result = result;
      if (result instanceof Error) (failed ??= []).push(k);
    }
    this.#batches.delete(batch);
    this.#apply(this.#engine.completed(now(), batch, failed ? Uint32Array.from(failed) : EMPTY));
  }

  #failed(batch: number, error: unknown, retryable: boolean): void {
    const entry = this.#batches.get(batch);
    if (entry) entry.error = error;
    this.#apply(this.#engine.failed(now(), batch, retryable));
  }

  #schedule(deadline: number): void {
    if (deadline < 0) {
      if (this.#timer !== undefined) {
        clearTimeout(this.#timer);
        this.#timer = undefined;
        this.#timerAt = Infinity;
      }
      return;
    }
    if (this.#timer !== undefined && this.#timerAt === deadline) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = deadline;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Infinity;
      this.#sendBuffered();
      this.#apply(this.#engine.tick(now()));
    }, Math.max(0, Math.ceil(deadline - now())));
  }

  /** True once `close()` has been called. */
  get closed(): boolean {
    return this.#closed;
  }
}
