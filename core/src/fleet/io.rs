//! What crosses a fleet member's boundary: the host's [`Event`]s, the member's [`Output`]s, and
//! the store actions a host executes atomically ([`StoreAction`], answered by [`StoreOutcome`]).
//!
//! A host that speaks JSON (the bindings, see `crate::host::fleet`) gets each as an object
//! tagged by `kind`, camelCase: `{"kind":"claim","key":"req:…","token":"…","leaseMs":30000}`,
//! `{"kind":"storeOutcome","action":3,"outcome":{"kind":"values","values":["…",null]}}`.

use serde::{Deserialize, Serialize};

/// A store action the member emitted; its outcome comes back with the same id.
pub type ActionId = u64;
/// A caller waiting on a fingerprint; the host's own id.
pub type RequestId = u64;

/// A key and the value to set at it.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, ts(rename = "FleetRecord"))]
pub struct Record {
    pub key: String,
    pub value: String,
}

/// A claim as the store holds it: its key and its token (the value set by the `Claim` that took
/// it: the owner id, a dot and the claim's action id, unique for every claim ever taken, so a
/// late write or release of an older claim of the same member never passes for a newer one).
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRef {
    pub key: String,
    pub token: String,
}

/// One atomic store operation. Each is one command or one script in Redis.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum StoreAction {
    /// Set `key` to `token` with expiry `lease_ms` if it is absent (`SET key token NX PX
    /// lease_ms`). → [`StoreOutcome::Claimed`] or [`StoreOutcome::HeldBy`] (its current value).
    Claim {
        key: String,
        token: String,
        lease_ms: u64,
    },
    /// For each claim whose key still holds its token, set the key's expiry to `lease_ms` from
    /// now (a script: `GET` = token → `PEXPIRE`). A missing key is never recreated. →
    /// [`StoreOutcome::Renewed`] with the keys renewed.
    Renew {
        claims: Vec<ClaimRef>,
        lease_ms: u64,
    },
    /// Fencing: if every claim's key still holds its token, set every record (each with expiry
    /// `ttl_ms`), all or nothing (a script). Empty `claims`: write unconditionally. →
    /// [`StoreOutcome::Written`] or [`StoreOutcome::NotOwner`] (the claim keys that do not
    /// hold their token; nothing was written).
    WriteIfOwner {
        claims: Vec<ClaimRef>,
        records: Vec<Record>,
        ttl_ms: u64,
    },
    /// The values of these keys (`MGET`). → [`StoreOutcome::Values`], one per key in order.
    /// For an `answer:` key the core only asks whether it is there: the host keeps the value
    /// it read (the answer body) and may pass the core an empty string for it.
    Read { keys: Vec<String> },
    /// Delete `key` if its value is `token` (a script: compare-and-delete). →
    /// [`StoreOutcome::Done`].
    Release { key: String, token: String },
    /// Store the answer the host holds for `fingerprint` (reported with
    /// [`Event::BatchAnswered`]) at `key` with expiry `ttl_ms` (`SET key body PX ttl_ms`). →
    /// [`StoreOutcome::Done`].
    PutAnswer {
        key: String,
        fingerprint: String,
        ttl_ms: u64,
    },
}

/// How a store action went.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum StoreOutcome {
    Claimed,
    HeldBy {
        owner: String,
    },
    Renewed {
        keys: Vec<String>,
    },
    Written,
    NotOwner {
        lost: Vec<String>,
    },
    /// One per key read, in order; `null` for an absent key.
    Values {
        values: Vec<Option<String>>,
    },
    Done,
}

impl StoreOutcome {
    pub(super) fn name(&self) -> &'static str {
        match self {
            StoreOutcome::Claimed => "Claimed",
            StoreOutcome::HeldBy { .. } => "HeldBy",
            StoreOutcome::Renewed { .. } => "Renewed",
            StoreOutcome::Written => "Written",
            StoreOutcome::NotOwner { .. } => "NotOwner",
            StoreOutcome::Values { .. } => "Values",
            StoreOutcome::Done => "Done",
        }
    }
}

/// What the host tells the member. Time comes with every call (`handle(now_ms, event)`).
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
#[cfg_attr(test, ts(rename = "FleetEvent"))]
pub enum Event {
    /// A caller waits for the answer to `fingerprint`.
    Arrive {
        request: RequestId,
        fingerprint: String,
    },
    /// The outcome of the store action `action`.
    StoreOutcome {
        action: ActionId,
        outcome: StoreOutcome,
    },
    /// Time passed (a timer the member asked for fired, or the host just calls in).
    Tick,
    /// The host cut these enqueued requests into one batch and wants to create it. The member
    /// writes its intent under fencing, then answers with [`Output::CreateBatch`] (perhaps for
    /// fewer requests: the others went back to [`Output::WaitForAnswer`]).
    Cut { fingerprints: Vec<String> },
    /// The provider accepted the create for `tag`.
    BatchCreated { tag: String, batch_id: String },
    /// The create for `tag` was sent (or not sent by its `send_by_ms`) and no answer came:
    /// the member looks the batch up by its tag after the grace.
    CreateUnknown { tag: String },
    /// The answer to [`Output::FindBatch`]: the provider's batch carrying `tag`, if any.
    BatchFound {
        tag: String,
        batch_id: Option<String>,
    },
    /// A batch the host polls (created or resumed) answered this request's line; the host
    /// holds the answer.
    BatchAnswered { fingerprint: String },
    /// The store could not execute `action` (unreachable past the host's retries): its outcome
    /// is unknown. The requests whose progress hung on it are given up
    /// ([`Output::Unavailable`], with `error`, the host's reason); nothing is created for them.
    StoreFailed { action: ActionId, error: String },
    /// The host no longer wants this request (its callers are gone): the member forgets it and
    /// releases its claim. Safe at any stage: a create that may have gone out left its intent
    /// in the store, so whoever claims the request next looks that batch up by its tag before
    /// batching it again.
    Drop { fingerprint: String },
    /// The batch holding this request's line ended without an answer to store for it (the line
    /// did not run, or came back with a transient error): the member clears the request's line
    /// pointer under its claim, so no one resumes that ended batch for it again, then batches
    /// it anew ([`Output::Enqueue`]) if callers still wait (`rebatch`: the host keeps them; or a
    /// caller arrived meanwhile), else releases it (its callers were answered by the host).
    LineEnded { fingerprint: String, rebatch: bool },
}

/// What the member tells the host.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
#[cfg_attr(test, ts(rename = "FleetOutput"))]
pub enum Output {
    /// Execute this store action atomically; answer with [`Event::StoreOutcome`].
    Store { action: ActionId, op: StoreAction },
    /// This member owns the request now: put it in a batch line (and later [`Event::Cut`]).
    Enqueue { fingerprint: String },
    /// Another member owns the request (or this one lost it): take it out of any line and
    /// wait; the member polls the store for its answer.
    WaitForAnswer { fingerprint: String },
    /// Send the provider create for these requests with `tag` in its metadata, no later than
    /// `send_by_ms` (host time); if it cannot go by then, do not send it and report
    /// [`Event::CreateUnknown`]. Answer with [`Event::BatchCreated`] or `CreateUnknown`.
    CreateBatch {
        tag: String,
        fingerprints: Vec<String>,
        send_by_ms: u64,
    },
    /// Look for the provider batch carrying `tag`; answer with [`Event::BatchFound`].
    FindBatch { tag: String },
    /// Poll this batch (created elsewhere) with the credential of the waiting request that
    /// led here, and report its lines with [`Event::BatchAnswered`].
    Resume { tag: String, batch_id: String },
    /// Answer the caller: with the answer the host holds from a batch (`from_store: false`),
    /// or with the answer it just read from `answer:<fingerprint>` (`from_store: true`).
    Answer {
        request: RequestId,
        fingerprint: String,
        from_store: bool,
    },
    /// Call back with [`Event::Tick`] at this time (the earliest the member waits for).
    ScheduleTimer { at_ms: u64 },
    /// A store action this request depended on failed ([`Event::StoreFailed`]): the member gave
    /// it up (nothing was created for it; a claim it may hold lapses with its lease). Fail
    /// these callers (`error`: the host's reason, from the `StoreFailed`).
    Unavailable {
        fingerprint: String,
        requests: Vec<RequestId>,
        error: String,
    },
}
