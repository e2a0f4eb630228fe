//! The providers' enqueued-token limits: a batch refused for them (OpenAI: `failed` with
//! `token_limit_exceeded` after validating; Anthropic and Gemini: create answered 429) ran
//! nothing, so its requests are submitted again once there is room, never while another live
//! batch holds them; `maxEnqueuedTokens` keeps under a known limit before the provider refuses.

mod support;

use batchling_core::http::HttpRequest;
use batchling_core::interceptor::{Input, LifecycleEvent};
use batchling_core::providers::ProviderId;
use serde_json::Value;

use support::*;

/// A request of about `TOKENS` estimated tokens (its JSON body's length / 4), text `i`.
fn big(p: ProviderId, i: usize) -> (HttpRequest, String) {
    let text = format!("request {i:02} {}", "lorem ipsum ".repeat(40));
    (request(p, 0, 0, &text), text)
}

/// The estimated tokens of one such request, as the fake counts them.
fn tokens_of(req: &HttpRequest) -> u64 {
    let body: Value = serde_json::from_str(&req.body).unwrap();
    body.to_string().len() as u64 / 4
}

fn limit_events(h: &Harness) -> Vec<(usize, u64, Option<u64>, usize)> {
    h.events
        .iter()
        .filter_map(|e| match e {
            LifecycleEvent::EnqueuedLimit {
                requests,
                tokens,
                limit_tokens,
                batches_in_flight,
                ..
            } => Some((*requests, *tokens, *limit_tokens, *batches_in_flight)),
            _ => None,
        })
        .collect()
}

fn refused_batches(h: &Harness) -> usize {
    h.fake
        .batches
        .iter()
        .filter(|b| b.fate == Fate::TokenLimit)
        .count()
}

/// Submits `n` big requests and returns (id, text) of each.
fn submit_big(h: &mut Harness, p: ProviderId, n: usize) -> Vec<(u64, String)> {
    (0..n)
        .map(|i| {
            let (req, text) = big(p, i);
            (h.submit(req), text)
        })
        .collect()
}

#[test]
fn an_openai_batch_refused_for_the_limit_is_submitted_again_once_the_batch_before_it_ends() {
    let per = tokens_of(&big(ProviderId::OpenAi, 0).0);
    let mut fake = Fake::new();
    fake.token_cap = Some(per * 5 / 2); // two requests fit, four do not
    let mut h = Harness::with(config(2), true, fake);
    let sent = submit_big(&mut h, ProviderId::OpenAi, 4);
    h.close_and_drain();
    for (id, text) in &sent {
        assert!(
            h.only(*id).is_echo("gpt-4o-mini", text),
            "{:?}",
            h.only(*id)
        );
    }
    // Batch 2 was refused while batch 1 ran; its requests went again, alone, once it ended.
    assert_eq!(refused_batches(&h), 1);
    let batches = &h.fake.batches;
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[1].fate, Fate::TokenLimit);
    let ids = |i: usize| -> Vec<&String> { batches[i].lines.iter().map(|(c, _)| c).collect() };
    assert_eq!(
        ids(1),
        ids(2),
        "the refused requests, again, and nothing else"
    );
    assert!(h.fake.violations.is_empty(), "{:#?}", h.fake.violations);
    // Journalled as released, so a re-run does not resume the refused batch.
    let types = record_types(&h.journal);
    assert!(types.iter().any(|t| t == "released"), "{types:?}");
    // Said once, with the limit the provider stated.
    let events = limit_events(&h);
    assert_eq!(events.len(), 1, "{events:?}");
    let (requests, tokens, limit, in_flight) = events[0];
    assert_eq!((requests, limit, in_flight), (2, Some(per * 5 / 2), 1));
    assert!(
        tokens >= 2 * per - 2 && tokens <= 2 * per + 2,
        "{tokens} vs {per}"
    );
}

#[test]
fn the_stated_limit_is_kept_to_afterwards_and_a_batch_too_big_alone_is_split() {
    let per = tokens_of(&big(ProviderId::OpenAi, 0).0);
    let mut fake = Fake::new();
    fake.token_cap = Some(per * 5 / 2);
    // The first batch (four requests) is refused with nothing else in flight.
    let mut h = Harness::with(config(4), true, fake);
    let sent = submit_big(&mut h, ProviderId::OpenAi, 4);
    h.close_and_drain();
    for (id, text) in &sent {
        assert!(
            h.only(*id).is_echo("gpt-4o-mini", text),
            "{:?}",
            h.only(*id)
        );
    }
    let sizes: Vec<usize> = h.fake.batches.iter().map(|b| b.lines.len()).collect();
    assert_eq!(
        sizes,
        vec![4, 2, 2],
        "refused whole, then split under the stated limit"
    );
    assert_eq!(refused_batches(&h), 1, "the halves go one after the other");
    assert!(h.fake.violations.is_empty(), "{:#?}", h.fake.violations);
}

#[test]
fn max_enqueued_tokens_keeps_under_a_known_limit_before_the_provider_refuses() {
    let per = tokens_of(&big(ProviderId::OpenAi, 0).0);
    let mut fake = Fake::new();
    fake.token_cap = Some(per * 5 / 2);
    let mut cfg = config(5);
    cfg.max_enqueued_tokens = Some(per * 5 / 2);
    let mut h = Harness::with(cfg, true, fake);
    let sent = submit_big(&mut h, ProviderId::OpenAi, 5);
    h.close_and_drain();
    for (id, text) in &sent {
        assert!(
            h.only(*id).is_echo("gpt-4o-mini", text),
            "{:?}",
            h.only(*id)
        );
    }
    let sizes: Vec<usize> = h.fake.batches.iter().map(|b| b.lines.len()).collect();
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(
        refused_batches(&h),
        0,
        "never refused: one batch in flight at a time"
    );
    let events = limit_events(&h);
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e.2 == Some(per * 5 / 2) && e.3 == 1),
        "{events:?}"
    );
    assert!(h.fake.violations.is_empty(), "{:#?}", h.fake.violations);
}

#[test]
fn a_refusal_with_nothing_in_flight_backs_off_and_tries_again() {
    let mut fake = Fake::new();
    fake.fates = [Fate::TokenLimit].into();
    let mut h = Harness::with(config(2), true, fake);
    let a = h.submit(request(ProviderId::OpenAi, 0, 0, "a"));
    let b = h.submit(request(ProviderId::OpenAi, 0, 0, "b"));
    h.close_and_drain();
    assert!(h.only(a).is_echo("gpt-4o-mini", "a"));
    assert!(h.only(b).is_echo("gpt-4o-mini", "b"));
    assert_eq!(h.fake.batches.len(), 2);
    assert_eq!(h.fake.batches[1].fate, Fate::Complete);
    assert!(h.fake.violations.is_empty(), "{:#?}", h.fake.violations);
}

#[test]
fn a_request_the_provider_refuses_even_alone_fails_once_after_the_attempts() {
    let per = tokens_of(&big(ProviderId::OpenAi, 0).0);
    let mut fake = Fake::new();
    fake.token_cap = Some(per / 2);
    let mut h = Harness::with(config(1), true, fake);
    let sent = submit_big(&mut h, ProviderId::OpenAi, 1);
    h.close_and_drain();
    let answer = h.only(sent[0].0);
    assert_eq!(
        answer.fail_code(),
        Some("ERR_BATCHLING_PROVIDER_UNAVAILABLE")
    );
    assert_eq!(
        refused_batches(&h),
        4,
        "call_attempts refusals, then the error"
    );
}

#[test]
fn an_anthropic_create_answered_429_waits_for_the_batch_in_flight_instead_of_retrying() {
    let per = tokens_of(&big(ProviderId::Anthropic, 0).0);
    let mut fake = Fake::new();
    fake.token_cap = Some(per * 5 / 2);
    let mut h = Harness::with(config(2), true, fake);
    let sent = submit_big(&mut h, ProviderId::Anthropic, 4);
    h.close_and_drain();
    let model = model_of(ProviderId::Anthropic, 0);
    for (id, text) in &sent {
        assert!(h.only(*id).is_echo(model, text), "{:?}", h.only(*id));
    }
    assert_eq!(h.fake.batches.len(), 2);
    assert_eq!(
        h.sent(Step::Create),
        3,
        "one create refused, then sent once the first ended"
    );
    let create_retries = h
        .events
        .iter()
        .filter(|e| matches!(e, LifecycleEvent::Retry { step, .. } if step == "create"))
        .count();
    assert_eq!(create_retries, 0);
    assert_eq!(limit_events(&h).len(), 1);
    assert!(h.fake.violations.is_empty(), "{:#?}", h.fake.violations);
}

#[test]
fn a_gemini_create_answered_resource_exhausted_waits_the_same_way() {
    let per = tokens_of(&big(ProviderId::Gemini, 0).0);
    let mut fake = Fake::new();
    fake.token_cap = Some(per * 5 / 2);
    let mut h = Harness::with(config(2), true, fake);
    let sent = submit_big(&mut h, ProviderId::Gemini, 4);
    h.close_and_drain();
    let model = model_of(ProviderId::Gemini, 0);
    for (id, text) in &sent {
        assert!(h.only(*id).is_echo(model, text), "{:?}", h.only(*id));
    }
    assert_eq!(h.fake.batches.len(), 2);
    assert_eq!(h.sent(Step::Create), 3);
    assert!(h.fake.violations.is_empty(), "{:#?}", h.fake.violations);
}

#[test]
fn a_rerun_after_a_refusal_submits_the_requests_anew_rather_than_resuming_the_refused_batch() {
    let mut fake = Fake::new();
    fake.fates = [Fate::TokenLimit].into();
    let mut h = Harness::with(config(2), true, fake);
    h.submit(request(ProviderId::OpenAi, 0, 0, "a"));
    h.submit(request(ProviderId::OpenAi, 0, 0, "b"));
    // Run until the refusal is journalled, then die.
    h.step_until(|h| record_types(&h.journal).iter().any(|t| t == "released"));
    let now = h.now;
    let (fake, journal) = h.crash();
    let mut h2 = Harness::restart(config(2), fake, &journal, now + 1);
    let a = h2.submit(request(ProviderId::OpenAi, 0, 0, "a"));
    let b = h2.submit(request(ProviderId::OpenAi, 0, 0, "b"));
    h2.handle(Input::Flush);
    h2.close_and_drain();
    assert!(h2.only(a).is_echo("gpt-4o-mini", "a"));
    assert!(h2.only(b).is_echo("gpt-4o-mini", "b"));
    assert_eq!(h2.fake.batches.len(), 2);
    assert!(h2.fake.violations.is_empty(), "{:#?}", h2.fake.violations);
}

#[test]
fn the_report_shows_the_requests_waiting_for_headroom_while_they_wait() {
    let per = tokens_of(&big(ProviderId::OpenAi, 0).0);
    let mut fake = Fake::new();
    fake.token_cap = Some(per * 5 / 2);
    fake.polls_before_done = 3;
    let mut h = Harness::with(config(2), true, fake);
    submit_big(&mut h, ProviderId::OpenAi, 4);
    let waiting = |h: &Harness| h.eng.report()[0].waiting_for_headroom;
    assert_eq!(waiting(&h), 0);
    // Until the refused batch's requests wait for the first batch to end.
    h.step_until(|h| !limit_events(h).is_empty());
    assert_eq!(waiting(&h), 2);
    h.close_and_drain();
    assert_eq!(waiting(&h), 0, "all sent, none waits");
}

#[test]
fn a_dry_run_splits_under_max_enqueued_tokens_and_reports_the_requests_that_would_wait() {
    let per = tokens_of(&big(ProviderId::OpenAi, 0).0);
    let mut cfg = config(5);
    cfg.dry_run = true;
    cfg.max_enqueued_tokens = Some(per * 5 / 2);
    let mut h = Harness::new(cfg);
    let sent = submit_big(&mut h, ProviderId::OpenAi, 5);
    h.close_and_drain();
    for (id, _) in &sent {
        assert_eq!(h.only(*id).status(), Some(200));
    }
    let rows = h.eng.report();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].requests, rows[0].batches), (5, 3));
    assert_eq!(
        rows[0].waiting_for_headroom, 3,
        "the requests after the first part"
    );
    assert!(h.fake.batches.is_empty(), "a dry run sends nothing");
}
