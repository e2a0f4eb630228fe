// What the job builder (batch.ts) and its runs (batch-run.ts) share: the public types, the
// job sources' records and their typed errors, and the run's internal shapes.
import { once } from "node:events";
import { join } from "node:path";
import { type BatchlingEvent } from "./batchify-host.js";
import { BatchlingError } from "./errors.js";
import type { JobResult as CoreJobResult, JobSource, JobSpec, Message as CoreMessage, PriceOverride, ProviderId, SerializableRequest } from "./generated/core.js";

/** A provider the job builder serves (the core's `jobProviders()` lists them: openai, anthropic, gemini). */
export type ProviderName = ProviderId;

export interface ProviderSettings {
  apiKey?: string;
  baseURL?: string;
}

export interface BatchOptions {
  /** The run's state: which jobs went into which provider batch. Resume by running again. */
  stateFile: string;
  /** Where results go: `results.jsonl`, one line per job as it finishes (and one JSON file per
   * job with `resultFiles: "per-job"`). */
  resultsDir: string;
  /** `"jsonl"` (default): only `results.jsonl`; `"per-job"`: also one `<jobId>.json` per job. */
  resultFiles?: "jsonl" | "per-job";
  /** Provider batches in flight at once (default 5). */
  maxConcurrent?: number;
  /** Jobs per provider batch (default 1000). */
  itemsPerBatch?: number;
  /** Time between two polls of a provider batch (default 30 000 ms). */
  pollIntervalMs?: number;
  /** Credentials and endpoints; default to OPENAI_API_KEY / OPENAI_BASE_URL, ANTHROPIC_…, GEMINI_…. */
  providers?: Partial<Record<ProviderName, ProviderSettings>>;
  /** Retries of provider calls on 429 / 5xx / transport errors. */
  retry?: { attempts?: number; backoffMs?: number; maxBackoffMs?: number };
  /** Batches a job may go through without a usable line, counting the first (default 3): a job
   * its batch did not run (missing line, expired or cancelled batch), or whose line came back
   * with a retryable error (429, 5xx, overloaded), goes into a new batch; `1` turns this off. */
  lineAttempts?: number;
  /** Your prices by model id, list (synchronous) USD per million tokens, over the built-in
   * table; batchling applies the provider's batch discount. With `provider`, a model the
   * registry does not know (a fine-tune id) is accepted as that provider's. */
  prices?: Prices;
}

/** The `prices` option of `Batch` and `batchify()`. */
export type Prices = Record<string, PriceOverride>;

/** What every job may set and `defaults()` sets for all (the core's `JobSpec` fields). */
export type JobDefaults = { [K in "model" | "temperature" | "maxTokens" | "system" | "extra"]?: NonNullable<JobSpec[K]> };

/** One message of a job's conversation: `role` is "system", "user" or "assistant". */
export type Message = CoreMessage;

/** A JSON Schema object, or a zod schema (anything with `safeParse` and a JSON Schema export). */
export type ResponseModel = Record<string, unknown> | { safeParse(value: unknown): { success: boolean; error?: unknown; data?: unknown } };

export interface JobInput extends JobDefaults {
  id?: string;
  messages?: Message[];
  file?: string;
  prompt?: string;
  responseModel?: ResponseModel;
}

/** One job's outcome: the core's `JobResult`. A job that got no answer (a transport error, the
 * cost limit) has no `status`, `finishReason` or `truncated`. With a `responseModel`,
 * `parsedResponse` has also passed its own (zod) validation. */
export type JobResult = Omit<CoreJobResult, "status" | "finishReason" | "truncated"> &
  Partial<Pick<CoreJobResult, "status" | "finishReason" | "truncated">>;

/** A run's statistics: what `status()` returns and what `onProgress` callbacks receive.
 * `total` = `completed` + `failed` + `pending`. */
export interface BatchStats {
  /** Jobs in the run. */
  total: number;
  /** Jobs that ended with an answer (`ok`). */
  completed: number;
  /** Jobs that ended with an error, the not-run ones included. */
  failed: number;
  /** Of `failed`: jobs the cost limit kept from running (a later run with a higher limit runs them). */
  notRun: number;
  /** Jobs without a result yet. */
  pending: number;
  /** Of `pending`: requests waiting for headroom under a provider's enqueued-token limit (a
   * batch refused for it ran nothing; its requests go again once a batch of that model ends). */
  waitingForHeadroom: number;
  /** Provider batches this run submitted. */
  batches: number;
  /** Of those, the ones that ended (completed, failed, expired or cancelled at the provider). */
  batchesCompleted: number;
  /** Jobs put into a new batch because theirs did not run them (missing line, expired or
   * cancelled batch) or their line came back with a retryable error (429, 5xx, overloaded);
   * a job counts once per resubmission. */
  resubmitted: number;
  /** Actual cost so far, from the reported token usage at batch prices (prompt-cache reads and
   * writes at their own rates, reasoning as output). */
  costUsd: number;
  /** The estimate of what this run submitted (what the cost limit is checked against): an
   * upper bound, all input uncached (at the cache-write rate where the request asks for caching)
   * and every output cap used. */
  estimatedCostUsd: number;
  costLimitUsd: number | null;
  isComplete: boolean;
  /** Since the run started. */
  elapsedMs: number;
  /** Estimated time until the live batches end, from the providers' counts (the requests still
   * to finish at the rate they finished so far); `null` before any progress was reported. */
  etaMs: number | null;
}

/** A lifecycle event (`onEvent`): the batching engine's, plus one per finished job. */
export type BatchEvent = BatchlingEvent | { kind: "jobFinished"; jobId: string; ok: boolean };

/** What `addJobs()` reads jobs from: an array or a (sync or async) iterable of jobs, or the path
 * of a `.jsonl` file with one job per line (the fields of `addJob`; blank lines are skipped). */
export type JobsSource = string | Iterable<JobInput> | AsyncIterable<JobInput>;

/** Where a job source came from, as the state file records it (the core's `JobSource`). */
export type { JobSource };

/** One bad job of an `addJobs()` source: `line` (1-based) in a file, `index` (0-based) in an
 * array or iterable; `code` is the error the job alone would have raised. */
export interface JobProblem {
  line?: number;
  index?: number;
  jobId?: string;
  code: string;
  message: string;
}

/** How many problems an `InvalidJobsError` lists (it counts them all). */
export const MAX_JOB_PROBLEMS = 20;

/** `addJobs()` found bad jobs: every one of them (the first `MAX_JOB_PROBLEMS`) with its position.
 * No job of the source was added. */
export class InvalidJobsError extends BatchlingError {
  /** The file's path, or "iterable". */
  readonly source: string;
  readonly problems: JobProblem[];
  /** All the bad jobs, listed or not. */
  readonly count: number;
  constructor(source: string, problems: JobProblem[], count: number) {
    const where = (p: JobProblem) => (p.line !== undefined ? `line ${p.line}` : `index ${p.index}`) + (p.jobId === undefined ? "" : ` (job \`${p.jobId}\`)`);
    const more = count > problems.length ? `\n  … and ${count - problems.length} more` : "";
    super(
      "ERR_BATCHLING_INVALID_JOBS",
      `${count} bad job${count === 1 ? "" : "s"} in ${source}; nothing was added:\n` + problems.map((p) => `  ${where(p)}: ${p.message}`).join("\n") + more,
    );
    this.source = source;
    this.problems = problems;
    this.count = count;
  }
}

/** A resume reads a job source that is not the one the run started with (edited, moved, or
 * missing). Restore it, or start a new run with another state file. */
export class SourceChangedError extends BatchlingError {
  /** The source, as the state file records it. */
  readonly path: string;
  constructor(path: string, message: string) {
    super("ERR_BATCHLING_SOURCE_CHANGED", message);
    this.path = path;
  }
}

export interface SourceFile {
  source: JobSource;
  fd?: number;
}
export interface Observers {
  progress: ((stats: BatchStats) => void)[];
  events: ((event: BatchEvent) => void)[];
}

/** A job ready to send: built when its batch forms, dropped once it has its result. */
export interface PreparedJob {
  id: string;
  specJson: string;
  request: SerializableRequest;
  validate?: (value: unknown) => string | null;
}

/** A job as the run hands it to the engine: its spec (the core builds its request). */
export type JobSpecOf = Omit<PreparedJob, "request">;

/** A run's jobs as the builder holds them (an inline job, or where its source line is), and how
 * to build one's request when its batch forms. */
export interface RunJobs {
  /** How many jobs; each is named by its position. */
  count: number;
  /** The id of the job at a position (a source file's: read again from its line). */
  id: (position: number) => string;
  /** The position of the job with an id. */
  indexOf: (id: unknown) => number | undefined;
  /** The ids of the jobs not from a source file (the state header lists those). */
  inline: string[];
  /** The job's spec, its request left to the core (which builds it from `endpointsJson`). */
  spec: (position: number) => JobSpecOf;
  /** The endpoint of each provider (base URL, API key), as the core's `submitJobs` takes them. */
  endpointsJson: string;
  /** Close the source files the builds opened. */
  close: () => void;
}
