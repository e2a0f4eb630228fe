//! OpenAI Batch API (and OpenAI-compatible hosts that clone it): JSONL file upload, then
//! `POST {base}/batches`; results are JSONL files of `{custom_id, response|error}` lines.
//! Wire formats: providers.md §1.

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
const MB: usize = 1_000_000;
const ENVELOPE_HEADROOM_BYTES: usize = 64 * 1024;

/// What a host speaking this protocol batches, and its documented defaults. A declared host's
/// settings ([`HostSettings`]) override the limits and the window.
struct Profile {
    /// Batch endpoints ("/v1/…"); any other path under the host passes through.
    endpoints: &'static [&'static str],
    completion_window: &'static str,
    max_requests: usize,
    max_file_bytes: usize,
}

const CHAT: &str = "/v1/chat/completions";
const RESPONSES: &str = "/v1/responses";
const EMBEDDINGS: &str = "/v1/embeddings";

/// Per-provider defaults (providers.md §1, §2, §6, §9):
/// - OpenAI: 50,000 requests, 200 MB, window "24h"; chat, responses and embeddings.
/// - Groq: 100 MB (SDK docstring), window "24h" (it accepts up to "7d"); the batch endpoint enum
///   is chat completions only (audio transcription takes multipart uploads, which pass through).
/// - Doubleword: 200 MB; chat completions and embeddings.
/// - Azure OpenAI: OpenAI's limits; chat completions and embeddings. Whether its batches take
///   `/responses` lines is not documented in providers.md, so responses calls pass through.
fn profile(provider: ProviderId) -> Profile {
    let openai = Profile {
        endpoints: &[CHAT, RESPONSES, EMBEDDINGS],
        completion_window: "24h",
        max_requests: 50_000,
        max_file_bytes: 200 * MB,
    };
    match provider {
        ProviderId::Groq => Profile {
            endpoints: &[CHAT],
            max_file_bytes: 100 * MB,
            ..openai
        },
        ProviderId::Doubleword | ProviderId::Azure => Profile {
            endpoints: &[CHAT, EMBEDDINGS],
            ..openai
        },
        _ => openai,
    }
}

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
        if host.provider == ProviderId::Azure {
            return recognize_azure(req, host);
        }
        let endpoint = batch_endpoint(host.provider, host.rest_path)?;
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
                (
                    PollState::Ended {
                        kind: EndKind::Failed,
                        message,
                    },
                    None,
                )
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

/// The batch endpoint for `rest_path` (what follows a host's base), if `provider` batches it.
fn batch_endpoint(provider: ProviderId, rest_path: &str) -> Result<&'static str, PassThrough> {
    ENDPOINTS
        .iter()
        .find(|(suffix, _)| rest_path == *suffix)
        .map(|(_, endpoint)| *endpoint)
        .filter(|endpoint| profile(provider).endpoints.contains(endpoint))
        .ok_or(PassThrough::UnknownUrl)
}

/// Azure OpenAI (providers.md §2), under a host whose base is the resource's `/openai`:
/// - classic: `/deployments/{name}/chat/completions?api-version=V` (and `/embeddings`), as the
///   `AzureOpenAI` client of the `openai` package sends them. The batch calls go to
///   `{base}/files?api-version=V`, `{base}/batches?api-version=V`, …; the deployment is the
///   model (`body.model` of each line) and lines use `"url": "/chat/completions"`, without the
///   `/v1` prefix, as Azure's classic examples do. A classic call without an api-version passes
///   through (Azure refuses it; the caller sees Azure's answer).
/// - v1 surface: `/v1/chat/completions` (model in the body, no api-version needed), batched
///   exactly like OpenAI under `{base}/v1`.
///
/// A declared Azure host whose base already ends in `/v1` is the v1 surface.
fn recognize_azure(req: &HttpRequest, host: &HostMatch) -> Result<Route, PassThrough> {
    let api_version = host
        .query
        .and_then(|q| common::query_param(q, "api-version"))
        .filter(|v| !v.is_empty());
    let mut settings = host.settings.clone();
    settings.api_version = api_version.map(str::to_string);
    if let Some(rest) = host.rest_path.strip_prefix("/deployments/") {
        let (deployment, suffix) = rest.split_once('/').ok_or(PassThrough::UnknownUrl)?;
        let endpoint = batch_endpoint(ProviderId::Azure, &format!("/{suffix}"))?;
        if deployment.is_empty() || api_version.is_none() {
            return Err(PassThrough::UnknownUrl);
        }
        // The SDK sends the caller's `model` (or none) in the body; Azure runs the deployment
        // named in the path, and a batch line names it in `body.model`.
        return route_for(
            req,
            &host.base_url,
            endpoint.trim_start_matches("/v1"),
            ProviderId::Azure,
            &settings,
            Some(deployment),
        );
    }
    let (base, rest) = match host.rest_path.strip_prefix("/v1") {
        Some(rest) if rest.starts_with('/') => (format!("{}/v1", host.base_url), rest),
        _ if host.base_url.ends_with("/v1") => (host.base_url.clone(), host.rest_path),
        _ => return Err(PassThrough::UnknownUrl),
    };
    let endpoint = batch_endpoint(ProviderId::Azure, rest)?;
    route(req, &base, endpoint, ProviderId::Azure, &settings)
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
fn route_for(
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
mod tests {
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
        assert!(ok.body.starts_with(
            r#"{"id":"chatcmpl-9758Iw","object":"chat.completion","created":1763880100"#
        ));

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
                msg.contains("batch_9")
                    && msg.contains(kind.as_str())
                    && msg.contains("window closed"),
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
        let v: Value =
            serde_json::from_str(&OpenAi.dry_run_response(&resp_route, "c2").body).unwrap();
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
            serde_json::from_str(&OpenAi.build_create(&ctx_for(r, "t"), &[], Some("f")).body)
                .unwrap()
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
        let PollState::Ended { kind, message } = failed.state else {
            panic!("{failed:?}")
        };
        assert_eq!(kind, EndKind::Failed);
        assert_eq!(
            message,
            "token_limit_exceeded: Enqueued token limit reached for gpt4o-batch."
        );
        let r = OpenAi.ended_response("batch_9", kind, &message);
        assert!(r.body.contains("token_limit_exceeded"), "{}", r.body);
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
}
