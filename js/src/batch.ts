// Batch: a job builder for large offline jobs. Each job becomes the sync request its provider's
// SDK would send (built by the core), the requests go through the same provider batching engine
// as batchify(), and each answer becomes a result (extracted by the core). This file holds the
// builder, the state and results files, and progress: no provider logic.
import { createHash, randomInt } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync, appendFileSync } from "node:fs";
import { basename, dirname, extname, join, resolve as resolvePath } from "node:path";
import { BatchifyHost, newEngine, type BatchlingEvent } from "./batchify-host.js";
import "./engine-node.js";
import { loadInterceptorBackend, loadJobsBackend } from "./engine.js";
import { BatchlingError, InvalidOptionError } from "./errors.js";
import { checkCount, checkKnownKeys } from "./host-util.js";
import type { JournalStore } from "./storage.js";

export type ProviderName = "openai" | "anthropic" | "gemini";

export interface ProviderSettings {
  apiKey?: string;
  baseURL?: string;
}

export interface BatchOptions {
  /** The run's state: which jobs went into which provider batch. Resume by running again. */
  stateFile: string;
  /** One JSON file per job, plus results.jsonl. */
  resultsDir: string;
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
}

export interface JobDefaults {
  model?: string;
  temperature?: number;
  maxTokens?: number;
  system?: string;
  /** Provider-specific body fields, merged as given. */
  extra?: Record<string, unknown>;
}

export interface Message {
  role: "user" | "assistant" | "system";
  content: string;
}

/** A JSON Schema object, or a zod schema (anything with `safeParse` and a JSON Schema export). */
export type ResponseModel = Record<string, unknown> | { safeParse(value: unknown): { success: boolean; error?: unknown; data?: unknown } };

export interface JobInput extends JobDefaults {
  id?: string;
  messages?: Message[];
  file?: string;
  prompt?: string;
  responseModel?: ResponseModel;
}

/** One job's outcome (the spec's JobResult, in JS casing). */
export interface JobResult {
  jobId: string;
  /** The answer arrived and, with a `responseModel`, parsed and matched it (`error` is null). */
  ok: boolean;
  /** The raw answer text (with a `responseModel`: the JSON text, kept even when it is invalid). */
  response: string | null;
  /** The structured answer, validated against `responseModel`; null without one or on error. */
  parsedResponse: unknown;
  citations: { citedText: string; source: string; startPage?: number | null; endPage?: number | null }[];
  inputTokens: number | null;
  outputTokens: number | null;
  costUsd: number | null;
  error: string | null;
}

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
  /** Provider batches this run submitted. */
  batches: number;
  /** Of those, the ones that ended (completed, failed, expired or cancelled at the provider). */
  batchesCompleted: number;
  /** Actual cost so far, from the reported token usage at batch prices. */
  costUsd: number;
  /** The estimate of what this run submitted (what the cost limit is checked against). */
  estimatedCostUsd: number;
  costLimitUsd: number | null;
  isComplete: boolean;
  /** Since the run started. */
  elapsedMs: number;
}

/** A lifecycle event (`onEvent`): the batching engine's, plus one per finished job. */
export type BatchEvent = BatchlingEvent | { kind: "jobFinished"; jobId: string; ok: boolean };

const PROVIDER_ENV: Record<ProviderName, { key: string; base: string; defaultBase: string }> = {
  openai: { key: "OPENAI_API_KEY", base: "OPENAI_BASE_URL", defaultBase: "https://api.openai.com/v1" },
  anthropic: { key: "ANTHROPIC_API_KEY", base: "ANTHROPIC_BASE_URL", defaultBase: "https://api.anthropic.com" },
  gemini: { key: "GEMINI_API_KEY", base: "GEMINI_BASE_URL", defaultBase: "https://generativelanguage.googleapis.com/v1beta" },
};

const MEDIA_TYPES: Record<string, string> = {
  ".pdf": "application/pdf",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp",
  ".txt": "text/plain",
  ".md": "text/markdown",
  ".csv": "text/csv",
  ".json": "application/json",
  ".html": "text/html",
};

/**
 * The state file, as JSON lines: a header line (`resultsDir`, the job ids) written atomically
 * (temporary file + rename) when a run starts, then one line per engine journal record,
 * appended after each submission and each batch that ends. Appending keeps every save
 * proportional to what it records: rewriting the whole state per save made a run quadratic
 * (BENCHMARKS.md). A crash can tear only the last line, which the next run reports and skips;
 * answers are not kept here but in the results directory.
 */
export interface StateFile {
  version: 1;
  /** Where the run writes its results (`batchling jobs status|results` read them there). */
  resultsDir: string;
  jobIds: string[];
  /** The batching engine's journal: which requests went into which provider batch. */
  journal: string[];
}

/** Read a run's state file (for `batchling jobs …`). Throws on a file that is not one. */
export function readStateFile(path: string): StateFile {
  const [first = "", ...journal] = readFileSync(path, "utf8").split("\n");
  const header = JSON.parse(first) as { batchling?: string; version?: number; resultsDir?: string; jobIds?: string[] };
  if (header?.batchling !== "state") throw new Error("its first line is not a batchling state header");
  return {
    version: header.version as 1,
    resultsDir: header.resultsDir as string,
    jobIds: header.jobIds as string[],
    journal: journal.filter((line) => line.trim() !== ""),
  };
}

class StateFileJournal implements JournalStore {
  constructor(
    readonly path: string,
    readonly resultsDir: string,
    readonly jobIds: string[],
  ) {}

  async load(): Promise<string[]> {
    const journal = existsSync(this.path) ? readStateFile(this.path).journal : [];
    // (Re)write the header with this run's jobs, keeping the journal: once per run.
    mkdirSync(dirname(this.path), { recursive: true });
    const header = JSON.stringify({ batchling: "state", version: 1, resultsDir: this.resultsDir, jobIds: this.jobIds });
    const tmp = `${this.path}.${process.pid}.tmp`;
    writeFileSync(tmp, [header, ...journal].map((line) => line + "\n").join(""), { mode: 0o600 });
    renameSync(tmp, this.path);
    return journal;
  }

  async append(line: string): Promise<void> {
    // Answers live in the results directory.
    if (line.startsWith('{"type":"result"')) return;
    appendFileSync(this.path, line + "\n");
  }
}

/** A job's result file name in the results directory (ids are sanitised, and disambiguated
 * by a hash when sanitising changed them). */
export function resultFileName(id: string): string {
  const safe = id.replace(/[^A-Za-z0-9._-]/g, "_");
  const suffix = safe === id ? "" : `-${createHash("sha256").update(id).digest("hex").slice(0, 8)}`;
  return `${safe}${suffix}.json`;
}

interface Observers {
  progress: ((stats: BatchStats) => void)[];
  events: ((event: BatchEvent) => void)[];
}

/** A job's result as written to the results directory. Files from before the spec's names
 * (`id`, `responseText`) are read under the new ones. */
export function parseResultFile(text: string): JobResult {
  const raw = JSON.parse(text) as Record<string, unknown>;
  if (raw !== null && typeof raw === "object" && !("jobId" in raw) && "id" in raw) {
    const { id, responseText, ...rest } = raw;
    return { jobId: id, response: responseText ?? null, ...rest } as unknown as JobResult;
  }
  return raw as unknown as JobResult;
}

interface PreparedJob {
  id: string;
  spec: Record<string, unknown>;
  specJson: string;
  provider: ProviderName;
  request: { method: string; url: string; headers: [string, string][]; body: string };
  estimatedUsd: number | null;
  validate?: (value: unknown) => string | null;
}

export class Batch {
  readonly #options: BatchOptions;
  #defaults: JobDefaults = {};
  #costLimitUsd: number | null = null;
  #observers: Observers = { progress: [], events: [] };
  readonly #jobs: JobInput[] = [];
  readonly #ids = new Set<string>();

  constructor(options: BatchOptions) {
    if (options === null || typeof options !== "object") {
      throw new InvalidOptionError("options", "pass { stateFile, resultsDir, maxConcurrent? }");
    }
    checkKnownKeys(options, ["stateFile", "resultsDir", "maxConcurrent", "itemsPerBatch", "pollIntervalMs", "providers", "retry"]);
    for (const name of ["stateFile", "resultsDir"] as const) {
      if (typeof options[name] !== "string" || options[name] === "") {
        throw new InvalidOptionError(name, "must be a non-empty path string");
      }
    }
    checkCount("maxConcurrent", options.maxConcurrent, 1);
    checkCount("itemsPerBatch", options.itemsPerBatch, 1);
    checkCount("pollIntervalMs", options.pollIntervalMs, 1);
    if (options.providers !== undefined) {
      checkKnownKeys(options.providers, ["openai", "anthropic", "gemini"], "providers.");
    }
    this.#options = options;
  }

  defaults(defaults: JobDefaults): this {
    checkKnownKeys(defaults, ["model", "temperature", "maxTokens", "system", "extra"], "defaults.");
    this.#defaults = { ...this.#defaults, ...defaults };
    return this;
  }

  addCostLimit(limit: { usd: number }): this {
    if (typeof limit?.usd !== "number" || !Number.isFinite(limit.usd) || limit.usd < 0) {
      throw new InvalidOptionError("costLimit.usd", `must be a finite number >= 0, got ${String(limit?.usd)}`);
    }
    this.#costLimitUsd = limit.usd;
    return this;
  }

  /** `fn(stats)` when the run starts and whenever its statistics change (a batch submitted,
   * polled or ended, a job finished). */
  onProgress(fn: (stats: BatchStats) => void): this {
    if (typeof fn !== "function") throw new InvalidOptionError("onProgress", "must be a function (stats) => void");
    this.#observers.progress.push(fn);
    return this;
  }

  /** `fn(event)` for every lifecycle event: batch submitting / submitted / polled / finished,
   * retries, warnings, and `jobFinished`. */
  onEvent(fn: (event: BatchEvent) => void): this {
    if (typeof fn !== "function") throw new InvalidOptionError("onEvent", "must be a function (event) => void");
    this.#observers.events.push(fn);
    return this;
  }

  addJob(job: JobInput): this {
    if (job === null || typeof job !== "object") throw new InvalidOptionError("job", "pass { messages } or { file, prompt }");
    checkKnownKeys(job, ["id", "messages", "file", "prompt", "model", "temperature", "maxTokens", "system", "extra", "responseModel"], "job.");
    const id = job.id ?? `job-${this.#jobs.length + 1}`;
    if (this.#ids.has(id)) throw new InvalidOptionError("job.id", `duplicate job id \`${id}\`: ids must be unique`);
    const hasMessages = job.messages !== undefined;
    const hasFile = job.file !== undefined || job.prompt !== undefined;
    if (hasMessages && hasFile) {
      throw new InvalidOptionError("job", `job \`${id}\`: give either messages or file + prompt, not both`);
    }
    if (!hasMessages && !hasFile) throw new InvalidOptionError("job", `job \`${id}\`: give messages, or file + prompt`);
    if (hasFile && (typeof job.file !== "string" || typeof job.prompt !== "string")) {
      throw new InvalidOptionError("job", `job \`${id}\`: a file job needs both \`file\` (a path) and \`prompt\``);
    }
    this.#ids.add(id);
    this.#jobs.push({ ...job, id });
    return this;
  }

  /** Start the run (or resume it from the state file). `{ wait: true }`: resolve when complete. */
  run(options: { wait: true }): Promise<BatchRun>;
  run(options?: { wait?: false }): BatchRun;
  run(options?: { wait?: boolean }): BatchRun | Promise<BatchRun> {
    const prepared = this.#prepare();
    const run = new BatchRun(this.#options, prepared, this.#costLimitUsd, this.#observers);
    return options?.wait ? run.wait().then(() => run) : run;
  }

  /** Build every job's request now: any bad job fails the run before anything is sent. */
  #prepare(): PreparedJob[] {
    const core = loadJobsBackend();
    return this.#jobs.map((job) => {
      const merged = { ...this.#defaults, ...job };
      const model = merged.model;
      if (typeof model !== "string") {
        throw new InvalidOptionError("model", `job \`${job.id}\` has no model: set it in defaults() or on the job`);
      }
      const schema = responseSchema(job.responseModel);
      const spec: Record<string, unknown> = {
        id: job.id,
        model,
        messages: job.messages,
        prompt: job.prompt,
        file: job.file === undefined ? undefined : readJobFile(job.id!, job.file),
        system: merged.system,
        temperature: merged.temperature,
        maxTokens: merged.maxTokens,
        responseSchema: schema?.jsonSchema,
        extra: merged.extra,
      };
      const specJson = JSON.stringify(spec);
      const routed = coreAnswer<{ provider: ProviderName }>(core.jobProvider(specJson));
      const endpoint = this.#endpoint(routed.provider, job.id!);
      const built = coreAnswer<{ request: PreparedJob["request"]; estimatedUsd: number | null }>(
        core.jobBuildRequest(specJson, JSON.stringify(endpoint)),
      );
      return { id: job.id!, spec, specJson, provider: routed.provider, request: built.request, estimatedUsd: built.estimatedUsd, validate: schema?.validate };
    });
  }

  #endpoint(provider: ProviderName, jobId: string): { baseUrl: string; apiKey: string } {
    const env = PROVIDER_ENV[provider];
    const settings = this.#options.providers?.[provider];
    const apiKey = settings?.apiKey ?? process.env[env.key];
    if (!apiKey) {
      throw new BatchlingError(
        "ERR_BATCHLING_MISSING_KEY",
        `job \`${jobId}\` needs an API key for ${provider}: set ${env.key} or pass providers: { ${provider}: { apiKey } }`,
      );
    }
    const baseUrl = (settings?.baseURL ?? process.env[env.base] ?? env.defaultBase).replace(/\/+$/, "");
    return { baseUrl, apiKey };
  }
}

/** The core answers `{ ok: true, … }` or `{ ok: false, code, error }`. */
function coreAnswer<T>(json: string): T {
  const answer = JSON.parse(json) as ({ ok: true } & T) | { ok: false; code: string; error: string };
  if (!answer.ok) throw new BatchlingError(answer.code, answer.error);
  return answer;
}

function readJobFile(id: string, path: string): { name: string; mediaType: string; dataBase64: string } {
  const mediaType = MEDIA_TYPES[extname(path).toLowerCase()];
  if (!mediaType) {
    throw new BatchlingError(
      "ERR_BATCHLING_INVALID_JOB",
      `job \`${id}\`: unsupported file type \`${extname(path) || basename(path)}\`; supported: ${Object.keys(MEDIA_TYPES).join(", ")}`,
    );
  }
  if (!existsSync(path)) throw new BatchlingError("ERR_BATCHLING_INVALID_JOB", `job \`${id}\`: file not found: ${resolvePath(path)}`);
  return { name: basename(path), mediaType, dataBase64: readFileSync(path).toString("base64") };
}

/** A JSON Schema as is, or a zod schema: its JSON Schema (zod 4's toJSONSchema) plus its own validation. */
function responseSchema(model: ResponseModel | undefined): { jsonSchema: unknown; validate?: (v: unknown) => string | null } | undefined {
  if (model === undefined) return undefined;
  if (typeof (model as { safeParse?: unknown }).safeParse === "function") {
    const zod = model as { safeParse(v: unknown): { success: boolean; error?: unknown }; toJSONSchema?: () => unknown };
    if (typeof zod.toJSONSchema !== "function") {
      throw new InvalidOptionError(
        "responseModel",
        "this zod schema has no toJSONSchema() method (zod >= 4.1): pass { ...z.toJSONSchema(schema) } as a JSON Schema instead",
      );
    }
    return {
      jsonSchema: zod.toJSONSchema(),
      validate: (value) => {
        const result = zod.safeParse(value);
        return result.success ? null : `response does not match responseModel: ${String(result.error)}`;
      },
    };
  }
  return { jsonSchema: model };
}

/** A started (or resumed) run. */
export class BatchRun {
  readonly #options: BatchOptions;
  readonly #jobs = new Map<string, PreparedJob>();
  readonly #results = new Map<string, JobResult>();
  readonly #costLimitUsd: number | null;
  readonly #observers: Observers;
  readonly #done: Promise<void>;
  readonly #startedAt = Date.now();
  #host: BatchifyHost | undefined;
  #batchesSubmitted = 0;
  #batchesCompleted = 0;
  #estimatedUsd = 0;
  #notRunCostLimit = 0;
  #stopping = false;
  #signalHandlers: (() => void) | undefined;

  constructor(options: BatchOptions, jobs: PreparedJob[], costLimitUsd: number | null, observers: Observers) {
    this.#options = options;
    this.#costLimitUsd = costLimitUsd;
    this.#observers = observers;
    for (const job of jobs) this.#jobs.set(job.id, job);
    mkdirSync(options.resultsDir, { recursive: true });
    this.#loadExistingResults();
    // The starting statistics, once the caller holds the run.
    queueMicrotask(() => this.#progress());
    this.#done = this.#start();
  }

  get isComplete(): boolean {
    return this.#results.size === this.#jobs.size;
  }

  /** The run's statistics (the ones `onProgress` receives); `print`: also one line on stdout. */
  status(options?: { print?: boolean }): BatchStats {
    let completed = 0;
    let failed = 0;
    let cost = 0;
    for (const result of this.#results.values()) {
      if (result.ok) completed++;
      else failed++;
      cost += result.costUsd ?? 0;
    }
    const stats: BatchStats = {
      total: this.#jobs.size,
      completed,
      failed,
      notRun: this.#notRunCostLimit,
      pending: this.#jobs.size - this.#results.size,
      batches: this.#batchesSubmitted,
      batchesCompleted: this.#batchesCompleted,
      costUsd: cost,
      estimatedCostUsd: this.#estimatedUsd,
      costLimitUsd: this.#costLimitUsd,
      isComplete: this.isComplete,
      elapsedMs: Date.now() - this.#startedAt,
    };
    if (options?.print) {
      const limit = stats.costLimitUsd === null ? "" : ` / limit $${stats.costLimitUsd.toFixed(4)}`;
      process.stdout.write(
        `jobs ${stats.total}: ${stats.completed} completed, ${stats.failed} failed (${stats.notRun} not run: cost limit), ${stats.pending} pending; ` +
          `batches ${stats.batches} (${stats.batchesCompleted} ended); cost $${stats.costUsd.toFixed(4)} (est. $${stats.estimatedCostUsd.toFixed(4)}${limit})\n`,
      );
    }
    return stats;
  }

  /** Results by job id (so far, or all once complete). */
  results(): Record<string, JobResult> {
    return Object.fromEntries(this.#results);
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
    return exportResults([...this.#results.values()], format);
  }

  #loadExistingResults(): void {
    for (const id of this.#jobs.keys()) {
      const path = this.#resultPath(id);
      if (existsSync(path)) this.#results.set(id, parseResultFile(readFileSync(path, "utf8")));
    }
  }

  #resultPath(id: string): string {
    return join(this.#options.resultsDir, resultFileName(id));
  }

  #emit(event: BatchEvent): void {
    if (event.kind === "batchSubmitted") this.#batchesSubmitted++;
    if (event.kind === "batchFinished") this.#batchesCompleted++;
    if (event.kind === "batchSubmitting" && !event.dryRun) this.#estimatedUsd += (event as { estimatedUsd?: number | null }).estimatedUsd ?? 0;
    for (const fn of this.#observers.events) {
      try {
        fn(event);
      } catch {
        // An observer must not break the run.
      }
    }
    if (PROGRESS_KINDS.has(event.kind)) this.#progress();
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
    const todo = [...this.#jobs.values()].filter((job) => !this.#results.has(job.id));
    if (todo.length === 0) return;
    const options = {
      batchSize: this.#options.itemsPerBatch ?? 1000,
      // The run cuts its last, partial batch itself once every job is queued.
      batchWindowMs: 24 * 3600 * 1000,
      pollIntervalMs: this.#options.pollIntervalMs ?? 30_000,
      retry: this.#options.retry,
      onEvent: (event: BatchlingEvent) => this.#emit(event),
    };
    const engine = newEngine(loadInterceptorBackend().NativeInterceptor, options, true, randomInt(0, 2 ** 47), {
      maxConcurrentBatches: this.#options.maxConcurrent ?? 5,
      costLimitUsd: this.#costLimitUsd ?? undefined,
    });
    const host = new BatchifyHost(options, {
      engine,
      realFetch: globalThis.fetch.bind(globalThis),
      journal: new StateFileJournal(resolvePath(this.#options.stateFile), resolvePath(this.#options.resultsDir), [...this.#jobs.keys()]),
      warn: (message) => process.emitWarning(message, "BatchlingWarning"),
    });
    this.#host = host;
    this.#installSignalHandlers();
    const resultsLog = join(this.#options.resultsDir, "results.jsonl");
    const core = loadJobsBackend();
    const finished = Promise.all(
      todo.map(async (job) => {
        let result: JobResult;
        let notRun = false;
        try {
          const response = await host.fetch(job.request.url, {
            method: job.request.method,
            headers: job.request.headers,
            body: job.request.body,
          });
          const body = await response.text();
          result = JSON.parse(core.jobExtractResult(job.specJson, response.status, body)) as JobResult;
          if (result.ok && job.validate) {
            const problem = job.validate(result.parsedResponse);
            if (problem) result = { ...result, ok: false, error: problem };
          }
        } catch (error) {
          notRun = error instanceof BatchlingError && error.code === "ERR_BATCHLING_COST_LIMIT";
          if (notRun) this.#notRunCostLimit++;
          result = emptyResult(job.id, error instanceof Error ? error.message : String(error));
        }
        if (this.#stopping && !result.ok && !this.#results.has(job.id)) return;
        this.#results.set(job.id, result);
        // A job the cost limit kept from running has no result to keep: a later run (with a
        // higher limit) runs it. The limit counts what each run submits.
        if (notRun) return this.#emit({ kind: "jobFinished", jobId: job.id, ok: false });
        const path = this.#resultPath(job.id);
        const tmp = `${path}.tmp`;
        writeFileSync(tmp, JSON.stringify(result, null, 2));
        renameSync(tmp, path);
        appendFileSync(resultsLog, JSON.stringify(result) + "\n");
        this.#emit({ kind: "jobFinished", jobId: job.id, ok: result.ok });
      }),
    );
    host.flushWhenSubmitted();
    await finished;
    await host.close();
    this.#signalHandlers?.();
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
const PROGRESS_KINDS = new Set<BatchEvent["kind"]>(["batchSubmitting", "batchSubmitted", "batchPolled", "batchFinished", "jobFinished"]);

function emptyResult(jobId: string, error: string): JobResult {
  return { jobId, ok: false, response: null, parsedResponse: null, citations: [], inputTokens: null, outputTokens: null, costUsd: null, error };
}

/** The CSV export's columns: the JobResult fields, in the spec's order. */
export const EXPORT_COLUMNS = ["jobId", "ok", "response", "parsedResponse", "citations", "inputTokens", "outputTokens", "costUsd", "error"] as const;

/** Results as JSON (an array) or CSV (one row per job; nested values as JSON). */
export function exportResults(results: JobResult[], format: "json" | "csv"): string {
  if (format === "json") return JSON.stringify(results, null, 2);
  const columns = EXPORT_COLUMNS;
  const cell = (value: unknown): string => {
    const text = value === null || value === undefined ? "" : typeof value === "string" ? value : JSON.stringify(value);
    return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  return [columns.join(","), ...results.map((r) => columns.map((c) => cell(r[c])).join(","))].join("\n") + "\n";
}
