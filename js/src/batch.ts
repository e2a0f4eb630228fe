// Batch: a job builder for large offline jobs. Each job becomes the sync request its provider's
// SDK would send (built by the core), the requests go through the same provider batching engine
// as batchify(), and each answer becomes a result (extracted by the core). This file holds the
// builder, the state and results files, and progress: no provider logic.
import { createHash, randomInt } from "node:crypto";
import { closeSync, createReadStream, createWriteStream, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, renameSync, truncateSync, writeFileSync, writeSync, appendFileSync } from "node:fs";
import { once } from "node:events";
import { basename, dirname, extname, join, resolve as resolvePath } from "node:path";
import { BatchifyHost, newEngine, type BatchlingEvent } from "./batchify-host.js";
import { coreAnswer, optionJson, refusalError, type CoreRefusal } from "./core-errors.js";
import "./engine-node.js";
import { loadInterceptorBackend, loadJobsBackend } from "./engine.js";
import { BatchlingError, InvalidOptionError } from "./errors.js";
import type {
  JobResult as CoreJobResult,
  FileType,
  JobProvider,
  JobSource,
  JobSpec,
  JsonValue,
  Message as CoreMessage,
  ProviderEndpoint,
  ProviderId,
  RunState,
  RunSummary,
  SerializableRequest,
} from "./generated/core.js";
import type { JournalStore } from "./storage.js";

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
}

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

/** A job of a `.jsonl` source, kept as where its line is: the line is read again at `run()`. */
class SourceLine {
  constructor(
    readonly id: string,
    readonly file: SourceFile,
    readonly offset: number,
    readonly length: number,
  ) {}
}

interface SourceFile {
  source: JobSource;
  fd?: number;
}

/** A lifecycle event (`onEvent`): the batching engine's, plus one per finished job. */
export type BatchEvent = BatchlingEvent | { kind: "jobFinished"; jobId: string; ok: boolean };

/** What the core knows about providers and files, read once per process. */
let jobFacts: { providers: JobProvider[]; fileTypes: FileType[] } | undefined;

function facts(): { providers: JobProvider[]; fileTypes: FileType[] } {
  if (jobFacts === undefined) {
    const core = loadJobsBackend();
    jobFacts = {
      providers: coreAnswer<{ providers: JobProvider[] }>(core.jobProviders()).providers,
      fileTypes: coreAnswer<{ fileTypes: FileType[] }>(core.jobFileTypes()).fileTypes,
    };
  }
  return jobFacts;
}

/** `call`'s argument checked by the core's rules; a refusal throws `InvalidOptionError`. */
function checkOptions(call: "options" | "defaults" | "costLimit" | "job", value: unknown, depth: number, jobId = ""): void {
  coreAnswer<object>(loadJobsBackend().batchCheck(call, optionJson(value, depth), jobId));
}

/**
 * The state file, as JSON lines: a header line (`resultsDir`, the number of jobs, the ids of
 * those added one by one, each source: a source's jobs are its lines, not listed) written atomically
 * (temporary file + rename) when a run starts, then one line per engine journal record,
 * appended after each submission and each batch that ends. Appending keeps every save
 * proportional to what it records: rewriting the whole state per save made a run quadratic
 * (BENCHMARKS.md). A crash can tear only the last line, which the next run reports and skips;
 * answers are not kept here but in the results directory.
 */
export type StateFile = RunState;

/** Read a run's state file (read by the core's rules, core/src/host/run_state.rs). Throws
 * `ERR_BATCHLING_INVALID_STATE` on a file that is not one. */
export function readStateFile(path: string): StateFile {
  return coreAnswer<{ state: RunState }>(loadJobsBackend().jobReadState(readFileSync(path, "utf8"))).state;
}

class StateFileJournal implements JournalStore {
  constructor(
    readonly path: string,
    readonly resultsDir: string,
    /** The ids of the jobs added one by one (not from a source). */
    readonly jobIds: string[],
    readonly sources: JobSource[],
  ) {}

  async load(): Promise<string[]> {
    const journal = existsSync(this.path) ? readStateFile(this.path).journal : [];
    // (Re)write the header with this run's jobs, keeping the journal: once per run.
    mkdirSync(dirname(this.path), { recursive: true });
    const header = coreAnswer<{ line: string }>(loadJobsBackend().jobStateHeader(this.resultsDir, JSON.stringify(this.jobIds), JSON.stringify(this.sources))).line;
    const tmp = `${this.path}.${process.pid}.tmp`;
    writeFileSync(tmp, [header, ...journal].map((line) => line + "\n").join(""), { mode: 0o600 });
    renameSync(tmp, this.path);
    return journal;
  }

  async append(line: string): Promise<void> {
    // Answers live in the results directory.
    if (!loadJobsBackend().jobStateKeeps(line)) return;
    appendFileSync(this.path, line + "\n");
  }
}

/** A job's result file name in the results directory (the core's rule: ids are sanitised,
 * and disambiguated by a hash when sanitising changed them). */
export function resultFileName(id: string): string {
  return loadJobsBackend().jobResultFileName(id);
}

interface Observers {
  progress: ((stats: BatchStats) => void)[];
  events: ((event: BatchEvent) => void)[];
}

/** The results a run's result files hold (each job's file text, or null where there is none),
 * read by the core (files from before the spec's names, `id` and `responseText`, are read under
 * the new ones) with their summary. A file that is not JSON throws
 * `ERR_BATCHLING_INVALID_RESULT`, its `index` the job's position. */
export function readResultFiles(texts: (string | null)[]): { summary: RunSummary; results: (JobResult | null)[] } {
  const answer = JSON.parse(loadJobsBackend().jobSummarizeResults(JSON.stringify(texts))) as
    | { ok: true; summary: RunSummary; results: (JobResult | null)[] }
    | { ok: false; code: string; index: number; error: string };
  if (!answer.ok) throw Object.assign(new BatchlingError(answer.code, answer.error), { index: answer.index });
  return answer;
}

/** A job ready to send: built when its batch forms, dropped once it has its result. */
interface PreparedJob {
  id: string;
  specJson: string;
  request: SerializableRequest;
  validate?: (value: unknown) => string | null;
}

/** A run's jobs as the builder holds them (an inline job, or where its source line is), and how
 * to build one's request when its batch forms. */
interface RunJobs {
  slots: (JobInput | SourceLine)[];
  /** Each job's id and position in `slots`. */
  ids: Map<string, number>;
  /** The ids of the jobs not from a source file (the state header lists those). */
  inline: string[];
  build: (slot: JobInput | SourceLine) => PreparedJob;
  /** Close the source files the builds opened. */
  close: () => void;
}

export class Batch {
  readonly #options: BatchOptions;
  #defaults: JobDefaults = {};
  #costLimitUsd: number | null = null;
  #observers: Observers = { progress: [], events: [] };
  readonly #jobs: (JobInput | SourceLine)[] = [];
  /** Each job's id and its position in `#jobs`. */
  readonly #ids = new Map<string, number>();
  readonly #sources: SourceFile[] = [];

  constructor(options: BatchOptions) {
    // Keys, paths, counts and provider names: the core's rules (core/src/host/batch_options.rs).
    checkOptions("options", options, 2);
    this.#options = options;
  }

  defaults(defaults: JobDefaults): this {
    checkOptions("defaults", defaults, 1);
    this.#defaults = { ...this.#defaults, ...defaults };
    return this;
  }

  addCostLimit(limit: { usd: number }): this {
    checkOptions("costLimit", limit, 1);
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
    const id = (job !== null && typeof job === "object" ? job.id : undefined) ?? `job-${this.#jobs.length + 1}`;
    // Keys and the job's shape (messages, or file + prompt): the core's rules.
    checkOptions("job", job, 1, String(id));
    if (this.#ids.has(id)) throw new InvalidOptionError("job.id", `duplicate job id \`${id}\`: ids must be unique`);
    this.#ids.set(id, this.#jobs.length);
    this.#jobs.push({ ...job, id });
    return this;
  }

  /**
   * Add every job of `source`: an array or a sync or async iterable of jobs, or the path of a
   * `.jsonl` file (one job per line). Every job is checked first, in one pass; bad ones throw one
   * `InvalidJobsError` listing each (its line or index) and none is added. A file's jobs are not
   * kept in memory but read again at `run()`; an async iterable, which cannot be read twice, is
   * recorded as it is read into a `.jsonl` file next to the state file, which a resume reads
   * instead of the iterable. The state file records each file (path, SHA-256, size): a resume
   * whose file changed since the run started is refused (`SourceChangedError`). Jobs from a file
   * or an async iterable are JSON: a `responseModel` is a JSON Schema there, not a zod schema.
   */
  async addJobs(source: JobsSource): Promise<this> {
    if (typeof source === "string") {
      await this.#addFile(resolvePath(source), "file");
    } else if (source !== null && typeof source === "object" && Symbol.iterator in source) {
      this.#addIterable(source);
    } else if (source !== null && typeof source === "object" && Symbol.asyncIterator in source) {
      await this.#addRecorded(source);
    } else {
      throw new InvalidOptionError("addJobs", "pass an array or an iterable of jobs, or the path of a .jsonl file");
    }
    return this;
  }

  /** `job`'s id, checked by the core's job rules and against the ids taken; throws as `addJob` does. */
  #checkJob(job: JobInput, position: number, taken: Set<string>): string {
    const id = (job !== null && typeof job === "object" ? job.id : undefined) ?? `job-${position + 1}`;
    checkOptions("job", job, 1, String(id));
    if (this.#ids.has(id) || taken.has(id)) throw new InvalidOptionError("job.id", `duplicate job id \`${id}\`: ids must be unique`);
    taken.add(id);
    return id;
  }

  #addIterable(source: Iterable<JobInput>): void {
    const jobs: JobInput[] = [];
    const taken = new Set<string>();
    const problems = new Problems("iterable");
    let index = 0;
    for (const job of source) {
      try {
        const id = this.#checkJob(job, this.#jobs.length + index, taken);
        jobs.push({ ...job, id });
      } catch (error) {
        problems.add({ index }, error, job);
      }
      index++;
    }
    problems.throwIfAny();
    for (const job of jobs) {
      this.#ids.set(job.id!, this.#jobs.length);
      this.#jobs.push(job);
    }
  }

  /** Reads a `.jsonl` file once: hashes it, checks each line, and keeps where each job's line is. */
  async #addFile(path: string, kind: JobSource["kind"], recordedIterable = false): Promise<void> {
    if (!existsSync(path)) throw new BatchlingError("ERR_BATCHLING_INVALID_JOBS", `job source not found: ${path}`);
    const file: SourceFile = { source: { kind, path, sha256: "", bytes: 0, jobs: 0 } };
    const lines: SourceLine[] = [];
    const taken = new Set<string>();
    const problems = new Problems(recordedIterable ? "iterable" : path);
    const hash = createHash("sha256");
    let lineNo = 0;
    let start = 0; // offset of the line being read
    let carry: Buffer[] = [];
    const onLine = (bytes: Buffer, offset: number) => {
      lineNo++;
      let length = bytes.length;
      if (length > 0 && bytes[length - 1] === 0x0d) length--;
      const text = bytes.toString("utf8", 0, length);
      if (text.trim() === "") return;
      const position = recordedIterable ? { index: lineNo - 1 } : { line: lineNo };
      let job: JobInput;
      try {
        job = JSON.parse(text) as JobInput;
      } catch (error) {
        problems.add(position, new BatchlingError("ERR_BATCHLING_INVALID_JOB", `not JSON: ${(error as Error).message}`), undefined);
        return;
      }
      try {
        const id = this.#checkJob(job, this.#jobs.length + lines.length, taken);
        lines.push(new SourceLine(id, file, offset, length));
      } catch (error) {
        problems.add(position, error, job);
      }
    };
    let offset = 0;
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
      hash.update(chunk);
      let from = 0;
      for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, from)) {
        const piece = chunk.subarray(from, nl);
        onLine(carry.length ? Buffer.concat([...carry, piece]) : piece, start);
        carry = [];
        from = nl + 1;
        start = offset + from;
      }
      if (from < chunk.length) carry.push(chunk.subarray(from));
      offset += chunk.length;
    }
    if (carry.length) onLine(Buffer.concat(carry), start);
    problems.throwIfAny();
    file.source = { kind, path, sha256: hash.digest("hex"), bytes: offset, jobs: lines.length };
    this.#sources.push(file);
    for (const line of lines) {
      this.#ids.set(line.id, this.#jobs.length);
      this.#jobs.push(line);
    }
  }

  /** An async iterable, recorded as JSON lines next to the state file as it is read, then added
   * as that file. On a resume whose state file records this source, the recording is read and
   * the iterable is not. */
  async #addRecorded(source: AsyncIterable<JobInput>): Promise<void> {
    const stateFile = resolvePath(this.#options.stateFile);
    const path = `${stateFile}.source-${this.#sources.length + 1}.jsonl`;
    const recorded = existsSync(stateFile) ? readStateFile(stateFile).sources[this.#sources.length] : undefined;
    if (!(recorded?.kind === "recorded" && recorded.path === path && existsSync(path))) {
      mkdirSync(dirname(path), { recursive: true });
      const tmp = `${path}.${process.pid}.tmp`;
      const out = createWriteStream(tmp, { mode: 0o600 });
      try {
        for await (const job of source) {
          // An item JSON cannot hold (undefined, a function) is recorded as null, which the check refuses.
          if (!out.write((JSON.stringify(job) ?? "null") + "\n")) await once(out, "drain");
        }
      } finally {
        out.end();
        await once(out, "close");
      }
      renameSync(tmp, path);
    }
    await this.#addFile(path, "recorded", true);
  }

  /** Start the run (or resume it from the state file). `{ wait: true }`: resolve when complete. */
  run(options: { wait: true }): Promise<BatchRun>;
  run(options?: { wait?: false }): BatchRun;
  run(options?: { wait?: boolean }): BatchRun | Promise<BatchRun> {
    const sources = this.#sources.map((file) => file.source);
    this.#checkSources(sources);
    this.#validate();
    const jobs: RunJobs = {
      slots: this.#jobs.slice(),
      ids: this.#ids,
      inline: this.#jobs.filter((slot) => !(slot instanceof SourceLine)).map((slot) => slot.id!),
      build: (slot) => this.#prepareJob(slot),
      close: () => this.#closeSources(),
    };
    const run = new BatchRun(this.#options, jobs, this.#costLimitUsd, this.#observers, sources);
    return options?.wait ? run.wait().then(() => run) : run;
  }

  /** A resume must read the sources its state file records, unchanged (the core's rule). */
  #checkSources(sources: JobSource[]): void {
    const stateFile = resolvePath(this.#options.stateFile);
    for (const file of this.#sources) {
      // Cheap: the file's size, against what addJobs() read (the hash was taken then).
      const bytes = existsSync(file.source.path) ? statSize(file.source.path) : -1;
      if (bytes !== file.source.bytes) {
        throw new SourceChangedError(
          file.source.path,
          `\`${file.source.path}\` changed since addJobs() read it: it had ${file.source.bytes} bytes; it now ${bytes < 0 ? "is missing" : `has ${bytes}`}`,
        );
      }
    }
    if (!existsSync(stateFile)) return;
    const recorded = readStateFile(stateFile).sources;
    const answer = JSON.parse(loadJobsBackend().jobCheckSources(JSON.stringify(recorded), JSON.stringify(sources))) as { ok: true } | (CoreRefusal & { path?: string });
    if (answer.ok) return;
    if (answer.code === "ERR_BATCHLING_SOURCE_CHANGED") {
      throw new SourceChangedError(answer.path ?? "", `cannot resume the run in ${stateFile}: ${answer.error}`);
    }
    throw refusalError(answer);
  }

  /** A job of a source file: its line, read again. */
  #readLine(line: SourceLine): JobInput {
    const file = line.file;
    file.fd ??= openSync(file.source.path, "r");
    const bytes = Buffer.allocUnsafe(line.length);
    readSync(file.fd, bytes, 0, line.length, line.offset);
    return { ...(JSON.parse(bytes.toString("utf8")) as JobInput), id: line.id };
  }

  /** Build every job's request once and keep none: any bad job fails the run before anything
   * is sent. The run builds each again when its batch forms. */
  #validate(): void {
    try {
      for (const slot of this.#jobs) this.#prepareJob(slot);
    } finally {
      this.#closeSources();
    }
  }

  #closeSources(): void {
    for (const file of this.#sources) {
      if (file.fd !== undefined) closeSync(file.fd);
      file.fd = undefined;
    }
  }

  #prepareJob(slot: JobInput | SourceLine): PreparedJob {
    const core = loadJobsBackend();
    const job = slot instanceof SourceLine ? this.#readLine(slot) : slot;
    const merged = { ...this.#defaults, ...job };
    const model = merged.model;
    if (typeof model !== "string") {
      throw new InvalidOptionError("model", `job \`${job.id}\` has no model: set it in defaults() or on the job`);
    }
    const schema = responseSchema(job.responseModel);
    const spec: JobSpec = {
      id: job.id!,
      model,
      messages: job.messages,
      prompt: job.prompt,
      file: job.file === undefined ? undefined : readJobFile(job.id!, job.file),
      system: merged.system,
      temperature: merged.temperature,
      maxTokens: merged.maxTokens,
      responseSchema: schema?.jsonSchema as JsonValue | undefined,
      extra: merged.extra,
    };
    const specJson = JSON.stringify(spec);
    const routed = coreAnswer<{ provider: ProviderName }>(core.jobProvider(specJson));
    const endpoint = this.#endpoint(routed.provider, job.id!);
    const built = coreAnswer<{ request: PreparedJob["request"] }>(core.jobBuildRequest(specJson, JSON.stringify(endpoint)));
    return { id: job.id!, specJson, request: built.request, validate: schema?.validate };
  }

  /** The caller's settings, else the environment variables the core names, else the default. */
  #endpoint(provider: ProviderName, jobId: string): ProviderEndpoint {
    const info = facts().providers.find((p) => p.name === provider);
    const env = (name: string | null | undefined) => (name ? process.env[name] : undefined);
    const settings = this.#options.providers?.[provider];
    const apiKey = settings?.apiKey ?? env(info?.apiKeyEnv);
    if (!apiKey) {
      throw new BatchlingError(
        "ERR_BATCHLING_MISSING_KEY",
        `job \`${jobId}\` needs an API key for ${provider}: set ${info?.apiKeyEnv} or pass providers: { ${provider}: { apiKey } }`,
      );
    }
    // The core trims a trailing slash.
    const baseUrl = settings?.baseURL ?? env(info?.baseUrlEnv) ?? info?.defaultBaseUrl ?? "";
    return { baseUrl, apiKey };
  }
}

/** The results log in a run's results directory: one result per line, in the order they came. */
export const RESULTS_LOG = "results.jsonl";

/** Calls `fn` with each non-blank line of `path` (none if it does not exist), reading 1 MiB at a
 * time. A last line without its newline is not passed: it is returned (its offset and length)
 * as torn, a write a crash cut short. */
export function forEachLineSync(path: string, fn: (text: string, lineNo: number) => void): { offset: number; bytes: number } | null {
  if (!existsSync(path)) return null;
  const fd = openSync(path, "r");
  try {
    const chunk = Buffer.allocUnsafe(1 << 20);
    let carry: Buffer[] = [];
    let position = 0;
    let lineStart = 0;
    let lineNo = 0;
    for (let read = readSync(fd, chunk, 0, chunk.length, position); read > 0; read = readSync(fd, chunk, 0, chunk.length, position)) {
      let from = 0;
      for (let nl = chunk.indexOf(0x0a, from); nl !== -1 && nl < read; nl = chunk.indexOf(0x0a, from)) {
        const piece = chunk.subarray(from, nl);
        const text = (carry.length ? Buffer.concat([...carry, piece]) : piece).toString("utf8");
        carry = [];
        lineNo++;
        if (text.trim() !== "") fn(text, lineNo);
        from = nl + 1;
        lineStart = position + from;
      }
      if (from < read) carry.push(Buffer.from(chunk.subarray(from, read)));
      position += read;
    }
    if (position > lineStart && Buffer.concat(carry).toString("utf8").trim() !== "") return { offset: lineStart, bytes: position - lineStart };
    return null;
  } finally {
    closeSync(fd);
  }
}

/** The non-blank lines of `path`, streamed (none if it does not exist); a torn last line (no
 * newline) is left out. */
export async function* readLines(path: string): AsyncGenerator<string> {
  if (!existsSync(path)) return;
  let carry: Buffer[] = [];
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    let from = 0;
    for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, from)) {
      const piece = chunk.subarray(from, nl);
      const text = (carry.length ? Buffer.concat([...carry, piece]) : piece).toString("utf8");
      carry = [];
      from = nl + 1;
      if (text.trim() !== "") yield text;
    }
    if (from < chunk.length) carry.push(chunk.subarray(from));
  }
}

function statSize(path: string): number {
  const fd = openSync(path, "r");
  try {
    return fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
}

/** The bad jobs of one `addJobs()` source, the first `MAX_JOB_PROBLEMS` kept, all counted. */
class Problems {
  readonly #list: JobProblem[] = [];
  #count = 0;
  constructor(readonly source: string) {}

  add(position: { line?: number; index?: number }, error: unknown, job: unknown): void {
    this.#count++;
    if (this.#list.length >= MAX_JOB_PROBLEMS) return;
    const id = job !== null && typeof job === "object" ? (job as { id?: unknown }).id : undefined;
    this.#list.push({
      ...position,
      ...(typeof id === "string" ? { jobId: id } : {}),
      code: error instanceof BatchlingError ? error.code : "ERR_BATCHLING_INVALID_JOB",
      message: error instanceof Error ? error.message : String(error),
    });
  }

  throwIfAny(): void {
    if (this.#count > 0) throw new InvalidJobsError(this.source, this.#list, this.#count);
  }
}

function readJobFile(id: string, path: string): { name: string; mediaType: string; dataBase64: string } {
  const { fileTypes } = facts();
  const mediaType = fileTypes.find((type) => type.extension === extname(path).toLowerCase())?.mediaType;
  if (!mediaType) {
    throw new BatchlingError(
      "ERR_BATCHLING_INVALID_JOB",
      `job \`${id}\`: unsupported file type \`${extname(path) || basename(path)}\`; supported: ${fileTypes.map((type) => type.extension).join(", ")}`,
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

/** A job's state in a run: one byte per job. */
const PENDING = 0;
const OK = 1;
const FAILED = 2;
/** Kept from running by the cost limit: failed, but with no result on disk (a later run runs it). */
const NOT_RUN = 3;

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
  /** Provider batches cut and not yet ended: while there are none, only a flush frees room. */
  #batchesLive = 0;
  #estimatedUsd = 0;
  #stopping = false;
  #signalHandlers: (() => void) | undefined;

  constructor(options: BatchOptions, jobs: RunJobs, costLimitUsd: number | null, observers: Observers, sources: JobSource[]) {
    this.#options = options;
    this.#jobs = jobs;
    this.#status = new Uint8Array(jobs.slots.length);
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
      batches: this.#batchesSubmitted,
      batchesCompleted: this.#batchesCompleted,
      costUsd: this.#costUsd,
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

  /** Results by job id (so far, or all once complete), read from `results.jsonl` now. For a run
   * too large for one object, `iterResults()`. */
  results(): Record<string, JobResult> {
    const results: Record<string, JobResult> = {};
    forEachLineSync(this.#resultsLog, (text) => {
      const result = this.#ownResult(text);
      if (result !== null && !(result.jobId in results)) results[result.jobId] = result;
    });
    for (const [index, error] of this.#notRun) results[this.#jobs.slots[index]!.id!] = emptyResult(this.#jobs.slots[index]!.id!, error);
    return results;
  }

  /** Every result so far (each job once), streamed from `results.jsonl`, then the jobs the cost
   * limit kept from running. */
  async *iterResults(): AsyncGenerator<JobResult> {
    const seen = new Uint8Array(this.#status.length);
    for await (const text of readLines(this.#resultsLog)) {
      const result = this.#ownResult(text);
      if (result === null) continue;
      const index = this.#jobs.ids.get(result.jobId)!;
      if (seen[index]) continue;
      seen[index] = 1;
      yield result;
    }
    for (const [index, error] of this.#notRun) yield emptyResult(this.#jobs.slots[index]!.id!, error);
  }

  /** A line of `results.jsonl` as a result of this run's jobs; null: another job's, or torn. */
  #ownResult(text: string): JobResult | null {
    let result: JobResult;
    try {
      result = JSON.parse(text) as JobResult;
    } catch {
      return null;
    }
    const index = this.#jobs.ids.get(result?.jobId);
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
      const index = typeof result?.jobId === "string" ? this.#jobs.ids.get(result.jobId) : undefined;
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
    if (event.kind === "batchFinished") {
      this.#batchesCompleted++;
      this.#batchesLive = Math.max(0, this.#batchesLive - 1);
    }
    if (event.kind === "batchSubmitting" && !event.dryRun) {
      this.#batchesLive++;
      this.#estimatedUsd += (event as { estimatedUsd?: number | null }).estimatedUsd ?? 0;
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
      onEvent: (event: BatchlingEvent) => this.#emit(event),
    };
    const engine = newEngine(loadInterceptorBackend().NativeInterceptor, options, true, randomInt(0, 2 ** 47), {
      maxConcurrentBatches: maxConcurrent,
      costLimitUsd: this.#costLimitUsd ?? undefined,
    });
    const host = new BatchifyHost(options, {
      engine,
      realFetch: globalThis.fetch.bind(globalThis),
      journal: new StateFileJournal(resolvePath(this.#options.stateFile), resolvePath(this.#options.resultsDir), this.#jobs.inline, this.#sources),
      warn: (message) => process.emitWarning(message, "BatchlingWarning"),
    });
    this.#host = host;
    this.#installSignalHandlers();
    const log = openSync(this.#resultsLog, "a", 0o600);
    // Jobs in flight (built, sent, not yet answered): at most what the running batches and one
    // forming batch per concurrent slot hold, so memory does not grow with the number of jobs.
    const window = batchSize * maxConcurrent;
    let inFlight = 0;
    let wake: (() => void) | undefined;
    const roomOrDone = () => new Promise<void>((resolve) => (wake = resolve));
    // A job that no longer builds (its source line or file changed since run() checked it) stops
    // the run: the jobs in flight finish, and the error is the run's.
    let failure: { error: unknown } | undefined;
    try {
      for (let index = 0; index < this.#status.length && !this.#stopping; index++) {
        if (this.#status[index] !== PENDING) continue;
        while (inFlight >= window) {
          // Every job in flight waits in a forming batch (jobs of several models): cut them.
          if (this.#batchesLive === 0) host.flushWhenSubmitted();
          await roomOrDone();
        }
        const job = this.#jobs.build(this.#jobs.slots[index]!);
        inFlight++;
        void this.#runJob(host, index, job, log).finally(() => {
          inFlight--;
          wake?.();
        });
      }
    } catch (error) {
      failure = { error };
    } finally {
      this.#jobs.close();
    }
    host.flushWhenSubmitted();
    while (inFlight > 0) await roomOrDone();
    closeSync(log);
    await host.close();
    this.#signalHandlers?.();
    if (failure) throw failure.error;
  }

  async #runJob(host: BatchifyHost, index: number, job: PreparedJob, log: number): Promise<void> {
    const core = loadJobsBackend();
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
      result = emptyResult(job.id, error instanceof Error ? error.message : String(error));
    }
    if (this.#stopping && !result.ok) return;
    // A job the cost limit kept from running has no result to keep: a later run (with a
    // higher limit) runs it. The limit counts what each run submits.
    if (notRun) {
      this.#status[index] = NOT_RUN;
      this.#failed++;
      this.#notRun.set(index, result.error ?? "");
      return this.#emit({ kind: "jobFinished", jobId: job.id, ok: false });
    }
    if (this.#options.resultFiles === "per-job") {
      const path = this.#resultPath(job.id);
      const tmp = `${path}.tmp`;
      writeFileSync(tmp, JSON.stringify(result, null, 2));
      renameSync(tmp, path);
    }
    // One write per line: a crash can tear only the last one, which the next run cuts off.
    writeSync(log, JSON.stringify(result) + "\n");
    this.#record(index, result.ok, result.costUsd ?? 0);
    this.#emit({ kind: "jobFinished", jobId: job.id, ok: result.ok });
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
