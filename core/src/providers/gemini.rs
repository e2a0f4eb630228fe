//! Gemini API (generativelanguage) Batch Mode, inline flavour: `POST
//! {prefix}/models/{model}:batchGenerateContent` with the requests in the body; the batch is a
//! long-running Operation whose inlined responses come back in the poll answer.
//! Wire formats: providers.md §4.
//!
//! Why inline and not a JSONL file: inline needs one request instead of a two-step resumable
//! upload, and keeps everything on the caller's base URL. The price is the 20 MB cap per create
//! request, which the batcher respects through [`ProviderAdapter::limits`] by splitting into
//! several batches. Results that arrive as a `responsesFile` anyway (e.g. a batch created by
//! another tool and found by tag) are still handled: the poll reports the file as a download and
//! [`ProviderAdapter::parse_results`] reads its `{key, response|error}` lines.
//!
//! Jobs ([`crate::jobs`]) become `generateContent` requests: a `systemInstruction`, files as
//! `inlineData`, structured output as `responseMimeType: application/json` + `responseJsonSchema`.

use serde_json::{json, Map, Value};

use super::common::{self, json_request, json_response, ok_json, str_field};
use super::hosts::any_window;
use super::{
    BatchContext, BatchItem, BatchLimits, EndKind, ItemResult, ParsedResults, PassThrough,
    PollReport, PollState, ProtocolError, ProviderAdapter, ProviderDescriptor, ProviderId,
    RemoteBatch, Route,
};
use crate::http::{HttpRequest, HttpResponse};
use crate::jobs::{file_data, u64_at, JobFormat, Output, Part, Prepared};

const ENDPOINT: &str = "generateContent";

/// Documented: an inline create request must stay under 20 MB. 64 KiB are kept for the
/// `{"batch":{...}}` envelope.
const MAX_INLINE_REQUEST_BYTES: usize = 20_000_000;
const ENVELOPE_HEADROOM_BYTES: usize = 64 * 1024;
/// Not a Gemini limit: inline results come back inside every poll answer after completion, so we
/// cap the count to keep that answer to tens of MB.
const MAX_INLINE_REQUESTS: usize = 10_000;

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

    fn limits(&self, _route: &Route) -> BatchLimits {
        BatchLimits {
            max_requests: MAX_INLINE_REQUESTS,
            max_bytes: MAX_INLINE_REQUEST_BYTES - ENVELOPE_HEADROOM_BYTES,
        }
    }

    fn item_bytes(&self, _ctx: &BatchContext, item: &BatchItem) -> usize {
        Self::inline_entry(item).to_string().len() + 1
    }

    fn build_create(
        &self,
        ctx: &BatchContext,
        items: &[BatchItem],
        _uploaded_file: Option<&str>,
    ) -> HttpRequest {
        let requests: Vec<Value> = items.iter().map(Self::inline_entry).collect();
        let body = json!({"batch": {
            "displayName": ctx.tag,
            "inputConfig": {"requests": {"requests": requests}},
        }});
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

    fn parse_results(&self, _batch_id: &str, body: &str) -> ParsedResults {
        common::parse_jsonl(body, Self::parse_line)
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
mod tests {
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
        assert!(inline.items[0].response.body.starts_with(
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Rayleigh"#
        ));
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
        let stateless_done = poll_state(
            r#"{"name":"batches/1","done":true,"response":{"responsesFile":"files/f"}}"#,
        );
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
}
