//! Deterministic tests of the generic batcher, with virtual time.

use batchling_core::batcher::{
    Action, AddError, BatchId, Batcher, BatcherConfig, Event, ItemId, RejectReason, RetryPolicy,
};

fn config(max_batch_size: usize, max_delay_ms: u64) -> BatcherConfig {
    BatcherConfig {
        max_batch_size,
        max_delay_ms,
        ..BatcherConfig::default()
    }
}

fn actions(b: &mut Batcher) -> Vec<Action> {
    b.drain_actions().collect()
}

fn runs(actions: &[Action]) -> Vec<(BatchId, u32, Vec<ItemId>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::RunBatch {
                batch,
                group,
                items,
                ..
            } => Some((*batch, *group, items.clone())),
            _ => None,
        })
        .collect()
}

fn add_n(b: &mut Batcher, now: u64, group: u32, n: usize) -> Vec<ItemId> {
    (0..n).map(|_| b.add(now, group).unwrap()).collect()
}

#[test]
fn size_trigger_cuts_exactly_at_max_batch_size() {
    let mut b = Batcher::new(config(3, 1_000)).unwrap();
    let ids = add_n(&mut b, 0, 0, 2);
    assert!(runs(&actions(&mut b)).is_empty());
    let third = b.add(0, 0).unwrap();
    let run = runs(&actions(&mut b));
    assert_eq!(run.len(), 1);
    assert_eq!(run[0].2, vec![ids[0], ids[1], third], "add order is kept");
}

#[test]
fn delay_trigger_opens_window_at_first_item() {
    let mut b = Batcher::new(config(100, 50)).unwrap();
    b.add(10, 0).unwrap();
    assert_eq!(b.next_deadline(), Some(60));
    b.add(40, 0).unwrap();
    assert_eq!(
        b.next_deadline(),
        Some(60),
        "later items do not move the window"
    );
    b.handle(59, Event::Tick);
    assert!(runs(&actions(&mut b)).is_empty());
    b.handle(60, Event::Tick);
    let run = runs(&actions(&mut b));
    assert_eq!(run.len(), 1);
    assert_eq!(run[0].2.len(), 2);
    assert_eq!(b.next_deadline(), None);
}

#[test]
fn a_size_cut_closes_the_window() {
    let mut b = Batcher::new(config(2, 50)).unwrap();
    add_n(&mut b, 0, 0, 2);
    assert_eq!(runs(&actions(&mut b)).len(), 1);
    assert_eq!(b.next_deadline(), None);
    b.add(30, 0).unwrap();
    assert_eq!(
        b.next_deadline(),
        Some(80),
        "a new window opens at the next item"
    );
}

#[test]
fn groups_never_mix() {
    let mut b = Batcher::new(config(2, 10)).unwrap();
    let a1 = b.add(0, 1).unwrap();
    let b1 = b.add(0, 2).unwrap();
    let a2 = b.add(0, 1).unwrap();
    let run = runs(&actions(&mut b));
    assert_eq!(run, vec![(run[0].0, 1, vec![a1, a2])]);
    b.handle(10, Event::Tick);
    let run = runs(&actions(&mut b));
    assert_eq!(run[0].1, 2);
    assert_eq!(run[0].2, vec![b1]);
}

#[test]
fn queue_full_is_refused_at_once_and_frees_up() {
    let mut b = Batcher::new(BatcherConfig {
        max_queue_size: 2,
        ..config(10, 10)
    })
    .unwrap();
    add_n(&mut b, 0, 0, 2);
    assert_eq!(b.add(0, 0), Err(AddError::QueueFull));
    assert_eq!(b.status().rejected, 1);
    b.handle(10, Event::Tick); // cut: the items now run and no longer wait
    assert!(b.add(10, 0).is_ok());
}

#[test]
fn queue_statistics_follow_adds_cuts_and_settlements() {
    let mut b = Batcher::new(BatcherConfig {
        max_queue_size: 3,
        max_concurrent_batches: 1,
        retry: RetryPolicy {
            attempts: 1,
            backoff_ms: 5,
            max_backoff_ms: 5,
        },
        ..config(2, 10)
    })
    .unwrap();
    let queue = |b: &Batcher| {
        let s = b.status();
        (
            s.queue_size,
            s.max_queue_size,
            s.is_queue_full,
            s.is_queue_empty,
        )
    };
    assert_eq!(queue(&b), (0, Some(3), false, true));
    let first = add_n(&mut b, 0, 0, 2); // cut at once and running: not queued
    let run = runs(&actions(&mut b));
    assert_eq!(queue(&b), (0, Some(3), false, true));
    add_n(&mut b, 0, 0, 2); // cut, waiting for the one slot: still queued
    assert_eq!(queue(&b), (2, Some(3), false, false));
    let last = b.add(0, 1).unwrap(); // queued in its group
    assert_eq!(queue(&b), (3, Some(3), true, false));
    assert_eq!(b.add(0, 1), Err(AddError::QueueFull), "full means refused");
    b.handle(0, Event::Cancel { item: last });
    assert_eq!(queue(&b), (2, Some(3), false, false));
    // The running batch fails and waits for its retry; the waiting batch takes the slot.
    // Items waiting for a retry already ran: they are not queued and take no queue room.
    b.handle(
        1,
        Event::BatchFailed {
            batch: run[0].0,
            retryable: true,
        },
    );
    let started = runs(&actions(&mut b));
    assert_eq!(started.len(), 1);
    assert_ne!(started[0].2, first);
    assert_eq!(b.status().processing, 4);
    assert_eq!(queue(&b), (0, Some(3), false, true));
    add_n(&mut b, 1, 2, 3);
    assert_eq!(queue(&b), (3, Some(3), true, false));
    b.handle(1, Event::Close { abort: true });
    assert_eq!(queue(&b), (0, Some(3), false, true));
}

#[test]
fn queue_is_never_full_without_a_bound() {
    let mut b = Batcher::new(config(1_000, 1_000)).unwrap();
    add_n(&mut b, 0, 0, 500);
    let s = b.status();
    assert_eq!(s.queue_size, 500);
    assert_eq!(s.max_queue_size, None);
    assert!(!s.is_queue_full);
    assert!(!s.is_queue_empty);
}

#[test]
fn max_concurrent_batches_holds_batches_in_order() {
    let mut b = Batcher::new(BatcherConfig {
        max_concurrent_batches: 1,
        ..config(1, 10)
    })
    .unwrap();
    add_n(&mut b, 0, 0, 3);
    let run = runs(&actions(&mut b));
    assert_eq!(run.len(), 1);
    assert_eq!(b.status().pending, 2);
    b.handle(
        1,
        Event::BatchCompleted {
            batch: run[0].0,
            failed: &[],
        },
    );
    let next = runs(&actions(&mut b));
    assert_eq!(next.len(), 1);
    assert_eq!(
        next[0].0 .0,
        run[0].0 .0 + 1,
        "waiting batches start in cut order"
    );
}

#[test]
fn per_item_outcomes() {
    let mut b = Batcher::new(config(3, 10)).unwrap();
    let ids = add_n(&mut b, 0, 0, 3);
    let batch = runs(&actions(&mut b))[0].0;
    b.handle(
        1,
        Event::BatchCompleted {
            batch,
            failed: &[1],
        },
    );
    let acts = actions(&mut b);
    assert!(acts.contains(&Action::Resolve { item: ids[0] }));
    assert!(acts.contains(&Action::Reject {
        item: ids[1],
        reason: RejectReason::ItemFailed
    }));
    assert!(acts.contains(&Action::Resolve { item: ids[2] }));
    let s = b.status();
    assert_eq!((s.processed, s.failed, s.processing), (3, 1, 0));
}

#[test]
fn whole_batch_failure_without_retry_rejects_every_item() {
    let mut b = Batcher::new(config(2, 10)).unwrap();
    let ids = add_n(&mut b, 0, 0, 2);
    let batch = runs(&actions(&mut b))[0].0;
    b.handle(
        1,
        Event::BatchFailed {
            batch,
            retryable: true,
        },
    );
    let acts = actions(&mut b);
    for id in ids {
        assert!(acts.contains(&Action::Reject {
            item: id,
            reason: RejectReason::BatchFailed { batch, attempts: 1 }
        }));
    }
}

#[test]
fn retries_back_off_exponentially_with_bounded_jitter() {
    let mut b = Batcher::new(BatcherConfig {
        retry: RetryPolicy {
            attempts: 3,
            backoff_ms: 100,
            max_backoff_ms: 250,
        },
        ..config(1, 0)
    })
    .unwrap();
    b.add(0, 0).unwrap();
    let batch = runs(&actions(&mut b))[0].0;
    let mut now = 0;
    for (attempt, step) in [(1u32, 100u64), (2, 200), (3, 250)] {
        b.handle(
            now,
            Event::BatchFailed {
                batch,
                retryable: true,
            },
        );
        let at = b.next_deadline().expect("a retry is scheduled");
        let wait = at - now;
        assert!(
            wait >= step / 2 && wait <= step,
            "attempt {attempt}: waited {wait}, step {step}"
        );
        b.handle(at - 1, Event::Tick);
        assert!(runs(&actions(&mut b)).is_empty(), "no retry before backoff");
        b.handle(at, Event::Tick);
        let run = actions(&mut b);
        assert!(matches!(run[0], Action::RunBatch { attempt: a, .. } if a == attempt + 1));
        now = at;
    }
    b.handle(
        now,
        Event::BatchFailed {
            batch,
            retryable: true,
        },
    );
    let acts = actions(&mut b);
    assert!(matches!(
        acts[0],
        Action::Reject {
            reason: RejectReason::BatchFailed { attempts: 4, .. },
            ..
        }
    ));
    assert_eq!(b.status().retried, 3);
}

#[test]
fn jitter_is_reproducible_for_a_seed() {
    let deadlines = |seed| {
        let mut b = Batcher::new(BatcherConfig {
            retry: RetryPolicy {
                attempts: 1,
                backoff_ms: 1_000,
                max_backoff_ms: 1_000,
            },
            jitter_seed: seed,
            ..config(1, 0)
        })
        .unwrap();
        b.add(0, 0).unwrap();
        let batch = runs(&actions(&mut b))[0].0;
        b.handle(
            0,
            Event::BatchFailed {
                batch,
                retryable: true,
            },
        );
        b.next_deadline()
    };
    assert_eq!(deadlines(7), deadlines(7));
}

#[test]
fn non_retryable_failure_is_not_retried() {
    let mut b = Batcher::new(BatcherConfig {
        retry: RetryPolicy {
            attempts: 5,
            ..RetryPolicy::default()
        },
        ..config(1, 0)
    })
    .unwrap();
    b.add(0, 0).unwrap();
    let batch = runs(&actions(&mut b))[0].0;
    b.handle(
        0,
        Event::BatchFailed {
            batch,
            retryable: false,
        },
    );
    assert!(matches!(actions(&mut b)[0], Action::Reject { .. }));
}

#[test]
fn timeout_rejects_and_drops_the_late_result() {
    let mut b = Batcher::new(BatcherConfig {
        timeout_ms: Some(100),
        ..config(2, 10)
    })
    .unwrap();
    let ids = add_n(&mut b, 0, 0, 2);
    let batch = runs(&actions(&mut b))[0].0;
    assert_eq!(b.next_deadline(), Some(100));
    b.handle(100, Event::Tick);
    let acts = actions(&mut b);
    assert_eq!(acts.len(), 2);
    assert!(acts.iter().all(|a| matches!(
        a,
        Action::Reject {
            reason: RejectReason::TimedOut,
            ..
        }
    )));
    b.handle(150, Event::BatchCompleted { batch, failed: &[] });
    assert!(actions(&mut b).is_empty(), "late results are dropped");
    assert_eq!(b.status().timed_out, 2);
    assert_eq!(b.live_items(), 0);
    let _ = ids;
}

#[test]
fn cancel_queued_item_removes_it_from_its_batch() {
    let mut b = Batcher::new(config(10, 10)).unwrap();
    let ids = add_n(&mut b, 0, 0, 3);
    b.handle(1, Event::Cancel { item: ids[1] });
    assert_eq!(
        actions(&mut b),
        vec![Action::Reject {
            item: ids[1],
            reason: RejectReason::Cancelled
        }]
    );
    b.handle(10, Event::Tick);
    assert_eq!(runs(&actions(&mut b))[0].2, vec![ids[0], ids[2]]);
}

#[test]
fn cancel_in_flight_rejects_at_once_and_drops_the_result() {
    let mut b = Batcher::new(config(2, 10)).unwrap();
    let ids = add_n(&mut b, 0, 0, 2);
    let batch = runs(&actions(&mut b))[0].0;
    b.handle(1, Event::Cancel { item: ids[0] });
    assert_eq!(actions(&mut b).len(), 1);
    b.handle(2, Event::BatchCompleted { batch, failed: &[] });
    assert_eq!(actions(&mut b), vec![Action::Resolve { item: ids[1] }]);
    b.handle(3, Event::Cancel { item: ids[0] });
    assert!(actions(&mut b).is_empty(), "a second cancel is a no-op");
}

#[test]
fn stale_ids_never_touch_a_reused_slot() {
    let mut b = Batcher::new(config(1, 0)).unwrap();
    let old = b.add(0, 0).unwrap();
    let batch = runs(&actions(&mut b))[0].0;
    b.handle(0, Event::BatchCompleted { batch, failed: &[] });
    actions(&mut b);
    let new = b.add(1, 0).unwrap();
    assert_ne!(old, new);
    b.handle(1, Event::Cancel { item: old });
    assert!(
        !actions(&mut b)
            .iter()
            .any(|a| matches!(a, Action::Reject { .. })),
        "cancelling a settled id must not cancel the slot's new item"
    );
}

#[test]
fn flush_cuts_every_group_now() {
    let mut b = Batcher::new(config(2, 1_000)).unwrap();
    add_n(&mut b, 0, 1, 3);
    add_n(&mut b, 0, 2, 1);
    actions(&mut b);
    b.handle(1, Event::Flush);
    let run = runs(&actions(&mut b));
    assert_eq!(run.len(), 2);
    assert_eq!(b.status().pending, 0);
    b.handle(2, Event::Flush);
    assert!(
        runs(&actions(&mut b)).is_empty(),
        "a second flush finds nothing"
    );
}

#[test]
fn close_drain_flushes_refuses_adds_and_reports_drained() {
    let mut b = Batcher::new(config(10, 1_000)).unwrap();
    let id = b.add(0, 0).unwrap();
    b.handle(1, Event::Close { abort: false });
    let run = runs(&actions(&mut b));
    assert_eq!(run[0].2, vec![id]);
    assert_eq!(b.add(2, 0), Err(AddError::Closed));
    b.handle(
        3,
        Event::BatchCompleted {
            batch: run[0].0,
            failed: &[],
        },
    );
    assert_eq!(
        actions(&mut b),
        vec![Action::Resolve { item: id }, Action::Drained]
    );
}

#[test]
fn close_abort_rejects_everything_unsettled() {
    let mut b = Batcher::new(config(2, 1_000)).unwrap();
    let running = add_n(&mut b, 0, 0, 2);
    let queued = b.add(0, 0).unwrap();
    let batch = runs(&actions(&mut b))[0].0;
    b.handle(1, Event::Close { abort: true });
    let acts = actions(&mut b);
    for id in running.iter().chain([&queued]) {
        assert!(acts.contains(&Action::Reject {
            item: *id,
            reason: RejectReason::Aborted
        }));
    }
    assert_eq!(acts.last(), Some(&Action::Drained));
    b.handle(2, Event::BatchCompleted { batch, failed: &[] });
    assert!(actions(&mut b).is_empty());
}

#[test]
fn group_released_once_empty() {
    let mut b = Batcher::new(config(1, 0)).unwrap();
    b.add(0, 9).unwrap();
    let acts = actions(&mut b);
    assert!(acts.contains(&Action::GroupReleased { group: 9 }));
}

#[test]
fn status_counts_batches_and_average() {
    let mut b = Batcher::new(config(4, 10)).unwrap();
    add_n(&mut b, 5, 0, 6);
    b.handle(20, Event::Tick);
    let s = b.status();
    assert_eq!(s.batches, 2);
    assert_eq!(s.average_batch_size, 3.0);
    assert_eq!(s.last_batch_time_ms, Some(20));
    assert_eq!(s.processing, 6);
}

#[test]
fn invalid_config_names_the_field() {
    let err = Batcher::new(config(0, 10)).err().unwrap();
    assert_eq!(err.option, "maxBatchSize");
    assert!(err.to_string().contains("at least 1"));
    let err = Batcher::new(BatcherConfig {
        timeout_ms: Some(0),
        ..config(1, 1)
    })
    .err()
    .unwrap();
    assert_eq!(err.option, "timeoutMs");
}

#[test]
fn time_going_backwards_is_treated_as_standing_still() {
    let mut b = Batcher::new(config(10, 50)).unwrap();
    b.add(100, 0).unwrap();
    b.handle(10, Event::Tick);
    assert_eq!(b.next_deadline(), Some(150));
}

#[test]
fn add_cancel_churn_keeps_memory_bounded() {
    let mut b = Batcher::new(config(1_000_000, 1_000_000)).unwrap();
    b.add(0, 0).unwrap();
    for _ in 0..100_000 {
        let id = b.add(0, 0).unwrap();
        b.handle(0, Event::Cancel { item: id });
    }
    actions(&mut b);
    assert_eq!(b.live_items(), 1);
    assert_eq!(b.status().pending, 1);
}

#[test]
fn zero_delay_batches_one_instants_adds_across_calls() {
    let mut b = Batcher::new(config(10_000, 0)).unwrap();
    let mut out = Vec::new();
    b.add_many(5, &[0; 4096], true, &mut out);
    assert!(
        runs(&actions(&mut b)).is_empty(),
        "more adds follow: the due window waits"
    );
    b.add_many(5, &[0; 904], false, &mut out);
    let run = runs(&actions(&mut b));
    assert_eq!(run.len(), 1);
    assert_eq!(run[0].2.len(), 5000);
}

#[test]
fn host_options_out_of_range_are_refused_not_wrapped() {
    use batchling_core::batcher::HostBatcherOptions;
    let base = HostBatcherOptions {
        max_batch_size: 10.0,
        max_delay_ms: 5.0,
        ..HostBatcherOptions::default()
    };
    let big = HostBatcherOptions {
        max_batch_size: 4_294_967_298.0,
        ..base.clone()
    };
    assert_eq!(big.into_config().unwrap().max_batch_size, 4_294_967_298);
    let attempts = HostBatcherOptions {
        retry_attempts: Some(4_294_967_296.0),
        ..base.clone()
    };
    assert_eq!(attempts.into_config().unwrap_err().option, "retry.attempts");
    let fraction = HostBatcherOptions {
        max_delay_ms: 1.5,
        ..base
    };
    assert_eq!(fraction.into_config().unwrap_err().option, "maxDelayMs");
}
