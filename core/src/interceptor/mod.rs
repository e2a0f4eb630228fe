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
//!
//! The engine's concerns, one module each:
//! - [`io`]: what crosses the boundary (inputs, outputs, lifecycle events);
//! - [`options`]: configuration and its rules;
//! - `abort`: a caller's abort cancels its request, a client's own timeout does not;
//! - `intake`: a submitted request is classified, looked up in the journal, deduplicated and
//!   queued (or cancelled);
//! - `admission`: cut batches are split under the provider's limits and wait for a slot and
//!   the cost limit;
//! - `job`: one provider batch and its explicit state machine;
//! - `flow`: the provider calls that move a job along, and their retries;
//! - `headroom`: batches wait for room under the providers' enqueued-token limits;
//! - `deadline`: requests not answered by their deadline go to the normal endpoint;
//! - `fleet`: fleet mode, the requests going through a fleet member and a shared store;
//! - [`report`]: the per-queue report.

mod abort;
mod admission;
mod bulk;
mod deadline;
mod fleet;
mod flow;
mod headroom;
mod intake;
pub mod io;
mod job;
mod lines;
pub mod options;
pub mod report;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use crate::backoff::Jitter;
use crate::batcher::{Batcher, BatcherConfig, Event as BatcherEvent};
use crate::batcher::{GroupId, ItemId};
use crate::cache::{AgeLimit, Cache, CacheRecord, CacheStats, CompactLine};
use crate::http::HttpResponse;
use crate::options::OptionError;
use crate::providers::Route;

pub use deadline::DEADLINE_HEADER;
pub use io::{
    CallId, FailCode, Input, JobSubmission, LifecycleEvent, Output, RequestId, SerializableRequest,
};
pub use options::{check_price, InterceptorConfig, InterceptorOptions};
pub use report::QueueReport;

use abort::{AbortKind, ClientTimer};
use admission::Admission;
use headroom::Headroom;
use job::{BatchJob, Call, JobId};
use report::Report;

/// A distinct request (by fingerprint) and the callers waiting on it.
struct Entry {
    /// Its route without the body, shared by the requests of one queue.
    route: Arc<Route>,
    /// The request body until its job takes it (then `Null`): one copy per request.
    body: serde_json::Value,
    waiters: Vec<RequestId>,
    /// Its item in the batcher while it is queued; `None` once its batch is cut.
    item: Option<ItemId>,
}

/// A queue: requests of one route, cut into batches by the batcher's group of the same id.
struct Queue {
    /// Its key in `Interceptor::groups`.
    key: String,
    /// Its route without a body, shared by its entries.
    route: Arc<Route>,
}

/// A request waiting for its answer: the entry it waits on, and what its client's timer is.
struct Waiting {
    fingerprint: String,
    timer: ClientTimer,
}

pub struct Interceptor {
    config: InterceptorConfig,
    batcher: Batcher,
    cache: Cache,
    caching: bool,
    /// A queue's key (provider, base URL, endpoint, model, credential) → its batcher group.
    groups: HashMap<String, GroupId>,
    /// The queues by group, while they hold requests.
    queues: HashMap<GroupId, Queue>,
    next_group: GroupId,
    entries: HashMap<String, Entry>,
    item_entry: HashMap<ItemId, String>,
    request_entry: HashMap<RequestId, Waiting>,
    /// The specs of the open requests submitted as jobs (`Input::SubmitJobs`), answered with
    /// their result lines.
    job_specs: HashMap<RequestId, crate::jobs::JobSpec>,
    jobs: BTreeMap<JobId, BatchJob>,
    next_job: JobId,
    calls: HashMap<CallId, (JobId, Call)>,
    /// The provider-file deletes in flight, by call: the route of the batch whose file it is
    /// (its credentials, and its row in the report). Not in `calls`: the job is over by then.
    file_deletes: HashMap<CallId, Arc<Route>>,
    /// The host's monotonic `now` at the last input (wall-clock times come from it).
    now_ms: u64,
    /// Lines read so far of the downloads coming in chunks (`Input::ResponseChunk`), by call.
    streamed_lines: HashMap<CallId, usize>,
    next_call: CallId,
    outputs: Vec<Output>,
    report: Report,
    closing: bool,
    drained_sent: bool,
    admission: Admission,
    headroom: Headroom,
    deadlines: deadline::Deadlines,
    jitter: Jitter,
    tag_seed: u64,
    /// The abort kinds already warned about.
    warned_aborts: HashSet<AbortKind>,
    /// Requests resubmitted because their batches ended without running them: the ids of
    /// those batches, oldest first (see `lines`).
    not_run: HashMap<String, Vec<String>>,
    /// Fleet mode (not in a dry run): the fleet member and what the engine keeps beside it.
    fleet: Option<fleet::FleetLink>,
}

impl Interceptor {
    /// `tag_seed` makes batch tags unique across runs (the host passes random bits or the time).
    pub fn new(
        config: InterceptorConfig,
        caching: bool,
        keep_answers: bool,
        tag_seed: u64,
    ) -> Result<Self, OptionError> {
        let mut config = config;
        config.validate()?;
        if config.fleet.is_some() && caching {
            return Err(OptionError::new(
                "fleet",
                "the fleet's store is the journal: leave `cache` out (or false) with `fleet`",
            ));
        }
        // Dry runs touch no store.
        let fleet = match &config.fleet {
            Some(fleet) if !config.dry_run => {
                let member =
                    crate::fleet::FleetMember::new(fleet.clone()).map_err(|e| match e {
                        crate::fleet::FleetError::InvalidOption(e) => e,
                        other => OptionError::new("fleet", other.to_string()),
                    })?;
                // A batch's files stay at the provider (yet): a process that takes the batch
                // over after a crash between its download and its answers' puts reads them.
                config.delete_provider_files = false;
                Some(fleet::FleetLink::new(member))
            }
            _ => None,
        };
        let batcher = Batcher::new(BatcherConfig {
            max_batch_size: config.batch_size,
            max_delay_ms: config.batch_window_ms,
            ..BatcherConfig::default()
        })
        .map_err(|e| match e.option.as_str() {
            "maxBatchSize" => OptionError::new("batchSize", e.message),
            _ => e,
        })?;
        let jitter = Jitter::new(config.jitter_seed);
        // Answers are aged by the wall clock at start; a store that keeps none has none to age.
        let age_limit = match (config.cache_max_age_ms, config.wall_clock) {
            (Some(max_age_ms), Some(clock)) if keep_answers => Some(AgeLimit {
                now_ms: clock.wall_ms,
                max_age_ms,
            }),
            _ => None,
        };
        Ok(Interceptor {
            config,
            batcher,
            cache: Cache::new(keep_answers).with_age_limit(age_limit),
            caching,
            groups: HashMap::new(),
            queues: HashMap::new(),
            next_group: 0,
            entries: HashMap::new(),
            item_entry: HashMap::new(),
            request_entry: HashMap::new(),
            job_specs: HashMap::new(),
            jobs: BTreeMap::new(),
            next_job: 1,
            calls: HashMap::new(),
            file_deletes: HashMap::new(),
            now_ms: 0,
            streamed_lines: HashMap::new(),
            next_call: 1,
            outputs: Vec::new(),
            report: Report::default(),
            closing: false,
            drained_sent: false,
            admission: Admission::default(),
            headroom: Headroom::default(),
            deadlines: deadline::Deadlines::default(),
            jitter,
            tag_seed,
            warned_aborts: HashSet::new(),
            not_run: HashMap::new(),
            fleet,
        })
    }

    /// Load a chunk of the cache journal (whole lines, in order; see [`Cache::load`]). Damaged
    /// lines become warnings; the rest is kept.
    pub fn load_cache(&mut self, text: &str) {
        for damaged in self.cache.load(text) {
            self.warn(format!(
                "cache journal line {} is damaged and was skipped ({}); the other records were kept",
                damaged.line_number, damaged.reason
            ));
        }
    }

    /// After the load: the journal rewritten with only its live lines, if more than half of it
    /// is superseded (`None` otherwise, or without a cache). The host writes it in place of the
    /// journal (atomically) and then calls [`Interceptor::journal_compacted`].
    pub fn journal_compaction(&mut self) -> Option<Vec<CompactLine>> {
        (self.caching && self.cache.should_compact()).then(|| self.cache.compaction())
    }

    /// The host's journal is now the compaction's lines: answers are at their new places.
    pub fn journal_compacted(&mut self) -> bool {
        self.cache.compacted()
    }

    /// The journal rewritten with only its live lines (answers within the age limit, batches
    /// still to resume), whatever share of it is superseded: `batchling cache prune`.
    pub fn journal_prune(&mut self) -> Vec<CompactLine> {
        self.cache.compaction()
    }

    /// The journal as loaded: `batchling cache stats`.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// The wall-clock time now (ms since the epoch), when the host gave a clock.
    fn wall_ms(&self) -> Option<u64> {
        self.config.wall_clock.map(|clock| clock.at(self.now_ms))
    }

    pub fn handle(&mut self, now_ms: u64, input: Input) {
        self.now_ms = self.now_ms.max(now_ms);
        match input {
            Input::Submit {
                request,
                http,
                arrived_ms,
            } => self.submit(now_ms, request, http, arrived_ms),
            Input::SubmitJobs { jobs } => self.submit_jobs(now_ms, jobs),
            Input::Response { call, response } if self.deadlines.owns(call) => {
                let reason = format!("HTTP {}", response.status);
                self.on_fallback_answer(now_ms, call, Some(response), reason)
            }
            Input::TransportError { call, message } if self.deadlines.owns(call) => {
                self.on_fallback_answer(now_ms, call, None, message)
            }
            Input::Response { call, response } => self.on_response(now_ms, call, response),
            Input::ResponseChunk { call, text } => self.on_response_chunk(call, &text),
            Input::TransportError { call, message } => {
                self.on_call_failure(now_ms, call, None, message)
            }
            Input::Tick => self.fleet_event(now_ms, crate::fleet::Event::Tick),
            Input::StoreOutcome { action, outcome } => self.fleet_outcome(now_ms, action, outcome),
            Input::StoreFailed { action, error } => self.fleet_store_failed(now_ms, action, error),
            Input::Cancel { request } => self.cancel(now_ms, request),
            Input::Abort {
                request,
                timeout_reason,
            } => self.abort(now_ms, request, timeout_reason),
            Input::Flush => self.batcher.handle(now_ms, BatcherEvent::Flush),
            Input::Close => {
                self.closing = true;
                self.batcher.handle(now_ms, BatcherEvent::Flush);
            }
        }
        self.batcher.handle(now_ms, BatcherEvent::Tick); // windows that elapsed cut now
        self.run_timers(now_ms);
        self.run_deadlines(now_ms);
        self.absorb_batcher(now_ms);
        self.admit_jobs(now_ms);
        // Drained once every caller is answered and the provider-file deletes are done, and in
        // fleet mode every answer of this process's is stored and every claim released (a host
        // may exit then).
        if self.closing
            && self.request_entry.is_empty()
            && self.file_deletes.is_empty()
            && self.fleet.as_ref().is_none_or(fleet::FleetLink::idle)
            && !self.drained_sent
        {
            self.drained_sent = true;
            self.outputs.push(Output::Drained);
        }
    }

    pub fn drain_outputs(&mut self) -> Vec<Output> {
        let outputs = std::mem::take(&mut self.outputs);
        self.answer_jobs(outputs)
    }

    pub fn next_deadline(&self) -> Option<u64> {
        let jobs = self.jobs.values().filter_map(BatchJob::next_deadline);
        let holds = self.headroom.next_deadline();
        self.batcher
            .next_deadline()
            .into_iter()
            .chain(jobs)
            .chain(holds)
            .chain(self.deadlines.next_deadline())
            .chain(self.fleet.as_ref().and_then(|f| f.member.next_deadline()))
            .min()
    }

    /// Per queue: requests, batches, cache hits and estimated cost, batch against sync prices.
    pub fn report(&self) -> Vec<QueueReport> {
        let waiting = self.admission.waiting.iter().filter_map(|(route, fps)| {
            self.headroom
                .is_waiting(route)
                .then_some((route, fps.len() as u64))
        });
        let pending = self
            .deadlines
            .pending_paid_twice(|job| self.jobs.contains_key(&job));
        self.report.rows_with_waits(waiting, pending)
    }

    /// Requests not yet answered.
    pub fn open_requests(&self) -> usize {
        self.request_entry.len()
    }

    /// Provider batches not yet ended: the ones in flight plus the cut ones waiting for
    /// admission. While there are none, requests still queued wait for their window or a flush.
    pub fn live_batches(&self) -> usize {
        self.jobs.len() + self.admission.waiting.len()
    }

    /// Estimated batch-price spend of the batches submitted so far.
    pub fn committed_usd(&self) -> f64 {
        self.admission.committed_usd
    }

    // ---- answers ---------------------------------------------------------------------------

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
                at_ms: self.wall_ms(),
            });
        }
        self.not_run.remove(fingerprint);
        let Some(entry) = self.entries.remove(fingerprint) else {
            return;
        };
        // Answered here without the fleet's store (the batch's end, a refusal): released.
        self.fleet_drop(self.now_ms, fingerprint);
        if durable && (200..300).contains(&response.status) {
            self.report
                .count_answer(&entry.route, &response.body, &self.config.prices);
        }
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

    fn fail_entries(&mut self, fingerprints: &[String], code: FailCode, message: &str) {
        for fp in fingerprints {
            self.not_run.remove(fp);
            if let Some(entry) = self.entries.remove(fp) {
                self.fleet_drop(self.now_ms, fp);
                for request in entry.waiters {
                    if self.request_entry.remove(&request).is_some() {
                        self.outputs.push(Output::Fail {
                            request,
                            code,
                            message: message.into(),
                        });
                    }
                }
            }
        }
    }

    // ---- journal ---------------------------------------------------------------------------

    /// Requests whose batch ended without running them: a re-run must submit them again.
    fn persist_released(&mut self, fingerprints: Vec<String>) {
        if self.caching && !fingerprints.is_empty() {
            self.persist(CacheRecord::Released { fingerprints });
        }
    }

    fn persist(&mut self, record: CacheRecord) {
        let line = record.to_line();
        self.cache.append(&record, &line);
        self.outputs.push(Output::Persist { line });
    }

    fn event(&mut self, event: LifecycleEvent) {
        self.outputs.push(Output::Event { event });
    }

    fn warn(&mut self, message: String) {
        self.event(LifecycleEvent::Warning { message });
    }
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
