use super::*;
use crate::providers::tests::{ctx_for, garbage_lines_strategy, mixed_jsonl, req};
use proptest::prelude::*;

const HEADERS: &[(&str, &str)] = &[
    ("x-api-key", "sk-ant-test"),
    ("anthropic-version", "2023-06-01"),
    ("anthropic-beta", "output-128k-2025-02-19"),
    ("content-type", "application/json"),
    ("x-stainless-os", "Linux"),
];

fn route_for(url: &str, body: &str) -> Route {
    Anthropic
        .recognize(&req("POST", url, HEADERS, body))
        .unwrap()
        .unwrap()
}

fn sample_route() -> Route {
    route_for(
        "https://api.anthropic.com/v1/messages",
        r#"{"model":"claude-sonnet-4-6","max_tokens":256,"stream":false,"messages":[{"role":"user","content":"Hello"}],"system":"be brief","metadata":{"user_id":"u1"}}"#,
    )
}

#[test]
fn recognize_shapes() {
    let r = sample_route();
    assert_eq!(r.base_url, "https://api.anthropic.com");
    assert_eq!(r.model, "claude-sonnet-4-6");
    assert_eq!(r.endpoint, "/v1/messages");
    assert_eq!(
        r.body.to_string(),
        r#"{"model":"claude-sonnet-4-6","max_tokens":256,"messages":[{"role":"user","content":"Hello"}],"system":"be brief","metadata":{"user_id":"u1"}}"#
    );
    assert_eq!(
        r.forward_headers,
        vec![
            (
                "anthropic-beta".to_string(),
                "output-128k-2025-02-19".to_string()
            ),
            ("anthropic-version".to_string(), "2023-06-01".to_string()),
            ("x-api-key".to_string(), "sk-ant-test".to_string()),
        ]
    );
    // The current SDK authenticates with a bearer token.
    let bearer = req(
        "POST",
        "http://127.0.0.1:8080/v1/messages",
        &[
            ("authorization", "Bearer k"),
            ("anthropic-version", "2026-10-21"),
        ],
        r#"{"model":"m","max_tokens":1,"messages":[]}"#,
    );
    assert_eq!(
        Anthropic.recognize(&bearer).unwrap().unwrap().base_url,
        "http://127.0.0.1:8080"
    );
    // Unsigned /v1/messages is not ours.
    assert!(Anthropic
        .recognize(&req(
            "POST",
            "http://h/v1/messages",
            &[("authorization", "Bearer k")],
            "{}"
        ))
        .is_none());
    assert_eq!(
        Anthropic.recognize(&req("GET", "http://h/v1/messages", HEADERS, "")),
        Some(Err(PassThrough::NotPost))
    );
    assert_eq!(
        Anthropic.recognize(&req(
            "POST",
            "http://h/v1/messages",
            HEADERS,
            r#"{"max_tokens":1}"#
        )),
        Some(Err(PassThrough::NoModel))
    );
    assert!(Anthropic
        .recognize(&req("POST", "http://h/v1/messages/batches", HEADERS, "{}"))
        .is_none());
}

#[test]
fn build_create_inlines_params_unchanged() {
    let route = sample_route();
    let ctx = ctx_for(&route, "batchling-t");
    let items = vec![
        BatchItem {
            custom_id: "q1".into(),
            body: route.body.clone(),
        },
        BatchItem {
            custom_id: "q2".into(),
            body: json!({"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}),
        },
    ];
    let c = Anthropic.build_create(&ctx, &items, None);
    assert_eq!(
        (c.method.as_str(), c.url.as_str()),
        ("POST", "https://api.anthropic.com/v1/messages/batches")
    );
    assert_eq!(c.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(c.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(c.header("anthropic-beta"), Some("output-128k-2025-02-19"));
    assert_eq!(c.header("content-type"), Some("application/json"));
    assert_eq!(c.header("x-stainless-os"), None);
    let expected = format!(
        r#"{{"requests":[{{"custom_id":"q1","params":{}}},{{"custom_id":"q2","params":{{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}}}}]}}"#,
        route.body
    );
    assert_eq!(c.body, expected);
    let item_sum: usize = items.iter().map(|i| Anthropic.item_bytes(&ctx, i)).sum();
    assert!(item_sum >= c.body.len() - r#"{"requests":[]}"#.len());
    assert!(Anthropic.build_upload(&ctx, &items).is_none());
    assert!(Anthropic.build_find(&ctx).is_none());
    assert_eq!(
        Anthropic.parse_find(&HttpResponse::json(200, "{}".into()), "batchling-t"),
        Ok(None)
    );
}

#[test]
fn poll_and_download_requests() {
    let route = sample_route();
    let ctx = ctx_for(&route, "t");
    let p = Anthropic.build_poll(&ctx, "msgbatch_01");
    assert_eq!(
        (p.method.as_str(), p.url.as_str()),
        (
            "GET",
            "https://api.anthropic.com/v1/messages/batches/msgbatch_01"
        )
    );
    assert_eq!(p.header("anthropic-version"), Some("2023-06-01"));
    let same = "https://api.anthropic.com/v1/messages/batches/msgbatch_01/results";
    assert_eq!(Anthropic.build_download(&ctx, same).url, same);
    assert_eq!(
        Anthropic.build_download(&ctx, same).header("x-api-key"),
        Some("sk-ant-test")
    );

    let proxied = route_for(
        "http://127.0.0.1:9/proxy/v1/messages",
        r#"{"model":"m","max_tokens":1,"messages":[]}"#,
    );
    let pctx = ctx_for(&proxied, "t");
    assert_eq!(
        Anthropic.build_download(&pctx, same).url,
        "http://127.0.0.1:9/proxy/v1/messages/batches/msgbatch_01/results"
    );
    assert_eq!(
        Anthropic
            .build_download(
                &pctx,
                "http://127.0.0.1:9/proxy/v1/messages/batches/b/results"
            )
            .url,
        "http://127.0.0.1:9/proxy/v1/messages/batches/b/results"
    );
    assert_eq!(
        Anthropic.build_download(&pctx, "/r/1").url,
        "http://127.0.0.1:9/r/1"
    );
}

#[test]
fn parse_create_and_poll() {
    let created = HttpResponse::json(200, r#"{"id":"msgbatch_013Zva2CMHLNnXjNJJKqJ2EF","type":"message_batch","processing_status":"in_progress","request_counts":{"processing":2,"succeeded":0,"errored":0,"canceled":0,"expired":0},"results_url":null}"#.into());
    assert_eq!(
        Anthropic.parse_create(&created).unwrap(),
        RemoteBatch {
            id: "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF".into(),
            state_label: "in_progress".into()
        }
    );
    let running = Anthropic.parse_poll(&created, &[]).unwrap();
    assert_eq!(
        (running.state, running.total, running.completed),
        (PollState::Running, 2, 0)
    );

    let ended = HttpResponse::json(200, r#"{"id":"msgbatch_013Zva2CMHLNnXjNJJKqJ2EF","type":"message_batch","processing_status":"ended","request_counts":{"processing":0,"succeeded":95,"errored":3,"canceled":0,"expired":2},"created_at":"2026-11-23T10:00:00.000000Z","expires_at":"2026-11-24T10:00:00.000000Z","ended_at":"2026-11-23T10:41:02.000000Z","cancel_initiated_at":null,"archived_at":null,"results_url":"https://api.anthropic.com/v1/messages/batches/msgbatch_013Zva2CMHLNnXjNJJKqJ2EF/results"}"#.into());
    let r = Anthropic.parse_poll(&ended, &[]).unwrap();
    assert_eq!((r.total, r.completed, r.failed), (100, 95, 5));
    assert_eq!(r.state_label, "ended");
    assert_eq!(
        r.state,
        PollState::Completed {
            downloads: vec!["https://api.anthropic.com/v1/messages/batches/msgbatch_013Zva2CMHLNnXjNJJKqJ2EF/results".into()],
            inline: None
        }
    );
    assert_eq!(r.end_kind_if_partial, None);

    let cancelled = HttpResponse::json(200, r#"{"id":"b","processing_status":"ended","request_counts":{"processing":0,"succeeded":1,"errored":0,"canceled":1,"expired":0},"cancel_initiated_at":"2026-11-23T10:00:00Z","results_url":"https://x/v1/messages/batches/b/results"}"#.into());
    assert_eq!(
        Anthropic
            .parse_poll(&cancelled, &[])
            .unwrap()
            .end_kind_if_partial,
        Some(EndKind::Cancelled)
    );

    let archived = HttpResponse::json(200, r#"{"id":"b","processing_status":"ended","request_counts":{},"archived_at":"2026-12-23T10:00:00Z","results_url":null}"#.into());
    assert!(matches!(
        Anthropic.parse_poll(&archived, &[]).unwrap().state,
        PollState::Ended {
            kind: EndKind::Failed,
            ..
        }
    ));
    assert!(Anthropic
        .parse_poll(
            &HttpResponse::json(200, r#"{"processing_status":"new"}"#.into()),
            &[]
        )
        .is_err());
    assert!(Anthropic
        .parse_create(&HttpResponse::json(
            529,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#.into()
        ))
        .unwrap_err()
        .message
        .contains("Overloaded"));
}

const RESULTS: &str = concat!(
    r#"{"custom_id":"q1","result":{"type":"succeeded","message":{"id":"msg_01X","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[{"type":"text","text":"Hi!"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":8,"output_tokens":4}}}}"#,
    "\n",
    r#"{"custom_id":"q2","result":{"type":"errored","error":{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: field required"},"request_id":"req_011"}}}"#,
    "\n",
    r#"{"custom_id":"q3","result":{"type":"canceled"}}"#,
    "\n",
    r#"{"custom_id":"q4","result":{"type":"expired"}}"#,
    "\n",
);

#[test]
fn parse_results_maps_each_type() {
    let parsed = Anthropic.parse_results("msgbatch_1", RESULTS);
    assert!(parsed.malformed.is_empty());
    let by_id = |id: &str| {
        parsed
            .items
            .iter()
            .find(|i| i.custom_id == id)
            .unwrap()
            .response
            .clone()
    };
    let ok = by_id("q1");
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.body,
        r#"{"id":"msg_01X","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[{"type":"text","text":"Hi!"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":8,"output_tokens":4}}"#
    );
    let err = by_id("q2");
    assert_eq!(err.status, 400);
    assert_eq!(err.header("request-id"), Some("req_011"));
    assert_eq!(
        err.body,
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: field required"},"request_id":"req_011"}"#
    );
    let c = by_id("q3");
    assert_eq!((c.status, c.header("x-should-retry")), (499, Some("false")));
    assert!(c.body.contains("msgbatch_1"));
    let e = by_id("q4");
    assert_eq!(e.status, 504);
    let v: Value = serde_json::from_str(&e.body).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "timeout_error");
    for i in &parsed.items {
        assert_eq!(i.response.header("content-type"), Some("application/json"));
    }
}

#[test]
fn error_type_table() {
    for (t, status) in [
        ("invalid_request_error", 400),
        ("authentication_error", 401),
        ("billing_error", 402),
        ("permission_error", 403),
        ("not_found_error", 404),
        ("request_too_large", 413),
        ("rate_limit_error", 429),
        ("api_error", 500),
        ("timeout_error", 504),
        ("overloaded_error", 529),
        ("brand_new_error", 500),
    ] {
        let line = json!({"custom_id":"x","result":{"type":"errored","error":{"type":"error","error":{"type":t,"message":"m"},"request_id":null}}}).to_string();
        let parsed = Anthropic.parse_results("b", &line);
        assert_eq!(parsed.items[0].response.status, status, "{t}");
        assert_eq!(parsed.items[0].response.header("request-id"), None);
    }
    let bad = Anthropic.parse_results("b", r#"{"custom_id":"x","result":{"type":"errored"}}"#);
    assert_eq!(bad.malformed.len(), 1);
    let unknown = Anthropic.parse_results("b", r#"{"custom_id":"x","result":{"type":"weird"}}"#);
    assert_eq!(unknown.malformed[0].line_number, 1);
}

#[test]
fn ended_and_dry_run() {
    for (kind, status, t) in [
        (EndKind::Expired, 504, "timeout_error"),
        (EndKind::Cancelled, 499, "api_error"),
        (EndKind::Failed, 500, "api_error"),
    ] {
        let r = Anthropic.ended_response("msgbatch_7", kind, "");
        assert_eq!(r.status, status);
        assert_eq!(r.header("x-should-retry"), Some("false"));
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], t);
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("msgbatch_7") && msg.contains(kind.as_str()),
            "{msg}"
        );
    }
    let d = Anthropic.dry_run_response(&sample_route(), "c1");
    assert_eq!(
        (d.status, d.header("x-batchling-dry-run")),
        (200, Some("1"))
    );
    assert_eq!(d.header("content-type"), Some("application/json"));
    let v: Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["model"], "claude-sonnet-4-6");
    assert_eq!(v["content"][0]["type"], "text");
}

fn valid_line(id: &str, n: u32) -> String {
    match n % 4 {
        0 => json!({"custom_id": id, "result": {"type": "succeeded", "message": {"id": format!("msg_{n}"), "type": "message", "role": "assistant", "content": [], "usage": {"input_tokens": n, "output_tokens": 1}}}}),
        1 => json!({"custom_id": id, "result": {"type": "errored", "error": {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}, "request_id": "req_1"}}}),
        2 => json!({"custom_id": id, "result": {"type": "canceled"}}),
        _ => json!({"custom_id": id, "result": {"type": "expired"}}),
    }
    .to_string()
}

proptest! {
    #[test]
    fn parse_results_never_loses_a_good_line(case in mixed_jsonl(valid_line)) {
        let parsed = Anthropic.parse_results("b", &case.body);
        prop_assert_eq!(parsed.items.iter().map(|i| i.custom_id.clone()).collect::<Vec<_>>(), case.good_ids);
        prop_assert_eq!(parsed.malformed.iter().map(|m| m.line_number).collect::<Vec<_>>(), case.bad_lines);
    }

    #[test]
    fn parse_results_survives_garbage(body in garbage_lines_strategy()) {
        let _ = Anthropic.parse_results("b", &body);
    }
}
