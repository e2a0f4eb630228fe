use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::providers::tests::{ctx_for, garbage_lines_strategy, mixed_jsonl, req};
use crate::providers::{adapter, classify, classify_with, HostSpec, HostTable};

const BASE: &str = "https://api.together.xyz/v1";
const BODY: &str = r#"{"model":"meta-llama/Llama-3.3-70B-Instruct-Turbo","messages":[{"role":"user","content":"2+2?"}],"max_tokens":20}"#;

fn chat(url: &str, body: &str) -> HttpRequest {
    req(
        "POST",
        url,
        &[
            ("Authorization", "Bearer tg-secret"),
            ("Content-Type", "application/json"),
            ("User-Agent", "Together/JS 0.52.0"),
            ("X-Stainless-Retry-Count", "0"),
        ],
        body,
    )
}

fn route() -> Route {
    classify(&chat(&format!("{BASE}/chat/completions"), BODY)).unwrap()
}

fn items() -> Vec<BatchItem> {
    vec![
        BatchItem {
            custom_id: "bl-a".into(),
            body: json!({"model": "m", "messages": [{"role": "user", "content": "é\"\n"}]}),
        },
        BatchItem {
            custom_id: "bl-b".into(),
            body: json!({"model": "m", "messages": [{"role": "user", "content": "b"}]}),
        },
    ]
}

fn redirect(location: &str, file_id: &str) -> HttpResponse {
    HttpResponse {
        status: 302,
        headers: vec![
            ("Location".into(), location.into()),
            ("X-Together-File-Id".into(), file_id.into()),
        ],
        body: String::new(),
    }
}

fn json_body(r: &HttpRequest) -> Value {
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn recognised_only_under_its_hosts() {
    for base in ["https://api.together.xyz/v1", "https://api.together.ai/v1"] {
        let r = classify(&chat(&format!("{base}/chat/completions"), BODY)).unwrap();
        assert_eq!(r.provider, ProviderId::Together);
        assert_eq!(r.endpoint, "/v1/chat/completions");
        assert_eq!(r.base_url, base);
        assert_eq!(r.model, "meta-llama/Llama-3.3-70B-Instruct-Turbo");
        assert_eq!(
            r.forward_headers,
            vec![("authorization".to_string(), "Bearer tg-secret".to_string())]
        );
        assert_eq!(adapter(r.provider).id(), ProviderId::Together);
    }
    // By shape alone a Together path is OpenAI's; this adapter claims nothing by shape.
    let elsewhere = chat("http://127.0.0.1:9/together/v1/chat/completions", BODY);
    assert!(Together.recognize(&elsewhere).is_none());
    assert_eq!(classify(&elsewhere).unwrap().provider, ProviderId::OpenAi);
    // A declared host makes it Together's, with its settings.
    let hosts = HostTable::with_declared(&[HostSpec {
        base_url: "http://127.0.0.1:9/together/v1".into(),
        provider: ProviderId::Together,
        completion_window: Some("48h".into()),
        max_requests: Some(7),
        max_file_bytes: None,
        max_inline_bytes: None,
    }])
    .unwrap();
    let r = classify_with(&elsewhere, &hosts).unwrap();
    assert_eq!(r.provider, ProviderId::Together);
    assert_eq!(r.base_url, "http://127.0.0.1:9/together/v1");
    assert_eq!(r.settings.completion_window.as_deref(), Some("48h"));
    assert_eq!(Together.limits(&r).max_requests, 7);
}

#[test]
fn pass_through_reasons() {
    let url = format!("{BASE}/chat/completions");
    let get = req("GET", &url, &[], "");
    assert_eq!(classify(&get), Err(PassThrough::NotPost));
    let stream = chat(
        &url,
        r#"{"model":"m","messages":[],"stream":true,"stream_options":{}}"#,
    );
    assert_eq!(classify(&stream), Err(PassThrough::Streaming));
    assert_eq!(
        classify(&chat(&url, r#"{"messages":[]}"#)),
        Err(PassThrough::NoModel)
    );
    assert_eq!(classify(&chat(&url, "not json")), Err(PassThrough::NotJson));
    let audio = req(
        "POST",
        &format!("{BASE}/audio/transcriptions"),
        &[("content-type", "multipart/form-data; boundary=x")],
        "--x--",
    );
    assert_eq!(classify(&audio), Err(PassThrough::NotJson));
    for path in [
        "/completions",
        "/embeddings",
        "/batches",
        "/files",
        "/images/generations",
    ] {
        assert_eq!(
            classify(&chat(&format!("{BASE}{path}"), BODY)),
            Err(PassThrough::UnknownUrl),
            "{path}"
        );
    }
    // stream: false is dropped, the rest kept in order.
    let r = classify(&chat(
        &url,
        r#"{"stream":false,"model":"m","messages":[],"stream_options":null}"#,
    ))
    .unwrap();
    assert_eq!(r.body.to_string(), r#"{"model":"m","messages":[]}"#);
}

#[test]
fn limits_and_item_bytes() {
    let route = route();
    assert_eq!(
        Together.limits(&route),
        BatchLimits {
            max_requests: 50_000,
            max_bytes: 100_000_000
        }
    );
    let ctx = ctx_for(&route, "batchling-t1");
    let items = items();
    let jsonl = Together::input_jsonl(&items);
    let total: usize = items.iter().map(|i| Together.item_bytes(&ctx, i)).sum();
    assert_eq!(total, jsonl.len());
}

#[test]
fn upload_is_an_announce_then_a_put_without_credentials() {
    let route = route();
    let ctx = ctx_for(&route, "batchling-t1");
    let items = items();
    let up = Together.build_upload(&ctx, &items).unwrap();
    assert_eq!(up.method, "POST");
    assert_eq!(
        up.url,
        format!("{BASE}/files?file_name=batchling-t1.jsonl&file_type=jsonl&purpose=batch-api")
    );
    assert_eq!(
        up.body,
        "file_name=batchling-t1.jsonl&file_type=jsonl&purpose=batch-api"
    );
    assert_eq!(
        up.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(up.header("authorization"), Some("Bearer tg-secret"));
    assert_eq!(up.header(REDIRECT_MANUAL_HEADER), Some("manual"));

    let answer = redirect("https://storage.example/put?sig=abc", "file-123");
    assert_eq!(Together.parse_upload(&answer).unwrap(), "file-123");
    let put = Together.build_upload_finish(&ctx, &items, &answer).unwrap();
    assert_eq!(put.method, "PUT");
    assert_eq!(put.url, "https://storage.example/put?sig=abc");
    assert_eq!(
        put.headers,
        vec![(
            "content-type".to_string(),
            "application/octet-stream".to_string()
        )],
        "the storage host gets no API key"
    );
    let lines: Vec<Value> = put
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(put.body.ends_with('\n'));
    assert_eq!(
        lines,
        vec![
            json!({"custom_id": "bl-a", "body": items[0].body}),
            json!({"custom_id": "bl-b", "body": items[1].body}),
        ]
    );
    // A Location relative to the API host.
    let rel = Together
        .build_upload_finish(&ctx, &items, &redirect("/storage/f1", "f1"))
        .unwrap();
    assert_eq!(rel.url, "https://api.together.xyz/storage/f1");
}

#[test]
fn parse_upload_wants_the_redirect() {
    let err = |r: HttpResponse| Together.parse_upload(&r).unwrap_err().message;
    assert!(err(HttpResponse::json(200, r#"{"id":"file-1"}"#.into())).contains("302"));
    assert!(err(HttpResponse::json(
        400,
        r#"{"error":{"message":"bad purpose"}}"#.into()
    ))
    .contains("bad purpose"));
    let mut no_location = redirect("x", "file-1");
    no_location.headers.remove(0);
    assert!(err(no_location).contains("Location"));
    assert!(err(redirect("https://s/x", " ")).contains("x-together-file-id"));
    let r = redirect("https://s/x", "f");
    let route = route();
    assert!(Together
        .build_upload_finish(&ctx_for(&route, "t"), &[], &HttpResponse::default())
        .is_none());
    assert_eq!(
        Together
            .build_upload_finish(&ctx_for(&route, "t"), &[], &r)
            .unwrap()
            .body,
        ""
    );
}

#[test]
fn create_find_poll_and_download_requests() {
    let route = route();
    let ctx = ctx_for(&route, "batchling-t1");
    let create = Together.build_create(&ctx, &items(), Some("file-123"));
    assert_eq!(create.method, "POST");
    assert_eq!(create.url, format!("{BASE}/batches"));
    assert_eq!(create.header("content-type"), Some("application/json"));
    assert_eq!(create.header("authorization"), Some("Bearer tg-secret"));
    assert_eq!(
        json_body(&create),
        json!({"endpoint": "/v1/chat/completions", "input_file_id": "file-123", "model_id": "meta-llama/Llama-3.3-70B-Instruct-Turbo"})
    );
    let mut windowed = route.clone();
    windowed.settings.completion_window = Some("48h".into());
    let create = Together.build_create(&ctx_for(&windowed, "t"), &[], Some("f"));
    assert_eq!(json_body(&create)["completion_window"], "48h");

    let find = Together.build_find(&ctx).unwrap();
    assert_eq!(
        (find.method.as_str(), find.url.as_str()),
        ("GET", "https://api.together.xyz/v1/batches")
    );
    assert_eq!(find.header("authorization"), Some("Bearer tg-secret"));
    let poll = Together.build_poll(&ctx, "batch-xyz");
    assert_eq!(
        (poll.method.as_str(), poll.url.as_str()),
        ("GET", "https://api.together.xyz/v1/batches/batch-xyz")
    );
    assert_eq!(poll.body, "");
    let dl = Together.build_download(&ctx, "file-out");
    assert_eq!(dl.url, format!("{BASE}/files/file-out/content"));
    assert_eq!(dl.header("authorization"), Some("Bearer tg-secret"));
}

#[test]
fn create_answer_is_wrapped() {
    let wrapped = HttpResponse::json(
        200,
        r#"{"job":{"id":"batch-1","status":"VALIDATING","input_file_id":"file-1"},"warning":"model is not discounted"}"#.into(),
    );
    assert_eq!(
        Together.parse_create(&wrapped).unwrap(),
        RemoteBatch {
            id: "batch-1".into(),
            state_label: "VALIDATING".into()
        }
    );
    let bare = HttpResponse::json(200, r#"{"id":"batch-2","status":"IN_PROGRESS"}"#.into());
    assert_eq!(Together.parse_create(&bare).unwrap().id, "batch-2");
    for bad in [r#"{"job":{}}"#, r#"{"warning":"w"}"#, "nope"] {
        assert!(Together
            .parse_create(&HttpResponse::json(200, bad.into()))
            .is_err());
    }
    assert!(Together
        .parse_create(&HttpResponse::json(
            400,
            r#"{"error":{"message":"x"}}"#.into()
        ))
        .is_err());
}

#[test]
fn a_lost_create_is_found_by_its_input_file() {
    assert_eq!(Together.lost_create_key(), LostCreateKey::UploadedFile);
    let list = HttpResponse::json(
        200,
        json!([
            {"id": "batch-old", "status": "COMPLETED", "input_file_id": "file-0"},
            {"id": "batch-new", "status": "VALIDATING", "input_file_id": "file-1"},
        ])
        .to_string(),
    );
    assert_eq!(
        Together.parse_find(&list, "file-1").unwrap(),
        Some(RemoteBatch {
            id: "batch-new".into(),
            state_label: "VALIDATING".into()
        })
    );
    assert_eq!(Together.parse_find(&list, "file-9").unwrap(), None);
    assert_eq!(
        Together
            .parse_find(&HttpResponse::json(200, "[]".into()), "f")
            .unwrap(),
        None
    );
    assert!(Together
        .parse_find(&HttpResponse::json(200, r#"{"x":1}"#.into()), "f")
        .is_err());
}

fn poll(status: &str, extra: &str) -> PollReport {
    let body = format!(r#"{{"id":"batch-1","status":"{status}","progress":40{extra}}}"#);
    Together
        .parse_poll(&HttpResponse::json(200, body), &[])
        .unwrap()
}

#[test]
fn poll_states() {
    for s in ["VALIDATING", "IN_PROGRESS", "in_progress"] {
        assert_eq!(poll(s, "").state, PollState::Running, "{s}");
    }
    let files = r#","output_file_id":"file-out","error_file_id":"file-err""#;
    let done = poll("COMPLETED", files);
    assert_eq!(done.state_label, "COMPLETED");
    assert_eq!(
        done.state,
        PollState::Completed {
            downloads: vec!["file-out".into(), "file-err".into()],
            inline: None
        }
    );
    assert_eq!(done.end_kind_if_partial, None);
    assert_eq!(
        poll(
            "COMPLETED",
            r#","output_file_id":"file-out","error_file_id":"""#
        )
        .state,
        PollState::Completed {
            downloads: vec!["file-out".into()],
            inline: None
        }
    );
    for (status, kind) in [
        ("FAILED", EndKind::Failed),
        ("EXPIRED", EndKind::Expired),
        ("CANCELLED", EndKind::Cancelled),
    ] {
        // Partial output: what ran is downloaded, the rest did not run.
        let partial = poll(status, r#","output_file_id":"file-out""#);
        assert_eq!(
            partial.state,
            PollState::Completed {
                downloads: vec!["file-out".into()],
                inline: None
            }
        );
        assert_eq!(partial.end_kind_if_partial, Some(kind));
        let nothing = poll(status, r#","error":"input file has invalid lines""#);
        assert_eq!(
            nothing.state,
            PollState::Ended {
                kind,
                message: "input file has invalid lines".into()
            }
        );
    }
    for bad in [r#"{"status":"WEIRD"}"#, r#"{"id":"b"}"#, "not json"] {
        assert!(Together
            .parse_poll(&HttpResponse::json(200, bad.into()), &[])
            .is_err());
    }
    assert!(Together
        .parse_poll(&HttpResponse::json(500, "{}".into()), &[])
        .is_err());
}

#[test]
fn results_map_lines_by_custom_id() {
    // Assumed OpenAI-shaped (providers.md: no official example).
    let body = concat!(
        r#"{"id":"r1","custom_id":"bl-a","response":{"status_code":200,"request_id":"req-1","body":{"id":"chat-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"4"},"finish_reason":"stop"}]}}}"#,
        "\n",
        r#"{"custom_id":"bl-b","response":{"status_code":400,"body":{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}}}"#,
        "\n",
        r#"{"custom_id":"bl-c","error":{"code":"batch_expired","message":"not run"}}"#,
        "\n",
        "{broken\n",
        r#"{"custom_id":"bl-a","response":{"status_code":200,"body":{}}}"#,
        "\n",
    );
    let parsed = Together.parse_results("batch-1", body);
    let by = |id: &str| {
        &parsed
            .items
            .iter()
            .find(|i| i.custom_id == id)
            .unwrap()
            .response
    };
    assert_eq!(by("bl-a").status, 200);
    assert_eq!(by("bl-a").header("x-request-id"), Some("req-1"));
    assert_eq!(
        serde_json::from_str::<Value>(&by("bl-a").body).unwrap()["choices"][0]["message"]
            ["content"],
        "4"
    );
    assert_eq!(by("bl-b").status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&by("bl-b").body).unwrap()["error"]["message"],
        "bad"
    );
    assert_eq!(by("bl-c").status, 504);
    assert_eq!(by("bl-c").header("x-should-retry"), Some("false"));
    let lines: Vec<usize> = parsed.malformed.iter().map(|m| m.line_number).collect();
    assert_eq!(lines, vec![4, 5]);
}

/// The OpenAI envelope (tested with that adapter), naming Together.
#[test]
fn ended_response_names_together_the_batch_and_state() {
    for kind in [EndKind::Expired, EndKind::Cancelled, EndKind::Failed] {
        let r = Together.ended_response("batch-9", kind, "window closed");
        assert_eq!(r.status, kind.http_status());
        assert_eq!(r.header("x-batchling-batch-id"), Some("batch-9"));
        let msg = serde_json::from_str::<Value>(&r.body).unwrap()["error"]["message"].to_string();
        assert!(msg.contains("together batch batch-9"), "{msg}");
    }
}

#[test]
fn dry_run_is_a_chat_completion() {
    let r = Together.dry_run_response(&route(), "c1");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-batchling-dry-run"), Some("1"));
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "meta-llama/Llama-3.3-70B-Instruct-Turbo");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
}

fn valid_line(id: &str, n: u32) -> String {
    json!({"custom_id": id, "response": {"status_code": 200 + (n % 2) * 200, "body": {"n": n}}})
        .to_string()
}

proptest! {
    #[test]
    fn parse_results_never_loses_a_good_line(case in mixed_jsonl(valid_line)) {
        let parsed = Together.parse_results("b", &case.body);
        prop_assert_eq!(parsed.items.iter().map(|i| i.custom_id.clone()).collect::<Vec<_>>(), case.good_ids);
        prop_assert_eq!(parsed.malformed.iter().map(|m| m.line_number).collect::<Vec<_>>(), case.bad_lines);
    }

    #[test]
    fn parse_results_survives_garbage(body in garbage_lines_strategy()) {
        let _ = Together.parse_results("b", &body);
    }
}
