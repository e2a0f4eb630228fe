//! Cancel and close: a cancelled request is never sent (or fails at once if its batch went out),
//! and close flushes, drains once and refuses later requests.

mod support;

use batchling_core::interceptor::Input;
use batchling_core::providers::ProviderId;

use support::*;

#[test]
fn a_queued_request_cancelled_is_never_sent_and_fails_cancelled() {
    let mut h = Harness::new(config(10));
    let a = h.submit(request(ProviderId::OpenAi, 0, 0, "keep"));
    let b = h.submit(request(ProviderId::OpenAi, 0, 0, "drop"));
    h.handle(Input::Cancel { request: b });
    assert_eq!(h.only(b).fail_code(), Some("ERR_BATCHLING_CANCELLED"));
    h.handle(Input::Cancel { request: b }); // again: nothing more
    h.close_and_drain();
    assert_eq!(
        h.fake.batches[0].lines.len(),
        1,
        "the cancelled request never left"
    );
    assert!(h.only(a).is_echo("gpt-4o-mini", "keep"));
}

#[test]
fn a_request_cancelled_after_its_batch_went_out_fails_at_once_and_its_result_is_still_cached() {
    let mut h = Harness::new(config(2));
    let a = h.submit(request(ProviderId::Anthropic, 0, 0, "a"));
    let b = h.submit(request(ProviderId::Anthropic, 0, 0, "b"));
    let b2 = h.submit(request(ProviderId::Anthropic, 0, 0, "b"));
    h.step_until(|h| h.journal_has("submitted"));
    h.handle(Input::Cancel { request: b });
    assert_eq!(h.only(b).fail_code(), Some("ERR_BATCHLING_CANCELLED"));
    h.close_and_drain();
    assert!(h.only(a).is_echo(model_of(ProviderId::Anthropic, 0), "a"));
    assert!(
        h.only(b2).is_echo(model_of(ProviderId::Anthropic, 0), "b"),
        "the other waiter still gets it"
    );
    let results = h
        .journal
        .iter()
        .filter(|l| l.contains("\"type\":\"result\""))
        .count();
    assert_eq!(results, 2);
}

#[test]
fn close_flushes_drains_once_and_refuses_later_requests() {
    let mut h = Harness::new(config(10));
    let a = h.submit(request(ProviderId::Gemini, 0, 0, "last"));
    h.handle(Input::Close);
    assert_eq!(h.sends.len(), 1, "close cuts at once");
    let late = h.submit(request(ProviderId::Gemini, 0, 0, "late"));
    assert_eq!(h.only(late).fail_code(), Some("ERR_BATCHLING_CLOSED"));
    h.run();
    assert_eq!(h.drained, 1);
    assert!(h.only(a).is_echo(model_of(ProviderId::Gemini, 0), "last"));
    h.check_invariants();
}

// ---- regression ----------------------------------------------------------------------------

/// Regression (fixed in 6dfa05b): `Interceptor::cancel` dropped every pending batcher action after
/// `Batcher::handle(Cancel)`, but the batcher also cuts windows that elapsed by then, so a
/// `RunBatch` is thrown away and its requests are stranded (never sent, never answered, no
/// `Drained`).
#[test]
fn a_cancel_arriving_after_an_elapsed_window_does_not_strand_the_cut_batch() {
    let mut h = Harness::new(config(10));
    let a = h.submit(request(ProviderId::OpenAi, 0, 0, "keep"));
    let b = h.submit(request(ProviderId::OpenAi, 0, 1, "drop")); // another queue
                                                                 // The host's timer for the window (1000) has not fired yet when the abort comes in.
    h.now = WINDOW + 5;
    h.handle(Input::Cancel { request: b });
    assert_eq!(h.only(b).fail_code(), Some("ERR_BATCHLING_CANCELLED"));
    h.handle(Input::Close);
    h.run();
    assert_eq!(
        h.sent(Step::Create),
        1,
        "the batch cut during the cancel must still go out"
    );
    assert!(h.answers.contains_key(&a), "request {a} was never answered");
    assert!(h.only(a).is_echo("gpt-4o-mini", "keep"));
    assert_eq!(h.drained, 1);
}
