//! Node binding: conversion only. Every method takes the host's time and writes the call's
//! outcome into the host's scratch `Float64Array` (layout: `batchling_core::host::wire`), returning
//! its length. Reusing one buffer spares V8 an external ArrayBuffer (and its finalizer) per
//! call; an outcome larger than the scratch buffer is fetched with `takeOverflow()`. Typed
//! arrays come in as borrowed slices (`…ArraySlice`), not as `Float64Array`, which would create
//! and delete a napi reference (a V8 global handle) on every call.

use batchling_core::batcher::{HostBatcherOptions, Status};
use batchling_core::host::{
    batch_options, batches, fleet, jobs, options, run_state, serve, BatcherHost, InterceptorHost,
};
use napi::bindgen_prelude::{Either, Float64Array, Float64ArraySlice, Null, Uint32ArraySlice};
use napi::{Error, Result, Status as NapiStatus};
use napi_derive::napi;

/// Options as the JS layer passes them, already defaulted; `None` means "no limit". Numbers
/// stay `f64` here: the core checks their range (a `u32` field would silently wrap 2^32 + 2).
#[napi(object)]
pub struct BatcherOptions {
    pub max_batch_size: f64,
    pub max_delay_ms: f64,
    pub max_queue_size: Option<f64>,
    pub max_concurrent_batches: Option<f64>,
    pub retry_attempts: Option<f64>,
    pub retry_backoff_ms: Option<f64>,
    pub retry_max_backoff_ms: Option<f64>,
    pub timeout_ms: Option<f64>,
    pub jitter_seed: Option<f64>,
    /// Outcomes name items by the host's own ids (`addWithIds`), in the `batchling_core::host::wire::HostIds` layout.
    pub host_item_ids: Option<bool>,
}

#[napi(object)]
pub struct BatcherStatus {
    pub pending: f64,
    pub processing: f64,
    pub processed: f64,
    pub failed: f64,
    pub batches: f64,
    pub average_batch_size: f64,
    pub last_batch_time: Option<f64>,
    pub retried: f64,
    pub rejected: f64,
    pub cancelled: f64,
    pub timed_out: f64,
    pub queue_size: f64,
    /// `null` when the queue is unbounded.
    pub max_queue_size: Either<f64, Null>,
    pub is_queue_full: bool,
    pub is_queue_empty: bool,
}

impl From<Status> for BatcherStatus {
    fn from(s: Status) -> Self {
        BatcherStatus {
            pending: s.pending as f64,
            processing: s.processing as f64,
            processed: s.processed as f64,
            failed: s.failed as f64,
            batches: s.batches as f64,
            average_batch_size: s.average_batch_size,
            last_batch_time: s.last_batch_time_ms.map(|t| t as f64),
            retried: s.retried as f64,
            rejected: s.rejected as f64,
            cancelled: s.cancelled as f64,
            timed_out: s.timed_out as f64,
            queue_size: s.queue_size as f64,
            max_queue_size: match s.max_queue_size {
                Some(max) => Either::A(max as f64),
                None => Either::B(Null),
            },
            is_queue_full: s.is_queue_full,
            is_queue_empty: s.is_queue_empty,
        }
    }
}

#[napi]
pub struct NativeBatcher {
    host: BatcherHost,
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::new(NapiStatus::InvalidArg, e.to_string())
}

impl NativeBatcher {
    /// Hand the call's outcome to JS: into the scratch buffer, or kept for `takeOverflow`.
    fn send(&mut self, mut scratch: Float64ArraySlice<'_>) -> u32 {
        // SAFETY: JS is blocked in this call and nothing else holds a Rust view of the
        // buffer, so this is the only reference to its memory while it lives.
        let target: &mut [f64] = unsafe { scratch.as_mut() };
        let capacity = target.len();
        self.host
            .deliver(capacity, |out| target[..out.len()].copy_from_slice(out))
    }
}

#[napi]
impl NativeBatcher {
    #[napi(constructor)]
    pub fn new(options: BatcherOptions) -> Result<Self> {
        let config = HostBatcherOptions {
            max_batch_size: options.max_batch_size,
            max_delay_ms: options.max_delay_ms,
            max_queue_size: options.max_queue_size,
            max_concurrent_batches: options.max_concurrent_batches,
            retry_attempts: options.retry_attempts,
            retry_backoff_ms: options.retry_backoff_ms,
            retry_max_backoff_ms: options.retry_max_backoff_ms,
            timeout_ms: options.timeout_ms,
            jitter_seed: options.jitter_seed,
        };
        let host =
            BatcherHost::new(config, options.host_item_ids.unwrap_or(false)).map_err(invalid)?;
        Ok(NativeBatcher { host })
    }

    /// The last outcome, when it did not fit the scratch buffer.
    #[napi]
    pub fn take_overflow(&mut self) -> Float64Array {
        Float64Array::new(self.host.take_overflow())
    }

    /// Add one item per entry of `groups` (interned group keys). `more_follow`: more adds of
    /// this instant come in the next call, so due windows wait for it.
    #[napi]
    pub fn add(
        &mut self,
        now_ms: f64,
        groups: Uint32ArraySlice<'_>,
        more_follow: bool,
        scratch: Float64ArraySlice<'_>,
    ) -> u32 {
        self.host.add(now_ms, &groups, more_follow);
        self.send(scratch)
    }

    /// `add` for the host-id layout (option `hostItemIds`): the adds get the host ids
    /// `firstId`, `firstId + 1`, … in order.
    #[napi]
    pub fn add_with_ids(
        &mut self,
        now_ms: f64,
        groups: Uint32ArraySlice<'_>,
        first_id: f64,
        more_follow: bool,
        scratch: Float64ArraySlice<'_>,
    ) -> u32 {
        self.host
            .add_with_ids(now_ms, &groups, first_id, more_follow);
        self.send(scratch)
    }

    #[napi]
    pub fn tick(&mut self, now_ms: f64, scratch: Float64ArraySlice<'_>) -> u32 {
        self.host.tick(now_ms);
        self.send(scratch)
    }

    /// Handlers returned (those of one turn together): `batches[i]` failed on its own at the
    /// next `failedCounts[i]` positions of `failed` (see `batchling_core::host::wire::completions`).
    /// One call and one outcome for all of them.
    #[napi]
    pub fn completed_many(
        &mut self,
        now_ms: f64,
        batches: Float64ArraySlice<'_>,
        failed_counts: Uint32ArraySlice<'_>,
        failed: Uint32ArraySlice<'_>,
        scratch: Float64ArraySlice<'_>,
    ) -> Result<u32> {
        self.host
            .completed_many(now_ms, &batches, &failed_counts, &failed)
            .map_err(invalid)?;
        Ok(self.send(scratch))
    }

    #[napi]
    pub fn failed(
        &mut self,
        now_ms: f64,
        batch: f64,
        retryable: bool,
        scratch: Float64ArraySlice<'_>,
    ) -> u32 {
        self.host.failed(now_ms, batch, retryable);
        self.send(scratch)
    }

    #[napi]
    pub fn cancel(&mut self, now_ms: f64, item: f64, scratch: Float64ArraySlice<'_>) -> u32 {
        self.host.cancel(now_ms, item);
        self.send(scratch)
    }

    #[napi]
    pub fn flush(&mut self, now_ms: f64, scratch: Float64ArraySlice<'_>) -> u32 {
        self.host.flush(now_ms);
        self.send(scratch)
    }

    #[napi]
    pub fn close(&mut self, now_ms: f64, abort: bool, scratch: Float64ArraySlice<'_>) -> u32 {
        self.host.close(now_ms, abort);
        self.send(scratch)
    }

    #[napi]
    pub fn status(&self) -> BatcherStatus {
        self.host.status().into()
    }
}

/// The provider batching engine (`batchify`). Every call returns one JSON string:
/// `{"deadline": ms | null, "outputs": [...]}` (see `batchling_core::interceptor::Output`).
#[napi]
pub struct NativeInterceptor {
    host: InterceptorHost,
}

#[napi]
impl NativeInterceptor {
    #[napi(constructor)]
    pub fn new(options_json: String) -> Result<Self> {
        let host = InterceptorHost::new(&options_json).map_err(invalid)?;
        Ok(NativeInterceptor { host })
    }

    /// Journal lines from a previous run; damaged ones become warning events.
    #[napi]
    pub fn load_cache(&mut self, text: String) -> String {
        self.host.load_cache(&text)
    }

    #[napi]
    pub fn journal_compaction(&mut self) -> String {
        self.host.journal_compaction()
    }

    #[napi]
    pub fn journal_compacted(&mut self) -> bool {
        self.host.journal_compacted()
    }

    #[napi]
    pub fn journal_prune(&mut self) -> String {
        self.host.journal_prune()
    }

    #[napi]
    pub fn cache_stats(&self) -> String {
        self.host.cache_stats()
    }

    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn submit(
        &mut self,
        now_ms: f64,
        request: f64,
        method: String,
        url: String,
        headers_json: String,
        body: String,
        arrived_ms: Option<f64>,
    ) -> Result<String> {
        self.host
            .submit(
                now_ms,
                request,
                method,
                url,
                &headers_json,
                body,
                arrived_ms,
            )
            .map_err(invalid)
    }

    /// Jobs in bulk (`batchling_core::host::interceptor::InterceptorHost::submit_jobs`).
    #[napi]
    pub fn submit_jobs(
        &mut self,
        now_ms: f64,
        first_request: f64,
        specs_json: String,
        endpoints_json: String,
    ) -> String {
        self.host
            .submit_jobs(now_ms, first_request, &specs_json, &endpoints_json)
    }

    #[napi]
    pub fn response(
        &mut self,
        now_ms: f64,
        call: f64,
        status: u32,
        headers_json: String,
        body: String,
    ) -> Result<String> {
        self.host
            .response(now_ms, call, status, &headers_json, body)
            .map_err(invalid)
    }

    /// Whole lines (ending with a newline) of a streamed results download; see the core's
    /// `Input::ResponseChunk`.
    #[napi]
    pub fn response_chunk(&mut self, now_ms: f64, call: f64, text: String) -> Result<String> {
        self.host
            .response_chunk(now_ms, call, text)
            .map_err(invalid)
    }

    #[napi]
    pub fn transport_error(&mut self, now_ms: f64, call: f64, message: String) -> String {
        self.host.transport_error(now_ms, call, message)
    }

    #[napi]
    pub fn tick(&mut self, now_ms: f64) -> String {
        self.host.tick(now_ms)
    }

    /// Fleet mode: a store action's outcome (JSON `StoreOutcome`); see the core's
    /// `Input::StoreOutcome`.
    #[napi]
    pub fn store_outcome(
        &mut self,
        now_ms: f64,
        action: f64,
        outcome_json: String,
    ) -> Result<String> {
        self.host
            .store_outcome(now_ms, action, &outcome_json)
            .map_err(invalid)
    }

    /// Fleet mode: the store could not execute the action; see the core's `Input::StoreFailed`.
    #[napi]
    pub fn store_failed(&mut self, now_ms: f64, action: f64, error: String) -> String {
        self.host.store_failed(now_ms, action, error)
    }

    #[napi]
    pub fn cancel(&mut self, now_ms: f64, request: f64) -> String {
        self.host.cancel(now_ms, request)
    }

    /// The caller's signal aborted; `timeout_reason`: its reason is a `TimeoutError`.
    #[napi]
    pub fn abort(&mut self, now_ms: f64, request: f64, timeout_reason: bool) -> String {
        self.host.abort(now_ms, request, timeout_reason)
    }

    #[napi]
    pub fn flush(&mut self, now_ms: f64) -> String {
        self.host.flush(now_ms)
    }

    #[napi]
    pub fn close(&mut self, now_ms: f64) -> String {
        self.host.close(now_ms)
    }

    /// Provider batches not yet ended, in flight or waiting for admission.
    #[napi]
    pub fn live_batches(&self) -> u32 {
        self.host.live_batches()
    }

    /// Per queue: provider, endpoint, model, requests, batches, cache hits, estimated cost.
    #[napi]
    pub fn report(&self) -> String {
        self.host.report()
    }
}

/// The user's `RequestBatcher` options (JSON, functions as `{"$type":"function"}`) checked:
/// `{"ok":true,"options":{…}}` with what `NativeBatcher` takes, or `{"ok":false,"code",
/// "option","message"}` (see `batchling_core::host::options`).
#[napi]
pub fn check_batcher_options(user_json: String) -> String {
    options::check_batcher_options(&user_json)
}

/// The user's `batchify()` options over the host's own engine options, checked: the envelope
/// holds the JSON options `NativeInterceptor` takes.
#[napi]
pub fn check_interceptor_options(user_json: String, host_json: String) -> String {
    options::check_interceptor_options(&user_json, &host_json)
}

/// The job builder: which provider serves a job, its request, and its result (JSON in and out,
/// see `batchling_core::host::jobs`).
#[napi]
pub fn job_provider(spec_json: String) -> String {
    jobs::provider(&spec_json)
}

#[napi]
pub fn job_build_request(spec_json: String, endpoints_json: String) -> String {
    jobs::build_request(&spec_json, &endpoints_json)
}

#[napi]
pub fn job_extract_result(spec_json: String, status: u32, body: String) -> String {
    jobs::extract_result(&spec_json, status as u16, &body)
}

/// The providers the job builder serves, with default base URLs and env key names
/// (`batchling_core::host::jobs::providers_json`).
#[napi]
pub fn job_providers() -> String {
    jobs::providers_json()
}

/// The files a job may name by path: extension and media type
/// (`batchling_core::host::jobs::file_types_json`).
#[napi]
pub fn job_file_types() -> String {
    jobs::file_types_json()
}

/// The job builder's option rules: `{"ok":true}` or the refused option as data
/// (`batchling_core::host::batch_options::check_json`).
#[napi]
pub fn batch_check(call: String, value_json: String, job_id: String) -> String {
    batch_options::check_json(&call, &value_json, &job_id)
}

/// What a job run leaves on disk (`batchling_core::host::run_state`): the state file's header
/// line, the state file read, whether it keeps a journal line, a job's result file name, and the
/// run's summary from its result files.
#[napi]
pub fn job_state_header(results_dir: String, job_ids_json: String, sources_json: String) -> String {
    run_state::header_line_json(&results_dir, &job_ids_json, &sources_json)
}

/// Whether a run reading these job sources may resume a state that recorded those.
#[napi]
pub fn job_check_sources(recorded_json: String, current_json: String) -> String {
    run_state::check_sources_json(&recorded_json, &current_json)
}

#[napi]
pub fn job_read_state(text: String) -> String {
    run_state::read_state_json(&text)
}

#[napi]
pub fn job_state_keeps(line: String) -> bool {
    run_state::state_keeps(&line)
}

#[napi]
pub fn job_result_file_name(id: String) -> String {
    run_state::result_file_name(&id)
}

#[napi]
pub fn job_summarize_results(texts_json: String) -> String {
    run_state::summarize_results_json(&texts_json)
}

/// The live provider batches of a journal (`batchling_core::host::batches::live_batches_json`),
/// aged to `now_ms` (wall clock, ms since the epoch).
#[napi]
pub fn batches_live(journal: String, now_ms: f64) -> String {
    batches::live_batches_json(&journal, now_ms.max(0.0) as u64)
}

/// The call that polls or cancels a journal's batch (`batches::batch_call_json`).
#[napi]
pub fn batches_call(journal: String, batch_id: String, action: String, api_key: String) -> String {
    batches::batch_call_json(&journal, &batch_id, &action, &api_key)
}

/// A batch's progress from its poll answer (`batches::batch_progress_json`).
#[napi]
pub fn batches_progress(
    journal: String,
    batch_id: String,
    status: u32,
    headers_json: String,
    body: String,
) -> String {
    batches::batch_progress_json(&journal, &batch_id, status as u16, &headers_json, &body)
}

/// The journal record of an accepted cancel (`batches::cancel_record_json`).
#[napi]
pub fn batches_cancel_record(
    journal: String,
    batch_id: String,
    status: u32,
    headers_json: String,
    body: String,
) -> String {
    batches::cancel_record_json(&journal, &batch_id, status as u16, &headers_json, &body)
}

/// `batchling serve`'s configuration checked (`batchling_core::host::serve::check_json`).
#[napi]
pub fn serve_check(config_json: String) -> String {
    serve::check_json(&config_json)
}

/// `batchling serve`'s router (`batchling_core::host::serve::ServeHost`).
#[napi]
pub struct NativeServeRouter {
    host: serve::ServeHost,
}

#[napi]
impl NativeServeRouter {
    #[napi(constructor)]
    pub fn new(config_json: String) -> Result<Self> {
        let host = serve::ServeHost::new(&config_json).map_err(invalid)?;
        Ok(NativeServeRouter { host })
    }

    /// A `ServeDecision` as JSON; "" for an absent header.
    #[napi]
    pub fn decide(&self, method: String, path: String, host: String, token: String) -> String {
        self.host.decide(&method, &path, &host, &token)
    }
}

/// A member of the fleet protocol (`batchling_core::host::fleet::FleetHost`): events as JSON in,
/// the outputs it drained as JSON out.
#[napi]
pub struct NativeFleetMember {
    host: fleet::FleetHost,
}

#[napi]
impl NativeFleetMember {
    #[napi(constructor)]
    pub fn new(config_json: String) -> Result<Self> {
        let host = fleet::FleetHost::new(&config_json).map_err(invalid)?;
        Ok(NativeFleetMember { host })
    }

    /// `{"ok":true,"outputs":[…],"deadline":…}` or a refusal (with the outputs drained).
    #[napi]
    pub fn handle(&mut self, now_ms: f64, event_json: String) -> String {
        self.host.handle(now_ms, &event_json)
    }

    /// When the member wants a `tick` (ms), or null.
    #[napi]
    pub fn next_deadline(&self) -> Either<f64, Null> {
        match self.host.next_deadline() {
            Some(at) => Either::A(at as f64),
            None => Either::B(Null),
        }
    }
}
