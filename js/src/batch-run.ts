// A started (or resumed) Batch run: feeds its jobs to the batching engine as their batches
// form, writes results as they arrive, and reports progress.
import { randomInt } from "node:crypto";
import { closeSync, mkdirSync, openSync, renameSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { once } from "node:events";
import { join, resolve as resolvePath } from "node:path";
import { BatchifyHost, newEngine, type BatchlingEvent, type JobAnswer, type Platform } from "./batchify-host.js";
import { loadInterceptorBackend, type InterceptorEngine } from "./engine.js";
import { BatchlingError } from "./errors.js";
import type { JobSource } from "./generated/core.js";
import { RESULTS_LOG, StateFileJournal, exportResults, forEachLineSync, readLines, resultFileName } from "./batch-files.js";
import type { BatchEvent, BatchOptions, BatchStats, JobResult, Observers, PreparedJob, RunJobs } from "./batch-types.js";


/** A job's state in a run: one byte per job. */
const PENDING = 0;
const OK = 1;
const FAILED = 2;
/** Kept from running by the cost limit: failed, but with no result on disk (a later run runs it). */
const NOT_RUN = 3;

/** A job handed to the engine, until it is answered. */
interface InFlightJob {
  index: number;
  id: string;
  validate?: (value: unknown) => string | null;
}

/** A started (or resumed) run. It holds one status byte per job; results go to
 * `resultsDir/results.jsonl` as they arrive and are read back from there. */
export class BatchRun {
  readonly #options: BatchOptions;
  readonly #jobs: RunJobs;
  readonly #status: Uint8Array;
  readonly #costLimitUsd: number | null;
  readonly #observers: Observers;
  readonly #done: Promise<void>;
  readonly #startedAt = Date.now();
  readonly #sources: JobSource[];
  readonly #resultsLog: string;
  /** Why each not-run job did not run (the cost limit's refusal), by position. */
  readonly #notRun = new Map<number, string>();
  #host: BatchifyHost | undefined;
  #completed = 0;
  #failed = 0;
  #costUsd = 0;
  #batchesSubmitted = 0;
  #batchesCompleted = 0;
  /** Each live batch's last ETA (the core's, from the provider's counts) and when it came. */
  readonly #etas = new Map<string, { etaMs: number; at: number }>();
  #resubmitted = 0;
  #estimatedUsd = 0;
  /** The engine, once started: its report counts the requests waiting for headroom. */
  #engine: InterceptorEngine | null = null;
  #stopping = false;
  #signalHandlers: (() => void) | undefined;

  constructor(options: BatchOptions, jobs: RunJobs, costLimitUsd: number | null, observers: Observers, sources: JobSource[]) {
    this.#options = options;
    this.#jobs = jobs;
    this.#status = new Uint8Array(jobs.count);
    this.#sources = sources;
    this.#costLimitUsd = costLimitUsd;
    this.#observers = observers;
    mkdirSync(options.resultsDir, { recursive: true });
    this.#resultsLog = join(options.resultsDir, RESULTS_LOG);
    this.#loadExistingResults();
    // The starting statistics, once the caller holds the run.
    queueMicrotask(() => this.#progress());
    this.#done = this.#start();
  }

  get isComplete(): boolean {
    return this.#completed + this.#failed === this.#status.length;
  }

  /** The run's statistics (the ones `onProgress` receives); `print`: also one line on stdout. */
  status(options?: { print?: boolean }): BatchStats {
    const total = this.#status.length;
    const stats: BatchStats = {
      total,
      completed: this.#completed,
      failed: this.#failed,
      notRun: this.#notRun.size,
      pending: total - this.#completed - this.#failed,
      waitingForHeadroom: this.#waitingForHeadroom(),
      batches: this.#batchesSubmitted,
      batchesCompleted: this.#batchesCompleted,
      resubmitted: this.#resubmitted,
      costUsd: this.#costUsd,
      estimatedCostUsd: this.#estimatedUsd,
      costLimitUsd: this.#costLimitUsd,
      isComplete: this.isComplete,
      elapsedMs: Date.now() - this.#startedAt,
      etaMs: this.#etaMs(),
    };
    if (options?.print) {
      const limit = stats.costLimitUsd === null ? "" : ` / limit $${stats.costLimitUsd.toFixed(4)}`;
      process.stdout.write(
        `jobs ${stats.total}: ${stats.completed} completed, ${stats.failed} failed (${stats.notRun} not run: cost limit), ${stats.pending} pending` +
          `${stats.waitingForHeadroom > 0 ? ` (${stats.waitingForHeadroom} waiting for headroom under an enqueued-token limit)` : ""}; ` +
          `batches ${stats.batches} (${stats.batchesCompleted} ended); cost $${stats.costUsd.toFixed(4)} actual, from the reported usage ` +
          `(est. $${stats.estimatedCostUsd.toFixed(4)}, an upper bound${stats.estimatedCostUsd > 0 && stats.isComplete ? `: actual ${((100 * stats.costUsd) / stats.estimatedCostUsd).toFixed(0)}% of it` : ""}${limit})\n`,
      );
    }
    return stats;
  }

  #waitingForHeadroom(): number {
    if (this.#engine === null) return 0;
    const queues = JSON.parse(this.#engine.report()) as Array<{ waitingForHeadroom: number }>;
    return queues.reduce((sum, q) => sum + q.waitingForHeadroom, 0);
  }

  /** Results by job id (so far, or all once complete), read from `results.jsonl` now. For a run
   * too large for one object, `iterResults()`. */
  results(): Record<string, JobResult> {
    const results: Record<string, JobResult> = {};
    forEachLineSync(this.#resultsLog, (text) => {
      const result = this.#ownResult(text);
      if (result !== null && !(result.jobId in results)) results[result.jobId] = result;
    });
    for (const [index, error] of this.#notRun) results[this.#jobs.id(index)] = emptyResult(this.#jobs.id(index), error);
    return results;
  }

  /** Every result so far (each job once), streamed from `results.jsonl`, then the jobs the cost
   * limit kept from running. */
  async *iterResults(): AsyncGenerator<JobResult> {
    const seen = new Uint8Array(this.#status.length);
    for await (const text of readLines(this.#resultsLog)) {
      const result = this.#ownResult(text);
      if (result === null) continue;
      const index = this.#jobs.indexOf(result.jobId)!;
      if (seen[index]) continue;
      seen[index] = 1;
      yield result;
    }
    for (const [index, error] of this.#notRun) yield emptyResult(this.#jobs.id(index), error);
  }

  /** A line of `results.jsonl` as a result of this run's jobs; null: another job's, or torn. */
  #ownResult(text: string): JobResult | null {
    let result: JobResult;
    try {
      result = JSON.parse(text) as JobResult;
    } catch {
      return null;
    }
    const index = this.#jobs.indexOf(result?.jobId);
    return index !== undefined && index < this.#status.length ? result : null;
  }

  wait(): Promise<void> {
    return this.#done;
  }

  /** Stop submitting; `waitForActive`: wait for the batches already submitted, else return now
   * (the state file lets a later run resume them). */
  async shutdown(options?: { waitForActive?: boolean }): Promise<void> {
    this.#stopping = true;
    if (options?.waitForActive) await this.#host?.close();
  }

  /** Export the results as JSON or CSV text. */
  export(format: "json" | "csv"): string {
    return exportResults(Object.values(this.results()), format);
  }

  /** The results a previous run left in `results.jsonl` count as done. A torn last line (a crash
   * while it was written) is cut off, with a warning, so that the next result starts a line. */
  #loadExistingResults(): void {
    const torn = forEachLineSync(this.#resultsLog, (text, lineNo) => {
      let result: { jobId?: unknown; ok?: unknown; costUsd?: unknown };
      try {
        result = JSON.parse(text) as typeof result;
      } catch (error) {
        throw new BatchlingError("ERR_BATCHLING_INVALID_RESULT", `${this.#resultsLog} line ${lineNo} is not JSON: ${(error as Error).message}`);
      }
      const index = this.#jobs.indexOf(result?.jobId);
      if (index === undefined || index >= this.#status.length || this.#status[index] !== PENDING) return;
      this.#record(index, result.ok === true, typeof result.costUsd === "number" ? result.costUsd : 0);
    });
    if (torn !== null) {
      process.emitWarning(`${this.#resultsLog}: its last line is torn (${torn.bytes} bytes, a run stopped while writing it): skipped`, "BatchlingWarning");
      truncateSync(this.#resultsLog, torn.offset);
    }
  }

  #record(index: number, ok: boolean, costUsd: number): void {
    this.#status[index] = ok ? OK : FAILED;
    if (ok) this.#completed++;
    else this.#failed++;
    this.#costUsd += costUsd;
  }

  #resultPath(id: string): string {
    return join(this.#options.resultsDir, resultFileName(id));
  }

  #emit(event: BatchEvent): void {
    if (event.kind === "batchSubmitted") this.#batchesSubmitted++;
    if (event.kind === "batchFinished") this.#batchesCompleted++;
    if (event.kind === "batchPolled" && event.etaMs != null) this.#etas.set(event.batchId, { etaMs: event.etaMs, at: Date.now() });
    if (event.kind === "batchPolled" && event.etaMs == null) this.#etas.delete(event.batchId);
    if (event.kind === "batchFinished") this.#etas.delete(event.batchId);
    if (event.kind === "linesResubmitted") this.#resubmitted += event.requests;
    if (event.kind === "batchSubmitting" && !event.dryRun) {
      this.#estimatedUsd += event.estimatedUsd ?? 0;
    }
    for (const fn of this.#observers.events) {
      try {
        fn(event);
      } catch {
        // An observer must not break the run.
      }
    }
    if (PROGRESS_KINDS.has(event.kind)) this.#progress();
  }

  /** The run's ETA: the latest of its live batches' (each counted down since its poll). */
  #etaMs(): number | null {
    let eta: number | null = null;
    const now = Date.now();
    for (const { etaMs, at } of this.#etas.values()) eta = Math.max(eta ?? 0, etaMs - (now - at));
    return eta === null ? null : Math.max(0, eta);
  }

  #progress(): void {
    if (this.#observers.progress.length === 0) return;
    const stats = this.status();
    for (const fn of this.#observers.progress) {
      try {
        fn(stats);
      } catch {
        // An observer must not break the run.
      }
    }
  }

  async #start(): Promise<void> {
    if (this.isComplete) return this.#jobs.close();
    const batchSize = this.#options.itemsPerBatch ?? 1000;
    const maxConcurrent = this.#options.maxConcurrent ?? 5;
    const options = {
      batchSize,
      // The run cuts its last, partial batch itself once every job is queued.
      batchWindowMs: 24 * 3600 * 1000,
      pollIntervalMs: this.#options.pollIntervalMs ?? 30_000,
      retry: this.#options.retry,
      lineAttempts: this.#options.lineAttempts,
      prices: this.#options.prices,
      onEvent: (event: BatchlingEvent) => this.#emit(event),
    };
    const engine = newEngine(loadInterceptorBackend().NativeInterceptor, options, true, randomInt(0, 2 ** 47), {
      maxConcurrentBatches: maxConcurrent,
      costLimitUsd: this.#costLimitUsd ?? undefined,
      // The state file keeps no answers (they go to the results): nor does the engine.
      keepAnswers: false,
    });
    this.#engine = engine;
    const platform: Platform = {
      engine,
      realFetch: globalThis.fetch.bind(globalThis),
      journal: new StateFileJournal(resolvePath(this.#options.stateFile), resolvePath(this.#options.resultsDir), this.#jobs.inline, this.#sources),
      warn: (message) => process.emitWarning(message, "BatchlingWarning"),
    };
    const host = new BatchifyHost(options, platform);
    this.#host = host;
    this.#installSignalHandlers();
    const log = openSync(this.#resultsLog, "a", 0o600);
    // Jobs in flight (handed to the engine, not yet answered), by request id: at most what the
    // running batches and one forming batch per concurrent slot hold, so memory does not grow
    // with the number of jobs.
    const inFlight = new Map<number, InFlightJob>();
    const window = batchSize * maxConcurrent;
    let wake: (() => void) | undefined;
    const roomOrDone = () => new Promise<void>((resolve) => (wake = resolve));
    platform.onJobAnswers = (answers) => {
      this.#answered(answers, inFlight, log);
      wake?.();
    };
    // A job that no longer builds (its source line or file changed since run() checked it) stops
    // the run: the jobs in flight finish, and the error is the run's.
    let failure: { error: unknown } | undefined;
    // Jobs cross into the core a chunk at a time (one call, their specs in one JSON array).
    const chunkSize = Math.min(batchSize, 1000);
    let chunk: InFlightJob[] = [];
    let specs: string[] = [];
    const submit = async () => {
      const jobs = chunk;
      const json = `[${specs.join(",")}]`;
      chunk = [];
      specs = [];
      const first = host.reserveRequests(jobs.length);
      jobs.forEach((job, k) => inFlight.set(first + k, job));
      try {
        await host.submitJobs(first, json, this.#jobs.endpointsJson);
      } catch (error) {
        jobs.forEach((_, k) => inFlight.delete(first + k));
        throw error;
      }
    };
    try {
      for (let index = 0; index < this.#status.length && !this.#stopping; index++) {
        if (this.#status[index] !== PENDING) continue;
        while (inFlight.size + chunk.length >= window) {
          if (chunk.length > 0) {
            await submit();
            continue;
          }
          // No provider batch will end and free room: every job in flight waits in a forming
          // batch (jobs of several models), so cut them.
          if (host.liveBatches() === 0) host.flushWhenSubmitted();
          await roomOrDone();
        }
        const job = this.#jobs.spec(index);
        chunk.push({ index, id: job.id, validate: job.validate });
        specs.push(job.specJson);
        if (chunk.length >= chunkSize) await submit();
      }
      if (chunk.length > 0 && !this.#stopping) await submit();
    } catch (error) {
      failure = { error };
    } finally {
      this.#jobs.close();
    }
    host.flushWhenSubmitted();
    while (inFlight.size > 0) await roomOrDone();
    closeSync(log);
    await host.close();
    this.#signalHandlers?.();
    if (failure) throw failure.error;
  }

  /** Jobs answered (one engine step's): their result lines written with one write, then counted. */
  #answered(answers: JobAnswer[], inFlight: Map<number, InFlightJob>, log: number): void {
    let text = "";
    const finished: { index: number; id: string; ok: boolean; costUsd: number }[] = [];
    for (const answer of answers) {
      const job = inFlight.get(answer.request);
      if (job === undefined) continue;
      inFlight.delete(answer.request);
      let line: string;
      let ok: boolean;
      let costUsd = 0;
      if (answer.type === "fail") {
        // A job the cost limit kept from running has no result to keep: a later run (with a
        // higher limit) runs it. The limit counts what each run submits.
        if (answer.code === "ERR_BATCHLING_COST_LIMIT") {
          this.#status[job.index] = NOT_RUN;
          this.#failed++;
          this.#notRun.set(job.index, answer.message);
          this.#emit({ kind: "jobFinished", jobId: job.id, ok: false });
          continue;
        }
        ok = false;
        line = JSON.stringify(emptyResult(job.id, answer.message));
      } else {
        ok = answer.ok;
        line = answer.line;
        costUsd = answer.costUsd ?? 0;
        // A zod responseModel's own validation, over the core's JSON Schema check.
        if (ok && job.validate) {
          const result = JSON.parse(line) as JobResult;
          const problem = job.validate(result.parsedResponse);
          if (problem) {
            ok = false;
            line = JSON.stringify({ ...result, ok: false, error: problem });
          }
        }
      }
      if (this.#stopping && !ok) continue;
      if (this.#options.resultFiles === "per-job") {
        const path = this.#resultPath(job.id);
        const tmp = `${path}.tmp`;
        writeFileSync(tmp, JSON.stringify(JSON.parse(line), null, 2));
        renameSync(tmp, path);
      }
      text += line + "\n";
      finished.push({ index: job.index, id: job.id, ok, costUsd });
    }
    // One write per step: a crash can tear only the last line, which the next run cuts off.
    if (text) writeSync(log, text);
    for (const job of finished) {
      this.#record(job.index, job.ok, job.costUsd);
      this.#emit({ kind: "jobFinished", jobId: job.id, ok: job.ok });
    }
  }

  #installSignalHandlers(): void {
    const stop = (signal: NodeJS.Signals) => {
      // Stop submitting; the state file already holds every submitted batch.
      void this.shutdown({ waitForActive: false }).then(() => process.exit(signal === "SIGINT" ? 130 : 143));
    };
    const onInt = () => stop("SIGINT");
    const onTerm = () => stop("SIGTERM");
    process.once("SIGINT", onInt);
    process.once("SIGTERM", onTerm);
    this.#signalHandlers = () => {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
    };
  }
}

/** The events after which the statistics may have changed. */
const PROGRESS_KINDS = new Set<BatchEvent["kind"]>(["batchSubmitting", "batchSubmitted", "batchPolled", "batchFinished", "linesResubmitted", "enqueuedLimit", "jobFinished"]);

function emptyResult(jobId: string, error: string): JobResult {
  return { jobId, ok: false, response: null, parsedResponse: null, citations: [], inputTokens: null, outputTokens: null, costUsd: null, error };
}

