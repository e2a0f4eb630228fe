//! A compact numeric encoding of the batcher's actions, shared by the Node and wasm bindings.
//!
//! Crossing into JS costs about a microsecond per object but only nanoseconds per number in a
//! typed array, so every call returns one `Float64Array`:
//!
//! ```text
//! [next_deadline_ms or -1, n_adds, add_result × n_adds, action…]
//! add_result: item id (>= 0), -1 queue full, -2 closed
//! action:     1 batch group attempt n item×n      run the handler on these items
//!             2 item                              resolve
//!             3 item reason batch attempts        reject (reason codes below)
//!             4 group                             group released
//!             5                                   drained (after close)
//! ```
//! Ids fit in 53 bits, so they survive the trip through `f64` exactly.
//!
//! [`HostIds`] is a second encoding, for a host that numbers its adds itself (host ids: one
//! counter, consecutive within a call) and keeps per-item data by that number. Items are then
//! named by host id, consecutive ids are sent as runs, and a batch's resolves come as runs too,
//! so a host settles a whole batch with one action and no per-item decoding:
//!
//! ```text
//! [next_deadline_ms or -1, n_adds, n_refused, add_result × n_adds, action…]
//! add_result: engine item id (>= 0; what `cancel` takes), -1 queue full, -2 closed
//! action:     1 batch group attempt n_items n_runs (first count)×n_runs   run the handler
//!             2 first count                                               resolve these items
//!             3 host_id reason batch attempts                             reject
//!             4 group                                                     group released
//!             5                                                           drained
//! ```
//! A run `first count` names the host ids `first .. first + count`, in batch order.

use crate::batcher::{Action, AddError, BatchId, Batcher, Event, GroupId, ItemId, RejectReason};

pub const RUN_BATCH: f64 = 1.0;
pub const RESOLVE: f64 = 2.0;
pub const REJECT: f64 = 3.0;
pub const GROUP_RELEASED: f64 = 4.0;
pub const DRAINED: f64 = 5.0;

pub const QUEUE_FULL: f64 = -1.0;
pub const CLOSED: f64 = -2.0;

pub const REASON_TIMED_OUT: f64 = 1.0;
pub const REASON_CANCELLED: f64 = 2.0;
pub const REASON_ITEM_FAILED: f64 = 3.0;
pub const REASON_BATCH_FAILED: f64 = 4.0;
pub const REASON_ABORTED: f64 = 5.0;

/// Every constant above by name, for the generated TypeScript (`host/ts_types.rs`).
pub const CONSTANTS: &[(&str, f64)] = &[
    ("RUN_BATCH", RUN_BATCH),
    ("RESOLVE", RESOLVE),
    ("REJECT", REJECT),
    ("GROUP_RELEASED", GROUP_RELEASED),
    ("DRAINED", DRAINED),
    ("QUEUE_FULL", QUEUE_FULL),
    ("CLOSED", CLOSED),
    ("REASON_TIMED_OUT", REASON_TIMED_OUT),
    ("REASON_CANCELLED", REASON_CANCELLED),
    ("REASON_ITEM_FAILED", REASON_ITEM_FAILED),
    ("REASON_BATCH_FAILED", REASON_BATCH_FAILED),
    ("REASON_ABORTED", REASON_ABORTED),
];

/// The arguments of a `completedMany` call, checked and split: several handlers returned,
/// `batches[i]` (a batch id as the wire carries it) with the next `failed_counts[i]` positions
/// of `failed` as its failed items. One `BatchCompleted` event per pair, in order.
pub fn completions<'a>(
    batches: &'a [f64],
    failed_counts: &'a [u32],
    failed: &'a [u32],
) -> Result<impl Iterator<Item = (BatchId, &'a [u32])> + 'a, String> {
    if failed_counts.len() != batches.len() {
        return Err(format!(
            "completedMany: {} batches but {} failed counts (one count per batch)",
            batches.len(),
            failed_counts.len()
        ));
    }
    let listed: u64 = failed_counts.iter().map(|&n| u64::from(n)).sum();
    if listed != failed.len() as u64 {
        return Err(format!(
            "completedMany: the failed counts add up to {listed} but {} failed positions were given",
            failed.len()
        ));
    }
    let mut rest = failed;
    Ok(batches
        .iter()
        .zip(failed_counts)
        .map(move |(&batch, &count)| {
            let (own, next) = rest.split_at(count as usize);
            rest = next;
            (BatchId(batch as u64), own)
        }))
}

/// A `completedMany` call (see [`completions`]) and its outcome, in the host-id layout when
/// the host uses it, else in the engine-id one.
pub fn complete_many<'a>(
    batcher: &mut Batcher,
    host_ids: Option<&mut HostIds>,
    now_ms: u64,
    completions: impl Iterator<Item = (BatchId, &'a [u32])>,
    out: &mut Vec<f64>,
) {
    match host_ids {
        Some(ids) => ids.complete_many(batcher, now_ms, completions, out),
        None => {
            for (batch, failed) in completions {
                batcher.handle(now_ms, Event::BatchCompleted { batch, failed });
            }
            encode(batcher, &[], out);
        }
    }
}

/// Encode the outcome of one call: the add results (if any) and every queued action.
pub fn encode(batcher: &mut Batcher, adds: &[Result<ItemId, AddError>], out: &mut Vec<f64>) {
    out.clear();
    out.push(batcher.next_deadline().map_or(-1.0, |d| d as f64));
    out.push(adds.len() as f64);
    out.extend(adds.iter().map(add_result));
    while let Some(action) = batcher.poll_action() {
        encode_action(&action, out);
    }
}

/// An add's result as the wire carries it: the engine id, or why it was refused.
fn add_result(add: &Result<ItemId, AddError>) -> f64 {
    match add {
        Ok(item) => item.0 as f64,
        Err(AddError::QueueFull) => QUEUE_FULL,
        Err(AddError::Closed) => CLOSED,
    }
}

/// `RUN_BATCH batch group attempt n_items`: what both layouts put before a batch's items.
fn run_batch_header(batch: BatchId, group: GroupId, attempt: u32, n_items: usize) -> [f64; 5] {
    [
        RUN_BATCH,
        batch.0 as f64,
        group as f64,
        attempt as f64,
        n_items as f64,
    ]
}

fn encode_action(action: &Action, out: &mut Vec<f64>) {
    match action {
        Action::RunBatch {
            batch,
            group,
            attempt,
            items,
        } => {
            out.extend(run_batch_header(*batch, *group, *attempt, items.len()));
            out.extend(items.iter().map(|i| i.0 as f64));
        }
        Action::Resolve { item } => out.extend([RESOLVE, item.0 as f64]),
        Action::Reject { item, reason } => {
            let (code, batch, attempts) = match reason {
                RejectReason::TimedOut => (REASON_TIMED_OUT, 0, 0),
                RejectReason::Cancelled => (REASON_CANCELLED, 0, 0),
                RejectReason::ItemFailed => (REASON_ITEM_FAILED, 0, 0),
                RejectReason::BatchFailed { batch, attempts } => {
                    (REASON_BATCH_FAILED, batch.0, *attempts)
                }
                RejectReason::Aborted => (REASON_ABORTED, 0, 0),
            };
            out.extend([REJECT, item.0 as f64, code, batch as f64, attempts as f64]);
        }
        Action::GroupReleased { group } => out.extend([GROUP_RELEASED, *group as f64]),
        Action::Drained => out.push(DRAINED),
    }
}

/// The host-id encoding (see the module docs): the host id of every live item, by engine slot.
#[derive(Debug, Default)]
pub struct HostIds {
    /// Host id by slot index. An action names an item settled or cut during the call that
    /// encodes it, and no slot is reused within a call after such an action is queued (adds
    /// never settle items; settling calls add nothing), so the slot still holds its host id.
    by_slot: Vec<f64>,
}

impl HostIds {
    /// Note the host ids of one call's adds: `first`, `first + 1`, … in input order (refused
    /// adds keep their number, so the host's numbering stays consecutive).
    pub fn record(&mut self, adds: &[Result<ItemId, AddError>], first: f64) {
        for (i, add) in adds.iter().enumerate() {
            if let Ok(item) = add {
                let slot = (item.0 & 0xffff_ffff) as usize;
                if slot >= self.by_slot.len() {
                    self.by_slot.resize(slot + 1, 0.0);
                }
                self.by_slot[slot] = first + i as f64;
            }
        }
    }

    /// -1 for an item added without a host id (through the plain `add`).
    fn host_id(&self, item: ItemId) -> f64 {
        let slot = (item.0 & 0xffff_ffff) as usize;
        self.by_slot.get(slot).copied().unwrap_or(-1.0)
    }

    /// Encode the outcome of one call in the host-id layout.
    pub fn encode(
        &mut self,
        batcher: &mut Batcher,
        adds: &[Result<ItemId, AddError>],
        out: &mut Vec<f64>,
    ) {
        out.clear();
        out.push(batcher.next_deadline().map_or(-1.0, |d| d as f64));
        out.push(adds.len() as f64);
        out.push(adds.iter().filter(|a| a.is_err()).count() as f64);
        out.extend(adds.iter().map(add_result));
        self.append_actions(batcher, out, &mut None);
        self.release_if_drained(batcher);
    }

    /// Several handlers returned (see [`completions`]): each batch's completion is handled and
    /// its actions encoded before the next, so the engine's action queue never holds more than
    /// one batch's resolves, and resolves of consecutive ids coalesce across batches. One
    /// outcome, with no add results.
    pub fn complete_many<'a>(
        &mut self,
        batcher: &mut Batcher,
        now_ms: u64,
        completions: impl Iterator<Item = (BatchId, &'a [u32])>,
        out: &mut Vec<f64>,
    ) {
        out.clear();
        out.extend([-1.0, 0.0, 0.0]); // the deadline is known after the last completion
        let mut open_run = None;
        for (batch, failed) in completions {
            batcher.handle(now_ms, Event::BatchCompleted { batch, failed });
            self.append_actions(batcher, out, &mut open_run);
        }
        out[0] = batcher.next_deadline().map_or(-1.0, |d| d as f64);
        self.release_if_drained(batcher);
    }

    fn release_if_drained(&mut self, batcher: &Batcher) {
        if batcher.is_closed() && batcher.live_items() == 0 {
            self.by_slot = Vec::new(); // drained for good: nothing more is added
        }
    }

    /// Encode every queued action. `open_run`: position of the open resolve run's count, and
    /// the host id that would extend it (kept across calls that append to the same outcome).
    fn append_actions(
        &mut self,
        batcher: &mut Batcher,
        out: &mut Vec<f64>,
        open_run: &mut Option<(usize, f64)>,
    ) {
        while let Some(action) = batcher.poll_action() {
            match action {
                Action::Resolve { item } => {
                    let id = self.host_id(item);
                    match *open_run {
                        Some((at, next)) if next == id => {
                            out[at] += 1.0;
                            *open_run = Some((at, id + 1.0));
                        }
                        _ => {
                            out.extend([RESOLVE, id, 1.0]);
                            *open_run = Some((out.len() - 1, id + 1.0));
                        }
                    }
                    continue;
                }
                Action::RunBatch {
                    batch,
                    group,
                    attempt,
                    items,
                } => {
                    out.extend(run_batch_header(batch, group, attempt, items.len()));
                    let n_runs_at = out.len();
                    out.push(0.0);
                    let mut next = f64::NAN;
                    for item in &items {
                        let id = self.host_id(*item);
                        if id == next {
                            *out.last_mut().expect("an open run") += 1.0;
                        } else {
                            out.extend([id, 1.0]);
                            out[n_runs_at] += 1.0;
                        }
                        next = id + 1.0;
                    }
                }
                Action::Reject { item, .. } => {
                    let at = out.len();
                    encode_action(&action, out);
                    out[at + 1] = self.host_id(item);
                }
                other => encode_action(&other, out),
            }
            *open_run = None;
        }
    }
}
