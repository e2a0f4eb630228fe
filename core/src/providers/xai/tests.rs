use super::*;
use crate::providers::tests::{ctx_for, req};
use crate::providers::{classify, classify_with, HostSpec, HostTable};
use proptest::prelude::*;

const URL: &str = "https://api.x.ai/v1/chat/completions";
const BODY: &str = r#"{"model":"grok-4","messages":[{"role":"user","content":"Hi"}],"stream":false,"temperature":0.2}"#;
const HEADERS: &[(&str, &str)] = &[
    ("authorization", "Bearer xai-TEST"),
    ("content-type", "application/json"),
    ("x-stainless-lang", "js"),
];

fn sample_route() -> Route {
    classify(&req("POST", URL, HEADERS, BODY)).unwrap()
}

fn item(id: &str, text: &str) -> BatchItem {
    BatchItem {
        custom_id: id.into(),
        body: json!({"model": "grok-4", "messages": [{"role": "user", "content": text}]}),
    }
}

fn ok(body: Value) -> HttpResponse {
    HttpResponse::json(200, body.to_string())
}

fn dated(body: Value, date: &str) -> HttpResponse {
    let mut r = ok(body);
    r.headers.push(("Date".into(), date.into()));
    r
}

fn body_json(r: &HttpResponse) -> Value {
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn recognized_only_under_its_host() {
    let r = sample_route();
    assert_eq!(r.provider, ProviderId::Xai);
    assert_eq!(r.base_url, "https://api.x.ai/v1");
    assert_eq!(r.endpoint, "/v1/chat/completions");
    assert_eq!(r.model, "grok-4");
    assert_eq!(
        r.body.to_string(),
        r#"{"model":"grok-4","messages":[{"role":"user","content":"Hi"}],"temperature":0.2}"#
    );
    assert_eq!(
        r.forward_headers,
        vec![("authorization".to_string(), "Bearer xai-TEST".to_string())]
    );
    // Its paths are OpenAI's: shape recognition never claims one.
    assert!(Xai.recognize(&req("POST", URL, HEADERS, BODY)).is_none());
    let pass = |method: &str, url: &str, body: &str| classify(&req(method, url, HEADERS, body));
    assert_eq!(
        pass(
            "POST",
            "https://api.x.ai/v1/responses",
            r#"{"model":"grok-4","input":"x"}"#
        ),
        Err(PassThrough::UnknownUrl)
    );
    assert_eq!(
        pass(
            "POST",
            "https://api.x.ai/v1/embeddings",
            r#"{"model":"m","input":"x"}"#
        ),
        Err(PassThrough::UnknownUrl)
    );
    assert_eq!(
        pass("GET", "https://api.x.ai/v1/models", ""),
        Err(PassThrough::UnknownUrl)
    );
    assert_eq!(pass("GET", URL, ""), Err(PassThrough::NotPost));
    assert_eq!(
        pass(
            "POST",
            URL,
            r#"{"model":"grok-4","messages":[],"stream":true}"#
        ),
        Err(PassThrough::Streaming)
    );
    assert_eq!(
        pass("POST", URL, r#"{"messages":[]}"#),
        Err(PassThrough::NoModel)
    );
    assert_eq!(pass("POST", URL, "not json"), Err(PassThrough::NotJson));
    // The batch API itself is not batched.
    assert_eq!(
        pass("POST", "https://api.x.ai/v1/batches", r#"{"name":"x"}"#),
        Err(PassThrough::UnknownUrl)
    );
    // A declared host (proxy, test server) speaks xAI's protocol too.
    let hosts = HostTable::with_declared(&[HostSpec {
        base_url: "http://127.0.0.1:8080/xai/v1".into(),
        provider: ProviderId::Xai,
        completion_window: None,
        max_requests: Some(7),
        max_file_bytes: None,
        max_inline_bytes: None,
    }])
    .unwrap();
    let local = classify_with(
        &req(
            "POST",
            "http://127.0.0.1:8080/xai/v1/chat/completions",
            HEADERS,
            BODY,
        ),
        &hosts,
    )
    .unwrap();
    assert_eq!(
        (local.provider, local.base_url.as_str()),
        (ProviderId::Xai, "http://127.0.0.1:8080/xai/v1")
    );
    assert_eq!(Xai.limits(&local).max_requests, 7);
    // Without the declaration the same URL is OpenAI's by shape.
    assert_eq!(
        classify(&req(
            "POST",
            "http://127.0.0.1:8080/xai/v1/chat/completions",
            HEADERS,
            BODY
        ))
        .unwrap()
        .provider,
        ProviderId::OpenAi
    );
}

#[test]
fn create_is_empty_and_named_by_the_tag() {
    let route = sample_route();
    let ctx = ctx_for(&route, "batchling-tag1");
    assert!(Xai.build_upload(&ctx, &[item("a", "x")]).is_none());
    assert!(Xai.parse_upload(&ok(json!({}))).is_err());
    let c = Xai.build_create(&ctx, &[item("a", "x")], None);
    assert_eq!(
        (c.method.as_str(), c.url.as_str()),
        ("POST", "https://api.x.ai/v1/batches")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&c.body).unwrap(),
        json!({"name": "batchling-tag1"})
    );
    assert_eq!(c.header("authorization"), Some("Bearer xai-TEST"));
    assert_eq!(c.header("content-type"), Some("application/json"));
    let created = ok(
        json!({"batch_id": "b-1", "name": "batchling-tag1", "state": {}, "create_time": "2026-11-23T10:00:00Z"}),
    );
    assert_eq!(Xai.parse_create(&created).unwrap().id, "b-1");
    assert!(Xai.parse_create(&ok(json!({"name": "x"}))).is_err());
    assert!(Xai
        .parse_create(&HttpResponse::json(400, "{}".into()))
        .is_err());
}

#[test]
fn requests_are_added_in_calls_under_the_size_limit() {
    let route = sample_route();
    let ctx = ctx_for(&route, "t");
    let items = [item("a", "one"), item("b", "two"), item("c", "three")];
    let calls = Xai.build_after_create(&ctx, &items, "b-1");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        (call.method.as_str(), call.url.as_str()),
        ("POST", "https://api.x.ai/v1/batches/b-1/requests")
    );
    assert_eq!(call.header("authorization"), Some("Bearer xai-TEST"));
    assert_eq!(call.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_str(&call.body).unwrap();
    assert_eq!(
        body["batch_requests"][1],
        json!({"batch_request_id": "b", "batch_request": {"chat_get_completion": items[1].body}})
    );
    assert_eq!(body["batch_requests"].as_array().unwrap().len(), 3);
    // Each entry's bytes are what item_bytes counts.
    let entry_len = Xai.item_bytes(&ctx, &items[0]) - 1;
    assert_eq!(entry_len, Xai::request_entry(&items[0]).to_string().len());

    // Split: room for two entries per call, then one; an entry over the limit goes alone.
    let limit = r#"{"batch_requests":[]}"#.len() + 2 * entry_len + 1 + 2;
    let calls = Xai::add_calls(&ctx, &items, "b-1", limit);
    let ids: Vec<Vec<String>> = calls
        .iter()
        .map(|c| {
            let v: Value = serde_json::from_str(&c.body).unwrap();
            assert!(c.body.len() <= limit);
            v["batch_requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["batch_request_id"].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    assert_eq!(ids, vec![vec!["a", "b"], vec!["c"]]);
    let tiny = Xai::add_calls(&ctx, &items, "b-1", 10);
    assert_eq!(tiny.len(), 3);
    assert!(Xai.build_after_create(&ctx, &[], "b-1").is_empty());

    let limits = Xai.limits(&route);
    assert_eq!(limits.max_requests, 100_000);
    assert_eq!(limits.max_bytes, 10 * (25_000_000 - 64 * 1024));
}

#[test]
fn find_matches_the_batch_name() {
    let route = sample_route();
    let ctx = ctx_for(&route, "batchling-t");
    let f = Xai.build_find(&ctx).unwrap();
    assert_eq!(
        (f.method.as_str(), f.url.as_str()),
        ("GET", "https://api.x.ai/v1/batches?limit=100")
    );
    let listing = ok(json!({"batches": [
        {"batch_id": "b-2", "name": "other"},
        {"batch_id": "b-1", "name": "batchling-t", "state": {"num_requests": 0}},
    ], "pagination_token": "p"}));
    assert_eq!(
        Xai.parse_find(&listing, "batchling-t").unwrap().unwrap().id,
        "b-1"
    );
    assert_eq!(Xai.parse_find(&listing, "nope").unwrap(), None);
    assert_eq!(Xai.parse_find(&ok(json!({})), "t").unwrap(), None);
    assert!(Xai.parse_find(&ok(json!({"batches": 3})), "t").is_err());
    assert!(Xai
        .parse_find(&HttpResponse::json(500, "{}".into()), "t")
        .is_err());
}

fn poll(body: Value) -> PollReport {
    Xai.parse_poll(&ok(body), &[]).unwrap()
}

fn first_page() -> PollState {
    PollState::Completed {
        downloads: vec!["batches/b-1/results?limit=100".into()],
        inline: None,
    }
}

#[test]
fn poll_states() {
    let route = sample_route();
    let p = Xai.build_poll(&ctx_for(&route, "t"), "b-1");
    assert_eq!(
        (p.method.as_str(), p.url.as_str()),
        ("GET", "https://api.x.ai/v1/batches/b-1")
    );

    let state =
        |s: Value| json!({"batch_id": "b-1", "state": s, "expire_time": "2026-11-24T10:00:00Z"});
    let r = poll(state(
        json!({"num_requests": 3, "num_pending": 2, "num_success": 1}),
    ));
    assert_eq!(
        (r.state_label.as_str(), &r.state),
        ("processing", &PollState::Running)
    );
    assert_eq!((r.total, r.completed, r.failed), (3, 1, 0));
    // Nothing visible yet (proto3 JSON omits zero counters).
    assert_eq!(poll(state(json!({}))).state, PollState::Running);
    assert_eq!(poll(json!({"batch_id": "b-1"})).state, PollState::Running);

    // Done: nothing pending. Counters may be strings.
    let r = poll(state(
        json!({"num_requests": "3", "num_success": "2", "num_error": "1"}),
    ));
    assert_eq!(
        (r.state_label.as_str(), &r.state, r.end_kind_if_partial),
        ("completed", &first_page(), None)
    );
    assert_eq!((r.total, r.completed, r.failed), (3, 2, 1));

    // Cancelled by someone: still cancelling while requests are pending.
    let mut c = state(json!({"num_requests": 3, "num_pending": 1, "num_success": 1}));
    c["cancel_time"] = json!("2026-11-23T11:00:00Z");
    assert_eq!(poll(c.clone()).state_label, "cancelling");
    c["state"] = json!({"num_requests": 3, "num_success": 1, "num_cancelled": 2});
    let r = poll(c.clone());
    assert_eq!(
        (r.state_label.as_str(), &r.state, r.end_kind_if_partial),
        ("cancelled", &first_page(), Some(EndKind::Cancelled))
    );
    c["state"] = json!({"num_requests": 3, "num_cancelled": 3});
    let r = poll(c);
    assert_eq!(
        r.state,
        PollState::Ended {
            kind: EndKind::Cancelled,
            message: String::new()
        }
    );
    // Every request cancelled, without a cancel_time.
    let r = poll(state(json!({"num_requests": 2, "num_cancelled": 2})));
    assert_eq!((r.state_label.as_str(), r.failed), ("cancelled", 2));
    assert!(matches!(
        r.state,
        PollState::Ended {
            kind: EndKind::Cancelled,
            ..
        }
    ));

    // Rejected by xAI: failed, whatever the counters say.
    let mut x = state(json!({"num_requests": 2, "num_pending": 2}));
    x["cancel_by_xai_message"] = json!("Model grok-9 is not supported for batch processing.");
    let r = poll(x.clone());
    assert_eq!(r.state_label, "rejected");
    assert_eq!(
        r.state,
        PollState::Ended {
            kind: EndKind::Failed,
            message: "Model grok-9 is not supported for batch processing.".into()
        }
    );
    x["state"] = json!({"num_requests": 2, "num_pending": 1, "num_success": 1});
    let r = poll(x.clone());
    assert_eq!(
        (&r.state, r.end_kind_if_partial),
        (&first_page(), Some(EndKind::Failed))
    );
    x["cancel_by_xai_message"] = json!("");
    assert_eq!(poll(x).state_label, "processing");

    assert!(Xai.parse_poll(&ok(json!([1])), &[]).is_err());
    assert!(Xai
        .parse_poll(&HttpResponse::json(200, "nope".into()), &[])
        .is_err());
    assert!(Xai
        .parse_poll(&HttpResponse::json(404, "{}".into()), &[])
        .is_err());
}

#[test]
fn expiry_is_judged_by_the_servers_date_header() {
    let body =
        |expire: Value, s: Value| json!({"batch_id": "b-1", "expire_time": expire, "state": s});
    let pending = json!({"num_requests": 2, "num_pending": 2});
    let partly = json!({"num_requests": 2, "num_pending": 1, "num_success": 1});
    let before = "Tue, 24 Nov 2026 09:59:59 GMT";
    let after = "Tue, 24 Nov 2026 10:00:00 GMT";
    let at = json!("2026-11-24T10:00:00Z");
    let parse = |r: HttpResponse| Xai.parse_poll(&r, &[]).unwrap();
    assert_eq!(
        parse(dated(body(at.clone(), pending.clone()), before)).state,
        PollState::Running
    );
    let r = parse(dated(body(at.clone(), pending.clone()), after));
    assert_eq!(r.state_label, "expired");
    match r.state {
        PollState::Ended {
            kind: EndKind::Expired,
            message,
        } => {
            assert!(
                message.contains("2 of 2 requests still pending at 2026-11-24T10:00:00Z"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    let r = parse(dated(body(at.clone(), partly), after));
    assert_eq!(
        (&r.state, r.end_kind_if_partial),
        (&first_page(), Some(EndKind::Expired))
    );
    // No Date header: never taken for expired.
    assert_eq!(
        parse(ok(body(at.clone(), pending.clone()))).state,
        PollState::Running
    );
    // Other encodings of expire_time.
    for expire in [
        json!("2026-11-24"),
        json!(1_795_000_000),
        json!({"seconds": "1795000000"}),
        json!("2026-11-24T11:00:00+01:00"),
    ] {
        assert_eq!(
            parse(dated(body(expire.clone(), pending.clone()), after)).state_label,
            "expired",
            "{expire}"
        );
    }
    // Nothing pending: completed, even after the expiry.
    let done = json!({"num_requests": 2, "num_success": 2});
    assert_eq!(parse(dated(body(at, done), after)).state_label, "completed");
}

#[test]
fn time_parsing() {
    assert_eq!(rfc3339_seconds("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        rfc3339_seconds("2026-11-23T10:00:00.123456Z"),
        Some(1_795_428_000)
    );
    assert_eq!(
        rfc3339_seconds("2026-11-23T12:00:00+02:00"),
        Some(1_795_428_000)
    );
    assert_eq!(
        rfc3339_seconds("2026-11-23T07:30:00-02:30"),
        Some(1_795_428_000)
    );
    assert_eq!(rfc3339_seconds("2026-11-23 10:00Z"), Some(1_795_428_000));
    assert_eq!(rfc3339_seconds("2000-03-01"), Some(951_868_800));
    assert_eq!(rfc3339_seconds("1969-12-31T23:59:59Z"), Some(-1));
    for bad in [
        "",
        "2026-13-01",
        "2026-1-01",
        "20261123",
        "2026-11-23X10:00:00Z",
        "2026-11-23T25:00:00Z",
        "ünïcödé-xx",
        "2026-11-23T10",
    ] {
        assert_eq!(rfc3339_seconds(bad), None, "{bad}");
    }
    assert_eq!(
        http_date_seconds("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(
        http_date_seconds("Mon, 23 Nov 2026 10:00:00 GMT"),
        Some(1_795_428_000)
    );
    for bad in [
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "",
    ] {
        assert_eq!(http_date_seconds(bad), None, "{bad}");
    }
}

#[test]
fn results_pages_map_to_sync_answers() {
    let route = sample_route();
    let d = Xai.build_download(&ctx_for(&route, "t"), "batches/b-1/results?limit=100");
    assert_eq!(
        (d.method.as_str(), d.url.as_str()),
        ("GET", "https://api.x.ai/v1/batches/b-1/results?limit=100")
    );
    assert_eq!(d.header("authorization"), Some("Bearer xai-TEST"));

    let completion = json!({"id": "c1", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}]});
    let page = json!({"results": [
        {"batch_request_id": "a", "batch_result": {"response": {"chat_get_completion": completion}}},
        {"batch_request_id": "b", "batch_result": {"error": {"code": 3, "message": "bad temperature"}}},
        {"batch_request_id": "c", "batch_result": {"error": {"code": 4, "message": "deadline"}}},
        {"batch_request_id": "d", "batch_result": {"error": {"code": "RESOURCE_EXHAUSTED", "message": "slow down"}}},
        {"batch_request_id": "e", "response": {"completion_response": {"id": "c2"}}},
        {"batch_request_id": "a", "batch_result": {"error": {"code": 13}}},
        {"batch_result": {"response": {"chat_get_completion": {}}}},
        {"batch_request_id": "f", "batch_result": {}},
        {"batch_request_id": "g", "batch_result": {"response": {"x": 1, "y": 2}}},
        "text",
    ], "pagination_token": "next/page=1"}).to_string();
    let parsed = Xai.parse_results("b-1", &page);
    let got: Vec<(&str, u16)> = parsed
        .items
        .iter()
        .map(|i| (i.custom_id.as_str(), i.response.status))
        .collect();
    assert_eq!(
        got,
        vec![("a", 200), ("b", 400), ("c", 504), ("d", 429), ("e", 200)]
    );
    assert_eq!(body_json(&parsed.items[0].response), completion);
    assert_eq!(
        body_json(&parsed.items[1].response),
        json!({"error": {"message": "bad temperature", "type": "invalid_request_error", "param": null, "code": "INVALID_ARGUMENT"}})
    );
    assert_eq!(
        parsed.items[1].response.header("content-type"),
        Some("application/json")
    );
    assert_eq!(
        parsed.items[1].response.header("x-batchling-batch-id"),
        Some("b-1")
    );
    assert_eq!(
        body_json(&parsed.items[2].response)["error"]["type"],
        "server_error"
    );
    assert_eq!(body_json(&parsed.items[4].response), json!({"id": "c2"}));
    let bad: Vec<usize> = parsed.malformed.iter().map(|m| m.line_number).collect();
    assert_eq!(bad, vec![6, 7, 8, 9, 10]);
    assert!(parsed.malformed[0].reason.contains("duplicate"));

    // Paging: the token, percent-encoded, names the next download.
    assert_eq!(
        Xai.next_download("b-1", &page).as_deref(),
        Some("batches/b-1/results?limit=100&pagination_token=next%2Fpage%3D1")
    );
    let last = |token: Value| {
        json!({"results": [{"batch_request_id": "a", "batch_result": {"error": {"code": 3}}}], "pagination_token": token}).to_string()
    };
    assert_eq!(Xai.next_download("b-1", &last(json!(null))), None);
    assert_eq!(Xai.next_download("b-1", &last(json!(""))), None);
    assert_eq!(
        Xai.next_download("b-1", &json!({"results": []}).to_string()),
        None
    );
    // An empty page ends the listing even with a token.
    assert_eq!(
        Xai.next_download(
            "b-1",
            &json!({"results": [], "pagination_token": "t"}).to_string()
        ),
        None
    );
    assert_eq!(Xai.next_download("b-1", "garbage"), None);

    // Whole-page problems are one malformed entry; an empty page (results left out) is fine.
    assert_eq!(Xai.parse_results("b-1", "{}"), ParsedResults::default());
    for body in ["nope", "[]", r#"{"results": 5}"#] {
        let p = Xai.parse_results("b-1", body);
        assert!(p.items.is_empty());
        assert_eq!(p.malformed.len(), 1, "{body}");
    }
}

#[test]
fn ended_and_dry_run_answers() {
    for (kind, status) in [
        (EndKind::Expired, 504),
        (EndKind::Cancelled, 499),
        (EndKind::Failed, 500),
    ] {
        let r = Xai.ended_response("b-9", kind, "detail here");
        assert_eq!(r.status, status);
        assert_eq!(r.header("x-should-retry"), Some("false"));
        assert_eq!(r.header("x-batchling-batch-id"), Some("b-9"));
        let v = body_json(&r);
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("xai batch b-9") && message.contains("detail here"),
            "{message}"
        );
        assert_eq!(v["error"]["code"], format!("batch_{kind}"));
        assert_eq!(v["error"]["type"], "batch_error");
    }
    let route = sample_route();
    let r = Xai.dry_run_response(&route, "cid");
    assert_eq!(
        (r.status, r.header("x-batchling-dry-run")),
        (200, Some("1"))
    );
    let v = body_json(&r);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "grok-4");
}

proptest! {
    #[test]
    fn results_parsing_never_panics(body in ".{0,300}") {
        let _ = Xai.parse_results("b", &body);
        let _ = Xai.next_download("b", &body);
        let _ = rfc3339_seconds(&body);
        let _ = http_date_seconds(&body);
    }

    #[test]
    fn every_well_formed_entry_is_kept(ids in proptest::collection::vec("[a-z0-9]{1,8}", 0..20)) {
        let results: Vec<Value> = ids.iter().map(|id| json!({"batch_request_id": id, "batch_result": {"error": {"code": 5}}})).collect();
        let parsed = Xai.parse_results("b", &json!({"results": results}).to_string());
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(parsed.items.len(), unique.len());
        prop_assert_eq!(parsed.items.len() + parsed.malformed.len(), ids.len());
        prop_assert!(parsed.items.iter().all(|i| i.response.status == 404));
    }
}
