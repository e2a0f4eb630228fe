//! Headroom under the providers' limits on enqueued tokens, per (provider, host, model,
//! credential).
//!
//! OpenAI and Azure accept a batch over the limit and then end it `failed`
//! (`token_limit_exceeded`) before any line runs; Anthropic and Gemini answer its create with 429.
//! Such a batch ran nothing, so its requests go back to admission (journalled as released, so a
//! re-run does not resume the refused batch), and the queue's next create waits until one of its
//! batches in flight ends, or, with none in flight, for a growing backoff. A limit the provider
//! states, or `maxEnqueuedTokens`, is kept to before the provider refuses: a batch that would
//! pass it waits for headroom, and one above it alone is split.
//!
//! Tokens are estimated as the cost limit estimates them (`pricing::estimate`: input tokens).

use std::collections::{HashMap, HashSet};

use crate::cache;
use crate::catalog::pricing;
use crate::providers::{adapter, BatchItem, EndKind, Route};

use super::io::{FailCode, LifecycleEvent};
use super::job::JobId;
use super::Interceptor;

/// The queues' headroom state, by [`headroom_key`].
#[derive(Debug, Default)]
pub(super) struct Headroom {
    queues: HashMap<String, QueueHeadroom>,
    /// The queues whose parts admission left waiting for headroom in its last pass.
    pub(super) waiting: HashSet<String>,
}

#[derive(Debug, Default)]
struct QueueHeadroom {
    /// The limit learnt from a refusal: the one the provider stated, or, when it stated none and
    /// nothing else of ours was in flight, half the refused batch.
    learnt_limit: Option<u64>,
    hold: Option<Hold>,
    /// Refusals in a row with no batch of this queue in flight; past `call_attempts`, the
    /// requests fail rather than wait forever.
    lone_refusals: u32,
    /// The `enqueuedLimit` event was sent for the current wait.
    announced: bool,
}

/// Why a queue's creates wait after a refusal.
#[derive(Debug)]
enum Hold {
    /// Until one of these batches (in flight at the refusal) ends.
    UntilOneEnds(Vec<JobId>),
    /// Until this time (nothing of the queue was in flight).
    Until(u64),
}

/// What admission does with a waiting part.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Room {
    Fits,
    /// Wait for headroom (`reason` says why).
    Wait {
        reason: String,
    },
    /// Too big alone: launch its first `n` requests now, keep the rest waiting.
    Split(usize),
}

/// The queue an enqueued-token limit applies to: (provider, host, model, credential).
pub(super) fn headroom_key(route: &Route) -> String {
    format!(
        "{}\n{}\n{}\n{}",
        route.provider, route.base_url, route.model, route.credential_fingerprint
    )
}

impl Headroom {
    /// Whether `route`'s queue waits for headroom (as of the last admission pass).
    pub(super) fn is_waiting(&self, route: &Route) -> bool {
        !self.waiting.is_empty() && self.waiting.contains(&headroom_key(route))
    }

    /// The earliest time a backoff hold ends, for the host's timer.
    pub(super) fn next_deadline(&self) -> Option<u64> {
        self.queues
            .values()
            .filter_map(|q| match q.hold {
                Some(Hold::Until(t)) => Some(t),
                _ => None,
            })
            .min()
    }

    /// Backoff holds that have run out are lifted (so no past deadline keeps the host ticking).
    pub(super) fn lift_expired(&mut self, now_ms: u64) {
        for q in self.queues.values_mut() {
            if matches!(q.hold, Some(Hold::Until(t)) if t <= now_ms) {
                q.hold = None;
            }
        }
    }
}

impl Interceptor {
    /// Estimated input tokens of each request, as the enqueued-token limits count them.
    pub(super) fn request_tokens(&self, route: &Route, fingerprints: &[String]) -> Vec<u64> {
        fingerprints
            .iter()
            .map(|fp| {
                self.entries.get(fp).map_or(0, |e| {
                    pricing::estimate(route.provider, &route.model, &e.body).input_tokens_est
                })
            })
            .collect()
    }

    /// The queue's batches in flight and their estimated tokens.
    fn in_flight(&self, key: &str) -> (Vec<JobId>, u64) {
        let jobs = self.jobs.values().filter(|j| headroom_key(&j.route) == key);
        jobs.fold((Vec::new(), 0), |(mut ids, tokens), j| {
            ids.push(j.id);
            (ids, tokens + j.tokens)
        })
    }

    /// The limit a queue is kept under: `maxEnqueuedTokens` or the one learnt, the lower.
    fn enqueued_limit(&self, key: &str) -> Option<u64> {
        let learnt = self.headroom.queues.get(key).and_then(|q| q.learnt_limit);
        match (self.config.max_enqueued_tokens, learnt) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a waiting part may be launched now.
    pub(super) fn room_for(&mut self, now_ms: u64, route: &Route, fingerprints: &[String]) -> Room {
        let key = headroom_key(route);
        if let Some(q) = self.headroom.queues.get(&key) {
            let held = match &q.hold {
                Some(Hold::UntilOneEnds(ids)) => ids.iter().all(|id| self.jobs.contains_key(id)),
                Some(Hold::Until(t)) => now_ms < *t,
                None => false,
            };
            if held {
                return Room::Wait {
                    reason: "the provider refused a batch for its enqueued-token limit".into(),
                };
            }
        }
        if let Some(q) = self.headroom.queues.get_mut(&key) {
            q.hold = None;
        }
        let Some(limit) = self.enqueued_limit(&key) else {
            return Room::Fits;
        };
        let (in_flight, in_flight_tokens) = self.in_flight(&key);
        let tokens = self.request_tokens(route, fingerprints);
        let total: u64 = tokens.iter().sum();
        if in_flight_tokens + total <= limit {
            return Room::Fits;
        }
        if !in_flight.is_empty() {
            return Room::Wait {
                reason: format!(
                    "~{total} tokens would pass the limit of {limit} enqueued tokens with ~{in_flight_tokens} in flight"
                ),
            };
        }
        // Alone and too big: the longest first part under the limit (at least one request).
        let mut sum = 0;
        let n = tokens
            .iter()
            .take_while(|t| {
                sum += **t;
                sum <= limit
            })
            .count()
            .max(1);
        if n < fingerprints.len() {
            Room::Split(n)
        } else {
            Room::Fits
        }
    }

    /// A dry run's part: split under `maxEnqueuedTokens` as a real run would, and count the
    /// requests that would wait for the parts before them.
    pub(super) fn launch_dry_run(&mut self, now_ms: u64, route: Route, fingerprints: Vec<String>) {
        let Some(limit) = self.config.max_enqueued_tokens else {
            return self.launch_job(now_ms, route, fingerprints);
        };
        let tokens = self.request_tokens(&route, &fingerprints);
        let mut parts: Vec<Vec<String>> = vec![Vec::new()];
        let mut sum = 0;
        for (fp, t) in fingerprints.into_iter().zip(tokens) {
            let part = parts.last_mut().expect("a part");
            if !part.is_empty() && sum + t > limit {
                parts.push(Vec::new());
                sum = 0;
            }
            parts.last_mut().expect("a part").push(fp);
            sum += t;
        }
        let waiting: usize = parts.iter().skip(1).map(Vec::len).sum();
        if waiting > 0 {
            self.report.count_headroom_wait(&route, waiting as u64);
        }
        for part in parts {
            self.launch_job(now_ms, route.clone(), part);
        }
    }

    /// A part waits for headroom: say so once per wait.
    pub(super) fn announce_wait(&mut self, route: &Route, fingerprints: &[String], reason: String) {
        let key = headroom_key(route);
        let limit_tokens = self.enqueued_limit(&key);
        let q = self.headroom.queues.entry(key.clone()).or_default();
        if std::mem::replace(&mut q.announced, true) {
            return;
        }
        let tokens = self.request_tokens(route, fingerprints).iter().sum();
        let batches_in_flight = self.in_flight(&key).0.len();
        self.event(LifecycleEvent::EnqueuedLimit {
            provider: route.provider,
            model: route.model.clone(),
            requests: fingerprints.len(),
            tokens,
            limit_tokens,
            batches_in_flight,
            reason,
        });
    }

    /// A part of this route was launched: a later wait is announced anew.
    pub(super) fn launched_part(&mut self, route: &Route) {
        if let Some(q) = self.headroom.queues.get_mut(&headroom_key(route)) {
            q.announced = false;
        }
    }

    /// The provider refused the job's batch for its enqueued-token limit, before any of its
    /// requests ran: journal them as released, give the bodies back to their entries and put the
    /// requests first in admission, where they wait for headroom.
    pub(super) fn refused(
        &mut self,
        now_ms: u64,
        job_id: JobId,
        message: String,
        limit_tokens: Option<u64>,
    ) {
        let Some(mut job) = self.jobs.remove(&job_id) else {
            return;
        };
        let mut bodies: HashMap<String, serde_json::Value> = job
            .take_items()
            .into_iter()
            .map(|item| (item.custom_id, item.body))
            .collect();
        for fp in &job.fingerprints {
            if let (Some(entry), Some(body)) = (
                self.entries.get_mut(fp),
                bodies.remove(&cache::custom_id(fp)),
            ) {
                entry.body = body;
            }
        }
        self.persist_released(job.fingerprints.clone());
        // A request whose body this run no longer has (its batch resumed from the journal)
        // cannot be sent again here: its caller gets the refusal, and a re-run submits it anew.
        let (fingerprints, lost): (Vec<String>, Vec<String>) =
            std::mem::take(&mut job.fingerprints)
                .into_iter()
                .partition(|fp| self.entries.get(fp).is_some_and(|e| !e.body.is_null()));
        if !lost.is_empty() {
            let batch_id = job.batch_id().unwrap_or_default();
            let response =
                adapter(job.route.provider).ended_response(batch_id, EndKind::Failed, &message);
            for fp in lost {
                self.answer_entry(&fp, response.clone(), false);
            }
        }
        job.fingerprints = fingerprints;
        if job.fingerprints.is_empty() {
            return;
        }
        // Its cost is committed again when it is admitted again.
        if self.config.cost_limit_usd.is_some() {
            if let Some(usd) = self.estimate_batch_usd(&job.route, &job.fingerprints) {
                self.admission.committed_usd = (self.admission.committed_usd - usd).max(0.0);
            }
        }
        let key = headroom_key(&job.route);
        let (in_flight, _) = self.in_flight(&key);
        let configured = self.config.max_enqueued_tokens;
        let attempts = self.config.call_attempts;
        let q = self.headroom.queues.entry(key).or_default();
        if limit_tokens.is_some() {
            q.learnt_limit = limit_tokens;
        }
        if in_flight.is_empty() {
            q.lone_refusals += 1;
            if q.lone_refusals >= attempts {
                q.lone_refusals = 0;
                q.hold = None;
                let message = format!(
                    "the provider refused this batch for its enqueued-token limit {attempts} times \
                     with no other batch of this model in flight (last: {message}); giving up"
                );
                return self.fail_entries(
                    &job.fingerprints,
                    FailCode::ProviderUnavailable,
                    &message,
                );
            }
            // Refused alone without a stated limit: the limit is below this batch; try halves.
            if q.learnt_limit.is_none() && configured.is_none() && job.fingerprints.len() > 1 {
                q.learnt_limit = Some((job.tokens / 2).max(1));
            }
            let attempt = q.lone_refusals;
            let delay_ms = self.backoff_ms(attempt);
            let q = self.headroom.queues.get_mut(&headroom_key(&job.route));
            q.expect("queue state exists").hold = Some(Hold::Until(now_ms + delay_ms));
        } else {
            q.lone_refusals = 0;
            q.hold = Some(Hold::UntilOneEnds(in_flight));
        }
        let route = Route::clone(&job.route);
        let q = self.headroom.queues.get_mut(&headroom_key(&route));
        q.expect("queue state exists").announced = false;
        self.announce_wait(&route, &job.fingerprints, message);
        self.admission.waiting.push_front((route, job.fingerprints));
    }

    /// A request joined a batch a previous run created: while the provider may still refuse
    /// that batch for its enqueued-token limit, its job keeps the body (to submit it again;
    /// unless its entry keeps it anyway, see `keeps_bodies`) and counts its tokens.
    pub(super) fn hold_for_refusal(
        &mut self,
        job_id: JobId,
        route: &Route,
        fingerprint: &str,
        body: serde_json::Value,
    ) {
        if !adapter(route.provider).may_refuse_enqueued(None) {
            return;
        }
        let tokens = pricing::estimate(route.provider, &route.model, &body).input_tokens_est;
        let entry_keeps = self.keeps_bodies();
        if let Some(job) = self.jobs.get_mut(&job_id) {
            job.tokens += tokens;
            if entry_keeps {
                return;
            }
            job.held.push(BatchItem {
                custom_id: cache::custom_id(fingerprint),
                body,
            });
        }
    }

    /// Whether a create answered 429 means the queue is full: the provider says so, and another
    /// batch of the queue is in flight (its end makes room).
    pub(super) fn create_refused_for_queue(&self, job_id: JobId) -> bool {
        let Some(job) = self.jobs.get(&job_id) else {
            return false;
        };
        if !adapter(job.route.provider).create_429_is_queue_limit() {
            return false;
        }
        let key = headroom_key(&job.route);
        self.jobs
            .values()
            .any(|j| j.id != job_id && headroom_key(&j.route) == key)
    }
}
