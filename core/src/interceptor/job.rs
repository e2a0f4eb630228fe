//! A provider batch in flight, and the explicit state machine it walks.
//!
//! ```text
//!              ┌──────────────── (inline providers: no upload) ───────────────┐
//!  Uploading ──┴─> FinishingUpload ──> Creating ──> AddingRequests ──> Polling ──> Downloading ──> (done)
//!                                        │  ▲           ▲                 │
//!                     create answer lost │  │ not found │ found           └──> (ended: every line answered
//!                                        ▼  │ (this run)│                       with the batch's end)
//!                                       Finding ────────┘
//! ```
//!
//! A job made from a previous run's journal starts in `Finding` (an intent: the create may or
//! may not have reached the provider) or in `Polling` (the batch is known to exist).
//!
//! In fleet mode (see `fleet`) a job starts in `Fencing`: its fleet member writes the batch's
//! intent before it may upload and create. A create whose answer was lost (or that could not go
//! by its `send_by_ms`) waits in `Lost` until the member asks for the look-up by tag (`Finding`
//! with `CreateOrigin::Fleet`); a batch another process created starts in `Polling`.
//!
//! ```text
//!  Fencing ──(CreateBatch)──> Uploading … Creating ──(lost / too late)──> Lost ──(FindBatch)──> Finding
//! ```

use std::collections::{HashMap, HashSet, VecDeque};

use crate::cache;
use crate::http::{HttpRequest, HttpResponse};
use crate::providers::{BatchContext, BatchItem, EndKind, Route};

/// The engine's own id of a job (not the provider's batch id).
pub(super) type JobId = u64;

/// One provider call of a job; what its answer is parsed as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Call {
    Upload,
    /// The second request of a two-request upload (`build_upload_finish`).
    UploadFinish,
    Create,
    /// Look for a batch whose create answer was lost.
    Find,
    /// One call of [`crate::providers::ProviderAdapter::build_after_create`] (xAI: add requests).
    AfterCreate,
    Poll,
    /// One results file (or one page of a paged listing).
    Download(String),
}

impl Call {
    pub(super) fn as_str(&self) -> &'static str {
        match self {
            Call::Upload => "upload",
            Call::UploadFinish => "upload_finish",
            Call::Create => "create",
            Call::Find => "find",
            Call::AfterCreate => "after_create",
            Call::Poll => "poll",
            Call::Download(_) => "download",
        }
    }
}

/// Who sent the create a `Finding` job looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CreateOrigin {
    /// This run: if the batch is not found, create it again (same job, same attempts).
    ThisRun,
    /// A previous run's journalled intent: if not found, the requests are queued anew.
    Journal,
    /// Fleet mode: the member's look-up (`FindBatch`), of this job's own lost create (`own`) or
    /// of another process's intent; the member decides what follows from what is found.
    Fleet { own: bool },
}

/// Where a job is in the provider's batch flow. The bodies (`items`) live here only until the
/// provider has them.
#[derive(Debug)]
pub(super) enum JobState {
    /// Fleet mode: cut, its fleet member writing the intent (`Event::Cut`); it goes on with the
    /// member's `CreateBatch` (its tag, perhaps fewer requests).
    Fencing {
        items: Vec<BatchItem>,
    },
    /// Fleet mode: the create's answer was lost, or it was not sent by its `send_by_ms`; the
    /// member asks for the look-up by tag after the grace (`FindBatch`).
    Lost {
        items: Vec<BatchItem>,
        file: Option<String>,
    },
    Uploading {
        items: Vec<BatchItem>,
    },
    FinishingUpload {
        items: Vec<BatchItem>,
        file: String,
        upload_answer: HttpResponse,
    },
    Creating {
        items: Vec<BatchItem>,
        file: Option<String>,
    },
    Finding {
        items: Vec<BatchItem>,
        file: Option<String>,
        origin: CreateOrigin,
    },
    /// The batch exists; the calls that fill it are made one after another (the first is in
    /// flight). Journalled as submitted only once they are all done.
    AddingRequests {
        batch_id: String,
        calls: VecDeque<HttpRequest>,
    },
    Polling {
        batch_id: String,
        next_poll_ms: Option<u64>,
    },
    /// Terminal at the provider; its result files are being read.
    Downloading {
        batch_id: String,
        downloads_left: usize,
        /// Set when the batch ended early (expired, cancelled, failed) with partial results.
        end_kind: Option<EndKind>,
        /// Result lines for custom ids not (yet) asked for in this run, kept until the batch is
        /// done: a resumed request may attach while the results are being downloaded.
        unclaimed: HashMap<String, HttpResponse>,
        /// What was read, checked against the provider's counts when the files are done.
        reading: Box<Reading>,
    },
}

/// How many more times a batch's results are downloaded when the provider's counts say more
/// lines ran than were read (a bug of ours in downloading or paging looks like a missing line,
/// and resubmitting such a line would pay for it twice).
pub(super) const REDOWNLOADS: u32 = 2;

/// The lines of a batch read so far, across its downloads and their retries.
#[derive(Debug, Default)]
pub(super) struct Reading {
    /// The result files (or first pages), to download again.
    pub(super) downloads: Vec<String>,
    /// Lines that ran by the provider's counts (completed + failed); 0 when it gives none.
    pub(super) lines_ran: u64,
    pub(super) redownloads_left: u32,
    /// Custom ids with a line, in any download attempt.
    pub(super) read: HashSet<String>,
    /// Lines read (duplicates too) by the downloads of this attempt that are done, by those
    /// still open, and by the best attempt so far: what is checked against `lines_ran`.
    pub(super) lines_read: u64,
    pub(super) call_lines: HashMap<u64, u64>,
    pub(super) best_read: u64,
    /// Custom ids read by the downloads of this attempt that are done: a second line for one
    /// of them is a duplicate. A download retried from the start re-delivers its lines, so
    /// a call's ids join this set only when the call is done.
    pub(super) this_attempt: HashSet<String>,
    /// Custom ids read by each download call still open.
    pub(super) in_call: HashMap<u64, HashSet<String>>,
    /// Requests whose line says they did not run (expired or cancelled before they ran), or,
    /// for the job builder, ran into a retryable error (`Some` with that line): held back
    /// from their callers to be resubmitted when the batch is done.
    pub(super) held: HashMap<String, Option<HttpResponse>>,
    /// How the held lines that did not run say the batch ended ("expired", "cancelled"), where
    /// the poll did not say (an Anthropic batch "ended" with expired lines).
    pub(super) held_state: Option<&'static str>,
}

/// A call waiting for its retry time.
#[derive(Debug)]
pub(super) struct Retry {
    pub(super) at_ms: u64,
    pub(super) call: Call,
}

/// A provider batch this engine drives, from its first call to its last result.
#[derive(Debug)]
pub(super) struct BatchJob {
    pub(super) id: JobId,
    pub(super) route: Route,
    /// The idempotency tag the batch carries where the provider allows one.
    pub(super) tag: String,
    /// Fingerprints in submission order, and their custom ids (the same order).
    pub(super) fingerprints: Vec<String>,
    pub(super) custom_ids: Vec<String>,
    pub(super) state: JobState,
    /// The current step's failed attempts so far.
    pub(super) attempts: u32,
    /// Calls waiting for their retry time; several downloads of one batch can wait at once.
    pub(super) retries: Vec<Retry>,
    /// Made from a previous run's journal: it lists only the requests asked about in this run,
    /// so a line for another custom id is not unknown (see `unclaimed`).
    pub(super) resumed: bool,
    /// Estimated input tokens of its requests, as enqueued-token limits count them (0 for a
    /// batch resumed from the journal, whose bodies this run may not have).
    pub(super) tokens: u64,
    /// The bodies kept after the create while the provider may still refuse the batch for its
    /// enqueued-token limit (see `ProviderAdapter::may_refuse_enqueued`), to submit them again;
    /// empty where the entries keep the bodies anyway (to resubmit lines that did not run).
    pub(super) held: Vec<BatchItem>,
    /// When this run first polled the batch, and how many of its requests were done then: the
    /// origin of the ETA's rate.
    pub(super) progress_origin: Option<(u64, u64)>,
    /// The batch's files at the provider (uploaded input, output and error files), deleted
    /// once its results are journalled.
    pub(super) provider_files: Vec<String>,
    /// When a previous run journalled this batch as submitted (wall clock, ms), for a job
    /// resumed from the journal: `Some(None)` when its record has no time.
    pub(super) resumed_from: Option<Option<u64>>,
    /// Fleet mode: the batch is one of the fleet member's (its tag is the member's), and its
    /// create must go no later than `send_by_ms` (set by `CreateBatch`).
    pub(super) fleet: bool,
    pub(super) send_by_ms: Option<u64>,
}

impl BatchJob {
    pub(super) fn new(
        id: JobId,
        route: Route,
        tag: String,
        fingerprints: Vec<String>,
        state: JobState,
    ) -> Self {
        let custom_ids = fingerprints.iter().map(|fp| cache::custom_id(fp)).collect();
        BatchJob {
            id,
            route,
            tag,
            fingerprints,
            custom_ids,
            state,
            attempts: 0,
            retries: Vec::new(),
            resumed: false,
            tokens: 0,
            held: Vec::new(),
            progress_origin: None,
            provider_files: Vec::new(),
            resumed_from: None,
            fleet: false,
            send_by_ms: None,
        }
    }

    pub(super) fn context(&self) -> BatchContext<'_> {
        BatchContext {
            route: &self.route,
            tag: &self.tag,
        }
    }

    /// The provider's batch id, once the batch exists.
    pub(super) fn batch_id(&self) -> Option<&str> {
        match &self.state {
            JobState::AddingRequests { batch_id, .. }
            | JobState::Polling { batch_id, .. }
            | JobState::Downloading { batch_id, .. } => Some(batch_id),
            _ => None,
        }
    }

    /// The bodies, while the provider does not have them yet.
    pub(super) fn items(&self) -> &[BatchItem] {
        match &self.state {
            JobState::Fencing { items }
            | JobState::Lost { items, .. }
            | JobState::Uploading { items }
            | JobState::FinishingUpload { items, .. }
            | JobState::Creating { items, .. }
            | JobState::Finding { items, .. } => items,
            _ => &[],
        }
    }

    /// Take the bodies it still holds: those not sent yet, or those held after the create.
    pub(super) fn take_items(&mut self) -> Vec<BatchItem> {
        match &mut self.state {
            JobState::Fencing { items }
            | JobState::Lost { items, .. }
            | JobState::Uploading { items }
            | JobState::FinishingUpload { items, .. }
            | JobState::Creating { items, .. }
            | JobState::Finding { items, .. } => std::mem::take(items),
            _ => std::mem::take(&mut self.held),
        }
    }

    /// The uploaded input file, once uploaded and until the batch exists.
    pub(super) fn uploaded_file(&self) -> Option<&str> {
        match &self.state {
            JobState::FinishingUpload { file, .. } => Some(file),
            JobState::Creating { file, .. }
            | JobState::Finding { file, .. }
            | JobState::Lost { file, .. } => file.as_deref(),
            _ => None,
        }
    }

    /// Add a request to a batch not created yet (a resumed intent's other requests).
    pub(super) fn push_unsent(&mut self, fingerprint: String, body: serde_json::Value) -> bool {
        let custom_id = cache::custom_id(&fingerprint);
        let items = match &mut self.state {
            JobState::Uploading { items }
            | JobState::FinishingUpload { items, .. }
            | JobState::Creating { items, .. }
            | JobState::Finding { items, .. } => items,
            _ => return false,
        };
        items.push(BatchItem {
            custom_id: custom_id.clone(),
            body,
        });
        self.custom_ids.push(custom_id);
        self.fingerprints.push(fingerprint);
        true
    }

    /// The next time this job wants the host to call back.
    pub(super) fn next_deadline(&self) -> Option<u64> {
        let poll = match self.state {
            JobState::Polling { next_poll_ms, .. } => next_poll_ms,
            _ => None,
        };
        poll.into_iter()
            .chain(self.retries.iter().map(|r| r.at_ms))
            .min()
    }

    /// Take the poll and the retries that are due at `now_ms`.
    pub(super) fn take_due(&mut self, now_ms: u64) -> Vec<Call> {
        let mut due = Vec::new();
        if let JobState::Polling { next_poll_ms, .. } = &mut self.state {
            if next_poll_ms.is_some_and(|t| t <= now_ms) {
                *next_poll_ms = None;
                due.push(Call::Poll);
            }
        }
        let (ready, later): (Vec<Retry>, Vec<Retry>) = std::mem::take(&mut self.retries)
            .into_iter()
            .partition(|r| r.at_ms <= now_ms);
        self.retries = later;
        due.extend(ready.into_iter().map(|r| r.call));
        due
    }
}
