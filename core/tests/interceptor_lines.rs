//! Lines that never came back: requests a batch ended without running go into a new batch (up
//! to `line_attempts`), after the provider's counts were checked against what was read; result
//! lines that are unknown or come twice are ignored with a warning.

mod support;

use batchling_core::interceptor::{Input, InterceptorConfig, LifecycleEvent, RequestId};
use batchling_core::jobs::{JobResult, JobSpec, Message, ProviderEndpoint};
use batchling_core::providers::ProviderId;
use serde_json::Value;

use support::*;

fn resubmitted(h: &Harness) -> Vec<(String, String, usize)> {
    h.events
        .iter()
        .filter_map(|e| match e {
            LifecycleEvent::LinesResubmitted {
                batch_id,
                state,
                requests,
                ..
            } => Some((batch_id.clone(), state.clone(), *requests)),
            _ => None,
        })
        .collect()
}

fn warned(h: &Harness, text: &str) -> bool {
    h.events
        .iter()
        .any(|e| matches!(e, LifecycleEvent::Warning { message } if message.contains(text)))
}

fn submit_texts(h: &mut Harness, p: ProviderId, texts: &[&str]) -> Vec<RequestId> {
    texts
        .iter()
        .map(|t| h.submit(request(p, 0, 0, t)))
        .collect()
}

fn assert_all_echo(h: &Harness, p: ProviderId, ids: &[RequestId], texts: &[&str]) {
    for (id, text) in ids.iter().zip(texts) {
        let answer = h.only(*id);
        assert!(
            answer.is_echo(model_of(p, 0), text),
            "{p} {text}: {answer:?}"
        );
    }
}

/// Index of the first journal record of `kind` after `from`.
fn record_after(journal: &[String], kind: &str, from: usize) -> Option<usize> {
    record_types(journal)
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, t)| *t == kind)
        .map(|(i, _)| i)
}

#[test]
fn a_completed_batch_missing_a_line_resubmits_exactly_that_request() {
    for p in FAKE_PROVIDERS {
        let mut h = Harness::new(config(3));
        h.fake.fates.push_back(Fate::Missing);
        let texts = ["m0", "m1", "m2"];
        let ids = submit_texts(&mut h, p, &texts);
        h.close_and_drain();
        assert_all_echo(&h, p, &ids, &texts);
        assert_eq!(h.fake.batches.len(), 2, "{p}");
        let (first, second) = (&h.fake.batches[0], &h.fake.batches[1]);
        assert_eq!(second.lines.len(), 1, "{p}: only the missing request");
        assert!(
            !first.answered.contains(&second.lines[0].0),
            "{p}: the resubmitted request had not run"
        );
        assert_eq!(
            resubmitted(&h),
            [(first.id.clone(), "completed".to_string(), 1)],
            "{p}"
        );
        // The old batch lets go of it before the new batch's intent is journalled.
        let released = record_after(&h.journal, "released", 0).expect("released");
        let submitted = record_after(&h.journal, "submitted", 0).unwrap();
        assert!(submitted < released, "{p}");
        assert!(
            record_after(&h.journal, "intent", released).is_some(),
            "{p}: {:?}",
            record_types(&h.journal)
        );
        assert!(h.fake.violations.is_empty(), "{:?}", h.fake.violations);
    }
}

#[test]
fn expired_cancelled_and_failed_batches_resubmit_what_did_not_run() {
    for p in FAKE_PROVIDERS {
        for fate in [Fate::Expire, Fate::Cancel, Fate::Fail] {
            let mut h = Harness::new(config(4));
            h.fake.fates.push_back(fate);
            let texts = ["e0", "e1", "e2", "e3"];
            let ids = submit_texts(&mut h, p, &texts);
            h.close_and_drain();
            assert_all_echo(&h, p, &ids, &texts);
            assert_eq!(h.fake.batches.len(), 2, "{p} {fate:?}");
            let ran = h.fake.batches[0].answered.len();
            assert_eq!(h.fake.batches[1].lines.len(), 4 - ran, "{p} {fate:?}");
            let state = fate.end_kind().unwrap().as_str().to_string();
            assert_eq!(
                resubmitted(&h),
                [(h.fake.batches[0].id.clone(), state, 4 - ran)],
                "{p} {fate:?}"
            );
            assert!(h.fake.violations.is_empty(), "{:?}", h.fake.violations);
        }
    }
}

#[test]
fn after_line_attempts_batches_the_caller_gets_an_error_naming_them() {
    for p in FAKE_PROVIDERS {
        let mut h = Harness::new(InterceptorConfig {
            line_attempts: 2,
            ..config(2)
        });
        h.fake.fates.extend([Fate::Missing, Fate::Missing]);
        // Two requests: the first batch runs one; the second batch holds the other alone, and
        // runs nothing either.
        let ids = submit_texts(&mut h, p, &["x0", "x1"]);
        h.close_and_drain();
        assert_eq!(h.fake.batches.len(), 2, "{p}: no third batch");
        let failed: Vec<_> = ids
            .iter()
            .map(|id| h.only(*id))
            .filter(|a| a.status() != Some(200))
            .collect();
        assert_eq!(failed.len(), 1, "{p}: {failed:?}");
        let Answer::Fail { code, message } = failed[0] else {
            panic!("{p}: {:?}", failed[0]);
        };
        assert_eq!(code, "ERR_BATCHLING_LINES_NOT_RUN");
        for b in &h.fake.batches {
            assert!(message.contains(&b.id), "{p}: {message}");
        }
        assert!(message.contains("completed"), "{message}");
    }
}

#[test]
fn without_resubmission_a_missing_line_gets_the_ended_answer() {
    let p = ProviderId::OpenAi;
    let mut h = Harness::new(InterceptorConfig {
        resubmit: false,
        ..config(2)
    });
    h.fake.fates.push_back(Fate::Missing);
    let ids = submit_texts(&mut h, p, &["r0", "r1"]);
    h.close_and_drain();
    assert_eq!(h.fake.batches.len(), 1);
    let statuses: Vec<_> = ids.iter().map(|id| h.only(*id).status()).collect();
    assert!(statuses.contains(&Some(500)), "{statuses:?}");
    assert!(resubmitted(&h).is_empty());
}

#[test]
fn a_flaky_download_is_downloaded_again_not_resubmitted() {
    for p in [ProviderId::OpenAi, ProviderId::Anthropic] {
        let mut h = Harness::new(config(3));
        h.fake.flaky_downloads = 1;
        let texts = ["f0", "f1", "f2"];
        let ids = submit_texts(&mut h, p, &texts);
        h.close_and_drain();
        assert_all_echo(&h, p, &ids, &texts);
        assert_eq!(h.fake.batches.len(), 1, "{p}: nothing resubmitted");
        assert_eq!(h.sent(Step::Download), 2, "{p}");
        assert_eq!(h.fake.lines_downloaded, 2 + 3, "{p}");
        assert!(warned(&h, "downloading its results again"), "{p}");
        assert!(resubmitted(&h).is_empty());
    }
}

#[test]
fn a_line_the_counts_say_ran_but_no_download_delivers_is_never_resubmitted() {
    let p = ProviderId::OpenAi;
    let mut h = Harness::new(config(3));
    h.fake.flaky_downloads = 10;
    let ids = submit_texts(&mut h, p, &["g0", "g1", "g2"]);
    h.close_and_drain();
    assert_eq!(h.sent(Step::Download), 3, "the first download and two more");
    assert_eq!(
        h.fake.batches.len(),
        1,
        "never resubmitted: it may have run"
    );
    let errors: Vec<_> = ids
        .iter()
        .filter(|id| h.only(**id).status() != Some(200))
        .collect();
    assert_eq!(errors.len(), 1);
    assert!(warned(&h, "not resubmitted"));
    // The journal still points at the batch: a re-run reads its results again.
    assert!(!h.journal_has("released"));
}

#[test]
fn unknown_and_repeated_result_lines_are_ignored_with_a_warning() {
    let p = ProviderId::OpenAi;
    let mut h = Harness::new(config(2));
    let texts = ["d0", "d1"];
    let ids = submit_texts(&mut h, p, &texts);
    h.handle(Input::Close);
    h.step_until(|h| {
        h.inflight
            .front()
            .is_some_and(|(_, r)| classify_call(r).is_some_and(|(_, s, _)| s == Step::Download))
    });
    let (call, req) = h.inflight.pop_front().unwrap();
    let Reply::Http(mut response) = h.fake.serve(&req) else {
        panic!("the fake answers downloads")
    };
    let body = std::mem::take(&mut response.body);
    let lines: Vec<&str> = body.split_inclusive('\n').collect();
    let mut stranger: Value = serde_json::from_str(lines[0]).unwrap();
    stranger["custom_id"] = "bl-not-ours".into();
    // Chunk 1: a line; chunk 2: the same line again and a stranger; the rest: the other line.
    h.handle(Input::ResponseChunk {
        call,
        text: lines[0].to_string(),
    });
    h.handle(Input::ResponseChunk {
        call,
        text: format!("{}{stranger}\n", lines[0]),
    });
    response.body = lines[1].to_string();
    h.handle(Input::Response { call, response });
    h.run();
    assert_all_echo(&h, p, &ids, &texts);
    assert!(warned(&h, "came a second time"));
    assert!(warned(&h, "bl-not-ours"));
    assert_eq!(h.sent(Step::Download), 1);
    h.check_invariants();
}

#[test]
fn a_download_cut_off_and_retried_delivers_its_lines_again_without_a_warning() {
    let p = ProviderId::OpenAi;
    let mut h = Harness::new(config(3));
    let texts = ["c0", "c1", "c2"];
    let ids = submit_texts(&mut h, p, &texts);
    h.handle(Input::Close);
    h.step_until(|h| {
        h.inflight
            .front()
            .is_some_and(|(_, r)| classify_call(r).is_some_and(|(_, s, _)| s == Step::Download))
    });
    let (call, req) = h.inflight.pop_front().unwrap();
    let Reply::Http(response) = h.fake.serve(&req) else {
        panic!("the fake answers downloads")
    };
    let first = response
        .body
        .split_inclusive('\n')
        .next()
        .unwrap()
        .to_string();
    h.handle(Input::ResponseChunk { call, text: first });
    h.handle(Input::TransportError {
        call,
        message: "reset".into(),
    });
    h.run();
    assert_all_echo(&h, p, &ids, &texts);
    assert!(!warned(&h, "came a second time"));
    assert_eq!(h.fake.batches.len(), 1);
}

/// A crash after the old batch let go of a request and before the new batch's intent: the
/// re-run submits it once, anew, and never resumes the old batch for it.
#[test]
fn a_crash_between_the_release_and_the_new_batch_submits_once() {
    for p in FAKE_PROVIDERS {
        let mut h1 = Harness::new(config(2));
        h1.fake.fates.push_back(Fate::Missing);
        let texts = ["k0", "k1"];
        submit_texts(&mut h1, p, &texts);
        h1.handle(Input::Close);
        h1.step_until(|h| h.journal_has("released"));
        let (fake, mut journal) = h1.crash();
        let released = record_after(&journal, "released", 0).unwrap();
        journal.truncate(released + 1);
        let batches_before = fake.batches.len();
        assert_eq!(batches_before, 1, "{p}");

        let mut h2 = Harness::restart(config(2), fake, &journal, 100_000_000);
        let ids = submit_texts(&mut h2, p, &texts);
        h2.close_and_drain();
        assert_all_echo(&h2, p, &ids, &texts);
        assert_eq!(h2.fake.batches.len(), 2, "{p}: one new batch");
        assert_eq!(h2.fake.batches[1].lines.len(), 1, "{p}");
        assert!(h2.fake.violations.is_empty(), "{:?}", h2.fake.violations);
    }
}

fn job(id: &str, text: &str) -> JobSpec {
    JobSpec {
        id: id.into(),
        model: "gpt-4o-mini".into(),
        messages: Some(vec![Message {
            role: "user".into(),
            content: text.into(),
        }]),
        file: None,
        prompt: None,
        system: None,
        temperature: None,
        max_tokens: None,
        response_schema: None,
        extra: None,
        price: None,
    }
}

#[test]
fn the_job_builder_resubmits_lines_that_came_back_with_a_retryable_error() {
    let mut h = Harness::new(config(3));
    let endpoint = ProviderEndpoint::default_for(ProviderId::OpenAi, OPENAI_KEYS[0]);
    let ids = h.submit_jobs(
        vec![
            job("ok", "a"),
            job("busy", "b #err=503"),
            job("bad", "c #err=400"),
        ],
        &endpoint,
    );
    h.close_and_drain();
    // The 503 line went through all three batches; the 400 line is the job's answer at once.
    assert_eq!(h.fake.batches.len(), 3);
    assert_eq!(h.fake.batches[1].lines.len(), 1);
    assert_eq!(h.fake.batches[2].lines.len(), 1);
    let counts: Vec<usize> = resubmitted(&h).iter().map(|r| r.2).collect();
    assert_eq!(counts, [1, 1]);
    let results: Vec<JobResult> = ids
        .iter()
        .map(|id| match h.only(*id) {
            Answer::JobResult { line, .. } => serde_json::from_str(line).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        results.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 503, 400]
    );
    h.check_invariants();
}

#[test]
fn a_batchify_caller_gets_its_retryable_error_line_for_its_sdk_to_retry() {
    let p = ProviderId::OpenAi;
    let mut h = Harness::new(config(1));
    let ids = submit_texts(&mut h, p, &["s #err=503"]);
    h.close_and_drain();
    assert_eq!(h.only(ids[0]).status(), Some(503));
    assert_eq!(h.fake.batches.len(), 1);
}

#[test]
fn line_attempts_must_be_at_least_one() {
    let err = batchling_core::interceptor::Interceptor::new(
        InterceptorConfig {
            line_attempts: 0,
            ..config(1)
        },
        false,
        true,
        0,
    )
    .err()
    .expect("refused");
    assert_eq!(err.option, "lineAttempts");
}

#[test]
fn a_batch_refused_for_the_enqueued_token_limit_is_not_a_line_attempt() {
    // OpenAI ends such a batch `failed` having run nothing, like a failed batch this module
    // resubmits; it is a refusal instead: its requests wait for headroom and go again without
    // counting as an attempt (with one attempt, or with the bodies kept to resubmit).
    let p = ProviderId::OpenAi;
    for line_attempts in [1, 2] {
        let mut h = Harness::new(InterceptorConfig {
            line_attempts,
            ..config(2)
        });
        h.fake.fates.push_back(Fate::TokenLimit);
        if line_attempts == 2 {
            // The batch after the refusal misses a line: one attempt is left for it.
            h.fake.fates.push_back(Fate::Missing);
        }
        let texts = ["t0", "t1"];
        let ids = submit_texts(&mut h, p, &texts);
        h.close_and_drain();
        assert_all_echo(&h, p, &ids, &texts);
        let fates: Vec<Fate> = h.fake.batches.iter().map(|b| b.fate).collect();
        let refused = h.fake.batches[0].id.clone();
        assert!(
            h.events
                .iter()
                .any(|e| matches!(e, LifecycleEvent::EnqueuedLimit { .. })),
            "{line_attempts}: waited for headroom"
        );
        if line_attempts == 1 {
            assert_eq!(fates, [Fate::TokenLimit, Fate::Complete]);
            assert!(resubmitted(&h).is_empty(), "{:?}", resubmitted(&h));
        } else {
            assert_eq!(fates, [Fate::TokenLimit, Fate::Missing, Fate::Complete]);
            let after = h.fake.batches[1].id.clone();
            assert_eq!(resubmitted(&h), [(after, "completed".to_string(), 1)]);
            assert!(resubmitted(&h).iter().all(|(b, ..)| *b != refused));
        }
        assert!(h.fake.violations.is_empty(), "{:?}", h.fake.violations);
    }
}
