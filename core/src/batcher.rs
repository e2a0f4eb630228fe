//! The generic batching engine: items (ids with a group key) in, batches out.
//!
//! The engine never sees an item's payload; the host keeps it and refers to it by [`ItemId`].
//! Time comes in with every call (`now_ms`); the engine asks for a wake-up through
//! [`Batcher::next_deadline`]. Everything the host must do is queued as an [`Action`].
//!
//! Rules, each checked by tests with virtual time:
//! - a group's batch is cut when it holds `max_batch_size` live items, or when `max_delay_ms`
//!   has passed since its oldest pending item arrived (the window opens at the first item);
//! - groups never mix and items keep their add order inside a batch;
//! - at most `max_queue_size` items wait (queued or cut but not yet running); an add beyond
//!   that is refused at once with [`AddError::QueueFull`];
//! - at most `max_concurrent_batches` batches run; the rest wait in cut order;
//! - every accepted item is settled exactly once: resolved, or rejected with a [`RejectReason`].

use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::backoff::Jitter;
use crate::options::OptionError;

/// A group key, interned by the host (the default key is usually 0).
pub type GroupId = u32;

/// An item handle. Low 32 bits: slot index; bits 32..53: slot generation. Fits a JS number.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemId(pub u64);

impl ItemId {
    const GENERATION_MASK: u32 = (1 << 21) - 1;

    fn new(index: u32, generation: u32) -> Self {
        ItemId(((generation as u64) << 32) | index as u64)
    }
    fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// A batch handle, unique for the engine's lifetime. Retries keep the batch's id.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(pub u64);

/// Retries of a failed batch. `attempts` is the number of extra attempts (0 = no retry).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 0,
            backoff_ms: 100,
            max_backoff_ms: 30_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BatcherConfig {
    pub max_batch_size: usize,
    pub max_delay_ms: u64,
    /// Items allowed to wait (queued, or cut but not yet running). `usize::MAX`: unbounded.
    pub max_queue_size: usize,
    /// Batches allowed to run at once. `usize::MAX`: unbounded.
    pub max_concurrent_batches: usize,
    pub retry: RetryPolicy,
    /// Per-item deadline, counted from the add. `None`: no timeout.
    pub timeout_ms: Option<u64>,
    /// Seed of the jitter applied to retry backoff, so tests are reproducible.
    pub jitter_seed: u64,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        BatcherConfig {
            max_batch_size: 100,
            max_delay_ms: 10,
            max_queue_size: usize::MAX,
            max_concurrent_batches: usize::MAX,
            retry: RetryPolicy::default(),
            timeout_ms: None,
            jitter_seed: 0x5eed,
        }
    }
}

impl BatcherConfig {
    pub fn validate(&self) -> Result<(), OptionError> {
        let err = |option: &str, message: &str| Err(OptionError::new(option, message));
        if self.max_batch_size == 0 {
            return err("maxBatchSize", "must be at least 1");
        }
        if self.max_queue_size == 0 {
            return err("maxQueueSize", "must be at least 1 (omit it for no limit)");
        }
        if self.max_concurrent_batches == 0 {
            return err(
                "maxConcurrentBatches",
                "must be at least 1 (omit it for no limit)",
            );
        }
        if self.timeout_ms == Some(0) {
            return err("timeoutMs", "must be at least 1 (omit it for no timeout)");
        }
        if self.retry.attempts > 0 && self.retry.max_backoff_ms < self.retry.backoff_ms {
            return err("retry.maxBackoffMs", "must be at least retry.backoffMs");
        }
        Ok(())
    }
}

/// Options as a JS host holds them (numbers are `f64`), converted with the range checks both
/// bindings share: a value a `u32` or `u64` cannot hold is refused, never wrapped. The host gets
/// them (camelCase, absent fields omitted) from [`crate::host::options::batcher_options`].
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(ts_rs::TS), ts(optional_fields))]
pub struct HostBatcherOptions {
    pub max_batch_size: f64,
    pub max_delay_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queue_size: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_batches: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_attempts: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_backoff_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_max_backoff_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter_seed: Option<f64>,
}

/// 2^53: the largest whole number a JS number holds exactly.
const MAX_SAFE: f64 = 9_007_199_254_740_992.0;

fn whole(option: &str, value: f64, max: f64) -> Result<f64, OptionError> {
    if value.fract() != 0.0 || !(0.0..=max).contains(&value) {
        return Err(OptionError::new(
            option,
            format!("must be a whole number from 0 to {max}, got {value}"),
        ));
    }
    Ok(value)
}

impl HostBatcherOptions {
    pub fn into_config(self) -> Result<BatcherConfig, OptionError> {
        let defaults = BatcherConfig::default();
        let size = |field, v: f64| whole(field, v, MAX_SAFE).map(|v| v as usize);
        let ms = |field, v: f64| whole(field, v, MAX_SAFE).map(|v| v as u64);
        let config = BatcherConfig {
            max_batch_size: size("maxBatchSize", self.max_batch_size)?,
            max_delay_ms: ms("maxDelayMs", self.max_delay_ms)?,
            max_queue_size: match self.max_queue_size {
                Some(v) => size("maxQueueSize", v)?,
                None => usize::MAX,
            },
            max_concurrent_batches: match self.max_concurrent_batches {
                Some(v) => size("maxConcurrentBatches", v)?,
                None => usize::MAX,
            },
            retry: RetryPolicy {
                attempts: match self.retry_attempts {
                    Some(v) => whole("retry.attempts", v, u32::MAX as f64)? as u32,
                    None => 0,
                },
                backoff_ms: match self.retry_backoff_ms {
                    Some(v) => ms("retry.backoffMs", v)?,
                    None => defaults.retry.backoff_ms,
                },
                max_backoff_ms: match self.retry_max_backoff_ms {
                    Some(v) => ms("retry.maxBackoffMs", v)?,
                    None => defaults.retry.max_backoff_ms,
                },
            },
            timeout_ms: self.timeout_ms.map(|v| ms("timeoutMs", v)).transpose()?,
            jitter_seed: match self.jitter_seed {
                Some(v) => ms("jitterSeed", v)?,
                None => defaults.jitter_seed,
            },
        };
        config.validate()?;
        Ok(config)
    }
}

/// Why an add was refused. The item was never accepted and gets no action.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AddError {
    QueueFull,
    Closed,
}

/// Why an accepted item was rejected.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// `timeout_ms` passed before its result arrived; a late result is dropped.
    TimedOut,
    /// The host cancelled it; a late result is dropped.
    Cancelled,
    /// Its batch reported this item as failed (the host holds the item's error).
    ItemFailed,
    /// Its batch failed on every allowed attempt (the host holds the batch's last error).
    BatchFailed { batch: BatchId, attempts: u32 },
    /// The engine was closed with `abort` before the item settled.
    Aborted,
}

/// What the host must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run the user's batch handler on these items, in this order. `attempt` starts at 1.
    /// Report back with [`Event::BatchCompleted`] or [`Event::BatchFailed`].
    RunBatch {
        batch: BatchId,
        group: GroupId,
        attempt: u32,
        items: Vec<ItemId>,
    },
    /// Settle the item with the result the host holds for it.
    Resolve {
        item: ItemId,
    },
    Reject {
        item: ItemId,
        reason: RejectReason,
    },
    /// The group holds nothing any more; the host may forget the key it interned for it.
    GroupReleased {
        group: GroupId,
    },
    /// After `Close`: every item is settled. Emitted once.
    Drained,
}

/// Everything the host tells the engine, besides adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Time passed (a timer the engine asked for fired, or the host just calls in).
    Tick,
    /// The handler returned; `failed` lists positions (in the `RunBatch` item order) of items
    /// that failed on their own. Every other item succeeded.
    BatchCompleted {
        batch: BatchId,
        failed: &'a [u32],
    },
    /// The handler threw. A `retryable` failure is retried while the policy allows.
    BatchFailed {
        batch: BatchId,
        retryable: bool,
    },
    Cancel {
        item: ItemId,
    },
    /// Cut every pending group now.
    Flush,
    /// Refuse further adds. `abort: false` drains (flushes and lets everything finish);
    /// `abort: true` rejects every unsettled item at once.
    Close {
        abort: bool,
    },
}

/// Counters and queue statistics, as `getStatus()` shows them.
#[cfg_attr(test, derive(ts_rs::TS))]
#[cfg_attr(test, ts(rename = "EngineStatus", rename_all = "camelCase"))]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Status {
    /// Items waiting: queued in a group, or in a cut batch waiting for its first run.
    pub pending: u64,
    /// Items in a running batch.
    pub processing: u64,
    /// Items whose batch returned a result for them (success or their own error).
    pub processed: u64,
    /// Items rejected because their batch or they themselves failed.
    pub failed: u64,
    /// Batches cut.
    pub batches: u64,
    /// Items per cut batch, on average.
    pub average_batch_size: f64,
    /// Host time of the latest cut.
    #[cfg_attr(test, ts(rename = "lastBatchTime", optional))]
    pub last_batch_time_ms: Option<u64>,
    /// Batch attempts that were retried.
    pub retried: u64,
    /// Adds refused (queue full, closed) plus items rejected by an aborting close.
    pub rejected: u64,
    pub cancelled: u64,
    pub timed_out: u64,
    /// Items added and not yet in a running batch: what `max_queue_size` bounds (the same
    /// count as `pending`; a batch waiting for its retry already ran and is not queued).
    pub queue_size: u64,
    /// The configured `max_queue_size`; `None` when the queue is unbounded.
    pub max_queue_size: Option<u64>,
    /// `queue_size` has reached `max_queue_size`: the next add is refused. Never true unbounded.
    pub is_queue_full: bool,
    pub is_queue_empty: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ItemState {
    Free {
        next_free: u32,
    },
    /// In its group's queue.
    Queued,
    /// In a cut batch waiting for its first run (counted as pending).
    Waiting,
    /// In a failed batch waiting for its retry (still counted as processing, so a retry never
    /// pushes the queue past its bound).
    Retrying,
    Running,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    generation: u32,
    group: GroupId,
    state: ItemState,
}

struct Group {
    /// Ids in add order; settled ones are skipped lazily (and compacted away).
    queue: VecDeque<ItemId>,
    live: usize,
    /// Identifies the open window; a stale window entry carries another value.
    window: u64,
}

struct BatchRecord {
    group: GroupId,
    attempt: u32,
    running: bool,
    items: Vec<ItemId>,
}

const NO_FREE_SLOT: u32 = u32::MAX;
/// Emptied group queues kept for reuse, at most.
const MAX_SPARE_QUEUES: usize = 16;

pub struct Batcher {
    config: BatcherConfig,
    slots: Vec<Slot>,
    free_head: u32,
    live_items: usize,
    groups: FxHashMap<GroupId, Group>,
    /// Allocations of emptied group queues, reused by the next groups to open.
    spare_queues: Vec<VecDeque<ItemId>>,
    /// (deadline, group, window) in opening order; deadlines never decrease since the delay
    /// is fixed and time never goes back.
    windows: VecDeque<(u64, GroupId, u64)>,
    next_window: u64,
    /// (deadline, item) in add order; monotonic for the same reason.
    timeouts: VecDeque<(u64, ItemId)>,
    batches: FxHashMap<BatchId, BatchRecord>,
    next_batch: u64,
    ready: VecDeque<BatchId>,
    backoff: BinaryHeap<Reverse<(u64, BatchId)>>,
    running: usize,
    released: Vec<GroupId>,
    closed: bool,
    drained_sent: bool,
    jitter: Jitter,
    items_cut: u64,
    status: Status,
    actions: VecDeque<Action>,
    last_now_ms: u64,
}

impl Batcher {
    pub fn new(config: BatcherConfig) -> Result<Self, OptionError> {
        config.validate()?;
        let jitter = Jitter::new(config.jitter_seed);
        Ok(Batcher {
            config,
            slots: Vec::new(),
            free_head: NO_FREE_SLOT,
            live_items: 0,
            groups: FxHashMap::default(),
            spare_queues: Vec::new(),
            windows: VecDeque::new(),
            next_window: 0,
            timeouts: VecDeque::new(),
            batches: FxHashMap::default(),
            next_batch: 1,
            ready: VecDeque::new(),
            backoff: BinaryHeap::new(),
            running: 0,
            released: Vec::new(),
            closed: false,
            drained_sent: false,
            jitter,
            items_cut: 0,
            status: Status::default(),
            actions: VecDeque::new(),
            last_now_ms: 0,
        })
    }

    pub fn config(&self) -> &BatcherConfig {
        &self.config
    }

    /// Accept one item into `group`. A refused add gets no action.
    pub fn add(&mut self, now_ms: u64, group: GroupId) -> Result<ItemId, AddError> {
        let result = self.add_one(now_ms, group);
        self.finish_call(now_ms, false);
        result
    }

    /// Accept many items at once (one host crossing per tick). Results in input order.
    ///
    /// `more_follow`: the host hands one instant's adds over in several calls and more of them
    /// follow; windows that are due wait for the last call, so `max_delay_ms: 0` still batches
    /// everything one tick adds.
    pub fn add_many(
        &mut self,
        now_ms: u64,
        groups: &[GroupId],
        more_follow: bool,
        out: &mut Vec<Result<ItemId, AddError>>,
    ) {
        out.reserve(groups.len());
        for &group in groups {
            out.push(self.add_one(now_ms, group));
        }
        self.finish_call(now_ms, more_follow);
    }

    pub fn handle(&mut self, now_ms: u64, event: Event<'_>) {
        let now_ms = self.clamp_time(now_ms);
        match event {
            Event::Tick => {}
            Event::BatchCompleted { batch, failed } => self.on_completed(batch, failed),
            Event::BatchFailed { batch, retryable } => self.on_failed(now_ms, batch, retryable),
            Event::Cancel { item } => {
                if self.settle(item) {
                    self.status.cancelled += 1;
                    self.push_reject(item, RejectReason::Cancelled);
                }
            }
            Event::Flush => self.cut_all(now_ms),
            Event::Close { abort } => {
                self.closed = true;
                if abort {
                    self.abort_all();
                } else {
                    self.cut_all(now_ms);
                }
            }
        }
        self.finish_call(now_ms, false);
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn drain_actions(&mut self) -> impl Iterator<Item = Action> + '_ {
        self.actions.drain(..)
    }

    /// When the host should call back with [`Event::Tick`], if anything is waiting on time.
    pub fn next_deadline(&self) -> Option<u64> {
        let window = self.windows.front().map(|w| w.0);
        let timeout = self.timeouts.front().map(|t| t.0);
        let backoff = self.backoff.peek().map(|Reverse((at, _))| *at);
        [window, timeout, backoff].into_iter().flatten().min()
    }

    pub fn status(&self) -> Status {
        let mut status = self.status.clone();
        status.average_batch_size = if status.batches == 0 {
            0.0
        } else {
            self.items_cut as f64 / status.batches as f64
        };
        // The queue statistics follow from the counters and the bound: nothing per item.
        let bound = self.config.max_queue_size;
        status.queue_size = status.pending;
        status.max_queue_size = (bound != usize::MAX).then_some(bound as u64);
        status.is_queue_full = status
            .max_queue_size
            .is_some_and(|max| status.queue_size >= max);
        status.is_queue_empty = status.queue_size == 0;
        status
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Items accepted and not yet settled.
    pub fn live_items(&self) -> usize {
        self.live_items
    }

    /// Entries held in the engine's queues and timer lists, live or stale. Tests use it to
    /// check that memory follows live items, not the number of items ever added.
    pub fn bookkeeping_entries(&self) -> usize {
        let group_entries: usize = self.groups.values().map(|g| g.queue.len()).sum();
        group_entries
            + self.windows.len()
            + self.timeouts.len()
            + self.ready.len()
            + self.backoff.len()
            + self.batches.len()
    }

    // ---- adds and cuts -------------------------------------------------------------------

    fn add_one(&mut self, now_ms: u64, group: GroupId) -> Result<ItemId, AddError> {
        let now_ms = self.clamp_time(now_ms);
        if self.closed {
            self.status.rejected += 1;
            return Err(AddError::Closed);
        }
        if self.status.pending as usize >= self.config.max_queue_size {
            self.status.rejected += 1;
            return Err(AddError::QueueFull);
        }
        let item = self.alloc(group);
        self.status.pending += 1;
        if let Some(timeout_ms) = self.config.timeout_ms {
            self.timeouts
                .push_back((now_ms.saturating_add(timeout_ms), item));
        }
        let max_delay_ms = self.config.max_delay_ms;
        let next_window = &mut self.next_window;
        let windows = &mut self.windows;
        let spare_queues = &mut self.spare_queues;
        let entry = self.groups.entry(group).or_insert_with(|| Group {
            queue: spare_queues.pop().unwrap_or_default(),
            live: 0,
            window: 0,
        });
        if entry.live == 0 {
            *next_window += 1;
            entry.window = *next_window;
            windows.push_back((now_ms.saturating_add(max_delay_ms), group, entry.window));
        }
        entry.queue.push_back(item);
        entry.live += 1;
        if entry.live >= self.config.max_batch_size {
            self.cut_group(now_ms, group, 1);
        }
        Ok(item)
    }

    fn alloc(&mut self, group: GroupId) -> ItemId {
        self.live_items += 1;
        if self.free_head != NO_FREE_SLOT {
            let index = self.free_head;
            let slot = &mut self.slots[index as usize];
            let ItemState::Free { next_free } = slot.state else {
                unreachable!("free list points at a live slot")
            };
            self.free_head = next_free;
            slot.group = group;
            slot.state = ItemState::Queued;
            ItemId::new(index, slot.generation)
        } else {
            let index = u32::try_from(self.slots.len()).expect("more than 4 billion live items");
            self.slots.push(Slot {
                generation: 0,
                group,
                state: ItemState::Queued,
            });
            ItemId::new(index, 0)
        }
    }

    /// The slot of a live item, or `None` for a settled or unknown one.
    fn live_slot(&self, item: ItemId) -> Option<&Slot> {
        self.slots
            .get(item.index())
            .filter(|s| s.generation == item.generation())
            .filter(|s| !matches!(s.state, ItemState::Free { .. }))
    }

    /// Free a live item's slot, keeping counters right. False if it was not live.
    fn settle(&mut self, item: ItemId) -> bool {
        let Some(slot) = self.live_slot(item).copied() else {
            return false;
        };
        match slot.state {
            ItemState::Queued => {
                self.status.pending -= 1;
                let group = self
                    .groups
                    .get_mut(&slot.group)
                    .expect("queued item's group");
                group.live -= 1;
                if group.live == 0 {
                    self.remove_group(slot.group);
                    self.released.push(slot.group);
                } else if group.queue.len() > 2 * group.live + 16 {
                    // Cancelled ids linger in the queue; compact so memory follows live items.
                    let slots = &self.slots;
                    group.queue.retain(|id| {
                        let s = &slots[id.index()];
                        s.generation == id.generation() && s.state == ItemState::Queued
                    });
                    // `item` itself is still marked queued here; drop it too.
                    group.queue.retain(|id| *id != item);
                }
            }
            ItemState::Waiting => self.status.pending -= 1,
            ItemState::Running | ItemState::Retrying => self.status.processing -= 1,
            ItemState::Free { .. } => unreachable!(),
        }
        let index = item.index();
        let slot = &mut self.slots[index];
        slot.generation = (slot.generation + 1) & ItemId::GENERATION_MASK;
        slot.state = ItemState::Free {
            next_free: self.free_head,
        };
        self.free_head = index as u32;
        self.live_items -= 1;
        true
    }

    /// Cut up to `max_batches` batches from a group (usize::MAX: all it holds).
    fn cut_group(&mut self, now_ms: u64, group_id: GroupId, max_batches: usize) {
        let Some(group) = self.groups.get_mut(&group_id) else {
            return;
        };
        let max = self.config.max_batch_size;
        let mut cut = 0;
        while group.live > 0 && cut < max_batches {
            let mut items = Vec::with_capacity(group.live.min(max));
            while items.len() < max {
                let Some(id) = group.queue.pop_front() else {
                    break;
                };
                let slot = &mut self.slots[id.index()];
                if slot.generation == id.generation() && slot.state == ItemState::Queued {
                    slot.state = ItemState::Waiting;
                    items.push(id);
                }
            }
            group.live -= items.len();
            cut += 1;
            self.status.batches += 1;
            self.items_cut += items.len() as u64;
            self.status.last_batch_time_ms = Some(now_ms);
            let batch = BatchId(self.next_batch);
            self.next_batch += 1;
            self.batches.insert(
                batch,
                BatchRecord {
                    group: group_id,
                    attempt: 0,
                    running: false,
                    items,
                },
            );
            self.ready.push_back(batch);
        }
        if group.live == 0 {
            self.remove_group(group_id);
            self.released.push(group_id);
        }
        self.start_ready();
    }

    /// Forget an empty group, keeping its queue's allocation for the next group that opens
    /// (a busy key empties and refills once per batch).
    fn remove_group(&mut self, group_id: GroupId) {
        if let Some(mut group) = self.groups.remove(&group_id) {
            if self.spare_queues.len() < MAX_SPARE_QUEUES {
                group.queue.clear();
                self.spare_queues.push(group.queue);
            }
        }
    }

    fn cut_all(&mut self, now_ms: u64) {
        let mut ids: Vec<GroupId> = self.groups.keys().copied().collect();
        // Oldest window first, so flushed batches keep arrival order across groups.
        ids.sort_by_key(|g| self.groups[g].window);
        for group in ids {
            self.cut_group(now_ms, group, usize::MAX);
        }
    }

    fn start_ready(&mut self) {
        while self.running < self.config.max_concurrent_batches {
            let Some(batch_id) = self.ready.pop_front() else {
                break;
            };
            let Some(mut record) = self.batches.remove(&batch_id) else {
                continue;
            };
            let slots = &mut self.slots;
            let mut first_runs = 0;
            record.items.retain(|id| {
                let s = &mut slots[id.index()];
                if s.generation != id.generation() {
                    return false;
                }
                match s.state {
                    ItemState::Waiting => first_runs += 1,
                    ItemState::Retrying => {}
                    _ => return false,
                }
                s.state = ItemState::Running;
                true
            });
            if record.items.is_empty() {
                continue; // every item was cancelled or timed out while it waited
            }
            self.status.pending -= first_runs;
            self.status.processing += first_runs;
            record.attempt += 1;
            record.running = true;
            self.running += 1;
            self.actions.push_back(Action::RunBatch {
                batch: batch_id,
                group: record.group,
                attempt: record.attempt,
                items: record.items.clone(),
            });
            self.batches.insert(batch_id, record);
        }
    }

    // ---- outcomes ------------------------------------------------------------------------

    fn take_running(&mut self, batch: BatchId) -> Option<BatchRecord> {
        let record = self.batches.remove(&batch)?;
        if !record.running {
            // Not running (waiting or backing off): an outcome now is a host error; ignore it.
            self.batches.insert(batch, record);
            return None;
        }
        self.running -= 1;
        Some(record)
    }

    fn on_completed(&mut self, batch: BatchId, failed: &[u32]) {
        let Some(record) = self.take_running(batch) else {
            return;
        };
        let mut failed_mask = vec![false; record.items.len()];
        for &position in failed {
            if let Some(flag) = failed_mask.get_mut(position as usize) {
                *flag = true;
            }
        }
        for (item, failed) in record.items.into_iter().zip(failed_mask) {
            if !self.settle(item) {
                continue; // timed out or cancelled meanwhile: the late result is dropped
            }
            self.status.processed += 1;
            if failed {
                self.status.failed += 1;
                self.push_reject(item, RejectReason::ItemFailed);
            } else {
                self.actions.push_back(Action::Resolve { item });
            }
        }
        self.start_ready();
    }

    fn on_failed(&mut self, now_ms: u64, batch: BatchId, retryable: bool) {
        let Some(mut record) = self.take_running(batch) else {
            return;
        };
        let slots = &mut self.slots;
        record.items.retain(|id| {
            // `get_mut`: after a drain the table is gone, and a late outcome finds nothing live.
            let Some(s) = slots.get_mut(id.index()) else {
                return false;
            };
            let live = s.generation == id.generation() && s.state == ItemState::Running;
            if live {
                s.state = ItemState::Retrying;
            }
            live
        });
        let may_retry = retryable && record.attempt <= self.config.retry.attempts;
        if may_retry && !record.items.is_empty() {
            self.status.retried += 1;
            let at = now_ms.saturating_add(self.backoff_ms(record.attempt));
            record.running = false;
            self.batches.insert(batch, record);
            self.backoff.push(Reverse((at, batch)));
        } else {
            let attempts = record.attempt;
            for item in record.items {
                self.settle(item);
                self.status.failed += 1;
                self.push_reject(item, RejectReason::BatchFailed { batch, attempts });
            }
        }
        self.start_ready();
    }

    fn backoff_ms(&mut self, attempt: u32) -> u64 {
        let retry = self.config.retry;
        self.jitter
            .backoff_ms(attempt, retry.backoff_ms, retry.max_backoff_ms)
    }

    fn abort_all(&mut self) {
        for index in 0..self.slots.len() {
            let slot = self.slots[index];
            if matches!(slot.state, ItemState::Free { .. }) {
                continue;
            }
            let item = ItemId::new(index as u32, slot.generation);
            self.settle(item);
            self.status.rejected += 1;
            self.push_reject(item, RejectReason::Aborted);
        }
        self.ready.clear();
        self.backoff.clear();
        self.windows.clear();
        self.timeouts.clear();
        // Running batches stay known so their late outcomes are recognised and dropped.
        self.batches.retain(|_, record| record.running);
    }

    fn push_reject(&mut self, item: ItemId, reason: RejectReason) {
        self.actions.push_back(Action::Reject { item, reason });
    }

    // ---- time ----------------------------------------------------------------------------

    /// Time never goes back: a host clock that steps backwards is treated as standing still.
    fn clamp_time(&mut self, now_ms: u64) -> u64 {
        self.last_now_ms = self.last_now_ms.max(now_ms);
        self.last_now_ms
    }

    /// Fire everything due, then drop stale timer entries so `next_deadline` is exact.
    ///
    /// `hold_windows`: more adds of this instant follow (see [`Batcher::add_many`]).
    fn finish_call(&mut self, now_ms: u64, hold_windows: bool) {
        let now_ms = self.clamp_time(now_ms);
        while let Some(&Reverse((at, batch))) = self.backoff.peek() {
            if at > now_ms {
                break;
            }
            self.backoff.pop();
            if self.batches.contains_key(&batch) {
                self.ready.push_front(batch); // a retry goes before batches cut after it
            }
        }
        // Expire items before cutting, so a due timeout is never handed to a handler.
        while let Some(&(at, item)) = self.timeouts.front() {
            if self.live_slot(item).is_none() {
                self.timeouts.pop_front();
                continue;
            }
            if at > now_ms {
                break;
            }
            self.timeouts.pop_front();
            self.settle(item);
            self.status.timed_out += 1;
            self.push_reject(item, RejectReason::TimedOut);
        }
        if self.timeouts.len() > 2 * self.live_items + 64 {
            let slots = &self.slots;
            self.timeouts.retain(|(_, id)| {
                let s = &slots[id.index()];
                s.generation == id.generation() && !matches!(s.state, ItemState::Free { .. })
            });
        }
        while let Some(&(at, group, window)) = self.windows.front() {
            let open = self.groups.get(&group).is_some_and(|g| g.window == window);
            if open && (at > now_ms || hold_windows) {
                break;
            }
            self.windows.pop_front();
            if open {
                self.cut_group(now_ms, group, usize::MAX);
            }
        }
        if self.windows.len() > 2 * self.groups.len() + 64 {
            let groups = &self.groups;
            self.windows
                .retain(|(_, g, w)| groups.get(g).is_some_and(|g| g.window == *w));
        }
        self.start_ready();
        // A group emptied and refilled within one call keeps its key: release only the gone.
        let mut released = std::mem::take(&mut self.released);
        released.sort_unstable();
        released.dedup();
        for group in released {
            if !self.groups.contains_key(&group) {
                self.actions.push_back(Action::GroupReleased { group });
            }
        }
        if self.closed && self.live_items == 0 && !self.drained_sent {
            self.drained_sent = true;
            self.actions.push_back(Action::Drained);
            self.release_memory();
        }
    }

    /// Once drained, nothing is live and nothing can be added: give the item table and the
    /// queues' memory back (a wasm host's memory counts against its GC's external budget).
    fn release_memory(&mut self) {
        self.slots = Vec::new();
        self.free_head = NO_FREE_SLOT;
        self.groups = FxHashMap::default();
        self.spare_queues = Vec::new();
        self.windows = VecDeque::new();
        self.timeouts = VecDeque::new();
        self.ready = VecDeque::new();
        self.backoff = BinaryHeap::new();
        self.batches.retain(|_, record| record.running); // waiting ones hold only settled items
        self.batches.shrink_to_fit();
        self.released = Vec::new();
    }
}
