// Generated from the Rust types of batchling-core by `npm run gen:types`
// (core/src/host/ts_types.rs). Do not edit: change the Rust type and regenerate.
/* eslint-disable */

export type JsonValue = number | string | boolean | Array<JsonValue> | { [key in string]: JsonValue } | null;

export type ProviderId = "openai" | "anthropic" | "gemini" | "groq" | "doubleword" | "azure" | "mistral" | "together" | "xai";

export type PriceOverride = { provider?: ProviderId, inputPerMTok: number, outputPerMTok: number, 
/**
 * OpenAI / Gemini cached input; also Anthropic cache reads when `cacheReadPerMTok` is unset.
 */
cachedInputPerMTok?: number, 
/**
 * Anthropic 5-minute cache writes (1-hour writes stay 2× input).
 */
cacheWritePerMTok?: number, cacheReadPerMTok?: number, };

export type HostSpec = { baseUrl: string, provider: ProviderId, completionWindow?: string, maxRequests?: number, maxFileBytes?: number, 
/**
 * Gemini hosts only: see [`HostSettings::max_inline_bytes`].
 */
maxInlineBytes?: number, };

export type InterceptorOptions = { batchSize?: number, batchWindowMs?: number, pollIntervalMs?: number, dryRun?: boolean, cache?: boolean, retryAttempts?: number, retryBackoffMs?: number, retryMaxBackoffMs?: number, jitterSeed?: number, tagSeed?: number, 
/**
 * Whether the journal store keeps answers (a host option; default true). The job runner's
 * state file does not (answers go to its results): the cache then indexes none, so a run's
 * memory does not grow with its answers.
 */
keepAnswers?: boolean, maxConcurrentBatches?: number, costLimitUsd?: number, lineAttempts?: number, resubmit?: boolean, maxEnqueuedTokens?: number, deadlineMs?: number, maxSyncFallbacks?: number, 
/**
 * Hosts the user declared (`[{baseUrl, provider, completionWindow?, maxRequests?,
 * maxFileBytes?, maxInlineBytes?}]`; `maxInlineBytes` for Gemini hosts only).
 */
hosts: Array<HostSpec>, 
/**
 * The user's prices by model id (`{ "<model>": { provider?, inputPerMTok, … } }`).
 */
prices?: { [key in string]: PriceOverride }, 
/**
 * Days a journalled answer is kept (`cache: { maxAgeDays }`; default 30, the providers'
 * result retention).
 */
cacheMaxAgeDays?: number, 
/**
 * `deleteProviderFiles` (default true).
 */
deleteProviderFiles?: boolean, 
/**
 * The host's clocks at one instant (host options): wall (ms since the epoch) and the
 * monotonic `now` it passes the engine.
 */
clockWallMs?: number, clockMonotonicMs?: number, 
/**
 * Fleet mode (`{ owner, leaseMs?, graceMs?, pollMs?, answerTtlMs?, recordTtlMs? }`): the
 * engine's requests go through a fleet member and the host's store; the store is the
 * journal, so `cache` must be left out (or `false`).
 */
fleet?: FleetMemberConfig, 
/**
 * A host option: the fleet owner id this engine would take (a fresh random id of
 * `A-Z a-z 0-9 _ -` per engine) if the user's `cache: { redis }` turns fleet mode on. A host
 * that cannot reach Redis passes none, and `cache.redis` is refused there. Consumed by the
 * option check ([`crate::host::options::interceptor_options`]); the engine ignores it.
 */
fleetOwner?: string, };

export type HostBatcherOptions = { maxBatchSize: number, maxDelayMs: number, maxQueueSize?: number, maxConcurrentBatches?: number, retryAttempts?: number, retryBackoffMs?: number, retryMaxBackoffMs?: number, timeoutMs?: number, jitterSeed?: number, };

export type OptionError = { 
/**
 * The option's name as the user writes it, nested ones with dots and indexes.
 */
option: string, 
/**
 * What is wrong and what is allowed, e.g. `must be an integer >= 1, got 0`.
 */
message: string, };

export type FailCode = "ERR_BATCHLING_CLOSED" | "ERR_BATCHLING_CANCELLED" | "ERR_BATCHLING_AMBIGUOUS_CREATE" | "ERR_BATCHLING_PROTOCOL" | "ERR_BATCHLING_PROVIDER_UNAVAILABLE" | "ERR_BATCHLING_COST_LIMIT" | "ERR_BATCHLING_INVALID_DEADLINE" | "ERR_BATCHLING_LINES_NOT_RUN" | "ERR_BATCHLING_BATCH_GONE" | "ERR_BATCHLING_STORE_UNAVAILABLE";

export type SerializableRequest = { method: string, url: string, headers: Array<[string, string]>, body: string, 
/**
 * `Some("manual")`: hand the redirect answer back instead of following it (the fetch
 * `redirect` option). Adapters ask for it with [`providers::REDIRECT_MANUAL_HEADER`], which
 * is taken off here and never sent.
 */
redirect?: "manual", };

export type LifecycleEvent = { "kind": "requestQueued", provider: ProviderId, endpoint: string, model: string, } | { "kind": "cacheHit", provider: ProviderId, model: string, resumedBatch: string | null, } | { "kind": "batchSubmitting", job: number, provider: ProviderId, model: string, requests: number, dryRun: boolean, 
/**
 * At batch prices; `None` for a model with no known price.
 */
estimatedUsd: number | null, } | { "kind": "batchSubmitted", job: number, provider: ProviderId, batchId: string, requests: number, } | { "kind": "batchPolled", job: number, batchId: string, state: string, total: number, completed: number, failed: number, 
/**
 * Estimated time left, from the provider's counts: the requests still to finish at the
 * rate they finished since this run first saw the batch. `None` until progress is seen.
 */
etaMs: number | null, } | { "kind": "batchFinished", job: number, batchId: string, state: string, } | { "kind": "resultsReceived", job: number, batchId: string, results: number, } | { "kind": "linesResubmitted", job: number, batchId: string, state: string, requests: number, } | { "kind": "retry", job: number, step: string, 
/**
 * This retry's number, and how many the budget allows before the call gives up.
 */
attempt: number, maxAttempts: number, delayMs: number, 
/**
 * Why: `HTTP 429: …`, or the transport error (`fetch failed (… ECONNREFUSED …)`).
 */
reason: string, 
/**
 * The host the failed call went to (`api.openai.com`).
 */
host: string, } | { "kind": "enqueuedLimit", provider: ProviderId, model: string, 
/**
 * Requests waiting, and their estimated input tokens.
 */
requests: number, tokens: number, limitTokens: number | null, 
/**
 * This queue's batches still in flight.
 */
batchesInFlight: number, reason: string, } | { "kind": "deadlineFallback", provider: ProviderId, model: string, sent: boolean, tooClose: boolean, batchId: string | null, reason: string, } | { "kind": "warning", message: string, };

export type AnswerPlace = { line: number, offset: number, length: number, };

export type CompactLine = { "write": string } | { "copy": AnswerPlace };

export type CacheStats = { 
/**
 * Lines read, blank and damaged ones included.
 */
lines: number, 
/**
 * Lines a compaction keeps.
 */
liveLines: number, 
/**
 * Answers kept (within the age limit, or without a time).
 */
answers: number, 
/**
 * Answers kept that have no time (journalled before batchling recorded one): never aged out.
 */
undatedAnswers: number, 
/**
 * Answers past the age limit: dropped at load, left out by the next compaction.
 */
expiredAnswers: number, 
/**
 * Provider batches a re-run would resume (submitted, not yet answered).
 */
liveBatches: number, 
/**
 * Creates whose outcome is unknown (a re-run looks their batch up by its tag).
 */
intents: number, damagedLines: number, 
/**
 * The oldest and newest kept answer's time (ms since the epoch), among those that have one.
 */
oldestAnswerMs: number | null, newestAnswerMs: number | null, 
/**
 * The age limit applied, in ms; `None` without one.
 */
maxAgeMs: number | null, };

export type Output = { "type": "passThrough", request: number, reason: string, } | { "type": "send", call: number, http: SerializableRequest, stream?: "lines", } | { "type": "respond", request: number, status: number, headers: Array<[string, string]>, body: string, } | { "type": "respondStored", request: number, fingerprint: string, place: AnswerPlace, } | { "type": "jobResult", request: number, ok: boolean, costUsd: number | null, line: string, } | { "type": "fail", request: number, code: FailCode, message: string, } | { "type": "persist", line: string, } | { "type": "store", action: number, op: StoreAction, answer?: string, } | { "type": "event", event: LifecycleEvent, } | { "type": "drained" };

export type QueueReport = { provider: ProviderId, endpoint: string, model: string, requests: number, batches: number, cacheHits: number, 
/**
 * Estimated from the request bodies (input ≈ JSON chars / 4, output = the max tokens asked
 * for); `None` when the model's price is unknown.
 */
estimatedSyncUsd: number | null, estimatedBatchUsd: number | null, 
/**
 * What the answers received so far cost, from the usage each reported, at the batch price
 * (prompt-cache reads and writes, cached input and long-context tiers at their rates);
 * `None` before any priced answer. The estimate is an upper bound of it.
 */
actualBatchUsd: number | null, 
/**
 * The answers `actual_batch_usd` covers.
 */
answersCosted: number, priceNote: string, 
/**
 * Requests waiting for headroom under their queue's enqueued-token limit now (a provider's
 * refusal, or `maxEnqueuedTokens`); in a dry run, the requests that would have waited under
 * `maxEnqueuedTokens`.
 */
waitingForHeadroom: number, 
/**
 * Requests sent to the normal endpoint after (or, too close, instead of) waiting for a
 * batch (`deadlineMs`), and their estimated cost at sync prices (`None`: unknown price).
 */
syncFallbacks: number, syncFallbackUsd: number | null, 
/**
 * Requests paid twice: sent sync while in a batch whose line for them then came back
 * (this run's, and journalled ones answered from the cache).
 */
paidTwice: number, 
/**
 * Requests sent sync while in a batch that has not ended yet (or, from the journal, whose
 * end was not seen): they may still be paid twice.
 */
maybePaidTwice: number, 
/**
 * Provider-side files (uploaded inputs, output and error files) deleted once their
 * batch's results were journalled, and deletes that failed (each also a warning).
 */
filesDeleted: number, fileDeletesFailed: number, };

export type EngineStatus = { 
/**
 * Items waiting: queued in a group, or in a cut batch waiting for its first run.
 */
pending: number, 
/**
 * Items in a running batch.
 */
processing: number, 
/**
 * Items whose batch returned a result for them (success or their own error).
 */
processed: number, 
/**
 * Items rejected because their batch or they themselves failed.
 */
failed: number, 
/**
 * Batches cut.
 */
batches: number, 
/**
 * Items per cut batch, on average.
 */
averageBatchSize: number, 
/**
 * Host time of the latest cut.
 */
lastBatchTime?: number, 
/**
 * Batch attempts that were retried.
 */
retried: number, 
/**
 * Adds refused (queue full, closed) plus items rejected by an aborting close.
 */
rejected: number, cancelled: number, timedOut: number, 
/**
 * Items added and not yet in a running batch: what `max_queue_size` bounds (the same
 * count as `pending`; a batch waiting for its retry already ran and is not queued).
 */
queueSize: number, 
/**
 * The configured `max_queue_size`; `None` when the queue is unbounded.
 */
maxQueueSize: number | null, 
/**
 * `queue_size` has reached `max_queue_size`: the next add is refused. Never true unbounded.
 */
isQueueFull: boolean, isQueueEmpty: boolean, };

export type Content = string | Array<JsonValue>;

export type Message = { 
/**
 * "system", "user" or "assistant".
 */
role: string, content: Content, };

export type FileInput = { name: string, 
/**
 * "application/pdf", "image/png", "text/plain", ...
 */
mediaType: string, dataBase64: string, };

export type JobSpec = { 
/**
 * Unique within a batch; names the job in errors and results.
 */
id: string, model: string, 
/**
 * A conversation. Excludes `file` / `prompt`.
 */
messages?: Array<Message> | null, 
/**
 * A document or image to ask about; needs `prompt`.
 */
file?: FileInput | null, 
/**
 * The question or instruction. On its own it is a one-message conversation.
 */
prompt?: string | null, 
/**
 * Text, or content blocks (Anthropic's `{type: "text", text, cache_control}`), which
 * Anthropic gets unchanged and other providers as their text.
 */
system?: Content | null, temperature?: number | null, maxTokens?: number | null, 
/**
 * A JSON Schema the answer must follow.
 */
responseSchema?: JsonValue | null, 
/**
 * Provider-specific body fields, deep-merged into the request body last.
 */
extra?: { [key in string]: JsonValue } | null, 
/**
 * The user's price for this job's model (the host sets it from the `prices` option): its
 * cost is computed at it, and with a `provider` a model the registry does not know (a
 * fine-tune id) is accepted as that provider's.
 */
price?: PriceOverride | null, };

export type ProviderEndpoint = { 
/**
 * No trailing slash needed. Empty means the provider's default ([`crate::jobs::default_base_url`]).
 */
baseUrl: string, 
/**
 * Empty: no auth header is sent (e.g. a proxy adds it).
 */
apiKey: string, 
/**
 * Further headers for every request (`OpenAI-Project`, `anthropic-beta`, proxy auth, ...).
 */
headers?: { [key in string]: string }, };

export type Citation = { citedText: string, 
/**
 * The cited document's title (the file name), else "document <n>".
 */
source: string, 
/**
 * 1-based, inclusive, for PDF page citations.
 */
startPage: number | null, endPage: number | null, };

export type JobResult = { 
/**
 * The job's `id`.
 */
jobId: string, 
/**
 * A 2xx answer with usable content (and, with a schema, valid structured output).
 */
ok: boolean, 
/**
 * The HTTP status of the (synthetic) response.
 */
status: number, 
/**
 * The raw answer text. With a schema: the JSON text (Anthropic: the tool input,
 * serialised). Kept when the JSON is invalid, so it can be inspected.
 */
response: string | null, 
/**
 * The structured answer, only when it parsed and matched the schema. For OpenAI (whose
 * strict mode makes optional properties required and nullable) the nulls of optional
 * properties that do not accept null are dropped first: an absent field stays absent.
 */
parsedResponse: JsonValue | null, citations: Array<Citation>, 
/**
 * As the provider reported them (Anthropic: including cache reads/writes; Gemini output:
 * candidates plus thinking tokens, which are billed as output).
 */
inputTokens: number | null, outputTokens: number | null, 
/**
 * The reported usage at the model's batch price (the user's override, else the catalog's),
 * prompt-cache reads and writes at their own rates. `None` without usage or a known price.
 */
costUsd: number | null, 
/**
 * The provider's own stop reason ("stop", "end_turn", "MAX_TOKENS", ...).
 */
finishReason: string | null, 
/**
 * The answer was cut off by the output token cap.
 */
truncated: boolean, error: string | null, };

export type JobProvider = { name: ProviderId, defaultBaseUrl: string | null, 
/**
 * The environment variables its API key and base URL are read from.
 */
apiKeyEnv: string | null, baseUrlEnv: string | null, };

export type FileType = { extension: string, mediaType: string, };

export type SourceKind = "file" | "recorded";

export type JobSource = { kind: SourceKind, 
/**
 * The file's absolute path.
 */
path: string, 
/**
 * The SHA-256 of the file's bytes, as lowercase hex.
 */
sha256: string, 
/**
 * The file's size.
 */
bytes: number, 
/**
 * The jobs it holds (non-blank lines).
 */
jobs: number, };

export type RunState = { version: number, 
/**
 * Where the run writes its results.
 */
resultsDir: string, 
/**
 * How many jobs the run has: those in `jobIds` and every source's.
 */
jobs: number, 
/**
 * The ids of the jobs added one by one, in the order they were added (in state files from
 * before `jobs`: every job's). A source's jobs are its lines, not listed.
 */
jobIds: Array<string>, 
/**
 * Each job's result file name in `resultsDir`, in `jobIds` order.
 */
resultFiles: Array<string>, 
/**
 * The engine journal lines (blank lines dropped), for the engine to resume from.
 */
journal: Array<string>, 
/**
 * Distinct provider batches the journal records as submitted.
 */
batchesSubmitted: number, 
/**
 * Where the jobs came from, in the order they were added (empty: none recorded).
 */
sources: Array<JobSource>, };

export type RunSummary = { jobs: number, 
/**
 * Jobs whose result is `ok`.
 */
completed: number, 
/**
 * Jobs with a result that is not `ok`.
 */
failed: number, 
/**
 * Jobs without a result file.
 */
pending: number, 
/**
 * The sum of the results' `costUsd`.
 */
costUsd: number, 
/**
 * `ok` results without a `costUsd` (a model with no known price).
 */
unpriced: number, complete: boolean, };

export type LiveBatch = { batchId: string, provider: ProviderId, baseUrl: string, endpoint: string, model: string, 
/**
 * The batch's requests, and those of them with no answer in the journal; `None` in a job
 * run's state file, which keeps its answers in the results directory (a batch there is
 * listed until its requests are released; the provider says whether it ended).
 */
requests: number, pending: number | null, 
/**
 * A `batchling batches cancel` of it is journalled.
 */
cancelled: boolean, 
/**
 * When the provider accepted it (wall clock, ms since the epoch), and how long before the
 * `now_ms` the host passed in; `None` for lines written before batchling recorded the time.
 */
submittedAtMs: number | null, ageMs: number | null, 
/**
 * What its requests answered in the journal cost, at the batch price of the pricing table
 * (the rule of the close report's `actualBatchUsd`, without a run's `prices` overrides),
 * from the usage each answer reports. `None` in a job run's state file (its answers are in
 * the results directory) and for a model of unknown price; `0` before any answer.
 */
costSoFarUsd: number | null, 
/**
 * The answers `cost_so_far_usd` covers (2xx answers reporting usage).
 */
answersCosted: number, 
/**
 * The environment variable the provider's API key is read from, if the host knows one.
 */
apiKeyEnv: string | null, };

export type BatchProgress = { 
/**
 * The provider's own state ("in_progress", "ended", "BATCH_STATE_RUNNING", …).
 */
state: string, total: number, completed: number, failed: number, 
/**
 * The provider holds no more work for it (completed, cancelled, expired, failed).
 */
ended: boolean, };

export type ServeConfig = { 
/**
 * The address to listen on: "127.0.0.1" (the default), "::1", "localhost", or any other
 * address (which needs a token).
 */
listen: string, 
/**
 * The port actually bound (the host binds first when asked for port 0).
 */
port: number, 
/**
 * Clients must send it in [`TOKEN_HEADER`]; required unless `listen` is a loopback address.
 */
token?: string, 
/**
 * `--host provider=baseUrl`: replaces the provider's upstream (the last one per provider).
 */
hosts: Array<HostSpec>, };

export type ServeRoute = { provider: ProviderId, 
/**
 * "/openai/v1": no trailing slash.
 */
prefix: string, 
/**
 * "https://api.openai.com/v1": no trailing slash.
 */
upstream: string, 
/**
 * "https://api.openai.com": where a path under `/<provider>` but outside `prefix` goes
 * (Gemini's `/gemini/v1/…` and `/gemini/upload/…` beside `/gemini/v1beta/…`).
 */
origin: string, };

export type ServeRefusal = "ERR_BATCHLING_SERVE_HOST" | "ERR_BATCHLING_SERVE_TOKEN" | "ERR_BATCHLING_SERVE_ROUTE";

export type ServeDecision = { "kind": "health" } | { "kind": "metrics" } | { "kind": "forward", provider: ProviderId, url: string, } | { "kind": "refuse", status: number, code: ServeRefusal, message: string, };

export type FleetMemberConfig = { owner: string, leaseMs?: number, graceMs?: number, pollMs?: number, answerTtlMs?: number, recordTtlMs?: number, };

export type RedisStore = { 
/**
 * `redis://[user:password@]host[:port][/db]` or `rediss://…`.
 */
url: string, prefix?: string, connectTimeoutMs?: number, retryForMs?: number, };

export type ClaimRef = { key: string, token: string, };

export type FleetRecord = { key: string, value: string, };

export type StoreAction = { "kind": "claim", key: string, token: string, leaseMs: number, } | { "kind": "renew", claims: Array<ClaimRef>, leaseMs: number, } | { "kind": "writeIfOwner", claims: Array<ClaimRef>, records: Array<FleetRecord>, ttlMs: number, } | { "kind": "read", keys: Array<string>, } | { "kind": "release", key: string, token: string, } | { "kind": "putAnswer", key: string, fingerprint: string, ttlMs: number, };

export type StoreOutcome = { "kind": "claimed" } | { "kind": "heldBy", owner: string, } | { "kind": "renewed", keys: Array<string>, } | { "kind": "written" } | { "kind": "notOwner", lost: Array<string>, } | { "kind": "values", values: Array<string | null>, } | { "kind": "done" };

export type FleetEvent = { "kind": "arrive", request: number, fingerprint: string, } | { "kind": "storeOutcome", action: number, outcome: StoreOutcome, } | { "kind": "tick" } | { "kind": "cut", fingerprints: Array<string>, } | { "kind": "batchCreated", tag: string, batchId: string, } | { "kind": "createUnknown", tag: string, } | { "kind": "batchFound", tag: string, batchId: string | null, } | { "kind": "batchAnswered", fingerprint: string, } | { "kind": "storeFailed", action: number, error: string, } | { "kind": "drop", fingerprint: string, } | { "kind": "lineEnded", fingerprint: string, rebatch: boolean, };

export type FleetOutput = { "kind": "store", action: number, op: StoreAction, } | { "kind": "enqueue", fingerprint: string, } | { "kind": "waitForAnswer", fingerprint: string, } | { "kind": "createBatch", tag: string, fingerprints: Array<string>, sendByMs: number, } | { "kind": "findBatch", tag: string, } | { "kind": "resume", tag: string, batchId: string, } | { "kind": "answer", request: number, fingerprint: string, fromStore: boolean, } | { "kind": "scheduleTimer", atMs: number, } | { "kind": "unavailable", fingerprint: string, requests: Array<number>, error: string, };

// The batcher's numeric outcome encoding (core/src/host/wire.rs).
export const RUN_BATCH = 1;
export const RESOLVE = 2;
export const REJECT = 3;
export const GROUP_RELEASED = 4;
export const DRAINED = 5;
export const QUEUE_FULL = -1;
export const CLOSED = -2;
export const REASON_TIMED_OUT = 1;
export const REASON_CANCELLED = 2;
export const REASON_ITEM_FAILED = 3;
export const REASON_BATCH_FAILED = 4;
export const REASON_ABORTED = 5;
