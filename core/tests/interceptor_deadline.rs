//! Deadlines: a request not answered by its deadline goes to the normal endpoint, is answered
//! from there, and its batch's line is discarded (and counted as paid twice); bounded by a cap
//! on concurrent fallbacks, backoff on 429, and the cost limit at sync prices.

mod support;

use batchling_core::http::HttpRequest;
use batchling_core::interceptor::{InterceptorConfig, LifecycleEvent};
use batchling_core::providers::ProviderId;

use support::*;

const P: ProviderId = ProviderId::OpenAi;

fn slow(deadline_ms: Option<u64>) -> InterceptorConfig {
    InterceptorConfig {
        deadline_ms,
        ..config(10)
    }
}

fn harness(config: InterceptorConfig) -> Harness {
    let mut h = Harness::new(config);
    h.fake.polls_before_done = 10; // the batch ends after ~55 s of virtual time
    h
}

fn with_header(mut req: HttpRequest, value: &str) -> HttpRequest {
    req.headers
        .push(("X-Batchling-Deadline-Ms".into(), value.into()));
    req
}

fn sync_answer(h: &Harness, id: u64, text: &str) -> bool {
    let model = model_of(P, 0);
    let body = h.only(id).json();
    body["choices"][0]["message"]["content"] == format!("sync:{}", echo(model, text))
}

fn fallbacks(h: &Harness) -> Vec<(bool, bool, Option<String>)> {
    h.events
        .iter()
        .filter_map(|e| match e {
            LifecycleEvent::DeadlineFallback {
                sent,
                too_close,
                batch_id,
                ..
            } => Some((*sent, *too_close, batch_id.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_passed_deadline_answers_from_the_normal_endpoint_and_the_batch_line_is_paid_twice() {
    let mut h = harness(slow(Some(20_000)));
    let id = h.submit(request(P, 0, 0, "a"));
    let other = h.submit(request(P, 0, 0, "b"));
    h.run_until(19_999);
    assert!(h.answers.is_empty(), "nothing answered before the deadline");
    assert_eq!(h.fake.served(Step::Sync), 0);
    h.run_until(20_000);
    assert_eq!(h.fake.served(Step::Sync), 2, "both went sync at 20 s");
    assert!(sync_answer(&h, id, "a") && sync_answer(&h, other, "b"));
    let sent = fallbacks(&h);
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|(s, close, b)| *s && !close && b.is_some()));
    let report = &h.eng.report()[0];
    assert_eq!(
        (
            report.sync_fallbacks,
            report.paid_twice,
            report.maybe_paid_twice
        ),
        (2, 0, 2)
    );
    // The batch ends later: its lines are discarded, each caller answered once, paid twice.
    h.close_and_drain();
    assert!(
        sync_answer(&h, id, "a"),
        "answered once, from the sync call"
    );
    let report = &h.eng.report()[0];
    assert_eq!(
        (
            report.sync_fallbacks,
            report.paid_twice,
            report.maybe_paid_twice
        ),
        (2, 2, 0)
    );
    assert!(report.sync_fallback_usd.is_some_and(|usd| usd > 0.0));
    let came_back = h
        .journal
        .iter()
        .filter(|l| l.contains("\"sync_fallback\"") && l.contains("\"line_came_back\":true"))
        .count();
    assert_eq!(came_back, 2);
    assert!(h.fake.violations.is_empty(), "{:?}", h.fake.violations);
}

#[test]
fn a_deadline_too_close_for_a_batch_goes_straight_to_sync_and_never_into_a_batch() {
    // Window 1 s + poll 5 s: a 3 s deadline cannot be met by a batch.
    let mut h = harness(slow(None));
    let id = h.submit(with_header(request(P, 0, 0, "a"), "3000"));
    h.close_and_drain();
    assert!(sync_answer(&h, id, "a"));
    assert_eq!(h.fake.served(Step::Create), 0, "no batch at all");
    assert_eq!(fallbacks(&h), vec![(true, true, None)]);
    let sent = h
        .fake
        .log
        .iter()
        .find(|(_, s, _)| *s == Step::Sync)
        .unwrap();
    assert!(
        !sent
            .2
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("x-batchling-deadline-ms")),
        "the deadline header never reaches the provider"
    );
    assert!(
        header(&sent.2.headers, "authorization").is_some(),
        "the caller's own headers"
    );
    let report = &h.eng.report()[0];
    assert_eq!(
        (report.batches, report.sync_fallbacks, report.paid_twice),
        (0, 1, 0)
    );
}

#[test]
fn a_bad_deadline_header_fails_the_call_naming_the_header() {
    let mut h = harness(slow(None));
    for bad in ["soon", "0", "-5", "1.5"] {
        let id = h.submit(with_header(request(P, 0, 0, bad), bad));
        assert_eq!(
            h.only(id).fail_code(),
            Some("ERR_BATCHLING_INVALID_DEADLINE"),
            "{bad}"
        );
        let json = format!("{:?}", h.only(id));
        assert!(json.contains("x-batchling-deadline-ms"), "{json}");
    }
}

#[test]
fn concurrent_fallbacks_are_capped() {
    let mut h = harness(InterceptorConfig {
        max_sync_fallbacks: 2,
        ..slow(Some(20_000))
    });
    let ids: Vec<u64> = (0..5)
        .map(|i| h.submit(request(P, 0, 0, &format!("r{i}"))))
        .collect();
    h.run_until(19_999);
    h.tick_at(20_000);
    let syncs = |h: &Harness| {
        h.inflight
            .iter()
            .filter(|(_, r)| r.url.ends_with("/chat/completions"))
            .count()
    };
    assert_eq!(syncs(&h), 2, "two at once");
    for _ in 0..2 {
        let at = h
            .inflight
            .iter()
            .position(|(_, r)| r.url.ends_with("/chat/completions"))
            .unwrap();
        h.deliver_at(at);
    }
    assert_eq!(syncs(&h), 2, "the next two once two ended");
    h.close_and_drain();
    for (i, id) in ids.iter().enumerate() {
        assert!(sync_answer(&h, *id, &format!("r{i}")));
    }
    assert_eq!(h.fake.served(Step::Sync), 5);
}

#[test]
fn a_429_on_a_fallback_is_retried_after_its_retry_after() {
    let mut h = harness(slow(Some(20_000)));
    h.fake
        .fault(Some(P), Step::Sync, Fault::Status(429, Some("7")));
    let id = h.submit(request(P, 0, 0, "a"));
    h.run_until(20_000);
    assert_eq!(h.fake.served(Step::Sync), 1);
    assert!(h.answers.is_empty(), "a 429 is retried, not answered");
    h.run_until(26_999);
    assert_eq!(h.fake.served(Step::Sync), 1, "not before Retry-After");
    h.run_until(27_000);
    assert_eq!(h.fake.served(Step::Sync), 2);
    assert!(sync_answer(&h, id, "a"));
    assert!(h
        .retry_delays()
        .contains(&("sync_fallback".to_string(), 7_000)));
}

#[test]
fn the_cost_limit_counts_sync_prices_and_a_refused_fallback_waits_for_its_batch() {
    let body = serde_json::from_str(&request(P, 0, 0, "a").body).unwrap();
    let est = batchling_core::catalog::pricing::estimate(P, model_of(P, 0), &body);
    let (sync, batch) = (est.sync_usd.unwrap(), est.batch_usd.unwrap());
    // Room for the batch of two and one sync call, not two.
    let mut h = harness(InterceptorConfig {
        cost_limit_usd: Some(2.0 * batch + sync * 1.5),
        ..slow(Some(20_000))
    });
    let a = h.submit(request(P, 0, 0, "a"));
    let b = h.submit(request(P, 0, 0, "a ")); // same size, another request
    h.run_until(20_000);
    assert_eq!(h.fake.served(Step::Sync), 1, "one fallback fits the limit");
    let sent = fallbacks(&h);
    assert_eq!(
        sent.iter().filter(|(s, _, _)| !s).count(),
        1,
        "the other is refused"
    );
    h.close_and_drain();
    assert!(sync_answer(&h, a, "a"));
    assert!(
        h.only(b).is_echo(model_of(P, 0), "a "),
        "answered by its batch"
    );
    assert!(h.eng.committed_usd() <= 2.0 * batch + sync * 1.5);
}

#[test]
fn a_rerun_after_a_fallback_answers_from_the_journal_and_reports_paid_twice() {
    let mut h = harness(slow(Some(20_000)));
    let id = h.submit(request(P, 0, 0, "a"));
    h.close_and_drain();
    assert!(sync_answer(&h, id, "a"));
    let (fake, journal) = h.crash();
    let mut again = Harness::restart(slow(Some(20_000)), fake, &journal, 100_000);
    let id = again.submit(request(P, 0, 0, "a"));
    again.run();
    assert_eq!(again.fake.served(Step::Sync), 1, "no second sync call");
    let report = &again.eng.report()[0];
    assert_eq!((report.cache_hits, report.paid_twice), (1, 1));
    assert!(again.stored.is_empty() || !again.answers.is_empty());
    assert!(again.answers.contains_key(&id));
}

#[test]
fn a_crash_before_the_batch_ended_reports_maybe_paid_twice() {
    let mut h = harness(slow(Some(20_000)));
    let id = h.submit(request(P, 0, 0, "a"));
    h.run_until(20_000);
    assert!(sync_answer(&h, id, "a"));
    let (fake, journal) = h.crash();
    let mut again = Harness::restart(slow(Some(20_000)), fake, &journal, 30_000);
    again.submit(request(P, 0, 0, "a"));
    again.run();
    let report = &again.eng.report()[0];
    assert_eq!(
        (
            report.cache_hits,
            report.paid_twice,
            report.maybe_paid_twice
        ),
        (1, 0, 1)
    );
}

#[test]
fn compacting_the_journal_keeps_the_sync_fallback_records_a_rerun_reads() {
    // A fallback answered, then its batch's line came back: the journal holds its intent, its
    // batch, two sync_fallback records and its answer; more than half of that is superseded.
    let mut h = harness(slow(Some(20_000)));
    h.submit(request(P, 0, 0, "a"));
    h.close_and_drain();
    let (fake, journal) = h.crash();
    let (again, compacted) =
        Harness::restart_compacted(slow(Some(20_000)), fake, &journal, 100_000);
    let compacted = compacted.expect("the journal is compacted");
    assert!(compacted.len() < journal.len());
    let fallbacks: Vec<&String> = compacted
        .iter()
        .filter(|l| l.contains("\"sync_fallback\""))
        .collect();
    assert_eq!(fallbacks.len(), 1, "folded into one: {compacted:?}");
    assert!(fallbacks[0].contains("\"line_came_back\":true") && fallbacks[0].contains("batch_"));

    // A run on the compacted journal answers from it and still knows it was paid twice, and
    // its journal is not compacted again.
    let (fake, _) = again.crash();
    let (mut third, none) =
        Harness::restart_compacted(slow(Some(20_000)), fake, &compacted, 200_000);
    assert!(none.is_none(), "nothing left to drop");
    let id = third.submit(request(P, 0, 0, "a"));
    third.run();
    assert!(third.answers.contains_key(&id));
    assert_eq!(
        third.fake.served(Step::Sync),
        1,
        "answered from the journal"
    );
    let report = &third.eng.report()[0];
    assert_eq!(
        (
            report.cache_hits,
            report.paid_twice,
            report.maybe_paid_twice
        ),
        (1, 1, 0)
    );
}

#[test]
fn a_fallback_whose_batch_runs_nothing_is_not_resubmitted_nor_paid_twice() {
    // The batch fails without running a line: the request that went sync stays answered from
    // there; the other is resubmitted in a new batch (lines that never came back).
    let mut h = harness(slow(None));
    h.fake.fates.push_back(Fate::Fail);
    let hurried = h.submit(with_header(request(P, 0, 0, "a"), "20000"));
    let patient = h.submit(request(P, 0, 0, "b"));
    h.close_and_drain();
    assert!(sync_answer(&h, hurried, "a"));
    assert!(h.only(patient).is_echo(model_of(P, 0), "b"));
    assert_eq!(h.fake.batches.len(), 2, "the failed batch, then one for b");
    assert_eq!(h.fake.batches[1].lines.len(), 1, "a is not resubmitted");
    assert_eq!(h.fake.served(Step::Sync), 1);
    let report = &h.eng.report()[0];
    assert_eq!(
        (
            report.sync_fallbacks,
            report.paid_twice,
            report.maybe_paid_twice
        ),
        (1, 0, 0)
    );
    assert!(h.fake.violations.is_empty(), "{:?}", h.fake.violations);
}
