//! The provider batching engine behind `batchify()`: intercepted HTTP requests in, provider
//! batch calls and synthetic responses out.
//!
//! Queueing reuses the generic [`Batcher`]: each request is an item whose group is its
//! (provider, base URL, endpoint, model, credential) route, so size and window triggers behave
//! exactly as for `RequestBatcher`. A cut batch is handed at once to a *job*, which walks the
//! provider's flow through its adapter: upload → create → poll → download → respond. Identical
//! requests (same fingerprint) share one batch line and one answer.
//!
//! Crash safety: an `Intent` record is persisted before every create and a `Submitted` record
//! after it; a re-run that finds a fingerprint submitted resumes polling that batch, one with only
//! an intent first looks for the batch by its tag. Results are persisted as they arrive, so a
//! finished run costs nothing when repeated.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::backoff::Jitter;
use crate::batcher::{Action as BatcherAction, Batcher, BatcherConfig, Event as BatcherEvent};
use crate::batcher::{GroupId, ItemId};
use crate::cache::{self, BatchPlace, Cache, CacheRecord};
use crate::http::{HttpRequest, HttpResponse};
use crate::pricing;
use crate::providers::{
    self, adapter, BatchContext, BatchItem, EndKind, LostCreateKey, PassThrough, PollState,
    ProviderId, Route,
};

/// A request the host intercepted; the host's own id.
pub type RequestId = u64;
/// A provider call the core asked the host to make.
pub type CallId = u64;

#[derive(Debug, Clone, PartialEq)]
pub struct InterceptorConfig {
    pub batch_size: usize,
    pub batch_window_ms: u64,
    pub poll_interval_ms: u64,
    pub dry_run: bool,
    /// Attempts per provider call (upload, create, poll, download) before its requests fail.
    pub call_attempts: u32,
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub jitter_seed: u64,
    /// Provider batches allowed in flight at once; further cut batches wait in cut order.
    pub max_concurrent_batches: usize,
    /// Estimated batch-price spend allowed for batches this engine submits. A batch whose
    /// estimate would pass it is not submitted, nor is any batch after it: their requests fail
    /// with `ERR_BATCHLING_COST_LIMIT`. Batches already submitted finish.
    pub cost_limit_usd: Option<f64>,
    /// Where requests are looked up before recognition by path shape: the user's declared hosts,
    /// then the built-in ones (Groq, Azure, …).
    pub hosts: providers::HostTable,
}

impl Default for InterceptorConfig {
    fn default() -> Self {
        InterceptorConfig {
            batch_size: 100,
            batch_window_ms: 2_000,
            poll_interval_ms: 10_000,
            dry_run: false,
            call_attempts: 8,
            backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            jitter_seed: 0x5eed,
            max_concurrent_batches: usize::MAX,
            cost_limit_usd: None,
            hosts: providers::HostTable::builtin(),
        }
    }
}

/// What the host is told.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Output {
    /// Not batchable: send the original request with the real fetch, untouched.
    #[serde(rename_all = "camelCase")]
    PassThrough { request: RequestId, reason: String },
    /// Perform this provider call; answer with `Input::Response` or `Input::TransportError`.
    #[serde(rename_all = "camelCase")]
    Send {
        call: CallId,
        http: SerializableRequest,
    },
    /// Answer the caller with this response, as the normal endpoint would have.
    #[serde(rename_all = "camelCase")]
    Respond {
        request: RequestId,
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Reject the caller's fetch with an error (cancelled, closed, or the batch could not be run).
    #[serde(rename_all = "camelCase")]
    Fail {
        request: RequestId,
        code: String,
        message: String,
    },
    /// Append this line to the cache journal.
    #[serde(rename_all = "camelCase")]
    Persist { line: String },
    /// A lifecycle event, for `onEvent` and the CLI's progress line.
    Event { event: LifecycleEvent },
    /// After `Close`: every request is answered.
    Drained,
}

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
    #[serde(rename_all = "camelCase")]
    Retry {
        job: u64,
        step: String,
        attempt: u32,
        delay_ms: u64,
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
    },
    Response {
        call: CallId,
        response: HttpResponse,
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
    Flush,
    /// Cut everything queued and answer every request; `Drained` follows.
    Close,
}

/// One row of the dry-run / close report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueReport {
    pub provider: ProviderId,
    pub endpoint: String,
    pub model: String,
    pub requests: u64,
    pub batches: u64,
    pub cache_hits: u64,
    /// Estimated from the request bodies (input ≈ JSON chars / 4, output = the max tokens asked
    /// for); `None` when the model's price is unknown.
    pub estimated_sync_usd: Option<f64>,
    pub estimated_batch_usd: Option<f64>,
    pub price_note: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Upload,
    /// The second request of a two-request upload (`build_upload_finish`).
    UploadFinish,
    Create,
    Find,
    Poll,
    Download,
    /// One call of [`providers::ProviderAdapter::build_after_create`] (xAI: add requests).
    AfterCreate,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::Upload => "upload",
            Step::UploadFinish => "upload_finish",
            Step::Create => "create",
            Step::Find => "find",
            Step::Poll => "poll",
            Step::Download => "download",
            Step::AfterCreate => "after_create",
        }
    }
}

/// A provider batch in flight.
struct Job {
    id: u64,
    route: Route,
    tag: String,
    /// Fingerprints in submission order (the order of `custom_ids`).
    fingerprints: Vec<String>,
    custom_ids: Vec<String>,
    /// Bodies, kept only until the batch is created.
    items: Vec<BatchItem>,
    uploaded_file: Option<String>,
    /// The upload's answer, kept while a second upload request (`build_upload_finish`) is due.
    upload_answer: Option<HttpResponse>,
    remote_id: Option<String>,
    /// Outstanding downloads; results count once all are in.
    downloads_left: usize,
    end_kind: Option<EndKind>,
    /// The current step's attempts so far, and a retry that waits for its time.
    attempts: u32,
    /// Calls waiting for their retry time: (at, step, download). Several downloads of one batch
    /// can fail and wait at once.
    retries: Vec<(u64, Step, Option<String>)>,
    /// Result lines for custom ids not (yet) asked for in this run, kept until the batch is
    /// done: a resumed request may attach while the results are being downloaded.
    unclaimed: HashMap<String, HttpResponse>,
    poll_at: Option<u64>,
    /// Made from a previous run's intent record (see `find_then_resume`).
    from_journal_intent: bool,
    /// The after-create calls still to make, in order; the first is the one in flight.
    after_create: std::collections::VecDeque<HttpRequest>,
}

impl Job {
    /// A job before any provider call; `items` are the bodies to upload / create with (empty
    /// for a batch a previous run already created).
    fn new(
        id: u64,
        route: Route,
        tag: String,
        fingerprints: Vec<String>,
        items: Vec<BatchItem>,
    ) -> Self {
        let custom_ids = fingerprints.iter().map(|fp| cache::custom_id(fp)).collect();
        Job {
            id,
            route,
            tag,
            fingerprints,
            custom_ids,
            items,
            uploaded_file: None,
            upload_answer: None,
            remote_id: None,
            downloads_left: 0,
            end_kind: None,
            attempts: 0,
            retries: Vec::new(),
            unclaimed: HashMap::new(),
            poll_at: None,
            from_journal_intent: false,
            after_create: std::collections::VecDeque::new(),
        }
    }
}

/// A distinct request (by fingerprint) and the callers waiting on it.
struct Entry {
    route: Route,
    waiters: Vec<RequestId>,
    item: Option<ItemId>,
}

pub struct Interceptor {
    config: InterceptorConfig,
    batcher: Batcher,
    cache: Cache,
    caching: bool,
    groups: HashMap<String, GroupId>,
    group_keys: HashMap<GroupId, String>,
    next_group: GroupId,
    entries: HashMap<String, Entry>,
    item_entry: HashMap<ItemId, String>,
    request_entry: HashMap<RequestId, String>,
    jobs: BTreeMap<u64, Job>,
    next_job: u64,
    calls: HashMap<CallId, (u64, Step, Option<String>)>,
    next_call: CallId,
    outputs: Vec<Output>,
    report: BTreeMap<(ProviderId, String, String), QueueReport>,
    closing: bool,
    drained_sent: bool,
    /// Cut batches waiting for a slot under `max_concurrent_batches`.
    waiting: std::collections::VecDeque<(Route, Vec<String>)>,
    committed_usd: f64,
    cost_limit_reached: bool,
    jitter: Jitter,
    tag_seed: u64,
}

impl Interceptor {
    /// `tag_seed` makes batch tags unique across runs (the host passes random bits or the time).
    pub fn new(
        config: InterceptorConfig,
        caching: bool,
        tag_seed: u64,
    ) -> Result<Self, crate::batcher::ConfigError> {
        if config.poll_interval_ms == 0 {
            return Err(crate::batcher::ConfigError {
                field: "pollIntervalMs",
                message: "must be at least 1".into(),
            });
        }
        if config.max_concurrent_batches == 0 {
            return Err(crate::batcher::ConfigError {
                field: "maxConcurrent",
                message: "must be at least 1".into(),
            });
        }
        if config
            .cost_limit_usd
            .is_some_and(|usd| !usd.is_finite() || usd < 0.0)
        {
            return Err(crate::batcher::ConfigError {
                field: "costLimit.usd",
                message: "must be a finite number >= 0".into(),
            });
        }
        if config.call_attempts == 0 {
            return Err(crate::batcher::ConfigError {
                field: "retry.attempts",
                message: "must be at least 1".into(),
            });
        }
        let batcher = Batcher::new(BatcherConfig {
            max_batch_size: config.batch_size,
            max_delay_ms: config.batch_window_ms,
            ..BatcherConfig::default()
        })
        .map_err(|e| crate::batcher::ConfigError {
            field: match e.field {
                "maxBatchSize" => "batchSize",
                other => other,
            },
            message: e.message,
        })?;
        let jitter = Jitter::new(config.jitter_seed);
        Ok(Interceptor {
            config,
            batcher,
            cache: Cache::default(),
            caching,
            groups: HashMap::new(),
            group_keys: HashMap::new(),
            next_group: 0,
            entries: HashMap::new(),
            item_entry: HashMap::new(),
            request_entry: HashMap::new(),
            jobs: BTreeMap::new(),
            next_job: 1,
            calls: HashMap::new(),
            next_call: 1,
            outputs: Vec::new(),
            report: BTreeMap::new(),
            closing: false,
            drained_sent: false,
            waiting: std::collections::VecDeque::new(),
            committed_usd: 0.0,
            cost_limit_reached: false,
            jitter,
            tag_seed,
        })
    }

    /// Load the cache journal. Damaged lines become warnings; the rest is kept.
    pub fn load_cache<'a>(&mut self, lines: impl IntoIterator<Item = &'a str>) {
        for damaged in self.cache.load(lines) {
            self.warn(format!(
                "cache journal line {} is damaged and was skipped ({}); the other records were kept",
                damaged.line_number, damaged.reason
            ));
        }
    }

    pub fn handle(&mut self, now_ms: u64, input: Input) {
        match input {
            Input::Submit { request, http } => self.submit(now_ms, request, http),
            Input::Response { call, response } => self.on_response(now_ms, call, response),
            Input::TransportError { call, message } => {
                self.on_call_failure(now_ms, call, None, message)
            }
            Input::Tick => {}
            Input::Cancel { request } => self.cancel(now_ms, request),
            Input::Flush => self.batcher.handle(now_ms, BatcherEvent::Flush),
            Input::Close => {
                self.closing = true;
                self.batcher.handle(now_ms, BatcherEvent::Flush);
            }
        }
        self.batcher.handle(now_ms, BatcherEvent::Tick); // windows that elapsed cut now
        self.run_timers(now_ms);
        self.absorb_batcher(now_ms);
        self.admit_jobs(now_ms);
        if self.closing && self.request_entry.is_empty() && !self.drained_sent {
            self.drained_sent = true;
            self.outputs.push(Output::Drained);
        }
    }

    pub fn drain_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    pub fn next_deadline(&self) -> Option<u64> {
        let jobs = self
            .jobs
            .values()
            .flat_map(|j| j.poll_at.into_iter().chain(j.retries.iter().map(|r| r.0)));
        self.batcher.next_deadline().into_iter().chain(jobs).min()
    }

    /// Per queue: requests, batches, cache hits and estimated cost, batch against sync prices.
    pub fn report(&self) -> Vec<QueueReport> {
        self.report.values().cloned().collect()
    }

    /// Requests not yet answered.
    pub fn open_requests(&self) -> usize {
        self.request_entry.len()
    }

    // ---- intake ----------------------------------------------------------------------------

    fn submit(&mut self, now_ms: u64, request: RequestId, http: HttpRequest) {
        if self.closing {
            self.outputs.push(Output::Fail {
                request,
                code: "ERR_BATCHLING_CLOSED".into(),
                message: "batchify context is closed: create a new one with batchify()".into(),
            });
            return;
        }
        let route = match providers::classify_with(&http, &self.config.hosts) {
            Ok(route) => route,
            Err(reason) => return self.pass_through(request, reason),
        };
        let fingerprint = cache::fingerprint(&route);
        self.request_entry.insert(request, fingerprint.clone());
        let row = self.report_row(&route);
        row.requests += 1;
        let estimate = pricing::estimate(route.provider, &route.model, &route.body);
        match (estimate.sync_usd, estimate.batch_usd) {
            (Some(sync), Some(batch)) => {
                row.estimated_sync_usd = Some(row.estimated_sync_usd.unwrap_or(0.0) + sync);
                row.estimated_batch_usd = Some(row.estimated_batch_usd.unwrap_or(0.0) + batch);
            }
            _ => row.price_note = "unknown price".into(),
        }

        if let Some(entry) = self.entries.get_mut(&fingerprint) {
            entry.waiters.push(request); // an identical request is already on its way
            return;
        }
        if self.caching && !self.config.dry_run {
            if let Some(response) = self.cache.result(&fingerprint).cloned() {
                self.report_row(&route).cache_hits += 1;
                self.event(LifecycleEvent::CacheHit {
                    provider: route.provider,
                    model: route.model.clone(),
                    resumed_batch: None,
                });
                self.request_entry.remove(&request);
                return self.respond(request, response);
            }
            if let Some((place, batch_id)) = self.cache.submitted(&fingerprint).cloned() {
                self.report_row(&route).cache_hits += 1;
                self.event(LifecycleEvent::CacheHit {
                    provider: route.provider,
                    model: route.model.clone(),
                    resumed_batch: Some(batch_id.clone()),
                });
                return self.resume(now_ms, request, fingerprint, route, place, batch_id);
            }
            if let Some(place) = self.cache.intent(&fingerprint).cloned() {
                return self.find_then_resume(now_ms, request, fingerprint, route, place);
            }
        }
        self.enqueue(now_ms, request, fingerprint, route);
    }

    fn pass_through(&mut self, request: RequestId, reason: PassThrough) {
        self.outputs.push(Output::PassThrough {
            request,
            reason: reason.as_str().into(),
        });
    }

    fn enqueue(&mut self, now_ms: u64, request: RequestId, fingerprint: String, route: Route) {
        let key = format!(
            "{}\n{}\n{}\n{}\n{}",
            route.provider,
            route.base_url,
            route.endpoint,
            route.model,
            route.credential_fingerprint
        );
        let group = match self.groups.get(&key) {
            Some(&g) => g,
            None => {
                let g = self.next_group;
                self.next_group = self.next_group.wrapping_add(1);
                self.groups.insert(key.clone(), g);
                self.group_keys.insert(g, key);
                g
            }
        };
        let item = self
            .batcher
            .add(now_ms, group)
            .expect("the interceptor's batcher has no queue limit and closes only via Close");
        self.event(LifecycleEvent::RequestQueued {
            provider: route.provider,
            endpoint: route.endpoint.clone(),
            model: route.model.clone(),
        });
        self.item_entry.insert(item, fingerprint.clone());
        self.entries.insert(
            fingerprint,
            Entry {
                route,
                waiters: vec![request],
                item: Some(item),
            },
        );
    }

    fn cancel(&mut self, now_ms: u64, request: RequestId) {
        let Some(fingerprint) = self.request_entry.remove(&request) else {
            return;
        };
        self.outputs.push(Output::Fail {
            request,
            code: "ERR_BATCHLING_CANCELLED".into(),
            message: "request cancelled by its AbortSignal".into(),
        });
        let Some(entry) = self.entries.get_mut(&fingerprint) else {
            return;
        };
        entry.waiters.retain(|r| *r != request);
        if entry.waiters.is_empty() {
            // Still queued: take it out so it is never sent. Already in a batch: the batch runs
            // and its result still lands in the cache.
            if let Some(item) = entry.item {
                self.entries.remove(&fingerprint);
                self.item_entry.remove(&item);
                // Its Reject is ignored by `absorb_batcher`; a batch the call cuts is not.
                self.batcher.handle(now_ms, BatcherEvent::Cancel { item });
            }
        }
    }

    fn absorb_batcher(&mut self, now_ms: u64) {
        // Handing a batch over is itself a batcher call, which may cut more: loop until quiet.
        loop {
            let actions: Vec<BatcherAction> = self.batcher.drain_actions().collect();
            if actions.is_empty() {
                return;
            }
            for action in actions {
                self.absorb_batcher_action(now_ms, action);
            }
        }
    }

    fn absorb_batcher_action(&mut self, now_ms: u64, action: BatcherAction) {
        {
            match action {
                BatcherAction::RunBatch { batch, items, .. } => {
                    // The batch leaves the queue: the job owns it from here.
                    self.batcher
                        .handle(now_ms, BatcherEvent::BatchCompleted { batch, failed: &[] });
                    let fingerprints: Vec<String> = items
                        .iter()
                        .filter_map(|item| self.item_entry.remove(item))
                        .collect();
                    self.start_jobs(now_ms, fingerprints);
                }
                BatcherAction::GroupReleased { group } => {
                    if let Some(key) = self.group_keys.remove(&group) {
                        self.groups.remove(&key);
                    }
                }
                // Hand-overs resolve the batcher's items; cancels reject them. Nothing to do.
                BatcherAction::Resolve { .. }
                | BatcherAction::Reject { .. }
                | BatcherAction::Drained => {}
            }
        }
    }

    // ---- jobs ------------------------------------------------------------------------------

    /// Split a cut batch under the provider's limits and start one job per part.
    fn start_jobs(&mut self, now_ms: u64, fingerprints: Vec<String>) {
        let Some(first) = fingerprints.first() else {
            return;
        };
        let route = self.entries[first].route.clone();
        let adapter = adapter(route.provider);
        let limits = adapter.limits(&route);
        let mut part: Vec<String> = Vec::new();
        let mut part_bytes = 0usize;
        let tag = self.new_tag();
        for fp in fingerprints {
            let entry = self.entries.get_mut(&fp).expect("cut item has an entry");
            entry.item = None;
            let item = BatchItem {
                custom_id: cache::custom_id(&fp),
                body: entry.route.body.clone(),
            };
            let ctx = BatchContext {
                route: &route,
                tag: &tag,
            };
            let bytes = adapter.item_bytes(&ctx, &item);
            if !part.is_empty()
                && (part.len() >= limits.max_requests || part_bytes + bytes > limits.max_bytes)
            {
                let full = std::mem::take(&mut part);
                self.start_job(now_ms, route.clone(), full);
                part_bytes = 0;
            }
            part.push(fp);
            part_bytes += bytes;
        }
        if !part.is_empty() {
            self.start_job(now_ms, route, part);
        }
    }

    fn new_tag(&mut self) -> String {
        let n = self.jitter.next_u64();
        format!("batchling-{:016x}{:08x}", self.tag_seed ^ n, self.next_job)
    }

    fn start_job(&mut self, now_ms: u64, route: Route, fingerprints: Vec<String>) {
        if self.config.dry_run {
            // Nothing is sent, so nothing waits for a slot or counts against the cost limit.
            return self.launch_job(now_ms, route, fingerprints);
        }
        self.waiting.push_back((route, fingerprints));
        self.admit_jobs(now_ms);
    }

    /// Start waiting batches while slots are free and the cost limit allows.
    fn admit_jobs(&mut self, now_ms: u64) {
        while self.jobs.len() < self.config.max_concurrent_batches {
            let Some((route, fingerprints)) = self.waiting.pop_front() else {
                break;
            };
            // Requests cancelled while their batch waited are not sent: their entry is still there
            // (an identical request arriving meanwhile joins it), but with no one waiting on it.
            let fingerprints: Vec<String> = fingerprints
                .into_iter()
                .filter(|fp| {
                    let wanted = self.entries.get(fp).is_some_and(|e| !e.waiters.is_empty());
                    if !wanted {
                        self.entries.remove(fp);
                    }
                    wanted
                })
                .collect();
            if fingerprints.is_empty() {
                continue;
            }
            if let Some(limit) = self.config.cost_limit_usd {
                let estimate = self.estimate_batch_usd(&route, &fingerprints);
                let refusal = match estimate {
                    _ if self.cost_limit_reached => Some(format!(
                        "not run: the cost limit of ${limit} was reached before this batch"
                    )),
                    None => Some(format!(
                        "not run: the price of model {} is unknown, so the cost limit of ${limit} cannot be enforced",
                        route.model
                    )),
                    Some(usd) if self.committed_usd + usd > limit => Some(format!(
                        "not run: this batch (~${usd:.6}) would pass the cost limit of ${limit} (${:.6} already committed)",
                        self.committed_usd
                    )),
                    Some(usd) => {
                        self.committed_usd += usd;
                        None
                    }
                };
                if let Some(message) = refusal {
                    self.cost_limit_reached = true;
                    self.fail_entries(&fingerprints, "ERR_BATCHLING_COST_LIMIT", &message);
                    continue;
                }
            }
            self.launch_job(now_ms, route, fingerprints);
        }
    }

    fn estimate_batch_usd(&self, route: &Route, fingerprints: &[String]) -> Option<f64> {
        fingerprints.iter().try_fold(0.0, |sum, fp| {
            let body = &self.entries.get(fp)?.route.body;
            Some(sum + pricing::estimate(route.provider, &route.model, body).batch_usd?)
        })
    }

    /// Estimated batch-price spend of the batches submitted so far.
    pub fn committed_usd(&self) -> f64 {
        self.committed_usd
    }

    fn fail_entries(&mut self, fingerprints: &[String], code: &str, message: &str) {
        for fp in fingerprints {
            if let Some(entry) = self.entries.remove(fp) {
                for request in entry.waiters {
                    if self.request_entry.remove(&request).is_some() {
                        self.outputs.push(Output::Fail {
                            request,
                            code: code.into(),
                            message: message.into(),
                        });
                    }
                }
            }
        }
    }

    fn launch_job(&mut self, now_ms: u64, route: Route, fingerprints: Vec<String>) {
        let id = self.next_job;
        self.next_job += 1;
        let tag = self.new_tag();
        let custom_ids: Vec<String> = fingerprints.iter().map(|f| cache::custom_id(f)).collect();
        let items: Vec<BatchItem> = fingerprints
            .iter()
            .zip(&custom_ids)
            .map(|(fp, cid)| BatchItem {
                custom_id: cid.clone(),
                body: self.entries[fp].route.body.clone(),
            })
            .collect();
        self.report_row(&route).batches += 1;
        let estimated_usd = self.estimate_batch_usd(&route, &fingerprints);
        self.event(LifecycleEvent::BatchSubmitting {
            job: id,
            provider: route.provider,
            model: route.model.clone(),
            requests: fingerprints.len(),
            dry_run: self.config.dry_run,
            estimated_usd,
        });
        if self.config.dry_run {
            let adapter = adapter(route.provider);
            for (fp, cid) in fingerprints.iter().zip(&custom_ids) {
                let response = adapter.dry_run_response(&route, cid);
                self.answer_entry(fp, response, false);
            }
            return;
        }
        let job = Job::new(id, route, tag, fingerprints, items);
        if let Some(record) = self.intent_record(&job) {
            self.persist(record);
        }
        self.jobs.insert(id, job);
        // Inline providers have no upload: `send_step` goes straight on to the create.
        self.send_step(now_ms, id, Step::Upload, None);
    }

    fn place(job: &Job) -> BatchPlace {
        BatchPlace {
            provider: job.route.provider,
            base_url: job.route.base_url.clone(),
            endpoint: job.route.endpoint.clone(),
            model: job.route.model.clone(),
            tag: job.tag.clone(),
            uploaded_file: match adapter(job.route.provider).lost_create_key() {
                LostCreateKey::Tag => None,
                LostCreateKey::UploadedFile => job.uploaded_file.clone(),
            },
        }
    }

    /// The journal line saying a create is about to be sent, with what a later run looks the
    /// batch up by; `None` without a cache, or while that key is not known (a key that comes
    /// with the upload is journalled once the upload is done: see `LostCreateKey`).
    fn intent_record(&self, job: &Job) -> Option<CacheRecord> {
        (self.caching && Self::find_key(job).is_some()).then(|| CacheRecord::Intent {
            place: Self::place(job),
            fingerprints: job.fingerprints.clone(),
        })
    }

    /// Requests whose batch ended without running them: a re-run must submit them again.
    fn persist_released(&mut self, fingerprints: Vec<String>) {
        if self.caching && !fingerprints.is_empty() {
            self.persist(CacheRecord::Released { fingerprints });
        }
    }

    fn persist(&mut self, record: CacheRecord) {
        self.cache.apply(&record);
        self.outputs.push(Output::Persist {
            line: record.to_line(),
        });
    }

    /// Register `request` as waiting on a batch that is (or was) already created.
    fn await_in_batch(&mut self, request: RequestId, fingerprint: &str, route: &Route) {
        let entry = Entry {
            route: route.clone(),
            waiters: vec![request],
            item: None,
        };
        self.entries.insert(fingerprint.to_string(), entry);
    }

    /// A request whose batch a previous run submitted: poll that batch (one job per batch id).
    fn resume(
        &mut self,
        now_ms: u64,
        request: RequestId,
        fingerprint: String,
        route: Route,
        place: BatchPlace,
        batch_id: String,
    ) {
        let custom_id = cache::custom_id(&fingerprint);
        self.await_in_batch(request, &fingerprint, &route);
        if let Some(job) = self
            .jobs
            .values_mut()
            .find(|j| j.remote_id.as_deref() == Some(batch_id.as_str()))
        {
            // Its line may already have been downloaded, before anyone asked for it.
            let early = job.unclaimed.remove(&custom_id);
            job.fingerprints.push(fingerprint.clone());
            job.custom_ids.push(custom_id);
            if let Some(response) = early {
                self.answer_entry(&fingerprint, response, true);
            }
            return;
        }
        let id = self.next_job;
        self.next_job += 1;
        let mut job = Job::new(id, route, place.tag, vec![fingerprint], Vec::new());
        job.remote_id = Some(batch_id);
        job.poll_at = Some(now_ms);
        self.jobs.insert(id, job);
    }

    /// A request whose batch create a previous run sent without learning the outcome: look for
    /// the batch by its tag; queue the request anew only if the provider has no such batch.
    fn find_then_resume(
        &mut self,
        now_ms: u64,
        request: RequestId,
        fingerprint: String,
        route: Route,
        place: BatchPlace,
    ) {
        self.await_in_batch(request, &fingerprint, &route);
        if let Some(job) = self
            .jobs
            .values_mut()
            .find(|j| j.tag == place.tag && j.remote_id.is_none())
        {
            job.custom_ids.push(cache::custom_id(&fingerprint));
            job.items.push(BatchItem {
                custom_id: cache::custom_id(&fingerprint),
                body: route.body.clone(),
            });
            job.fingerprints.push(fingerprint);
            return;
        }
        let id = self.next_job;
        self.next_job += 1;
        let item = BatchItem {
            custom_id: cache::custom_id(&fingerprint),
            body: route.body.clone(),
        };
        let mut job = Job::new(id, route, place.tag, vec![fingerprint], vec![item]);
        job.from_journal_intent = true;
        job.uploaded_file = place.uploaded_file;
        self.jobs.insert(id, job);
        self.send_step(now_ms, id, Step::Find, None);
    }

    fn send_step(&mut self, now_ms: u64, job_id: u64, step: Step, download: Option<String>) {
        let Some(job) = self.jobs.get(&job_id) else {
            return;
        };
        let adapter = adapter(job.route.provider);
        let ctx = BatchContext {
            route: &job.route,
            tag: &job.tag,
        };
        let http = match step {
            Step::Upload => adapter.build_upload(&ctx, &job.items),
            Step::Create => {
                Some(adapter.build_create(&ctx, &job.items, job.uploaded_file.as_deref()))
            }
            Step::UploadFinish => job
                .upload_answer
                .as_ref()
                .and_then(|answer| adapter.build_upload_finish(&ctx, &job.items, answer)),
            Step::Find => Self::find_request(job),
            Step::Poll => job
                .remote_id
                .as_deref()
                .map(|id| adapter.build_poll(&ctx, id)),
            Step::Download => download.as_deref().map(|d| adapter.build_download(&ctx, d)),
            Step::AfterCreate => job.after_create.front().cloned(),
        };
        let Some(http) = http else {
            if step == Step::Find {
                // No way to tag a batch with this provider: whether the lost create went through
                // cannot be known, and guessing could pay twice. Tell the callers instead.
                let message = format!(
                    "the {} batch create for tag {} was sent but its answer was lost, and {} batches \
                     carry no tag to look it up by; check the provider console, then delete the cache \
                     file (or run with --no-cache) to submit again",
                    job.route.provider, job.tag, job.route.provider
                );
                return self.fail_job(job_id, "ERR_BATCHLING_AMBIGUOUS_CREATE", message);
            }
            if step == Step::UploadFinish {
                // The upload was a single request.
                let file = job.uploaded_file.clone();
                return self.upload_done(now_ms, job_id, file);
            }
            if step == Step::AfterCreate {
                return self.submitted(now_ms, job_id);
            }
            // Only the upload step is optional (inline providers); poll and download always
            // have their batch id / file by the time they are sent.
            debug_assert_eq!(step, Step::Upload, "no request for step {step:?}");
            return self.upload_done(now_ms, job_id, None);
        };
        let call = self.next_call;
        self.next_call += 1;
        self.calls.insert(call, (job_id, step, download));
        self.outputs.push(Output::Send {
            call,
            http: http.into(),
        });
        let _ = now_ms;
    }

    fn run_timers(&mut self, now_ms: u64) {
        let due: Vec<u64> = self
            .jobs
            .values()
            .filter(|j| {
                j.poll_at.is_some_and(|t| t <= now_ms) || j.retries.iter().any(|r| r.0 <= now_ms)
            })
            .map(|j| j.id)
            .collect();
        for id in due {
            let job = self.jobs.get_mut(&id).expect("due job exists");
            let poll = job.poll_at.is_some_and(|t| t <= now_ms);
            if poll {
                job.poll_at = None;
            }
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut job.retries)
                .into_iter()
                .partition(|r| r.0 <= now_ms);
            job.retries = later;
            if poll {
                self.send_step(now_ms, id, Step::Poll, None);
            }
            for (_, step, download) in due {
                self.send_step(now_ms, id, step, download);
            }
        }
    }

    fn on_response(&mut self, now_ms: u64, call: CallId, response: HttpResponse) {
        // An upload may answer with a redirect to where its bytes go (Together's presigned
        // upload): the adapter reads it.
        let upload_redirect = (300..400).contains(&response.status)
            && matches!(self.calls.get(&call), Some((_, Step::Upload, _)));
        if !(200..300).contains(&response.status) && !upload_redirect {
            let reason = format!(
                "HTTP {}: {}",
                response.status,
                providers::describe_error(&response)
            );
            return self.on_call_failure(now_ms, call, Some(response), reason);
        }
        let Some((job_id, step, download)) = self.calls.remove(&call) else {
            return;
        };
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        if step != Step::Find {
            job.attempts = 0; // a lookup is part of retrying the create, not progress
        }
        let adapter = adapter(job.route.provider);
        match step {
            Step::Upload => match adapter.parse_upload(&response) {
                Ok(file) => {
                    job.uploaded_file = Some(file);
                    job.upload_answer = Some(response);
                    self.send_step(now_ms, job_id, Step::UploadFinish, None);
                }
                Err(e) => self.protocol_failure(job_id, step, e.message),
            },
            Step::UploadFinish => {
                let file = job.uploaded_file.clone();
                self.upload_done(now_ms, job_id, file);
            }
            Step::Create => match adapter.parse_create(&response) {
                Ok(remote) => self.created(now_ms, job_id, remote.id),
                Err(e) => self.protocol_failure(job_id, step, e.message),
            },
            Step::Find => {
                match adapter.parse_find(&response, Self::find_key(job).unwrap_or_default()) {
                    Ok(Some(remote)) => self.created(now_ms, job_id, remote.id),
                    Ok(None) => self.not_found(now_ms, job_id),
                    Err(e) => self.protocol_failure(job_id, step, e.message),
                }
            }
            Step::Poll => {
                let report = adapter.parse_poll(&response, &job.custom_ids);
                match report {
                    Ok(report) => self.polled(now_ms, job_id, report),
                    Err(e) => self.protocol_failure(job_id, step, e.message),
                }
            }
            Step::Download => {
                let batch_id = job.remote_id.clone().unwrap_or_default();
                let parsed = adapter.parse_results(&batch_id, &response.body);
                let next = adapter.next_download(&batch_id, &response.body);
                let _ = download;
                self.absorb_results(job_id, parsed);
                if let Some(next) = next {
                    // A paged listing: this download goes on with its next page.
                    return self.send_step(now_ms, job_id, Step::Download, Some(next));
                }
                let job = self.jobs.get_mut(&job_id).expect("job still open");
                job.downloads_left = job.downloads_left.saturating_sub(1);
                if job.downloads_left == 0 {
                    self.finish_job(job_id);
                }
            }
            Step::AfterCreate => {
                job.after_create.pop_front();
                self.after_create_step(now_ms, job_id);
            }
        }
    }

    /// The listing that finds the job's batch after a lost create, if its adapter can tell.
    fn find_request(job: &Job) -> Option<HttpRequest> {
        Self::find_key(job)?;
        adapter(job.route.provider).build_find(&BatchContext {
            route: &job.route,
            tag: &job.tag,
        })
    }

    /// What the listing of [`Self::find_request`] is searched for (see `LostCreateKey`); `None`
    /// while that key is not known (no file uploaded yet).
    fn find_key(job: &Job) -> Option<&str> {
        match adapter(job.route.provider).lost_create_key() {
            LostCreateKey::Tag => Some(&job.tag),
            LostCreateKey::UploadedFile => job.uploaded_file.as_deref(),
        }
    }

    fn upload_done(&mut self, now_ms: u64, job_id: u64, file: Option<String>) {
        if let Some(job) = self.jobs.get_mut(&job_id) {
            job.uploaded_file = file;
            job.upload_answer = None;
        }
        // A key that comes with the upload is known now: journal the intent with it.
        let record = self.jobs.get(&job_id).and_then(|job| {
            let by_file =
                adapter(job.route.provider).lost_create_key() == LostCreateKey::UploadedFile;
            by_file.then(|| self.intent_record(job)).flatten()
        });
        if let Some(record) = record {
            self.persist(record);
        }
        self.send_step(now_ms, job_id, Step::Create, None);
    }

    /// The batch exists (created, or found by its tag): make the adapter's after-create calls,
    /// with the bodies the job still holds, then start polling.
    fn created(&mut self, now_ms: u64, job_id: u64, batch_id: String) {
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        let ctx = BatchContext {
            route: &job.route,
            tag: &job.tag,
        };
        let after = adapter(job.route.provider).build_after_create(&ctx, &job.items, &batch_id);
        job.after_create = after.into();
        job.remote_id = Some(batch_id);
        job.items = Vec::new(); // the provider has the bodies now, or the calls above do
        self.after_create_step(now_ms, job_id);
    }

    /// The next after-create call, or, when none is left, the batch is submitted.
    fn after_create_step(&mut self, now_ms: u64, job_id: u64) {
        if self.jobs[&job_id].after_create.is_empty() {
            self.submitted(now_ms, job_id);
        } else {
            self.send_step(now_ms, job_id, Step::AfterCreate, None);
        }
    }

    /// The batch holds every request: journal it and start polling. Journalled only now, so a
    /// crash between a create and its after-create calls leaves an intent, and the next run
    /// finds the batch by its tag and makes the calls again instead of polling a batch that
    /// does not hold its requests.
    fn submitted(&mut self, now_ms: u64, job_id: u64) {
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        let batch_id = job.remote_id.clone().expect("a submitted batch has its id");
        job.poll_at = Some(now_ms + self.config.poll_interval_ms);
        let event = LifecycleEvent::BatchSubmitted {
            job: job_id,
            provider: job.route.provider,
            batch_id: batch_id.clone(),
            requests: job.fingerprints.len(),
        };
        let record = CacheRecord::Submitted {
            place: Self::place(job),
            batch_id,
            fingerprints: job.fingerprints.clone(),
        };
        if self.caching {
            self.persist(record);
        }
        self.event(event);
    }

    fn not_found(&mut self, now_ms: u64, job_id: u64) {
        if !self.jobs[&job_id].from_journal_intent {
            // This run's create did not reach the provider: create again, within the same job,
            // so its attempts keep counting towards `call_attempts`.
            return self.send_step(now_ms, job_id, Step::Create, None);
        }
        let job = self.jobs.remove(&job_id).expect("job exists");
        // A previous run's lost create never reached the provider: queue the requests anew.
        for fp in job.fingerprints {
            self.cache.forget_intent(&fp);
            if let Some(entry) = self.entries.remove(&fp) {
                let mut waiters = entry.waiters.into_iter();
                if let Some(first) = waiters.next() {
                    self.enqueue(now_ms, first, fp.clone(), entry.route);
                    if let Some(e) = self.entries.get_mut(&fp) {
                        e.waiters.extend(waiters);
                    }
                }
            }
        }
    }

    fn polled(&mut self, now_ms: u64, job_id: u64, report: providers::PollReport) {
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        let batch_id = job.remote_id.clone().unwrap_or_default();
        self.outputs.push(Output::Event {
            event: LifecycleEvent::BatchPolled {
                job: job_id,
                batch_id: batch_id.clone(),
                state: report.state_label.clone(),
                total: report.total,
                completed: report.completed,
                failed: report.failed,
            },
        });
        match report.state {
            PollState::Running => {
                job.poll_at = Some(now_ms + self.config.poll_interval_ms);
            }
            PollState::Completed { downloads, inline } => {
                job.end_kind = report.end_kind_if_partial;
                job.downloads_left = downloads.len();
                self.event(LifecycleEvent::BatchFinished {
                    job: job_id,
                    batch_id,
                    state: report.state_label,
                });
                if let Some(parsed) = inline {
                    self.absorb_results(job_id, parsed);
                }
                if downloads.is_empty() {
                    self.finish_job(job_id);
                } else {
                    for download in downloads {
                        self.send_step(now_ms, job_id, Step::Download, Some(download));
                    }
                }
            }
            PollState::Ended { kind, message } => {
                job.end_kind = Some(kind);
                let adapter = adapter(job.route.provider);
                let response = adapter.ended_response(&batch_id, kind, &message);
                let fingerprints = job.fingerprints.clone();
                self.event(LifecycleEvent::BatchFinished {
                    job: job_id,
                    batch_id,
                    state: report.state_label,
                });
                self.jobs.remove(&job_id);
                self.persist_released(fingerprints.clone());
                for fp in fingerprints {
                    self.answer_entry(&fp, response.clone(), false);
                }
            }
        }
    }

    fn absorb_results(&mut self, job_id: u64, parsed: providers::ParsedResults) {
        let batch_id = self.jobs[&job_id].remote_id.clone().unwrap_or_default();
        for bad in &parsed.malformed {
            self.warn(format!(
                "batch {batch_id}: result line {} could not be read ({}); its request gets an error",
                bad.line_number, bad.reason
            ));
        }
        let job = &self.jobs[&job_id];
        let by_custom_id: HashMap<&str, &str> = job
            .custom_ids
            .iter()
            .map(String::as_str)
            .zip(job.fingerprints.iter().map(String::as_str))
            .collect();
        // A line for a request this run has not asked about (yet) is kept with the job.
        let mut answers: Vec<(String, HttpResponse)> = Vec::new();
        let mut unclaimed = Vec::new();
        for item in parsed.items {
            match by_custom_id.get(item.custom_id.as_str()) {
                Some(fp) if self.entries.contains_key(*fp) => {
                    answers.push((fp.to_string(), item.response))
                }
                // Already answered by an earlier download (page) of this batch: the first wins.
                Some(_) => {}
                None => unclaimed.push((item.custom_id, item.response)),
            }
        }
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        job.unclaimed.extend(unclaimed);
        let count = answers.len();
        self.outputs.push(Output::Event {
            event: LifecycleEvent::ResultsReceived {
                job: job_id,
                batch_id,
                results: count,
            },
        });
        for (fp, response) in answers {
            self.answer_entry(&fp, response, true);
        }
    }

    /// All results are in: requests without a line did not run.
    fn finish_job(&mut self, job_id: u64) {
        let Some(job) = self.jobs.remove(&job_id) else {
            return;
        };
        let batch_id = job.remote_id.clone().unwrap_or_default();
        let kind = job.end_kind.unwrap_or(EndKind::Failed);
        let adapter = adapter(job.route.provider);
        let message = match job.end_kind {
            Some(kind) => format!("the batch {kind} before this request ran"),
            None => "the batch completed without a result line for this request".to_string(),
        };
        let missing: Vec<String> = job
            .fingerprints
            .into_iter()
            .filter(|fp| self.entries.contains_key(fp))
            .collect();
        self.persist_released(missing.clone());
        for fp in missing {
            let response = adapter.ended_response(&batch_id, kind, &message);
            self.answer_entry(&fp, response, false);
        }
    }

    /// Answer every caller waiting on `fingerprint`; `durable` answers go to the cache. A line
    /// that failed with a status the SDKs retry (408, 409, 429, 5xx) is transient: it is released,
    /// not cached, so a retry (the SDK's, the framework's or a re-run) runs the request again
    /// instead of replaying the error forever.
    fn answer_entry(&mut self, fingerprint: &str, response: HttpResponse, durable: bool) {
        let transient = matches!(response.status, 408 | 409 | 429) || response.status >= 500;
        if durable && transient {
            self.persist_released(vec![fingerprint.to_string()]);
        } else if durable && self.caching {
            self.persist(CacheRecord::Result {
                fingerprint: fingerprint.to_string(),
                status: response.status,
                headers: response.headers.clone(),
                body: response.body.clone(),
            });
        }
        let Some(entry) = self.entries.remove(fingerprint) else {
            return;
        };
        for request in entry.waiters {
            if self.request_entry.remove(&request).is_some() {
                self.respond(request, response.clone());
            }
        }
    }

    fn respond(&mut self, request: RequestId, response: HttpResponse) {
        self.outputs.push(Output::Respond {
            request,
            status: response.status,
            headers: response.headers,
            body: response.body,
        });
    }

    fn fail_job(&mut self, job_id: u64, code: &str, message: String) {
        if let Some(job) = self.jobs.remove(&job_id) {
            self.fail_entries(&job.fingerprints, code, &message);
        }
    }

    fn protocol_failure(&mut self, job_id: u64, step: Step, message: String) {
        let batch = self.jobs[&job_id]
            .remote_id
            .clone()
            .map_or(String::new(), |id| format!(" (batch {id})"));
        self.fail_job(
            job_id,
            "ERR_BATCHLING_PROTOCOL",
            format!(
                "could not read the provider's {} answer{batch}: {message}",
                step.as_str()
            ),
        );
    }

    /// A non-2xx answer or no answer. 429, 5xx and transport errors are retried with backoff
    /// (honouring Retry-After); a lost create is looked for before anything is created again.
    fn on_call_failure(
        &mut self,
        now_ms: u64,
        call: CallId,
        response: Option<HttpResponse>,
        reason: String,
    ) {
        let Some((job_id, step, download)) = self.calls.remove(&call) else {
            return;
        };
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        let retryable = response
            .as_ref()
            .is_none_or(|r| r.status == 429 || r.status == 408 || r.status >= 500);
        if !retryable {
            let response = response.expect("non-retryable failures have a response");
            // The provider refused the batch call itself (bad key, bad request): every caller gets
            // that answer, as the normal endpoint would have refused them.
            let fingerprints = job.fingerprints.clone();
            self.jobs.remove(&job_id);
            if step == Step::Poll {
                // The batch a journal points at is gone (deleted, another account): a re-run
                // must submit these requests again rather than poll it forever.
                self.persist_released(fingerprints.clone());
            }
            for fp in fingerprints {
                self.answer_entry(&fp, response.clone(), false);
            }
            return;
        }
        // A create that got no answer, or a server error, may have gone through: look for the
        // batch by its tag before creating again. Where batches carry no tag (Anthropic), a
        // server error is taken at its word and only a lost answer is ambiguous.
        let may_exist = response.as_ref().is_none_or(|r| r.status >= 500);
        let findable = Self::find_request(job).is_some();
        let next_step = if step == Step::Create && may_exist && (findable || response.is_none()) {
            Step::Find
        } else {
            step
        };
        job.attempts += 1;
        if job.attempts >= self.config.call_attempts {
            let message = format!(
                "the provider's {} call failed {} times (last: {reason}); giving up",
                step.as_str(),
                job.attempts
            );
            return self.fail_job(job_id, "ERR_BATCHLING_PROVIDER_UNAVAILABLE", message);
        }
        let attempt = job.attempts;
        let retry_after_ms = response.as_ref().and_then(retry_after_ms);
        let backoff = self.backoff_ms(attempt);
        let delay_ms = retry_after_ms.map_or(backoff, |r| r.max(backoff / 2));
        let job = self.jobs.get_mut(&job_id).expect("job exists");
        job.retries.push((now_ms + delay_ms, next_step, download));
        self.event(LifecycleEvent::Retry {
            job: job_id,
            step: next_step.as_str().into(),
            attempt,
            delay_ms,
            reason,
        });
    }

    fn backoff_ms(&mut self, attempt: u32) -> u64 {
        let (base_ms, max_ms) = (self.config.backoff_ms, self.config.max_backoff_ms);
        self.jitter.backoff_ms(attempt, base_ms, max_ms)
    }

    fn report_row(&mut self, route: &Route) -> &mut QueueReport {
        self.report
            .entry((route.provider, route.endpoint.clone(), route.model.clone()))
            .or_insert_with(|| QueueReport {
                provider: route.provider,
                endpoint: route.endpoint.clone(),
                model: route.model.clone(),
                requests: 0,
                batches: 0,
                cache_hits: 0,
                estimated_sync_usd: None,
                estimated_batch_usd: None,
                price_note: String::new(),
            })
    }

    fn event(&mut self, event: LifecycleEvent) {
        self.outputs.push(Output::Event { event });
    }

    fn warn(&mut self, message: String) {
        self.event(LifecycleEvent::Warning { message });
    }
}

/// `Retry-After` in seconds (the form the providers send), as milliseconds.
fn retry_after_ms(response: &HttpResponse) -> Option<u64> {
    let value = response.header("retry-after")?.trim();
    let seconds: f64 = value.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).round() as u64)
}

/// Everything one host call produced, as the JSON the bindings hand to JS:
/// `{"deadline": ms | null, "outputs": [Output, …]}`. One string per call keeps the boundary
/// coarse; request bodies cross once each way.
pub fn outputs_json(interceptor: &mut Interceptor) -> String {
    #[derive(Serialize)]
    struct Envelope {
        deadline: Option<u64>,
        outputs: Vec<Output>,
    }
    let envelope = Envelope {
        deadline: interceptor.next_deadline(),
        outputs: interceptor.drain_outputs(),
    };
    serde_json::to_string(&envelope).expect("outputs always serialize")
}

/// Options as JSON from the host (camelCase), with the defaults of [`InterceptorConfig`].
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InterceptorOptions {
    pub batch_size: Option<usize>,
    pub batch_window_ms: Option<u64>,
    pub poll_interval_ms: Option<u64>,
    pub dry_run: Option<bool>,
    pub cache: Option<bool>,
    pub retry_attempts: Option<u32>,
    pub retry_backoff_ms: Option<u64>,
    pub retry_max_backoff_ms: Option<u64>,
    pub jitter_seed: Option<u64>,
    pub tag_seed: Option<u64>,
    pub max_concurrent_batches: Option<usize>,
    pub cost_limit_usd: Option<f64>,
    /// Hosts the user declared (`[{baseUrl, provider, completionWindow?, maxRequests?,
    /// maxFileBytes?}]`).
    pub hosts: Option<Vec<serde_json::Value>>,
}

impl Interceptor {
    /// Build from the host's JSON options; errors name the option.
    pub fn from_options_json(json: &str) -> Result<Self, crate::batcher::ConfigError> {
        let options: InterceptorOptions =
            serde_json::from_str(json).map_err(|e| crate::batcher::ConfigError {
                field: "options",
                message: e.to_string(),
            })?;
        let defaults = InterceptorConfig::default();
        let hosts =
            providers::HostTable::with_declared_json(options.hosts.as_deref().unwrap_or(&[]))
                .map_err(|e| crate::batcher::ConfigError {
                    field: "hosts",
                    message: format!("hosts[{}]: {}", e.index, e.message),
                })?;
        let config = InterceptorConfig {
            batch_size: options.batch_size.unwrap_or(defaults.batch_size),
            batch_window_ms: options.batch_window_ms.unwrap_or(defaults.batch_window_ms),
            poll_interval_ms: options
                .poll_interval_ms
                .unwrap_or(defaults.poll_interval_ms),
            dry_run: options.dry_run.unwrap_or(false),
            call_attempts: options.retry_attempts.unwrap_or(defaults.call_attempts),
            backoff_ms: options.retry_backoff_ms.unwrap_or(defaults.backoff_ms),
            max_backoff_ms: options
                .retry_max_backoff_ms
                .unwrap_or(defaults.max_backoff_ms),
            jitter_seed: options.jitter_seed.unwrap_or(defaults.jitter_seed),
            max_concurrent_batches: options
                .max_concurrent_batches
                .unwrap_or(defaults.max_concurrent_batches),
            cost_limit_usd: options.cost_limit_usd,
            hosts,
        };
        Interceptor::new(
            config,
            options.cache.unwrap_or(true),
            options.tag_seed.unwrap_or(0),
        )
    }
}
