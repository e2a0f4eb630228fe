// Batch: a job builder for large offline jobs. Each job becomes the sync request its provider's
// SDK would send (built by the core), the requests go through the same provider batching engine
// as batchify(), and each answer becomes a result (extracted by the core). This file holds the
// builder (options, defaults, jobs and their sources); the run is batch-run.ts, its files
// batch-files.ts, the shared types batch-types.ts. No provider logic.
import { createHash } from "node:crypto";
import { closeSync, createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { once } from "node:events";
import { basename, dirname, extname, join, resolve as resolvePath } from "node:path";
import { coreAnswer, refusalError, type CoreRefusal } from "./core-errors.js";
import { optionsJson } from "./host-util.js";
import "./engine-node.js";
import { loadJobsBackend } from "./engine.js";
import { BatchlingError, InvalidOptionError } from "./errors.js";
import type { FileType, JobProvider, JobSource, JobSpec, JsonValue, ProviderEndpoint } from "./generated/core.js";
import { readStateHeader, statSize } from "./batch-files.js";
import { BatchRun } from "./batch-run.js";
import { JobTable } from "./job-table.js";
import { InvalidJobsError, MAX_JOB_PROBLEMS, SourceChangedError, type BatchEvent, type BatchOptions, type BatchStats, type JobDefaults, type JobInput, type JobProblem, type JobSpecOf, type JobsSource, type Observers, type PreparedJob, type ProviderName, type ResponseModel, type RunJobs, type SourceFile } from "./batch-types.js";


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
function checkOptions(call: "options" | "defaults" | "costLimit" | "job" | "prices", value: unknown, depth: number, jobId = ""): void {
  coreAnswer<object>(loadJobsBackend().batchCheck(call, optionsJson(value, { depth }), jobId));
}

export class Batch {
  readonly #options: BatchOptions;
  #defaults: JobDefaults = {};
  #costLimitUsd: number | null = null;
  #observers: Observers = { progress: [], events: [] };
  /** The jobs in order, and each one's position by id. */
  readonly #jobs = new JobTable();
  readonly #sources: SourceFile[] = [];

  constructor(options: BatchOptions) {
    // Keys, paths, counts and provider names: the core's rules (core/src/host/batch_options.rs).
    checkOptions("options", options, 2);
    if (options.prices !== undefined) checkOptions("prices", options.prices, 3);
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
    const id = this.#checkJob(job, this.#jobs.size);
    this.#jobs.addInline({ ...job, id });
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

  /** `job`'s id (given, else from its position), the job checked by the core's job rules (keys,
   * and its shape: messages, or file + prompt) and its id against the ids added (those of the
   * source being read among them: a source with a bad job is rolled back). */
  #checkJob(job: JobInput, position: number): string {
    const id = (job !== null && typeof job === "object" ? job.id : undefined) ?? `job-${position + 1}`;
    checkOptions("job", job, 1, String(id));
    if (this.#jobs.has(id)) throw new InvalidOptionError("job.id", `duplicate job id \`${id}\`: ids must be unique`);
    return id;
  }

  #addIterable(source: Iterable<JobInput>): void {
    const before = this.#jobs.size;
    const problems = new Problems("iterable");
    let index = 0;
    for (const job of source) {
      try {
        const id = this.#checkJob(job, before + index);
        this.#jobs.addInline({ ...job, id });
      } catch (error) {
        problems.add({ index }, error, job);
      }
      index++;
    }
    if (problems.any()) this.#jobs.rollBack(before);
    problems.throwIfAny();
  }

  /** Reads a `.jsonl` file once: hashes it, checks each line, and keeps where each job's line is. */
  async #addFile(path: string, kind: JobSource["kind"], recordedIterable = false): Promise<void> {
    if (!existsSync(path)) throw new BatchlingError("ERR_BATCHLING_INVALID_JOBS", `job source not found: ${path}`);
    const file: SourceFile = { source: { kind, path, sha256: "", bytes: 0, jobs: 0 } };
    const before = this.#jobs.size;
    let jobs = 0;
    this.#jobs.beginFile(file);
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
        const id = this.#checkJob(job, before + jobs);
        this.#jobs.addLine(id, offset, length);
        jobs++;
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
    if (problems.any()) this.#jobs.rollBack(before);
    problems.throwIfAny();
    file.source = { kind, path, sha256: hash.digest("hex"), bytes: offset, jobs };
    this.#sources.push(file);
  }

  /** An async iterable, recorded as JSON lines next to the state file as it is read, then added
   * as that file. On a resume whose state file records this source, the recording is read and
   * the iterable is not. */
  async #addRecorded(source: AsyncIterable<JobInput>): Promise<void> {
    const stateFile = resolvePath(this.#options.stateFile);
    const path = `${stateFile}.source-${this.#sources.length + 1}.jsonl`;
    const recorded = existsSync(stateFile) ? readStateHeader(stateFile).sources[this.#sources.length] : undefined;
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
    const endpointsJson = this.#endpointsJson();
    this.#validate(endpointsJson);
    const table = this.#jobs;
    const jobs: RunJobs = {
      count: table.size,
      id: (position) => table.id(position),
      indexOf: (id) => table.indexOf(id),
      inline: table.inlineIds(),
      spec: (position) => this.#jobSpec(position),
      endpointsJson,
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
    const recorded = readStateHeader(stateFile).sources;
    const answer = JSON.parse(loadJobsBackend().jobCheckSources(JSON.stringify(recorded), JSON.stringify(sources))) as { ok: true } | (CoreRefusal & { path?: string });
    if (answer.ok) return;
    if (answer.code === "ERR_BATCHLING_SOURCE_CHANGED") {
      throw new SourceChangedError(answer.path ?? "", `cannot resume the run in ${stateFile}: ${answer.error}`);
    }
    throw refusalError(answer);
  }

  /** Build every job's request once and keep none: any bad job fails the run before anything
   * is sent. The run builds each again when its batch forms. */
  #validate(endpointsJson: string): void {
    try {
      for (let position = 0; position < this.#jobs.size; position++) this.#prepareJob(position, endpointsJson);
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

  /** The job's request, built by the core, which picks the provider that serves its model and
   * that provider's endpoint in `endpointsJson` (refusing one without an API key). */
  #prepareJob(position: number, endpointsJson: string): PreparedJob {
    const { id, specJson, validate } = this.#jobSpec(position);
    const built = coreAnswer<{ request: PreparedJob["request"] }>(loadJobsBackend().jobBuildRequest(specJson, endpointsJson));
    return { id, specJson, request: built.request, validate };
  }

  /** The job's spec: its line read again (a source file's job), merged over the defaults. */
  #jobSpec(position: number): JobSpecOf {
    const job = this.#jobs.read(position);
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
      // The user's price for the model, if any (the core costs the job at it).
      price: Object.hasOwn(this.#options.prices ?? {}, model) ? this.#options.prices![model] : undefined,
    };
    return { id: job.id!, specJson: JSON.stringify(spec), validate: schema?.validate };
  }

  /** The endpoint of each provider the job builder serves, read once per run: the caller's
   * settings, else the environment variables the core names, else the default (the core trims a
   * trailing slash). A provider without a key gets an empty one: the core refuses its jobs. */
  #endpointsJson(): string {
    const env = (name: string | null | undefined) => (name ? process.env[name] : undefined);
    const endpoints: Partial<Record<ProviderName, ProviderEndpoint>> = {};
    for (const info of facts().providers) {
      const settings = this.#options.providers?.[info.name];
      endpoints[info.name] = {
        baseUrl: settings?.baseURL ?? env(info.baseUrlEnv) ?? info.defaultBaseUrl ?? "",
        apiKey: settings?.apiKey ?? env(info.apiKeyEnv) ?? "",
      };
    }
    return JSON.stringify(endpoints);
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

  any(): boolean {
    return this.#count > 0;
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
