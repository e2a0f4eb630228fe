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
    api_key_env: Some("MISTRAL_API_KEY"),
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

    /// `POST {base}/batch/jobs/{id}/cancel` (no body).
    fn build_cancel(&self, ctx: &BatchContext, batch_id: &str) -> Option<HttpRequest> {
        let mut req = common::get(ctx, &format!("/batch/jobs/{batch_id}/cancel"));
        req.method = "POST".into();
        Some(req)
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
        // Mistral's `completed_requests` counts the failed ones too: `completed` here is the
        // succeeded ones, so that completed + failed is the number of result lines.
        let failed = common::count_field(&v, "/failed_requests");
        let completed = match v.get("succeeded_requests").and_then(Value::as_u64) {
            Some(succeeded) => succeeded,
            None => common::count_field(&v, "/completed_requests").saturating_sub(failed),
        };
        Ok(PollReport {
            state_label: status.to_string(),
            total: common::count_field(&v, "/total_requests"),
            completed,
            failed,
            state,
            end_kind_if_partial,
        })
    }

    fn build_download(&self, ctx: &BatchContext, file_id: &str) -> HttpRequest {
        // `GET {base}/files/{id}/content`, as OpenAI's.
        OpenAi.build_download(ctx, file_id)
    }

    /// `DELETE {base}/files/{id}`, as OpenAI's.
    fn build_delete_file(&self, ctx: &BatchContext, file_id: &str) -> Option<HttpRequest> {
        OpenAi.build_delete_file(ctx, file_id)
    }

    fn parse_results(&self, batch_id: &str, body: &str) -> ParsedResults {
        common::parse_jsonl(body, |line| Self::parse_line(batch_id, line))
    }

    /// The output and error files are JSONL.
    fn streams_results(&self) -> bool {
        true
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
mod tests;
