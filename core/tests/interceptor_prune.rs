//! Data that does not pile up: journalled answers age out, a finished batch's provider files
//! are deleted once its answers are journalled, and a resumed batch the provider no longer keeps
//! fails with an error naming it and its age.

mod support;

use batchling_core::cache::AgeLimit;
use batchling_core::interceptor::options::WallClock;
use batchling_core::interceptor::{InterceptorConfig, Output, RequestId};
use batchling_core::providers::ProviderId;
use serde_json::Value;

use support::*;

const P: ProviderId = ProviderId::OpenAi;
/// The wall clock at the harness's time 0 (2026-11-01).
const WALL: u64 = 1_793_491_200_000;
const DAY: u64 = AgeLimit::DAY_MS;
const TEXTS: [&str; 3] = ["a0", "a1", "a2 #err=400"];

/// A config with a wall clock `wall` ms at harness time 0 and a 30-day age limit.
fn clocked(wall: u64) -> InterceptorConfig {
    InterceptorConfig {
        wall_clock: Some(WallClock {
            wall_ms: wall,
            monotonic_ms: 0,
        }),
        cache_max_age_ms: Some(30 * DAY),
        ..config(3)
    }
}

fn submit_all(h: &mut Harness, texts: &[&str]) -> Vec<RequestId> {
    texts
        .iter()
        .map(|t| h.submit(request(P, 0, 0, t)))
        .collect()
}

fn record(line: &str) -> Value {
    serde_json::from_str(line).unwrap()
}

/// Indexes in the engine's outputs of the result records persisted and the DELETE calls sent.
fn results_and_deletes(h: &Harness) -> (Vec<usize>, Vec<usize>) {
    let mut results = Vec::new();
    let mut deletes = Vec::new();
    for (i, out) in h.outputs.iter().enumerate() {
        match out {
            Output::Persist { line } if record(line)["type"] == "result" => results.push(i),
            Output::Send { http, .. } if http.method == "DELETE" => deletes.push(i),
            _ => {}
        }
    }
    (results, deletes)
}

#[test]
fn a_finished_batchs_files_are_deleted_after_its_answers_are_journalled() {
    let mut h = Harness::new(clocked(WALL));
    let ids = submit_all(&mut h, &TEXTS);
    h.close_and_drain();
    let model = model_of(P, 0);
    assert!(h.only(ids[0]).is_echo(model, "a0"));
    assert_eq!(h.only(ids[2]).status(), Some(400));

    // Input, output and error file: all deleted, and only after the last answer was journalled.
    let mut deleted = h.fake.deleted.clone();
    deleted.sort();
    assert_eq!(deleted, ["file-err3", "file-in1", "file-out2"]);
    assert!(h.fake.files.is_empty(), "{:?}", h.fake.files.keys());
    let (results, deletes) = results_and_deletes(&h);
    assert_eq!((results.len(), deletes.len()), (3, 3));
    assert!(results.iter().max() < deletes.iter().min());
    let report = h.eng.report();
    assert_eq!(report[0].files_deleted, 3);
    assert_eq!(report[0].file_deletes_failed, 0);

    // Answers and the batch carry their wall-clock time.
    for line in &h.journal {
        let r = record(line);
        if r["type"] == "result" || r["type"] == "submitted" {
            let at = r["at_ms"].as_u64().expect("a time");
            assert!((WALL..WALL + DAY).contains(&at), "{line}");
        }
    }
    h.check_invariants();
}

#[test]
fn files_are_kept_when_asked_and_a_failed_delete_is_only_a_warning() {
    let mut h = Harness::new(InterceptorConfig {
        delete_provider_files: false,
        ..clocked(WALL)
    });
    submit_all(&mut h, &TEXTS);
    h.close_and_drain();
    assert_eq!(h.sent(Step::DeleteFile), 0);
    assert_eq!(h.fake.files.len(), 3);

    let mut h = Harness::new(clocked(WALL));
    h.fake
        .fault(Some(P), Step::DeleteFile, Fault::Status(500, None));
    let ids = submit_all(&mut h, &TEXTS);
    h.close_and_drain();
    assert!(h.only(ids[0]).is_echo(model_of(P, 0), "a0"));
    assert_eq!(
        h.sent(Step::DeleteFile),
        3,
        "a failed delete is not retried"
    );
    let warnings = h.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("could not delete"), "{}", warnings[0]);
    let report = h.eng.report();
    assert_eq!(
        (report[0].files_deleted, report[0].file_deletes_failed),
        (2, 1)
    );
    h.check_invariants();
}

#[test]
fn a_resumed_batch_keeps_its_files_while_the_journal_still_points_at_it() {
    let mut h1 = Harness::new(clocked(WALL));
    submit_all(&mut h1, &TEXTS);
    h1.step_until(|h| h.journal_has("submitted"));
    let now = h1.now;
    let (fake, journal) = h1.crash();

    // A rerun asks for one of the three: the batch's other answers are not journalled yet.
    let mut h2 = Harness::restart(clocked(WALL), fake, &journal, now);
    let one = h2.submit(request(P, 0, 0, TEXTS[0]));
    h2.close_and_drain();
    assert!(h2.only(one).is_echo(model_of(P, 0), "a0"));
    assert_eq!(
        h2.sent(Step::DeleteFile),
        0,
        "a later run still downloads them"
    );
    let now = h2.now;
    let mut journal = journal;
    journal.extend(h2.journal.iter().cloned());
    let (fake, _) = h2.crash();

    // The next run asks for all three: the batch is done with, its output files go.
    let mut h3 = Harness::restart(clocked(WALL), fake, &journal, now);
    let ids = submit_all(&mut h3, &TEXTS);
    h3.close_and_drain();
    assert_eq!(h3.only(ids[2]).status(), Some(400));
    assert_eq!(h3.sent(Step::Create), 0);
    assert!(h3.fake.files.keys().all(|f| f.starts_with("file-in")));
    assert_eq!(h3.sent(Step::DeleteFile), 2, "output and error file");
    h3.check_invariants();
}

#[test]
fn a_resumed_batch_gone_at_the_provider_fails_naming_the_batch_and_its_age() {
    for step in [Step::Poll, Step::Download] {
        let mut h1 = Harness::new(clocked(WALL));
        submit_all(&mut h1, &TEXTS);
        h1.step_until(|h| h.journal_has("submitted"));
        let now = h1.now;
        let (mut fake, journal) = h1.crash();
        let batch_id = fake.batches[0].id.clone();
        fake.fault(Some(P), step, Fault::Status(404, None));

        // 31 days later.
        let mut h2 = Harness::restart(clocked(WALL + 31 * DAY), fake, &journal, now);
        let ids = submit_all(&mut h2, &TEXTS);
        h2.close_and_drain();
        for id in &ids {
            let Answer::Fail { code, message } = h2.only(*id) else {
                panic!("{step:?}: expected a failure, got {:?}", h2.only(*id));
            };
            assert_eq!(code, "ERR_BATCHLING_BATCH_GONE");
            assert!(message.contains(&batch_id), "{message}");
            assert!(message.contains("submitted 31 days ago"), "{message}");
        }
        // No retry: one poll, or the output and error file's downloads, sent together.
        let once = if step == Step::Poll { 1 } else { 2 };
        assert_eq!(h2.sent(step), once, "{step:?}: no retry loop");
        assert!(h2.journal_has("released"));

        // The run after submits them again.
        let mut journal = journal;
        journal.extend(h2.journal.iter().cloned());
        let now = h2.now;
        let (mut fake, _) = h2.crash();
        fake.batches.clear(); // as the provider has
        let mut h3 = Harness::restart(clocked(WALL + 31 * DAY), fake, &journal, now);
        let ids = submit_all(&mut h3, &TEXTS);
        h3.close_and_drain();
        assert_eq!(h3.sent(Step::Create), 1);
        assert!(h3.only(ids[1]).is_echo(model_of(P, 0), "a1"));
    }
}

#[test]
fn answers_past_the_age_limit_are_asked_again_and_compacted_away() {
    let mut h1 = Harness::new(clocked(WALL));
    submit_all(&mut h1, &TEXTS);
    h1.close_and_drain();
    let now = h1.now;
    let (fake, journal) = h1.crash();

    // 29 days later: every answer is a cache hit, nothing to drop.
    let (mut h2, compacted) =
        Harness::restart_compacted(clocked(WALL + 29 * DAY), Fake::new(), &journal, now);
    assert!(
        compacted.is_none(),
        "mostly answers, none expired: nothing to rewrite"
    );
    let ids = submit_all(&mut h2, &TEXTS);
    h2.close_and_drain();
    assert_eq!(h2.sent(Step::Create), 0);
    assert!(h2.only(ids[0]).is_echo(model_of(P, 0), "a0"));
    assert_eq!(h2.eng.cache_stats().expired_answers, 0);

    // 31 days later: they are gone from the cache, the compaction leaves them out, and the
    // requests are sent again.
    let mut h3 = Harness::restart(clocked(WALL + 31 * DAY), fake, &journal, now);
    let stats = h3.eng.cache_stats();
    assert_eq!((stats.answers, stats.expired_answers), (0, 3));
    assert_eq!(stats.max_age_ms, Some(30 * DAY));
    let plan = h3
        .eng
        .journal_compaction()
        .expect("expired answers are dropped");
    assert!(plan.is_empty(), "{plan:?}");
    assert!(h3.eng.journal_compacted());
    let ids = submit_all(&mut h3, &TEXTS);
    h3.close_and_drain();
    assert_eq!(h3.sent(Step::Create), 1);
    assert!(h3.only(ids[0]).is_echo(model_of(P, 0), "a0"));

    // Without an age limit nothing ages out.
    let h4 = Harness::restart(
        InterceptorConfig {
            cache_max_age_ms: None,
            ..clocked(WALL + 400 * DAY)
        },
        Fake::new(),
        &journal,
        now,
    );
    assert_eq!(h4.eng.cache_stats().answers, 3);
}
