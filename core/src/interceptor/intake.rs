//! Intake: a submitted request is classified (batchable or passed through), counted, answered
//! from the journal when it can be, joined to an identical request already on its way, or
//! queued in the batcher under its route's group. Also cancellation (which an abort that is not
//! the client's own timeout comes to, see `abort`), and the hand-over of cut batches from the
//! batcher.

use std::sync::Arc;

use crate::batcher::{Action as BatcherAction, Event as BatcherEvent};
use crate::cache::{self, BatchPlace};
use crate::http::HttpRequest;
use crate::providers::{self, adapter, EndKind, PassThrough, Route};

use super::abort::ClientTimer;
use super::deadline;
use super::io::{FailCode, LifecycleEvent, Output, RequestId};
use super::job::{BatchJob, Call, CreateOrigin, JobState};
use super::{Entry, Interceptor, Queue, Waiting};

impl Interceptor {
    pub(super) fn submit(
        &mut self,
        now_ms: u64,
        request: RequestId,
        mut http: HttpRequest,
        arrived_ms: u64,
    ) {
        if self.closing {
            self.outputs.push(Output::Fail {
                request,
                code: FailCode::Closed,
                message: "batchify context is closed: create a new one with batchify()".into(),
            });
            return;
        }
        // The deadline header is ours: taken off before the request is read, never sent on.
        let header_deadline = match deadline::take_deadline_header(&mut http) {
            Ok(Some(_)) if self.in_fleet() => {
                let code = FailCode::InvalidDeadline;
                let message = format!(
                    "the {} header is not supported in fleet mode yet (a fallback to the normal \
                     endpoint could pay twice across the fleet): leave it off",
                    deadline::DEADLINE_HEADER
                );
                return self.outputs.push(Output::Fail {
                    request,
                    code,
                    message,
                });
            }
            Ok(ms) => ms,
            Err(message) => {
                let code = FailCode::InvalidDeadline;
                return self.outputs.push(Output::Fail {
                    request,
                    code,
                    message,
                });
            }
        };
        let timer = ClientTimer::of(&http, arrived_ms.min(now_ms));
        let route = match providers::classify_with(&http, &self.config.hosts) {
            Ok(route) => route,
            Err(reason) => return self.pass_through(request, reason),
        };
        let fp = cache::fingerprint(&route);
        let fingerprint = fp.to_string();
        let waiting = Waiting {
            fingerprint: fingerprint.clone(),
            timer,
        };
        self.request_entry.insert(request, waiting);
        self.report.count_request(&route, &self.config.prices);
        if self.deadlines.join(&fingerprint, request) {
            return; // an identical request is on its way to the normal endpoint
        }
        let answered = self.caching && self.cache.result(&fp).is_some();
        let too_close = match header_deadline.or(self.config.deadline_ms) {
            Some(ms) if !self.config.dry_run && !answered => {
                self.arm_deadline(request, &http, &route, arrived_ms.min(now_ms), ms)
            }
            _ => false,
        };

        if let Some(entry) = self.entries.get_mut(&fingerprint) {
            entry.waiters.push(request); // an identical request is already on its way
            return;
        }
        if self.caching && !self.config.dry_run {
            if let Some(place) = self.cache.result(&fp) {
                self.report.count_cache_hit(&route);
                self.count_journalled_fallback(&fp, &route);
                self.event(LifecycleEvent::CacheHit {
                    provider: route.provider,
                    model: route.model.clone(),
                    resumed_batch: None,
                });
                self.request_entry.remove(&request);
                self.outputs.push(Output::RespondStored {
                    request,
                    fingerprint,
                    place,
                });
                return;
            }
            if let Some((place, batch_id)) = self.cache.submitted(&fp).cloned() {
                self.report.count_cache_hit(&route);
                self.event(LifecycleEvent::CacheHit {
                    provider: route.provider,
                    model: route.model.clone(),
                    resumed_batch: Some(batch_id.clone()),
                });
                return self.resume(now_ms, request, fingerprint, route, place, batch_id);
            }
            if let Some(place) = self.cache.intent(&fp).cloned() {
                return self.find_then_resume(now_ms, request, fingerprint, route, place);
            }
            if let Some(batch_id) = self.cache.cancelled(&fp) {
                // The user cancelled its batch (`batchling batches cancel`): never submitted again.
                let response = adapter(route.provider).ended_response(
                    batch_id,
                    EndKind::Cancelled,
                    "the batch was cancelled (batchling batches cancel) before this request ran",
                );
                self.request_entry.remove(&request);
                return self.respond(request, response);
            }
        }
        if too_close {
            return; // straight to the normal endpoint (see `deadline`), never in a batch
        }
        if self.in_fleet() {
            // The fleet member decides: into a line here, or wait for another's answer.
            self.new_entry(request, &fingerprint, route);
            return self.fleet_arrive(now_ms, request, fingerprint);
        }
        self.enqueue(now_ms, request, fingerprint, route);
    }

    fn pass_through(&mut self, request: RequestId, reason: PassThrough) {
        self.outputs.push(Output::PassThrough {
            request,
            reason: reason.as_str().into(),
        });
    }

    pub(super) fn enqueue(
        &mut self,
        now_ms: u64,
        request: RequestId,
        fingerprint: String,
        route: Route,
    ) {
        self.new_entry(request, &fingerprint, route);
        self.queue_entry(now_ms, &fingerprint);
    }

    /// An entry for a request no identical one is on its way for: its route without the body,
    /// which the entry keeps. Not queued yet.
    fn new_entry(&mut self, request: RequestId, fingerprint: &str, mut route: Route) {
        let body = std::mem::take(&mut route.body);
        let route = Arc::new(route);
        let entry = Entry {
            route,
            body,
            waiters: vec![request],
            item: None,
        };
        self.entries.insert(fingerprint.to_string(), entry);
    }

    /// Put an entry (not queued) in the batcher, under its route's group.
    pub(super) fn queue_entry(&mut self, now_ms: u64, fingerprint: &str) {
        let route = Arc::clone(&self.entries[fingerprint].route);
        let key = format!(
            "{}\n{}\n{}\n{}\n{}",
            route.provider,
            route.base_url,
            route.endpoint,
            route.model,
            route.credential_fingerprint
        );
        // Requests of one queue share its group and its route (they share their batch's too).
        let (group, shared) = match self.groups.get(&key) {
            Some(&g) => (g, Arc::clone(&self.queues[&g].route)),
            None => {
                let g = self.next_group;
                self.next_group = self.next_group.wrapping_add(1);
                self.groups.insert(key.clone(), g);
                let queue = Queue {
                    key,
                    route: Arc::clone(&route),
                };
                self.queues.insert(g, queue);
                (g, route)
            }
        };
        let item = self
            .batcher
            .add(now_ms, group)
            .expect("the interceptor's batcher has no queue limit and closes only via Close");
        self.event(LifecycleEvent::RequestQueued {
            provider: shared.provider,
            endpoint: shared.endpoint.clone(),
            model: shared.model.clone(),
        });
        self.item_entry.insert(item, fingerprint.to_string());
        let entry = self.entries.get_mut(fingerprint).expect("entry exists");
        entry.route = shared;
        entry.item = Some(item);
    }

    pub(super) fn cancel(&mut self, now_ms: u64, request: RequestId) {
        let Some(Waiting { fingerprint, .. }) = self.request_entry.remove(&request) else {
            return;
        };
        self.outputs.push(Output::Fail {
            request,
            code: FailCode::Cancelled,
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
                self.fleet_drop(now_ms, &fingerprint);
            }
        }
    }

    pub(super) fn absorb_batcher(&mut self, now_ms: u64) {
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
                if let Some(queue) = self.queues.remove(&group) {
                    self.groups.remove(&queue.key);
                }
            }
            // Hand-overs resolve the batcher's items; cancels reject them. Nothing to do.
            BatcherAction::Resolve { .. }
            | BatcherAction::Reject { .. }
            | BatcherAction::Drained => {}
        }
    }

    // ---- resuming what a previous run journalled ------------------------------------------

    /// Register `request` as waiting on a batch that is (or was) already created: the provider
    /// has (or its job holds) the body, so the entry keeps none, unless a line that does not
    /// run may be resubmitted (see `keeps_bodies`).
    fn await_in_batch(
        &mut self,
        request: RequestId,
        fingerprint: &str,
        route: &Route,
        body: &serde_json::Value,
    ) {
        let mut route = route.clone();
        route.body = serde_json::Value::Null;
        let entry = Entry {
            route: Arc::new(route),
            body: if self.keeps_bodies() {
                body.clone()
            } else {
                serde_json::Value::Null
            },
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
        let mut route = route;
        let body = std::mem::take(&mut route.body);
        self.await_in_batch(request, &fingerprint, &route, &body);
        if let Some(job) = self
            .jobs
            .values_mut()
            .find(|j| j.batch_id() == Some(batch_id.as_str()))
        {
            let job_id = job.id;
            // Its line may already have been downloaded, before anyone asked for it.
            let early = match &mut job.state {
                JobState::Downloading { unclaimed, .. } => unclaimed.remove(&custom_id),
                _ => None,
            };
            job.fingerprints.push(fingerprint.clone());
            job.custom_ids.push(custom_id);
            if let Some(response) = early {
                self.answer_entry(&fingerprint, response, true);
            } else {
                self.hold_for_refusal(job_id, &route, &fingerprint, body);
            }
            return;
        }
        let id = self.next_job;
        self.next_job += 1;
        let state = JobState::Polling {
            batch_id,
            next_poll_ms: Some(now_ms),
        };
        let mut job = BatchJob::new(
            id,
            route.clone(),
            place.tag,
            vec![fingerprint.clone()],
            state,
        );
        job.resumed_from = Some(
            cache::Fingerprint::parse(&fingerprint).and_then(|fp| self.cache.submitted_at(&fp)),
        );
        job.resumed = true;
        self.jobs.insert(id, job);
        self.hold_for_refusal(id, &route, &fingerprint, body);
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
        // The body goes to the job's items; the entry keeps the route without it.
        let mut route = route;
        let body = std::mem::take(&mut route.body);
        self.await_in_batch(request, &fingerprint, &route, &body);
        if let Some(job) = self
            .jobs
            .values_mut()
            .find(|j| j.tag == place.tag && j.batch_id().is_none())
        {
            job.push_unsent(fingerprint, body);
            return;
        }
        let id = self.next_job;
        self.next_job += 1;
        let items = vec![providers::BatchItem {
            custom_id: cache::custom_id(&fingerprint),
            body,
        }];
        let state = JobState::Finding {
            items,
            file: place.uploaded_file,
            origin: CreateOrigin::Journal,
        };
        let mut job = BatchJob::new(id, route, place.tag, vec![fingerprint], state);
        job.resumed = true;
        self.jobs.insert(id, job);
        self.send_call(now_ms, id, Call::Find);
    }
}
