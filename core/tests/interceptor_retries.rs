//! Retries: `retry-after`, backoff with jitter and a cap, giving up after `call_attempts`, and
//! creates whose answer was lost (found by tag, created once more, or failed as ambiguous).

mod support;

use batchling_core::interceptor::{Input, RequestId};
use batchling_core::providers::ProviderId;
use serde_json::Value;

use support::*;

// ---- retries -------------------------------------------------------------------------------

#[test]
fn a_429_with_retry_after_delays_the_retry_by_that_many_seconds() {
    for p in FAKE_PROVIDERS {
        let mut h = Harness::new(config(1));
        let first = if p == ProviderId::OpenAi {
            Step::Upload
        } else {
            Step::Create
        };
        h.fake.fault(Some(p), first, Fault::Status(429, Some("3")));
        h.now = 10_000;
        let id = h.submit(request(p, 0, 0, "slow down"));
        assert!(h.deliver_next());
        assert_eq!(
            h.eng.next_deadline(),
            Some(13_000),
            "{p}: Retry-After: 3 → 3000 ms"
        );
        assert_eq!(
            h.retry_delays(),
            vec![(format!("{first:?}").to_lowercase(), 3_000)]
        );
        h.tick_at(12_999);
        assert!(h.inflight.is_empty(), "{p}: no retry before Retry-After");
        h.tick_at(13_000);
        assert_eq!(h.inflight.len(), 1, "{p}: retried at 13000");
        h.close_and_drain();
        assert!(h.only(id).is_echo(model_of(p, 0), "slow down"));
        assert_eq!(h.sent(first), 2);
    }
}

#[test]
fn server_errors_back_off_exponentially_with_jitter_and_a_cap() {
    for (max_backoff, failures) in [(60_000u64, 5usize), (2_500, 5)] {
        let mut cfg = config(1);
        cfg.call_attempts = 8;
        cfg.max_backoff_ms = max_backoff;
        let mut h = Harness::new(cfg);
        for _ in 0..failures {
            h.fake.fault(
                Some(ProviderId::Anthropic),
                Step::Poll,
                Fault::Status(500, None),
            );
        }
        let id = h.submit(request(ProviderId::Anthropic, 0, 0, "again"));
        h.deliver_all(); // create
        let mut delays = Vec::new();
        for n in 0..failures {
            let due = h.eng.next_deadline().unwrap();
            h.tick_at(due);
            assert_eq!(h.inflight.len(), 1);
            let before = h.now;
            h.deliver_all();
            let next = h.eng.next_deadline().unwrap();
            let delay = next - before;
            let step = (1_000u64 << n).min(max_backoff);
            assert!(
                (step / 2..=step).contains(&delay),
                "failure {}: delay {delay} outside [{}, {step}]",
                n + 1,
                step / 2
            );
            delays.push(delay);
        }
        if max_backoff == 60_000 {
            // Uncapped, each range starts where the previous one ends.
            assert!(
                delays.windows(2).all(|w| w[0] <= w[1]),
                "delays grow: {delays:?}"
            );
            assert!(
                delays[4] >= 8_000,
                "the fifth wait is at least 8 s: {delays:?}"
            );
        }
        let logged: Vec<u64> = h.retry_delays().into_iter().map(|(_, d)| d).collect();
        assert_eq!(logged, delays, "Retry events report the waits");
        h.close_and_drain();
        assert!(h
            .only(id)
            .is_echo(model_of(ProviderId::Anthropic, 0), "again"));
    }
}

#[test]
fn callers_fail_with_provider_unavailable_after_call_attempts_failures() {
    for (p, step) in [
        (ProviderId::OpenAi, Step::Poll),
        (ProviderId::Gemini, Step::Create),
        (ProviderId::Anthropic, Step::Download),
        (ProviderId::OpenAi, Step::Upload),
    ] {
        let mut cfg = config(10);
        cfg.call_attempts = 3;
        let mut h = Harness::new(cfg);
        for _ in 0..10 {
            h.fake.fault(Some(p), step, Fault::Status(503, None));
        }
        let a = h.submit(request(p, 0, 0, "x"));
        let b = h.submit(request(p, 0, 0, "x"));
        let c = h.submit(request(p, 0, 0, "y"));
        h.close_and_drain();
        assert_eq!(h.sent(step), 3, "{p} {step:?}: exactly call_attempts tries");
        for id in [a, b, c] {
            assert_eq!(
                h.only(id).fail_code(),
                Some("ERR_BATCHLING_PROVIDER_UNAVAILABLE"),
                "{p} {step:?}"
            );
        }
    }
}

#[test]
fn transport_errors_are_retried_like_server_errors() {
    for p in FAKE_PROVIDERS {
        let mut h = Harness::new(config(1));
        h.fake.fault(Some(p), Step::Poll, Fault::Transport);
        h.fake.fault(Some(p), Step::Poll, Fault::Transport);
        let id = h.submit(request(p, 0, 0, "flaky"));
        h.close_and_drain();
        assert!(h.only(id).is_echo(model_of(p, 0), "flaky"), "{p}");
        assert_eq!(h.sent(Step::Create), 1);
    }
}

#[test]
fn a_401_on_create_answers_every_caller_with_that_401_and_is_not_retried() {
    for p in FAKE_PROVIDERS {
        let mut h = Harness::new(config(10));
        h.fake
            .fault(Some(p), Step::Create, Fault::Status(401, None));
        let a = h.submit(request(p, 0, 0, "x"));
        let b = h.submit(request(p, 0, 0, "x"));
        let c = h.submit(request(p, 0, 0, "y"));
        h.close_and_drain();
        assert_eq!(h.sent(Step::Create), 1, "{p}: a 401 is not retried");
        let expected = error_response(p, 401, None);
        for id in [a, b, c] {
            let answer = h.only(id);
            assert_eq!(answer.status(), Some(401), "{p}");
            assert_eq!(
                answer.json(),
                serde_json::from_str::<Value>(&expected.body).unwrap(),
                "{p}"
            );
        }
        assert!(
            !h.journal_has("result"),
            "{p}: a refused batch call is not a cached answer"
        );
    }
}

// ---- ambiguous creates ---------------------------------------------------------------------

#[test]
fn a_create_whose_answer_was_lost_is_found_by_tag_and_never_created_again() {
    for p in [ProviderId::OpenAi, ProviderId::Gemini] {
        let mut h = Harness::new(config(3));
        h.fake.fault(Some(p), Step::Create, Fault::LostAnswer);
        let ids: Vec<RequestId> = (0..3)
            .map(|i| h.submit(request(p, 0, 0, &format!("q{i}"))))
            .collect();
        h.close_and_drain();
        assert_eq!(h.fake.served(Step::Create), 1, "{p}: no second create");
        assert_eq!(h.fake.batches.len(), 1);
        let steps = h.sent_steps();
        let find = steps
            .iter()
            .position(|s| *s == Step::Find)
            .expect("a find after the lost create");
        let create = steps.iter().position(|s| *s == Step::Create).unwrap();
        assert!(create < find, "{p}: {steps:?}");
        assert_eq!(
            h.retry_delays().first().map(|(s, _)| s.as_str()),
            Some("find")
        );
        for (i, id) in ids.iter().enumerate() {
            assert!(h.only(*id).is_echo(model_of(p, 0), &format!("q{i}")), "{p}");
        }
    }
}

#[test]
fn a_create_that_never_reached_the_provider_is_created_exactly_once_more() {
    for p in [ProviderId::OpenAi, ProviderId::Gemini] {
        let mut h = Harness::new(config(3));
        h.fake.fault(Some(p), Step::Create, Fault::Transport);
        let ids: Vec<RequestId> = (0..3)
            .map(|i| h.submit(request(p, 0, 0, &format!("q{i}"))))
            .collect();
        h.close_and_drain();
        let steps = h.sent_steps();
        let creates: Vec<usize> = steps
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == Step::Create)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(creates.len(), 2, "{p}: exactly one new create: {steps:?}");
        let find = steps.iter().position(|s| *s == Step::Find).expect("a find");
        assert!(
            creates[0] < find && find < creates[1],
            "{p}: look before creating again: {steps:?}"
        );
        assert_eq!(h.fake.batches.len(), 1, "{p}: one batch at the provider");
        assert_eq!(h.fake.batches[0].lines.len(), 3);
        for (i, id) in ids.iter().enumerate() {
            assert!(h.only(*id).is_echo(model_of(p, 0), &format!("q{i}")), "{p}");
        }
    }
}

#[test]
fn an_anthropic_create_whose_answer_was_lost_fails_ambiguous_and_is_not_created_again() {
    for fault in [Fault::LostAnswer, Fault::Transport] {
        let mut h = Harness::new(config(2));
        h.fake
            .fault(Some(ProviderId::Anthropic), Step::Create, fault.clone());
        let a = h.submit(request(ProviderId::Anthropic, 0, 0, "a"));
        let b = h.submit(request(ProviderId::Anthropic, 0, 0, "b"));
        h.close_and_drain();
        assert_eq!(h.sent(Step::Create), 1, "{fault:?}: never created twice");
        assert_eq!(
            h.sent(Step::Find),
            0,
            "Anthropic batches carry no tag to find"
        );
        for id in [a, b] {
            assert_eq!(
                h.only(id).fail_code(),
                Some("ERR_BATCHLING_AMBIGUOUS_CREATE"),
                "{fault:?}"
            );
        }
    }
}

/// Regression (fixed in 6dfa05b): a job held one `retry_at` slot, but OpenAI downloads its output
/// and error files in parallel; when both fail, the second retry overwrites the first, one file is
/// never fetched again, and its callers wait forever.
#[test]
fn parallel_download_failures_are_each_retried() {
    let mut h = Harness::new(config(2));
    h.fake.fault(
        Some(ProviderId::OpenAi),
        Step::Download,
        Fault::Status(500, None),
    );
    h.fake.fault(
        Some(ProviderId::OpenAi),
        Step::Download,
        Fault::Status(500, None),
    );
    let ok_id = h.submit(request(ProviderId::OpenAi, 0, 0, "fine"));
    let err_id = h.submit(request(ProviderId::OpenAi, 0, 0, "bad #err=400"));
    h.handle(Input::Close);
    h.run();
    assert_eq!(
        h.sent(Step::Download),
        4,
        "both downloads are tried again: {:?}",
        h.sent_steps()
    );
    assert!(
        h.answers.contains_key(&ok_id) && h.answers.contains_key(&err_id),
        "a caller was stranded: {:?}",
        h.answers
    );
    assert!(h.only(ok_id).is_echo("gpt-4o-mini", "fine"));
    assert_eq!(h.only(err_id).status(), Some(400));
    assert_eq!(h.drained, 1);
}
