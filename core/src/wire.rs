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

use crate::batcher::{Action, AddError, Batcher, ItemId, RejectReason};

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

/// Encode the outcome of one call: the add results (if any) and every queued action.
pub fn encode(batcher: &mut Batcher, adds: &[Result<ItemId, AddError>], out: &mut Vec<f64>) {
    out.clear();
    out.push(batcher.next_deadline().map_or(-1.0, |d| d as f64));
    out.push(adds.len() as f64);
    out.extend(adds.iter().map(|add| match add {
        Ok(item) => item.0 as f64,
        Err(AddError::QueueFull) => QUEUE_FULL,
        Err(AddError::Closed) => CLOSED,
    }));
    while let Some(action) = batcher.poll_action() {
        encode_action(&action, out);
    }
}

fn encode_action(action: &Action, out: &mut Vec<f64>) {
    match action {
        Action::RunBatch {
            batch,
            group,
            attempt,
            items,
        } => {
            out.extend([
                RUN_BATCH,
                batch.0 as f64,
                *group as f64,
                *attempt as f64,
                items.len() as f64,
            ]);
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
