//! Admission: batches wait for a slot under `max_concurrent_batches`; what happens to requests
//! cancelled or repeated while their batch waits.

mod support;

use batchling_core::interceptor::Input;
use batchling_core::providers::ProviderId;

use support::*;

/// BUG: a request cancelled while its cut batch waits for a slot under `max_concurrent_batches`
/// keeps its entry (with no waiters), so `admit_jobs` still sends it when a slot frees up, although
/// its comment says requests cancelled while their batch waited are not sent.
#[test]
fn a_request_cancelled_while_its_batch_waits_for_a_slot_is_not_sent() {
    let mut cfg = config(1);
    cfg.max_concurrent_batches = 1;
    let mut h = Harness::new(cfg);
    let a = h.submit(request(ProviderId::Anthropic, 0, 0, "runs"));
    let b = h.submit(request(ProviderId::Anthropic, 0, 0, "waits"));
    assert_eq!(h.sent(Step::Create), 1, "one batch at a time");
    h.handle(Input::Cancel { request: b });
    assert_eq!(h.only(b).fail_code(), Some("ERR_BATCHLING_CANCELLED"));
    h.close_and_drain();
    assert!(h
        .only(a)
        .is_echo(model_of(ProviderId::Anthropic, 0), "runs"));
    assert_eq!(
        h.sent(Step::Create),
        1,
        "the cancelled request's waiting batch is never created"
    );
}

/// Guards the fix above: an identical request arriving after the cancel, while the batch still
/// waits, must travel once (not in the waiting batch and again in a new one) and be answered.
#[test]
fn an_identical_request_after_a_cancel_in_a_waiting_batch_is_sent_once() {
    let mut cfg = config(1);
    cfg.max_concurrent_batches = 2;
    let mut h = Harness::new(cfg);
    let a1 = h.submit(request(ProviderId::OpenAi, 0, 0, "runs 1"));
    let a2 = h.submit(request(ProviderId::OpenAi, 0, 0, "runs 2"));
    let b = h.submit(request(ProviderId::OpenAi, 0, 0, "again"));
    h.handle(Input::Cancel { request: b });
    let c = h.submit(request(ProviderId::OpenAi, 0, 0, "again"));
    h.close_and_drain();
    assert_eq!(h.only(b).fail_code(), Some("ERR_BATCHLING_CANCELLED"));
    assert!(h.only(a1).is_echo("gpt-4o-mini", "runs 1"));
    assert!(h.only(a2).is_echo("gpt-4o-mini", "runs 2"));
    assert!(h.only(c).is_echo("gpt-4o-mini", "again"));
    let lines_with_again = h
        .fake
        .batches
        .iter()
        .flat_map(|batch| &batch.lines)
        .filter(|(_, body)| line_text(ProviderId::OpenAi, body) == "again")
        .count();
    assert_eq!(lines_with_again, 1, "sent exactly once");
}

/// `live_batches()`: the provider batches not yet ended, in flight or cut and waiting for a slot.
/// A job run asks it when its window is full: with none, no batch will end and free room, so only
/// a flush will. A batch that fails counts no more, and the one waiting behind it takes its slot.
#[test]
fn live_batches_counts_batches_in_flight_and_waiting_until_they_end() {
    let mut cfg = config(2);
    cfg.max_concurrent_batches = 1;
    let mut h = Harness::new(cfg);
    let a = h.submit(request(ProviderId::OpenAi, 0, 0, "a"));
    let b = h.submit(request(ProviderId::OpenAi, 0, 1, "b"));
    assert_eq!(
        h.eng.live_batches(),
        0,
        "two forming batches (two models), none cut"
    );
    h.handle(Input::Flush);
    assert_eq!(
        h.eng.live_batches(),
        2,
        "one in flight, one waiting for the slot"
    );
    // The first batch's create is refused for good: its request gets the provider's error, its
    // batch ends.
    h.fake.fault(
        Some(ProviderId::OpenAi),
        Step::Create,
        Fault::Status(400, None),
    );
    h.step_until(|h| h.answers.contains_key(&a));
    assert_eq!(h.only(a).status(), Some(400), "{:?}", h.only(a));
    assert_eq!(h.eng.live_batches(), 1, "the waiting batch took the slot");
    h.run();
    assert!(h.only(b).is_echo(model_of(ProviderId::OpenAi, 1), "b"));
    assert_eq!(h.eng.live_batches(), 0);
    h.close_and_drain();
}

/// A cost limit cannot be checked for a model without a price: its batch is refused, naming the
/// model and the `prices` option; with a price given, the batch runs, the report's estimate is
/// at that price, and the report's actual cost is the answer's usage at it.
#[test]
fn a_cost_limit_refuses_an_unpriced_model_unless_prices_give_it() {
    use batchling_core::catalog::pricing::PriceOverride;
    let ft = "ft:gpt-4o-mini:acme::x1";
    let key = key_of(ProviderId::OpenAi, 0);
    let mut cfg = config(1);
    cfg.cost_limit_usd = Some(1.0);
    let mut h = Harness::new(cfg.clone());
    let a = h.submit(openai_chat(key, ft, "hello"));
    match h.only(a) {
        Answer::Fail { code, message } => {
            assert_eq!(code, "ERR_BATCHLING_COST_LIMIT");
            assert!(message.contains(ft), "{message}");
            assert!(message.contains("`prices`"), "{message}");
        }
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!(h.sent(Step::Create), 0);

    let price = PriceOverride {
        provider: Some(ProviderId::OpenAi),
        input_per_mtok: 0.30,
        output_per_mtok: 1.20,
        cached_input_per_mtok: None,
        cache_write_per_mtok: None,
        cache_read_per_mtok: None,
    };
    cfg.prices.insert(ft.into(), price);
    let mut h = Harness::new(cfg);
    let b = h.submit(openai_chat(key, ft, "hello"));
    h.close_and_drain();
    assert!(h.only(b).is_echo(ft, "hello"));
    let usage = h.only(b).json()["usage"].clone();
    let (input, output) = (
        usage["prompt_tokens"].as_u64().unwrap() as f64,
        usage["completion_tokens"].as_u64().unwrap() as f64,
    );
    let report = h.eng.report();
    let row = report.iter().find(|r| r.model == ft).unwrap();
    let actual = (input * 0.30 + output * 1.20) / 1e6 * 0.5;
    assert!((row.actual_batch_usd.unwrap() - actual).abs() < 1e-15);
    assert_eq!(row.answers_costed, 1);
    assert!(row.estimated_batch_usd.unwrap() >= actual);
}
