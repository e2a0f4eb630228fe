//! What crosses the engine's boundary: the host's [`Input`]s, the engine's [`Output`]s and the
//! [`LifecycleEvent`]s it reports.

use serde::Serialize;

use crate::cache::AnswerPlace;
use crate::fleet::{ActionId, StoreAction, StoreOutcome};
use crate::http::{HttpRequest, HttpResponse};

pub use super::bulk::JobSubmission;
use crate::providers::{self, ProviderId};

/// A request the host intercepted; the host's own id.
pub type RequestId = u64;
/// A provider call the core asked the host to make.
pub type CallId = u64;

/// What the host is told.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Output {
    /// Not batchable: send the original request with the real fetch, untouched.
    #[serde(rename_all = "camelCase")]
    PassThrough { request: RequestId, reason: String },
    /// Perform this provider call; answer with `Input::Response` or `Input::TransportError`.
    /// `stream: "lines"` (a results file, JSONL): on a 2xx answer, read the body as it comes and
    /// hand it over in `Input::ResponseChunk`s of whole lines, then the rest in `Input::Response`;
    /// the body is never held whole. Other answers (and non-2xx ones) come whole.
    #[serde(rename_all = "camelCase")]
    Send {
        call: CallId,
        http: SerializableRequest,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, ts(optional, type = "\"lines\""))]
        stream: Option<&'static str>,
    },
    /// Answer the caller with this response, as the normal endpoint would have.
    #[serde(rename_all = "camelCase")]
    Respond {
        request: RequestId,
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Answer the caller with the stored answer at this place of the journal: the host reads
    /// that result line (its `fingerprint` must be this one) and answers with its status,
    /// headers and body.
    #[serde(rename_all = "camelCase")]
    RespondStored {
        request: RequestId,
        fingerprint: String,
        place: AnswerPlace,
    },
    /// The answer to a job submitted with `Input::SubmitJobs`: its result (the JSON line the job
    /// builder's results log holds), with what the host counts.
    #[serde(rename_all = "camelCase")]
    JobResult {
        request: RequestId,
        ok: bool,
        cost_usd: Option<f64>,
        line: String,
    },
    /// Reject the caller's fetch with an error (cancelled, closed, or the batch could not be run).
    #[serde(rename_all = "camelCase")]
    Fail {
        request: RequestId,
        code: FailCode,
        message: String,
    },
    /// Append this line to the cache journal.
    #[serde(rename_all = "camelCase")]
    Persist { line: String },
    /// Fleet mode: execute this store action atomically (e.g. `FleetRedisStore.execute(op, () =>
    /// answer)`), then hand its outcome back with `Input::StoreOutcome` (or `Input::StoreFailed`
    /// when the store could not be reached). `answer` is set only for a `putAnswer`: the answer
    /// to store, as JSON `{"status", "headers", "body"}`.
    #[serde(rename_all = "camelCase")]
    Store {
        action: ActionId,
        op: StoreAction,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(test, ts(optional))]
        answer: Option<String>,
    },
    /// A lifecycle event, for `onEvent` and the CLI's progress line.
    Event { event: LifecycleEvent },
    /// After `Close`: every request is answered.
    Drained,
}

/// Why a caller's fetch is rejected: the stable codes users match on (`err.code`).
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FailCode {
    /// The request came after `close()`.
    #[serde(rename = "ERR_BATCHLING_CLOSED")]
    Closed,
    /// Its caller's `AbortSignal` fired.
    #[serde(rename = "ERR_BATCHLING_CANCELLED")]
    Cancelled,
    /// A create was sent, its answer lost, and the provider offers no way to look it up.
    #[serde(rename = "ERR_BATCHLING_AMBIGUOUS_CREATE")]
    AmbiguousCreate,
    /// The provider's answer to a batch call could not be read.
    #[serde(rename = "ERR_BATCHLING_PROTOCOL")]
    Protocol,
    /// A batch call kept failing (429, 5xx, transport) past the retry budget.
    #[serde(rename = "ERR_BATCHLING_PROVIDER_UNAVAILABLE")]
    ProviderUnavailable,
    /// The batch would pass the cost limit (or its price is unknown).
    #[serde(rename = "ERR_BATCHLING_COST_LIMIT")]
    CostLimit,
    /// The request's `x-batchling-deadline-ms` header is not a whole number of milliseconds >= 1.
    #[serde(rename = "ERR_BATCHLING_INVALID_DEADLINE")]
    InvalidDeadline,
    /// The request went through `lineAttempts` batches and none ran it (its line was missing,
    /// or its batch expired or was cancelled first); the message names the batches.
    #[serde(rename = "ERR_BATCHLING_LINES_NOT_RUN")]
    LinesNotRun,
    /// A batch a previous run journalled is gone at the provider (404/410 on the batch or its
    /// results): providers keep a batch's results about 30 days. Its requests are released, so
    /// the next run submits them again.
    #[serde(rename = "ERR_BATCHLING_BATCH_GONE")]
    BatchGone,
    /// Fleet mode: the fleet's store (Redis) could not be reached for a step this request
    /// needed. Nothing was sent to the provider without its journal; retry once it is back.
    #[serde(rename = "ERR_BATCHLING_STORE_UNAVAILABLE")]
    StoreUnavailable,
}

impl FailCode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailCode::Closed => "ERR_BATCHLING_CLOSED",
            FailCode::Cancelled => "ERR_BATCHLING_CANCELLED",
            FailCode::AmbiguousCreate => "ERR_BATCHLING_AMBIGUOUS_CREATE",
            FailCode::Protocol => "ERR_BATCHLING_PROTOCOL",
            FailCode::ProviderUnavailable => "ERR_BATCHLING_PROVIDER_UNAVAILABLE",
            FailCode::CostLimit => "ERR_BATCHLING_COST_LIMIT",
            FailCode::InvalidDeadline => "ERR_BATCHLING_INVALID_DEADLINE",
            FailCode::LinesNotRun => "ERR_BATCHLING_LINES_NOT_RUN",
            FailCode::BatchGone => "ERR_BATCHLING_BATCH_GONE",
            FailCode::StoreUnavailable => "ERR_BATCHLING_STORE_UNAVAILABLE",
        }
    }
}

impl std::fmt::Display for FailCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SerializableRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// `Some("manual")`: hand the redirect answer back instead of following it (the fetch
    /// `redirect` option). Adapters ask for it with [`providers::REDIRECT_MANUAL_HEADER`], which
    /// is taken off here and never sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional, type = "\"manual\""))]
    pub redirect: Option<&'static str>,
}

impl From<HttpRequest> for SerializableRequest {
    fn from(mut r: HttpRequest) -> Self {
        let before = r.headers.len();
        r.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case(providers::REDIRECT_MANUAL_HEADER));
        SerializableRequest {
            method: r.method,
            url: r.url,
            redirect: (r.headers.len() != before).then_some("manual"),
            headers: r.headers,
            body: r.body,
        }
    }
}

#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum LifecycleEvent {
    #[serde(rename_all = "camelCase")]
    RequestQueued {
        provider: ProviderId,
        endpoint: String,
        model: String,
    },
    #[serde(rename_all = "camelCase")]
    CacheHit {
        provider: ProviderId,
        model: String,
        resumed_batch: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    BatchSubmitting {
        job: u64,
        provider: ProviderId,
        model: String,
        requests: usize,
        dry_run: bool,
        /// At batch prices; `None` for a model with no known price.
        estimated_usd: Option<f64>,
    },
    #[serde(rename_all = "camelCase")]
    BatchSubmitted {
        job: u64,
        provider: ProviderId,
        batch_id: String,
        requests: usize,
    },
    #[serde(rename_all = "camelCase")]
    BatchPolled {
        job: u64,
        batch_id: String,
        state: String,
        total: u64,
        completed: u64,
        failed: u64,
        /// Estimated time left, from the provider's counts: the requests still to finish at the
        /// rate they finished since this run first saw the batch. `None` until progress is seen.
        eta_ms: Option<u64>,
    },
    #[serde(rename_all = "camelCase")]
    BatchFinished {
        job: u64,
        batch_id: String,
        state: String,
    },
    #[serde(rename_all = "camelCase")]
    ResultsReceived {
        job: u64,
        batch_id: String,
        results: usize,
    },
    /// Requests of a batch that ended without running them (or, for the job builder, whose
    /// lines came back with a retryable error) go into a new batch: `state` is how the batch
    /// ended ("completed" with lines missing, "expired", "cancelled", "failed").
    #[serde(rename_all = "camelCase")]
    LinesResubmitted {
        job: u64,
        batch_id: String,
        state: String,
        requests: usize,
    },
    #[serde(rename_all = "camelCase")]
    Retry {
        job: u64,
        step: String,
        /// This retry's number, and how many the budget allows before the call gives up.
        attempt: u32,
        max_attempts: u32,
        delay_ms: u64,
        /// Why: `HTTP 429: …`, or the transport error (`fetch failed (… ECONNREFUSED …)`).
        reason: String,
        /// The host the failed call went to (`api.openai.com`).
        host: String,
    },
    /// Batches of one (provider, host, model, credential) wait for headroom under its
    /// enqueued-token limit: the provider refused one (`limitTokens` is the limit it stated, if
    /// it did), or `maxEnqueuedTokens` would be passed. They are created once a batch of theirs
    /// in flight ends (or, with none in flight, after a backoff); none of their requests ran.
    #[serde(rename_all = "camelCase")]
    EnqueuedLimit {
        provider: ProviderId,
        model: String,
        /// Requests waiting, and their estimated input tokens.
        requests: usize,
        tokens: u64,
        limit_tokens: Option<u64>,
        /// This queue's batches still in flight.
        batches_in_flight: usize,
        reason: String,
    },
    /// A request's deadline (`deadlineMs` or its `x-batchling-deadline-ms` header) passed, or is
    /// shorter than a batch's turnaround (`tooClose`): it is sent to the provider's normal
    /// endpoint (`sent`), or, when the cost limit would be passed at sync prices, not (`sent:
    /// false`: it waits for its batch). `batchId`: the batch it was in, whose line is discarded.
    #[serde(rename_all = "camelCase")]
    DeadlineFallback {
        provider: ProviderId,
        model: String,
        sent: bool,
        too_close: bool,
        batch_id: Option<String>,
        reason: String,
    },
    #[serde(rename_all = "camelCase")]
    Warning { message: String },
}

/// What the host tells the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Submit {
        request: RequestId,
        http: HttpRequest,
        /// When the call reached the host (before its body was read and the journal loaded): a
        /// client's own timer runs from then (see `abort`).
        arrived_ms: u64,
    },
    /// Jobs of the job builder, their requests built: each is answered with `Output::JobResult`
    /// (or `Output::Fail`), not a synthetic response.
    SubmitJobs {
        jobs: Vec<JobSubmission>,
    },
    /// The (final part of the) answer to a call. After `ResponseChunk`s, `response.body` is
    /// the rest of the body after the last chunk (possibly empty).
    Response {
        call: CallId,
        response: HttpResponse,
    },
    /// Part of a 2xx answer to a call sent with `stream: "lines"`: whole lines, each ending with
    /// `\n` (the host splits the body at newlines, never inside a line). They are read and their
    /// callers answered at once; the call ends with its `Response` (or `TransportError`, after
    /// which the call is retried from the start).
    ResponseChunk {
        call: CallId,
        text: String,
    },
    /// The call got no answer (connection refused, reset, timeout).
    TransportError {
        call: CallId,
        message: String,
    },
    Tick,
    /// The caller gave up (AbortSignal). Its batch, if already sent, still runs.
    Cancel {
        request: RequestId,
    },
    /// The caller's `AbortSignal` fired; `timeout_reason`: its reason is a `TimeoutError`. The
    /// engine tells the client's own timeout (the request stays in its batch) from its caller's
    /// abort (cancelled, as by `Cancel`).
    Abort {
        request: RequestId,
        timeout_reason: bool,
    },
    Flush,
    /// Cut everything queued and answer every request; `Drained` follows.
    Close,
    /// Fleet mode: how the store action `action` (an `Output::Store`) went. A `read`'s values
    /// are the keys' full values (an `answer:` key's value is the answer the engine stored).
    StoreOutcome {
        action: ActionId,
        outcome: StoreOutcome,
    },
    /// Fleet mode: the store could not execute `action` (unreachable past the host's retries).
    /// The callers whose requests hung on it fail with `ERR_BATCHLING_STORE_UNAVAILABLE`.
    StoreFailed {
        action: ActionId,
        error: String,
    },
}
