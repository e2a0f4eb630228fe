//! Fleet mode: many processes share one store (Redis) so a request goes into one batch line
//! across all of them, and a crashed process's batches are taken over. The rules (claims,
//! leases, fenced intents, look-ups, answers) are the [`FleetMember`]'s; this module only
//! translates between it and the engine:
//!
//! - a batchable request (deduplicated locally as always) arrives at the member (`Arrive`); the
//!   member's `Enqueue` puts it in the batcher, its `WaitForAnswer` takes it out of the batcher,
//!   of a batch waiting for admission, or of a job not created yet;
//! - a cut batch that passed admission becomes a job in `Fencing` and is reported (`Cut`); the
//!   member's `CreateBatch` gives it its tag, its requests and the time its create must go by
//!   (`send_by_ms`; later, it is not sent: `CreateUnknown`);
//! - a lost create answer is reported (`CreateUnknown`), never retried blindly: the member's
//!   `FindBatch` after the grace makes the look-up by tag (`BatchFound`); `Resume` polls a batch
//!   another process created, with the route (and credential) of a caller waiting here on it;
//! - each result line is held and reported (`BatchAnswered`): the member stores it
//!   (`PutAnswer`, the answer travelling with the store action) and answers the callers; a
//!   caller answered from the store gets the value the host read (`Answer` from the store);
//! - store actions go to the host (`Output::Store`) and come back (`Input::StoreOutcome`); a
//!   store the host could not reach (`Input::StoreFailed`) fails the callers whose requests
//!   hung on the action (`ERR_BATCHLING_STORE_UNAVAILABLE`): nothing is ever created without
//!   its intent in the store.
//!
//! - a line that did not run (or came back with a transient error) is reported (`LineEnded`):
//!   the member clears its line pointer under its claim, then hands it back for a new batch
//!   (resubmission, up to `lineAttempts` batches in this process) or releases it once its
//!   callers here got the line; so no process resumes an ended batch for it again.
//!
//! The store is the journal: no `Persist` outputs in fleet mode. Not covered yet, made safe:
//! deadlines (refused as an option, the header fails its call), and refusals for the
//! enqueued-token limit after a create (answered as a failed batch).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cache;
use crate::fleet::{
    ActionId, BatchRecord, Event as FleetEvent, FleetMember, Output as FleetOutput, StoreAction,
    StoreOutcome,
};
use crate::http::HttpResponse;
use crate::providers::{BatchItem, Route};

use super::io::{FailCode, LifecycleEvent, Output, RequestId};
use super::job::{BatchJob, Call, CreateOrigin, JobId, JobState};
use super::Interceptor;

/// What the engine keeps beside its fleet member.
pub(super) struct FleetLink {
    pub(super) member: FleetMember,
    /// Answers of this process's batches, while the member stores them and answers with them.
    held: HashMap<String, HttpResponse>,
    /// Values of `answer:<fp>` keys the store returned, until the member answers with them.
    read: HashMap<String, String>,
    /// The keys of the reads in flight, by action.
    reads: HashMap<ActionId, Vec<String>>,
    /// The requests of batches whose records were read (by tag): a look-up or a resume is made
    /// with the route of a caller waiting here on one of them.
    records: HashMap<String, Vec<String>>,
    /// Tags whose create this process never sent (its job ended first): a look-up finds nothing.
    unsent: HashSet<String>,
}

impl FleetLink {
    pub(super) fn new(member: FleetMember) -> Self {
        FleetLink {
            member,
            held: HashMap::new(),
            read: HashMap::new(),
            reads: HashMap::new(),
            records: HashMap::new(),
            unsent: HashSet::new(),
        }
    }

    /// Nothing of this process's own is left in the fleet: no claim held (so every answer is
    /// stored and every claim released) and no store action in flight.
    pub(super) fn idle(&self) -> bool {
        !self.member.holds_claims() && !self.member.store_busy()
    }
}

/// An answer as the engine stores it at `answer:<fp>` (JSON).
#[derive(Serialize, Deserialize)]
struct StoredAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl StoredAnswer {
    fn encode(response: &HttpResponse) -> String {
        serde_json::to_string(&StoredAnswer {
            status: response.status,
            headers: response.headers.clone(),
            body: response.body.clone(),
        })
        .expect("answers serialize")
    }

    fn decode(text: &str) -> Result<HttpResponse, String> {
        let stored: StoredAnswer = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Ok(HttpResponse {
            status: stored.status,
            headers: stored.headers,
            body: stored.body,
        })
    }
}

impl Interceptor {
    pub(super) fn in_fleet(&self) -> bool {
        self.fleet.is_some()
    }

    /// Hand the member an event and act on what it says.
    pub(super) fn fleet_event(&mut self, now_ms: u64, event: FleetEvent) {
        let Some(link) = self.fleet.as_mut() else {
            return;
        };
        if let Err(e) = link.member.handle(now_ms, event) {
            self.warn(format!("fleet: {e}"));
        }
        loop {
            let Some(link) = self.fleet.as_mut() else {
                return;
            };
            let outputs: Vec<FleetOutput> = link.member.drain_outputs().collect();
            if outputs.is_empty() {
                return;
            }
            for output in outputs {
                self.fleet_output(now_ms, output);
            }
        }
    }

    /// A new request (its entry just made, not queued): the member decides where it goes.
    pub(super) fn fleet_arrive(&mut self, now_ms: u64, request: RequestId, fingerprint: String) {
        self.fleet_event(
            now_ms,
            FleetEvent::Arrive {
                request,
                fingerprint,
            },
        );
    }

    /// The host's outcome of a store action: what was read is kept, then the member goes on.
    pub(super) fn fleet_outcome(&mut self, now_ms: u64, action: ActionId, outcome: StoreOutcome) {
        let Some(link) = self.fleet.as_mut() else {
            return;
        };
        if let (Some(keys), StoreOutcome::Values { values }) =
            (link.reads.remove(&action), &outcome)
        {
            for (key, value) in keys.iter().zip(values) {
                let Some(value) = value else { continue };
                if let Some(fp) = key.strip_prefix("answer:") {
                    link.read.insert(fp.to_string(), value.clone());
                } else if let Some(tag) = key.strip_prefix("batch:") {
                    if let Ok(record) = BatchRecord::parse(key, value) {
                        let fingerprints = match record {
                            BatchRecord::Intent { fingerprints }
                            | BatchRecord::Submitted { fingerprints, .. } => fingerprints,
                        };
                        link.records.insert(tag.to_string(), fingerprints);
                    }
                }
            }
        }
        self.fleet_event(now_ms, FleetEvent::StoreOutcome { action, outcome });
    }

    pub(super) fn fleet_store_failed(&mut self, now_ms: u64, action: ActionId, error: String) {
        let Some(link) = self.fleet.as_mut() else {
            return;
        };
        link.reads.remove(&action);
        self.fleet_event(now_ms, FleetEvent::StoreFailed { action, error });
    }

    /// The member gives a request up: a request the engine no longer wants (its callers gone,
    /// or its batch ended without an answer for it) releases its claim for the fleet.
    pub(super) fn fleet_drop(&mut self, now_ms: u64, fingerprint: &str) {
        if self.in_fleet() {
            let fingerprint = fingerprint.to_string();
            self.fleet_event(now_ms, FleetEvent::Drop { fingerprint });
        }
    }

    /// The batch holding `fingerprint`'s line ended without an answer to store for it: the
    /// member clears its line pointer, then batches it anew (`rebatch`: its callers here still
    /// wait) or releases it (they are answered here).
    pub(super) fn fleet_line_ended(&mut self, now_ms: u64, fingerprint: &str, rebatch: bool) {
        if self.in_fleet() {
            let fingerprint = fingerprint.to_string();
            self.fleet_event(
                now_ms,
                FleetEvent::LineEnded {
                    fingerprint,
                    rebatch,
                },
            );
        }
    }

    fn fleet_output(&mut self, now_ms: u64, output: FleetOutput) {
        match output {
            FleetOutput::Store { action, op } => {
                let link = self.fleet.as_mut().expect("fleet mode");
                if let StoreAction::Read { keys } = &op {
                    link.reads.insert(action, keys.clone());
                }
                let answer = match &op {
                    StoreAction::PutAnswer { fingerprint, .. } => {
                        link.held.get(fingerprint).map(StoredAnswer::encode)
                    }
                    _ => None,
                };
                self.outputs.push(Output::Store { action, op, answer });
            }
            FleetOutput::Enqueue { fingerprint } => self.fleet_enqueue(now_ms, &fingerprint),
            FleetOutput::WaitForAnswer { fingerprint } => self.unplace(now_ms, &fingerprint),
            FleetOutput::Answer {
                fingerprint,
                from_store,
                ..
            } => self.fleet_answer(&fingerprint, from_store),
            FleetOutput::CreateBatch {
                tag,
                fingerprints,
                send_by_ms,
            } => self.fleet_create(now_ms, tag, fingerprints, send_by_ms),
            FleetOutput::FindBatch { tag } => self.fleet_find(now_ms, tag),
            FleetOutput::Resume { tag, batch_id } => self.fleet_resume(now_ms, tag, batch_id),
            FleetOutput::Unavailable {
                fingerprint, error, ..
            } => {
                self.unplace(now_ms, &fingerprint);
                let message = format!(
                    "the fleet's store (Redis) is unreachable ({error}): nothing was sent to the \
                     provider without its journal; retry once the store is back"
                );
                self.fail_entries(&[fingerprint], FailCode::StoreUnavailable, &message);
            }
            FleetOutput::ScheduleTimer { .. } => {} // `next_deadline` includes the member's
        }
    }

    /// The member owns the request: into the batcher (its entry still holds its body).
    fn fleet_enqueue(&mut self, now_ms: u64, fingerprint: &str) {
        match self.entries.get(fingerprint) {
            Some(entry) if entry.item.is_some() => {}
            Some(entry) if !entry.waiters.is_empty() => self.queue_entry(now_ms, fingerprint),
            // No one here wants it any more: the member lets it go.
            _ => {
                self.entries.remove(fingerprint);
                self.fleet_drop(now_ms, fingerprint);
            }
        }
    }

    /// Take a request out of wherever it waits to be sent (the batcher, admission, a job not
    /// created yet); its body goes back to its entry. A request in a created batch stays there.
    fn unplace(&mut self, now_ms: u64, fingerprint: &str) {
        let Some(entry) = self.entries.get_mut(fingerprint) else {
            return;
        };
        if let Some(item) = entry.item.take() {
            self.item_entry.remove(&item);
            self.batcher
                .handle(now_ms, crate::batcher::Event::Cancel { item });
            return;
        }
        for (_, fps) in self.admission.waiting.iter_mut() {
            fps.retain(|fp| fp != fingerprint);
        }
        self.admission.waiting.retain(|(_, fps)| !fps.is_empty());
        let custom_id = cache::custom_id(fingerprint);
        let fencing = self.jobs.values_mut().find(|j| {
            matches!(j.state, JobState::Fencing { .. })
                && j.fingerprints.iter().any(|f| f == fingerprint)
        });
        if let Some(job) = fencing {
            let JobState::Fencing { items } = &mut job.state else {
                unreachable!("found in Fencing");
            };
            let taken: Vec<BatchItem> = items
                .iter()
                .position(|i| i.custom_id == custom_id)
                .map(|i| items.remove(i))
                .into_iter()
                .collect();
            job.fingerprints.retain(|fp| fp != fingerprint);
            job.custom_ids.retain(|id| *id != custom_id);
            let (job_id, empty) = (job.id, job.fingerprints.is_empty());
            if empty {
                self.jobs.remove(&job_id);
            }
            self.give_bodies_back(&[fingerprint.to_string()], taken);
        }
    }

    /// The bodies of requests taken off a job before its create go back to their entries (an
    /// entry that still has its body keeps it).
    fn give_bodies_back(&mut self, fingerprints: &[String], items: Vec<BatchItem>) {
        let mut bodies: HashMap<String, serde_json::Value> = items
            .into_iter()
            .map(|item| (item.custom_id, item.body))
            .collect();
        for fp in fingerprints {
            let body = bodies.remove(&cache::custom_id(fp));
            if let (Some(body), Some(entry)) = (body, self.entries.get_mut(fp)) {
                if entry.body.is_null() {
                    entry.body = body;
                }
            }
        }
    }

    fn fleet_answer(&mut self, fingerprint: &str, from_store: bool) {
        let link = self.fleet.as_mut().expect("fleet mode");
        let response = if from_store {
            match link
                .read
                .remove(fingerprint)
                .map(|text| StoredAnswer::decode(&text))
            {
                Some(Ok(response)) => Ok(response),
                Some(Err(e)) => Err(format!("the fleet store's answer could not be read: {e}")),
                None => Err("the fleet store's answer was not passed on by the host".to_string()),
            }
        } else {
            link.held
                .get(fingerprint)
                .cloned()
                .ok_or_else(|| "the batch's answer is not held".to_string())
        };
        let Some(entry) = self.entries.remove(fingerprint) else {
            return;
        };
        if from_store {
            self.report.count_cache_hit(&entry.route);
            self.event(LifecycleEvent::CacheHit {
                provider: entry.route.provider,
                model: entry.route.model.clone(),
                resumed_batch: None,
            });
        }
        for request in entry.waiters {
            if self.request_entry.remove(&request).is_none() {
                continue;
            }
            match &response {
                Ok(response) => self.respond(request, response.clone()),
                Err(message) => self.outputs.push(Output::Fail {
                    request,
                    code: FailCode::Protocol,
                    message: message.clone(),
                }),
            }
        }
    }

    /// A cut batch passed admission: its job waits while the member writes its intent.
    pub(super) fn fleet_cut(&mut self, now_ms: u64, mut job: BatchJob) {
        let JobState::Uploading { items } = &mut job.state else {
            return debug_assert!(false, "a fleet job starts before its upload");
        };
        job.state = JobState::Fencing {
            items: std::mem::take(items),
        };
        job.fleet = true;
        let fingerprints = job.fingerprints.clone();
        self.jobs.insert(job.id, job);
        self.fleet_event(now_ms, FleetEvent::Cut { fingerprints });
    }

    /// The intent is written: the job takes the member's tag and requests, and creates.
    fn fleet_create(
        &mut self,
        now_ms: u64,
        tag: String,
        fingerprints: Vec<String>,
        send_by_ms: u64,
    ) {
        let wanted: HashSet<&str> = fingerprints.iter().map(String::as_str).collect();
        let job_id = self
            .jobs
            .values()
            .find(|j| {
                matches!(j.state, JobState::Fencing { .. })
                    && j.fingerprints.iter().any(|fp| wanted.contains(fp.as_str()))
            })
            .map(|j| j.id);
        let Some(job_id) = job_id else {
            // Its job ended meanwhile: the create is never sent.
            self.fleet
                .as_mut()
                .expect("fleet mode")
                .unsent
                .insert(tag.clone());
            return self.fleet_event(now_ms, FleetEvent::CreateUnknown { tag });
        };
        let job = self.jobs.get_mut(&job_id).expect("found");
        let JobState::Fencing { items } = &mut job.state else {
            unreachable!("found in Fencing");
        };
        let mut by_id: HashMap<String, BatchItem> = std::mem::take(items)
            .into_iter()
            .map(|item| (item.custom_id.clone(), item))
            .collect();
        let mut kept = Vec::new();
        let mut line = Vec::new();
        for fp in &fingerprints {
            if let Some(item) = by_id.remove(&cache::custom_id(fp)) {
                kept.push(item);
                line.push(fp.clone());
            }
        }
        // Requests the member did not name went back to waiting (`WaitForAnswer`) already; any
        // left give their bodies back.
        let left = std::mem::replace(&mut job.fingerprints, line);
        job.custom_ids = job
            .fingerprints
            .iter()
            .map(|fp| cache::custom_id(fp))
            .collect();
        job.tag = tag;
        job.send_by_ms = Some(send_by_ms);
        job.state = JobState::Uploading { items: kept };
        self.give_bodies_back(&left, by_id.into_values().collect());
        self.send_call(now_ms, job_id, Call::Upload);
    }

    /// The create could not go by its `send_by_ms`, or its answer was lost: the member looks the
    /// batch up by its tag after the grace; the job waits in `Lost`.
    pub(super) fn fleet_create_lost(&mut self, now_ms: u64, job_id: JobId) {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        let (items, file) = match &mut job.state {
            JobState::Creating { items, file } | JobState::Finding { items, file, .. } => {
                (std::mem::take(items), file.take())
            }
            _ => return debug_assert!(false, "lost outside a create"),
        };
        job.state = JobState::Lost { items, file };
        job.retries.clear();
        let tag = job.tag.clone();
        self.fleet_event(now_ms, FleetEvent::CreateUnknown { tag });
    }

    /// The member's look-up by tag: of this process's lost create, or of another's intent (with
    /// the route of a caller waiting here on one of its requests).
    fn fleet_find(&mut self, now_ms: u64, tag: String) {
        let link = self.fleet.as_mut().expect("fleet mode");
        if link.unsent.remove(&tag) {
            let batch_id = None;
            return self.fleet_event(now_ms, FleetEvent::BatchFound { tag, batch_id });
        }
        let own = self
            .jobs
            .values()
            .find(|j| j.fleet && j.tag == tag && matches!(j.state, JobState::Lost { .. }))
            .map(|j| j.id);
        if let Some(job_id) = own {
            let job = self.jobs.get_mut(&job_id).expect("found");
            let JobState::Lost { items, file } = &mut job.state else {
                unreachable!("found in Lost");
            };
            job.state = JobState::Finding {
                items: std::mem::take(items),
                file: file.take(),
                origin: CreateOrigin::Fleet { own: true },
            };
            return self.send_call(now_ms, job_id, Call::Find);
        }
        let Some(route) = self.route_for_tag(&tag) else {
            // No caller waits here on it any more: nothing of this process's hangs on it.
            let batch_id = None;
            return self.fleet_event(now_ms, FleetEvent::BatchFound { tag, batch_id });
        };
        let id = self.next_job;
        self.next_job += 1;
        let state = JobState::Finding {
            items: Vec::new(),
            file: None,
            origin: CreateOrigin::Fleet { own: false },
        };
        let mut job = BatchJob::new(id, route, tag, Vec::new(), state);
        job.fleet = true;
        job.resumed = true;
        self.jobs.insert(id, job);
        self.send_call(now_ms, id, Call::Find);
    }

    /// The requests of batch `tag`, as its record in the store says.
    pub(super) fn fleet_record(&self, tag: &str) -> Vec<String> {
        self.fleet
            .as_ref()
            .and_then(|l| l.records.get(tag).cloned())
            .unwrap_or_default()
    }

    /// The route (without a body) of a caller waiting here on a request of batch `tag`.
    fn route_for_tag(&self, tag: &str) -> Option<Route> {
        let link = self.fleet.as_ref()?;
        let fps = link.records.get(tag)?;
        fps.iter()
            .filter_map(|fp| self.entries.get(fp))
            .find(|e| !e.waiters.is_empty())
            .map(|e| {
                let mut route = Route::clone(&e.route);
                route.body = serde_json::Value::Null;
                route
            })
    }

    /// A look-up by tag answered (`None`: no such batch).
    pub(super) fn fleet_found(&mut self, now_ms: u64, job_id: JobId, batch_id: Option<String>) {
        let Some(job) = self.jobs.get(&job_id) else {
            return;
        };
        let tag = job.tag.clone();
        let own = matches!(
            job.state,
            JobState::Finding {
                origin: CreateOrigin::Fleet { own: true },
                ..
            }
        );
        match (own, batch_id) {
            (true, Some(batch_id)) => {
                self.created(now_ms, job_id, batch_id.clone());
                let batch_id = Some(batch_id);
                self.fleet_event(now_ms, FleetEvent::BatchFound { tag, batch_id });
            }
            (true, None) => {
                // The create never reached the provider: the bodies go back to their entries,
                // and the member queues the requests anew (or lets them wait).
                let mut job = self.jobs.remove(&job_id).expect("job exists");
                let items = job.take_items();
                self.give_bodies_back(&job.fingerprints, items);
                self.fleet_event(
                    now_ms,
                    FleetEvent::BatchFound {
                        tag,
                        batch_id: None,
                    },
                );
            }
            (false, batch_id) => {
                // Another process's batch: the member resumes it (`Resume`) if it exists.
                self.jobs.remove(&job_id);
                let found = batch_id.is_some();
                self.fleet_event(
                    now_ms,
                    FleetEvent::BatchFound {
                        tag: tag.clone(),
                        batch_id,
                    },
                );
                if !found {
                    if let Some(link) = self.fleet.as_mut() {
                        link.records.remove(&tag);
                    }
                }
            }
        }
    }

    /// Poll a batch another process created, with the route of a caller waiting here on it.
    fn fleet_resume(&mut self, now_ms: u64, tag: String, batch_id: String) {
        let known = self
            .jobs
            .values()
            .any(|j| j.batch_id() == Some(batch_id.as_str()) || (j.fleet && j.tag == tag));
        if known {
            return;
        }
        let Some(route) = self.route_for_tag(&tag) else {
            return self.warn(format!(
                "fleet: batch {batch_id} (tag {tag}) is to be resumed, but no caller here waits on it"
            ));
        };
        // The record has served: the job polls for all of its requests from here.
        let fingerprints = self
            .fleet
            .as_mut()
            .and_then(|l| l.records.remove(&tag))
            .unwrap_or_default();
        let id = self.next_job;
        self.next_job += 1;
        let state = JobState::Polling {
            batch_id,
            next_poll_ms: Some(now_ms),
        };
        let mut job = BatchJob::new(id, route, tag, fingerprints, state);
        job.fleet = true;
        job.resumed = true;
        self.jobs.insert(id, job);
    }

    /// A result line of a fleet batch: held while the member stores it and answers its callers.
    /// A line that says it did not run, or failed transiently, is not stored: its callers here
    /// get it, and the request is released for the fleet.
    pub(super) fn fleet_line(&mut self, now_ms: u64, fingerprint: String, response: HttpResponse) {
        let transient = matches!(response.status, 408 | 409 | 429) || response.status >= 500;
        if transient || super::lines::not_run(&response) {
            // Its line pointer is cleared before the claim goes: a caller's retry, here or at
            // another process, goes into a new batch instead of resuming this one.
            self.fleet_line_ended(now_ms, &fingerprint, false);
            return self.answer_entry(&fingerprint, response, false);
        }
        if (200..300).contains(&response.status) {
            if let Some(entry) = self.entries.get(&fingerprint) {
                let route = Arc::clone(&entry.route);
                self.report
                    .count_answer(&route, &response.body, &self.config.prices);
            }
        }
        let link = self.fleet.as_mut().expect("fleet mode");
        link.held.insert(fingerprint.clone(), response);
        self.fleet_event(
            now_ms,
            FleetEvent::BatchAnswered {
                fingerprint: fingerprint.clone(),
            },
        );
        if let Some(link) = self.fleet.as_mut() {
            link.held.remove(&fingerprint);
        }
    }
}
