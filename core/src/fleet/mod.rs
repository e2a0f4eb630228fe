//! The fleet protocol: many processes share one store (Redis) so that a request (by
//! fingerprint) goes into exactly one provider batch line across all of them, and a crashed
//! process's batches are taken over by the others. Sans-IO like the rest of the core: a
//! [`FleetMember`] (one per process) takes [`Event`]s and emits [`Output`]s; the store actions
//! among them ([`StoreAction`]) are executed atomically by the host, which answers each with a
//! [`StoreOutcome`]. The rules live here; the store only executes them.
//!
//! The store's keys ([`keys`]): `req:<fp>` (the claim: owner id, expires with the lease),
//! `line:<fp>` (the tag of the batch that holds the request's line), `batch:<tag>` (a
//! [`BatchRecord`]: intent or submitted), `answer:<fp>` (the answer, kept `answer_ttl_ms`).
//!
//! Rules, each checked by the deterministic simulation in `tests/fleet_simulation.rs`:
//! - a request is claimed (`Claim`, set-if-absent with the lease) before it is batched; a
//!   member that finds it held by another waits for its answer (polling `answer:<fp>`, and
//!   claiming it when the claim is gone);
//! - a member renews every claim it holds every `lease_ms / 3`; a renew that finds a claim gone
//!   drops the request from its line (it becomes a waiter like any other);
//! - after a claim, before batching: an answer in the store answers at once; a `line:<fp>`
//!   naming a submitted batch resumes it (polling it with this request's credential: the
//!   fingerprint covers the credential, so only a member holding a caller with the same
//!   credential ever resumes a batch); one naming an intent waits for the grace and looks the
//!   batch up by its tag (`FindBatch`): found, it is resumed; not found, the request is in no
//!   live batch and is batched again. Only then does the request go to a line (`Enqueue`);
//! - a cut line's intent (`batch:<tag>` and each `line:<fp>`) is written with `WriteIfOwner`,
//!   only while the member holds the claim of every request in it (fencing); claims lost on
//!   the way leave the line and the rest is written again under a new tag (a tag whose intent
//!   names a request the batch will not hold is never created);
//! - `CreateBatch` is emitted only after the intent is written, and only while every claim of
//!   the batch is surely still the member's (see timing); otherwise the member renews them
//!   first (re-claims) and creates only if it kept them all;
//! - a create whose answer is lost is looked up by its tag after the grace, never sent again
//!   blindly; a batch's answers go to `answer:<fp>` before the claims are released.
//!
//! Timing assumptions (the safety argument rests on them; hosts must keep them):
//! 1. A claim set or renewed by an action sent at `t` stays the member's until `t + lease_ms`
//!    unless it is released: the store starts the expiry when it executes the action, which is
//!    never before it is sent, and the clocks of the member and the store advance at the same
//!    rate (drift is absorbed by the grace).
//! 2. A create is never sent later than `lease_ms` after the send of the last successful claim
//!    or renew of each request in it: `CreateBatch.send_by_ms`; a host that cannot send it by
//!    then does not send it and reports `CreateUnknown`.
//! 3. A create reaches the provider (or never does) within `grace_ms` of being sent. A member
//!    that takes over a request whose claim lapsed waits `grace_ms` after its own claim
//!    succeeded before it looks up the intent's tag, so any create the lapsed owner could
//!    still send (before the lapse, by 2) has reached the provider by then and is found.
//!    A member whose own create's answer was lost likewise waits `grace_ms`.
//!
//! A member that crashed is never restarted: a restart is a new member with a new owner id and
//! no state; its callers' retries arrive there like new requests.

mod error;
pub mod io;
pub mod keys;
mod lease;
pub mod record;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use crate::options::OptionError;

pub use error::FleetError;
pub use io::{ActionId, ClaimRef, Event, Output, Record, RequestId, StoreAction, StoreOutcome};
pub use record::BatchRecord;

use lease::Claims;

/// 30 days: how long answers (and batch records) are kept by default.
pub const DEFAULT_ANSWER_TTL_MS: u64 = 30 * 24 * 60 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// This member's id, unique for its lifetime (a restart takes a new one): 1 to 64 of
    /// `A-Z a-z 0-9 _ -`. It is the claims' value and the prefix of the batch tags it makes.
    pub owner: String,
    /// How long a claim lasts without a renew. Renewed every `lease_ms / 3`.
    pub lease_ms: u64,
    /// How long a create may take to reach the provider (timing assumption 3).
    pub grace_ms: u64,
    /// How often a waiter polls the store for its answer.
    pub poll_ms: u64,
    /// How long answers are kept.
    pub answer_ttl_ms: u64,
    /// How long intents, submitted records and line pointers are kept.
    pub record_ttl_ms: u64,
}

impl FleetConfig {
    pub fn new(owner: impl Into<String>) -> Self {
        FleetConfig {
            owner: owner.into(),
            lease_ms: 30_000,
            grace_ms: 10_000,
            poll_ms: 1_000,
            answer_ttl_ms: DEFAULT_ANSWER_TTL_MS,
            record_ttl_ms: DEFAULT_ANSWER_TTL_MS,
        }
    }

    pub fn validate(&self) -> Result<(), OptionError> {
        let owner_ok = (1..=64).contains(&self.owner.len())
            && self
                .owner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !owner_ok {
            return Err(OptionError::new(
                "fleet.owner",
                format!("must be 1 to 64 of A-Z a-z 0-9 _ -, got {:?}", self.owner),
            ));
        }
        for (option, value, min) in [
            ("fleet.leaseMs", self.lease_ms, 3),
            ("fleet.graceMs", self.grace_ms, 1),
            ("fleet.pollMs", self.poll_ms, 1),
            ("fleet.answerTtlMs", self.answer_ttl_ms, 1),
            ("fleet.recordTtlMs", self.record_ttl_ms, 1),
        ] {
            if value < min {
                return Err(OptionError::new(
                    option,
                    format!("must be at least {min}, got {value}"),
                ));
            }
        }
        Ok(())
    }
}

/// Where a request this member knows of stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// `Claim` sent.
    Claiming { action: ActionId },
    /// Claimed; reading `answer:<fp>` and `line:<fp>`.
    Checking { action: ActionId },
    /// Its line pointer names `tag`; reading that batch's record.
    ReadingBatch { action: ActionId, tag: String },
    /// Its line is in an intent whose create's fate is unknown: waiting for the look-up.
    Finding { tag: String },
    /// Owned and in the host's line.
    Queued,
    /// In one of this member's batches (being fenced, created, or polled).
    InBatch { tag: String },
    /// Its batch ended without an answer for it: its line pointer is being cleared under its
    /// claim (`Event::LineEnded`); then it is batched anew or released.
    Clearing { action: ActionId },
    /// Another member owns it: polling its answer at `poll_at_ms` (`reading`: the read in flight).
    Waiting {
        poll_at_ms: u64,
        reading: Option<ActionId>,
    },
}

#[derive(Debug)]
struct Entry {
    waiters: Vec<RequestId>,
    stage: Stage,
}

/// What an emitted store action was for.
#[derive(Debug)]
enum Pending {
    Claim {
        fingerprint: String,
        sent_ms: u64,
    },
    Check {
        fingerprint: String,
    },
    ReadBatch {
        fingerprint: String,
        tag: String,
    },
    Poll {
        fingerprint: String,
    },
    Renew {
        fingerprints: Vec<String>,
        sent_ms: u64,
    },
    Fence {
        tag: String,
    },
    Submitted,
    Put {
        fingerprint: String,
    },
    Clear {
        fingerprint: String,
    },
    Release,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum BatchState {
    /// Its intent is being written (`WriteIfOwner`).
    Fencing { action: ActionId },
    /// Its claims may have lapsed before the create: renewing them first.
    Regating { action: ActionId },
    /// `CreateBatch` emitted.
    Creating,
    /// The create's answer was lost: a look-up by tag is pending.
    Lost,
    /// Submitted; the host polls it (created here or resumed).
    Polling { batch_id: String },
}

#[derive(Debug)]
struct Batch {
    /// Before the create: its lines. After: its lines not answered yet.
    fingerprints: Vec<String>,
    state: BatchState,
    /// A line left it while its intent was being written: written again under a new tag.
    changed: bool,
}

/// A look-up by tag, due at `at_ms`.
#[derive(Debug)]
struct Find {
    at_ms: u64,
    sent: bool,
    /// Its own create (a [`Batch`] in state `Lost`), or another member's intent.
    own: bool,
    /// This member's requests waiting on it (for another member's intent).
    waiting: Vec<String>,
    /// The intent's requests.
    record: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Renew,
    Poll(String),
    Find(String),
}

pub struct FleetMember {
    config: FleetConfig,
    now_ms: u64,
    next_action: ActionId,
    next_tag: u64,
    entries: HashMap<String, Entry>,
    claims: Claims,
    pending: HashMap<ActionId, Pending>,
    batches: HashMap<String, Batch>,
    finds: HashMap<String, Find>,
    /// Due times; an entry no longer wanted is skipped when due.
    timers: BTreeSet<(u64, Timer)>,
    renew_at_ms: Option<u64>,
    scheduled_ms: Option<u64>,
    outputs: VecDeque<Output>,
}

impl FleetMember {
    pub fn new(config: FleetConfig) -> Result<Self, FleetError> {
        config.validate()?;
        Ok(FleetMember {
            config,
            now_ms: 0,
            next_action: 1,
            next_tag: 1,
            entries: HashMap::new(),
            claims: Claims::default(),
            pending: HashMap::new(),
            batches: HashMap::new(),
            finds: HashMap::new(),
            timers: BTreeSet::new(),
            renew_at_ms: None,
            scheduled_ms: None,
            outputs: VecDeque::new(),
        })
    }

    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn drain_outputs(&mut self) -> impl Iterator<Item = Output> + '_ {
        self.outputs.drain(..)
    }

    /// When the member wants a [`Event::Tick`], if it waits on time.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Requests this member knows of (waiting, owned or in a batch).
    pub fn requests_known(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds a claim: a request of its own still to batch, answer, or release.
    pub fn holds_claims(&self) -> bool {
        !self.claims.is_empty()
    }

    /// Whether it waits for the outcome of a store action.
    pub fn store_busy(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn handle(&mut self, now_ms: u64, event: Event) -> Result<(), FleetError> {
        self.now_ms = self.now_ms.max(now_ms);
        let result = match event {
            Event::Arrive {
                request,
                fingerprint,
            } => self.on_arrive(request, fingerprint),
            Event::StoreOutcome { action, outcome } => self.on_outcome(action, outcome),
            Event::Tick => Ok(()),
            Event::Cut { fingerprints } => self.on_cut(fingerprints),
            Event::BatchCreated { tag, batch_id } => self.on_created(tag, batch_id),
            Event::CreateUnknown { tag } => self.on_create_unknown(tag),
            Event::BatchFound { tag, batch_id } => self.on_found(tag, batch_id),
            Event::BatchAnswered { fingerprint } => self.on_answered(fingerprint),
            Event::StoreFailed { action, error } => self.on_store_failed(action, error),
            Event::Drop { fingerprint } => {
                self.on_drop(&fingerprint);
                Ok(())
            }
            Event::LineEnded {
                fingerprint,
                rebatch,
            } => self.on_line_ended(fingerprint, rebatch),
        };
        self.run_timers();
        if let Some(at_ms) = self.next_deadline() {
            if self.scheduled_ms != Some(at_ms) {
                self.scheduled_ms = Some(at_ms);
                self.outputs.push_back(Output::ScheduleTimer { at_ms });
            }
        }
        result
    }

    // --- events ---

    fn on_arrive(&mut self, request: RequestId, fingerprint: String) -> Result<(), FleetError> {
        keys::check_fingerprint(&fingerprint)?;
        if let Some(entry) = self.entries.get_mut(&fingerprint) {
            entry.waiters.push(request);
            return Ok(());
        }
        let stage = Stage::Claiming { action: 0 };
        self.entries.insert(
            fingerprint.clone(),
            Entry {
                waiters: vec![request],
                stage,
            },
        );
        if self.claims.holds(&fingerprint) {
            // Answered here a moment ago and its answer is being stored: read it soon.
            self.set_waiting(&fingerprint, self.now_ms);
        } else {
            self.claim(&fingerprint);
        }
        Ok(())
    }

    fn on_outcome(&mut self, action: ActionId, outcome: StoreOutcome) -> Result<(), FleetError> {
        let pending = self
            .pending
            .remove(&action)
            .ok_or(FleetError::UnknownAction(action))?;
        let mismatch = |expected: &'static str, outcome: &StoreOutcome| {
            Err(FleetError::OutcomeMismatch {
                action,
                expected,
                outcome: outcome.name(),
            })
        };
        match pending {
            Pending::Claim {
                fingerprint,
                sent_ms,
            } => {
                let live = self.stage_is(&fingerprint, &Stage::Claiming { action });
                match outcome {
                    StoreOutcome::Claimed => {
                        self.claims
                            .insert(&fingerprint, action, sent_ms + self.config.lease_ms);
                        self.ensure_renew();
                        if live {
                            let keys = vec![keys::answer(&fingerprint), keys::line(&fingerprint)];
                            let read = self.emit(
                                StoreAction::Read { keys },
                                Pending::Check {
                                    fingerprint: fingerprint.clone(),
                                },
                            );
                            self.set_stage(&fingerprint, Stage::Checking { action: read });
                        } else {
                            self.release(&fingerprint);
                        }
                    }
                    StoreOutcome::HeldBy { .. } => {
                        if live {
                            self.wait(&fingerprint);
                        }
                    }
                    other => return mismatch("Claimed or HeldBy", &other),
                }
            }
            Pending::Check { fingerprint } => {
                let mut values = self.values(action, outcome, 2)?;
                if !self.stage_is(&fingerprint, &Stage::Checking { action }) {
                    return Ok(());
                }
                let line = values.pop().flatten();
                let answer = values.pop().flatten();
                if answer.is_some() {
                    self.answer_from_store(&fingerprint);
                    self.release(&fingerprint);
                } else if let Some(tag) = line.filter(|tag| tag != keys::NO_LINE) {
                    let read = self.emit(
                        StoreAction::Read {
                            keys: vec![keys::batch(&tag)],
                        },
                        Pending::ReadBatch {
                            fingerprint: fingerprint.clone(),
                            tag: tag.clone(),
                        },
                    );
                    self.set_stage(&fingerprint, Stage::ReadingBatch { action: read, tag });
                } else {
                    self.enqueue(&fingerprint);
                }
            }
            Pending::ReadBatch { fingerprint, tag } => {
                let record = self.values(action, outcome, 1)?.pop().flatten();
                let expected = Stage::ReadingBatch {
                    action,
                    tag: tag.clone(),
                };
                if !self.stage_is(&fingerprint, &expected) {
                    return Ok(());
                }
                match record {
                    None => self.enqueue(&fingerprint),
                    Some(text) => match BatchRecord::parse(&keys::batch(&tag), &text)? {
                        BatchRecord::Intent { fingerprints } => {
                            self.await_find(&fingerprint, tag, fingerprints)
                        }
                        BatchRecord::Submitted {
                            batch_id,
                            fingerprints,
                        } => self.resume(&fingerprint, tag, batch_id, fingerprints),
                    },
                }
            }
            Pending::Poll { fingerprint } => {
                let answer = self.values(action, outcome, 1)?.pop().flatten();
                let expected = |s: &Stage| matches!(s, Stage::Waiting { reading: Some(a), .. } if *a == action);
                if !self
                    .entries
                    .get(&fingerprint)
                    .is_some_and(|e| expected(&e.stage))
                {
                    return Ok(());
                }
                if answer.is_some() {
                    self.answer_from_store(&fingerprint);
                } else if self.claims.holds(&fingerprint) {
                    self.set_waiting(&fingerprint, self.now_ms + self.config.poll_ms);
                } else {
                    self.claim(&fingerprint);
                }
            }
            Pending::Renew {
                fingerprints,
                sent_ms,
            } => {
                let StoreOutcome::Renewed { keys: kept } = outcome else {
                    return mismatch("Renewed", &outcome);
                };
                for key in &kept {
                    keys::claim_fingerprint(key)?;
                }
                let kept: HashSet<&str> = kept.iter().map(String::as_str).collect();
                let lost = self.claims.renewed(
                    action,
                    sent_ms,
                    self.config.lease_ms,
                    &fingerprints,
                    &kept,
                );
                for fingerprint in lost {
                    self.lose(&fingerprint);
                }
                let regating: Vec<String> = self
                    .batches
                    .iter()
                    .filter(|(_, b)| b.state == BatchState::Regating { action })
                    .map(|(tag, _)| tag.clone())
                    .collect();
                for tag in regating {
                    self.gate_or_refence(&tag);
                }
            }
            Pending::Fence { tag } => {
                let fencing = self
                    .batches
                    .get(&tag)
                    .is_some_and(|b| b.state == BatchState::Fencing { action });
                match outcome {
                    StoreOutcome::Written => {
                        if fencing {
                            self.gate_or_refence(&tag);
                        }
                    }
                    StoreOutcome::NotOwner { lost } => {
                        for key in &lost {
                            let fingerprint = keys::claim_fingerprint(key)?.to_string();
                            if self.claims.remove(&fingerprint) {
                                self.lose(&fingerprint);
                            }
                        }
                        if fencing {
                            // Nothing was written: the rest goes again under a new tag.
                            self.refence(&tag);
                        }
                    }
                    other => return mismatch("Written or NotOwner", &other),
                }
            }
            Pending::Submitted => {
                if outcome != StoreOutcome::Written {
                    return mismatch("Written", &outcome);
                }
            }
            Pending::Put { fingerprint } => {
                if outcome != StoreOutcome::Done {
                    return mismatch("Done", &outcome);
                }
                // The answer is stored: the claim can go.
                self.release(&fingerprint);
            }
            Pending::Clear { fingerprint } => {
                let clearing = self.stage_is(&fingerprint, &Stage::Clearing { action });
                match outcome {
                    StoreOutcome::Written => {
                        if clearing {
                            self.after_clear(&fingerprint);
                        }
                    }
                    StoreOutcome::NotOwner { .. } => {
                        if self.claims.remove(&fingerprint) {
                            self.lose(&fingerprint);
                        }
                    }
                    other => return mismatch("Written or NotOwner", &other),
                }
            }
            Pending::Release => {
                if outcome != StoreOutcome::Done {
                    return mismatch("Done", &outcome);
                }
            }
        }
        Ok(())
    }

    fn on_cut(&mut self, fingerprints: Vec<String>) -> Result<(), FleetError> {
        let mut line = Vec::new();
        let mut seen = HashSet::new();
        for fingerprint in fingerprints {
            keys::check_fingerprint(&fingerprint)?;
            let queued = self.stage_is(&fingerprint, &Stage::Queued);
            if queued && self.claims.holds(&fingerprint) && seen.insert(fingerprint.clone()) {
                line.push(fingerprint);
            }
        }
        if !line.is_empty() {
            self.fence(line);
        }
        Ok(())
    }

    fn on_created(&mut self, tag: String, batch_id: String) -> Result<(), FleetError> {
        let batch = self
            .batches
            .get_mut(&tag)
            .filter(|b| matches!(b.state, BatchState::Creating | BatchState::Lost))
            .ok_or_else(|| FleetError::UnknownTag(tag.clone()))?;
        batch.state = BatchState::Polling {
            batch_id: batch_id.clone(),
        };
        let fingerprints = batch.fingerprints.clone();
        if self.finds.get(&tag).is_some_and(|f| !f.sent) {
            self.finds.remove(&tag);
        }
        self.write_submitted(&tag, batch_id, fingerprints);
        Ok(())
    }

    fn on_create_unknown(&mut self, tag: String) -> Result<(), FleetError> {
        let batch = self
            .batches
            .get_mut(&tag)
            .filter(|b| b.state == BatchState::Creating)
            .ok_or_else(|| FleetError::UnknownTag(tag.clone()))?;
        batch.state = BatchState::Lost;
        let record = batch.fingerprints.clone();
        let at_ms = self.now_ms + self.config.grace_ms;
        self.finds.insert(
            tag.clone(),
            Find {
                at_ms,
                sent: false,
                own: true,
                waiting: Vec::new(),
                record,
            },
        );
        self.timers.insert((at_ms, Timer::Find(tag)));
        Ok(())
    }

    fn on_found(&mut self, tag: String, batch_id: Option<String>) -> Result<(), FleetError> {
        let find = self
            .finds
            .remove(&tag)
            .ok_or_else(|| FleetError::UnknownTag(tag.clone()))?;
        let waiting: Vec<String> = find
            .waiting
            .into_iter()
            .filter(|fp| self.stage_is(fp, &Stage::Finding { tag: tag.clone() }))
            .collect();
        if let Some(batch) = self.batches.get_mut(&tag) {
            if let BatchState::Polling { .. } = batch.state {
                // Its create's answer came after all (or it was resumed meanwhile).
                for fp in &waiting {
                    if !batch.fingerprints.contains(fp) {
                        batch.fingerprints.push(fp.clone());
                    }
                }
                for fp in waiting {
                    self.set_stage(&fp, Stage::InBatch { tag: tag.clone() });
                }
                return Ok(());
            }
        }
        match batch_id {
            Some(batch_id) => {
                self.write_submitted(&tag, batch_id.clone(), find.record.clone());
                match self.batches.get_mut(&tag) {
                    Some(batch) => {
                        batch.state = BatchState::Polling {
                            batch_id: batch_id.clone(),
                        }
                    }
                    None => {
                        self.batches.insert(
                            tag.clone(),
                            Batch {
                                fingerprints: find.record,
                                state: BatchState::Polling {
                                    batch_id: batch_id.clone(),
                                },
                                changed: false,
                            },
                        );
                    }
                }
                self.outputs.push_back(Output::Resume {
                    tag: tag.clone(),
                    batch_id,
                });
                for fp in waiting {
                    self.set_stage(&fp, Stage::InBatch { tag: tag.clone() });
                }
            }
            None => {
                // The create never reached the provider (timing assumption 3): batch anew.
                let mut again = waiting;
                if find.own {
                    if let Some(batch) = self.batches.remove(&tag) {
                        let in_it = Stage::InBatch { tag: tag.clone() };
                        again.extend(
                            batch
                                .fingerprints
                                .into_iter()
                                .filter(|fp| self.stage_is(fp, &in_it)),
                        );
                    }
                }
                for fp in again {
                    if self.claims.holds(&fp) {
                        self.enqueue(&fp);
                    } else {
                        self.wait(&fp);
                    }
                }
            }
        }
        Ok(())
    }

    fn on_answered(&mut self, fingerprint: String) -> Result<(), FleetError> {
        keys::check_fingerprint(&fingerprint)?;
        let key = keys::answer(&fingerprint);
        self.emit(
            StoreAction::PutAnswer {
                key,
                fingerprint: fingerprint.clone(),
                ttl_ms: self.config.answer_ttl_ms,
            },
            Pending::Put {
                fingerprint: fingerprint.clone(),
            },
        );
        self.leave_batches(&fingerprint);
        if let Some(entry) = self.entries.remove(&fingerprint) {
            match entry.stage {
                Stage::Finding { tag } => {
                    if let Some(find) = self.finds.get_mut(&tag) {
                        find.waiting.retain(|fp| *fp != fingerprint);
                    }
                }
                Stage::Queued => self.outputs.push_back(Output::WaitForAnswer {
                    fingerprint: fingerprint.clone(),
                }),
                _ => {}
            }
            for request in entry.waiters {
                self.outputs.push_back(Output::Answer {
                    request,
                    fingerprint: fingerprint.clone(),
                    from_store: false,
                });
            }
        }
        Ok(())
    }

    fn on_line_ended(&mut self, fingerprint: String, rebatch: bool) -> Result<(), FleetError> {
        keys::check_fingerprint(&fingerprint)?;
        self.leave_batches(&fingerprint);
        let Some(entry) = self.entries.get_mut(&fingerprint) else {
            return Ok(());
        };
        if !rebatch {
            // Its callers were answered by the host.
            entry.waiters.clear();
        }
        if !self.claims.holds(&fingerprint) {
            // Not this member's any more: whoever holds its claim now decides.
            self.forget_or_wait(&fingerprint);
            return Ok(());
        }
        let action = self.emit(
            StoreAction::WriteIfOwner {
                claims: self.claim_refs(std::slice::from_ref(&fingerprint)),
                records: vec![Record {
                    key: keys::line(&fingerprint),
                    value: keys::NO_LINE.to_string(),
                }],
                ttl_ms: self.config.record_ttl_ms,
            },
            Pending::Clear {
                fingerprint: fingerprint.clone(),
            },
        );
        self.set_stage(&fingerprint, Stage::Clearing { action });
        Ok(())
    }

    fn on_store_failed(&mut self, action: ActionId, error: String) -> Result<(), FleetError> {
        let pending = self
            .pending
            .remove(&action)
            .ok_or(FleetError::UnknownAction(action))?;
        let mut given_up = Vec::new();
        match pending {
            Pending::Claim { fingerprint, .. } => {
                if self.stage_is(&fingerprint, &Stage::Claiming { action }) {
                    given_up.push(fingerprint);
                }
            }
            Pending::Check { fingerprint } => {
                if self.stage_is(&fingerprint, &Stage::Checking { action }) {
                    given_up.push(fingerprint);
                }
            }
            Pending::ReadBatch { fingerprint, tag } => {
                if self.stage_is(&fingerprint, &Stage::ReadingBatch { action, tag }) {
                    given_up.push(fingerprint);
                }
            }
            Pending::Poll { fingerprint } => {
                let reading = self.entries.get(&fingerprint).is_some_and(
                    |e| matches!(e.stage, Stage::Waiting { reading: Some(a), .. } if a == action),
                );
                if reading {
                    given_up.push(fingerprint);
                }
            }
            // Its intent may or may not be written: the batch is never created (a member that
            // claims one of its requests later finds the intent, looks it up, and batches anew).
            Pending::Fence { tag } => {
                if self
                    .batches
                    .get(&tag)
                    .is_some_and(|b| b.state == BatchState::Fencing { action })
                {
                    given_up.extend(self.batches.remove(&tag).expect("checked").fingerprints);
                }
            }
            // Claims keep what they were known to be valid until (a lapse is never later than
            // believed); a batch that waited on this renew to be created is given up.
            Pending::Renew { .. } => {
                let regating: Vec<String> = self
                    .batches
                    .iter()
                    .filter(|(_, b)| b.state == BatchState::Regating { action })
                    .map(|(tag, _)| tag.clone())
                    .collect();
                for tag in regating {
                    given_up.extend(self.batches.remove(&tag).expect("listed").fingerprints);
                }
            }
            // The answer is not stored: the claim is left to lapse, and whoever claims the
            // request next resumes its batch (its record is in the store) for the answer.
            Pending::Put { fingerprint } => {
                self.claims.take(&fingerprint);
            }
            // The pointer may still name the ended batch: whoever claims the request next resumes
            // it, finds the line did not run, and clears it.
            Pending::Clear { fingerprint } => {
                if self.stage_is(&fingerprint, &Stage::Clearing { action }) {
                    given_up.push(fingerprint);
                }
            }
            Pending::Submitted | Pending::Release => {}
        }
        for fingerprint in given_up {
            // Its claim (if any) lapses with its lease: the store is not answering releases.
            self.claims.take(&fingerprint);
            if let Some(entry) = self.entries.remove(&fingerprint) {
                self.outputs.push_back(Output::Unavailable {
                    fingerprint,
                    requests: entry.waiters,
                    error: error.clone(),
                });
            }
        }
        Ok(())
    }

    fn on_drop(&mut self, fingerprint: &str) {
        if let Some(entry) = self.entries.get_mut(fingerprint) {
            if matches!(entry.stage, Stage::Clearing { .. }) {
                // Released once its line pointer is cleared (unless a caller arrives meanwhile).
                entry.waiters.clear();
                return;
            }
        }
        let Some(entry) = self.entries.remove(fingerprint) else {
            return;
        };
        match entry.stage {
            Stage::Finding { tag } => {
                if let Some(find) = self.finds.get_mut(&tag) {
                    find.waiting.retain(|fp| fp != fingerprint);
                }
            }
            Stage::InBatch { tag } => {
                if let Some(batch) = self.batches.get_mut(&tag) {
                    batch.fingerprints.retain(|fp| fp != fingerprint);
                    if matches!(
                        batch.state,
                        BatchState::Fencing { .. } | BatchState::Regating { .. }
                    ) {
                        batch.changed = true;
                    }
                    if batch.fingerprints.is_empty() {
                        self.batches.remove(&tag);
                        if self.finds.get(&tag).is_some_and(|f| f.own) {
                            self.finds.remove(&tag);
                        }
                    }
                }
            }
            _ => {}
        }
        self.release(fingerprint);
    }

    /// The line pointer is cleared: callers still waiting (kept by the host, or arrived
    /// meanwhile) get the request batched anew; with none left, the claim goes.
    fn after_clear(&mut self, fingerprint: &str) {
        if self.has_waiters(fingerprint) {
            self.enqueue(fingerprint);
        } else {
            self.entries.remove(fingerprint);
            self.release(fingerprint);
        }
    }

    /// A request without its claim: with callers here, they wait for its answer; without, it is
    /// forgotten.
    fn forget_or_wait(&mut self, fingerprint: &str) {
        if self.has_waiters(fingerprint) {
            self.wait(fingerprint);
        } else {
            self.entries.remove(fingerprint);
        }
    }

    fn has_waiters(&self, fingerprint: &str) -> bool {
        self.entries
            .get(fingerprint)
            .is_some_and(|e| !e.waiters.is_empty())
    }

    /// The request leaves this member's batches (answered, or its batch ended without it).
    fn leave_batches(&mut self, fingerprint: &str) {
        let mut emptied = Vec::new();
        for (tag, batch) in self.batches.iter_mut() {
            if let Some(i) = batch.fingerprints.iter().position(|fp| fp == fingerprint) {
                batch.fingerprints.remove(i);
                if matches!(
                    batch.state,
                    BatchState::Fencing { .. } | BatchState::Regating { .. }
                ) {
                    batch.changed = true;
                }
                if batch.fingerprints.is_empty() {
                    emptied.push(tag.clone());
                }
            }
        }
        for tag in emptied {
            self.batches.remove(&tag);
        }
    }

    // --- rules ---

    fn claim(&mut self, fingerprint: &str) {
        let action = self.emit(
            StoreAction::Claim {
                key: keys::claim(fingerprint),
                token: self.token(self.next_action),
                lease_ms: self.config.lease_ms,
            },
            Pending::Claim {
                fingerprint: fingerprint.to_string(),
                sent_ms: self.now_ms,
            },
        );
        self.set_stage(fingerprint, Stage::Claiming { action });
    }

    /// The claim of `fingerprint` is gone (already out of `claims`): whatever was on its way to
    /// a batch stops, and the request waits like any other.
    fn lose(&mut self, fingerprint: &str) {
        let Some(entry) = self.entries.get(fingerprint) else {
            return;
        };
        match entry.stage.clone() {
            Stage::Claiming { .. } | Stage::Waiting { .. } => {}
            Stage::Checking { .. } | Stage::ReadingBatch { .. } | Stage::Queued => {
                self.wait(fingerprint)
            }
            Stage::Clearing { .. } => self.forget_or_wait(fingerprint),
            Stage::Finding { tag } => {
                if let Some(find) = self.finds.get_mut(&tag) {
                    find.waiting.retain(|fp| fp != fingerprint);
                }
                self.wait(fingerprint);
            }
            Stage::InBatch { tag } => {
                let Some(batch) = self.batches.get_mut(&tag) else {
                    return;
                };
                if matches!(
                    batch.state,
                    BatchState::Fencing { .. } | BatchState::Regating { .. }
                ) {
                    batch.fingerprints.retain(|fp| fp != fingerprint);
                    batch.changed = true;
                    self.wait(fingerprint);
                }
                // Once the create may have gone, the request stays with its batch.
            }
        }
    }

    /// Write the intent of a new batch for `line` under fencing.
    fn fence(&mut self, line: Vec<String>) {
        let tag = format!("{}-{}", self.config.owner, self.next_tag);
        self.next_tag += 1;
        let mut records = vec![Record {
            key: keys::batch(&tag),
            value: BatchRecord::Intent {
                fingerprints: line.clone(),
            }
            .to_json(),
        }];
        records.extend(line.iter().map(|fp| Record {
            key: keys::line(fp),
            value: tag.clone(),
        }));
        let action = self.emit(
            StoreAction::WriteIfOwner {
                claims: self.claim_refs(&line),
                records,
                ttl_ms: self.config.record_ttl_ms,
            },
            Pending::Fence { tag: tag.clone() },
        );
        for fp in &line {
            self.set_stage(fp, Stage::InBatch { tag: tag.clone() });
        }
        self.batches.insert(
            tag,
            Batch {
                fingerprints: line,
                state: BatchState::Fencing { action },
                changed: false,
            },
        );
    }

    /// Drop the batch `tag` before its create and fence what is left of it under a new tag.
    fn refence(&mut self, tag: &str) {
        let Some(batch) = self.batches.remove(tag) else {
            return;
        };
        let in_it = Stage::InBatch {
            tag: tag.to_string(),
        };
        let line: Vec<String> = batch
            .fingerprints
            .into_iter()
            .filter(|fp| self.stage_is(fp, &in_it) && self.claims.holds(fp))
            .collect();
        if !line.is_empty() {
            self.fence(line);
        }
    }

    /// The intent is written: create if every claim is surely still ours, else renew first.
    fn gate_or_refence(&mut self, tag: &str) {
        let Some(batch) = self.batches.get(tag) else {
            return;
        };
        if batch.changed {
            return self.refence(tag);
        }
        let fingerprints = batch.fingerprints.clone();
        match self.claims.earliest_lapse(&fingerprints) {
            Some(lapse_ms) if lapse_ms > self.now_ms => {
                self.batches.get_mut(tag).expect("checked above").state = BatchState::Creating;
                self.outputs.push_back(Output::CreateBatch {
                    tag: tag.to_string(),
                    fingerprints,
                    send_by_ms: lapse_ms - 1,
                });
            }
            Some(_) => {
                let action = self.renew(fingerprints);
                self.batches.get_mut(tag).expect("checked above").state =
                    BatchState::Regating { action };
            }
            None => self.refence(tag),
        }
    }

    fn renew(&mut self, fingerprints: Vec<String>) -> ActionId {
        self.emit(
            StoreAction::Renew {
                claims: self.claim_refs(&fingerprints),
                lease_ms: self.config.lease_ms,
            },
            Pending::Renew {
                fingerprints,
                sent_ms: self.now_ms,
            },
        )
    }

    fn ensure_renew(&mut self) {
        if self.renew_at_ms.is_none() {
            let at_ms = self.now_ms + (self.config.lease_ms / 3).max(1);
            self.renew_at_ms = Some(at_ms);
            self.timers.insert((at_ms, Timer::Renew));
        }
    }

    fn await_find(&mut self, fingerprint: &str, tag: String, record: Vec<String>) {
        let at_ms = self.now_ms + self.config.grace_ms;
        let find = self.finds.entry(tag.clone()).or_insert_with(|| Find {
            at_ms,
            sent: false,
            own: false,
            waiting: Vec::new(),
            record,
        });
        find.waiting.push(fingerprint.to_string());
        let at_ms = find.at_ms;
        self.timers.insert((at_ms, Timer::Find(tag.clone())));
        self.set_stage(fingerprint, Stage::Finding { tag });
    }

    fn resume(&mut self, fingerprint: &str, tag: String, batch_id: String, record: Vec<String>) {
        match self.batches.get_mut(&tag) {
            Some(batch) => {
                if !batch.fingerprints.iter().any(|fp| fp == fingerprint) {
                    batch.fingerprints.push(fingerprint.to_string());
                }
            }
            None => {
                self.batches.insert(
                    tag.clone(),
                    Batch {
                        fingerprints: record,
                        state: BatchState::Polling {
                            batch_id: batch_id.clone(),
                        },
                        changed: false,
                    },
                );
                self.outputs.push_back(Output::Resume {
                    tag: tag.clone(),
                    batch_id,
                });
            }
        }
        self.set_stage(fingerprint, Stage::InBatch { tag });
    }

    fn write_submitted(&mut self, tag: &str, batch_id: String, fingerprints: Vec<String>) {
        let record = BatchRecord::Submitted {
            batch_id,
            fingerprints,
        };
        self.emit(
            StoreAction::WriteIfOwner {
                claims: Vec::new(),
                records: vec![Record {
                    key: keys::batch(tag),
                    value: record.to_json(),
                }],
                ttl_ms: self.config.record_ttl_ms,
            },
            Pending::Submitted,
        );
    }

    fn enqueue(&mut self, fingerprint: &str) {
        self.set_stage(fingerprint, Stage::Queued);
        self.outputs.push_back(Output::Enqueue {
            fingerprint: fingerprint.to_string(),
        });
    }

    /// Another member owns it (or this one lost it): tell the host, poll for the answer.
    fn wait(&mut self, fingerprint: &str) {
        self.set_waiting(fingerprint, self.now_ms + self.config.poll_ms);
        self.outputs.push_back(Output::WaitForAnswer {
            fingerprint: fingerprint.to_string(),
        });
    }

    fn set_waiting(&mut self, fingerprint: &str, poll_at_ms: u64) {
        self.set_stage(
            fingerprint,
            Stage::Waiting {
                poll_at_ms,
                reading: None,
            },
        );
        self.timers
            .insert((poll_at_ms, Timer::Poll(fingerprint.to_string())));
    }

    fn answer_from_store(&mut self, fingerprint: &str) {
        if let Some(entry) = self.entries.remove(fingerprint) {
            for request in entry.waiters {
                self.outputs.push_back(Output::Answer {
                    request,
                    fingerprint: fingerprint.to_string(),
                    from_store: true,
                });
            }
        }
    }

    /// Release the claim `since` took (already out of `claims`).
    /// Let the claim on `fingerprint` go, if this member holds it (deleted in the store only
    /// while it is still this claim).
    fn release(&mut self, fingerprint: &str) {
        let Some(since) = self.claims.take(fingerprint) else {
            return;
        };
        self.emit(
            StoreAction::Release {
                key: keys::claim(fingerprint),
                token: self.token(since),
            },
            Pending::Release,
        );
    }

    /// The value the `Claim` action `since` sets: unique for every claim ever taken.
    fn token(&self, since: ActionId) -> String {
        format!("{}.{since}", self.config.owner)
    }

    fn claim_refs(&self, fingerprints: &[String]) -> Vec<ClaimRef> {
        fingerprints
            .iter()
            .filter_map(|fp| {
                let since = self.claims.since(fp)?;
                Some(ClaimRef {
                    key: keys::claim(fp),
                    token: self.token(since),
                })
            })
            .collect()
    }

    fn run_timers(&mut self) {
        while let Some((at_ms, _)) = self.timers.first() {
            if *at_ms > self.now_ms {
                break;
            }
            let (at_ms, timer) = self.timers.pop_first().expect("checked above");
            match timer {
                Timer::Renew => {
                    if self.renew_at_ms != Some(at_ms) {
                        continue;
                    }
                    if self.claims.is_empty() {
                        self.renew_at_ms = None;
                    } else {
                        self.renew(self.claims.fingerprints());
                        let next = self.now_ms + (self.config.lease_ms / 3).max(1);
                        self.renew_at_ms = Some(next);
                        self.timers.insert((next, Timer::Renew));
                    }
                }
                Timer::Poll(fingerprint) => {
                    let due = Stage::Waiting {
                        poll_at_ms: at_ms,
                        reading: None,
                    };
                    if !self.stage_is(&fingerprint, &due) {
                        continue;
                    }
                    let action = self.emit(
                        StoreAction::Read {
                            keys: vec![keys::answer(&fingerprint)],
                        },
                        Pending::Poll {
                            fingerprint: fingerprint.clone(),
                        },
                    );
                    self.set_stage(
                        &fingerprint,
                        Stage::Waiting {
                            poll_at_ms: at_ms,
                            reading: Some(action),
                        },
                    );
                }
                Timer::Find(tag) => {
                    let Some(find) = self.finds.get_mut(&tag) else {
                        continue;
                    };
                    if find.sent || find.at_ms != at_ms {
                        continue;
                    }
                    find.sent = true;
                    self.outputs.push_back(Output::FindBatch { tag });
                }
            }
        }
        if self.scheduled_ms.is_some_and(|at| at <= self.now_ms) {
            self.scheduled_ms = None;
        }
    }

    // --- helpers ---

    fn emit(&mut self, op: StoreAction, pending: Pending) -> ActionId {
        let action = self.next_action;
        self.next_action += 1;
        self.pending.insert(action, pending);
        self.outputs.push_back(Output::Store { action, op });
        action
    }

    fn values(
        &self,
        action: ActionId,
        outcome: StoreOutcome,
        asked: usize,
    ) -> Result<Vec<Option<String>>, FleetError> {
        match outcome {
            StoreOutcome::Values { values } if values.len() == asked => Ok(values),
            StoreOutcome::Values { values } => Err(FleetError::ReadLength {
                action,
                asked,
                got: values.len(),
            }),
            other => Err(FleetError::OutcomeMismatch {
                action,
                expected: "Values",
                outcome: other.name(),
            }),
        }
    }

    fn stage_is(&self, fingerprint: &str, stage: &Stage) -> bool {
        self.entries
            .get(fingerprint)
            .is_some_and(|e| e.stage == *stage)
    }

    fn set_stage(&mut self, fingerprint: &str, stage: Stage) {
        if let Some(entry) = self.entries.get_mut(fingerprint) {
            entry.stage = stage;
        }
    }
}
