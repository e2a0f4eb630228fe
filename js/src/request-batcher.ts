// RequestBatcher: the Node host of the core's generic batching engine.
// The engine decides when to cut, retry, time out and settle; this file only keeps payloads,
// runs the user's handler and turns the engine's actions into promise settlements.
import {
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
import { checkCount, checkKnownKeys, DeadlineTimer, engineOptionError, now } from "./host-util.js";
import { ITEM, REJECT as SLOT_REJECT, RESOLVE as SLOT_RESOLVE, RESULT, SEQ, SlotTable } from "./slots.js";

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

interface BatchRecord {
  /** Engine ids of the attempt's items, in handler order. */
  ids: number[];
  error: unknown;
  reported: boolean;
}

interface FlushWaiter {
  beforeSeq: number;
  remaining: number;
  resolve: () => void;
}

type Settle = (value: unknown) => void;

interface SignalWiring {
  signal: AbortSignal;
  /** Engine id; -1 while buffered, < -1 if the engine refused the add. */
  id: number;
  /** Position in this tick's buffer while buffered. */
  index: number;
  onAbort: () => void;
}

/** Marks a buffered add whose signal aborted. */
const CANCELLED = Symbol("cancelled");

/** Adds handed to the engine per call at most, so one call's outcome fits the scratch buffer. */
const ADDS_PER_CALL = 4096;
const SCRATCH_LENGTH = 4 * ADDS_PER_CALL;
const EMPTY = new Uint32Array(0);

function validate<T, R>(options: RequestBatcherOptions<T, R>): EngineOptions {
  if (options === null || typeof options !== "object") {
    throw new InvalidOptionError("options", "pass an options object: new RequestBatcher({ maxBatchSize, maxDelayMs, batchHandler })");
  }
  const o = options;
  checkCount("maxBatchSize", o.maxBatchSize, 1, true);
  checkCount("maxDelayMs", o.maxDelayMs, 0, true);
  if (typeof o.batchHandler !== "function") {
    throw new InvalidOptionError("batchHandler", "must be a function (items) => results");
  }
  if (o.keyGenerator !== undefined && typeof o.keyGenerator !== "function") {
    throw new InvalidOptionError("keyGenerator", "must be a function (item) => key");
  }
  if (o.errorHandler !== undefined && typeof o.errorHandler !== "function") {
    throw new InvalidOptionError("errorHandler", "must be a function (error, items) => void");
  }
  checkCount("maxQueueSize", o.maxQueueSize, 1);
  checkCount("maxConcurrentBatches", o.maxConcurrentBatches, 1);
  checkCount("timeoutMs", o.timeoutMs, 1);
  if (o.jitterSeed !== undefined && (!Number.isSafeInteger(o.jitterSeed) || o.jitterSeed < 0)) {
    throw new InvalidOptionError("jitterSeed", `must be a non-negative integer, got ${String(o.jitterSeed)}`);
  }
  const retry = o.retry;
  if (retry !== undefined) {
    if (retry === null || typeof retry !== "object") {
      throw new InvalidOptionError("retry", "must be an object { attempts, backoffMs?, maxBackoffMs? }");
    }
    checkKnownKeys(retry, ["attempts", "backoffMs", "maxBackoffMs"], "retry.");
    checkCount("retry.attempts", retry.attempts, 0, true);
    checkCount("retry.backoffMs", retry.backoffMs, 0);
    checkCount("retry.maxBackoffMs", retry.maxBackoffMs, 0);
  }
  checkKnownKeys(o, [
    "maxBatchSize", "maxDelayMs", "batchHandler", "keyGenerator", "errorHandler", "maxQueueSize",
    "maxConcurrentBatches", "retry", "timeoutMs", "jitterSeed",
  ]);
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
  /** Live items by engine slot index. */
  readonly #slots = new SlotTable();
  /** Only items added with a signal: slot -> its abort wiring. */
  readonly #slotSignal = new Map<number, SignalWiring>();
  readonly #batches = new Map<number, BatchRecord>();
  /** Group keys interned to the u32 ids the engine groups by; released when a group empties. */
  readonly #groupOfKey = new Map<unknown, number>();
  readonly #keyOfGroup: unknown[] = [];
  readonly #freeGroups: number[] = [];
  // Adds of the current tick, handed to the engine in one call.
  /** item, resolve, reject per buffered add; reused across ticks so adds make no array garbage. */
  readonly #buf: unknown[] = new Array(3 * ADDS_PER_CALL).fill(undefined);
  #bufCount = 0;
  #bufGroups: number[] = [];
  #bufSignals: Map<number, SignalWiring> | undefined;
  /** Buffered adds whose signal aborted before they reached the engine. */
  #bufCancelled = 0;
  #zeroGroups = new Uint32Array(0);
  readonly #scratch = new Float64Array(SCRATCH_LENGTH);
  #flushQueued = false;
  readonly #timer = new DeadlineTimer(() => {
    this.#sendBuffered();
    this.#apply(this.#engine.tick(now(), this.#scratch));
  });
  #seq = 0;
  #flushWaiters: FlushWaiter[] = [];
  #closed = false;
  #drained: Promise<void> | undefined;
  #resolveDrained: (() => void) | undefined;
  /** One executor for every add's promise: no closure per item. */
  readonly #executor = (resolve: (value: R) => void, reject: Settle): void => {
    const at = 3 * this.#bufCount;
    this.#buf[at + 1] = resolve;
    this.#buf[at + 2] = reject;
  };

  constructor(options: RequestBatcherOptions<T, R>) {
    const engineOptions = validate(options);
    this.#options = options;
    const { NativeBatcher } = loadBackend();
    try {
      this.#engine = new NativeBatcher(engineOptions);
    } catch (error) {
      // The engine checks ranges the type checks above cannot (e.g. maxBackoffMs < backoffMs).
      throw engineOptionError(error);
    }
  }

  /** Queue one item; resolves with its result once its batch has run. */
  add(item: T, options?: AddOptions): Promise<R> {
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(new CancelledError(signal.reason));
    const keyGenerator = this.#options.keyGenerator;
    if (keyGenerator) {
      let group: number;
      try {
        group = this.#intern(keyGenerator(item));
      } catch (error) {
        return Promise.reject(error);
      }
      this.#bufGroups.push(group);
    }
    const index = this.#bufCount;
    this.#buf[3 * index] = item;
    const promise = new Promise<R>(this.#executor);
    this.#bufCount = index + 1;
    if (signal) {
      const wiring: SignalWiring = { signal, id: -1, index, onAbort: () => this.#cancel(wiring) };
      (this.#bufSignals ??= new Map()).set(index, wiring);
      signal.addEventListener("abort", wiring.onAbort, { once: true });
    }
    if (index + 1 >= ADDS_PER_CALL) this.#sendBuffered(true);
    else if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.#sendBuffered());
    }
    return promise;
  }

  /** Cut every pending group now; resolves once every item added before the call has settled. */
  flush(): Promise<void> {
    this.#sendBuffered();
    const beforeSeq = this.#seq;
    this.#apply(this.#engine.flush(now(), this.#scratch));
    let remaining = 0;
    for (let slot = 0; slot < this.#slots.span; slot++) {
      if (this.#slots.id(slot) >= 0 && (this.#slots.get(slot, SEQ) as number) < beforeSeq) remaining++;
    }
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
      this.#apply(this.#engine.close(now(), options?.abort === true, this.#scratch));
    } else if (options?.abort) {
      this.#apply(this.#engine.close(now(), true, this.#scratch));
    }
    return this.#drained;
  }

  /** True once `close()` has been called. */
  get closed(): boolean {
    return this.#closed;
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

  #groupsOfBuffer(count: number): Uint32Array {
    if (this.#options.keyGenerator) return Uint32Array.from(this.#bufGroups);
    if (this.#zeroGroups.length < count) this.#zeroGroups = new Uint32Array(Math.max(count, 1024));
    return this.#zeroGroups.subarray(0, count);
  }

  /** Hand this tick's adds to the engine. `moreFollow`: the buffer filled up mid-tick. */
  #sendBuffered(moreFollow = false): void {
    if (!moreFollow) this.#flushQueued = false;
    if (this.#bufCancelled > 0) this.#dropCancelledAdds();
    const count = this.#bufCount;
    if (count === 0) return;
    const buf = this.#buf;
    const signals = this.#bufSignals;
    const length = this.#engine.add(now(), this.#groupsOfBuffer(count), moreFollow, this.#scratch);
    const out = this.#outcome(length);
    this.#bufGroups = [];
    this.#bufSignals = undefined;
    for (let i = 0; i < count; i++) {
      const id = out[2 + i]!;
      if (id >= 0) {
        this.#slots.occupy(slotOf(id), id, buf[3 * i], buf[3 * i + 1], buf[3 * i + 2], this.#seq++);
      } else {
        this.#seq++;
        (buf[3 * i + 2] as Settle)(id === ADD_QUEUE_FULL ? new QueueFullError(this.#options.maxQueueSize) : new ClosedError()) // else ADD_CLOSED;
      }
      const wiring = signals?.get(i);
      if (wiring) {
        wiring.id = id;
        if (id >= 0) this.#slotSignal.set(slotOf(id), wiring);
        else wiring.signal.removeEventListener("abort", wiring.onAbort);
      }
    }
    buf.fill(undefined, 0, 3 * count); // release the references; the slots hold them now
    this.#bufCount = 0;
    this.#applyOutcome(out, length, 2 + count);
  }

  #cancel(wiring: SignalWiring): void {
    if (wiring.id === -1) {
      // Still in this tick's buffer: it never reaches the engine (nor a handler).
      const reject = this.#buf[3 * wiring.index + 2] as Settle;
      this.#buf[3 * wiring.index] = CANCELLED;
      this.#bufCancelled++;
      reject(new CancelledError(wiring.signal.reason));
      return;
    }
    if (wiring.id >= 0) {
      this.#sendBuffered(true); // the engine must know of every add before it may release a group
      this.#apply(this.#engine.cancel(now(), wiring.id, this.#scratch));
    }
  }

  /** Compact the buffer around adds cancelled before they were sent. */
  #dropCancelledAdds(): void {
    const buf = this.#buf;
    const signals = this.#bufSignals;
    const keyed = this.#options.keyGenerator !== undefined;
    let kept = 0;
    const keptSignals = new Map<number, SignalWiring>();
    for (let i = 0; i < this.#bufCount; i++) {
      if (buf[3 * i] === CANCELLED) continue;
      buf[3 * kept] = buf[3 * i];
      buf[3 * kept + 1] = buf[3 * i + 1];
      buf[3 * kept + 2] = buf[3 * i + 2];
      if (keyed) this.#bufGroups[kept] = this.#bufGroups[i]!;
      const wiring = signals?.get(i);
      if (wiring) {
        wiring.index = kept;
        keptSignals.set(kept, wiring);
      }
      kept++;
    }
    buf.fill(undefined, 3 * kept, 3 * this.#bufCount);
    if (keyed) this.#bufGroups.length = kept;
    this.#bufCount = kept;
    this.#bufSignals = keptSignals.size > 0 ? keptSignals : undefined;
    this.#bufCancelled = 0;
  }

  #outcome(length: number): Float64Array {
    return length <= this.#scratch.length ? this.#scratch : this.#engine.takeOverflow();
  }

  /** Carry out the actions of the engine call that returned `length`. */
  #apply(length: number): void {
    const out = this.#outcome(length);
    this.#applyOutcome(out, length, 2 + out[1]!);
  }

  /** `start` skips the header and add results. User code (handlers, errorHandler) runs only
   * after the loop: it may call back into the engine, which reuses the scratch buffer. */
  #applyOutcome(out: Float64Array, length: number, start: number): void {
    let deferred: (() => void)[] | undefined;
    let i = start;
    while (i < length) {
      const tag = out[i]!;
      if (tag === RESOLVE) {
        const slot = this.#take(out[i + 1]!);
        if (slot >= 0) this.#settle(slot, true, this.#slots.get(slot, RESULT));
        i += 2;
      } else if (tag === REJECT) {
        const report = this.#reject(out[i + 1]!, out[i + 2]!, out[i + 3]!);
        if (report) (deferred ??= []).push(report);
        i += 5;
      } else if (tag === RUN_BATCH) {
        const batch = out[i + 1]!;
        const count = out[i + 4]!;
        const ids = new Array<number>(count);
        for (let k = 0; k < count; k++) ids[k] = out[i + 5 + k]!;
        (deferred ??= []).push(() => this.#run(batch, ids));
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
    if (deferred) for (const task of deferred) task();
  }

  /** The slot of a live id, or -1. */
  #take(id: number): number {
    const slot = slotOf(id);
    return this.#slots.id(slot) === id ? slot : -1;
  }

  /** Settles the item; returns the errorHandler call to make once, if this ends a batch. */
  #reject(id: number, reason: number, batch: number): (() => void) | undefined {
    const slot = this.#take(id);
    if (slot < 0) return undefined;
    let report: (() => void) | undefined;
    let error: unknown;
    if (reason === REASON_ITEM_FAILED) error = this.#slots.get(slot, RESULT);
    else if (reason === REASON_TIMED_OUT) error = new TimeoutError(this.#options.timeoutMs!);
    else if (reason === REASON_CANCELLED) error = new CancelledError(this.#slotSignal.get(slot)?.signal.reason);
    else if (reason === REASON_ABORTED) error = new ClosedError("the batcher was closed with abort before this item settled");
    else if (reason === REASON_BATCH_FAILED) {
      const failed = this.#batches.get(batch);
      error = failed?.error;
      if (failed && !failed.reported) {
        // The batch's other items are rejected by the same outcome: forget the batch after.
        failed.reported = true;
        const errorReport = this.#batchErrorReport(failed);
        report = () => {
          this.#batches.delete(batch);
          errorReport?.();
        };
      }
    }
    this.#settle(slot, false, error);
    return report;
  }

  /** Collects the failed batch's items now (before they are settled and forgotten). */
  #batchErrorReport(failed: BatchRecord): (() => void) | undefined {
    const errorHandler = this.#options.errorHandler;
    if (!errorHandler) return undefined;
    const items: T[] = [];
    for (const id of failed.ids) {
      const slot = this.#take(id);
      if (slot >= 0) items.push(this.#slots.get(slot, ITEM) as T);
    }
    return () => {
      try {
        errorHandler(failed.error, items);
      } catch {
        // A throwing errorHandler must not break the settlement of the other items.
      }
    };
  }

  #settle(slot: number, ok: boolean, value: unknown): void {
    const settle = this.#slots.get(slot, ok ? SLOT_RESOLVE : SLOT_REJECT) as Settle;
    const seq = this.#slots.get(slot, SEQ) as number;
    this.#slots.free(slot);
    if (this.#slotSignal.size > 0) {
      const wiring = this.#slotSignal.get(slot);
      if (wiring) {
        this.#slotSignal.delete(slot);
        wiring.signal.removeEventListener("abort", wiring.onAbort);
      }
    }
    settle(value);
    if (this.#flushWaiters.length > 0) this.#noteSettled(seq);
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

  #run(batch: number, ids: number[]): void {
    const entry = this.#batches.get(batch);
    if (entry) entry.ids = ids;
    else this.#batches.set(batch, { ids, error: undefined, reported: false });
    const items = new Array<T>(ids.length);
    for (let k = 0; k < ids.length; k++) items[k] = this.#slots.get(slotOf(ids[k]!), ITEM) as T;
    let pending: Promise<ReadonlyArray<R | Error>> | ReadonlyArray<R | Error>;
    try {
      pending = this.#options.batchHandler(items);
    } catch (error) {
      queueMicrotask(() => this.#failed(batch, error, true));
      return;
    }
    Promise.resolve(pending).then(
      (results) => this.#completed(batch, ids, results),
      (error) => this.#failed(batch, error, true),
    );
  }

  #completed(batch: number, ids: number[], results: unknown): void {
    if (!Array.isArray(results) || results.length !== ids.length) {
      this.#failed(batch, new BatchResultError(ids.length, results), false);
      return;
    }
    let failed: number[] | undefined;
    for (let k = 0; k < ids.length; k++) {
      const result: unknown = results[k];
      const slot = this.#take(ids[k]!);
      if (slot >= 0) this.#slots.set(slot, RESULT, result); // a settled item's late result is dropped
      if (result instanceof Error) (failed ??= []).push(k);
    }
    this.#batches.delete(batch);
    // The engine must know of every add before it may release a group; the call that follows
    // fires due windows itself.
    this.#sendBuffered(true);
    this.#apply(this.#engine.completed(now(), batch, failed ? Uint32Array.from(failed) : EMPTY, this.#scratch));
  }

  #failed(batch: number, error: unknown, retryable: boolean): void {
    const entry = this.#batches.get(batch);
    if (entry) entry.error = error;
    this.#sendBuffered(true);
    this.#apply(this.#engine.failed(now(), batch, retryable, this.#scratch));
  }

  #schedule(deadline: number): void {
    this.#timer.set(deadline < 0 ? null : deadline);
  }

}
