//! Property test: random sequences of adds, cancels, ticks, outcomes, flushes and closes keep
//! the engine's invariants (design.md): exactly-once settlement, groups never mix, batch size
//! bound, no item waits past its window while capacity is free, queue bound and queue
//! statistics, bounded memory.

use std::collections::{HashMap, HashSet};

use batchling_core::batcher::{
    Action, AddError, BatchId, Batcher, BatcherConfig, Event, ItemId, RetryPolicy,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Add { group: u32, count: usize },
    Cancel { pick: usize },
    Advance { ms: u64 },
    Complete { pick: usize, fail_mask: u64 },
    Fail { pick: usize, retryable: bool },
    Flush,
    Close { abort: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u32..4, 1usize..8).prop_map(|(group, count)| Op::Add { group, count }),
        2 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        4 => (0u64..40).prop_map(|ms| Op::Advance { ms }),
        4 => (any::<usize>(), any::<u64>()).prop_map(|(pick, fail_mask)| Op::Complete { pick, fail_mask }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, retryable)| Op::Fail { pick, retryable }),
        1 => Just(Op::Flush),
        1 => any::<bool>().prop_map(|abort| Op::Close { abort }),
    ]
}

fn config() -> impl Strategy<Value = BatcherConfig> {
    (
        1usize..6,
        0u64..30,
        prop_oneof![Just(usize::MAX), 1usize..20],
        prop_oneof![Just(usize::MAX), 1usize..3],
        0u32..3,
        prop_oneof![Just(None), (1u64..80).prop_map(Some)],
        any::<u64>(),
    )
        .prop_map(
            |(
                max_batch_size,
                max_delay_ms,
                max_queue_size,
                max_concurrent_batches,
                attempts,
                timeout_ms,
                jitter_seed,
            )| {
                BatcherConfig {
                    max_batch_size,
                    max_delay_ms,
                    max_queue_size,
                    max_concurrent_batches,
                    retry: RetryPolicy {
                        attempts,
                        backoff_ms: 5,
                        max_backoff_ms: 20,
                    },
                    timeout_ms,
                    jitter_seed,
                }
            },
        )
}

#[derive(Default)]
struct Model {
    now: u64,
    group_of: HashMap<ItemId, u32>,
    added_at: HashMap<ItemId, u64>,
    accepted: Vec<ItemId>,
    settled: HashSet<ItemId>,
    ever_run: HashSet<ItemId>,
    running: HashMap<BatchId, Vec<ItemId>>,
    drained: bool,
}

impl Model {
    fn absorb(&mut self, b: &mut Batcher, cfg: &BatcherConfig) {
        for action in b.drain_actions() {
            match action {
                Action::RunBatch {
                    batch,
                    group,
                    items,
                    ..
                } => {
                    assert!(!items.is_empty(), "empty batch");
                    assert!(items.len() <= cfg.max_batch_size, "batch over max size");
                    for item in &items {
                        assert_eq!(self.group_of[item], group, "groups mixed in a batch");
                        assert!(!self.settled.contains(item), "settled item run again");
                        self.ever_run.insert(*item);
                    }
                    let order: Vec<_> = items
                        .iter()
                        .map(|i| self.accepted.iter().position(|a| a == i))
                        .collect();
                    assert!(order.windows(2).all(|w| w[0] < w[1]), "add order not kept");
                    assert!(
                        self.running.insert(batch, items).is_none(),
                        "batch run twice at once"
                    );
                }
                Action::Resolve { item } | Action::Reject { item, .. } => {
                    assert!(self.group_of.contains_key(&item), "settled an unknown item");
                    assert!(self.settled.insert(item), "item settled twice");
                }
                Action::GroupReleased { .. } => {}
                Action::Drained => {
                    assert!(!self.drained, "drained twice");
                    self.drained = true;
                }
            }
        }
        let s = b.status();
        assert!(
            s.pending as usize <= cfg.max_queue_size,
            "queue bound exceeded"
        );
        assert!(
            self.running.len() <= cfg.max_concurrent_batches,
            "concurrency bound exceeded"
        );
        let live = self.accepted.len() - self.settled.len();
        assert_eq!(b.live_items(), live);
        // Queue statistics: the queue is every live item that has not run yet.
        let queued = self
            .accepted
            .iter()
            .filter(|i| !self.settled.contains(i) && !self.ever_run.contains(i))
            .count();
        assert_eq!(s.queue_size as usize, queued, "queue size");
        let bound = (cfg.max_queue_size != usize::MAX).then_some(cfg.max_queue_size as u64);
        assert_eq!(s.max_queue_size, bound);
        assert_eq!(
            s.is_queue_full,
            bound.is_some_and(|max| queued as u64 >= max)
        );
        assert_eq!(s.is_queue_empty, queued == 0);
        assert!(
            b.bookkeeping_entries() <= 3 * live + 8 * 16 + 200,
            "bookkeeping grows past live items"
        );
        if self.running.len() < cfg.max_concurrent_batches {
            for item in &self.accepted {
                if !self.settled.contains(item) && !self.ever_run.contains(item) {
                    let deadline = self.added_at[item] + cfg.max_delay_ms;
                    assert!(
                        deadline > self.now,
                        "an item waited past its window while capacity was free"
                    );
                }
            }
        }
    }
}

fn pick<T: Copy>(v: &[T], i: usize) -> Option<T> {
    (!v.is_empty()).then(|| v[i % v.len()])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn invariants_hold(cfg in config(), ops in proptest::collection::vec(op(), 1..120)) {
        let mut b = Batcher::new(cfg.clone()).unwrap();
        let mut m = Model::default();
        for op in ops {
            match op.clone() {
                Op::Add { group, count } => {
                    let groups = vec![group; count];
                    let before = b.status();
                    let mut out = Vec::new();
                    b.add_many(m.now, &groups, false, &mut out);
                    if !b.is_closed() {
                        // A full queue refuses the next add; any other takes it.
                        prop_assert_eq!(
                            out[0] == Err(AddError::QueueFull),
                            before.is_queue_full
                        );
                    }
                    for id in out.into_iter().flatten() {
                        m.group_of.insert(id, group);
                        m.added_at.insert(id, m.now);
                        m.accepted.push(id);
                    }
                }
                Op::Cancel { pick: i } => {
                    match pick(&m.accepted, i) {
                        Some(item) => b.handle(m.now, Event::Cancel { item }),
                        None => b.handle(m.now, Event::Tick),
                    }
                }
                Op::Advance { ms } => {
                    m.now += ms;
                    b.handle(m.now, Event::Tick);
                }
                Op::Complete { pick: i, fail_mask } => {
                    let ids: Vec<BatchId> = m.running.keys().copied().collect();
                    if let Some(batch) = pick(&ids, i) {
                        let items = m.running.remove(&batch).unwrap();
                        let failed: Vec<u32> = (0..items.len() as u32).filter(|p| fail_mask >> (p % 64) & 1 == 1).collect();
                        b.handle(m.now, Event::BatchCompleted { batch, failed: &failed });
                    } else {
                        b.handle(m.now, Event::Tick);
                    }
                }
                Op::Fail { pick: i, retryable } => {
                    let ids: Vec<BatchId> = m.running.keys().copied().collect();
                    if let Some(batch) = pick(&ids, i) {
                        m.running.remove(&batch);
                        b.handle(m.now, Event::BatchFailed { batch, retryable });
                    } else {
                        b.handle(m.now, Event::Tick);
                    }
                }
                Op::Flush => b.handle(m.now, Event::Flush),
                Op::Close { abort } => b.handle(m.now, Event::Close { abort }),
            }
            m.absorb(&mut b, &cfg);
        }
        // Finish: close, then keep completing batches and advancing time until drained.
        b.handle(m.now, Event::Close { abort: false });
        m.absorb(&mut b, &cfg);
        for _ in 0..10_000 {
            if m.drained { break; }
            if let Some(&batch) = m.running.keys().next() {
                m.running.remove(&batch);
                b.handle(m.now, Event::BatchCompleted { batch, failed: &[] });
            } else {
                m.now = b.next_deadline().expect("undrained with nothing to wait for").max(m.now);
                b.handle(m.now, Event::Tick);
            }
            m.absorb(&mut b, &cfg);
        }
        prop_assert!(m.drained, "never drained");
        prop_assert_eq!(m.settled.len(), m.accepted.len(), "not every accepted item was settled");
    }
}
