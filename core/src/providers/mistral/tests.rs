use super::*;
use crate::providers::tests::{ctx_for, garbage_lines_strategy, mixed_jsonl, req};
use crate::providers::{classify_with, HostSpec, HostTable};
use proptest::prelude::*;

const CHAT: &str = r#"{"model":"mistral-small-latest","messages":[{"role":"user","content":"Best French cheese?"}],"max_tokens":100,"stream":false}"#;

fn builtin(url: &str, method: &str, body: &str) -> Result<Route, PassThrough> {
    classify_with(
        &req(
            method,
            url,
            &[
                ("Authorization", "Bearer mk-1"),
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
                ("user-agent", "speakeasy-sdk/typescript 2.7.0"),
            ],
            body,
        ),
        &HostTable::builtin(),
    )
}

fn chat_route() -> Route {
    builtin("https://api.mistral.ai/v1/chat/completions", "POST", CHAT).unwrap()
}

#[test]
fn recognised_on_its_host_only() {
    let r = chat_route();
    assert_eq!(r.provider, ProviderId::Mistral);
    assert_eq!(r.endpoint, "/v1/chat/completions");
    assert_eq!(r.base_url, "https://api.mistral.ai/v1");
    assert_eq!(r.model, "mistral-small-latest");
    // `stream: false` is dropped, the rest kept in order.
    assert_eq!(
        r.body.to_string(),
        r#"{"model":"mistral-small-latest","messages":[{"role":"user","content":"Best French cheese?"}],"max_tokens":100}"#
    );
    assert_eq!(
        r.forward_headers,
        vec![("authorization".to_string(), "Bearer mk-1".to_string())]
    );
    for (path, endpoint, body) in [
        (
            "/v1/embeddings",
            "/v1/embeddings",
            r#"{"model":"mistral-embed","input":["a"]}"#,
        ),
        (
            "/v1/fim/completions",
            "/v1/fim/completions",
            r#"{"model":"codestral-latest","prompt":"def f(","suffix":")"}"#,
        ),
    ] {
        let url = format!("https://api.mistral.ai{path}");
        assert_eq!(builtin(&url, "POST", body).unwrap().endpoint, endpoint);
    }
    // The same paths elsewhere are not Mistral's.
    assert_eq!(
        Mistral.recognize(&req("POST", "https://h/v1/chat/completions", &[], CHAT)),
        None
    );
    // A declared host (the fake provider's prefix).
    let table = HostTable::with_declared(&[HostSpec {
        base_url: "http://127.0.0.1:9/mistral/v1".into(),
        provider: ProviderId::Mistral,
        completion_window: None,
        max_requests: None,
        max_file_bytes: None,
        max_inline_bytes: None,
    }])
    .unwrap();
    let r = classify_with(
        &req(
            "POST",
            "http://127.0.0.1:9/mistral/v1/chat/completions",
            &[],
            CHAT,
        ),
        &table,
    )
    .unwrap();
    assert_eq!(
        (r.provider, r.base_url.as_str()),
        (ProviderId::Mistral, "http://127.0.0.1:9/mistral/v1")
    );
}

#[test]
fn pass_through_reasons() {
    let base = "https://api.mistral.ai/v1";
    let cases = [
        (
            "POST",
            "/agents/completions",
            r#"{"agent_id":"a","messages":[]}"#,
            PassThrough::UnknownUrl,
        ),
        (
            "POST",
            "/ocr",
            r#"{"model":"mistral-ocr-latest"}"#,
            PassThrough::UnknownUrl,
        ),
        (
            "POST",
            "/batch/jobs",
            r#"{"input_files":["f"]}"#,
            PassThrough::UnknownUrl,
        ),
        ("GET", "/models", "", PassThrough::UnknownUrl),
        ("GET", "/chat/completions", "", PassThrough::NotPost),
        (
            "POST",
            "/chat/completions",
            r#"{"model":"m","messages":[],"stream":true}"#,
            PassThrough::Streaming,
        ),
        (
            "POST",
            "/chat/completions",
            "not json",
            PassThrough::NotJson,
        ),
        (
            "POST",
            "/chat/completions",
            r#"{"messages":[]}"#,
            PassThrough::NoModel,
        ),
    ];
    for (method, path, body, expected) in cases {
        assert_eq!(
            builtin(&format!("{base}{path}"), method, body).unwrap_err(),
            expected,
            "{method} {path}"
        );
    }
}

fn items() -> Vec<BatchItem> {
    vec![
        BatchItem {
            custom_id: "a".into(),
            body: json!({"model": "mistral-small-latest", "messages": [{"role": "user", "content": "1"}]}),
        },
        BatchItem {
            custom_id: "b".into(),
            body: json!({"model": "mistral-small-latest", "messages": [{"role": "user", "content": "é\"\n"}]}),
        },
    ]
}

#[test]
fn upload_is_a_multipart_jsonl_of_custom_id_and_body() {
    let route = chat_route();
    let ctx = ctx_for(&route, "batchling-t1");
    let items = items();
    let up = Mistral.build_upload(&ctx, &items).unwrap();
    assert_eq!(up.method, "POST");
    assert_eq!(up.url, "https://api.mistral.ai/v1/files");
    assert_eq!(up.header("authorization"), Some("Bearer mk-1"));
    let ct = up.header("content-type").unwrap();
    let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
    let jsonl: String = items
        .iter()
        .map(|i| format!("{}\n", json!({"custom_id": i.custom_id, "body": i.body})))
        .collect();
    assert!(up.body.contains(&format!(
        "name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\n"
    )));
    assert!(up.body.contains(&format!(
        "filename=\"batchling-t1.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{jsonl}\r\n--{boundary}--\r\n"
    )));
    let total: usize = items.iter().map(|i| Mistral.item_bytes(&ctx, i)).sum();
    assert_eq!(total, jsonl.len());

    let file = HttpResponse::json(
        200,
        r#"{"id":"fe3343a2-1","object":"file","bytes":10,"created_at":1,"filename":"x.jsonl","purpose":"batch","sample_type":"batch_request","num_lines":2,"source":"upload"}"#.into(),
    );
    assert_eq!(Mistral.parse_upload(&file).unwrap(), "fe3343a2-1");
    assert!(Mistral
        .parse_upload(&HttpResponse::json(200, "{}".into()))
        .is_err());
    assert!(Mistral
        .parse_upload(&HttpResponse::json(
            401,
            r#"{"message":"Unauthorized"}"#.into()
        ))
        .is_err());
}

#[test]
fn create_find_poll_and_download_requests() {
    let route = chat_route();
    let ctx = ctx_for(&route, "batchling-t1");
    let create = Mistral.build_create(&ctx, &items(), Some("fe3343a2-1"));
    assert_eq!(create.method, "POST");
    assert_eq!(create.url, "https://api.mistral.ai/v1/batch/jobs");
    assert_eq!(create.header("content-type"), Some("application/json"));
    assert_eq!(create.header("authorization"), Some("Bearer mk-1"));
    let body: Value = serde_json::from_str(&create.body).unwrap();
    assert_eq!(
        body,
        json!({
            "input_files": ["fe3343a2-1"],
            "endpoint": "/v1/chat/completions",
            "model": "mistral-small-latest",
            "metadata": {"batchling_tag": "batchling-t1"},
            "timeout_hours": 24,
        })
    );

    let find = Mistral.build_find(&ctx).unwrap();
    assert_eq!(find.method, "GET");
    assert_eq!(
        find.url,
        "https://api.mistral.ai/v1/batch/jobs?page=0&page_size=100&order_by=-created"
    );
    assert_eq!(find.header("authorization"), Some("Bearer mk-1"));

    let poll = Mistral.build_poll(&ctx, "b5d8c0a4-1");
    assert_eq!(
        (poll.method.as_str(), poll.url.as_str()),
        ("GET", "https://api.mistral.ai/v1/batch/jobs/b5d8c0a4-1")
    );
    let dl = Mistral.build_download(&ctx, "7a1e-out");
    assert_eq!(
        (dl.method.as_str(), dl.url.as_str()),
        ("GET", "https://api.mistral.ai/v1/files/7a1e-out/content")
    );
    assert_eq!(dl.header("authorization"), Some("Bearer mk-1"));
}

#[test]
fn timeout_hours_follow_a_declared_window() {
    assert_eq!(Mistral::timeout_hours(None), 24);
    assert_eq!(Mistral::timeout_hours(Some("48h")), 48);
    assert_eq!(Mistral::timeout_hours(Some("2d")), 48);
    for bad in ["", "h", "0h", "soon", "24"] {
        assert_eq!(Mistral::timeout_hours(Some(bad)), 24, "{bad}");
    }
}

fn job(status: &str, extra: &str) -> String {
    format!(
        r#"{{"id":"b5d8c0a4-1","object":"batch","input_files":["fe3343a2-1"],"metadata":{{"batchling_tag":"batchling-t1"}},"endpoint":"/v1/chat/completions","model":"mistral-small-latest","errors":[],"status":"{status}","created_at":1763880000,"total_requests":10,"completed_requests":7,"succeeded_requests":5,"failed_requests":2{extra}}}"#
    )
}

#[test]
fn parse_create_and_find() {
    let created = Mistral
        .parse_create(&HttpResponse::json(200, job("QUEUED", "")))
        .unwrap();
    assert_eq!(
        created,
        RemoteBatch {
            id: "b5d8c0a4-1".into(),
            state_label: "QUEUED".into()
        }
    );
    assert!(Mistral
        .parse_create(&HttpResponse::json(
            400,
            r#"{"object":"error","message":"bad"}"#.into()
        ))
        .is_err());
    let list = format!(
        r#"{{"object":"list","data":[{},{}],"total":2}}"#,
        job("RUNNING", "").replace("batchling-t1", "other"),
        job("RUNNING", "")
    );
    let resp = HttpResponse::json(200, list);
    assert_eq!(
        Mistral
            .parse_find(&resp, "batchling-t1")
            .unwrap()
            .unwrap()
            .id,
        "b5d8c0a4-1"
    );
    assert_eq!(Mistral.parse_find(&resp, "batchling-zz").unwrap(), None);
    assert!(Mistral
        .parse_find(&HttpResponse::json(200, "{}".into()), "t")
        .is_err());
}

fn poll(status: &str, extra: &str) -> PollReport {
    Mistral
        .parse_poll(&HttpResponse::json(200, job(status, extra)), &[])
        .unwrap()
}

#[test]
fn parse_poll_states() {
    for s in ["QUEUED", "RUNNING", "CANCELLATION_REQUESTED"] {
        let r = poll(s, "");
        assert_eq!(r.state, PollState::Running, "{s}");
        assert_eq!(r.state_label, s);
    }
    let done = poll(
        "SUCCESS",
        r#","output_file":"7a1e-out","error_file":"7a1e-err""#,
    );
    // `completed_requests` (7) counts the failed too: completed is the succeeded ones.
    assert_eq!((done.total, done.completed, done.failed), (10, 5, 2));
    assert_eq!(
        done.state,
        PollState::Completed {
            downloads: vec!["7a1e-out".into(), "7a1e-err".into()],
            inline: None
        }
    );
    assert_eq!(done.end_kind_if_partial, None);
    assert_eq!(
        poll("SUCCESS", r#","output_file":"o","error_file":null"#).state,
        PollState::Completed {
            downloads: vec!["o".into()],
            inline: None
        }
    );

    for (status, kind) in [
        ("FAILED", EndKind::Failed),
        ("TIMEOUT_EXCEEDED", EndKind::Expired),
        ("CANCELLED", EndKind::Cancelled),
    ] {
        let partial = poll(status, r#","output_file":"o","error_file":null"#);
        assert_eq!(
            partial.state,
            PollState::Completed {
                downloads: vec!["o".into()],
                inline: None
            },
            "{status}"
        );
        assert_eq!(partial.end_kind_if_partial, Some(kind));
        let empty = poll(status, r#","output_file":null"#);
        assert_eq!(
            empty.state,
            PollState::Ended {
                kind,
                message: String::new()
            },
            "{status}"
        );
    }
    let failed = Mistral
        .parse_poll(
            &HttpResponse::json(
                200,
                job("FAILED", "").replace(
                    r#""errors":[]"#,
                    r#""errors":[{"message":"Invalid input file","count":3},{"message":"quota"}]"#,
                ),
            ),
            &[],
        )
        .unwrap();
    assert_eq!(
        failed.state,
        PollState::Ended {
            kind: EndKind::Failed,
            message: "Invalid input file (3 requests); quota".into()
        }
    );

    for bad in [
        job("success", ""),
        r#"{"id":"x"}"#.to_string(),
        "not json".to_string(),
    ] {
        assert!(Mistral
            .parse_poll(&HttpResponse::json(200, bad.clone()), &[])
            .is_err());
    }
    assert!(Mistral
        .parse_poll(&HttpResponse::json(500, job("SUCCESS", "")), &[])
        .is_err());
}

const RESULTS: &str = concat!(
    r#"{"id":"batch-1-0","custom_id":"ok","response":{"status_code":200,"body":{"id":"cmpl-1","object":"chat.completion","model":"mistral-small-latest","choices":[{"index":0,"message":{"role":"assistant","content":"Comté."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}},"error":null}"#,
    "\n",
    r#"{"custom_id":"no-status","response":{"body":{"id":"cmpl-2"}}}"#,
    "\r\n",
    r#"{"custom_id":"bad","response":{"status_code":400,"body":{"object":"error","message":"Invalid model","type":"invalid_request_error","param":null,"code":"1500"}},"error":null}"#,
    "\n",
    r#"{"custom_id":"expired","response":null,"error":{"message":"timed out","code":"batch_expired"}}"#,
    "\n",
    r#"{"custom_id":"cancelled","response":null,"error":{"message":"c","code":"cancelled"}}"#,
    "\n",
    r#"{"custom_id":"broken","response":null,"error":"internal failure"}"#,
    "\n",
    r#"{"custom_id":"both","response":{"body":null},"error":{"message":"m","code":3001}}"#,
    "\n",
);

#[test]
fn parse_results_maps_lines() {
    let parsed = Mistral.parse_results("b5d8c0a4-1", RESULTS);
    assert!(parsed.malformed.is_empty(), "{:?}", parsed.malformed);
    let by_id = |id: &str| {
        parsed
            .items
            .iter()
            .find(|i| i.custom_id == id)
            .unwrap()
            .response
            .clone()
    };
    let ok = by_id("ok");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("content-type"), Some("application/json"));
    assert!(ok
        .body
        .starts_with(r#"{"id":"cmpl-1","object":"chat.completion""#));

    let no_status = by_id("no-status");
    assert_eq!(
        (no_status.status, no_status.body.as_str()),
        (200, r#"{"id":"cmpl-2"}"#)
    );

    let bad = by_id("bad");
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.body,
        r#"{"object":"error","message":"Invalid model","type":"invalid_request_error","param":null,"code":"1500"}"#
    );

    let expired = by_id("expired");
    assert_eq!(expired.status, 504);
    assert_eq!(expired.header("x-should-retry"), Some("false"));
    let v: Value = serde_json::from_str(&expired.body).unwrap();
    assert_eq!(v["object"], "error");
    assert_eq!(v["code"], "batch_expired");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("b5d8c0a4-1") && msg.contains("timed out"),
        "{msg}"
    );

    let cancelled = by_id("cancelled");
    assert_eq!(cancelled.status, 499);
    assert_eq!(cancelled.header("x-should-retry"), Some("false"));

    let broken = by_id("broken");
    assert_eq!(broken.status, 500);
    assert_eq!(broken.header("x-should-retry"), None);
    assert_eq!(broken.header("x-batchling-batch-id"), Some("b5d8c0a4-1"));
    let v: Value = serde_json::from_str(&broken.body).unwrap();
    assert!(v["message"].as_str().unwrap().contains("internal failure"));

    // A response without a status but with an error: the error decides.
    let both = by_id("both");
    assert_eq!(both.status, 500);
    let v: Value = serde_json::from_str(&both.body).unwrap();
    assert_eq!(v["code"], "3001");
}

#[test]
fn parse_results_reports_bad_lines() {
    let body = concat!(
        r#"{"custom_id":"a","response":{"status_code":200,"body":{}}}"#,
        "\n",
        r#"{"custom_id":"b","response":{"status_code":200,"body":{"#,
        "\n\n",
        r#"{"custom_id":"c","response":null,"error":null}"#,
        "\n",
        r#"{"custom_id":"d","response":{"status_code":42,"body":{}}}"#,
        "\n",
        r#"{"custom_id":"a","response":{"status_code":200,"body":{}}}"#,
        "\n",
        r#"{"response":{"status_code":200,"body":{}}}"#,
        "\n",
        r#"{"custom_id":"e","response":{"status_code":200}}"#,
        "\n",
        r#"{"custom_id":"f","response":[200]}"#,
        "\n",
        r#"["g"]"#,
    );
    let parsed = Mistral.parse_results("b1", body);
    assert_eq!(parsed.items.len(), 1);
    let lines: Vec<usize> = parsed.malformed.iter().map(|m| m.line_number).collect();
    assert_eq!(lines, vec![2, 4, 5, 6, 7, 8, 9, 10]);
    assert!(parsed.malformed[3].reason.contains("duplicate"));
}

#[test]
fn ended_response_names_batch_and_state() {
    for (kind, status) in [
        (EndKind::Expired, 504),
        (EndKind::Cancelled, 499),
        (EndKind::Failed, 500),
    ] {
        let r = Mistral.ended_response("b5d8c0a4-1", kind, "Invalid input file");
        assert_eq!(r.status, status);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-should-retry"), Some("false"));
        assert_eq!(r.header("x-batchling-batch-id"), Some("b5d8c0a4-1"));
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["object"], "error");
        assert_eq!(v["type"], "batch_error");
        assert_eq!(v["code"], format!("batch_{kind}"));
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains("mistral batch b5d8c0a4-1")
                && msg.contains(kind.as_str())
                && msg.contains("Invalid input file"),
            "{msg}"
        );
    }
}

#[test]
fn dry_run_shapes() {
    let r = Mistral.dry_run_response(&chat_route(), "c1");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-batchling-dry-run"), Some("1"));
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "mistral-small-latest");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    let fim = builtin(
        "https://api.mistral.ai/v1/fim/completions",
        "POST",
        r#"{"model":"codestral-latest","prompt":"x"}"#,
    )
    .unwrap();
    let v: Value = serde_json::from_str(&Mistral.dry_run_response(&fim, "c2").body).unwrap();
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");

    let emb = |body: &str| {
        let route = builtin("https://api.mistral.ai/v1/embeddings", "POST", body).unwrap();
        let r = Mistral.dry_run_response(&route, "c3");
        assert_eq!(r.header("x-batchling-dry-run"), Some("1"));
        serde_json::from_str::<Value>(&r.body).unwrap()
    };
    let v = emb(r#"{"model":"mistral-embed","input":["a","b"]}"#);
    assert_eq!(v["id"], "embd-dryrun-c3");
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 1024);
    let v = emb(r#"{"model":"codestral-embed","input":"a","output_dimension":256}"#);
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 256);
    let v = emb(r#"{"model":"codestral-embed-2505","input":"a"}"#);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 1536);
}

#[test]
fn limits_default_and_declared() {
    let mut route = chat_route();
    let l = Mistral.limits(&route);
    assert_eq!(l.max_requests, 1_000_000);
    assert_eq!(l.max_bytes, 512_000_000 - 64 * 1024);
    route.settings.max_requests = Some(10);
    route.settings.max_file_bytes = Some(1000);
    let l = Mistral.limits(&route);
    assert_eq!((l.max_requests, l.max_bytes), (10, 500));
}

fn valid_line(id: &str, n: u32) -> String {
    if n.is_multiple_of(2) {
        json!({"id": format!("batch-{n}"), "custom_id": id, "response": {"status_code": 200, "body": {"n": n}}, "error": null}).to_string()
    } else {
        json!({"custom_id": id, "response": null, "error": {"code": "batch_expired", "message": "m"}}).to_string()
    }
}

proptest! {
    #[test]
    fn parse_results_never_loses_a_good_line(case in mixed_jsonl(valid_line)) {
        let parsed = Mistral.parse_results("b", &case.body);
        prop_assert_eq!(parsed.items.iter().map(|i| i.custom_id.clone()).collect::<Vec<_>>(), case.good_ids);
        prop_assert_eq!(parsed.malformed.iter().map(|m| m.line_number).collect::<Vec<_>>(), case.bad_lines);
    }

    #[test]
    fn parse_results_survives_garbage(body in garbage_lines_strategy()) {
        let _ = Mistral.parse_results("b", &body);
    }
}
