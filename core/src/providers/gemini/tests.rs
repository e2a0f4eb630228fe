use super::*;
use crate::providers::tests::{ctx_for, garbage_lines_strategy, mixed_jsonl, req};
use proptest::prelude::*;

const GEN_URL: &str =
    "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent";
const BODY: &str = r#"{"contents":[{"role":"user","parts":[{"text":"Why is the sky blue?"}]}],"generationConfig":{"temperature":0.2},"systemInstruction":{"parts":[{"text":"Be brief"}]}}"#;

fn sample_route() -> Route {
    let r = req(
        "POST",
        GEN_URL,
        &[
            ("x-goog-api-key", "AIzaTEST"),
            ("x-goog-api-client", "google-genai-sdk/3.1.0"),
            ("content-type", "application/json"),
        ],
        BODY,
    );
    Gemini.recognize(&r).unwrap().unwrap()
}

#[test]
fn recognize_shapes() {
    let r = sample_route();
    assert_eq!(
        r.base_url,
        "https://generativelanguage.googleapis.com/v1beta"
    );
    assert_eq!(
        (r.model.as_str(), r.endpoint.as_str()),
        ("gemini-2.5-flash", "generateContent")
    );
    assert_eq!(r.body.to_string(), BODY);
    assert_eq!(
        r.forward_headers,
        vec![("x-goog-api-key".to_string(), "AIzaTEST".to_string())]
    );

    let q = Gemini
        .recognize(&req(
            "POST",
            &format!("{GEN_URL}?key=AIzaQ"),
            &[("x-goog-user-project", "p")],
            BODY,
        ))
        .unwrap()
        .unwrap();
    assert_eq!(
        q.forward_headers,
        vec![
            ("x-goog-api-key".to_string(), "AIzaQ".to_string()),
            ("x-goog-user-project".to_string(), "p".to_string()),
        ]
    );
    for (url, method, expected) in [
        ("http://127.0.0.1:9/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", "POST", Some(Err(PassThrough::Streaming))),
        (GEN_URL, "GET", Some(Err(PassThrough::NotPost))),
        ("https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/l/publishers/google/models/gemini-2.5-flash:generateContent", "POST", Some(Err(PassThrough::UnknownUrl))),
        ("http://h/v1beta/models/gemini-2.5-flash:countTokens", "POST", None),
        ("http://h/v1beta/models/gemini-2.5-flash:batchGenerateContent", "POST", None),
        ("http://h/v1beta/tunedModels/x:generateContent", "POST", None),
        ("http://h/v1beta/models/:generateContent", "POST", Some(Err(PassThrough::NoModel))),
    ] {
        let got = Gemini.recognize(&req(method, url, &[], BODY)).map(|r| r.map(|_| ()));
        assert_eq!(got, expected, "{method} {url}");
    }
    assert_eq!(
        Gemini
            .recognize(&req("POST", GEN_URL, &[], "not json"))
            .map(|r| r.map(|_| ())),
        Some(Err(PassThrough::NotJson))
    );
}

#[test]
fn build_create_inline() {
    let route = sample_route();
    let ctx = ctx_for(&route, "batchling-g1");
    let items = vec![
        BatchItem {
            custom_id: "req-1".into(),
            body: route.body.clone(),
        },
        BatchItem {
            custom_id: "req-2".into(),
            body: json!({"contents":[]}),
        },
    ];
    let c = Gemini.build_create(&ctx, &items, None);
    assert_eq!(
        (c.method.as_str(), c.url.as_str()),
        ("POST", "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:batchGenerateContent")
    );
    assert_eq!(c.header("x-goog-api-key"), Some("AIzaTEST"));
    assert_eq!(c.header("x-goog-api-client"), None);
    assert_eq!(
        c.body,
        format!(
            r#"{{"batch":{{"displayName":"batchling-g1","inputConfig":{{"requests":{{"requests":[{{"request":{BODY},"metadata":{{"key":"req-1"}}}},{{"request":{{"contents":[]}},"metadata":{{"key":"req-2"}}}}]}}}}}}}}"#
        )
    );
    assert_eq!(
        Gemini.item_bytes(&ctx, &items[1]),
        r#"{"request":{"contents":[]},"metadata":{"key":"req-2"}}"#.len() + 1
    );
    assert!(Gemini.build_upload(&ctx, &items).is_none());
}

#[test]
fn file_flavour_requests() {
    let mut route = sample_route();
    // Split under the file limit; a declared host's settings lower it.
    assert_eq!(
        Gemini.limits(&route),
        BatchLimits {
            max_requests: 10_000,
            max_bytes: 2_000_000_000
        }
    );
    route.settings.max_file_bytes = Some(5_000);
    assert_eq!(Gemini.limits(&route).max_bytes, 5_000);
    route.settings.max_inline_bytes = Some(100);
    let ctx = ctx_for(&route, "batchling-g2");
    let items = vec![BatchItem {
        custom_id: "req-1".into(),
        body: route.body.clone(),
    }];
    let start = Gemini
        .build_upload(&ctx, &items)
        .expect("over the inline cap");
    assert_eq!(
        (start.method.as_str(), start.url.as_str()),
        (
            "POST",
            "https://generativelanguage.googleapis.com/upload/v1beta/files"
        )
    );
    assert_eq!(start.header("x-goog-upload-protocol"), Some("resumable"));
    assert_eq!(start.header("x-goog-upload-command"), Some("start"));
    assert_eq!(start.header("x-goog-api-key"), Some("AIzaTEST"));
    let line = format!("{{\"key\":\"req-1\",\"request\":{BODY}}}\n");
    let length = line.len().to_string();
    assert_eq!(
        start.header("x-goog-upload-header-content-length"),
        Some(length.as_str())
    );
    assert_eq!(start.body, r#"{"file":{"displayName":"batchling-g2"}}"#);

    let missing = HttpResponse::json(200, String::new());
    assert!(Gemini.parse_upload(&missing).is_err());
    let mut started = HttpResponse::json(200, String::new());
    started.headers.push((
        "X-Goog-Upload-URL".into(),
        "https://upload.example:8443/upload/v1beta/files?upload_id=U1".into(),
    ));
    assert!(Gemini.parse_upload(&started).is_ok());
    let finish = Gemini.build_upload_finish(&ctx, &items, &started).unwrap();
    assert_eq!(
        finish.url,
        "https://generativelanguage.googleapis.com/upload/v1beta/files?upload_id=U1"
    );
    assert_eq!(
        finish.header("x-goog-upload-command"),
        Some("upload, finalize")
    );
    assert_eq!(finish.header("x-goog-upload-offset"), Some("0"));
    assert_eq!(finish.body, line);

    let mut done = HttpResponse::json(200, r#"{"file":{"name":"files/abc"}}"#.into());
    done.headers
        .push(("x-goog-upload-status".into(), "final".into()));
    assert_eq!(
        Gemini.parse_upload_finish(&done).unwrap().as_deref(),
        Some("files/abc")
    );
    let no_name = HttpResponse::json(200, r#"{"file":{}}"#.into());
    assert!(Gemini.parse_upload_finish(&no_name).is_err());

    let create = Gemini.build_create(&ctx, &items, Some("files/abc"));
    assert_eq!(
        create.body,
        r#"{"batch":{"displayName":"batchling-g2","inputConfig":{"fileName":"files/abc"}}}"#
    );
}

#[test]
fn upload_url_keeps_a_proxy_path() {
    assert_eq!(
        Gemini::upload_start_url("http://127.0.0.1:9/proxy/gemini/v1"),
        "http://127.0.0.1:9/proxy/gemini/upload/v1/files"
    );
    assert_eq!(
        Gemini::upload_start_url("http://127.0.0.1:9"),
        "http://127.0.0.1:9/upload/files"
    );
}

#[test]
fn find_poll_download_requests() {
    let route = sample_route();
    let ctx = ctx_for(&route, "t");
    let f = Gemini.build_find(&ctx).unwrap();
    assert_eq!(
        f.url,
        "https://generativelanguage.googleapis.com/v1beta/batches?pageSize=100"
    );
    assert_eq!(f.method, "GET");
    let p = Gemini.build_poll(&ctx, "batches/123456");
    assert_eq!(
        p.url,
        "https://generativelanguage.googleapis.com/v1beta/batches/123456"
    );
    assert_eq!(Gemini.build_poll(&ctx, "123456").url, p.url);
    assert_eq!(p.header("x-goog-api-key"), Some("AIzaTEST"));
    let d = Gemini.build_download(&ctx, "files/batch-xyz");
    assert_eq!(
        d.url,
        "https://generativelanguage.googleapis.com/v1beta/files/batch-xyz:download?alt=media"
    );
}

const OPERATION: &str = r#"{"name":"batches/123456",
 "metadata":{"@type":"type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch",
   "model":"models/gemini-2.5-flash","displayName":"batchling-g1","name":"batches/123456",
   "createTime":"2026-11-23T10:00:00Z","updateTime":"2026-11-23T10:20:00Z","endTime":"2026-11-23T10:20:00Z",
   "batchStats":{"requestCount":"3","successfulRequestCount":"1","failedRequestCount":"2","pendingRequestCount":"0"},
   "state":"BATCH_STATE_SUCCEEDED"},
 "done":true,
 "response":{"@type":"type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput",
   "inlinedResponses":{"inlinedResponses":[
     {"metadata":{"key":"req-1"},"response":{"candidates":[{"content":{"role":"model","parts":[{"text":"Rayleigh scattering..."}]},"finishReason":"STOP","index":0}],
        "usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":20,"totalTokenCount":28},"modelVersion":"gemini-2.5-flash","responseId":"abc"}},
     {"metadata":{"key":"req-2"},"error":{"code":3,"message":"Invalid argument ...","details":[]}},
     {"error":{"code":8,"message":"quota"}}]}}}"#;

#[test]
fn parse_create_find_poll() {
    let op = HttpResponse::json(200, OPERATION.into());
    assert_eq!(
        Gemini.parse_create(&op).unwrap(),
        RemoteBatch {
            id: "batches/123456".into(),
            state_label: "BATCH_STATE_SUCCEEDED".into()
        }
    );
    let list = HttpResponse::json(
        200,
        format!(
            r#"{{"operations":[{{"name":"batches/1","metadata":{{"displayName":"other","state":"BATCH_STATE_RUNNING"}}}},{OPERATION}],"nextPageToken":"x"}}"#
        ),
    );
    assert_eq!(
        Gemini
            .parse_find(&list, "batchling-g1")
            .unwrap()
            .unwrap()
            .id,
        "batches/123456"
    );
    assert_eq!(Gemini.parse_find(&list, "nope").unwrap(), None);
    assert_eq!(
        Gemini
            .parse_find(&HttpResponse::json(200, "{}".into()), "t")
            .unwrap(),
        None
    );

    let ids = vec![
        "req-1".to_string(),
        "req-2".to_string(),
        "req-3".to_string(),
    ];
    let r = Gemini.parse_poll(&op, &ids).unwrap();
    assert_eq!((r.total, r.completed, r.failed), (3, 1, 2));
    assert_eq!(r.state_label, "BATCH_STATE_SUCCEEDED");
    let PollState::Completed {
        downloads,
        inline: Some(inline),
    } = r.state
    else {
        panic!("{:?}", r.state)
    };
    assert!(downloads.is_empty());
    assert!(inline.malformed.is_empty());
    assert_eq!(inline.items.len(), 3);
    assert_eq!(inline.items[0].custom_id, "req-1");
    assert_eq!(inline.items[0].response.status, 200);
    assert!(inline.items[0]
        .response
        .body
        .starts_with(r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Rayleigh"#));
    assert_eq!(inline.items[1].response.status, 400);
    assert_eq!(
        inline.items[1].response.body,
        r#"{"error":{"code":400,"message":"Invalid argument ...","status":"INVALID_ARGUMENT","details":[]}}"#
    );
    // No key: matched by position.
    assert_eq!(inline.items[2].custom_id, "req-3");
    assert_eq!(inline.items[2].response.status, 429);
    assert_eq!(
        inline.items[2].response.header("content-type"),
        Some("application/json")
    );
}

fn poll_state(body: &str) -> PollReport {
    Gemini
        .parse_poll(&HttpResponse::json(200, body.into()), &[])
        .unwrap()
}

#[test]
fn poll_state_spellings() {
    for s in [
        "BATCH_STATE_PENDING",
        "BATCH_STATE_RUNNING",
        "JOB_STATE_RUNNING",
        "JOB_STATE_QUEUED",
        "BATCH_STATE_UNSPECIFIED",
    ] {
        let r = poll_state(&format!(
            r#"{{"name":"batches/1","metadata":{{"state":"{s}","batchStats":{{"requestCount":"5","pendingRequestCount":"5"}}}}}}"#
        ));
        assert_eq!(r.state, PollState::Running, "{s}");
        assert_eq!(r.total, 5);
    }
    let file = poll_state(
        r#"{"name":"batches/1","metadata":{"state":"JOB_STATE_SUCCEEDED","output":{"responsesFile":"files/batch-xyz"}},"done":true}"#,
    );
    assert_eq!(
        file.state,
        PollState::Completed {
            downloads: vec!["files/batch-xyz".into()],
            inline: None
        }
    );
    let failed = poll_state(
        r#"{"name":"batches/1","metadata":{"state":"BATCH_STATE_FAILED"},"done":true,"error":{"code":3,"message":"bad input"}}"#,
    );
    assert_eq!(
        failed.state,
        PollState::Ended {
            kind: EndKind::Failed,
            message: "bad input".into()
        }
    );
    let expired = poll_state(
        r#"{"name":"batches/1","metadata":{"state":"BATCH_STATE_EXPIRED"},"done":true}"#,
    );
    assert_eq!(
        expired.state,
        PollState::Ended {
            kind: EndKind::Expired,
            message: String::new()
        }
    );
    let cancelled = poll_state(
        r#"{"name":"batches/1","metadata":{"state":"JOB_STATE_CANCELLED"},"done":true}"#,
    );
    assert!(matches!(
        cancelled.state,
        PollState::Ended {
            kind: EndKind::Cancelled,
            ..
        }
    ));
    let partial = poll_state(
        r#"{"name":"batches/1","metadata":{"state":"BATCH_STATE_CANCELLED","output":{"inlinedResponses":{"inlinedResponses":[{"metadata":{"key":"a"},"response":{}}]}}},"done":true}"#,
    );
    assert_eq!(partial.end_kind_if_partial, Some(EndKind::Cancelled));
    let stateless_done =
        poll_state(r#"{"name":"batches/1","done":true,"response":{"responsesFile":"files/f"}}"#);
    assert!(matches!(stateless_done.state, PollState::Completed { .. }));
    assert!(Gemini
        .parse_poll(
            &HttpResponse::json(200, r#"{"metadata":{"state":"BATCH_STATE_NEW"}}"#.into()),
            &[]
        )
        .is_err());
    assert!(Gemini
        .parse_poll(
            &HttpResponse::json(
                404,
                r#"{"error":{"code":404,"message":"nope","status":"NOT_FOUND"}}"#.into()
            ),
            &[]
        )
        .is_err());
}

#[test]
fn parse_results_file_lines() {
    let body = concat!(
        r#"{"key":"req-1","response":{"candidates":[],"usageMetadata":{},"modelVersion":"gemini-2.5-flash"}}"#,
        "\n",
        r#"{"key":"req-2","error":{"code":3,"message":"bad","status":"INVALID_ARGUMENT"}}"#,
        "\n",
        r#"{"key":"req-3","error":{"status":"UNAVAILABLE","message":"later"}}"#,
        "\n",
        r#"{"response":{}}"#,
        "\n",
    );
    let parsed = Gemini.parse_results("batches/1", body);
    assert_eq!(parsed.items.len(), 3);
    assert_eq!(parsed.items[0].response.status, 200);
    assert_eq!(
        parsed.items[1].response.body,
        r#"{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}"#
    );
    assert_eq!(parsed.items[2].response.status, 503);
    assert_eq!(parsed.malformed.len(), 1);
    assert_eq!(parsed.malformed[0].line_number, 4);
}

#[test]
fn grpc_mapping_table() {
    for (code, http, name) in [
        (3, 400, "INVALID_ARGUMENT"),
        (9, 400, "FAILED_PRECONDITION"),
        (11, 400, "OUT_OF_RANGE"),
        (16, 401, "UNAUTHENTICATED"),
        (7, 403, "PERMISSION_DENIED"),
        (5, 404, "NOT_FOUND"),
        (6, 409, "ALREADY_EXISTS"),
        (10, 409, "ABORTED"),
        (8, 429, "RESOURCE_EXHAUSTED"),
        (1, 499, "CANCELLED"),
        (2, 500, "UNKNOWN"),
        (13, 500, "INTERNAL"),
        (12, 501, "UNIMPLEMENTED"),
        (14, 503, "UNAVAILABLE"),
        (4, 504, "DEADLINE_EXCEEDED"),
    ] {
        let line = json!({"key": "k", "error": {"code": code, "message": "m"}}).to_string();
        let r = &Gemini.parse_results("b", &line).items[0].response;
        assert_eq!(r.status, http, "{code}");
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["error"]["status"], name);
        assert_eq!(v["error"]["code"], http);
    }
}

#[test]
fn ended_and_dry_run() {
    for (kind, status, name) in [
        (EndKind::Expired, 504, "DEADLINE_EXCEEDED"),
        (EndKind::Cancelled, 499, "CANCELLED"),
        (EndKind::Failed, 500, "INTERNAL"),
    ] {
        let r = Gemini.ended_response("batches/42", kind, "pending for 48h");
        assert_eq!(r.status, status);
        assert_eq!(r.header("x-should-retry"), Some("false"));
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["error"]["status"], name);
        assert_eq!(v["error"]["code"], status);
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("batches/42") && msg.contains(kind.as_str()));
    }
    let d = Gemini.dry_run_response(&sample_route(), "c1");
    assert_eq!(
        (d.status, d.header("x-batchling-dry-run")),
        (200, Some("1"))
    );
    let v: Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(v["candidates"][0]["content"]["role"], "model");
    assert_eq!(v["modelVersion"], "gemini-2.5-flash");
}

fn valid_line(id: &str, n: u32) -> String {
    if n.is_multiple_of(3) {
        json!({"key": id, "error": {"code": n % 17, "message": "m", "status": "X"}}).to_string()
    } else {
        json!({"key": id, "response": {"candidates": [{"content": {"parts": [{"text": n.to_string()}]}}]}}).to_string()
    }
}

proptest! {
    #[test]
    fn parse_results_never_loses_a_good_line(case in mixed_jsonl(valid_line)) {
        let parsed = Gemini.parse_results("b", &case.body);
        prop_assert_eq!(parsed.items.iter().map(|i| i.custom_id.clone()).collect::<Vec<_>>(), case.good_ids);
        prop_assert_eq!(parsed.malformed.iter().map(|m| m.line_number).collect::<Vec<_>>(), case.bad_lines);
    }

    #[test]
    fn parse_results_survives_garbage(body in garbage_lines_strategy()) {
        let _ = Gemini.parse_results("b", &body);
    }

    #[test]
    fn parse_poll_survives_garbage(body in garbage_lines_strategy()) {
        let _ = Gemini.parse_poll(&HttpResponse::json(200, body), &["a".to_string()]);
    }
}
