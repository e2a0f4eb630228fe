//! The OpenAI batch protocol, shared by the providers that speak it (OpenAI, Groq, Doubleword,
//! Azure OpenAI and any declared OpenAI-compatible host): JSONL file upload, then
//! `POST {base}/batches`; results are JSONL files of `{custom_id, response|error}` lines.
//! Wire formats: providers.md §1.
//!
//! Providers with a protocol of their own that borrows pieces of this one (Mistral's upload and
//! routes, Together's result lines, xAI's routes) import them from here.

use std::borrow::Cow;
use std::{fmt, io, mem};

use rustc_hash::FxHashSet;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::common::{self, json_request, json_response, ok_json, str_field};
use super::{
    BatchContext, BatchItem, BatchLimits, EndKind, HostMatch, HostSettings, ItemResult,
    MalformedLine, ParsedResults, PassThrough, PollReport, PollState, ProtocolError,
    ProviderAdapter, ProviderId, RemoteBatch, Route,
};
use crate::http::{HttpRequest, HttpResponse};

/// The metadata key that carries our idempotency tag on a batch.
pub const TAG_METADATA_KEY: &str = "batchling_tag";

/// Path suffixes we batch, with the `endpoint` value the batch API expects for them. The batch
/// endpoint always has the `/v1` prefix, whatever the host's base path (Groq uses `/openai/v1`).
const ENDPOINTS: &[(&str, &str)] = &[
    ("/chat/completions", "/v1/chat/completions"),
    ("/responses", "/v1/responses"),
    ("/embeddings", "/v1/embeddings"),
];

/// We count MB as 10^6 bytes (the smaller reading) and keep 64 KiB for the multipart framing.
pub(super) const MB: usize = 1_000_000;
const ENVELOPE_HEADROOM_BYTES: usize = 64 * 1024;

/// What a provider speaking this protocol batches, and its documented defaults; each one's file
/// declares its own ([`super::ProviderDescriptor::openai_profile`]). A declared host's settings
/// ([`HostSettings`]) override the limits and the window.
pub struct Profile {
    /// Batch endpoints ("/v1/…"); any other path under the host passes through.
    pub endpoints: &'static [&'static str],
    pub completion_window: &'static str,
    pub max_requests: usize,
    pub max_file_bytes: usize,
    /// Recognition of a request under one of the provider's hosts, when it is not the plain
    /// `{base}{path}` of an endpoint above (Azure's deployment URLs).
    pub recognize_at: Option<RecognizeAt>,
}

/// A provider's own recognition of a request under one of its hosts ([`Profile::recognize_at`]).
pub type RecognizeAt = fn(&HttpRequest, &HostMatch) -> Result<Route, PassThrough>;

pub const CHAT: &str = "/v1/chat/completions";
pub const RESPONSES: &str = "/v1/responses";
pub const EMBEDDINGS: &str = "/v1/embeddings";

/// The profile of `provider`, OpenAI's for a provider without one.
fn profile(provider: ProviderId) -> &'static Profile {
    provider
        .descriptor()
        .openai_profile
        .or(ProviderId::OpenAi.descriptor().openai_profile)
        .expect("OpenAI has a profile")
}

/// The adapter of the OpenAI batch protocol, shared by every provider that speaks it (their
/// routes name the provider, whose [`Profile`] sets what differs).
pub struct OpenAi;

impl OpenAi {
    /// Writes one line of the input file, `{custom_id, method, url, body}`, without the newline.
    /// The body is serialized where it lies, not copied into a new tree first.
    fn write_input_line(w: impl io::Write, endpoint: &str, item: &BatchItem) {
        let line = InputLine {
            custom_id: &item.custom_id,
            method: "POST",
            url: endpoint,
            body: &item.body,
        };
        // Neither a `Value` nor an in-memory writer can fail.
        serde_json::to_writer(w, &line).expect("a JSON value serializes into memory");
    }

    /// The synthetic answer for a line whose `response` is null and `error` is set: a failure
    /// outside HTTP, so there is no status to copy.
    fn line_error_response(batch_id: &str, error: &Value) -> HttpResponse {
        let code = str_field(error, "/code").unwrap_or("batch_error");
        let message = str_field(error, "/message").unwrap_or("");
        let (status, not_run) = match code {
            "batch_expired" => (EndKind::Expired.http_status(), true),
            "batch_cancelled" => (EndKind::Cancelled.http_status(), true),
            // The model call itself timed out. A sync timeout is retryable, so no
            // x-should-retry: the SDK may retry, which queues it into a new batch.
            "request_timeout" => (504, false),
            _ => (500, false),
        };
        let body = json!({"error": {
            "message": format!("batchling: {code} in batch {batch_id}: {message}"),
            "type": "batch_error",
            "param": null,
            "code": code,
        }});
        if not_run {
            json_response(status, &body, &common::not_run_headers(batch_id))
        } else {
            json_response(status, &body, &[("x-batchling-batch-id", batch_id)])
        }
    }

    /// The common shapes of a result line, read without building a tree: the response body is
    /// copied as the provider wrote it. `None` means "not the common case"; the caller then runs
    /// [`Self::parse_line`], which accepts or rejects the line and words the reason.
    fn parse_line_fast<'b>(batch_id: &str, text: &'b str) -> Option<(Cow<'b, str>, HttpResponse)> {
        let line: OutLine<'b> = serde_json::from_str(text).ok()?;
        let custom_id = json_str(line.custom_id?)?;
        let response = match (line.response, line.error) {
            (Some(resp), _) => {
                let status = resp
                    .status_code?
                    .get()
                    .parse::<u16>()
                    .ok()
                    .filter(|s| (100..=599).contains(s))?;
                let mut r = HttpResponse::json(status, resp.body?.get().to_owned());
                if let Some(id) = resp.request_id.and_then(json_str) {
                    r.headers.push(("x-request-id".into(), id.into_owned()));
                }
                r
            }
            (None, Some(err)) if err.get().starts_with('{') => {
                Self::line_error_response(batch_id, &serde_json::from_str(err.get()).ok()?)
            }
            _ => return None,
        };
        Some((custom_id, response))
    }

    fn parse_line(batch_id: &str, line: &Value) -> Result<ItemResult, String> {
        let obj = line.as_object().ok_or("line is not a JSON object")?;
        let custom_id = common::id_field(obj, "custom_id")?;
        let response = match (obj.get("response"), obj.get("error")) {
            (Some(resp @ Value::Object(_)), _) => {
                let status = resp
                    .get("status_code")
                    .and_then(Value::as_u64)
                    .filter(|s| (100..=599).contains(s))
                    .ok_or("response.status_code missing or not an HTTP status")?;
                let body = resp.get("body").ok_or("response.body missing")?;
                let mut r = HttpResponse::json(status as u16, body.to_string());
                if let Some(id) = resp.get("request_id").and_then(Value::as_str) {
                    r.headers.push(("x-request-id".into(), id.into()));
                }
                r
            }
            (_, Some(err @ Value::Object(_))) => Self::line_error_response(batch_id, err),
            _ => return Err("neither response nor error".into()),
        };
        Ok(ItemResult {
            custom_id,
            response,
        })
    }

    fn remote_batch(v: &Value) -> Option<RemoteBatch> {
        Some(RemoteBatch {
            id: str_field(v, "/id")?.to_string(),
            state_label: str_field(v, "/status").unwrap_or("").to_string(),
        })
    }

    /// A failed batch refused for the enqueued-token limit (`errors.data[].code =
    /// "token_limit_exceeded"`): `Some(limit)`, with the limit its message states ("… Limit:
    /// 2,000,000 enqueued tokens. …") when it does.
    fn enqueued_limit(v: &Value) -> Option<Option<u64>> {
        let errors = v.pointer("/errors/data")?.as_array()?;
        let error = errors
            .iter()
            .find(|e| str_field(e, "/code") == Some("token_limit_exceeded"))?;
        let message = str_field(error, "/message").unwrap_or("");
        let limit = message.split_once("Limit:").and_then(|(_, rest)| {
            let digits: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ',')
                .filter(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        });
        Some(limit)
    }

    /// The text of `errors.data[]` of a failed batch: each message with its code (Azure's quota
    /// failure `token_limit_exceeded`, `invalid_json_line`, …) and line when given.
    fn batch_errors(v: &Value) -> String {
        v.pointer("/errors/data")
            .and_then(Value::as_array)
            .map(|errs| {
                errs.iter()
                    .filter_map(|e| {
                        let msg = str_field(e, "/message")?;
                        let msg = match str_field(e, "/code").filter(|c| !msg.contains(c)) {
                            Some(code) => format!("{code}: {msg}"),
                            None => msg.to_string(),
                        };
                        Some(match e.get("line").and_then(Value::as_u64) {
                            Some(line) => format!("line {line}: {msg}"),
                            None => msg,
                        })
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }
}

impl ProviderAdapter for OpenAi {
    fn id(&self) -> ProviderId {
        ProviderId::OpenAi
    }

    /// The enqueued-token limit is checked while the batch validates, before any line runs.
    fn may_refuse_enqueued(&self, state_label: Option<&str>) -> bool {
        matches!(state_label, None | Some("validating"))
    }

    fn recognize(&self, req: &HttpRequest) -> Option<Result<Route, PassThrough>> {
        let (url, _query) = common::split_query(&req.url);
        let (base, endpoint) = ENDPOINTS.iter().find_map(|(suffix, endpoint)| {
            Some((common::strip_path_suffix(url, suffix)?, *endpoint))
        })?;
        // Anthropic- or Gemini-signed requests are theirs (their OpenAI-compatibility layers
        // have no OpenAI batch API behind the same base).
        if req.header("anthropic-version").is_some() || req.header("x-goog-api-key").is_some() {
            return None;
        }
        // Azure's classic deployment URLs put batches elsewhere; Vertex has its own batch API.
        if url.contains("/deployments/") || url.contains("/projects/") {
            return Some(Err(PassThrough::UnknownUrl));
        }
        Some(route(
            req,
            base,
            endpoint,
            ProviderId::OpenAi,
            &HostSettings::default(),
        ))
    }

    fn recognize_at(&self, req: &HttpRequest, host: &HostMatch) -> Result<Route, PassThrough> {
        let profile = profile(host.provider);
        if let Some(recognize_at) = profile.recognize_at {
            return recognize_at(req, host);
        }
        let endpoint = batch_endpoint(profile, host.rest_path)?;
        route(req, &host.base_url, endpoint, host.provider, host.settings)
    }

    fn limits(&self, route: &Route) -> BatchLimits {
        let defaults = profile(route.provider);
        let file_bytes = route
            .settings
            .max_file_bytes
            .unwrap_or(defaults.max_file_bytes);
        BatchLimits {
            max_requests: route.settings.max_requests.unwrap_or(defaults.max_requests),
            // A tiny declared file limit still leaves room for one line.
            max_bytes: file_bytes
                .saturating_sub(ENVELOPE_HEADROOM_BYTES)
                .max(file_bytes / 2),
        }
    }

    fn item_bytes(&self, ctx: &BatchContext, item: &BatchItem) -> usize {
        let mut count = ByteCount(0);
        Self::write_input_line(&mut count, &ctx.route.endpoint, item);
        count.0 + 1
    }

    fn build_upload(&self, ctx: &BatchContext, items: &[BatchItem]) -> Option<HttpRequest> {
        let endpoint = &ctx.route.endpoint;
        Some(jsonl_upload(ctx, items, |w, item| {
            Self::write_input_line(w, endpoint, item)
        }))
    }

    fn parse_upload(&self, resp: &HttpResponse) -> Result<String, ProtocolError> {
        let v = ok_json(resp, "file upload")?;
        str_field(&v, "/id")
            .map(str::to_string)
            .ok_or_else(|| ProtocolError::new("file upload: answer has no id"))
    }

    fn build_create(
        &self,
        ctx: &BatchContext,
        _items: &[BatchItem],
        uploaded_file: Option<&str>,
    ) -> HttpRequest {
        debug_assert!(
            uploaded_file.is_some(),
            "OpenAI batches need the uploaded file id"
        );
        let body = json!({
            "input_file_id": uploaded_file.unwrap_or_default(),
            "endpoint": ctx.route.endpoint,
            "completion_window": ctx
                .route
                .settings
                .completion_window
                .as_deref()
                .unwrap_or(profile(ctx.route.provider).completion_window),
            "metadata": {TAG_METADATA_KEY: ctx.tag},
        });
        json_request(
            "POST",
            batch_url(ctx.route, "/batches"),
            &ctx.route.forward_headers,
            Some(&body),
        )
    }

    fn parse_create(&self, resp: &HttpResponse) -> Result<RemoteBatch, ProtocolError> {
        let v = ok_json(resp, "batch create")?;
        Self::remote_batch(&v).ok_or_else(|| ProtocolError::new("batch create: answer has no id"))
    }

    fn build_find(&self, ctx: &BatchContext) -> Option<HttpRequest> {
        // Newest first; an ambiguous create is found within the most recent page.
        Some(json_request(
            "GET",
            batch_url(ctx.route, "/batches?limit=100"),
            &ctx.route.forward_headers,
            None,
        ))
    }

    fn parse_find(
        &self,
        resp: &HttpResponse,
        tag: &str,
    ) -> Result<Option<RemoteBatch>, ProtocolError> {
        let v = ok_json(resp, "batch list")?;
        let data = v
            .get("data")
            .ok_or_else(|| ProtocolError::new("batch list: no data array"))?;
        let tag_pointer = format!("/metadata/{TAG_METADATA_KEY}");
        common::find_listed(
            Some(data),
            |b| str_field(b, &tag_pointer) == Some(tag),
            Self::remote_batch,
        )
    }

    fn build_poll(&self, ctx: &BatchContext, batch_id: &str) -> HttpRequest {
        json_request(
            "GET",
            batch_url(ctx.route, &format!("/batches/{batch_id}")),
            &ctx.route.forward_headers,
            None,
        )
    }

    /// `POST {base}/batches/{id}/cancel` (no body).
    fn build_cancel(&self, ctx: &BatchContext, batch_id: &str) -> Option<HttpRequest> {
        Some(json_request(
            "POST",
            batch_url(ctx.route, &format!("/batches/{batch_id}/cancel")),
            &ctx.route.forward_headers,
            None,
        ))
    }

    fn parse_poll(
        &self,
        resp: &HttpResponse,
        _custom_ids_in_order: &[String],
    ) -> Result<PollReport, ProtocolError> {
        let v = ok_json(resp, "batch poll")?;
        let status = str_field(&v, "/status")
            .ok_or_else(|| ProtocolError::new("batch poll: answer has no status"))?;
        let downloads = result_files(&v);
        let (state, end_kind_if_partial) = match status {
            "validating" | "in_progress" | "finalizing" | "cancelling" => {
                (PollState::Running, None)
            }
            "completed" => (
                PollState::Completed {
                    downloads,
                    inline: None,
                },
                None,
            ),
            "failed" => {
                let message = Self::batch_errors(&v);
                let state = match Self::enqueued_limit(&v) {
                    Some(limit_tokens) => PollState::OverEnqueuedLimit {
                        message,
                        limit_tokens,
                    },
                    None => PollState::Ended {
                        kind: EndKind::Failed,
                        message,
                    },
                };
                (state, None)
            }
            // Expired and cancelled batches keep what ran in their output / error files; the
            // requests without a line did not run.
            "expired" | "cancelled" => {
                let kind = if status == "expired" {
                    EndKind::Expired
                } else {
                    EndKind::Cancelled
                };
                if downloads.is_empty() {
                    (
                        PollState::Ended {
                            kind,
                            message: String::new(),
                        },
                        None,
                    )
                } else {
                    (
                        PollState::Completed {
                            downloads,
                            inline: None,
                        },
                        Some(kind),
                    )
                }
            }
            // Failing loudly beats polling forever on a state we do not understand.
            other => {
                return Err(ProtocolError::new(format!(
                    "batch poll: unknown status {other:?}"
                )))
            }
        };
        Ok(PollReport {
            state_label: status.to_string(),
            total: common::count_field(&v, "/request_counts/total"),
            completed: common::count_field(&v, "/request_counts/completed"),
            failed: common::count_field(&v, "/request_counts/failed"),
            state,
            end_kind_if_partial,
        })
    }

    fn build_download(&self, ctx: &BatchContext, file_id: &str) -> HttpRequest {
        json_request(
            "GET",
            batch_url(ctx.route, &format!("/files/{file_id}/content")),
            &ctx.route.forward_headers,
            None,
        )
    }

    /// `DELETE {base}/files/{id}` (OpenAI, Azure, Groq).
    fn build_delete_file(&self, ctx: &BatchContext, file_id: &str) -> Option<HttpRequest> {
        Some(json_request(
            "DELETE",
            batch_url(ctx.route, &format!("/files/{file_id}")),
            &ctx.route.forward_headers,
            None,
        ))
    }

    /// The output and error files are JSONL.
    fn streams_results(&self) -> bool {
        true
    }

    fn parse_results(&self, batch_id: &str, body: &str) -> ParsedResults {
        // `common::parse_jsonl`'s rules (BOM, blank lines, 1-based numbers, first `custom_id`
        // wins), with the common lines read by `parse_line_fast`.
        let body = body.strip_prefix('\u{feff}').unwrap_or(body);
        let mut out = ParsedResults::default();
        let mut seen: FxHashSet<Cow<str>> = FxHashSet::default();
        for (i, raw) in body.split('\n').enumerate() {
            let text = raw.trim();
            if text.is_empty() {
                continue;
            }
            let (custom_id, response) = match Self::parse_line_fast(batch_id, text) {
                Some(fast) => fast,
                None => match serde_json::from_str::<Value>(text)
                    .map_err(|e| format!("invalid JSON: {e}"))
                    .and_then(|v| Self::parse_line(batch_id, &v))
                {
                    Ok(item) => (Cow::Owned(item.custom_id), item.response),
                    Err(reason) => {
                        out.malformed.push(MalformedLine {
                            line_number: i + 1,
                            reason,
                        });
                        continue;
                    }
                },
            };
            if seen.insert(custom_id.clone()) {
                out.items.push(ItemResult {
                    custom_id: custom_id.into_owned(),
                    response,
                });
            } else {
                out.malformed.push(MalformedLine {
                    line_number: i + 1,
                    reason: format!("duplicate custom_id {custom_id:?}"),
                });
            }
        }
        out
    }

    fn ended_response(&self, batch_id: &str, kind: EndKind, message: &str) -> HttpResponse {
        ended_response_as(ProviderId::OpenAi, batch_id, kind, message)
    }

    fn dry_run_response(&self, route: &Route, custom_id: &str) -> HttpResponse {
        let model = route.model.as_str();
        let body = match route.endpoint.as_str() {
            e if e.ends_with("/responses") => json!({
                "id": format!("resp_dryrun_{custom_id}"),
                "object": "response",
                "created_at": 0,
                "status": "completed",
                "error": null,
                "incomplete_details": null,
                "model": model,
                "output": [{
                    "type": "message",
                    "id": format!("msg_dryrun_{custom_id}"),
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": common::DRY_RUN_TEXT, "annotations": []}],
                }],
                "parallel_tool_calls": true,
                "tools": [],
                "usage": {
                    "input_tokens": 0,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": 0,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": 0,
                },
            }),
            e if e.ends_with("/embeddings") => dry_run_embeddings(&route.body, model),
            _ => json!({
                "id": format!("chatcmpl-dryrun-{custom_id}"),
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": common::DRY_RUN_TEXT, "refusal": null},
                    "logprobs": null,
                    "finish_reason": "stop",
                }],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }),
        };
        json_response(200, &body, &[(common::DRY_RUN_HEADER, "1")])
    }
}

/// A batch object's `output_file_id` and `error_file_id`, those that are set.
pub(super) fn result_files(batch: &Value) -> Vec<String> {
    ["/output_file_id", "/error_file_id"]
        .iter()
        .filter_map(|p| str_field(batch, p))
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect()
}

/// [`ProviderAdapter::ended_response`] in the OpenAI error envelope, naming `provider` (also used
/// by the OpenAI-compatible adapters with a protocol of their own, e.g. Together).
pub(super) fn ended_response_as(
    provider: ProviderId,
    batch_id: &str,
    kind: EndKind,
    message: &str,
) -> HttpResponse {
    let body = json!({"error": {
        "message": common::not_run_message(provider, batch_id, kind, message),
        "type": "batch_error",
        "param": null,
        "code": format!("batch_{kind}"),
    }});
    json_response(
        kind.http_status(),
        &body,
        &common::not_run_headers(batch_id),
    )
}

/// The `POST {base}/files` multipart upload (`purpose=batch`) of one JSONL file whose lines
/// `write_line` writes (without the newline). Also Mistral's upload, whose lines differ.
pub(crate) fn jsonl_upload(
    ctx: &BatchContext,
    items: &[BatchItem],
    write_line: impl Fn(&mut Vec<u8>, &BatchItem),
) -> HttpRequest {
    // The lines go into chunks of about `UPLOAD_CHUNK` bytes, each hashed while it is still
    // in cache, so the body below can be allocated once at its exact size.
    let mut chunks: Vec<String> = Vec::new();
    let mut hasher = Sha256::new();
    let mut jsonl_len = 0;
    let mut chunk = Vec::with_capacity(UPLOAD_CHUNK);
    let mut finish_chunk = |chunk: Vec<u8>| {
        hasher.update(&chunk);
        jsonl_len += chunk.len();
        chunks.push(String::from_utf8(chunk).expect("serde_json writes UTF-8"));
    };
    for item in items {
        write_line(&mut chunk, item);
        chunk.push(b'\n');
        if chunk.len() >= UPLOAD_CHUNK - UPLOAD_CHUNK / 8 {
            finish_chunk(mem::replace(&mut chunk, Vec::with_capacity(UPLOAD_CHUNK)));
        }
    }
    if !chunk.is_empty() {
        finish_chunk(chunk);
    }
    // A deterministic boundary (no randomness in core) that cannot occur in the payload.
    let digest = common::hex(&hasher.finalize());
    let mut boundary = format!("batchling-{}", &digest[..32]);
    let filename = format!("{}.jsonl", ctx.tag);
    let head = |b: &str| {
        format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             Content-Type: application/jsonl\r\n\r\n"
        )
    };
    let tail = |b: &str| format!("\r\n--{b}--\r\n");
    let (h, t) = (head(&boundary), tail(&boundary));
    let mut body = String::with_capacity(h.len() + jsonl_len + t.len());
    body.push_str(&h);
    for chunk in chunks {
        body.push_str(&chunk);
    }
    let jsonl = h.len()..h.len() + jsonl_len;
    if body[jsonl.clone()].contains(&boundary) {
        // Only a payload that quotes its own hash gets here.
        while body[jsonl.clone()].contains(&boundary) {
            boundary.push('x');
        }
        let jsonl = &body[jsonl];
        body = [head(&boundary).as_str(), jsonl, &tail(&boundary)].concat();
    } else {
        body.push_str(&t);
    }
    let mut headers = ctx.route.forward_headers.clone();
    headers.push((
        "content-type".into(),
        format!("multipart/form-data; boundary={boundary}"),
    ));
    HttpRequest {
        method: "POST".into(),
        url: batch_url(ctx.route, "/files"),
        headers,
        body,
    }
}

/// Bytes per piece of the input file while `build_upload` writes it.
const UPLOAD_CHUNK: usize = 1 << 20;

/// One line of the input file.
#[derive(Serialize)]
struct InputLine<'a> {
    custom_id: &'a str,
    method: &'static str,
    url: &'a str,
    body: &'a Value,
}

/// An `io::Write` that only counts what it is given.
pub(crate) struct ByteCount(pub(crate) usize);

impl io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A result line, as far as `parse_line_fast` reads it. Keys may repeat (the last one wins, as in
/// a `Value`); other keys are skipped.
#[derive(Default)]
struct OutLine<'a> {
    custom_id: Option<&'a RawValue>,
    response: Option<OutResponse<'a>>,
    error: Option<&'a RawValue>,
}

/// The `response` object of a result line.
#[derive(Default)]
struct OutResponse<'a> {
    status_code: Option<&'a RawValue>,
    request_id: Option<&'a RawValue>,
    body: Option<&'a RawValue>,
}

/// The keys `OutLine` and `OutResponse` keep. Hand-written visitors (not `derive`), because a
/// derived struct would also accept a JSON array, which is not a result line.
enum Key {
    CustomId,
    Response,
    Error,
    StatusCode,
    RequestId,
    Body,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "custom_id" => Key::CustomId,
                    "response" => Key::Response,
                    "error" => Key::Error,
                    "status_code" => Key::StatusCode,
                    "request_id" => Key::RequestId,
                    "body" => Key::Body,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for OutLine<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LineVisitor;
        impl<'de> Visitor<'de> for LineVisitor {
            type Value = OutLine<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a result line object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut line = OutLine::default();
                while let Some(key) = map.next_key()? {
                    match key {
                        Key::CustomId => line.custom_id = map.next_value()?,
                        Key::Response => line.response = map.next_value()?,
                        Key::Error => line.error = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(line)
            }
        }
        d.deserialize_map(LineVisitor)
    }
}

impl<'de> Deserialize<'de> for OutResponse<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ResponseVisitor;
        impl<'de> Visitor<'de> for ResponseVisitor {
            type Value = OutResponse<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a response object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut resp = OutResponse::default();
                while let Some(key) = map.next_key()? {
                    match key {
                        Key::StatusCode => resp.status_code = map.next_value()?,
                        Key::RequestId => resp.request_id = map.next_value()?,
                        Key::Body => resp.body = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(resp)
            }
        }
        d.deserialize_map(ResponseVisitor)
    }
}

/// The text of a JSON string, borrowed when it has no escapes; `None` for any other value.
fn json_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str(text).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// The batch endpoint for `rest_path` (what follows a host's base), if `profile` batches it.
pub(super) fn batch_endpoint(
    profile: &Profile,
    rest_path: &str,
) -> Result<&'static str, PassThrough> {
    ENDPOINTS
        .iter()
        .find(|(suffix, _)| rest_path == *suffix)
        .map(|(_, endpoint)| *endpoint)
        .filter(|endpoint| profile.endpoints.contains(endpoint))
        .ok_or(PassThrough::UnknownUrl)
}

/// `{base}{path}` for a batch call, with the route's Azure api-version when it has one.
fn batch_url(route: &Route, path: &str) -> String {
    let mut url = format!("{}{path}", route.base_url);
    if let Some(v) = &route.settings.api_version {
        url.push(if path.contains('?') { '&' } else { '?' });
        url.push_str("api-version=");
        url.push_str(v);
    }
    url
}

/// The route of a POST with a JSON body naming a `model` (streaming, non-JSON and model-less
/// requests pass through). Shared with the OpenAI-shaped adapters (Mistral).
pub(crate) fn route(
    req: &HttpRequest,
    base: &str,
    endpoint: &str,
    provider: ProviderId,
    settings: &HostSettings,
) -> Result<Route, PassThrough> {
    route_for(req, base, endpoint, provider, settings, None)
}

/// [`route`]; with `deployment` (Azure classic), that is the model, in the route and in the body.
pub(super) fn route_for(
    req: &HttpRequest,
    base: &str,
    endpoint: &str,
    provider: ProviderId,
    settings: &HostSettings,
    deployment: Option<&str>,
) -> Result<Route, PassThrough> {
    if !common::is_post(req) {
        return Err(PassThrough::NotPost);
    }
    let mut body: Map<String, Value> = common::strip_streaming(common::json_object_body(req)?)?;
    if let Some(d) = deployment {
        body.insert("model".into(), Value::String(d.into()));
    }
    let model = match body.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => return Err(PassThrough::NoModel),
    };
    let base_url = base.trim_end_matches('/').to_string();
    let forward_headers = common::forward_headers(&req.headers);
    // The API version is part of where the batch calls go, so of the fingerprint.
    let calls_base = match &settings.api_version {
        Some(v) => format!("{base_url}?api-version={v}"),
        None => base_url.clone(),
    };
    Ok(Route {
        provider,
        endpoint: endpoint.to_string(),
        model,
        credential_fingerprint: common::fingerprint(provider, &calls_base, &forward_headers),
        base_url,
        forward_headers,
        body: Value::Object(body),
        settings: settings.clone(),
    })
}

/// A zero vector per input, in the format the request asked for. The Node SDK asks for base64
/// by default and decodes it itself, so the shape must match or the SDK throws.
fn dry_run_embeddings(body: &Value, model: &str) -> Value {
    let inputs = match body.get("input") {
        // A list of strings or of token arrays is one embedding each; a single token array
        // (list of numbers) is one input.
        Some(Value::Array(a)) if a.iter().all(Value::is_number) => 1,
        Some(Value::Array(a)) => a.len(),
        _ => 1,
    };
    let dimensions = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .map(|d| d as usize)
        .unwrap_or(if model.contains("3-large") {
            3072
        } else {
            1536
        });
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = (0..inputs)
        .map(|index| {
            let embedding = if base64 {
                Value::String(common::base64_zeros(dimensions * 4))
            } else {
                Value::Array(vec![json!(0.0); dimensions])
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    })
}

#[cfg(test)]
mod tests;
