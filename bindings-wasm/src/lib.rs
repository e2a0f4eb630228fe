//! WebAssembly binding (wasm-bindgen): conversion only, the twin of `bindings-node`. The classes
//! keep the napi classes' names, methods and results, so the JS hosts (`js/src/engine.ts`'s
//! `BatcherEngine` and `InterceptorEngine`) drive either one unchanged.
//!
//! Every `NativeBatcher` method takes the host's time and writes the call's outcome into the
//! host's scratch `Float64Array` (layout: `batchling_core::wire`), returning its length; an
//! outcome larger than the scratch buffer is fetched with `takeOverflow()`. The outcome is
//! written straight into the JS array (one `set` from a view of wasm memory), so only the
//! outcome's length is copied, never the whole scratch buffer.

use batchling_core::batcher::{
    AddError, BatchId, Batcher, Event, HostBatcherOptions, ItemId, Status,
};
use batchling_core::http::{HttpRequest, HttpResponse};
use batchling_core::interceptor::{self, Input, Interceptor};
use batchling_core::job_api;
use batchling_core::wire::{self, HostIds};
use js_sys::{Array, Float64Array, Reflect};
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

fn ms(value: f64) -> u64 {
    value.max(0.0) as u64
}

#[wasm_bindgen]
pub struct NativeBatcher {
    inner: Batcher,
    adds: Vec<Result<ItemId, AddError>>,
    out: Vec<f64>,
    overflow: Option<Vec<f64>>,
    host_ids: Option<HostIds>,
}

impl NativeBatcher {
    fn respond(&mut self, scratch: &Float64Array) -> u32 {
        match &mut self.host_ids {
            Some(ids) => ids.encode(&mut self.inner, &self.adds, &mut self.out),
            None => wire::encode(&mut self.inner, &self.adds, &mut self.out),
        }
        self.adds.clear();
        if self.inner.is_closed() && self.inner.live_items() == 0 {
            self.adds.shrink_to_fit(); // drained for good: nothing more is added
        }
        self.send(scratch)
    }

    /// Hand the encoded outcome to JS: into the scratch buffer, or kept for `takeOverflow`.
    fn send(&mut self, scratch: &Float64Array) -> u32 {
        let len = self.out.len();
        if len <= scratch.length() as usize {
            // SAFETY: the view of wasm memory is used at once, by `set`, which copies it; no
            // allocation (so no memory growth that would detach it) happens in between.
            unsafe { scratch.set(&Float64Array::view(&self.out), 0) };
        } else {
            self.overflow = Some(std::mem::take(&mut self.out));
        }
        len as u32
    }

    fn event(&mut self, now_ms: f64, event: Event<'_>, scratch: &Float64Array) -> u32 {
        self.inner.handle(ms(now_ms), event);
        self.respond(scratch)
    }
}

#[wasm_bindgen]
impl NativeBatcher {
    /// Options as the JS layer passes them, already defaulted; `undefined` means "no limit".
    /// Numbers stay `f64`: the core checks their range.
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue) -> Result<NativeBatcher, JsValue> {
        install_panic_hook();
        let config = read_options(&options)?.into_config().map_err(invalid)?;
        let inner = Batcher::new(config).map_err(invalid)?;
        Ok(NativeBatcher {
            inner,
            adds: Vec::new(),
            out: Vec::new(),
            overflow: None,
            host_ids: host_item_ids(&options)?.then(HostIds::default),
        })
    }

    /// The last outcome, when it did not fit the scratch buffer.
    #[wasm_bindgen(js_name = takeOverflow)]
    pub fn take_overflow(&mut self) -> Vec<f64> {
        self.overflow.take().unwrap_or_default()
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
        self.inner
            .add_many(ms(now_ms), groups, more_follow, &mut self.adds);
        self.respond(scratch)
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
        self.inner
            .add_many(ms(now_ms), groups, more_follow, &mut self.adds);
        if let Some(ids) = &mut self.host_ids {
            ids.record(&self.adds, first_id);
        }
        self.respond(scratch)
    }

    pub fn tick(&mut self, now_ms: f64, scratch: &Float64Array) -> u32 {
        self.event(now_ms, Event::Tick, scratch)
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
        let completions = wire::completions(batches, failed_counts, failed).map_err(invalid)?;
        let host_ids = self.host_ids.as_mut();
        wire::complete_many(
            &mut self.inner,
            host_ids,
            ms(now_ms),
            completions,
            &mut self.out,
        );
        Ok(self.send(scratch))
    }

    pub fn failed(
        &mut self,
        now_ms: f64,
        batch: f64,
        retryable: bool,
        scratch: &Float64Array,
    ) -> u32 {
        let batch = BatchId(batch as u64);
        self.event(now_ms, Event::BatchFailed { batch, retryable }, scratch)
    }

    pub fn cancel(&mut self, now_ms: f64, item: f64, scratch: &Float64Array) -> u32 {
        let item = ItemId(item as u64);
        self.event(now_ms, Event::Cancel { item }, scratch)
    }

    pub fn flush(&mut self, now_ms: f64, scratch: &Float64Array) -> u32 {
        self.event(now_ms, Event::Flush, scratch)
    }

    pub fn close(&mut self, now_ms: f64, abort: bool, scratch: &Float64Array) -> u32 {
        self.event(now_ms, Event::Close { abort }, scratch)
    }

    pub fn status(&self) -> JsValue {
        status_object(self.inner.status())
    }
}

/// The provider batching engine (`batchify`). Every call returns one JSON string:
/// `{"deadline": ms | null, "outputs": [...]}` (see `batchling_core::interceptor::Output`).
#[wasm_bindgen]
pub struct NativeInterceptor {
    inner: Interceptor,
}

fn parse_headers(json: &str) -> Result<Vec<(String, String)>, JsValue> {
    serde_json::from_str(json)
        .map_err(|e| invalid(format!("headers must be [[name, value], …]: {e}")))
}

impl NativeInterceptor {
    fn input(&mut self, now_ms: f64, input: Input) -> String {
        self.inner.handle(ms(now_ms), input);
        interceptor::outputs_json(&mut self.inner)
    }
}

#[wasm_bindgen]
impl NativeInterceptor {
    #[wasm_bindgen(constructor)]
    pub fn new(options_json: &str) -> Result<NativeInterceptor, JsValue> {
        install_panic_hook();
        let inner = Interceptor::from_options_json(options_json).map_err(invalid)?;
        Ok(NativeInterceptor { inner })
    }

    /// Journal lines from a previous run; damaged ones become warning events.
    #[wasm_bindgen(js_name = loadCache)]
    pub fn load_cache(&mut self, lines: &Array) -> Result<String, JsValue> {
        let lines = lines
            .iter()
            .map(|line| {
                line.as_string()
                    .ok_or_else(|| error("StringExpected", "loadCache: lines must be strings"))
            })
            .collect::<Result<Vec<String>, JsValue>>()?;
        self.inner.load_cache(lines.iter().map(String::as_str));
        Ok(interceptor::outputs_json(&mut self.inner))
    }

    pub fn submit(
        &mut self,
        now_ms: f64,
        request: f64,
        method: String,
        url: String,
        headers_json: &str,
        body: String,
    ) -> Result<String, JsValue> {
        let http = HttpRequest {
            method,
            url,
            headers: parse_headers(headers_json)?,
            body,
        };
        let request = request as u64;
        Ok(self.input(now_ms, Input::Submit { request, http }))
    }

    pub fn response(
        &mut self,
        now_ms: f64,
        call: f64,
        status: u32,
        headers_json: &str,
        body: String,
    ) -> Result<String, JsValue> {
        let response = HttpResponse {
            status: status as u16,
            headers: parse_headers(headers_json)?,
            body,
        };
        let call = call as u64;
        Ok(self.input(now_ms, Input::Response { call, response }))
    }

    #[wasm_bindgen(js_name = transportError)]
    pub fn transport_error(&mut self, now_ms: f64, call: f64, message: String) -> String {
        let call = call as u64;
        self.input(now_ms, Input::TransportError { call, message })
    }

    pub fn tick(&mut self, now_ms: f64) -> String {
        self.input(now_ms, Input::Tick)
    }

    pub fn cancel(&mut self, now_ms: f64, request: f64) -> String {
        let request = request as u64;
        self.input(now_ms, Input::Cancel { request })
    }

    pub fn flush(&mut self, now_ms: f64) -> String {
        self.input(now_ms, Input::Flush)
    }

    pub fn close(&mut self, now_ms: f64) -> String {
        self.input(now_ms, Input::Close)
    }

    /// Per queue: provider, endpoint, model, requests, batches, cache hits, estimated cost.
    pub fn report(&self) -> String {
        serde_json::to_string(&self.inner.report()).expect("report serializes")
    }
}

/// The job builder: which provider serves a job, its request, and its result (JSON in and out,
/// see `batchling_core::job_api`).
#[wasm_bindgen(js_name = jobProvider)]
pub fn job_provider(spec_json: &str) -> String {
    job_api::provider(spec_json)
}

#[wasm_bindgen(js_name = jobBuildRequest)]
pub fn job_build_request(spec_json: &str, endpoint_json: &str) -> String {
    job_api::build_request(spec_json, endpoint_json)
}

#[wasm_bindgen(js_name = jobExtractResult)]
pub fn job_extract_result(spec_json: &str, status: u32, body: &str) -> String {
    job_api::extract_result(spec_json, status as u16, body)
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests;
