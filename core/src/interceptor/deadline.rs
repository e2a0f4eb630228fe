//! Deadlines: a request not answered by its deadline (`deadlineMs`, or per call the header
//! [`DEADLINE_HEADER`]) leaves its batch and is sent to the provider's normal endpoint with its
//! caller's own headers; its caller is answered from there, and the batch's line for it, if one
//! comes back, is discarded. A request whose deadline is shorter than the earliest a batch can
//! answer (the batch window plus one poll interval) goes to the normal endpoint at once.
//!
//! Bounded: at most `max_sync_fallbacks` such calls are in flight (the others wait for one to
//! end), a 429 / 5xx / lost answer is retried with the same backoff as batch calls (honouring
//! `Retry-After`), and a cost limit, where one is set, counts each fallback at sync prices: a
//! fallback that would pass it is not sent, and its caller keeps waiting for the batch.
//!
//! Exactness: the journal records what the caller received (a `Result`), and a `SyncFallback`
//! record naming the batch the request was also in; when that batch's line for it comes back
//! (2xx: billed), the record is written again with `line_came_back`, so the request is known to
//! have been paid twice, by this run's report or a later run's.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::cache::CacheRecord;
use crate::catalog::pricing;
use crate::http::{HttpRequest, HttpResponse};
use crate::providers::Route;

use super::io::{CallId, FailCode, LifecycleEvent, Output, RequestId};
use super::job::JobId;
use super::Interceptor;

/// The per-call deadline header (milliseconds from the call). Never sent to the provider.
pub const DEADLINE_HEADER: &str = "x-batchling-deadline-ms";

/// The sync call of one request: what it sends, and who it answers.
#[derive(Debug)]
struct Fallback {
    http: HttpRequest,
    route: Route,
    sync_usd: Option<f64>,
    /// The job the request was also in (`None`: it left the queue before any batch).
    job: Option<JobId>,
    batch_id: Option<String>,
    waiters: Vec<RequestId>,
    attempts: u32,
    retry_at_ms: Option<u64>,
    /// Answered: kept only to learn whether its batch's line comes back.
    answered: bool,
    line_came_back: bool,
}

/// A request's deadline, and its normal-endpoint call kept until then.
#[derive(Debug)]
pub(super) struct Armed {
    http: HttpRequest,
    route: Route,
}

#[derive(Debug, Default)]
pub(super) struct Deadlines {
    /// (deadline, request) → what to send: one per request with a deadline, until it fires
    /// (a request answered before is skipped then).
    armed: BTreeMap<(u64, RequestId), Armed>,
    /// By fingerprint: fallbacks in flight, waiting for a slot or a retry, or answered.
    fallbacks: HashMap<String, Fallback>,
    /// Fallbacks waiting for a slot, in order.
    queue: VecDeque<String>,
    /// Fallbacks holding a slot (sent, or waiting for their retry).
    in_flight: usize,
    calls: HashMap<CallId, String>,
}

impl Deadlines {
    pub(super) fn next_deadline(&self) -> Option<u64> {
        let armed = self.armed.keys().next().map(|(at, _)| *at);
        let retries = self.fallbacks.values().filter_map(|f| f.retry_at_ms);
        armed.into_iter().chain(retries).min()
    }

    pub(super) fn owns(&self, call: CallId) -> bool {
        self.calls.contains_key(&call)
    }

    /// Join a request to the sync call under way for its fingerprint, if there is one.
    pub(super) fn join(&mut self, fingerprint: &str, request: RequestId) -> bool {
        match self.fallbacks.get_mut(fingerprint) {
            Some(f) if !f.answered => {
                f.waiters.push(request);
                true
            }
            _ => false,
        }
    }

    /// Sync fallbacks that ran, whether their batch's line came back, and those whose batch
    /// has not ended: by route.
    pub(super) fn pending_paid_twice<'a>(
        &'a self,
        live_job: impl Fn(JobId) -> bool + 'a,
    ) -> impl Iterator<Item = &'a Route> + 'a {
        self.fallbacks
            .values()
            .filter(move |f| !f.line_came_back && f.job.is_some_and(&live_job))
            .map(|f| &f.route)
    }
}

/// The deadline header's value: `None` without it; an error message naming it when it is not a
/// whole number of milliseconds >= 1. The header is taken off the request either way.
pub(super) fn take_deadline_header(http: &mut HttpRequest) -> Result<Option<u64>, String> {
    let mut value = None;
    http.headers.retain(|(name, v)| {
        let ours = name.eq_ignore_ascii_case(DEADLINE_HEADER);
        if ours {
            value = Some(v.trim().to_string());
        }
        !ours
    });
    let Some(value) = value else { return Ok(None) };
    match value.parse::<u64>() {
        Ok(ms) if ms >= 1 && value.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(ms)),
        _ => Err(format!(
            "the {DEADLINE_HEADER} header must be a whole number of milliseconds >= 1, got {value:?}"
        )),
    }
}

impl Interceptor {
    /// The earliest a batch can answer a request cut by its window: the window, then one poll.
    fn batch_turnaround_ms(&self) -> u64 {
        self.config
            .batch_window_ms
            .saturating_add(self.config.poll_interval_ms)
    }

    /// Arm `request`'s deadline (`deadline_ms` from `arrived_ms`); `true` when it is too close
    /// for any batch, so the request should go to the normal endpoint at once.
    pub(super) fn arm_deadline(
        &mut self,
        request: RequestId,
        http: &HttpRequest,
        route: &Route,
        arrived_ms: u64,
        deadline_ms: u64,
    ) -> bool {
        let too_close = deadline_ms < self.batch_turnaround_ms();
        let headers = route
            .forward_headers
            .iter()
            .cloned()
            .chain([("content-type".to_string(), "application/json".to_string())])
            .collect();
        let armed = Armed {
            http: HttpRequest {
                method: http.method.clone(),
                url: http.url.clone(),
                headers,
                body: route.body.to_string(),
            },
            route: route.clone(),
        };
        let at = if too_close {
            0
        } else {
            arrived_ms.saturating_add(deadline_ms)
        };
        self.deadlines.armed.insert((at, request), armed);
        too_close
    }

    /// Fire the deadlines that passed and send the retries that are due.
    pub(super) fn run_deadlines(&mut self, now_ms: u64) {
        while let Some(entry) = self.deadlines.armed.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let ((at, request), armed) = entry.remove_entry();
            let Some(waiting) = self.request_entry.get(&request) else {
                continue; // answered (or cancelled) in time
            };
            let fingerprint = waiting.fingerprint.clone();
            if self.deadlines.fallbacks.contains_key(&fingerprint) {
                continue; // it went sync already, with an identical request
            }
            self.fall_back(now_ms, fingerprint, armed, at == 0);
        }
        let due: Vec<String> = self
            .deadlines
            .fallbacks
            .iter()
            .filter(|(_, f)| f.retry_at_ms.is_some_and(|t| t <= now_ms))
            .map(|(fp, _)| fp.clone())
            .collect();
        for fp in due {
            self.send_fallback(&fp);
        }
        self.start_fallbacks();
    }

    /// Take the request out of its batch's way and queue its sync call, if the cost limit
    /// allows; otherwise its callers keep waiting for the batch.
    fn fall_back(&mut self, now_ms: u64, fingerprint: String, armed: Armed, too_close: bool) {
        let Armed { http, route } = armed;
        let sync_usd = pricing::estimate(route.provider, &route.model, &route.body).sync_usd;
        if let Some(limit) = self.config.cost_limit_usd {
            let refusal = match sync_usd {
                None => Some(format!(
                    "the price of model {} is unknown, so the cost limit of ${limit} cannot be enforced",
                    route.model
                )),
                Some(usd) if self.admission.committed_usd + usd > limit => Some(format!(
                    "a sync call (~${usd:.6}) would pass the cost limit of ${limit} (${:.6} already committed)",
                    self.admission.committed_usd
                )),
                Some(_) => None,
            };
            if let Some(reason) = refusal {
                self.event(LifecycleEvent::DeadlineFallback {
                    provider: route.provider,
                    model: route.model.clone(),
                    sent: false,
                    too_close,
                    batch_id: None,
                    reason: format!(
                        "not sent to the normal endpoint: {reason}; it waits for its batch"
                    ),
                });
                if too_close && !self.entries.contains_key(&fingerprint) {
                    // Never queued: queue it now, with every request waiting on it.
                    let waiters = self.waiters_of(&fingerprint);
                    let mut route = route;
                    route.body = serde_json::from_str(&http.body).unwrap_or_default();
                    let mut waiters = waiters.into_iter();
                    if let Some(first) = waiters.next() {
                        self.enqueue(now_ms, first, fingerprint.clone(), route);
                        if let Some(e) = self.entries.get_mut(&fingerprint) {
                            e.waiters.extend(waiters);
                        }
                    }
                }
                return;
            }
            self.admission.committed_usd += sync_usd.unwrap_or(0.0);
        }
        // Out of its batch's way: still queued, it never enters one; cut, it is dropped before
        // launch (admission skips entries that are gone); in a batch, its line is discarded.
        let (waiters, job) = match self.entries.remove(&fingerprint) {
            Some(entry) => {
                if let Some(item) = entry.item {
                    self.item_entry.remove(&item);
                    self.batcher
                        .handle(now_ms, crate::batcher::Event::Cancel { item });
                }
                let job = self
                    .jobs
                    .values()
                    .find(|j| j.fingerprints.contains(&fingerprint));
                (
                    entry.waiters,
                    job.map(|j| (j.id, j.batch_id().map(str::to_string))),
                )
            }
            None => (self.waiters_of(&fingerprint), None),
        };
        let (job, batch_id) = job.map_or((None, None), |(id, b)| (Some(id), b));
        if self.caching {
            self.persist(CacheRecord::SyncFallback {
                fingerprint: fingerprint.clone(),
                batch_id: batch_id.clone(),
                line_came_back: false,
            });
        }
        self.event(LifecycleEvent::DeadlineFallback {
            provider: route.provider,
            model: route.model.clone(),
            sent: true,
            too_close,
            batch_id: batch_id.clone(),
            reason: if too_close {
                "its deadline is shorter than a batch's turnaround".into()
            } else {
                "its deadline passed".into()
            },
        });
        let fallback = Fallback {
            http,
            route,
            sync_usd,
            job,
            batch_id,
            waiters,
            attempts: 0,
            retry_at_ms: None,
            answered: false,
            line_came_back: false,
        };
        self.deadlines
            .fallbacks
            .insert(fingerprint.clone(), fallback);
        self.deadlines.queue.push_back(fingerprint);
    }

    /// The open requests waiting on `fingerprint` (a request answered meanwhile is not).
    fn waiters_of(&self, fingerprint: &str) -> Vec<RequestId> {
        let mut waiters: Vec<RequestId> = self
            .request_entry
            .iter()
            .filter(|(_, w)| w.fingerprint == fingerprint)
            .map(|(r, _)| *r)
            .collect();
        waiters.sort_unstable();
        waiters
    }

    /// Send queued fallbacks while slots are free.
    fn start_fallbacks(&mut self) {
        while self.deadlines.in_flight < self.config.max_sync_fallbacks {
            let Some(fp) = self.deadlines.queue.pop_front() else {
                return;
            };
            self.deadlines.in_flight += 1;
            self.send_fallback(&fp);
        }
    }

    fn send_fallback(&mut self, fingerprint: &str) {
        let Some(fallback) = self.deadlines.fallbacks.get_mut(fingerprint) else {
            return;
        };
        fallback.retry_at_ms = None;
        let http = fallback.http.clone();
        let call = self.next_call;
        self.next_call += 1;
        self.deadlines.calls.insert(call, fingerprint.to_string());
        self.outputs.push(Output::Send {
            call,
            http: http.into(),
            stream: None,
        });
    }

    /// The normal endpoint answered (`Some`) or did not (`None`, with why).
    pub(super) fn on_fallback_answer(
        &mut self,
        now_ms: u64,
        call: CallId,
        response: Option<HttpResponse>,
        reason: String,
    ) {
        let Some(fp) = self.deadlines.calls.remove(&call) else {
            return;
        };
        let retryable = response
            .as_ref()
            .is_none_or(|r| matches!(r.status, 408 | 409 | 429) || r.status >= 500);
        let attempts = {
            let f = self
                .deadlines
                .fallbacks
                .get_mut(&fp)
                .expect("fallback exists");
            f.attempts += 1;
            f.attempts
        };
        if retryable && attempts < self.config.call_attempts {
            let backoff = self.backoff_ms(attempts);
            let retry_after = response.as_ref().and_then(super::flow::retry_after_ms);
            let delay_ms = retry_after.map_or(backoff, |r| r.max(backoff / 2));
            let f = self
                .deadlines
                .fallbacks
                .get_mut(&fp)
                .expect("fallback exists");
            f.retry_at_ms = Some(now_ms + delay_ms);
            let host = super::flow::url_host(&f.route.base_url).to_string();
            let max_attempts = self.config.call_attempts.saturating_sub(1);
            return self.event(LifecycleEvent::Retry {
                job: 0,
                step: "sync_fallback".into(),
                attempt: attempts,
                max_attempts,
                delay_ms,
                reason,
                host,
            });
        }
        self.deadlines.in_flight -= 1;
        let f = self
            .deadlines
            .fallbacks
            .get_mut(&fp)
            .expect("fallback exists");
        f.answered = true;
        let waiters = std::mem::take(&mut f.waiters);
        let (route, sync_usd) = (f.route.clone(), f.sync_usd);
        self.report.count_sync_fallback(&route, sync_usd);
        match response {
            Some(response) => {
                // The journal keeps what the caller received, so a re-run answers the same.
                if self.caching && !retryable {
                    self.persist(CacheRecord::Result {
                        fingerprint: fp.clone(),
                        status: response.status,
                        headers: response.headers.clone(),
                        body: response.body.clone(),
                        at_ms: self.wall_ms(),
                    });
                }
                for request in waiters {
                    if self.request_entry.remove(&request).is_some() {
                        self.respond(request, response.clone());
                    }
                }
            }
            None => {
                let message = format!(
                    "the sync call after the deadline failed {attempts} times (last: {reason}); giving up"
                );
                for request in waiters {
                    if self.request_entry.remove(&request).is_some() {
                        self.outputs.push(Output::Fail {
                            request,
                            code: FailCode::ProviderUnavailable,
                            message: message.clone(),
                        });
                    }
                }
            }
        }
        let done = self
            .deadlines
            .fallbacks
            .get(&fp)
            .is_some_and(|f| f.job.is_none());
        if done {
            self.deadlines.fallbacks.remove(&fp); // in no batch: nothing more to learn
        }
        self.start_fallbacks();
    }

    /// A request answered from the journal that an earlier run sent sync: count whether it was
    /// paid twice there (or may have been: its batch's end was not seen).
    pub(super) fn count_journalled_fallback(
        &mut self,
        fp: &crate::cache::Fingerprint,
        route: &Route,
    ) {
        match self.cache.sync_fallback(fp) {
            Some((_, true)) => self.report.count_paid_twice(route, 1),
            Some((Some(_), false)) => self.report.count_maybe_paid_twice(route),
            _ => {}
        }
    }

    /// A batch's line for a request that went sync came back: discarded; a 2xx line was billed,
    /// so the request was paid twice.
    pub(super) fn line_after_fallback(&mut self, fingerprint: &str, batch_id: &str, status: u16) {
        let Some(f) = self.deadlines.fallbacks.get_mut(fingerprint) else {
            return;
        };
        if f.line_came_back || !(200..300).contains(&status) {
            return;
        }
        f.line_came_back = true;
        f.batch_id = Some(batch_id.to_string());
        let route = f.route.clone();
        self.report.count_paid_twice(&route, 1);
        if self.caching {
            self.persist(CacheRecord::SyncFallback {
                fingerprint: fingerprint.to_string(),
                batch_id: Some(batch_id.to_string()),
                line_came_back: true,
            });
        }
    }
}
