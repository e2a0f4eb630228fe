use super::*;
use crate::providers::tests::{ctx_for, garbage_lines_strategy, mixed_jsonl, req};
use proptest::prelude::*;

fn chat_req(url: &str, headers: &[(&str, &str)], body: &str) -> HttpRequest {
    req("POST", url, headers, body)
}

fn openai_route() -> Route {
    let r = chat_req(
        "https://api.openai.com/v1/chat/completions",
        &[
            ("Authorization", "Bearer sk-test"),
            ("OpenAI-Organization", "org-1"),
        ],
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"2+2?"}],"max_completion_tokens":50}"#,
    );
    OpenAi.recognize(&r).unwrap().unwrap()
}

#[test]
fn recognizes_endpoints_on_any_base() {
    for (suffix, endpoint) in ENDPOINTS {
        let url = format!("http://127.0.0.1:9/v1{suffix}");
        let r = chat_req(
            &url,
            &[("authorization", "Bearer k")],
            r#"{"model":"m","input":"x"}"#,
        );
        let route = OpenAi.recognize(&r).unwrap().unwrap();
        assert_eq!(route.endpoint, *endpoint);
        assert_eq!(route.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(route.model, "m");
    }
    // Groq-style base path.
    let r = chat_req(
        "https://api.groq.com/openai/v1/chat/completions",
        &[],
        r#"{"model":"m"}"#,
    );
    assert_eq!(
        OpenAi.recognize(&r).unwrap().unwrap().base_url,
        "https://api.groq.com/openai/v1"
    );
}

#[test]
fn not_openai_shapes() {
    for url in [
        "https://api.openai.com/v1/responses/resp_1",
        "https://api.openai.com/v1/chat/completions/abc",
        "https://api.openai.com/v1/batches",
        "https://api.openai.com/v1/completions",
    ] {
        assert!(
            OpenAi
                .recognize(&chat_req(url, &[], r#"{"model":"m"}"#))
                .is_none(),
            "{url}"
        );
    }
    let signed = chat_req(
        "https://api.anthropic.com/v1/chat/completions",
        &[("anthropic-version", "2023-06-01")],
        r#"{"model":"m"}"#,
    );
    assert!(OpenAi.recognize(&signed).is_none());
    let azure = chat_req(
        "https://r.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21",
        &[("api-key", "k")],
        r#"{"model":"m"}"#,
    );
    assert_eq!(OpenAi.recognize(&azure), Some(Err(PassThrough::UnknownUrl)));
}

#[test]
fn pass_through_reasons() {
    let url = "https://api.openai.com/v1/chat/completions";
    assert_eq!(
        OpenAi.recognize(&req("GET", url, &[], "")),
        Some(Err(PassThrough::NotPost))
    );
    assert_eq!(
        OpenAi.recognize(&chat_req(url, &[], r#"{"model":"m","stream":true}"#)),
        Some(Err(PassThrough::Streaming))
    );
    assert_eq!(
        OpenAi.recognize(&chat_req(
            url,
            &[("content-type", "multipart/form-data; boundary=x")],
            "--x"
        )),
        Some(Err(PassThrough::NotJson))
    );
    assert_eq!(
        OpenAi.recognize(&chat_req(url, &[], "[1,2]")),
        Some(Err(PassThrough::NotJson))
    );
    assert_eq!(
        OpenAi.recognize(&chat_req(url, &[], r#"{"messages":[]}"#)),
        Some(Err(PassThrough::NoModel))
    );
    assert_eq!(
        OpenAi.recognize(&chat_req(url, &[], r#"{"model":""}"#)),
        Some(Err(PassThrough::NoModel))
    );
}

#[test]
fn body_fidelity_strips_only_stream_fields() {
    let body = r#"{"temperature":0.7,"model":"gpt-4o","stream":false,"messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true},"metadata":{"z":"1","a":"2"},"seed":12345678901,"tools":[]}"#;
    let route = OpenAi
        .recognize(&chat_req(
            "https://api.openai.com/v1/chat/completions",
            &[],
            body,
        ))
        .unwrap()
        .unwrap();
    assert_eq!(
        route.body.to_string(),
        r#"{"temperature":0.7,"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"metadata":{"z":"1","a":"2"},"seed":12345678901,"tools":[]}"#
    );
}

#[test]
fn forward_headers_and_fingerprint() {
    let route = openai_route();
    assert_eq!(
        route.forward_headers,
        vec![
            ("authorization".to_string(), "Bearer sk-test".to_string()),
            ("openai-organization".to_string(), "org-1".to_string()),
        ]
    );
    assert_eq!(route.credential_fingerprint.len(), 64);
    assert!(!route.credential_fingerprint.contains("sk-test"));
    assert!(!format!("{route:?}").contains("sk-test"));
}

#[test]
fn build_upload_is_multipart_jsonl() {
    let route = openai_route();
    let ctx = ctx_for(&route, "batchling-t1");
    let items = vec![
        BatchItem {
            custom_id: "a".into(),
            body: route.body.clone(),
        },
        BatchItem {
            custom_id: "b".into(),
            body: json!({"model":"gpt-4o-mini","messages":[]}),
        },
    ];
    let up = OpenAi.build_upload(&ctx, &items).unwrap();
    assert_eq!(up.method, "POST");
    assert_eq!(up.url, "https://api.openai.com/v1/files");
    assert_eq!(up.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(up.header("openai-organization"), Some("org-1"));
    let ct = up.header("content-type").unwrap();
    let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
    assert!(up.body.starts_with(&format!("--{boundary}\r\n")));
    assert!(up.body.ends_with(&format!("\r\n--{boundary}--\r\n")));
    assert!(up.body.contains("name=\"purpose\"\r\n\r\nbatch\r\n"));
    assert!(up.body.contains("filename=\"batchling-t1.jsonl\""));
    let line_a = format!(
        r#"{{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{}}}"#,
        route.body
    );
    assert!(up.body.contains(&format!("{line_a}\n")));
    assert_eq!(OpenAi.item_bytes(&ctx, &items[0]), line_a.len() + 1);
    // Deterministic.
    assert_eq!(OpenAi.build_upload(&ctx, &items), Some(up));
}

#[test]
fn create_find_poll_download_requests() {
    let route = openai_route();
    let ctx = ctx_for(&route, "batchling-t1");
    let c = OpenAi.build_create(&ctx, &[], Some("file-abc"));
    assert_eq!(
        (c.method.as_str(), c.url.as_str()),
        ("POST", "https://api.openai.com/v1/batches")
    );
    assert_eq!(c.header("content-type"), Some("application/json"));
    assert_eq!(c.header("authorization"), Some("Bearer sk-test"));
    let body: Value = serde_json::from_str(&c.body).unwrap();
    assert_eq!(
        body,
        json!({"input_file_id":"file-abc","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"batchling_tag":"batchling-t1"}})
    );
    let f = OpenAi.build_find(&ctx).unwrap();
    assert_eq!(
        (f.method.as_str(), f.url.as_str()),
        ("GET", "https://api.openai.com/v1/batches?limit=100")
    );
    let p = OpenAi.build_poll(&ctx, "batch_1");
    assert_eq!(
        (p.method.as_str(), p.url.as_str()),
        ("GET", "https://api.openai.com/v1/batches/batch_1")
    );
    assert_eq!(p.header("openai-organization"), Some("org-1"));
    let d = OpenAi.build_download(&ctx, "file-out");
    assert_eq!(d.url, "https://api.openai.com/v1/files/file-out/content");
    assert_eq!(d.header("authorization"), Some("Bearer sk-test"));
    assert!(d.body.is_empty());
}

#[test]
fn parse_upload_create_find() {
    let up = HttpResponse::json(200, r#"{"id":"file-abc123","object":"file","bytes":1532,"created_at":1763880000,"filename":"batch_in.jsonl","purpose":"batch","status":"processed","expires_at":1766472000}"#.into());
    assert_eq!(OpenAi.parse_upload(&up).unwrap(), "file-abc123");
    assert!(OpenAi
        .parse_upload(&HttpResponse::json(200, "{}".into()))
        .is_err());
    assert!(OpenAi
        .parse_upload(&HttpResponse::json(
            401,
            r#"{"error":{"message":"bad key"}}"#.into()
        ))
        .unwrap_err()
        .message
        .contains("bad key"));
    let created = HttpResponse::json(200, r#"{"id":"batch_abc123","object":"batch","status":"validating","request_counts":{"total":0,"completed":0,"failed":0}}"#.into());
    assert_eq!(
        OpenAi.parse_create(&created).unwrap(),
        RemoteBatch {
            id: "batch_abc123".into(),
            state_label: "validating".into()
        }
    );
    let list = HttpResponse::json(200, r#"{"object":"list","data":[{"id":"batch_1","status":"in_progress","metadata":{"job":"x"}},{"id":"batch_2","status":"validating","metadata":{"batchling_tag":"batchling-t1"}},{"id":"batch_3","status":"completed","metadata":null}],"has_more":false}"#.into());
    assert_eq!(
        OpenAi.parse_find(&list, "batchling-t1").unwrap(),
        Some(RemoteBatch {
            id: "batch_2".into(),
            state_label: "validating".into()
        })
    );
    assert_eq!(OpenAi.parse_find(&list, "batchling-other").unwrap(), None);
    assert!(OpenAi
        .parse_find(&HttpResponse::json(200, "{}".into()), "t")
        .is_err());
}

fn poll(status: &str, extra: &str) -> PollReport {
    let body = format!(
        r#"{{"id":"batch_abc123","object":"batch","status":"{status}","request_counts":{{"total":100,"completed":95,"failed":5}}{extra}}}"#
    );
    OpenAi
        .parse_poll(&HttpResponse::json(200, body), &[])
        .unwrap()
}

#[test]
fn parse_poll_states() {
    for s in ["validating", "in_progress", "finalizing", "cancelling"] {
        assert_eq!(poll(s, "").state, PollState::Running);
    }
    let done = poll(
        "completed",
        r#","output_file_id":"file-out456","error_file_id":"file-err789""#,
    );
    assert_eq!((done.total, done.completed, done.failed), (100, 95, 5));
    assert_eq!(done.state_label, "completed");
    assert_eq!(
        done.state,
        PollState::Completed {
            downloads: vec!["file-out456".into(), "file-err789".into()],
            inline: None
        }
    );
    assert_eq!(done.end_kind_if_partial, None);
    let no_errors = poll(
        "completed",
        r#","output_file_id":"file-out456","error_file_id":null"#,
    );
    assert_eq!(
        no_errors.state,
        PollState::Completed {
            downloads: vec!["file-out456".into()],
            inline: None
        }
    );

    let failed = poll(
        "failed",
        r#","errors":{"object":"list","data":[{"code":"invalid_json_line","message":"bad line","param":null,"line":3}]}"#,
    );
    assert_eq!(
        failed.state,
        PollState::Ended {
            kind: EndKind::Failed,
            message: "line 3: invalid_json_line: bad line".into()
        }
    );

    let expired = poll(
        "expired",
        r#","output_file_id":"file-out","error_file_id":null"#,
    );
    assert_eq!(
        expired.state,
        PollState::Completed {
            downloads: vec!["file-out".into()],
            inline: None
        }
    );
    assert_eq!(expired.end_kind_if_partial, Some(EndKind::Expired));
    assert_eq!(
        poll("cancelled", r#","output_file_id":null"#).state,
        PollState::Ended {
            kind: EndKind::Cancelled,
            message: String::new()
        }
    );
    assert!(OpenAi
        .parse_poll(
            &HttpResponse::json(200, r#"{"status":"weird"}"#.into()),
            &[]
        )
        .is_err());
    assert!(OpenAi
        .parse_poll(&HttpResponse::json(200, "not json".into()), &[])
        .is_err());
}

const RESULTS: &str = concat!(
    r#"{"id":"batch_req_wnaDys","custom_id":"req-1","response":{"status_code":200,"request_id":"req_c187b3","body":{"id":"chatcmpl-9758Iw","object":"chat.completion","created":1763880100,"model":"gpt-5.4-mini-2026-03-17","choices":[{"index":0,"message":{"role":"assistant","content":"4"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13}}},"error":null}"#,
    "\n",
    r#"{"id":"batch_req_x1","custom_id":"req-2","response":{"status_code":400,"request_id":"req_9f","body":{"error":{"message":"Invalid 'messages': empty array","type":"invalid_request_error","param":"messages","code":"empty_array"}}},"error":null}"#,
    "\r\n",
    r#"{"id":"batch_req_x2","custom_id":"req-3","response":null,"error":{"code":"batch_expired","message":"This request could not be executed before the completion window expired."}}"#,
    "\n",
    r#"{"id":"batch_req_x3","custom_id":"req-4","response":null,"error":{"code":"request_timeout","message":"timed out"}}"#,
    "\n",
    r#"{"id":"batch_req_x4","custom_id":"req-5","response":null,"error":{"code":"batch_cancelled","message":"cancelled"}}"#,
    "\n",
);

#[test]
fn parse_results_maps_lines() {
    let parsed = OpenAi.parse_results("batch_abc", RESULTS);
    assert!(parsed.malformed.is_empty(), "{:?}", parsed.malformed);
    let by_id = |id: &str| {
        &parsed
            .items
            .iter()
            .find(|i| i.custom_id == id)
            .unwrap()
            .response
    };

    let ok = by_id("req-1");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("content-type"), Some("application/json"));
    assert_eq!(ok.header("x-request-id"), Some("req_c187b3"));
    assert!(ok
        .body
        .starts_with(r#"{"id":"chatcmpl-9758Iw","object":"chat.completion","created":1763880100"#));

    let bad = by_id("req-2");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.header("x-request-id"), Some("req_9f"));
    assert_eq!(
        bad.body,
        r#"{"error":{"message":"Invalid 'messages': empty array","type":"invalid_request_error","param":"messages","code":"empty_array"}}"#
    );

    let expired = by_id("req-3");
    assert_eq!(expired.status, 504);
    assert_eq!(expired.header("x-should-retry"), Some("false"));
    let v: Value = serde_json::from_str(&expired.body).unwrap();
    assert_eq!(v["error"]["code"], "batch_expired");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("batch_abc"));

    let timeout = by_id("req-4");
    assert_eq!(timeout.status, 504);
    assert_eq!(timeout.header("x-should-retry"), None);

    let cancelled = by_id("req-5");
    assert_eq!(cancelled.status, 499);
    assert_eq!(cancelled.header("x-should-retry"), Some("false"));
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
    );
    let parsed = OpenAi.parse_results("b1", body);
    assert_eq!(parsed.items.len(), 1);
    let lines: Vec<usize> = parsed.malformed.iter().map(|m| m.line_number).collect();
    assert_eq!(lines, vec![2, 4, 5, 6, 7]);
    assert!(parsed.malformed[3].reason.contains("duplicate"));
}

/// `parse_results` as it was before the fast path: every line through a `Value`.
fn parse_results_via_value(body: &str) -> ParsedResults {
    common::parse_jsonl(body, |line| OpenAi::parse_line("b1", line))
}

#[test]
fn fast_path_agrees_with_value_path() {
    let body = [
        r#"{"custom_id":"a","response":{"status_code":200,"request_id":"r1","body":{"x":[1,2.5,"\u00e9"]}}}"#,
        r#"{"custom_id":"a\u0062","response":{"status_code":201,"request_id":"r\"2","body":"text"}}"#,
        r#"{"custom_id":"c","custom_id":"d","response":{"status_code":200,"body":{}},"response":{"status_code":500,"body":[1]}}"#,
        r#"{"custom_id":"e","response":{"status_code":200,"body":null}}"#,
        r#"{"custom_id":"f","response":{"status_code":200.0,"body":{}}}"#,
        r#"{"custom_id":"g","response":{"status_code":200,"request_id":7,"body":{}}}"#,
        r#"{"custom_id":"h","response":[200,"r",{}]}"#,
        r#"["i",{"status_code":200,"body":{}},null]"#,
        r#"{"custom_id":"j","response":"x","error":{"code":"request_timeout","message":"t"}}"#,
        r#"{"custom_id":"k","response":null,"error":"nope"}"#,
        r#"{"custom_id":null,"response":{"status_code":200,"body":{}}}"#,
        r#"{"custom_id":"l","response":{"status_code":700,"body":{}}}"#,
        r#"{"custom_id":"m","response":{"status_code":200}}"#,
        r#"{"custom_id":"n","response":{"status_code":200,"body":{}}} trailing"#,
        r#"{"custom_id":"ab","response":{"status_code":200,"body":{}}}"#,
        "\u{a0}{\"custom_id\":\"o\",\"response\":{\"status_code\":204,\"body\":{}}}\r",
    ]
    .join("\n");
    let fast = OpenAi.parse_results("b1", &body);
    let slow = parse_results_via_value(&body);
    assert_eq!(fast.malformed, slow.malformed);
    assert_eq!(fast.items.len(), slow.items.len());
    for (f, s) in fast.items.iter().zip(&slow.items) {
        assert_eq!(f.custom_id, s.custom_id);
        assert_eq!(f.response.status, s.response.status);
        assert_eq!(f.response.headers, s.response.headers);
        let parse = |b: &str| serde_json::from_str::<Value>(b).unwrap();
        assert_eq!(
            parse(&f.response.body),
            parse(&s.response.body),
            "{}",
            f.custom_id
        );
    }
    // The body is passed on as written, not re-serialized.
    assert_eq!(fast.items[0].response.body, r#"{"x":[1,2.5,"\u00e9"]}"#);
    assert_eq!(fast.items[1].custom_id, "ab");
    assert_eq!(fast.items[1].response.header("x-request-id"), Some("r\"2"));
    assert_eq!(fast.malformed.last().unwrap().line_number, 15);
}

#[test]
fn build_upload_matches_a_plain_encoding_across_chunks() {
    let route = openai_route();
    let ctx = ctx_for(&route, "batchling-t2");
    // About 3 MiB of lines, so several chunks, one line far larger than a chunk.
    let mut items: Vec<BatchItem> = (0..6000)
        .map(|i| BatchItem {
            custom_id: format!("id-{i}"),
            body: json!({"model": "m", "messages": [{"role": "user", "content": "é\"\n".repeat(i % 200)}]}),
        })
        .collect();
    items.insert(
        10,
        BatchItem {
            custom_id: "big".into(),
            body: json!({"model": "m", "input": "x".repeat(3 << 20)}),
        },
    );
    let mut jsonl = String::new();
    for item in &items {
        let line = json!({"custom_id": item.custom_id, "method": "POST", "url": ctx.route.endpoint, "body": item.body});
        jsonl.push_str(&line.to_string());
        jsonl.push('\n');
        assert_eq!(OpenAi.item_bytes(&ctx, item), line.to_string().len() + 1);
    }
    let digest = common::hex(&Sha256::digest(jsonl.as_bytes()));
    let b = format!("batchling-{}", &digest[..32]);
    let expected = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"batchling-t2.jsonl\"\r\n\
         Content-Type: application/jsonl\r\n\r\n{jsonl}\r\n--{b}--\r\n"
    );
    let up = OpenAi.build_upload(&ctx, &items).unwrap();
    assert!(
        up.body == expected,
        "upload body differs from the plain encoding"
    );
    assert_eq!(up.body.capacity(), up.body.len());
    assert_eq!(
        up.header("content-type"),
        Some(format!("multipart/form-data; boundary={b}").as_str())
    );
}

#[test]
fn ended_response_names_batch_and_state() {
    for (kind, status) in [
        (EndKind::Expired, 504),
        (EndKind::Cancelled, 499),
        (EndKind::Failed, 500),
    ] {
        let r = OpenAi.ended_response("batch_9", kind, "window closed");
        assert_eq!(r.status, status);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-should-retry"), Some("false"));
        let v: Value = serde_json::from_str(&r.body).unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("batch_9") && msg.contains(kind.as_str()) && msg.contains("window closed"),
            "{msg}"
        );
        assert_eq!(v["error"]["code"], format!("batch_{kind}"));
        assert_eq!(v["error"]["type"], "batch_error");
    }
}

#[test]
fn dry_run_shapes() {
    let route = openai_route();
    let r = OpenAi.dry_run_response(&route, "c1");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-batchling-dry-run"), Some("1"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");

    let resp_route = OpenAi
        .recognize(&chat_req(
            "http://h/v1/responses",
            &[],
            r#"{"model":"gpt-5","input":"x"}"#,
        ))
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(&OpenAi.dry_run_response(&resp_route, "c2").body).unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");

    let emb = OpenAi
        .recognize(&chat_req(
            "http://h/v1/embeddings",
            &[],
            r#"{"model":"text-embedding-3-small","input":["a","b"],"encoding_format":"base64","dimensions":3}"#,
        ))
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(&OpenAi.dry_run_response(&emb, "c3").body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"], "AAAAAAAAAAAAAAAA"); // 12 zero bytes
    let float = OpenAi
        .recognize(&chat_req(
            "http://h/v1/embeddings",
            &[],
            r#"{"model":"text-embedding-3-large","input":"a"}"#,
        ))
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(&OpenAi.dry_run_response(&float, "c4").body).unwrap();
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 3072);
}

// ---- OpenAI-compatible hosts: Groq, Doubleword, Azure OpenAI, declared hosts ----

use crate::providers::{classify, classify_with, HostSpec, HostTable};

const CHAT_BODY: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

fn at(url: &str, headers: &[(&str, &str)], body: &str) -> Result<Route, PassThrough> {
    classify(&chat_req(url, headers, body))
}

fn declared(base_url: &str, provider: ProviderId) -> HostSpec {
    serde_json::from_value(json!({"baseUrl": base_url, "provider": provider})).unwrap()
}

#[test]
fn host_profiles_choose_endpoints_and_defaults() {
    let groq = at(
        "https://api.groq.com/openai/v1/chat/completions",
        &[("authorization", "Bearer g")],
        CHAT_BODY,
    )
    .unwrap();
    assert_eq!(groq.provider, ProviderId::Groq);
    assert_eq!(groq.base_url, "https://api.groq.com/openai/v1");
    assert_eq!(groq.endpoint, "/v1/chat/completions");
    let limits = OpenAi.limits(&groq);
    assert_eq!(limits.max_requests, 50_000);
    assert_eq!(limits.max_bytes, 100 * MB - ENVELOPE_HEADROOM_BYTES);
    let c = OpenAi.build_create(&ctx_for(&groq, "t"), &[], Some("file-1"));
    assert_eq!(c.url, "https://api.groq.com/openai/v1/batches");
    let body: Value = serde_json::from_str(&c.body).unwrap();
    assert_eq!(body["completion_window"], "24h");
    assert_eq!(body["endpoint"], "/v1/chat/completions");
    // What Groq does not batch passes through rather than failing a batch.
    for path in ["/responses", "/embeddings", "/audio/transcriptions"] {
        let url = format!("https://api.groq.com/openai/v1{path}");
        assert_eq!(
            at(&url, &[], r#"{"model":"m","input":"x"}"#),
            Err(PassThrough::UnknownUrl),
            "{path}"
        );
    }

    let dw = at(
        "https://api.doubleword.ai/v1/embeddings",
        &[],
        r#"{"model":"e","input":"x"}"#,
    )
    .unwrap();
    assert_eq!(
        (dw.provider, dw.endpoint.as_str()),
        (ProviderId::Doubleword, "/v1/embeddings")
    );
    assert_eq!(
        OpenAi.limits(&dw).max_bytes,
        200 * MB - ENVELOPE_HEADROOM_BYTES
    );
    assert_eq!(
        at(
            "https://api.doubleword.ai/v1/responses",
            &[],
            r#"{"model":"m","input":"x"}"#
        ),
        Err(PassThrough::UnknownUrl)
    );

    let openai = openai_route();
    assert_eq!(OpenAi.limits(&openai).max_requests, 50_000);
    assert_eq!(
        OpenAi.limits(&openai).max_bytes,
        200 * MB - ENVELOPE_HEADROOM_BYTES
    );
}

#[test]
fn declared_settings_override_the_profile() {
    let mut spec = declared("http://127.0.0.1:8080/groq/openai/v1", ProviderId::Groq);
    spec.completion_window = Some("7d".into());
    spec.max_requests = Some(3);
    spec.max_file_bytes = Some(10 * MB);
    let mut generic = declared("https://api.novita.ai/openai/v1", ProviderId::OpenAi);
    generic.completion_window = Some("48h".into());
    let table = HostTable::with_declared(&[spec, generic]).unwrap();
    let groq = classify_with(
        &chat_req(
            "http://127.0.0.1:8080/groq/openai/v1/chat/completions",
            &[],
            CHAT_BODY,
        ),
        &table,
    )
    .unwrap();
    assert_eq!(groq.provider, ProviderId::Groq);
    assert_eq!(OpenAi.limits(&groq).max_requests, 3);
    assert_eq!(
        OpenAi.limits(&groq).max_bytes,
        10 * MB - ENVELOPE_HEADROOM_BYTES
    );
    let create = |r: &Route| -> Value {
        serde_json::from_str(&OpenAi.build_create(&ctx_for(r, "t"), &[], Some("f")).body).unwrap()
    };
    assert_eq!(create(&groq)["completion_window"], "7d");
    let novita = classify_with(
        &chat_req(
            "https://api.novita.ai/openai/v1/responses",
            &[],
            r#"{"model":"m","input":"x"}"#,
        ),
        &table,
    )
    .unwrap();
    assert_eq!(
        (novita.provider, novita.endpoint.as_str()),
        (ProviderId::OpenAi, "/v1/responses")
    );
    assert_eq!(create(&novita)["completion_window"], "48h");
    assert_eq!(novita.base_url, "https://api.novita.ai/openai/v1");
}

const AZURE_CHAT: &str = "https://res.openai.azure.com/openai/deployments/gpt4o-batch/chat/completions?api-version=2024-10-21";

fn azure_route() -> Route {
    at(AZURE_CHAT, &[("api-key", "az-secret")], CHAT_BODY).unwrap()
}

#[test]
fn azure_classic_deployment_calls() {
    let r = azure_route();
    assert_eq!(r.provider, ProviderId::Azure);
    assert_eq!(r.base_url, "https://res.openai.azure.com/openai");
    assert_eq!(r.endpoint, "/chat/completions");
    assert_eq!(r.model, "gpt4o-batch");
    assert_eq!(r.settings.api_version.as_deref(), Some("2024-10-21"));
    // The deployment is the model of each line; every other field is the caller's.
    assert_eq!(
        r.body.to_string(),
        r#"{"model":"gpt4o-batch","messages":[{"role":"user","content":"hi"}]}"#
    );
    assert_eq!(
        r.forward_headers,
        vec![("api-key".to_string(), "az-secret".to_string())]
    );
    assert!(!format!("{r:?}").contains("az-secret"));
    // A body without a model is fine: the path names the deployment.
    let no_model = at(AZURE_CHAT, &[], r#"{"messages":[]}"#).unwrap();
    assert_eq!(no_model.body["model"], "gpt4o-batch");

    let ctx = ctx_for(&r, "batchling-az");
    let items = [BatchItem {
        custom_id: "a".into(),
        body: r.body.clone(),
    }];
    let up = OpenAi.build_upload(&ctx, &items).unwrap();
    assert_eq!(
        up.url,
        "https://res.openai.azure.com/openai/files?api-version=2024-10-21"
    );
    assert_eq!(up.header("api-key"), Some("az-secret"));
    let line = format!(
        r#"{{"custom_id":"a","method":"POST","url":"/chat/completions","body":{}}}"#,
        r.body
    );
    assert!(up.body.contains(&format!("{line}\n")), "{}", up.body);
    assert_eq!(OpenAi.item_bytes(&ctx, &items[0]), line.len() + 1);

    let c = OpenAi.build_create(&ctx, &items, Some("file-1"));
    assert_eq!(
        c.url,
        "https://res.openai.azure.com/openai/batches?api-version=2024-10-21"
    );
    let body: Value = serde_json::from_str(&c.body).unwrap();
    assert_eq!(
        body,
        json!({"input_file_id":"file-1","endpoint":"/chat/completions","completion_window":"24h","metadata":{"batchling_tag":"batchling-az"}})
    );
    assert_eq!(c.header("api-key"), Some("az-secret"));
    assert_eq!(
        OpenAi.build_find(&ctx).unwrap().url,
        "https://res.openai.azure.com/openai/batches?limit=100&api-version=2024-10-21"
    );
    assert_eq!(
        OpenAi.build_poll(&ctx, "batch_1").url,
        "https://res.openai.azure.com/openai/batches/batch_1?api-version=2024-10-21"
    );
    let d = OpenAi.build_download(&ctx, "file-out");
    assert_eq!(
        d.url,
        "https://res.openai.azure.com/openai/files/file-out/content?api-version=2024-10-21"
    );
    assert_eq!(d.header("api-key"), Some("az-secret"));
    let limits = OpenAi.limits(&r);
    assert_eq!(
        (limits.max_requests, limits.max_bytes),
        (50_000, 200 * MB - ENVELOPE_HEADROOM_BYTES)
    );

    let emb = at(
        "https://res.cognitiveservices.azure.com/openai/deployments/emb/embeddings?api-version=2024-10-21",
        &[("api-key", "k")],
        r#"{"input":["a","b"],"model":"text-embedding-3-small"}"#,
    )
    .unwrap();
    assert_eq!(
        (emb.endpoint.as_str(), emb.model.as_str()),
        ("/embeddings", "emb")
    );
    let v: Value = serde_json::from_str(&OpenAi.dry_run_response(&emb, "c").body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let v: Value = serde_json::from_str(&OpenAi.dry_run_response(&r, "c").body).unwrap();
    assert_eq!(
        (v["object"].as_str(), v["model"].as_str()),
        (Some("chat.completion"), Some("gpt4o-batch"))
    );
}

#[test]
fn azure_pass_through_reasons() {
    let base = "https://res.openai.azure.com/openai";
    for (url, method, body, reason) in [
        // Azure refuses a classic call without an api-version; the caller sees its answer.
        (
            format!("{base}/deployments/d/chat/completions"),
            "POST",
            CHAT_BODY,
            PassThrough::UnknownUrl,
        ),
        (
            format!("{base}/deployments/d/chat/completions?api-version="),
            "POST",
            CHAT_BODY,
            PassThrough::UnknownUrl,
        ),
        (
            format!("{base}/deployments//chat/completions?api-version=1"),
            "POST",
            CHAT_BODY,
            PassThrough::UnknownUrl,
        ),
        (
            format!("{base}/deployments/d/audio/transcriptions?api-version=1"),
            "POST",
            CHAT_BODY,
            PassThrough::UnknownUrl,
        ),
        (
            format!("{base}/deployments/d/completions?api-version=1"),
            "POST",
            CHAT_BODY,
            PassThrough::UnknownUrl,
        ),
        // Responses (no deployment in the path) are not batched on Azure.
        (
            format!("{base}/responses?api-version=2025-04-01-preview"),
            "POST",
            r#"{"model":"d","input":"x"}"#,
            PassThrough::UnknownUrl,
        ),
        (
            format!("{base}/v1/responses"),
            "POST",
            r#"{"model":"d","input":"x"}"#,
            PassThrough::UnknownUrl,
        ),
        (
            format!("{base}/files?api-version=1"),
            "POST",
            "{}",
            PassThrough::UnknownUrl,
        ),
        (
            format!("{base}/deployments/d/chat/completions?api-version=1"),
            "GET",
            "",
            PassThrough::NotPost,
        ),
        (
            format!("{base}/deployments/d/chat/completions?api-version=1"),
            "POST",
            r#"{"messages":[],"stream":true}"#,
            PassThrough::Streaming,
        ),
        (
            format!("{base}/deployments/d/chat/completions?api-version=1"),
            "POST",
            "[]",
            PassThrough::NotJson,
        ),
        (
            format!("{base}/v1/chat/completions"),
            "POST",
            r#"{"messages":[]}"#,
            PassThrough::NoModel,
        ),
    ] {
        assert_eq!(
            classify(&req(method, &url, &[], body)),
            Err(reason),
            "{method} {url}"
        );
    }
    // On a host nobody declared as Azure, deployment paths still pass through.
    assert_eq!(
        at(
            "https://proxy.example/openai/deployments/d/chat/completions?api-version=1",
            &[],
            CHAT_BODY
        ),
        Err(PassThrough::UnknownUrl)
    );
}

#[test]
fn azure_api_versions_never_share_a_batch() {
    let a = azure_route();
    let b = at(
        &AZURE_CHAT.replace("2024-10-21", "2025-04-01-preview"),
        &[("api-key", "az-secret")],
        CHAT_BODY,
    )
    .unwrap();
    assert_eq!(
        (a.base_url.as_str(), a.endpoint.as_str()),
        (b.base_url.as_str(), b.endpoint.as_str())
    );
    assert_ne!(a.credential_fingerprint, b.credential_fingerprint);
    assert_ne!(crate::cache::fingerprint(&a), crate::cache::fingerprint(&b));
    let again = at(AZURE_CHAT, &[("api-key", "az-secret")], CHAT_BODY).unwrap();
    assert_eq!(
        crate::cache::fingerprint(&a),
        crate::cache::fingerprint(&again)
    );
}

#[test]
fn azure_v1_surface_is_plain_openai() {
    let r = at(
        "https://res.openai.azure.com/openai/v1/chat/completions",
        &[("api-key", "k")],
        CHAT_BODY,
    )
    .unwrap();
    assert_eq!(r.provider, ProviderId::Azure);
    assert_eq!(r.base_url, "https://res.openai.azure.com/openai/v1");
    assert_eq!(
        (r.endpoint.as_str(), r.model.as_str()),
        ("/v1/chat/completions", "gpt-4o")
    );
    assert_eq!(r.settings.api_version, None);
    let ctx = ctx_for(&r, "t");
    assert_eq!(
        OpenAi.build_poll(&ctx, "b").url,
        "https://res.openai.azure.com/openai/v1/batches/b"
    );
    let items = [BatchItem {
        custom_id: "a".into(),
        body: r.body.clone(),
    }];
    assert!(OpenAi
        .build_upload(&ctx, &items)
        .unwrap()
        .body
        .contains(r#""url":"/v1/chat/completions""#));
    // A declared Azure host may name the v1 base itself.
    let table = HostTable::with_declared(&[declared(
        "http://127.0.0.1:9/az/openai/v1",
        ProviderId::Azure,
    )])
    .unwrap();
    let r = classify_with(
        &chat_req(
            "http://127.0.0.1:9/az/openai/v1/embeddings",
            &[],
            r#"{"model":"e","input":"x"}"#,
        ),
        &table,
    )
    .unwrap();
    assert_eq!(
        (r.base_url.as_str(), r.endpoint.as_str()),
        ("http://127.0.0.1:9/az/openai/v1", "/v1/embeddings")
    );
}

#[test]
fn azure_quota_failure_is_named() {
    let failed = poll(
        "failed",
        r#","errors":{"object":"list","data":[{"code":"token_limit_exceeded","message":"Enqueued token limit reached for gpt4o-batch.","param":null,"line":null}]}"#,
    );
    let PollState::OverEnqueuedLimit {
        message,
        limit_tokens,
    } = failed.state
    else {
        panic!("{failed:?}")
    };
    assert_eq!(limit_tokens, None);
    assert_eq!(
        message,
        "token_limit_exceeded: Enqueued token limit reached for gpt4o-batch."
    );
}

#[test]
fn enqueued_limit_failure_states_its_limit() {
    let failed = poll(
        "failed",
        r#","errors":{"object":"list","data":[{"code":"token_limit_exceeded","message":"Enqueued token limit reached for gpt-4o-mini in organization org-x. Limit: 2,000,000 enqueued tokens. Please try again once some in_progress batches have been completed.","param":null,"line":null}]}"#,
    );
    assert!(
        matches!(
            failed.state,
            PollState::OverEnqueuedLimit {
                limit_tokens: Some(2_000_000),
                ..
            }
        ),
        "{failed:?}"
    );
    // Any other failure still ends the batch.
    let other = poll(
        "failed",
        r#","errors":{"object":"list","data":[{"code":"invalid_json_line","message":"bad","line":3}]}"#,
    );
    assert!(
        matches!(
            other.state,
            PollState::Ended {
                kind: EndKind::Failed,
                ..
            }
        ),
        "{other:?}"
    );
    assert!(OpenAi.may_refuse_enqueued(None));
    assert!(OpenAi.may_refuse_enqueued(Some("validating")));
    assert!(!OpenAi.may_refuse_enqueued(Some("in_progress")));
}

fn valid_line(id: &str, n: u32) -> String {
    if n.is_multiple_of(2) {
        json!({"id": format!("batch_req_{n}"), "custom_id": id, "response": {"status_code": 200, "request_id": "r", "body": {"n": n}}, "error": null}).to_string()
    } else {
        json!({"id": format!("batch_req_{n}"), "custom_id": id, "response": null, "error": {"code": "batch_expired", "message": "m"}}).to_string()
    }
}

proptest! {
    #[test]
    fn parse_results_never_loses_a_good_line(case in mixed_jsonl(valid_line)) {
        let parsed = OpenAi.parse_results("b", &case.body);
        prop_assert_eq!(parsed.items.iter().map(|i| i.custom_id.clone()).collect::<Vec<_>>(), case.good_ids);
        prop_assert_eq!(parsed.malformed.iter().map(|m| m.line_number).collect::<Vec<_>>(), case.bad_lines);
    }

    #[test]
    fn parse_results_survives_garbage(body in garbage_lines_strategy()) {
        let _ = OpenAi.parse_results("b", &body);
    }
}
