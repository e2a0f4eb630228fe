//! The bindings' wire format: encoding and decoding the batcher's events and actions.

use batchling_core::batcher::{Batcher, BatcherConfig, Event};
use batchling_core::host::wire::*;

fn config(max_batch_size: usize) -> BatcherConfig {
    BatcherConfig {
        max_batch_size,
        max_delay_ms: 0,
        ..BatcherConfig::default()
    }
}

#[test]
fn host_ids_come_as_runs_and_resolves_as_one_action_per_run() {
    let mut b = Batcher::new(config(4)).unwrap();
    let mut ids = HostIds::default();
    let mut adds = Vec::new();
    let mut out = Vec::new();
    // Groups 1 and 2 interleave: each batch is two runs of one id... until the tail.
    b.add_many(0, &[1, 2, 1, 2, 1, 1], false, &mut adds);
    ids.record(&adds, 100.0);
    ids.encode(&mut b, &adds, &mut out);
    assert_eq!(&out[1..3], &[6.0, 0.0], "six adds, none refused");
    let actions = &out[3 + 6..];
    // Group 1 fills first (100, 102, 104, 105); group 2 is cut at the end of the call.
    assert_eq!(
        &actions[..12],
        &[RUN_BATCH, 1.0, 1.0, 1.0, 4.0, 3.0, 100.0, 1.0, 102.0, 1.0, 104.0, 2.0]
    );
    assert_eq!(
        &actions[12..22],
        &[RUN_BATCH, 2.0, 2.0, 1.0, 2.0, 2.0, 101.0, 1.0, 103.0, 1.0]
    );
    adds.clear();
    b.handle(
        1,
        Event::BatchCompleted {
            batch: batchling_core::batcher::BatchId(1),
            failed: &[1],
        },
    );
    ids.encode(&mut b, &adds, &mut out);
    assert_eq!(&out[1..3], &[0.0, 0.0]);
    assert_eq!(
        &out[3..],
        &[
            RESOLVE,
            100.0,
            1.0,
            REJECT,
            102.0,
            REASON_ITEM_FAILED,
            0.0,
            0.0,
            RESOLVE,
            104.0,
            2.0
        ]
    );
}

#[test]
fn refused_adds_are_counted_in_the_header() {
    let mut b = Batcher::new(BatcherConfig {
        max_queue_size: 1,
        ..config(10)
    })
    .unwrap();
    let mut ids = HostIds::default();
    let mut adds = Vec::new();
    let mut out = Vec::new();
    b.add_many(0, &[0, 0], false, &mut adds);
    ids.record(&adds, 0.0);
    ids.encode(&mut b, &adds, &mut out);
    assert_eq!(&out[1..3], &[2.0, 1.0]);
    assert!(out[3] >= 0.0);
    assert_eq!(out[4], QUEUE_FULL);
    assert_eq!(
        &out[5..],
        &[
            RUN_BATCH,
            1.0,
            0.0,
            1.0,
            1.0,
            1.0,
            0.0,
            1.0,
            GROUP_RELEASED,
            0.0
        ]
    );
}

#[test]
fn complete_many_is_one_completed_event_per_batch_in_order() {
    // Two engines in the same state: one told batch by batch, one in one call.
    let mut one_by_one = Batcher::new(config(2)).unwrap();
    let mut together = Batcher::new(config(2)).unwrap();
    let (mut ids_a, mut ids_b) = (HostIds::default(), HostIds::default());
    let mut adds = Vec::new();
    let mut out = Vec::new();
    for (b, ids) in [(&mut one_by_one, &mut ids_a), (&mut together, &mut ids_b)] {
        adds.clear();
        b.add_many(0, &[0, 0, 0, 0, 0, 0], false, &mut adds);
        ids.record(&adds, 10.0);
        ids.encode(b, &adds, &mut out);
    }
    let failed: &[&[u32]] = &[&[1], &[], &[0, 1]];
    let mut resolved_a = Vec::new();
    for (i, f) in failed.iter().enumerate() {
        let batch = batchling_core::batcher::BatchId(i as u64 + 1);
        one_by_one.handle(1, Event::BatchCompleted { batch, failed: f });
        ids_a.encode(&mut one_by_one, &[], &mut out);
        resolved_a.extend_from_slice(&out[3..]);
    }
    let completions = completions(&[1.0, 2.0, 3.0], &[1, 0, 2], &[1, 0, 1]).unwrap();
    ids_b.complete_many(&mut together, 1, completions, &mut out);
    assert_eq!(one_by_one.status(), together.status());
    assert_eq!(together.status().failed, 3);
    assert_eq!(&out[..3], &[-1.0, 0.0, 0.0]);
    // Batch 1 (ids 10, 11): 11 failed. Batch 2 (12, 13): both resolve. Batch 3 (14, 15):
    // both failed on their own.
    assert_eq!(
        &out[3..],
        &[
            RESOLVE,
            10.0,
            1.0, //
            REJECT,
            11.0,
            REASON_ITEM_FAILED,
            0.0,
            0.0, //
            RESOLVE,
            12.0,
            2.0, // batch 2's two items, one run
            REJECT,
            14.0,
            REASON_ITEM_FAILED,
            0.0,
            0.0, //
            REJECT,
            15.0,
            REASON_ITEM_FAILED,
            0.0,
            0.0,
        ]
    );
    // Told one by one, the same actions (a resolve run is not carried across calls).
    assert_eq!(resolved_a, out[3..].to_vec());
}

#[test]
fn complete_many_coalesces_resolves_across_batches() {
    let mut b = Batcher::new(config(2)).unwrap();
    let mut ids = HostIds::default();
    let mut adds = Vec::new();
    let mut out = Vec::new();
    b.add_many(0, &[0, 0, 0, 0], false, &mut adds);
    ids.record(&adds, 0.0);
    ids.encode(&mut b, &adds, &mut out);
    let completions = completions(&[1.0, 2.0], &[0, 0], &[]).unwrap();
    ids.complete_many(&mut b, 1, completions, &mut out);
    assert_eq!(&out[3..], &[RESOLVE, 0.0, 4.0]);
}

#[test]
fn completions_refuse_counts_that_do_not_match() {
    let err = completions(&[1.0, 2.0], &[1], &[0]).err().unwrap();
    assert!(err.contains("2 batches but 1 failed counts"), "{err}");
    let err = completions(&[1.0], &[2], &[0]).err().unwrap();
    assert!(err.contains("add up to 2 but 1"), "{err}");
}
