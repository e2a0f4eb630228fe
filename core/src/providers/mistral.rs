//! Mistral batch jobs: a JSONL file of `{custom_id, body}` lines uploaded with `POST {base}/files`
//! (multipart, `purpose=batch`), then `POST {base}/batch/jobs` with `{input_files, endpoint, model,
//! metadata, timeout_hours}`; polled with `GET {base}/batch/jobs/{id}` (upper-case states); results
//! are the JSONL files `output_file` and `error_file` of OpenAI-like
//! `{custom_id, response: {status_code, body}, error}` lines. Wire formats: providers.md §5.
//!
//! The base is `https://api.mistral.ai/v1` (the SDK's `serverURL` plus the `/v1` of its paths).
//! Mistral's paths look like OpenAI's, so only the host table recognises them: the built-in
//! `api.mistral.ai` entry, or a declared host with `provider: "mistral"`.
//!
//! File or inline: the create call also takes inline `requests`, whose results come back in the
//! job's `outputs`. We always upload a file. It is the flow the docs describe for every size (up
//! to 1M requests), the results arrive the same way for every job (`output_file` / `error_file`),
//! and the shape of inline `outputs` entries is only known from an SDK example. The upload is one
//! extra call per batch, next to a poll loop that lasts minutes to hours.
//!
//! Assumed where providers.md §5.2 is uncertain (third-party or inferred):
//! - a result line's `response.status_code` may be missing; it is then 200, unless the line also
//!   carries an `error`, which then decides the answer;
//! - a line with `response: null` carries `error` as `{message, code}` (or a bare string);
//!   `batch_expired` / `timeout_exceeded` and `batch_cancelled` / `cancelled` codes mean the
//!   request did not run, as in OpenAI's error files;
//! - FAILED, TIMEOUT_EXCEEDED and CANCELLED jobs may still have output or error files for the
//!   requests that ran (handled like OpenAI's expired / cancelled batches);
//! - line bodies keep their `model` (the sync body, unchanged); the job-level `model` is the same.

use serde_json::{json, Value};

use super::common::{self, json_response, ok_json, str_field};
use super::hosts;
use super::openai_compat::{self, ByteCount, OpenAi};
use super::{
    BatchContext, BatchItem, BatchLimits, EndKind, HostMatch, ItemResult, ParsedResults,
    PassThrough, PollReport, PollState, ProtocolError, ProviderAdapter, ProviderDescriptor,
    ProviderId, RemoteBatch, Route,
};
use crate::http::{HttpRequest, HttpResponse};

/// Path suffixes under the host's base we batch, with the job's `endpoint` value. Other paths
/// (agents, OCR, moderations, …) pass through.
const ENDPOINTS: &[(&str, &str)] = &[
    ("/chat/completions", "/v1/chat/completions"),
    ("/embeddings", "/v1/embeddings"),
    ("/fim/completions", "/v1/fim/completions"),
];

/// The docs describe file batches of up to 1M requests; the files API takes files of up to
/// 512 MB (read as 10^6 bytes), of which 64 KiB are kept for the multipart framing.
const MAX_REQUESTS: usize = 1_000_000;
const MAX_FILE_BYTES: usize = 512_000_000;
const ENVELOPE_HEADROOM_BYTES: usize = 64 * 1024;

/// `timeout_hours` when the host declares no completion window (Mistral's default).
const DEFAULT_TIMEOUT_HOURS: u64 = 24;

/// Embedding width of a dry-run answer without `output_dimension`: mistral-embed's 1024, or
/// codestral-embed's 1536.
fn default_embedding_dimension(model: &str) -> u64 {
    if model.starts_with("codestral-embed") {
        1536
    } else {
        1024
    }
}

pub(super) const DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    id: ProviderId::Mistral,
    name: "mistral",
    adapter: &Mistral,
    openai_profile: None,
    hosts: &["https://api.mistral.ai/v1"],
    default_base_url: Some("https://api.mistral.ai/v1"),
    window_error,
    api_key_env: None,
    base_url_env: None,
    jobs: None,
};

/// `timeout_hours` needs a whole, non-zero number of hours.
fn window_error(window: &str) -> Option<String> {
    hosts::window_hours(window).is_none_or(|h| h == 0).then(|| {
        format!(
            "completionWindow {window:?}: Mistral takes a number of hours, like \"24h\" or \"2d\""
        )
    })
}

pub struct Mistral;

impl Mistral {
    /// `timeout_hours` from a declared completion window ("48h", "2d", checked when the host is
    /// declared); Mistral's 24 otherwise.
    fn timeout_hours(window: Option<&str>) -> u64 {
        window
            .and_then(hosts::window_hours)
            .filter(|h| *h > 0)
            .unwrap_or(DEFAULT_TIMEOUT_HOURS)
    }

    /// Mistral's synchronous error envelope (what its API answers a bad chat request with):
    /// `{object: "error", message, type, param, code}`. The SDK throws an `SDKError` carrying the
    /// HTTP status as `statusCode` for any 4xx / 5xx but 422, whatever the body.
    fn error_response(
        status: u16,
        message: &str,
        code: &str,
        headers: &[(&str, &str)],
    ) -> HttpResponse {
        let body = json!({
            "object": "error",
            "message": message,
            "type": "batch_error",
            "param": null,
            "code": code,
        });
        json_response(status, &body, headers)
    }

    /// The answer for a line without a usable response: a failure outside HTTP (assumed shape
    /// `{message, code}`, or a bare string).
    fn line_error_response(batch_id: &str, error: &Value) -> HttpResponse {
        let code = match error.get("code") {
            Some(Value::String(c)) => c.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => "batch_error".to_string(),
        };
        let detail = str_field(error, "/message")
            .or_else(|| error.as_str())
            .unwrap_or("");
        let not_run = match code.as_str() {
            "batch_expired" | "timeout_exceeded" => Some(EndKind::Expired),
            "batch_cancelled" | "cancelled" => Some(EndKind::Cancelled),
            _ => None,
        };
        match not_run {
            Some(kind) => Self::error_response(
                kind.http_status(),
                &common::not_run_message(ProviderId::Mistral, batch_id, kind, detail),
                &code,
                &common::not_run_headers(batch_id),
            ),
            None => Self::error_response(
                500,
                &format!("batchling: {code} in mistral batch {batch_id}: {detail}"),
                &code,
                &[("x-batchling-batch-id", batch_id)],
            ),
        }
    }

    fn parse_line(batch_id: &str, line: &Value) -> Result<ItemResult, String> {
        let obj = line.as_object().ok_or("line is not a JSON object")?;
        let custom_id = common::id_field(obj, "custom_id")?;
        let error = obj.get("error").filter(|e| !e.is_null());
        // A response without a status_code yields to an error on the same line.
        let response = obj
            .get("response")
            .filter(|r| !r.is_null() && (r.get("status_code").is_some() || error.is_none()));
        let response = match (response, error) {
            (Some(resp), _) => {
                let resp = resp.as_object().ok_or("response is not an object")?;
                // Inferred: status_code is absent from Mistral's documented examples; a response
                // without one (and without an error) is a success.
                let status = match resp.get("status_code") {
                    None => 200,
                    Some(s) => s
                        .as_u64()
                        .filter(|s| (100..=599).contains(s))
                        .ok_or("response.status_code is not an HTTP status")?
                        as u16,
                };
                let body = resp.get("body").ok_or("response.body missing")?;
                HttpResponse::json(status, body.to_string())
            }
            (_, Some(err)) => Self::line_error_response(batch_id, err),
            (None, None) => return Err("neither response nor error".into()),
        };
        Ok(ItemResult {
            custom_id,
            response,
        })
    }

    /// `errors[]` of a job (`{message, count}`) as one line of text.
    fn job_errors(v: &Value) -> String {
        let Some(errors) = v.get("errors").and_then(Value::as_array) else {
            return String::new();
        };
        errors
            .iter()
            .filter_map(|e| {
                let msg = str_field(e, "/message")?;
                Some(match e.get("count").and_then(Value::as_u64) {
                    Some(n) if n > 1 => format!("{msg} ({n} requests)"),
                    _ => msg.to_string(),
                })
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn dry_run_embeddings(route: &Route, custom_id: &str) -> Value {
        let inputs = match route.body.get("input") {
            Some(Value::Array(a)) => a.len(),
            _ => 1,
        };
        let dimension = route
            .body
            .get("output_dimension")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| default_embedding_dimension(&route.model))
            as usize;
        let data: Vec<Value> = (0..inputs)
            .map(|index| json!({"object": "embedding", "embedding": vec![0.0; dimension], "index": index}))
            .collect();
        json!({
            "id": format!("embd-dryrun-{custom_id}"),
            "object": "list",
            "model": route.model,
            "data": data,
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        })
    }
}

impl ProviderAdapter for Mistral {
    fn id(&self) -> ProviderId {
        ProviderId::Mistral
    }

    fn recognize_at(&self, req: &HttpRequest, host: &HostMatch) -> Result<Route, PassThrough> {
        let endpoint = ENDPOINTS
            .iter()
            .find(|(suffix, _)| host.rest_path == *suffix)
            .map(|(_, endpoint)| *endpoint)
            .ok_or(PassThrough::UnknownUrl)?;
        openai_compat::route(req, &host.base_url, endpoint, host.provider, host.settings)
    }

    fn limits(&self, route: &Route) -> BatchLimits {
        let file_bytes = route.settings.max_file_bytes.unwrap_or(MAX_FILE_BYTES);
        BatchLimits {
            max_requests: route.settings.max_requests.unwrap_or(MAX_REQUESTS),
            max_bytes: file_bytes
                .saturating_sub(ENVELOPE_HEADROOM_BYTES)
                .max(file_bytes / 2),
        }
    }

    fn item_bytes(&self, _ctx: &BatchContext, item: &BatchItem) -> usize {
        let mut count = ByteCount(0);
        common::write_custom_id_body_line(&mut count, item);
        count.0 + 1
    }

    fn build_upload(&self, ctx: &BatchContext, items: &[BatchItem]) -> Option<HttpRequest> {
        // Same multipart `POST {base}/files` (file + purpose=batch) as OpenAI's; only the lines
        // differ.
        Some(openai_compat::jsonl_upload(ctx, items, |w, item| {
            common::write_custom_id_body_line(w, item)
        }))
    }

    fn parse_upload(&self, resp: &HttpResponse) -> Result<String, ProtocolError> {
        // The file object's `id`, as OpenAI's.
        OpenAi.parse_upload(resp)
    }

    fn build_create(
        &self,
        ctx: &BatchContext,
        _items: &[BatchItem],
        uploaded_file: Option<&str>,
    ) -> HttpRequest {
        debug_assert!(
            uploaded_file.is_some(),
            "Mistral jobs are built on the uploaded file"
        );
        let body = json!({
            "input_files": [uploaded_file.unwrap_or_default()],
            "endpoint": ctx.route.endpoint,
            // One model per job; the batcher's grouping gives every item the route's model.
            "model": ctx.route.model,
            "metadata": {openai_compat::TAG_METADATA_KEY: ctx.tag},
            "timeout_hours": Self::timeout_hours(ctx.route.settings.completion_window.as_deref()),
        });
        common::post(ctx, "/batch/jobs", &body)
    }

    fn parse_create(&self, resp: &HttpResponse) -> Result<RemoteBatch, ProtocolError> {
        // A BatchJob: `id` and `status`, the fields OpenAI's batch object has.
        OpenAi.parse_create(resp)
    }

    fn build_find(&self, ctx: &BatchContext) -> Option<HttpRequest> {
        // Newest first, matched on `metadata.batchling_tag` here. The list also takes a
        // `metadata` filter, but how the server reads it is not documented (the SDK explodes it
        // into `batchling_tag=…`); a filter read differently would hide our job and make us
        // create it twice, so we do not use it.
        Some(common::get(
            ctx,
            "/batch/jobs?page=0&page_size=100&order_by=-created",
        ))
    }

    fn parse_find(
        &self,
        resp: &HttpResponse,
        tag: &str,
    ) -> Result<Option<RemoteBatch>, ProtocolError> {
        // `{object: "list", data: [BatchJob], total}`: OpenAI's list shape, same metadata key.
        OpenAi.parse_find(resp, tag)
    }

    fn build_poll(&self, ctx: &BatchContext, batch_id: &str) -> HttpRequest {
        common::get(ctx, &format!("/batch/jobs/{batch_id}"))
    }

    fn parse_poll(
        &self,
        resp: &HttpResponse,
        _custom_ids_in_order: &[String],
    ) -> Result<PollReport, ProtocolError> {
        let v = ok_json(resp, "batch poll")?;
        let status = str_field(&v, "/status")
            .ok_or_else(|| ProtocolError::new("batch poll: answer has no status"))?;
        let end_kind = match status {
            "QUEUED" | "RUNNING" | "CANCELLATION_REQUESTED" => None,
            "SUCCESS" => None,
            "FAILED" => Some(EndKind::Failed),
            "TIMEOUT_EXCEEDED" => Some(EndKind::Expired),
            "CANCELLED" => Some(EndKind::Cancelled),
            other => {
                return Err(ProtocolError::new(format!(
                    "batch poll: unknown status {other:?}"
                )))
            }
        };
        let downloads: Vec<String> = ["/output_file", "/error_file"]
            .iter()
            .filter_map(|p| str_field(&v, p))
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .collect();
        let (state, end_kind_if_partial) = match (status, end_kind) {
            ("SUCCESS", _) => (
                PollState::Completed {
                    downloads,
                    inline: None,
                },
                None,
            ),
            (_, None) => (PollState::Running, None),
            // A job that stopped early keeps the files of what ran; the rest did not run.
            (_, Some(kind)) if !downloads.is_empty() => (
                PollState::Completed {
                    downloads,
                    inline: None,
                },
                Some(kind),
            ),
            (_, Some(kind)) => (
                PollState::Ended {
                    kind,
                    message: Self::job_errors(&v),
                },
                None,
            ),
        };
        Ok(PollReport {
            state_label: status.to_string(),
            total: common::count_field(&v, "/total_requests"),
            completed: common::count_field(&v, "/completed_requests"),
            failed: common::count_field(&v, "/failed_requests"),
            state,
            end_kind_if_partial,
        })
    }

    fn build_download(&self, ctx: &BatchContext, file_id: &str) -> HttpRequest {
        // `GET {base}/files/{id}/content`, as OpenAI's.
        OpenAi.build_download(ctx, file_id)
    }

    fn parse_results(&self, batch_id: &str, body: &str) -> ParsedResults {
        common::parse_jsonl(body, |line| Self::parse_line(batch_id, line))
    }

    fn ended_response(&self, batch_id: &str, kind: EndKind, message: &str) -> HttpResponse {
        Self::error_response(
            kind.http_status(),
            &common::not_run_message(ProviderId::Mistral, batch_id, kind, message),
            &format!("batch_{kind}"),
            &common::not_run_headers(batch_id),
        )
    }

    fn dry_run_response(&self, route: &Route, custom_id: &str) -> HttpResponse {
        if route.endpoint == "/v1/embeddings" {
            let body = Self::dry_run_embeddings(route, custom_id);
            return json_response(200, &body, &[(common::DRY_RUN_HEADER, "1")]);
        }
        // Chat and FIM completions answer in OpenAI's chat.completion shape, which is also what
        // the Mistral SDK parses (it ignores the OpenAI-only fields).
        OpenAi.dry_run_response(route, custom_id)
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!((done.total, done.completed, done.failed), (10, 7, 2));
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
}
