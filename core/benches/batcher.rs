//! `cargo bench -p batchling-core`: items per second through add -> cut -> outcome -> resolve,
//! with a host that does nothing but feed outcomes back.

use batchling_core::batcher::{Action, BatchId, Batcher, BatcherConfig, Event};
use batchling_core::host::wire::{self, HostIds};
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

/// The pattern of `npm run bench` as the JS host drives it: every add of the round arrives in
/// one tick (in calls of 4,096, host-id outcomes), so all items are live at once; then each cut
/// batch completes, one `completed` call (and one encoded outcome) per batch.
fn round_all_live(batcher: &mut Batcher, ids: &mut HostIds, items: usize) -> usize {
    const PER_CALL: usize = 4096;
    let zeros = vec![0u32; PER_CALL];
    let mut adds = Vec::with_capacity(PER_CALL);
    let mut out = Vec::new();
    let mut batches = Vec::new();
    let collect = |out: &[f64], batches: &mut Vec<u64>| {
        let mut i = 3 + out[1] as usize;
        while i < out.len() {
            if out[i] == wire::GROUP_RELEASED {
                i += 2;
                continue;
            }
            assert_eq!(out[i], wire::RUN_BATCH);
            batches.push(out[i + 1] as u64);
            i += 6 + 2 * out[i + 5] as usize;
        }
    };
    let mut first = 0;
    while first < items {
        let n = PER_CALL.min(items - first);
        adds.clear();
        batcher.add_many(1, &zeros[..n], first + n < items, &mut adds);
        ids.record(&adds, first as f64);
        ids.encode(batcher, &adds, &mut out);
        collect(&out, &mut batches);
        first += n;
    }
    adds.clear();
    let mut resolved = 0;
    for batch in batches {
        let batch = BatchId(batch);
        batcher.handle(2, Event::BatchCompleted { batch, failed: &[] });
        ids.encode(batcher, &adds, &mut out);
        let mut i = 3;
        while i < out.len() && out[i] == wire::RESOLVE {
            resolved += out[i + 2] as usize;
            i += 3;
        }
    }
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

    let mut group = c.benchmark_group("host_ids_all_live");
    const ALL_LIVE: usize = 200_000;
    group.throughput(Throughput::Elements(ALL_LIVE as u64));
    group.bench_function("200k_adds_one_tick_then_completions", |b| {
        b.iter_batched(
            || (Batcher::new(config.clone()).unwrap(), HostIds::default()),
            |(mut batcher, mut ids)| {
                assert_eq!(round_all_live(&mut batcher, &mut ids, ALL_LIVE), ALL_LIVE);
                batcher
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
