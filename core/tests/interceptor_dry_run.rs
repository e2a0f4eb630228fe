//! Dry run: nothing is sent, every caller gets a 200, and the report counts requests, batches and
//! costs.

mod support;

use batchling_core::catalog::pricing;
use batchling_core::interceptor::RequestId;
use batchling_core::providers::{self, ProviderId};

use support::*;

// ---- dry run -------------------------------------------------------------------------------

#[test]
fn dry_run_sends_nothing_answers_200_and_reports_requests_batches_and_costs() {
    let mut cfg = config(2);
    cfg.dry_run = true;
    let mut h = Harness::new(cfg);
    let reqs = [
        openai_chat(OPENAI_KEYS[0], "gpt-4o-mini", "d1"),
        openai_chat(OPENAI_KEYS[0], "gpt-4o-mini", "d2"),
        openai_chat(OPENAI_KEYS[0], "gpt-4o-mini", "d3"),
        openai_chat(OPENAI_KEYS[0], "gpt-4o-mini", "d1"), // a duplicate
        openai_chat(OPENAI_KEYS[0], "my-finetune-xyz", "d4"),
        anthropic_msg(ANTHROPIC_KEYS[0], "claude-sonnet-4-5", "d5", None),
        anthropic_msg(ANTHROPIC_KEYS[0], "claude-sonnet-4-5", "d6", None),
        gemini_gen(GEMINI_KEYS[0], "gemini-2.5-flash", "d7"),
    ];
    let ids: Vec<RequestId> = reqs.iter().map(|r| h.submit(r.clone())).collect();
    h.close_and_drain();
    assert!(h.sends.is_empty(), "a dry run sends nothing");
    assert!(h.journal.is_empty(), "and caches nothing");
    for id in &ids {
        let answer = h.only(*id);
        assert_eq!(answer.status(), Some(200));
        assert_eq!(answer.header("x-batchling-dry-run"), Some("1"));
        answer.json();
    }
    let report = h.eng.report();
    let row = |p: ProviderId, model: &str| {
        report
            .iter()
            .find(|r| r.provider == p && r.model == model)
            .unwrap_or_else(|| panic!("no row for {p} {model}: {report:?}"))
    };
    let expected_cost = |indices: &[usize]| {
        let mut sync = 0.0;
        let mut batch = 0.0;
        for &i in indices {
            let route = providers::classify(&reqs[i]).unwrap();
            let e = pricing::estimate(route.provider, &route.model, &route.body);
            sync += e.sync_usd.unwrap();
            batch += e.batch_usd.unwrap();
        }
        (sync, batch)
    };
    let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-12);

    let mini = row(ProviderId::OpenAi, "gpt-4o-mini");
    assert_eq!(
        (mini.requests, mini.batches),
        (4, 2),
        "3 distinct requests in batches of 2"
    );
    assert_eq!(mini.endpoint, "/v1/chat/completions");
    let (sync, batch) = expected_cost(&[0, 1, 2, 3]);
    assert!(close(mini.estimated_sync_usd, sync), "{mini:?}");
    assert!(close(mini.estimated_batch_usd, batch), "{mini:?}");
    assert!(batch < sync);

    let unknown = row(ProviderId::OpenAi, "my-finetune-xyz");
    assert_eq!((unknown.requests, unknown.batches), (1, 1));
    assert_eq!(unknown.estimated_sync_usd, None);
    assert_eq!(unknown.estimated_batch_usd, None);
    assert_eq!(unknown.price_note, "unknown price");

    let claude = row(ProviderId::Anthropic, "claude-sonnet-4-5");
    assert_eq!((claude.requests, claude.batches), (2, 1));
    let (sync, batch) = expected_cost(&[5, 6]);
    assert!(
        close(claude.estimated_sync_usd, sync) && close(claude.estimated_batch_usd, batch),
        "{claude:?}"
    );

    let gemini = row(ProviderId::Gemini, "gemini-2.5-flash");
    assert_eq!((gemini.requests, gemini.batches), (1, 1));
    assert!(gemini.estimated_sync_usd.is_some());
    assert_eq!(report.len(), 4);
}

#[test]
fn dry_run_answers_each_request_from_its_own_body() {
    // Embeddings of one batch with different input counts: each caller gets as many vectors as
    // it sent inputs, not as many as the batch's first request did.
    let mut cfg = config(10);
    cfg.dry_run = true;
    let mut h = Harness::new(cfg);
    let body =
        |inputs: &[&str]| serde_json::json!({"model": "text-embedding-3-small", "input": inputs});
    let one = h.submit(openai_json(OPENAI_KEYS[0], "/embeddings", body(&["a"])));
    let three = h.submit(openai_json(
        OPENAI_KEYS[0],
        "/embeddings",
        body(&["b", "c", "d"]),
    ));
    h.close_and_drain();
    let vectors = |id| h.only(id).json()["data"].as_array().map(Vec::len);
    assert_eq!(vectors(one), Some(1));
    assert_eq!(vectors(three), Some(3));
}
