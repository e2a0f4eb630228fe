//! The journal: a crash at each step and a rerun that resumes from it, a finished run answering a
//! repeat run from the cache, torn lines, and what is not cached (transient line errors).

mod support;

use std::collections::HashSet;

use batchling_core::interceptor::{InterceptorConfig, LifecycleEvent, RequestId};
use batchling_core::providers::ProviderId;

use support::*;

// ---- crash and replay ----------------------------------------------------------------------

/// Texts of the crash scenarios; one is a per-line error so cached errors are covered too.
fn crash_texts(p: ProviderId) -> Vec<String> {
    let err = match p {
        ProviderId::OpenAi => "c2 #err=400",
        ProviderId::Anthropic => "c2 #err=invalid_request_error",
        ProviderId::Gemini => "c2 #err=3",
        other => unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}"),
    };
    vec!["c0".into(), "c1".into(), err.into()]
}

/// What callers get from a run without any crash: (status, body) per text.
fn baseline(p: ProviderId) -> Vec<(u16, String)> {
    let mut h = Harness::new(config(3));
    let ids: Vec<RequestId> = crash_texts(p)
        .iter()
        .map(|t| h.submit(request(p, 0, 0, t)))
        .collect();
    h.close_and_drain();
    ids.iter().map(|id| status_body(h.only(*id))).collect()
}

fn status_body(a: &Answer) -> (u16, String) {
    match a {
        Answer::Respond { status, body, .. } => (*status, body.clone()),
        other => panic!("expected a response, got {other:?}"),
    }
}

fn resubmit(h: &mut Harness, p: ProviderId) -> Vec<RequestId> {
    crash_texts(p)
        .iter()
        .map(|t| h.submit(request(p, 0, 0, t)))
        .collect()
}

#[test]
fn after_a_crash_past_submit_a_rerun_polls_the_same_batch_without_creating() {
    for p in FAKE_PROVIDERS {
        let expected = baseline(p);
        let mut h1 = Harness::new(config(3));
        resubmit(&mut h1, p);
        h1.step_until(|h| h.journal_has("submitted"));
        let now = h1.now;
        let (fake, journal) = h1.crash();
        assert_eq!(fake.batches.len(), 1);
        let batch_id = fake.batches[0].id.clone();

        let mut h2 = Harness::restart(config(3), fake, &journal, now + 60_000);
        let ids = resubmit(&mut h2, p);
        h2.close_and_drain();
        assert_eq!(h2.sent(Step::Create), 0, "{p}: no new batch");
        assert_eq!(h2.sent(Step::Upload), 0, "{p}: no new upload");
        assert!(h2.sent(Step::Poll) >= 1, "{p}: it polls the batch it had");
        assert_eq!(h2.fake.batches.len(), 1);
        let polled: HashSet<String> = h2
            .sends
            .iter()
            .filter_map(classify_call)
            .filter(|c| c.1 == Step::Poll)
            .map(|c| c.2)
            .collect();
        assert_eq!(polled, HashSet::from([batch_id.clone()]), "{p}");
        let got: Vec<(u16, String)> = ids.iter().map(|id| status_body(h2.only(*id))).collect();
        assert_eq!(got, expected, "{p}: same answers as without the crash");
        let resumed: Vec<Option<String>> = h2
            .events
            .iter()
            .filter_map(|e| match e {
                LifecycleEvent::CacheHit { resumed_batch, .. } => Some(resumed_batch.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(resumed, vec![Some(batch_id); 3], "{p}");
    }
}

#[test]
fn after_a_crash_between_intent_and_create_answer_the_batch_is_found_by_tag() {
    for p in [ProviderId::OpenAi, ProviderId::Gemini] {
        let expected = baseline(p);
        let mut h1 = Harness::new(config(3));
        resubmit(&mut h1, p);
        if p == ProviderId::OpenAi {
            assert!(h1.deliver_next(), "upload");
        }
        assert!(h1.journal_has("intent"));
        let create = h1.serve_without_answer();
        assert_eq!(classify_call(&create).unwrap().1, Step::Create);
        assert!(!h1.journal_has("submitted"));
        let now = h1.now;
        let (fake, journal) = h1.crash();
        assert_eq!(fake.batches.len(), 1, "the provider did create it");

        let mut h2 = Harness::restart(config(3), fake, &journal, now + 1_000);
        let ids = resubmit(&mut h2, p);
        h2.close_and_drain();
        assert_eq!(h2.sent(Step::Create), 0, "{p}: found, not created again");
        assert_eq!(h2.sent(Step::Upload), 0, "{p}");
        assert!(h2.sent(Step::Find) >= 1, "{p}: looked up by tag");
        assert_eq!(h2.fake.batches.len(), 1);
        let got: Vec<(u16, String)> = ids.iter().map(|id| status_body(h2.only(*id))).collect();
        assert_eq!(got, expected, "{p}");
    }
}

#[test]
fn after_a_crash_before_the_create_reached_the_provider_it_is_created_exactly_once() {
    for p in [ProviderId::OpenAi, ProviderId::Gemini] {
        let expected = baseline(p);
        let mut h1 = Harness::new(config(3));
        resubmit(&mut h1, p);
        if p == ProviderId::OpenAi {
            assert!(h1.deliver_next(), "upload");
        }
        assert_eq!(
            h1.inflight.len(),
            1,
            "the create is in flight when the process dies"
        );
        let now = h1.now;
        let (fake, journal) = h1.crash();
        assert!(fake.batches.is_empty());

        let mut h2 = Harness::restart(config(3), fake, &journal, now + 1_000);
        let ids = resubmit(&mut h2, p);
        h2.close_and_drain();
        assert_eq!(h2.sent(Step::Find), 1, "{p}: looks first");
        assert_eq!(h2.sent(Step::Create), 1, "{p}: then creates once");
        assert_eq!(h2.fake.batches.len(), 1);
        let got: Vec<(u16, String)> = ids.iter().map(|id| status_body(h2.only(*id))).collect();
        assert_eq!(got, expected, "{p}");
    }
}

#[test]
fn after_a_crash_between_intent_and_create_answer_anthropic_callers_fail_ambiguous() {
    let p = ProviderId::Anthropic;
    let mut h1 = Harness::new(config(3));
    resubmit(&mut h1, p);
    h1.serve_without_answer();
    let (fake, journal) = h1.crash();
    let mut h2 = Harness::restart(config(3), fake, &journal, 5_000);
    let ids = resubmit(&mut h2, p);
    h2.close_and_drain();
    assert_eq!(h2.sent(Step::Create), 0, "never a second create");
    assert_eq!(h2.fake.batches.len(), 1);
    for id in ids {
        assert_eq!(
            h2.only(id).fail_code(),
            Some("ERR_BATCHLING_AMBIGUOUS_CREATE")
        );
    }
}

#[test]
fn a_finished_run_answers_a_repeat_run_with_zero_provider_calls() {
    let mut h1 = Harness::new(config(3));
    let mut reqs = Vec::new();
    for p in FAKE_PROVIDERS {
        for t in crash_texts(p) {
            reqs.push(request(p, 0, 0, &t));
        }
    }
    reqs.push(reqs[0].clone()); // a duplicate
    let first: Vec<RequestId> = reqs.iter().map(|r| h1.submit(r.clone())).collect();
    h1.close_and_drain();
    let h1_answers: Vec<(u16, String)> = first.iter().map(|id| status_body(h1.only(*id))).collect();
    let (fake, journal) = h1.crash();

    let mut h2 = Harness::restart(config(3), fake, &journal, 100_000);
    let ids: Vec<RequestId> = reqs.iter().map(|r| h2.submit(r.clone())).collect();
    assert_eq!(h2.eng.open_requests(), 0, "answered on submit");
    h2.close_and_drain();
    assert!(
        h2.sends.is_empty(),
        "zero provider calls: {:?}",
        h2.sent_steps()
    );
    let got: Vec<(u16, String)> = ids.iter().map(|id| status_body(h2.only(*id))).collect();
    assert_eq!(got, h1_answers);
    let hits = h2
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                LifecycleEvent::CacheHit {
                    resumed_batch: None,
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        hits,
        reqs.len(),
        "every request, the duplicate too, is a cache hit"
    );
    assert_eq!(
        h2.eng.report().iter().map(|r| r.cache_hits).sum::<u64>(),
        hits as u64
    );
}

#[test]
fn a_torn_journal_line_is_a_warning_and_the_other_records_still_work() {
    let p = ProviderId::OpenAi;
    let expected = baseline(p);
    // The torn line stands for a crash while the results were appended, which comes before
    // the batch's files are deleted: keep them, as that run would have.
    let keep_files = || InterceptorConfig {
        delete_provider_files: false,
        ..config(3)
    };
    let mut h1 = Harness::new(keep_files());
    resubmit(&mut h1, p);
    h1.close_and_drain();
    let (fake, mut journal) = h1.crash();
    let kinds = record_types(&journal);
    assert_eq!(kinds, ["intent", "submitted", "result", "result", "result"]);
    // The process died while appending the last result.
    let last = journal.pop().unwrap();
    journal.push(last[..last.len() / 2].to_string());
    let torn_line = journal.len();

    let mut h2 = Harness::restart(keep_files(), fake, &journal, 100_000);
    let warnings = h2.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&format!("line {torn_line}")),
        "{}",
        warnings[0]
    );
    let ids = resubmit(&mut h2, p);
    h2.close_and_drain();
    assert_eq!(h2.sent(Step::Create), 0, "the submitted record still holds");
    assert_eq!(h2.sent(Step::Upload), 0);
    let got: Vec<(u16, String)> = ids.iter().map(|id| status_body(h2.only(*id))).collect();
    assert_eq!(got, expected);
    let resumed = h2
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                LifecycleEvent::CacheHit {
                    resumed_batch: Some(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        resumed, 1,
        "only the request whose result line was torn polls again"
    );
}

/// Regression (fixed in 6dfa05b): after a restart, a request resumed into a job whose results are
/// already being downloaded joins that job, misses the result line that was absorbed before it
/// arrived, and is answered "completed without a result line" (500) although the provider has its
/// answer.
#[test]
fn a_resumed_request_arriving_mid_download_still_gets_its_line() {
    let p = ProviderId::OpenAi;
    let mut h1 = Harness::new(config(2));
    h1.submit(request(p, 0, 0, "lands in the error file #err=400"));
    h1.submit(request(p, 0, 0, "lands in the output file"));
    h1.step_until(|h| h.journal_has("submitted"));
    let (fake, journal) = h1.crash();

    let mut h2 = Harness::restart(config(2), fake, &journal, 100_000);
    let a = h2.submit(request(p, 0, 0, "lands in the error file #err=400"));
    // Poll until the batch is done and both downloads are in flight.
    h2.step_until(|h| h.inflight.len() == 2);
    let output_file = h2
        .inflight
        .iter()
        .position(|(_, r)| r.url.contains("file-out"))
        .expect("output file download");
    h2.deliver_at(output_file);
    // Only now does the script re-issue the second request.
    let b = h2.submit(request(p, 0, 0, "lands in the output file"));
    h2.close_and_drain();
    assert_eq!(h2.only(a).status(), Some(400));
    assert!(
        h2.only(b)
            .is_echo("gpt-4o-mini", "lands in the output file"),
        "the provider has this request's answer, but the caller got {:?}",
        h2.only(b)
    );
}

/// Regression (fixed in 6dfa05b by `released` records): an expired / cancelled / failed batch left
/// its `submitted` records in the journal, so every later run "resumes" the dead batch and answers
/// the same ended error at once; the requests can never run again until the cache file is deleted.
#[test]
fn a_rerun_after_an_expired_batch_submits_the_requests_again() {
    let p = ProviderId::Gemini;
    // Without resubmission (with it, the first run resubmits the request itself).
    let config = |n| InterceptorConfig {
        resubmit: false,
        ..config(n)
    };
    let mut h1 = Harness::new(config(1));
    h1.fake.fates.push_back(Fate::Expire);
    let first = h1.submit(request(p, 0, 0, "try again tomorrow"));
    h1.close_and_drain();
    assert_eq!(h1.only(first).status(), Some(504));
    let (fake, journal) = h1.crash();

    let mut h2 = Harness::restart(config(1), fake, &journal, 90_000_000);
    let again = h2.submit(request(p, 0, 0, "try again tomorrow"));
    h2.close_and_drain();
    assert_eq!(
        h2.sent(Step::Create),
        1,
        "the expired batch's requests are submitted anew"
    );
    assert!(
        h2.only(again).is_echo(model_of(p, 0), "try again tomorrow"),
        "{:?}",
        h2.only(again)
    );
}

/// Regression: a line that failed with a status the SDKs retry (429, 5xx) was cached as the
/// request's answer, so every retry (the SDK's own, an AI SDK / LangChain retry, a re-run) got the
/// same error back at once and the request could never run again until the cache was deleted.
/// Permanent errors (400) stay cached like any answer.
#[test]
fn a_transient_line_error_is_not_cached_and_a_retry_runs_the_request_again() {
    let cases = [
        (ProviderId::OpenAi, "t #err=500", 500, "p #err=400"),
        (ProviderId::OpenAi, "t #err=429", 429, "p #err=400"),
        (
            ProviderId::Anthropic,
            "t #err=overloaded_error",
            529,
            "p #err=invalid_request_error",
        ),
        (ProviderId::Gemini, "t #err=14", 503, "p #err=3"),
    ];
    for (p, transient, status, permanent) in cases {
        let mut h = Harness::new(config(2));
        let t1 = h.submit(request(p, 0, 0, transient));
        let p1 = h.submit(request(p, 0, 0, permanent));
        h.run();
        assert_eq!(h.sent(Step::Create), 1, "{p}");
        assert_eq!(h.only(t1).status(), Some(status), "{p}");
        assert_eq!(h.only(p1).status(), Some(400), "{p}");

        // A retry in the same run: the transient one travels again, the permanent one is cached.
        let t2 = h.submit(request(p, 0, 0, transient));
        let p2 = h.submit(request(p, 0, 0, permanent));
        h.run();
        assert_eq!(
            h.sent(Step::Create),
            2,
            "{p}: the transient error's retry is a new batch"
        );
        assert_eq!(status_body(h.only(t2)).0, status, "{p}");
        assert_eq!(
            status_body(h.only(p2)),
            status_body(h.only(p1)),
            "{p}: cached"
        );
        h.close_and_drain();

        // A re-run on the journal: the same.
        let now = h.now;
        let permanent_answer = status_body(h.only(p1));
        let (fake, journal) = h.crash();
        let mut h2 = Harness::restart(config(2), fake, &journal, now + 60_000);
        let t3 = h2.submit(request(p, 0, 0, transient));
        let p3 = h2.submit(request(p, 0, 0, permanent));
        h2.close_and_drain();
        assert_eq!(
            h2.sent(Step::Create),
            1,
            "{p}: the transient request runs again"
        );
        let polled: HashSet<String> = h2
            .sends
            .iter()
            .filter_map(classify_call)
            .filter(|c| c.1 == Step::Poll)
            .map(|c| c.2)
            .collect();
        let newest = h2.fake.batches.last().expect("a batch").id.clone();
        assert_eq!(
            polled,
            HashSet::from([newest]),
            "{p}: no old batch is resumed for it"
        );
        assert_eq!(status_body(h2.only(t3)).0, status, "{p}");
        assert_eq!(status_body(h2.only(p3)), permanent_answer, "{p}: cached");
    }
}

#[test]
fn a_compacted_journal_still_answers_every_hit_and_resumes_a_submitted_batch() {
    let p = ProviderId::OpenAi;
    let texts = ["k0", "k1", "k2", "k3"];
    let mut clean = Harness::new(config(1));
    let ids: Vec<RequestId> = texts
        .iter()
        .map(|t| clean.submit(request(p, 0, 0, t)))
        .collect();
    clean.close_and_drain();
    let expected: Vec<(u16, String)> = ids.iter().map(|id| status_body(clean.only(*id))).collect();

    // Run 1: three one-request batches end (intent, submitted, result each), a fourth is
    // submitted when the process dies.
    let mut h1 = Harness::new(config(1));
    for t in &texts[..3] {
        h1.submit(request(p, 0, 0, t));
    }
    h1.step_until(|h| h.eng.open_requests() == 0);
    h1.submit(request(p, 0, 0, texts[3]));
    h1.step_until(|h| {
        record_types(&h.journal)
            .iter()
            .filter(|k| *k == "submitted")
            .count()
            == 4
    });
    let now = h1.now;
    let (fake, journal) = h1.crash();
    assert_eq!(journal.len(), 11);

    let (mut h2, compacted) = Harness::restart_compacted(config(1), fake, &journal, now + 1_000);
    let compacted = compacted.expect("7 of 11 lines are superseded");
    assert_eq!(
        record_types(&compacted),
        ["result", "result", "result", "submitted"],
        "the answers and the live batch, nothing else"
    );
    let ids: Vec<RequestId> = texts
        .iter()
        .map(|t| h2.submit(request(p, 0, 0, t)))
        .collect();
    h2.close_and_drain();
    assert_eq!(
        h2.sent(Step::Create),
        0,
        "the submitted batch is resumed, not created again"
    );
    assert_eq!(h2.sent(Step::Upload), 0);
    let got: Vec<(u16, String)> = ids.iter().map(|id| status_body(h2.only(*id))).collect();
    assert_eq!(got, expected);

    // Run 3 loads the compacted journal and run 2's appends: every call is a hit.
    let mut stored = compacted;
    stored.extend(h2.journal.iter().cloned());
    let (fake, _) = h2.crash();
    let mut h3 = Harness::restart(config(1), fake, &stored, now + 100_000);
    let ids: Vec<RequestId> = texts
        .iter()
        .map(|t| h3.submit(request(p, 0, 0, t)))
        .collect();
    assert_eq!(h3.eng.open_requests(), 0, "answered on submit");
    h3.close_and_drain();
    assert!(h3.sends.is_empty());
    let got: Vec<(u16, String)> = ids.iter().map(|id| status_body(h3.only(*id))).collect();
    assert_eq!(got, expected);
}
