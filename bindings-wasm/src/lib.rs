//! WebAssembly binding (wasm-bindgen): conversion only, the twin of `bindings-node`. The classes
//! keep the napi classes' names, methods and results, so the JS hosts (`js/src/engine.ts`'s
//! `BatcherEngine` and `InterceptorEngine`) drive either one unchanged.
//!
//! Every `NativeBatcher` method takes the host's time and writes the call's outcome into the
//! host's scratch `Float64Array` (layout: `batchling_core::host::wire`), returning its length; an
//! outcome larger than the scratch buffer is fetched with `takeOverflow()`. The outcome is
//! written straight into the JS array (one `set` from a view of wasm memory), so only the
//! outcome's length is copied, never the whole scratch buffer.

use batchling_core::batcher::{HostBatcherOptions, Status};
use batchling_core::host::{
    batch_options, batches, fleet, jobs, options, run_state, serve, BatcherHost, InterceptorHost,
};
use js_sys::{Float64Array, Reflect};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(message: &str);
}

/// A panic (a bug) ends in a wasm trap ("RuntimeError: unreachable"); print its message first,
/// which the trap itself does not carry.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            console_error(&format!("batchling (wasm): {info}"))
        }));
    });
}

/// A JS `Error` with the message the napi binding gives (and its `code`), so the host's
/// "invalid option `name`: …" mapping works the same on both backends.
fn error(code: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    let _ = Reflect::set(&e, &"code".into(), &code.into());
    e.into()
}

fn invalid(e: impl std::fmt::Display) -> JsValue {
    error("InvalidArg", &e.to_string())
}

/// A number field of the options object: like napi's `f64` / `Option<f64>` object fields,
/// `undefined` (or absent) is `None` when optional, anything but a number is refused.
fn number(options: &JsValue, field: &str, optional: bool) -> Result<Option<f64>, JsValue> {
    let value = Reflect::get(options, &JsValue::from_str(field))?;
    if let Some(n) = value.as_f64() {
        return Ok(Some(n));
    }
    if value.is_undefined() {
        if optional {
            return Ok(None);
        }
        return Err(error("InvalidArg", &format!("Missing field `{field}`")));
    }
    let got = value.js_typeof().as_string().unwrap_or_default();
    let got = if value.is_null() { "null".into() } else { got };
    Err(error(
        "NumberExpected",
        &format!("Failed to convert {got} into a number on BatcherOptions.{field}"),
    ))
}

/// The optional boolean `hostItemIds` (napi: `Option<bool>`): outcomes in the host-id layout.
fn host_item_ids(options: &JsValue) -> Result<bool, JsValue> {
    let value = Reflect::get(options, &JsValue::from_str("hostItemIds"))?;
    if value.is_undefined() {
        return Ok(false);
    }
    value.as_bool().ok_or_else(|| {
        error(
            "BooleanExpected",
            "Failed to convert into a boolean on BatcherOptions.hostItemIds",
        )
    })
}

fn read_options(options: &JsValue) -> Result<HostBatcherOptions, JsValue> {
    if !options.is_object() {
        return Err(error("ObjectExpected", "BatcherOptions must be an object"));
    }
    let required = |field| number(options, field, false).map(|n| n.unwrap_or_default());
    let optional = |field| number(options, field, true);
    Ok(HostBatcherOptions {
        max_batch_size: required("maxBatchSize")?,
        max_delay_ms: required("maxDelayMs")?,
        max_queue_size: optional("maxQueueSize")?,
        max_concurrent_batches: optional("maxConcurrentBatches")?,
        retry_attempts: optional("retryAttempts")?,
        retry_backoff_ms: optional("retryBackoffMs")?,
        retry_max_backoff_ms: optional("retryMaxBackoffMs")?,
        timeout_ms: optional("timeoutMs")?,
        jitter_seed: optional("jitterSeed")?,
    })
}

/// The napi `BatcherStatus` object: same camelCase fields, `lastBatchTime` absent until the
/// first cut, `maxQueueSize` null when unbounded. Built as one JSON string and parsed by JS:
/// setting the fields one by one through `Reflect::set` costs several times as much (and
/// wasm-bindgen's `inline_js` snippets are ES modules, which the CommonJS `--target nodejs` glue
/// cannot load on Node 20).
fn status_object(s: Status) -> JsValue {
    use std::fmt::Write;
    let mut json = format!(
        "{{\"pending\":{},\"processing\":{},\"processed\":{},\"failed\":{},\"batches\":{},\"averageBatchSize\":{}",
        s.pending, s.processing, s.processed, s.failed, s.batches, number_json(s.average_batch_size),
    );
    if let Some(t) = s.last_batch_time_ms {
        let _ = write!(json, ",\"lastBatchTime\":{t}");
    }
    let max_queue_size = s
        .max_queue_size
        .map_or("null".to_string(), |m| m.to_string());
    let _ = write!(
        json,
        ",\"retried\":{},\"rejected\":{},\"cancelled\":{},\"timedOut\":{},\"queueSize\":{},\"maxQueueSize\":{},\"isQueueFull\":{},\"isQueueEmpty\":{}}}",
        s.retried, s.rejected, s.cancelled, s.timed_out, s.queue_size, max_queue_size, s.is_queue_full, s.is_queue_empty,
    );
    js_sys::JSON::parse(&json).expect("status JSON parses")
}

/// A finite f64 as JSON (Rust's `Display` never uses exponents, so it round-trips exactly).
fn number_json(value: f64) -> String {
    if value.is_finite() {
        value.to_string()
    } else {
        "0".into()
    }
}

#[wasm_bindgen]
pub struct NativeBatcher {
    host: BatcherHost,
}

impl NativeBatcher {
    /// Hand the call's outcome to JS: into the scratch buffer, or kept for `takeOverflow`.
    fn send(&mut self, scratch: &Float64Array) -> u32 {
        let capacity = scratch.length() as usize;
        self.host.deliver(capacity, |out| {
            // SAFETY: the view of wasm memory is used at once, by `set`, which copies it; no
            // allocation (so no memory growth that would detach it) happens in between.
            unsafe { scratch.set(&Float64Array::view(out), 0) }
        })
    }
}

#[wasm_bindgen]
impl NativeBatcher {
    /// Options as the JS layer passes them, already defaulted; `undefined` means "no limit".
    /// Numbers stay `f64`: the core checks their range.
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue) -> Result<NativeBatcher, JsValue> {
        install_panic_hook();
        let config = read_options(&options)?;
        let host = BatcherHost::new(config, host_item_ids(&options)?).map_err(invalid)?;
        Ok(NativeBatcher { host })
    }

    /// The last outcome, when it did not fit the scratch buffer.
    #[wasm_bindgen(js_name = takeOverflow)]
    pub fn take_overflow(&mut self) -> Vec<f64> {
        self.host.take_overflow()
    }

    /// Add one item per entry of `groups` (interned group keys). `more_follow`: more adds of
    /// this instant come in the next call, so due windows wait for it.
    pub fn add(
        &mut self,
        now_ms: f64,
        groups: &[u32],
        more_follow: bool,
        scratch: &Float64Array,
    ) -> u32 {
        self.host.add(now_ms, groups, more_follow);
        self.send(scratch)
    }

    /// `add` for the host-id layout (option `hostItemIds`): the adds get the host ids
    /// `firstId`, `firstId + 1`, … in order.
    #[wasm_bindgen(js_name = addWithIds)]
    pub fn add_with_ids(
        &mut self,
        now_ms: f64,
        groups: &[u32],
        first_id: f64,
        more_follow: bool,
        scratch: &Float64Array,
    ) -> u32 {
        self.host
            .add_with_ids(now_ms, groups, first_id, more_follow);
        self.send(scratch)
    }

    pub fn tick(&mut self, now_ms: f64, scratch: &Float64Array) -> u32 {
        self.host.tick(now_ms);
        self.send(scratch)
    }

    /// Handlers returned (those of one turn together): `batches[i]` failed on its own at the
    /// next `failedCounts[i]` positions of `failed` (napi twin: `completedMany`).
    #[wasm_bindgen(js_name = completedMany)]
    pub fn completed_many(
        &mut self,
        now_ms: f64,
        batches: &[f64],
        failed_counts: &[u32],
        failed: &[u32],
        scratch: &Float64Array,
    ) -> Result<u32, JsValue> {
        self.host
            .completed_many(now_ms, batches, failed_counts, failed)
            .map_err(invalid)?;
        Ok(self.send(scratch))
    }

    pub fn failed(
        &mut self,
        now_ms: f64,
        batch: f64,
        retryable: bool,
        scratch: &Float64Array,
    ) -> u32 {
        self.host.failed(now_ms, batch, retryable);
        self.send(scratch)
    }

    pub fn cancel(&mut self, now_ms: f64, item: f64, scratch: &Float64Array) -> u32 {
        self.host.cancel(now_ms, item);
        self.send(scratch)
    }

    pub fn flush(&mut self, now_ms: f64, scratch: &Float64Array) -> u32 {
        self.host.flush(now_ms);
        self.send(scratch)
    }

    pub fn close(&mut self, now_ms: f64, abort: bool, scratch: &Float64Array) -> u32 {
        self.host.close(now_ms, abort);
        self.send(scratch)
    }

    pub fn status(&self) -> JsValue {
        status_object(self.host.status())
    }
}

/// The provider batching engine (`batchify`). Every call returns one JSON string:
/// `{"deadline": ms | null, "outputs": [...]}` (see `batchling_core::interceptor::Output`).
#[wasm_bindgen]
pub struct NativeInterceptor {
    host: InterceptorHost,
}

#[wasm_bindgen]
impl NativeInterceptor {
    #[wasm_bindgen(constructor)]
    pub fn new(options_json: &str) -> Result<NativeInterceptor, JsValue> {
        install_panic_hook();
        let host = InterceptorHost::new(options_json).map_err(invalid)?;
        Ok(NativeInterceptor { host })
    }

    /// Journal lines from a previous run; damaged ones become warning events.
    #[wasm_bindgen(js_name = loadCache)]
    pub fn load_cache(&mut self, text: &str) -> String {
        self.host.load_cache(text)
    }

    #[wasm_bindgen(js_name = journalCompaction)]
    pub fn journal_compaction(&mut self) -> String {
        self.host.journal_compaction()
    }

    #[wasm_bindgen(js_name = journalCompacted)]
    pub fn journal_compacted(&mut self) -> bool {
        self.host.journal_compacted()
    }

    #[wasm_bindgen(js_name = journalPrune)]
    pub fn journal_prune(&mut self) -> String {
        self.host.journal_prune()
    }

    #[wasm_bindgen(js_name = cacheStats)]
    pub fn cache_stats(&self) -> String {
        self.host.cache_stats()
    }

    #[allow(clippy::too_many_arguments)]
    pub fn submit(
        &mut self,
        now_ms: f64,
        request: f64,
        method: String,
        url: String,
        headers_json: &str,
        body: String,
        arrived_ms: Option<f64>,
    ) -> Result<String, JsValue> {
        self.host
            .submit(now_ms, request, method, url, headers_json, body, arrived_ms)
            .map_err(invalid)
    }

    /// Jobs in bulk (`batchling_core::host::interceptor::InterceptorHost::submit_jobs`).
    #[wasm_bindgen(js_name = submitJobs)]
    pub fn submit_jobs(
        &mut self,
        now_ms: f64,
        first_request: f64,
        specs_json: &str,
        endpoints_json: &str,
    ) -> String {
        self.host
            .submit_jobs(now_ms, first_request, specs_json, endpoints_json)
    }

    pub fn response(
        &mut self,
        now_ms: f64,
        call: f64,
        status: u32,
        headers_json: &str,
        body: String,
    ) -> Result<String, JsValue> {
        self.host
            .response(now_ms, call, status, headers_json, body)
            .map_err(invalid)
    }

    /// Whole lines (ending with a newline) of a streamed results download; see the core's
    /// `Input::ResponseChunk`.
    #[wasm_bindgen(js_name = responseChunk)]
    pub fn response_chunk(
        &mut self,
        now_ms: f64,
        call: f64,
        text: String,
    ) -> Result<String, JsValue> {
        self.host
            .response_chunk(now_ms, call, text)
            .map_err(invalid)
    }

    #[wasm_bindgen(js_name = transportError)]
    pub fn transport_error(&mut self, now_ms: f64, call: f64, message: String) -> String {
        self.host.transport_error(now_ms, call, message)
    }

    pub fn tick(&mut self, now_ms: f64) -> String {
        self.host.tick(now_ms)
    }

    /// Fleet mode: a store action's outcome (JSON `StoreOutcome`); see the core's
    /// `Input::StoreOutcome`.
    #[wasm_bindgen(js_name = storeOutcome)]
    pub fn store_outcome(
        &mut self,
        now_ms: f64,
        action: f64,
        outcome_json: &str,
    ) -> Result<String, JsValue> {
        self.host
            .store_outcome(now_ms, action, outcome_json)
            .map_err(invalid)
    }

    /// Fleet mode: the store could not execute the action; see the core's `Input::StoreFailed`.
    #[wasm_bindgen(js_name = storeFailed)]
    pub fn store_failed(&mut self, now_ms: f64, action: f64, error: String) -> String {
        self.host.store_failed(now_ms, action, error)
    }

    pub fn cancel(&mut self, now_ms: f64, request: f64) -> String {
        self.host.cancel(now_ms, request)
    }

    /// The caller's signal aborted; `timeout_reason`: its reason is a `TimeoutError`.
    pub fn abort(&mut self, now_ms: f64, request: f64, timeout_reason: bool) -> String {
        self.host.abort(now_ms, request, timeout_reason)
    }

    pub fn flush(&mut self, now_ms: f64) -> String {
        self.host.flush(now_ms)
    }

    pub fn close(&mut self, now_ms: f64) -> String {
        self.host.close(now_ms)
    }

    /// Provider batches not yet ended, in flight or waiting for admission.
    #[wasm_bindgen(js_name = liveBatches)]
    pub fn live_batches(&self) -> u32 {
        self.host.live_batches()
    }

    /// Per queue: provider, endpoint, model, requests, batches, cache hits, estimated cost.
    pub fn report(&self) -> String {
        self.host.report()
    }
}

/// The user's `RequestBatcher` options (JSON, functions as `{"$type":"function"}`) checked:
/// `{"ok":true,"options":{…}}` with what `NativeBatcher` takes, or `{"ok":false,"code",
/// "option","message"}` (see `batchling_core::host::options`).
#[wasm_bindgen(js_name = checkBatcherOptions)]
pub fn check_batcher_options(user_json: &str) -> String {
    options::check_batcher_options(user_json)
}

/// The user's `batchify()` options over the host's own engine options, checked: the envelope
/// holds the JSON options `NativeInterceptor` takes.
#[wasm_bindgen(js_name = checkInterceptorOptions)]
pub fn check_interceptor_options(user_json: &str, host_json: &str) -> String {
    options::check_interceptor_options(user_json, host_json)
}

/// The job builder: which provider serves a job, its request, and its result (JSON in and out,
/// see `batchling_core::host::jobs`).
#[wasm_bindgen(js_name = jobProvider)]
pub fn job_provider(spec_json: &str) -> String {
    jobs::provider(spec_json)
}

#[wasm_bindgen(js_name = jobBuildRequest)]
pub fn job_build_request(spec_json: &str, endpoints_json: &str) -> String {
    jobs::build_request(spec_json, endpoints_json)
}

#[wasm_bindgen(js_name = jobExtractResult)]
pub fn job_extract_result(spec_json: &str, status: u32, body: &str) -> String {
    jobs::extract_result(spec_json, status as u16, body)
}

/// The providers the job builder serves, with default base URLs and env key names
/// (`batchling_core::host::jobs::providers_json`).
#[wasm_bindgen(js_name = jobProviders)]
pub fn job_providers() -> String {
    jobs::providers_json()
}

/// The files a job may name by path: extension and media type
/// (`batchling_core::host::jobs::file_types_json`).
#[wasm_bindgen(js_name = jobFileTypes)]
pub fn job_file_types() -> String {
    jobs::file_types_json()
}

/// The job builder's option rules: `{"ok":true}` or the refused option as data
/// (`batchling_core::host::batch_options::check_json`).
#[wasm_bindgen(js_name = batchCheck)]
pub fn batch_check(call: &str, value_json: &str, job_id: &str) -> String {
    batch_options::check_json(call, value_json, job_id)
}

/// What a job run leaves on disk (`batchling_core::host::run_state`): the state file's header
/// line, the state file read, whether it keeps a journal line, a job's result file name, and the
/// run's summary from its result files.
#[wasm_bindgen(js_name = jobStateHeader)]
pub fn job_state_header(results_dir: &str, job_ids_json: &str, sources_json: &str) -> String {
    run_state::header_line_json(results_dir, job_ids_json, sources_json)
}

/// Whether a run reading these job sources may resume a state that recorded those.
#[wasm_bindgen(js_name = jobCheckSources)]
pub fn job_check_sources(recorded_json: &str, current_json: &str) -> String {
    run_state::check_sources_json(recorded_json, current_json)
}

#[wasm_bindgen(js_name = jobReadState)]
pub fn job_read_state(text: &str) -> String {
    run_state::read_state_json(text)
}

#[wasm_bindgen(js_name = jobStateKeeps)]
pub fn job_state_keeps(line: &str) -> bool {
    run_state::state_keeps(line)
}

#[wasm_bindgen(js_name = jobResultFileName)]
pub fn job_result_file_name(id: &str) -> String {
    run_state::result_file_name(id)
}

#[wasm_bindgen(js_name = jobSummarizeResults)]
pub fn job_summarize_results(texts_json: &str) -> String {
    run_state::summarize_results_json(texts_json)
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests;

/// The live provider batches of a journal (`batchling_core::host::batches::live_batches_json`),
/// aged to `now_ms` (wall clock, ms since the epoch).
#[wasm_bindgen(js_name = batchesLive)]
pub fn batches_live(journal: &str, now_ms: f64) -> String {
    batches::live_batches_json(journal, now_ms.max(0.0) as u64)
}

/// The call that polls or cancels a journal's batch (`batches::batch_call_json`).
#[wasm_bindgen(js_name = batchesCall)]
pub fn batches_call(journal: &str, batch_id: &str, action: &str, api_key: &str) -> String {
    batches::batch_call_json(journal, batch_id, action, api_key)
}

/// A batch's progress from its poll answer (`batches::batch_progress_json`).
#[wasm_bindgen(js_name = batchesProgress)]
pub fn batches_progress(
    journal: &str,
    batch_id: &str,
    status: u32,
    headers_json: &str,
    body: &str,
) -> String {
    batches::batch_progress_json(journal, batch_id, status as u16, headers_json, body)
}

/// The journal record of an accepted cancel (`batches::cancel_record_json`).
#[wasm_bindgen(js_name = batchesCancelRecord)]
pub fn batches_cancel_record(
    journal: &str,
    batch_id: &str,
    status: u32,
    headers_json: &str,
    body: &str,
) -> String {
    batches::cancel_record_json(journal, batch_id, status as u16, headers_json, body)
}

/// `batchling serve`'s configuration checked (`batchling_core::host::serve::check_json`).
#[wasm_bindgen(js_name = serveCheck)]
pub fn serve_check(config_json: &str) -> String {
    serve::check_json(config_json)
}

/// `batchling serve`'s router (`batchling_core::host::serve::ServeHost`).
#[wasm_bindgen]
pub struct NativeServeRouter {
    host: serve::ServeHost,
}

#[wasm_bindgen]
impl NativeServeRouter {
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str) -> Result<NativeServeRouter, JsValue> {
        install_panic_hook();
        let host = serve::ServeHost::new(config_json).map_err(invalid)?;
        Ok(NativeServeRouter { host })
    }

    /// A `ServeDecision` as JSON; "" for an absent header.
    pub fn decide(&self, method: &str, path: &str, host: &str, token: &str) -> String {
        self.host.decide(method, path, host, token)
    }
}

/// A member of the fleet protocol (`batchling_core::host::fleet::FleetHost`): events as JSON in,
/// the outputs it drained as JSON out.
#[wasm_bindgen]
pub struct NativeFleetMember {
    host: fleet::FleetHost,
}

#[wasm_bindgen]
impl NativeFleetMember {
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str) -> Result<NativeFleetMember, JsValue> {
        install_panic_hook();
        let host = fleet::FleetHost::new(config_json).map_err(invalid)?;
        Ok(NativeFleetMember { host })
    }

    /// `{"ok":true,"outputs":[…],"deadline":…}` or a refusal (with the outputs drained).
    pub fn handle(&mut self, now_ms: f64, event_json: &str) -> String {
        self.host.handle(now_ms, event_json)
    }

    /// When the member wants a `tick` (ms), or null.
    #[wasm_bindgen(js_name = nextDeadline)]
    pub fn next_deadline(&self) -> JsValue {
        match self.host.next_deadline() {
            Some(at) => JsValue::from_f64(at as f64),
            None => JsValue::NULL,
        }
    }
}
