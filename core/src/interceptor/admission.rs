//! Admission: a cut batch is split under its provider's limits, then each part waits for a
//! slot under `max_concurrent_batches` and must fit the cost limit before it is launched.

use std::collections::{HashSet, VecDeque};

use crate::cache;
use crate::catalog::pricing;
use crate::providers::{adapter, BatchContext, BatchItem, Route};

use super::headroom::{self, Room};
use super::io::FailCode;
use super::Interceptor;

/// Parts waiting for a slot, and what the cost limit has committed so far.
#[derive(Debug, Default)]
pub(super) struct Admission {
    /// Cut batches (their route and fingerprints) waiting for a slot, in cut order.
    pub(super) waiting: VecDeque<(Route, Vec<String>)>,
    /// Estimated batch-price spend of the batches launched so far.
    pub(super) committed_usd: f64,
    /// Once a batch was refused, no later one is launched.
    pub(super) cost_limit_reached: bool,
}

impl Interceptor {
    /// Split a cut batch under the provider's limits and start one job per part.
    pub(super) fn start_jobs(&mut self, now_ms: u64, fingerprints: Vec<String>) {
        let Some(first) = fingerprints.first() else {
            return;
        };
        // The batch's route: the queue's, without a body (each request's body is its own).
        let route = Route::clone(&self.entries[first].route);
        let adapter = adapter(route.provider);
        let limits = adapter.limits(&route);
        let mut part: Vec<String> = Vec::new();
        let mut part_bytes = 0usize;
        let tag = self.new_tag();
        for fp in fingerprints {
            let entry = self.entries.get_mut(&fp).expect("cut item has an entry");
            entry.item = None;
            // Sized as its batch line, with the body lent (not copied) and given back.
            let item = BatchItem {
                custom_id: cache::custom_id(&fp),
                body: std::mem::take(&mut entry.body),
            };
            let ctx = BatchContext {
                route: &route,
                tag: &tag,
            };
            let bytes = adapter.item_bytes(&ctx, &item);
            entry.body = item.body;
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

    pub(super) fn new_tag(&mut self) -> String {
        let n = self.jitter.next_u64();
        format!("batchling-{:016x}{:08x}", self.tag_seed ^ n, self.next_job)
    }

    fn start_job(&mut self, now_ms: u64, route: Route, fingerprints: Vec<String>) {
        if self.config.dry_run {
            // Nothing is sent, so nothing waits for a slot or counts against the cost limit.
            return self.launch_dry_run(now_ms, route, fingerprints);
        }
        self.admission.waiting.push_back((route, fingerprints));
        self.admit_jobs(now_ms);
    }

    /// Start waiting batches while slots are free, their queue has headroom under its
    /// enqueued-token limit (see `headroom`) and the cost limit allows. A part waiting for
    /// headroom keeps its place; parts of other queues pass it, later parts of its queue do not.
    pub(super) fn admit_jobs(&mut self, now_ms: u64) {
        self.headroom.lift_expired(now_ms);
        let mut waiting_queues: HashSet<String> = HashSet::new();
        let mut i = 0;
        while self.jobs.len() < self.config.max_concurrent_batches {
            let Some((_, fingerprints)) = self.admission.waiting.get_mut(i) else {
                break;
            };
            // Requests cancelled while their batch waited are not sent: their entry is still there
            // (an identical request arriving meanwhile joins it), but with no one waiting on it.
            let entries = &mut self.entries;
            let mut unwanted = Vec::new();
            fingerprints.retain(|fp| {
                let wanted = entries.get(fp).is_some_and(|e| !e.waiters.is_empty());
                if !wanted && entries.remove(fp).is_some() {
                    unwanted.push(fp.clone());
                }
                wanted
            });
            for fp in unwanted {
                self.fleet_drop(now_ms, &fp);
            }
            let Some((route, fingerprints)) = self.admission.waiting.get_mut(i) else {
                continue;
            };
            if fingerprints.is_empty() {
                self.admission.waiting.remove(i);
                continue;
            }
            let key = headroom::headroom_key(route);
            if waiting_queues.contains(&key) {
                i += 1;
                continue;
            }
            let (route, fingerprints) = (route.clone(), fingerprints.clone());
            match self.room_for(now_ms, &route, &fingerprints) {
                Room::Wait { reason } => {
                    self.announce_wait(&route, &fingerprints, reason);
                    waiting_queues.insert(key);
                    i += 1;
                    continue;
                }
                Room::Split(n) => {
                    let (_, part) = &mut self.admission.waiting[i];
                    let rest = part.split_off(n);
                    self.admission.waiting.insert(i + 1, (route.clone(), rest));
                }
                Room::Fits => {}
            }
            let (route, fingerprints) = self.admission.waiting.remove(i).expect("part exists");
            self.launched_part(&route);
            if let Some(limit) = self.config.cost_limit_usd {
                let estimate = self.estimate_batch_usd(&route, &fingerprints);
                let refusal = match estimate {
                    _ if self.admission.cost_limit_reached => Some(format!(
                        "not run: the cost limit of ${limit} was reached before this batch"
                    )),
                    None => Some(format!(
                        "not run: the price of model {} is unknown, so the cost limit of ${limit} cannot be enforced; give it with the `prices` option: {{ \"{}\": {{ inputPerMTok, outputPerMTok }} }}",
                        route.model, route.model
                    )),
                    Some(usd) if self.admission.committed_usd + usd > limit => Some(format!(
                        "not run: this batch (~${usd:.6}) would pass the cost limit of ${limit} (${:.6} already committed)",
                        self.admission.committed_usd
                    )),
                    Some(usd) => {
                        self.admission.committed_usd += usd;
                        None
                    }
                };
                if let Some(message) = refusal {
                    self.admission.cost_limit_reached = true;
                    self.fail_entries(&fingerprints, FailCode::CostLimit, &message);
                    continue;
                }
            }
            self.launch_job(now_ms, route, fingerprints);
        }
        self.headroom.waiting = waiting_queues;
    }

    pub(super) fn estimate_batch_usd(&self, route: &Route, fingerprints: &[String]) -> Option<f64> {
        fingerprints.iter().try_fold(0.0, |sum, fp| {
            let body = &self.entries.get(fp)?.body;
            let rates = pricing::rates(route.provider, &route.model, &self.config.prices);
            Some(sum + pricing::estimate_with(rates, &route.model, body).batch_usd?)
        })
    }
}
