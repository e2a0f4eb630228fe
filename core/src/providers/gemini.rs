//! Gemini API (generativelanguage) Batch Mode: `POST {prefix}/models/{model}:batchGenerateContent`;
//! the batch is a long-running Operation polled at `{prefix}/batches/{id}`. Wire formats:
//! providers.md §4.
//!
//! Two flavours, chosen per batch in [`ProviderAdapter::build_upload`]:
//! - **Inline** (the default): the requests go in the create body, the results come back inside
//!   the poll answer. One request instead of a two-step upload, all on the caller's base URL.
//!   Gemini caps the create request at 20 MB ([`GEMINI_MAX_INLINE_REQUEST_BYTES`]; a host's
//!   `maxInlineBytes` lowers it).
//! - **File**, for a batch whose inline body would pass that cap: the requests go as JSONL lines
//!   `{key, request}` through the Files API's resumable upload (start: `POST
//!   {origin}/upload/{version}/files` with `X-Goog-Upload-Protocol: resumable`, answered with
//!   the session URL in `x-goog-upload-url`; then one `upload, finalize` POST of the bytes,
//!   answered with the File), the create names the file (`inputConfig.fileName`), and the
//!   results come as a `responsesFile` of `{key, response|error}` lines to download. Files take
//!   up to 2 GB ([`GEMINI_MAX_FILE_BYTES`]), which is the split rule's byte budget.
//!
//! Either way the batch's `displayName` is the idempotency tag, so a lost create is found in the
//! listing. Results that arrive as a `responsesFile` for an inline batch (e.g. a batch created by
//! another tool and found by tag) are handled the same way.
//!
//! Jobs ([`crate::jobs`]) become `generateContent` requests: a `systemInstruction`, files as
//! `inlineData`, structured output as `responseMimeType: application/json` + `responseJsonSchema`.

use serde_json::{json, Map, Value};

use super::common::{self, json_request, json_response, ok_json, str_field};
use super::hosts::any_window;
use super::openai_compat::ByteCount;
use super::{
    BatchContext, BatchItem, BatchLimits, EndKind, HostMatch, HostSettings, ItemResult,
    ParsedResults, PassThrough, PollReport, PollState, ProtocolError, ProviderAdapter,
    ProviderDescriptor, ProviderId, RemoteBatch, Route,
};
use crate::http::{HttpRequest, HttpResponse};
use crate::job_format::{file_data, u64_at, JobFormat, Output, Part, Prepared};

const ENDPOINT: &str = "generateContent";

/// Documented: an inline create request (the whole body) must stay under 20 MB (read as 10^6
/// bytes). A batch whose inline body would be larger goes as a file.
pub const GEMINI_MAX_INLINE_REQUEST_BYTES: usize = 20_000_000;
/// Documented: a batch input file holds at most 2 GB. The batcher splits batches under it.
pub const GEMINI_MAX_FILE_BYTES: usize = 2_000_000_000;
/// Not a Gemini limit: inline results come back inside every poll answer after completion, so we
/// cap the count to keep that answer to tens of MB.
const MAX_INLINE_REQUESTS: usize = 10_000;
/// The MIME type the input file is declared with (the batch guide's REST example).
const JSONL_MIME: &str = "application/jsonl";

pub(super) const DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    id: ProviderId::Gemini,
    name: "gemini",
    adapter: &Gemini,
    openai_profile: None,
    // `…/models/{model}:generateContent` identifies it on any host.
    hosts: &[],
    default_base_url: Some("https://generativelanguage.googleapis.com/v1beta"),
    window_error: any_window,
    api_key_env: Some("GEMINI_API_KEY"),
    base_url_env: Some("GEMINI_BASE_URL"),
    jobs: Some(&GeminiJobs),
};

pub struct Gemini;

impl Gemini {
    fn inline_entry(item: &BatchItem) -> Value {
        json!({"request": item.body, "metadata": {"key": item.custom_id}})
    }

    /// One input file line, `{"key":…,"request":…}` (the batch guide's shape), no newline.
    fn write_file_line(w: impl std::io::Write, item: &BatchItem) {
        #[derive(serde::Serialize)]
        struct FileLine<'a> {
            key: &'a str,
            request: &'a Value,
        }
        let line = FileLine {
            key: &item.custom_id,
            request: &item.body,
        };
        serde_json::to_writer(w, &line).expect("a JSON value serializes into memory");
    }

    /// The input file: one line per item, each ending in a newline.
    fn input_jsonl(items: &[BatchItem]) -> String {
        let mut out = Vec::new();
        for item in items {
            Self::write_file_line(&mut out, item);
            out.push(b'\n');
        }
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    fn input_jsonl_len(items: &[BatchItem]) -> usize {
        let mut count = ByteCount(0);
        for item in items {
            Self::write_file_line(&mut count, item);
            count.0 += 1;
        }
        count.0
    }

    /// The inline create body around `requests`.
    fn inline_body(tag: &str, requests: Vec<Value>) -> Value {
        json!({"batch": {
            "displayName": tag,
            "inputConfig": {"requests": {"requests": requests}},
        }})
    }

    /// The largest inline create body this route's batches may send.
    fn inline_cap(settings: &HostSettings) -> usize {
        settings
            .max_inline_bytes
            .unwrap_or(GEMINI_MAX_INLINE_REQUEST_BYTES)
    }

    /// Whether the batch's inline create body would pass the inline cap: then it goes as a file.
    /// The body is exactly the envelope plus the entries and a comma between each two;
    /// [`ProviderAdapter::item_bytes`] counts a comma with every entry, one too many.
    fn goes_as_file(&self, ctx: &BatchContext, items: &[BatchItem]) -> bool {
        let envelope = Self::inline_body(ctx.tag, Vec::new()).to_string().len();
        let cap = Self::inline_cap(&ctx.route.settings);
        let mut size = envelope.saturating_sub(1);
        items.iter().any(|item| {
            size += self.item_bytes(ctx, item);
            size > cap
        })
    }

    /// Where the Files API's resumable upload starts: `upload/` before the API version, as
    /// `@google/genai` builds it (`{origin}/upload/v1beta/files` for the default base).
    fn upload_start_url(base_url: &str) -> String {
        let origin = common::origin(base_url);
        let path = &base_url[origin.len()..];
        match path.rfind('/') {
            Some(i) => format!("{origin}{}/upload{}/files", &path[..i], &path[i..]),
            None => format!("{base_url}/upload/files"),
        }
    }

    /// The upload session URL of a start answer.
    fn session_url(resp: &HttpResponse) -> Result<&str, ProtocolError> {
        resp.header("x-goog-upload-url")
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                ProtocolError::new("file upload: the start answer has no x-goog-upload-url")
            })
    }

    /// A result entry (inline or file line) → the synchronous answer.
    fn item_response(entry: &Value) -> Result<HttpResponse, String> {
        if let Some(resp) = entry.get("response").filter(|r| r.is_object()) {
            return Ok(HttpResponse::json(200, resp.to_string()));
        }
        let err = entry
            .get("error")
            .filter(|e| e.is_object())
            .ok_or("neither response nor error")?;
        let (status, name) = common::grpc_to_http(
            err.get("code").and_then(Value::as_i64),
            str_field(err, "/status"),
        );
        let mut body = json!({"error": {
            "code": status,
            "message": str_field(err, "/message").unwrap_or(""),
            "status": name,
        }});
        if let Some(details) = err.get("details").filter(|d| d.is_array()) {
            body["error"]["details"] = details.clone();
        }
        Ok(HttpResponse::json(status, body.to_string()))
    }

    fn parse_line(line: &Value) -> Result<ItemResult, String> {
        if !line.is_object() {
            return Err("line is not a JSON object".into());
        }
        let custom_id = str_field(line, "/key")
            .or_else(|| str_field(line, "/metadata/key"))
            .ok_or("no string key")?
            .to_string();
        Ok(ItemResult {
            custom_id,
            response: Self::item_response(line)?,
        })
    }

    /// Inline results, matched by `metadata.key`; an entry without a key takes the custom id at
    /// its position (Gemini keeps input order).
    fn parse_inline(entries: &[Value], custom_ids_in_order: &[String]) -> ParsedResults {
        let mut results = common::ResultsBuilder::default();
        for (i, entry) in entries.iter().enumerate() {
            let key = str_field(entry, "/metadata/key")
                .or_else(|| str_field(entry, "/key"))
                .or_else(|| custom_ids_in_order.get(i).map(String::as_str));
            let parsed = match key {
                _ if !entry.is_object() => Err("entry is not a JSON object".to_string()),
                None => Err("no key and no request at this position".to_string()),
                Some(key) => Self::item_response(entry).map(|response| ItemResult {
                    custom_id: key.to_string(),
                    response,
                }),
            };
            results.push(i + 1, parsed);
        }
        results.finish()
    }

    /// The batch's metadata: an Operation's `metadata`, or the object itself when a server
    /// returns the GenerateContentBatch unwrapped.
    fn metadata(v: &Value) -> &Value {
        v.get("metadata").filter(|m| m.is_object()).unwrap_or(v)
    }

    fn remote_batch(v: &Value) -> Option<RemoteBatch> {
        let meta = Self::metadata(v);
        let id = str_field(v, "/name").or_else(|| str_field(meta, "/name"))?;
        Some(RemoteBatch {
            id: id.to_string(),
            state_label: str_field(meta, "/state").unwrap_or("").to_string(),
        })
    }

    fn not_run(batch_id: &str, kind: EndKind, detail: &str) -> HttpResponse {
        let status_name = match kind {
            EndKind::Expired => "DEADLINE_EXCEEDED",
            EndKind::Cancelled => "CANCELLED",
            EndKind::Failed => "INTERNAL",
        };
        let body = json!({"error": {
            "code": kind.http_status(),
            "message": common::not_run_message(ProviderId::Gemini, batch_id, kind, detail),
            "status": status_name,
        }});
        json_response(
            kind.http_status(),
            &body,
            &common::not_run_headers(batch_id),
        )
    }
}

impl ProviderAdapter for Gemini {
    fn create_429_is_queue_limit(&self) -> bool {
        true
    }

    fn id(&self) -> ProviderId {
        ProviderId::Gemini
    }

    fn recognize(&self, req: &HttpRequest) -> Option<Result<Route, PassThrough>> {
        let (url, query) = common::split_query(&req.url);
        let at = url.rfind("/models/")?;
        if at < common::path_start(url) {
            return None;
        }
        let (model, method) = url[at + "/models/".len()..].split_once(':')?;
        if model.contains('/') || !matches!(method, "generateContent" | "streamGenerateContent") {
            return None;
        }
        let prefix = &url[..at];
        // Vertex AI (`.../projects/p/locations/l/publishers/google/models/m`) batches through a
        // different API.
        if prefix.contains("/projects/") || prefix.contains("/publishers/") {
            return Some(Err(PassThrough::UnknownUrl));
        }
        if !common::is_post(req) {
            return Some(Err(PassThrough::NotPost));
        }
        if method == "streamGenerateContent" {
            return Some(Err(PassThrough::Streaming));
        }
        if model.is_empty() {
            return Some(Err(PassThrough::NoModel));
        }
        Some(route(req, prefix, model, query))
    }

    /// A declared Gemini host brings its settings (`maxInlineBytes`, `maxFileBytes`,
    /// `maxRequests`); the URL is read as anywhere else.
    fn recognize_at(&self, req: &HttpRequest, host: &HostMatch) -> Result<Route, PassThrough> {
        let mut route = self
            .recognize(req)
            .unwrap_or(Err(PassThrough::UnknownUrl))?;
        route.settings = host.settings.clone();
        Ok(route)
    }

    /// Batches are split under the file limit: one whose inline body would pass the inline cap
    /// goes as a file ([`Gemini::goes_as_file`]).
    fn limits(&self, route: &Route) -> BatchLimits {
        BatchLimits {
            max_requests: route.settings.max_requests.unwrap_or(MAX_INLINE_REQUESTS),
            max_bytes: route
                .settings
                .max_file_bytes
                .unwrap_or(GEMINI_MAX_FILE_BYTES),
        }
    }

    /// The inline entry and its comma, which is never shorter than the file line and its
    /// newline: the sum bounds both flavours.
    fn item_bytes(&self, _ctx: &BatchContext, item: &BatchItem) -> usize {
        Self::inline_entry(item).to_string().len() + 1
    }

    /// Start a resumable upload, only for a batch too big to go inline. The file's display name
    /// is the batch's tag.
    fn build_upload(&self, ctx: &BatchContext, items: &[BatchItem]) -> Option<HttpRequest> {
        if !self.goes_as_file(ctx, items) {
            return None;
        }
        let mut req = json_request(
            "POST",
            Self::upload_start_url(&ctx.route.base_url),
            &ctx.route.forward_headers,
            Some(&json!({"file": {"displayName": ctx.tag}})),
        );
        req.headers.extend(
            [
                ("x-goog-upload-protocol", "resumable".to_string()),
                ("x-goog-upload-command", "start".to_string()),
                (
                    "x-goog-upload-header-content-length",
                    Self::input_jsonl_len(items).to_string(),
                ),
                ("x-goog-upload-header-content-type", JSONL_MIME.to_string()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        Some(req)
    }

    /// The start answer names only the session; the File comes with the finalize
    /// ([`ProviderAdapter::parse_upload_finish`]).
    fn parse_upload(&self, resp: &HttpResponse) -> Result<String, ProtocolError> {
        Self::session_url(resp).map(str::to_string)
    }

    /// All the bytes in one `upload, finalize` command at offset 0 (the REST guide's single-shot
    /// form), to the session URL on the caller's origin: like `@google/genai`, which moves the
    /// session URL onto its base URL, so a proxy or test server sees the whole flow and the key
    /// goes nowhere else.
    fn build_upload_finish(
        &self,
        ctx: &BatchContext,
        items: &[BatchItem],
        upload_answer: &HttpResponse,
    ) -> Option<HttpRequest> {
        let session = Self::session_url(upload_answer).ok()?;
        let rest = if session.starts_with('/') {
            session
        } else {
            &session[common::path_start(session)..]
        };
        let mut headers = ctx.route.forward_headers.clone();
        headers.extend(
            [
                ("x-goog-upload-command", "upload, finalize"),
                ("x-goog-upload-offset", "0"),
                ("content-type", JSONL_MIME),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        Some(HttpRequest {
            method: "POST".into(),
            url: format!("{}{rest}", common::origin(&ctx.route.base_url)),
            headers,
            body: Self::input_jsonl(items),
        })
    }

    /// The finalize answers `{file: File}` with `x-goog-upload-status: final`.
    fn parse_upload_finish(&self, resp: &HttpResponse) -> Result<Option<String>, ProtocolError> {
        if let Some(status) = resp.header("x-goog-upload-status") {
            if !status.trim().eq_ignore_ascii_case("final") {
                return Err(ProtocolError::new(format!(
                    "file upload: the upload is {status:?}, not final, after its last bytes"
                )));
            }
        }
        let v = ok_json(resp, "file upload")?;
        let name = str_field(&v, "/file/name")
            .or_else(|| str_field(&v, "/name"))
            .filter(|n| n.starts_with("files/") && n.len() > "files/".len())
            .ok_or_else(|| ProtocolError::new("file upload: the answer names no files/… file"))?;
        Ok(Some(name.to_string()))
    }

    /// Inline, or naming the uploaded file when the batch went as one.
    fn build_create(
        &self,
        ctx: &BatchContext,
        items: &[BatchItem],
        uploaded_file: Option<&str>,
    ) -> HttpRequest {
        let body = match uploaded_file {
            Some(file) => json!({"batch": {
                "displayName": ctx.tag,
                "inputConfig": {"fileName": file},
            }}),
            None => Self::inline_body(ctx.tag, items.iter().map(Self::inline_entry).collect()),
        };
        json_request(
            "POST",
            format!(
                "{}/models/{}:batchGenerateContent",
                ctx.route.base_url, ctx.route.model
            ),
            &ctx.route.forward_headers,
            Some(&body),
        )
    }

    fn parse_create(&self, resp: &HttpResponse) -> Result<RemoteBatch, ProtocolError> {
        let v = ok_json(resp, "batch create")?;
        Self::remote_batch(&v).ok_or_else(|| ProtocolError::new("batch create: answer has no name"))
    }

    /// Our tag is the batch's `displayName`; list the newest batches and match it.
    fn build_find(&self, ctx: &BatchContext) -> Option<HttpRequest> {
        Some(common::get(ctx, "/batches?pageSize=100"))
    }

    fn parse_find(
        &self,
        resp: &HttpResponse,
        tag: &str,
    ) -> Result<Option<RemoteBatch>, ProtocolError> {
        let v = ok_json(resp, "batch list")?;
        // An empty list comes back as `{}`.
        common::find_listed(
            v.get("operations").or_else(|| v.get("batches")),
            |op| str_field(Self::metadata(op), "/displayName") == Some(tag),
            Self::remote_batch,
        )
    }

    fn build_poll(&self, ctx: &BatchContext, batch_id: &str) -> HttpRequest {
        let name = if batch_id.starts_with("batches/") {
            batch_id.to_string()
        } else {
            format!("batches/{batch_id}")
        };
        common::get(ctx, &format!("/{name}"))
    }

    /// `POST {base}/batches/{id}:cancel` (no body).
    fn build_cancel(&self, ctx: &BatchContext, batch_id: &str) -> Option<HttpRequest> {
        let name = if batch_id.starts_with("batches/") {
            batch_id.to_string()
        } else {
            format!("batches/{batch_id}")
        };
        let mut req = common::get(ctx, &format!("/{name}:cancel"));
        req.method = "POST".into();
        Some(req)
    }

    fn parse_poll(
        &self,
        resp: &HttpResponse,
        custom_ids_in_order: &[String],
    ) -> Result<PollReport, ProtocolError> {
        let v = ok_json(resp, "batch poll")?;
        let meta = Self::metadata(&v);
        let label = str_field(meta, "/state").unwrap_or("");
        // The wire says BATCH_STATE_*; the SDK and docs say JOB_STATE_*.
        let state_name = label
            .strip_prefix("BATCH_STATE_")
            .or_else(|| label.strip_prefix("JOB_STATE_"))
            .unwrap_or(label);
        let done = v.get("done").and_then(Value::as_bool).unwrap_or(false);
        // The REST answer carries the output in `response`; the SDK reads `metadata.output`.
        let output = v
            .get("response")
            .filter(|o| o.is_object())
            .or_else(|| meta.get("output").filter(|o| o.is_object()));
        let completed = |partial: Option<EndKind>| -> Option<(PollState, Option<EndKind>)> {
            let output = output?;
            let inline = output
                .pointer("/inlinedResponses/inlinedResponses")
                .and_then(Value::as_array)
                .map(|entries| Self::parse_inline(entries, custom_ids_in_order));
            let downloads: Vec<String> = str_field(output, "/responsesFile")
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .into_iter()
                .collect();
            if inline.is_none() && downloads.is_empty() {
                return None;
            }
            Some((PollState::Completed { downloads, inline }, partial))
        };
        let error_message = str_field(&v, "/error/message").unwrap_or("").to_string();
        let ended = |kind: EndKind, message: String| (PollState::Ended { kind, message }, None);
        let (state, end_kind_if_partial) = match state_name {
            "SUCCEEDED" | "PARTIALLY_SUCCEEDED" => completed(None).unwrap_or_else(|| {
                ended(
                    EndKind::Failed,
                    "batch succeeded but the answer holds no output".into(),
                )
            }),
            "FAILED" => ended(EndKind::Failed, error_message),
            "CANCELLED" => completed(Some(EndKind::Cancelled))
                .unwrap_or_else(|| ended(EndKind::Cancelled, error_message)),
            "EXPIRED" => completed(Some(EndKind::Expired))
                .unwrap_or_else(|| ended(EndKind::Expired, error_message)),
            // No state but a finished Operation: go by its outcome.
            "" | "UNSPECIFIED" if done => match completed(None) {
                Some(c) => c,
                None => ended(EndKind::Failed, error_message),
            },
            "" | "UNSPECIFIED" | "PENDING" | "QUEUED" | "RUNNING" | "CANCELLING" | "PAUSED"
            | "UPDATING" => (PollState::Running, None),
            _ => {
                return Err(ProtocolError::new(format!(
                    "batch poll: unknown state {label:?}"
                )))
            }
        };
        Ok(PollReport {
            state_label: label.to_string(),
            total: common::count_field(meta, "/batchStats/requestCount"),
            completed: common::count_field(meta, "/batchStats/successfulRequestCount"),
            failed: common::count_field(meta, "/batchStats/failedRequestCount"),
            state,
            end_kind_if_partial,
        })
    }

    /// `file` is a responses file name ("files/…"), downloaded the way `@google/genai` does.
    fn build_download(&self, ctx: &BatchContext, file: &str) -> HttpRequest {
        let url = if file.contains("://") {
            file.to_string()
        } else {
            format!("{}/{file}:download?alt=media", ctx.route.base_url)
        };
        json_request("GET", url, &ctx.route.forward_headers, None)
    }

    /// `DELETE {base}/files/{id}` for an uploaded input or a responses file (`files/…`); a
    /// download URL is no file of the project's storage.
    fn build_delete_file(&self, ctx: &BatchContext, file: &str) -> Option<HttpRequest> {
        (file.starts_with("files/") && !file.contains("://")).then(|| {
            let url = format!("{}/{file}", ctx.route.base_url);
            json_request("DELETE", url, &ctx.route.forward_headers, None)
        })
    }

    fn parse_results(&self, _batch_id: &str, body: &str) -> ParsedResults {
        common::parse_jsonl(body, Self::parse_line)
    }

    /// A responses file is JSONL (inline results come with the poll).
    fn streams_results(&self) -> bool {
        true
    }

    fn ended_response(&self, batch_id: &str, kind: EndKind, message: &str) -> HttpResponse {
        Self::not_run(batch_id, kind, message)
    }

    fn dry_run_response(&self, route: &Route, custom_id: &str) -> HttpResponse {
        let body = json!({
            "candidates": [{
                "content": {"role": "model", "parts": [{"text": common::DRY_RUN_TEXT}]},
                "finishReason": "STOP",
                "index": 0,
            }],
            "usageMetadata": {"promptTokenCount": 0, "candidatesTokenCount": 0, "totalTokenCount": 0},
            "modelVersion": route.model,
            "responseId": format!("dryrun-{custom_id}"),
        });
        json_response(200, &body, &[(common::DRY_RUN_HEADER, "1")])
    }
}

fn route(
    req: &HttpRequest,
    prefix: &str,
    model: &str,
    query: Option<&str>,
) -> Result<Route, PassThrough> {
    let body: Map<String, Value> = common::strip_streaming(common::json_object_body(req)?)?;
    let base_url = prefix.trim_end_matches('/').to_string();
    let mut forward_headers = common::forward_headers(&req.headers);
    // A `?key=` credential is carried as the equivalent header on every batch call (and so is
    // part of the fingerprint).
    if let Some(key) = query.and_then(|q| common::query_param(q, "key")) {
        if !forward_headers.iter().any(|(k, _)| k == "x-goog-api-key") {
            forward_headers.push(("x-goog-api-key".into(), key.to_string()));
            forward_headers.sort_by(|a, b| a.0.cmp(&b.0));
        }
    }
    Ok(Route {
        provider: ProviderId::Gemini,
        endpoint: ENDPOINT.to_string(),
        model: model.to_string(),
        credential_fingerprint: common::fingerprint(
            ProviderId::Gemini,
            &base_url,
            &forward_headers,
        ),
        base_url,
        forward_headers,
        body: Value::Object(body),
        settings: Default::default(),
    })
}

/// Jobs as `generateContent` requests.
struct GeminiJobs;

impl JobFormat for GeminiJobs {
    fn image_types(&self) -> &'static [&'static str] {
        &[
            "image/png",
            "image/jpeg",
            "image/webp",
            "image/heic",
            "image/heif",
        ]
    }

    fn model_name<'a>(&self, model: &'a str) -> &'a str {
        model.strip_prefix("models/").unwrap_or(model)
    }

    fn wire_schema(&self, schema: &Value) -> Result<Value, String> {
        Ok(schema.clone())
    }

    /// One `generateContent` request stays under 20 MB with its inline data (Gemini's
    /// image/document understanding guides: larger inputs go through the Files API, which jobs
    /// do not use), in a batch file as in a sync call.
    fn max_request_bytes(&self) -> Option<usize> {
        Some(GEMINI_MAX_INLINE_REQUEST_BYTES)
    }

    fn schema_fields(&self) -> &'static [&'static str] {
        &[
            "/generationConfig/responseMimeType",
            "/generationConfig/responseJsonSchema",
            "/generationConfig/responseSchema",
        ]
    }

    fn body(&self, p: &Prepared, placeholder: bool) -> Value {
        job_body(p, placeholder)
    }

    fn target(
        &self,
        base_url: &str,
        model: &str,
        api_key: &str,
    ) -> (String, Vec<(String, String)>) {
        let mut headers = Vec::new();
        if !api_key.is_empty() {
            headers.push(("x-goog-api-key".into(), api_key.to_string()));
        }
        (
            format!("{base_url}/models/{model}:generateContent"),
            headers,
        )
    }

    fn output(&self, answer: &Value) -> Output {
        job_output(answer)
    }
}

fn job_body(p: &Prepared, placeholder: bool) -> Value {
    let contents: Vec<Value> = p
        .turns
        .iter()
        .map(|turn| {
            let parts: Vec<Value> = turn
                .parts
                .iter()
                .map(|part| match part {
                    Part::Text(t) => json!({"text": t}),
                    Part::Pdf { data: d, .. } => json!({
                        "inlineData": {"mimeType": "application/pdf", "data": file_data(d, placeholder)},
                    }),
                    Part::Image {
                        media_type,
                        data: d,
                    } => json!({
                        "inlineData": {"mimeType": media_type, "data": file_data(d, placeholder)},
                    }),
                })
                .collect();
            json!({"role": if turn.assistant { "model" } else { "user" }, "parts": parts})
        })
        .collect();
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    if let Some(system) = &p.system {
        body.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system}]}),
        );
    }
    let mut config = Map::new();
    if let Some(t) = p.job.temperature {
        config.insert("temperature".into(), json!(t));
    }
    if let Some(n) = p.max_tokens {
        config.insert("maxOutputTokens".into(), json!(n));
    }
    if let Some(schema) = &p.schema {
        config.insert("responseMimeType".into(), json!("application/json"));
        config.insert("responseJsonSchema".into(), schema.clone());
    }
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    Value::Object(body)
}

/// Gemini finish reasons that mean the answer was withheld.
const BLOCKED: &[&str] = &[
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
];

fn job_output(v: &Value) -> Output {
    let prompt = u64_at(v, "/usageMetadata/promptTokenCount");
    let candidates = u64_at(v, "/usageMetadata/candidatesTokenCount");
    let thoughts = u64_at(v, "/usageMetadata/thoughtsTokenCount");
    let mut out = Output {
        input_tokens: prompt,
        output_tokens: match (candidates, thoughts) {
            (None, None) => None,
            (c, t) => Some(c.unwrap_or(0) + t.unwrap_or(0)),
        },
        // Part of promptTokenCount.
        cache_read_tokens: u64_at(v, "/usageMetadata/cachedContentTokenCount").unwrap_or(0),
        ..Output::default()
    };
    let Some(candidate) = v.pointer("/candidates/0") else {
        out.problem = Some(
            match v
                .pointer("/promptFeedback/blockReason")
                .and_then(Value::as_str)
            {
                Some(reason) => format!("Gemini blocked the prompt ({reason})"),
                None => "the response has no candidates".to_string(),
            },
        );
        return out;
    };
    out.finish_reason = candidate
        .get("finishReason")
        .and_then(Value::as_str)
        .map(str::to_string);
    out.truncated = out.finish_reason.as_deref() == Some("MAX_TOKENS");
    let mut text = String::new();
    let mut any_text = false;
    for part in candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if part.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(t) = part.get("text").and_then(Value::as_str) {
            any_text = true;
            text.push_str(t);
        }
    }
    out.text = any_text.then_some(text);
    if let Some(reason) = out.finish_reason.as_deref().filter(|r| BLOCKED.contains(r)) {
        out.problem = Some(format!("Gemini withheld the answer ({reason})"));
    }
    out
}

#[cfg(test)]
mod tests;
