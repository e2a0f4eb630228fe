// RequestBatcher: the Node host of the core's generic batching engine.
// The engine decides when to cut, retry, time out and settle; this file only keeps payloads,
// runs the user's handler and turns the engine's actions into promise settlements.
import {
  ADD_QUEUE_FULL,
  type BatcherEngine,
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
} from "./engine.js";
import { coreAnswer } from "./core-errors.js";
import { BatchResultError, CancelledError, ClosedError, QueueFullError, TimeoutError } from "./errors.js";
import type { HostBatcherOptions } from "./generated/core.js";
import { DeadlineTimer, now, optionsJson } from "./host-util.js";
import { BLOCK, ItemStore, type Settle } from "./slots.js";

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
  /** The attempt's items as runs of host ids: first, count, first, count, … in handler order. */
  runs: number[];
  count: number;
  error: unknown;
  reported: boolean;
}

/** A batch whose handler returned, waiting for the turn's one `completedMany` call. */
interface Completion {
  batch: number;
  runs: number[];
  results: readonly unknown[];
  /** Positions whose result is an `Error`. */
  failed: number[] | undefined;
}

/** One id run of a completed batch: host ids `first .. first + count` have their results at
 * `results[offset ..]`. */
interface ResultRun {
  first: number;
  count: number;
  results: readonly unknown[];
  offset: number;
}

interface FlushWaiter {
  /** Items with a lower host id count. */
  before: number;
  remaining: number;
  resolve: () => void;
}

interface SignalWiring {
  signal: AbortSignal;
  /** Host id. */
  id: number;
  /** Engine id (what `cancel` takes); -1 while buffered, < -1 if the engine refused the add. */
  engineId: number;
  onAbort: () => void;
}

/** Adds handed to the engine per call at most, so one call's outcome fits the scratch buffer. */
const ADDS_PER_CALL = 4096;
const SCRATCH_LENGTH = 4 * ADDS_PER_CALL;
const EMPTY = new Uint32Array(0);
/** Header of an outcome: deadline, number of adds, number of refused adds. */
const HEADER = 3;

export class RequestBatcher<T, R> {
  readonly #options: RequestBatcherOptions<T, R>;
  readonly #engine: BatcherEngine;
  /** Every item by host id, from its add until it settles. */
  readonly #store = new ItemStore();
  /** Only items added with a signal: host id -> its abort wiring. */
  readonly #signals = new Map<number, SignalWiring>();
  readonly #batches = new Map<number, BatchRecord>();
  /** Group keys interned to the u32 ids the engine groups by; released when a group empties. */
  readonly #groupOfKey = new Map<unknown, number>();
  readonly #keyOfGroup: unknown[] = [];
  readonly #freeGroups: number[] = [];
  // Adds of the current tick (host ids #sendFrom .. store.nextId), handed to the engine in one call.
  #sendFrom = 0;
  #bufGroups: number[] = [];
  /** Wirings of buffered adds with a signal. */
  #bufSignals: SignalWiring[] = [];
  /** Host ids of buffered adds whose signal aborted before they reached the engine. */
  #bufCancelled: number[] = [];
  #zeroGroups = new Uint32Array(0);
  readonly #scratch = new Float64Array(SCRATCH_LENGTH);
  #flushQueued = false;
  readonly #sendQueued = (): void => this.#sendBuffered();
  readonly #timer = new DeadlineTimer(() => {
    this.#sendBuffered();
    this.#sendCompletions();
    this.#apply(this.#engine.tick(now(), this.#scratch));
  });
  #flushWaiters: FlushWaiter[] = [];
  /** Handlers that returned since the last `completedMany` call, in the order they returned. */
  #completions: Completion[] = [];
  readonly #sendCompletionsQueued = (): void => this.#sendCompletions();
  /** While a `completedMany` outcome is carried out: the completed batches' id runs, sorted by
   * first id. */
  #completing: ResultRun[] | undefined;
  #closed = false;
  #drained: Promise<void> | undefined;
  #resolveDrained: (() => void) | undefined;

  constructor(options: RequestBatcherOptions<T, R>) {
    // The core holds every option rule: it answers with the engine's options or the error,
    // which is thrown as an InvalidOptionError naming the option.
    const backend = loadBackend();
    const engineOptions = coreAnswer<{ options: HostBatcherOptions }>(backend.checkBatcherOptions(optionsJson(options))).options;
    this.#options = options;
    this.#engine = new backend.NativeBatcher({ ...engineOptions, hostItemIds: true });
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
    const store = this.#store;
    const id = store.nextId;
    const promise = store.push(item) as Promise<R>;
    if (signal) {
      const wiring: SignalWiring = { signal, id, engineId: -1, onAbort: () => this.#cancel(wiring) };
      this.#signals.set(id, wiring);
      this.#bufSignals.push(wiring);
      signal.addEventListener("abort", wiring.onAbort, { once: true });
    }
    if (id + 1 - this.#sendFrom >= ADDS_PER_CALL) this.#sendBuffered(true);
    else if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(this.#sendQueued);
    }
    return promise;
  }

  /** Cut every pending group now; resolves once every item added before the call has settled. */
  flush(): Promise<void> {
    this.#sendBuffered();
    this.#sendCompletions();
    const before = this.#store.nextId;
    this.#apply(this.#engine.flush(now(), this.#scratch));
    let remaining = 0;
    for (const block of this.#store.blocks()) {
      const end = Math.min(block.filled, before - block.base);
      for (let at = 0; at < end; at++) if (block.settlers[at] !== undefined) remaining++;
    }
    if (remaining === 0) return Promise.resolve();
    return new Promise((resolve) => this.#flushWaiters.push({ before, remaining, resolve }));
  }

  /** Counters (pending, processing, processed, failed, batches, …) and the queue's statistics (queueSize, maxQueueSize, isQueueFull, isQueueEmpty). */
  getStatus(): RequestBatcherStatus {
    this.#sendBuffered();
    this.#sendCompletions();
    return this.#engine.status();
  }

  /** Refuse new items and wait for every queued one (`abort: true` rejects them instead). */
  close(options?: { abort?: boolean }): Promise<void> {
    this.#sendBuffered();
    this.#sendCompletions();
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

  #zeros(count: number): Uint32Array {
    if (this.#zeroGroups.length < count) this.#zeroGroups = new Uint32Array(Math.max(count, 1024));
    return this.#zeroGroups.subarray(0, count);
  }

  /** Hand this tick's adds to the engine. `moreFollow`: the buffer filled up mid-tick. */
  #sendBuffered(moreFollow = false): void {
    if (!moreFollow) this.#flushQueued = false;
    const from = this.#sendFrom;
    const to = this.#store.nextId;
    if (from === to) return;
    this.#sendFrom = to;
    const groups = this.#options.keyGenerator ? Uint32Array.from(this.#bufGroups) : this.#zeros(to - from);
    this.#bufGroups = [];
    const signals = this.#bufSignals;
    if (signals.length > 0) this.#bufSignals = [];
    const cancelled = this.#bufCancelled;
    let deferred: (() => void)[] | undefined;
    if (cancelled.length === 0) {
      deferred = this.#sendRange(from, to, groups.subarray(0, to - from), moreFollow, signals, deferred);
    } else {
      // Adds cancelled while buffered never reach the engine: send the ranges around them.
      this.#bufCancelled = [];
      cancelled.sort((a, b) => a - b);
      let start = from;
      for (let k = 0; k <= cancelled.length; k++) {
        const end = k < cancelled.length ? cancelled[k]! : to;
        if (end > start) {
          const more = moreFollow || k < cancelled.length;
          deferred = this.#sendRange(start, end, groups.subarray(start - from, end - from), more, signals, deferred);
        }
        start = end + 1;
      }
    }
    if (deferred) for (const task of deferred) task();
  }

  #sendRange(
    from: number,
    to: number,
    groups: Uint32Array,
    moreFollow: boolean,
    signals: SignalWiring[],
    deferred: (() => void)[] | undefined,
  ): (() => void)[] | undefined {
    const length = this.#engine.addWithIds(now(), groups, from, moreFollow, this.#scratch);
    const out = this.#outcome(length);
    const count = out[1]!;
    if (out[2]! > 0) {
      for (let i = 0; i < count; i++) {
        const result = out[HEADER + i]!;
        if (result < 0) {
          const error = result === ADD_QUEUE_FULL ? new QueueFullError(this.#options.maxQueueSize) : new ClosedError(); // else ADD_CLOSED
          this.#settleOne(from + i, false, error);
        }
      }
    }
    for (const wiring of signals) {
      if (wiring.id < from || wiring.id >= to) continue;
      const engineId = out[HEADER + wiring.id - from]!;
      wiring.engineId = engineId;
      if (engineId < 0) this.#unwire(wiring); // refused (and already settled above)
    }
    return this.#applyOutcome(out, length, HEADER + count, deferred);
  }

  #cancel(wiring: SignalWiring): void {
    if (wiring.engineId === -1) {
      // Still in this tick's buffer: it never reaches the engine (nor a handler).
      this.#bufCancelled.push(wiring.id);
      this.#settleOne(wiring.id, false, new CancelledError(wiring.signal.reason));
      return;
    }
    if (wiring.engineId >= 0) {
      this.#sendBuffered(true); // the engine must know of every add before it may release a group
      this.#sendCompletions(); // a result that has come back wins over a later cancel
      this.#apply(this.#engine.cancel(now(), wiring.engineId, this.#scratch));
    }
  }

  #unwire(wiring: SignalWiring): void {
    this.#signals.delete(wiring.id);
    wiring.signal.removeEventListener("abort", wiring.onAbort);
  }

  #outcome(length: number): Float64Array {
    return length <= this.#scratch.length ? this.#scratch : this.#engine.takeOverflow();
  }

  /** Carry out the actions of the engine call that returned `length`, then the user code they call for. */
  #apply(length: number): void {
    const out = this.#outcome(length);
    const deferred = this.#applyOutcome(out, length, HEADER + out[1]!, undefined);
    if (deferred) for (const task of deferred) task();
  }

  /** `start` skips the header and add results. User code (handlers, errorHandler) is returned
   * in `deferred`, to run after the loop: it may call back into the engine, which reuses the
   * scratch buffer. */
  #applyOutcome(out: Float64Array, length: number, start: number, deferred: (() => void)[] | undefined): (() => void)[] | undefined {
    let i = start;
    while (i < length) {
      const tag = out[i]!;
      if (tag === RESOLVE) {
        this.#resolveRun(out[i + 1]!, out[i + 2]!);
        i += 3;
      } else if (tag === RUN_BATCH) {
        const batch = out[i + 1]!;
        const count = out[i + 4]!;
        const nRuns = out[i + 5]!;
        const runs = new Array<number>(2 * nRuns);
        for (let k = 0; k < 2 * nRuns; k++) runs[k] = out[i + 6 + k]!;
        const items = this.#itemsOf(runs, count);
        (deferred ??= []).push(() => this.#run(batch, runs, count, items));
        i += 6 + 2 * nRuns;
      } else if (tag === REJECT) {
        const report = this.#reject(out[i + 1]!, out[i + 2]!, out[i + 3]!);
        if (report) (deferred ??= []).push(report);
        i += 5;
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
    return deferred;
  }

  /** The items of a batch's runs, in order, as a new array for the handler. */
  #itemsOf(runs: number[], count: number): T[] {
    if (runs.length === 2) {
      const first = runs[0]!;
      const block = this.#store.block(first)!;
      const at = first - block.base;
      if (at + count <= BLOCK) return block.items.slice(at, at + count) as T[];
    }
    const items = new Array<T>(count);
    let k = 0;
    for (let r = 0; r < runs.length; r += 2) {
      let id = runs[r]!;
      const end = id + runs[r + 1]!;
      while (id < end) {
        const block = this.#store.block(id)!;
        const at = id - block.base;
        const stop = Math.min(BLOCK, at + end - id);
        for (let p = at; p < stop; p++) items[k++] = block.items[p] as T;
        id += stop - at;
      }
    }
    return items;
  }

  /** Resolve the items `first .. first + count` with the results their batch returned. */
  #resolveRun(first: number, count: number): void {
    const wired = this.#signals.size > 0;
    const end = first + count;
    // A resolve run may span several completed batches' runs (consecutive ids): take it one
    // result run at a time.
    for (let id = first; id < end; ) {
      const run = this.#resultRun(id);
      const stop = Math.min(end, run.first + run.count);
      this.#resolveStretch(id, stop, run.results, run.offset + id - run.first);
      id = stop;
    }
    if (wired) {
      for (let k = first; k < end; k++) {
        const wiring = this.#signals.get(k);
        if (wiring) this.#unwire(wiring);
      }
    }
    if (this.#flushWaiters.length > 0) this.#noteSettled(first, count);
  }

  /** Resolve the live items `id .. end` with `results[k ..]`. */
  #resolveStretch(id: number, end: number, results: readonly unknown[], k: number): void {
    const store = this.#store;
    while (id < end) {
      const block = store.block(id)!;
      const at = id - block.base;
      const stop = Math.min(BLOCK, at + end - id);
      const { items, settlers } = block;
      let settled = 0;
      for (let p = at; p < stop; p++, k++) {
        const settle = settlers[p];
        if (settle === undefined) continue; // never happens: the engine resolves live items only
        items[p] = undefined;
        settlers[p] = undefined;
        settled++;
        settle.resolve(results[k]);
      }
      store.settled(block, settled);
      id += stop - at;
    }
  }

  /** Settle one live item (no-op if it has settled already). */
  #settleOne(id: number, ok: boolean, value: unknown): void {
    const block = this.#store.block(id);
    if (block === undefined) return;
    const at = id - block.base;
    const settlers = block.settlers[at];
    if (settlers === undefined) return;
    block.items[at] = undefined;
    block.settlers[at] = undefined;
    this.#store.settled(block, 1);
    if (this.#signals.size > 0) {
      const wiring = this.#signals.get(id);
      if (wiring) this.#unwire(wiring);
    }
    if (ok) settlers.resolve(value);
    else settlers.reject(value);
    if (this.#flushWaiters.length > 0) this.#noteSettled(id, 1);
  }

  /** The item (or, once its batch returned, its result) of a live id; `live` false if settled. */
  #itemOf(id: number): { live: boolean; value: unknown } {
    const block = this.#store.block(id);
    if (block === undefined) return { live: false, value: undefined };
    const at = id - block.base;
    return { live: block.settlers[at] !== undefined, value: block.items[at] };
  }

  /** Settles the item; returns the errorHandler call to make once, if this ends a batch. */
  #reject(id: number, reason: number, batch: number): (() => void) | undefined {
    const item = this.#itemOf(id);
    if (!item.live) return undefined;
    let report: (() => void) | undefined;
    let error: unknown;
    if (reason === REASON_ITEM_FAILED) {
      const run = this.#resultRun(id);
      error = run.results[run.offset + id - run.first];
    }
    else if (reason === REASON_TIMED_OUT) error = new TimeoutError(this.#options.timeoutMs!);
    else if (reason === REASON_CANCELLED) error = new CancelledError(this.#signals.get(id)?.signal.reason);
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
    this.#settleOne(id, false, error);
    return report;
  }

  /** Collects the failed batch's items now (before they are settled and forgotten). */
  #batchErrorReport(failed: BatchRecord): (() => void) | undefined {
    const errorHandler = this.#options.errorHandler;
    if (!errorHandler) return undefined;
    const items: T[] = [];
    const runs = failed.runs;
    for (let r = 0; r < runs.length; r += 2) {
      for (let id = runs[r]!, end = id + runs[r + 1]!; id < end; id++) {
        const item = this.#itemOf(id);
        if (item.live) items.push(item.value as T);
      }
    }
    return () => {
      try {
        errorHandler(failed.error, items);
      } catch {
        // A throwing errorHandler must not break the settlement of the other items.
      }
    };
  }

  /** Items with host ids `first .. first + count` have settled: count them for flush(). */
  #noteSettled(first: number, count: number): void {
    this.#flushWaiters = this.#flushWaiters.filter((waiter) => {
      const before = Math.max(0, Math.min(first + count, waiter.before) - first);
      if (before > 0 && (waiter.remaining -= before) <= 0) {
        waiter.resolve();
        return false;
      }
      return true;
    });
  }

  #run(batch: number, runs: number[], count: number, items: T[]): void {
    const entry = this.#batches.get(batch);
    if (entry) {
      entry.runs = runs;
      entry.count = count;
    } else this.#batches.set(batch, { runs, count, error: undefined, reported: false });
    let pending: Promise<ReadonlyArray<R | Error>> | ReadonlyArray<R | Error>;
    try {
      pending = this.#options.batchHandler(items);
    } catch (error) {
      queueMicrotask(() => this.#failed(batch, error, true));
      return;
    }
    Promise.resolve(pending).then(
      (results) => this.#completed(batch, runs, count, results),
      (error) => this.#failed(batch, error, true),
    );
  }

  #completed(batch: number, runs: number[], count: number, results: unknown): void {
    if (!Array.isArray(results) || results.length !== count) {
      this.#failed(batch, new BatchResultError(count, results), false);
      return;
    }
    let failed: number[] | undefined;
    for (let k = 0; k < count; k++) if (results[k] instanceof Error) (failed ??= []).push(k);
    this.#batches.delete(batch);
    // Handlers that return in the same turn (a wave of promise reactions) are handed to the
    // engine in one call, made from a microtask queued behind them; anything else that talks to
    // the engine first sends what is waiting, so the engine sees events in the order they came.
    if (this.#completions.push({ batch, runs, results, failed }) === 1) queueMicrotask(this.#sendCompletionsQueued);
  }

  /** Tell the engine about every handler that returned since the last call, in one call. */
  #sendCompletions(): void {
    const completions = this.#completions;
    if (completions.length === 0) return;
    this.#completions = [];
    // The engine must know of every add before it may release a group; the call that follows
    // fires due windows itself.
    this.#sendBuffered(true);
    const batches = new Float64Array(completions.length);
    const failedCounts = new Uint32Array(completions.length);
    const failed: number[] = [];
    const resultRuns: ResultRun[] = [];
    for (let c = 0; c < completions.length; c++) {
      const { batch, runs, results, failed: positions } = completions[c]!;
      batches[c] = batch;
      if (positions) {
        failedCounts[c] = positions.length;
        for (const position of positions) failed.push(position);
      }
      for (let r = 0, offset = 0; r < runs.length; r += 2) {
        resultRuns.push({ first: runs[r]!, count: runs[r + 1]!, results, offset });
        offset += runs[r + 1]!;
      }
    }
    resultRuns.sort((a, b) => a.first - b.first);
    // The engine settles these batches' items within this call's outcome (resolves, and rejects
    // for failed positions), so results are read from the handlers' arrays, never copied.
    this.#completing = resultRuns;
    let deferred: (() => void)[] | undefined;
    try {
      const length = this.#engine.completedMany(
        now(),
        batches,
        failedCounts,
        failed.length > 0 ? Uint32Array.from(failed) : EMPTY,
        this.#scratch,
      );
      const out = this.#outcome(length);
      deferred = this.#applyOutcome(out, length, HEADER + out[1]!, undefined);
    } finally {
      this.#completing = undefined;
    }
    if (deferred) for (const task of deferred) task();
  }

  /** The completed run holding host id `id`: a binary search, once per run a resolve covers. */
  #resultRun(id: number): ResultRun {
    const runs = this.#completing!;
    let low = 0;
    let high = runs.length - 1;
    while (low <= high) {
      const mid = (low + high) >> 1;
      const run = runs[mid]!;
      if (id < run.first) high = mid - 1;
      else if (id >= run.first + run.count) low = mid + 1;
      else return run;
    }
    throw new Error(`batchling: host id ${id} is in no batch being completed`);
  }

  #failed(batch: number, error: unknown, retryable: boolean): void {
    const entry = this.#batches.get(batch);
    if (entry) entry.error = error;
    this.#sendBuffered(true);
    this.#sendCompletions(); // handlers that returned before this one failed go first
    this.#apply(this.#engine.failed(now(), batch, retryable, this.#scratch));
  }

  #schedule(deadline: number): void {
    this.#timer.set(deadline < 0 ? null : deadline);
  }
}
