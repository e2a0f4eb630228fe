// The engine contract the hosts drive: the native addon and (later) the wasm build both satisfy it.
// Every call takes the host time in ms, writes the call's outcome into the host's scratch
// Float64Array (layout in core/src/host/wire.rs) and returns its length; an outcome longer than the
// scratch buffer is fetched with takeOverflow().

/** What `NativeBatcher` takes: the options the core's `checkBatcherOptions` answers with (generated
 * from the core's `HostBatcherOptions`), and whether outcomes name items by the host's ids
 * (given to `addWithIds`; layout in core/src/host/wire.rs, `HostIds`). */
export type EngineOptions = HostBatcherOptions & { hostItemIds?: boolean };

export interface BatcherEngine {
  add(nowMs: number, groups: Uint32Array, moreFollow: boolean, scratch: Float64Array): number;
  /** `add` whose items get the host ids `firstId`, `firstId + 1`, … (option `hostItemIds`). */
  addWithIds(nowMs: number, groups: Uint32Array, firstId: number, moreFollow: boolean, scratch: Float64Array): number;
  tick(nowMs: number, scratch: Float64Array): number;
  /** Handlers returned: `batches[i]` failed on its own at the next `failedCounts[i]` positions of `failed`. */
  completedMany(nowMs: number, batches: Float64Array, failedCounts: Uint32Array, failed: Uint32Array, scratch: Float64Array): number;
  failed(nowMs: number, batch: number, retryable: boolean, scratch: Float64Array): number;
  cancel(nowMs: number, item: number, scratch: Float64Array): number;
  flush(nowMs: number, scratch: Float64Array): number;
  close(nowMs: number, abort: boolean, scratch: Float64Array): number;
  takeOverflow(): Float64Array;
  status(): EngineStatus;
}

export interface Backend {
  name: "native" | "wasm";
  NativeBatcher: new (options: EngineOptions) => BatcherEngine;
  /** The user's `RequestBatcher` options (see host-util.ts `optionsJson`) checked by the core:
   * `{ ok: true, options: HostBatcherOptions }` or a refusal (core-errors.ts). */
  checkBatcherOptions(userJson: string): string;
}

// The status and the wire constants are generated from the core's types (core/src/host/ts_types.rs).
export type { EngineStatus } from "./generated/core.js";
export {
  CLOSED as ADD_CLOSED,
  DRAINED,
  GROUP_RELEASED,
  QUEUE_FULL as ADD_QUEUE_FULL,
  REASON_ABORTED,
  REASON_BATCH_FAILED,
  REASON_CANCELLED,
  REASON_ITEM_FAILED,
  REASON_TIMED_OUT,
  REJECT,
  RESOLVE,
  RUN_BATCH,
} from "./generated/core.js";
import type { EngineStatus, HostBatcherOptions } from "./generated/core.js";


/** The provider batching engine: every call returns `{"deadline", "outputs"}` as JSON. */
export interface InterceptorEngine {
  /** A chunk of the journal: whole lines in order, each ended by `\n`. */
  loadCache(text: string): string;
  /** After the load: `null`, or the journal's live lines (JSON `CompactLine[]`) to write in its
   * place; then `journalCompacted()`. */
  journalCompaction(): string;
  journalCompacted(): boolean;
  /** `batchling cache prune`: the live lines (JSON `CompactLine[]`) whatever share is superseded. */
  journalPrune(): string;
  /** `batchling cache stats`: the loaded journal's `CacheStats` as JSON. */
  cacheStats(): string;
  /** `arrivedMs`: when the call reached the host (a client's own timer runs from then); the
   * submit time when left out. */
  submit(nowMs: number, request: number, method: string, url: string, headersJson: string, body: string, arrivedMs?: number): string;
  /** Jobs of the job builder in one call (`specsJson`: `[JobSpec, …]`, requests `firstRequest`,
   * `firstRequest + 1`, …), answered with `jobResult` outputs; a job that does not build refuses
   * the call (`{ ok: false, code, error }`) and none is submitted. */
  submitJobs(nowMs: number, firstRequest: number, specsJson: string, endpointsJson: string): string;
  response(nowMs: number, call: number, status: number, headersJson: string, body: string): string;
  /** Whole lines (ending with "\n") of a 2xx answer to a call sent with `stream: "lines"`; the
   * call ends with `response` and the rest of the body. A chunk ending mid-line is refused. */
  responseChunk(nowMs: number, call: number, text: string): string;
  transportError(nowMs: number, call: number, message: string): string;
  tick(nowMs: number): string;
  /** Fleet mode (`cache: { redis }`): a store action's outcome (JSON
   * `StoreOutcome`), or its failure (the store could not be reached). */
  storeOutcome(nowMs: number, action: number, outcomeJson: string): string;
  storeFailed(nowMs: number, action: number, error: string): string;
  cancel(nowMs: number, request: number): string;
  /** The caller's signal aborted (`timeoutReason`: its reason is a `TimeoutError`): the core
   * keeps the call if that was its client's own timer, else cancels it. */
  abort(nowMs: number, request: number, timeoutReason: boolean): string;
  flush(nowMs: number): string;
  close(nowMs: number): string;
  report(): string;
  /** Provider batches not yet ended: in flight, or cut and waiting for admission. */
  liveBatches(): number;
}

export interface InterceptorBackend {
  name: "native" | "wasm";
  NativeInterceptor: new (optionsJson: string) => InterceptorEngine;
  /** The user's `batchify()` options over the host's own engine options (`cache`, `tagSeed`,
   * limits), checked by the core: `{ ok: true, options: InterceptorOptions }` or a refusal. */
  checkInterceptorOptions(userJson: string, hostJson: string): string;
}

/** The job builder's core functions (JSON in and out; see core/src/host/jobs.rs,
 * batch_options.rs and run_state.rs). Refusals come back as data (see core-errors.ts). */
export interface JobsBackend {
  jobProvider(specJson: string): string;
  /** `endpointsJson`: each provider's endpoint by name; the core picks the job's provider, refuses
   * one without an API key, and answers `{ ok, request }`. */
  jobBuildRequest(specJson: string, endpointsJson: string): string;
  jobExtractResult(specJson: string, status: number, body: string): string;
  /** `{ ok, providers: JobProvider[] }`. */
  jobProviders(): string;
  /** `{ ok, fileTypes: FileType[] }`. */
  jobFileTypes(): string;
  /** `call`: "options" | "defaults" | "costLimit" | "job"; `{ ok: true }` or the refused option. */
  batchCheck(call: string, valueJson: string, jobId: string): string;
  /** `{ ok, line }`: the state file's header line; `sourcesJson`: a JSON array of JobSource. */
  jobStateHeader(resultsDir: string, jobIdsJson: string, sourcesJson: string): string;
  /** `{ ok: true }` or `{ ok: false, code: "ERR_BATCHLING_SOURCE_CHANGED", path, error }`. */
  jobCheckSources(recordedJson: string, currentJson: string): string;
  /** `{ ok, state: RunState }`. */
  jobReadState(text: string): string;
  /** Whether the state file keeps this engine journal line. */
  jobStateKeeps(line: string): boolean;
  jobResultFileName(id: string): string;
  /** `textsJson`: each job's result file text or null; `{ ok, summary: RunSummary, results }`. */
  jobSummarizeResults(textsJson: string): string;
  /** `batchling batches` (core/src/host/batches.rs): `{ ok, batches: LiveBatch[] }`, aged to
   * `nowMs` (wall clock). */
  batchesLive(journal: string, nowMs: number): string;
  /** `action`: "poll" | "cancel"; `{ ok, request }` (the call, carrying `apiKey`). */
  batchesCall(journal: string, batchId: string, action: string, apiKey: string): string;
  /** `{ ok, progress: BatchProgress }` from the poll's answer. */
  batchesProgress(journal: string, batchId: string, status: number, headersJson: string, body: string): string;
  /** `{ ok, line }`: the journal record of an accepted cancel. */
  batchesCancelRecord(journal: string, batchId: string, status: number, headersJson: string, body: string): string;
  /** `batchling serve` (core/src/host/serve.rs): `{ ok, routes: ServeRoute[], strippedHeaders, tokenHeader }`
   * or a refusal (`ERR_BATCHLING_SERVE_CONFIG`). */
  serveCheck(configJson: string): string;
}

/** `batchling serve`'s router: each request's `ServeDecision` as JSON ("" for an absent header). */
export interface ServeRouterEngine {
  decide(method: string, path: string, host: string, token: string): string;
}

/** A member of the fleet protocol (many processes sharing one store): a `FleetEvent` as JSON in,
 * `{ ok, outputs: FleetOutput[], deadline }` (or a refusal `{ ok: false, code, error, outputs }`)
 * out; `nextDeadline()` is when it wants a `tick`. */
export interface FleetMemberEngine {
  handle(nowMs: number, eventJson: string): string;
  nextDeadline(): number | null;
}

const JOBS_FUNCTIONS = [
  "jobProvider",
  "jobBuildRequest",
  "jobExtractResult",
  "jobProviders",
  "jobFileTypes",
  "batchCheck",
  "jobStateHeader",
  "jobCheckSources",
  "jobReadState",
  "jobStateKeeps",
  "jobResultFileName",
  "jobSummarizeResults",
  "batchesLive",
  "batchesCall",
  "batchesProgress",
  "batchesCancelRecord",
  "serveCheck",
] as const satisfies readonly (keyof JobsBackend)[];


/** Everything a backend module offers: the napi addon and the wasm build export the same. */
export interface EngineModule extends JobsBackend {
  name: "native" | "wasm";
  NativeBatcher: Backend["NativeBatcher"];
  checkBatcherOptions: Backend["checkBatcherOptions"];
  NativeInterceptor: InterceptorBackend["NativeInterceptor"];
  checkInterceptorOptions: InterceptorBackend["checkInterceptorOptions"];
  NativeServeRouter: new (configJson: string) => ServeRouterEngine;
  NativeFleetMember: new (configJson: string) => FleetMemberEngine;
}

/** The engine module of a loaded binding (the napi addon or the wasm glue), which both export
 * the same classes and functions by the same names: the one place it is assembled. */
export function engineModuleOf(name: EngineModule["name"], binding: Omit<EngineModule, "name">): EngineModule {
  return {
    name,
    NativeBatcher: binding.NativeBatcher,
    checkBatcherOptions: binding.checkBatcherOptions,
    NativeInterceptor: binding.NativeInterceptor,
    checkInterceptorOptions: binding.checkInterceptorOptions,
    NativeServeRouter: binding.NativeServeRouter,
    NativeFleetMember: binding.NativeFleetMember,
    ...(Object.fromEntries(JOBS_FUNCTIONS.map((fn) => [fn, binding[fn]])) as unknown as JobsBackend),
  };
}

let engineModule: EngineModule | undefined;
let engineLoader: (() => EngineModule) | undefined;

/** Install the backend a runtime entry chose (the browser / worker entry installs wasm). */
export function useEngineModule(module: EngineModule): void {
  engineModule = module;
}

/** How the Node entry loads a backend on first use (see engine-node.ts). */
export function setEngineLoader(loader: () => EngineModule): void {
  engineLoader = loader;
}

/** The engine for this process, loaded on first use. */
export function loadEngineModule(): EngineModule {
  if (engineModule) return engineModule;
  if (!engineLoader) {
    throw new Error("batchling: no engine is installed; import the package's entry for this runtime (\"batchling\" resolves it)");
  }
  engineModule = engineLoader();
  return engineModule;
}

export function loadJobsBackend(): JobsBackend {
  return loadEngineModule();
}

export function loadInterceptorBackend(): InterceptorBackend {
  return loadEngineModule();
}

export function loadBackend(): Backend {
  return loadEngineModule();
}
