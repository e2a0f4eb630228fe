//! `cargo bench -p batchling-core`: items per second through add -> cut -> outcome -> resolve,
//! with a host that does nothing but feed outcomes back.

use batchling_core::batcher::{Action, Batcher, BatcherConfig, Event};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const ITEMS: usize = 100_000;

/// One round: adds in chunks of `per_call` (a host hands one tick's adds at once), every cut
/// batch completed as soon as it is run, every resolve consumed.
fn round(batcher: &mut Batcher, groups: &[u32], per_call: usize) -> usize {
    let mut adds = Vec::with_capacity(per_call);
    let mut runs = Vec::new();
    let mut resolved = 0;
    let mut now = 0;
    let mut settle = |batcher: &mut Batcher, now: u64, runs: &mut Vec<_>| {
        for action in batcher.drain_actions() {
            if let Action::RunBatch { batch, .. } = action {
                runs.push(batch);
            }
        }
        for batch in runs.drain(..) {
            batcher.handle(now, Event::BatchCompleted { batch, failed: &[] });
            resolved += batcher
                .drain_actions()
                .filter(|a| matches!(a, Action::Resolve { .. }))
                .count();
        }
    };
    for chunk in groups.chunks(per_call) {
        now += 1;
        adds.clear();
        batcher.add_many(now, chunk, false, &mut adds);
        settle(batcher, now, &mut runs);
    }
    // Partial batches of the last tick (several keys): cut them like a host's window would.
    batcher.handle(now, Event::Flush);
    settle(batcher, now, &mut runs);
    resolved
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("add_cut_outcome");
    group.throughput(Throughput::Elements(ITEMS as u64));
    let config = BatcherConfig {
        max_batch_size: 100,
        max_delay_ms: 10,
        ..BatcherConfig::default()
    };
    for (name, keys, per_call) in [
        ("one_key_1000_per_call", 1u32, 1_000usize),
        ("16_keys_1000_per_call", 16, 1_000),
        ("one_key_1_per_call", 1, 1),
    ] {
        let groups: Vec<u32> = (0..ITEMS as u32).map(|i| i % keys).collect();
        group.bench_function(name, |b| {
            b.iter_batched(
                || Batcher::new(config.clone()).unwrap(),
                |mut batcher| {
                    let resolved = round(&mut batcher, &groups, per_call);
                    assert_eq!(resolved, ITEMS);
                    batcher
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
