//! Aborts: the engine tells a client's own timeout (the request stays in its batch and is
//! answered by it) from its caller's abort (cancelled at once, as by `Cancel`), from the timeout
//! headers the request was submitted with, whether the abort's reason is a `TimeoutError`, and
//! the time since the call reached the host; it warns once per kind about aborts that may have been a client's
//! timeout it cannot outlive.

mod support;

use batchling_core::http::HttpRequest;
use batchling_core::interceptor::{Input, RequestId};
use batchling_core::providers::ProviderId;

use support::*;

/// Timer callbacks may run this much before their time.
const SLACK: u64 = 20;
const STAINLESS_SHORTEST_DEFAULT: u64 = 60_000;
const CALLER_TIMEOUT_WARNING: &str =
    "a batched call was aborted by a timeout signal its caller gave the SDK";
const UNDECLARED_WARNING: &str =
    "a batched call was aborted within a minute by a client that does not declare its timeout";

fn with_headers(mut req: HttpRequest, headers: &[(&str, &str)]) -> HttpRequest {
    for (name, value) in headers {
        req.headers.push((name.to_string(), value.to_string()));
    }
    req
}

fn chat(text: &str, headers: &[(&str, &str)]) -> HttpRequest {
    // Gemini's: the test requests of the other two come with a Stainless SDK's headers.
    with_headers(request(ProviderId::Gemini, 0, 0, text), headers)
}

/// A harness at `t`, one request with `headers` submitted then, aborted `elapsed` ms later.
fn abort_after(
    headers: &[(&str, &str)],
    elapsed: u64,
    timeout_reason: bool,
) -> (Harness, RequestId) {
    let mut h = Harness::new(config(10));
    h.now = 5_000;
    let id = h.submit(chat("x", headers));
    h.now += elapsed;
    h.handle(Input::Abort {
        request: id,
        timeout_reason,
    });
    (h, id)
}

fn kept(h: &Harness, id: RequestId) -> bool {
    !h.answers.contains_key(&id)
}

fn cancelled(h: &Harness, id: RequestId) -> bool {
    h.only(id)
        == &Answer::Fail {
            code: "ERR_BATCHLING_CANCELLED".into(),
            message: "request cancelled by its AbortSignal".into(),
        }
}

// ---- declared timeouts ---------------------------------------------------------------------

#[test]
fn a_declared_stainless_timeout_is_outlived_from_its_time_less_the_slack() {
    let timeout = [("x-stainless-timeout", "2")];
    let (h, id) = abort_after(&timeout, 2_000 - SLACK, false);
    assert!(kept(&h, id), "the client's own timer: kept");
    let (h, id) = abort_after(&timeout, 2_000 - SLACK - 1, false);
    assert!(
        cancelled(&h, id),
        "sooner than the declared timeout: the caller's"
    );
    assert!(h.warnings().is_empty(), "a caller's abort is no surprise");
}

#[test]
fn a_declared_google_timeout_is_rounded_up_so_its_floor_is_a_second_less() {
    let timeout = [("x-server-timeout", "3")];
    let (h, id) = abort_after(&timeout, 2_000 - SLACK, false);
    assert!(kept(&h, id));
    let (h, id) = abort_after(&timeout, 2_000 - SLACK - 1, false);
    assert!(cancelled(&h, id));
    let (h, id) = abort_after(&[("x-server-timeout", "0")], 0, false);
    assert!(
        kept(&h, id),
        "a floor of 0 s: any abort may be the client's"
    );
}

#[test]
fn the_stainless_header_wins_over_google_and_names_are_case_insensitive() {
    let both = [("X-Server-Timeout", "100"), ("X-Stainless-Timeout", "1")];
    let (h, id) = abort_after(&both, 1_000, false);
    assert!(
        kept(&h, id),
        "judged by x-stainless-timeout (1 s), not x-server-timeout"
    );
}

#[test]
fn a_timeout_header_that_is_not_whole_seconds_is_no_declaration() {
    for value in ["1.5", "", "abc", "-1", "1s"] {
        let (h, id) = abort_after(&[("x-stainless-timeout", value)], 10_000, false);
        assert!(
            cancelled(&h, id),
            "{value:?} declares nothing: a plain abort is the caller's"
        );
    }
    let (h, id) = abort_after(&[("x-stainless-timeout", " 2 ")], 2_000, false);
    assert!(kept(&h, id), "surrounding spaces are trimmed");
    let (h, id) = abort_after(
        &[("x-stainless-timeout", "99999999999999999999999")],
        u32::MAX as u64,
        false,
    );
    assert!(
        cancelled(&h, id),
        "a timeout too long to hold is never reached"
    );
}

#[test]
fn a_timeout_signal_given_to_a_client_that_declares_its_timeout_is_cancelled_with_one_warning() {
    let mut h = Harness::new(config(10));
    let timeout = [("x-stainless-timeout", "1")];
    let a = h.submit(chat("a", &timeout));
    let b = h.submit(chat("b", &timeout));
    h.now = 5_000; // past the declared timeout: the reason still says it was the caller's signal
    for request in [a, b] {
        h.handle(Input::Abort {
            request,
            timeout_reason: true,
        });
    }
    assert!(cancelled(&h, a) && cancelled(&h, b));
    let warnings = h.warnings();
    assert_eq!(warnings.len(), 1, "once per engine: {warnings:?}");
    assert!(
        warnings[0].starts_with(CALLER_TIMEOUT_WARNING),
        "{}",
        warnings[0]
    );
}

// ---- clients that declare nothing ----------------------------------------------------------

#[test]
fn an_undeclared_stainless_client_is_outlived_after_the_shortest_default_and_warned_before() {
    let stainless = [("x-stainless-retry-count", "0")];
    let (h, id) = abort_after(&stainless, STAINLESS_SHORTEST_DEFAULT - SLACK, false);
    assert!(kept(&h, id));
    assert!(h.warnings().is_empty());
    let (h, id) = abort_after(&stainless, STAINLESS_SHORTEST_DEFAULT - SLACK - 1, false);
    assert!(cancelled(&h, id));
    let warnings = h.warnings();
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].starts_with(UNDECLARED_WARNING),
        "{}",
        warnings[0]
    );
    // Timing decides, not the reason.
    let (h, id) = abort_after(&stainless, 0, true);
    assert!(cancelled(&h, id));
    assert_eq!(h.warnings().len(), 1);
}

#[test]
fn without_any_header_a_timeout_error_is_the_clients_and_any_other_abort_the_callers() {
    let (h, id) = abort_after(&[], 0, true);
    assert!(
        kept(&h, id),
        "AbortSignal.timeout of a client that declares nothing"
    );
    let (h, id) = abort_after(&[], 3_600_000, false);
    assert!(
        cancelled(&h, id),
        "however late, a reasonless abort is the caller's"
    );
    assert!(h.warnings().is_empty());
}

#[test]
fn each_kind_is_warned_once_per_engine() {
    let mut h = Harness::new(config(10));
    let declared = [("x-stainless-timeout", "600")];
    let stainless = [("x-stainless-retry-count", "0")];
    let ids: Vec<RequestId> = [
        chat("a", &declared),
        chat("b", &stainless),
        chat("c", &declared),
        chat("d", &stainless),
    ]
    .into_iter()
    .map(|req| h.submit(req))
    .collect();
    for (i, &request) in ids.iter().enumerate() {
        let timeout_reason = i % 2 == 0;
        h.handle(Input::Abort {
            request,
            timeout_reason,
        });
        assert!(cancelled(&h, request));
    }
    let warnings = h.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].starts_with(CALLER_TIMEOUT_WARNING));
    assert!(warnings[1].starts_with(UNDECLARED_WARNING));
}

// ---- what follows an abort -----------------------------------------------------------------

#[test]
fn a_kept_request_is_answered_by_its_batch_and_a_cancelled_one_never_leaves() {
    let mut h = Harness::new(config(10));
    let timeout = [("x-stainless-timeout", "1")];
    let kept_id = h.submit(chat("keep", &timeout));
    let dropped = h.submit(chat("drop", &timeout));
    h.now = 1_000 - SLACK - 1; // before the declared timeout; the window (1 s) has not cut
    h.handle(Input::Abort {
        request: dropped,
        timeout_reason: false,
    });
    h.handle(Input::Abort {
        request: kept_id,
        timeout_reason: true,
    });
    assert!(cancelled(&h, dropped));
    assert!(
        cancelled(&h, kept_id),
        "a caller's timeout signal is cancelled whatever the time"
    );

    let mut h = Harness::new(config(10));
    let kept_id = h.submit(chat("keep", &timeout));
    let dropped = h.submit(chat("drop", &timeout));
    h.now = 980;
    h.handle(Input::Abort {
        request: kept_id,
        timeout_reason: false,
    });
    h.handle(Input::Abort {
        request: dropped,
        timeout_reason: true,
    });
    h.close_and_drain();
    assert!(h.only(kept_id).is_echo(GEMINI_MODELS[0], "keep"));
    assert!(cancelled(&h, dropped));
    assert_eq!(
        h.fake.batches[0].lines.len(),
        1,
        "the cancelled request never left"
    );
    assert_eq!(h.eng.open_requests(), 0);
    h.check_invariants();
}

#[test]
fn the_time_counts_from_submit_not_from_the_engine_start() {
    let mut h = Harness::new(config(10));
    h.now = 10_000;
    let id = h.submit(chat("x", &[("x-stainless-timeout", "1")]));
    h.now = 10_000 + 1_000 - SLACK - 1;
    h.handle(Input::Abort {
        request: id,
        timeout_reason: false,
    });
    assert!(cancelled(&h, id));
}

#[test]
fn the_time_counts_from_when_the_call_reached_the_host() {
    // Its body read and a large journal loaded took 500 ms before the submit: the client's
    // 1 s timer, armed when it called fetch, fires 500 ms after the submit, and is outlived.
    let mut h = Harness::new(config(10));
    h.now = 10_500;
    let id = 1;
    h.handle(Input::Submit {
        request: id,
        http: chat("x", &[("x-stainless-timeout", "1")]),
        arrived_ms: 10_000,
    });
    h.now = 11_000;
    h.handle(Input::Abort {
        request: id,
        timeout_reason: false,
    });
    assert!(kept(&h, id));
}

#[test]
fn an_abort_of_a_settled_or_unknown_request_does_nothing() {
    let (mut h, id) = abort_after(&[("x-stainless-retry-count", "0")], 0, false);
    assert!(cancelled(&h, id));
    let outputs = h.outputs.len();
    for request in [id, 4242] {
        h.handle(Input::Abort {
            request,
            timeout_reason: true,
        });
    }
    assert_eq!(h.outputs.len(), outputs, "no second answer, no warning");

    let mut h = Harness::new(config(10));
    let passed = h.submit(http(
        "GET",
        format!("{GEMINI_BASE}/models"),
        vec![("x-stainless-retry-count", "0".into())],
        String::new(),
    ));
    assert!(matches!(h.only(passed), Answer::PassThrough { .. }));
    h.handle(Input::Abort {
        request: passed,
        timeout_reason: false,
    });
    assert!(
        h.warnings().is_empty(),
        "a pass-through is not the engine's to cancel"
    );
    assert_eq!(h.answers[&passed].len(), 1);
}
