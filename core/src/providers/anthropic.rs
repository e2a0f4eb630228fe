//! Anthropic Message Batches: inline `POST {base}/v1/messages/batches` with
//! `{requests:[{custom_id, params}]}`; results are JSONL at the batch's `results_url`.
//! Wire formats: providers.md §3.
//!
//! Jobs ([`crate::jobs`]) become Messages requests: `max_tokens` always set, PDFs as `document`
//! blocks (titled, with citations when the model gives them), structured output as a forced tool
//! named `response`.

use serde_json::{json, Map, Value};

use super::common::{self, json_request, json_response, ok_json, str_field};
use super::hosts::any_window;
use super::{
    BatchContext, BatchItem, BatchLimits, EndKind, ItemResult, ParsedResults, PassThrough,
    PollReport, PollState, ProtocolError, ProviderAdapter, ProviderDescriptor, ProviderId,
    RemoteBatch, Route,
};
use crate::catalog::models::ModelInfo;
use crate::http::{HttpRequest, HttpResponse};
use crate::job_format::{
    file_data, u64_at, Citation, JobFormat, Output, Part, Prepared, RESPONSE_SCHEMA_NAME,
};

const MESSAGES_PATH: &str = "/v1/messages";
const BATCHES_PATH: &str = "/v1/messages/batches";

/// Documented limits: 100,000 requests and 256 MB per batch. MB read as 10^6 bytes; 64 KiB kept
/// for the `{"requests":[...]}` wrapper.
const MAX_REQUESTS: usize = 100_000;
const MAX_BATCH_BYTES: usize = 256_000_000;
const ENVELOPE_HEADROOM_BYTES: usize = 64 * 1024;

/// The `anthropic-version` header value sent with Anthropic requests.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Anthropic `max_tokens` when a job sets none (the value in Anthropic's own examples; about
/// 750 English words).
pub const DEFAULT_ANTHROPIC_MAX_TOKENS: u64 = 1_024;
/// Anthropic `max_tokens` when a job sets none and the model thinks by default: thinking tokens
/// count towards the cap, so 1,024 would often leave nothing for the answer.
pub const DEFAULT_ANTHROPIC_MAX_TOKENS_THINKING: u64 = 8_192;

/// Anthropic's documented size limit of one Messages request.
pub const ANTHROPIC_MAX_REQUEST_BYTES: usize = 32_000_000;

pub(super) const DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    id: ProviderId::Anthropic,
    name: "anthropic",
    adapter: &Anthropic,
    openai_profile: None,
    // `/v1/messages` with Anthropic's headers identifies it on any host.
    hosts: &[],
    default_base_url: Some("https://api.anthropic.com"),
    window_error: any_window,
    api_key_env: Some("ANTHROPIC_API_KEY"),
    base_url_env: Some("ANTHROPIC_BASE_URL"),
    jobs: Some(&AnthropicJobs),
};

pub struct Anthropic;

/// HTTP status the synchronous API returns for each `error.type` (providers.md §3.4).
fn status_for_error_type(t: &str) -> u16 {
    match t {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        // "api_error" and anything new.
        _ => 500,
    }
}

impl Anthropic {
    fn request_entry(item: &BatchItem) -> Value {
        json!({"custom_id": item.custom_id, "params": item.body})
    }

    /// The sync error envelope for a request that did not run.
    fn not_run(batch_id: &str, kind: EndKind, detail: &str) -> HttpResponse {
        // timeout_error is Anthropic's own name for a 504; there is no "cancelled" type.
        let error_type = match kind {
            EndKind::Expired => "timeout_error",
            EndKind::Cancelled | EndKind::Failed => "api_error",
        };
        let body = json!({
            "type": "error",
            "error": {
                "type": error_type,
                "message": common::not_run_message(ProviderId::Anthropic, batch_id, kind, detail),
            },
        });
        json_response(
            kind.http_status(),
            &body,
            &common::not_run_headers(batch_id),
        )
    }

    fn parse_line(batch_id: &str, line: &Value) -> Result<ItemResult, String> {
        let obj = line.as_object().ok_or("line is not a JSON object")?;
        let custom_id = common::id_field(obj, "custom_id")?;
        let result = obj.get("result").ok_or("no result")?;
        let response = match str_field(result, "/type") {
            Some("succeeded") => {
                let message = result
                    .get("message")
                    .filter(|m| m.is_object())
                    .ok_or("succeeded without message")?;
                HttpResponse::json(200, message.to_string())
            }
            Some("errored") => {
                let envelope = result
                    .get("error")
                    .filter(|e| e.is_object())
                    .ok_or("errored without error")?;
                let error_type =
                    str_field(envelope, "/error/type").ok_or("errored without error.error.type")?;
                let mut r =
                    HttpResponse::json(status_for_error_type(error_type), envelope.to_string());
                if let Some(id) = str_field(envelope, "/request_id") {
                    r.headers.push(("request-id".into(), id.into()));
                }
                r
            }
            Some("canceled") => Self::not_run(batch_id, EndKind::Cancelled, ""),
            Some("expired") => Self::not_run(batch_id, EndKind::Expired, ""),
            Some(other) => return Err(format!("unknown result type {other:?}")),
            None => return Err("result has no type".into()),
        };
        Ok(ItemResult {
            custom_id,
            response,
        })
    }

    fn remote_batch(v: &Value) -> Option<RemoteBatch> {
        Some(RemoteBatch {
            id: str_field(v, "/id")?.to_string(),
            state_label: str_field(v, "/processing_status").unwrap_or("").to_string(),
        })
    }
}

impl ProviderAdapter for Anthropic {
    fn create_429_is_queue_limit(&self) -> bool {
        true
    }

    fn id(&self) -> ProviderId {
        ProviderId::Anthropic
    }

    fn recognize(&self, req: &HttpRequest) -> Option<Result<Route, PassThrough>> {
        // The SDK adds `?beta=true` for client.beta.messages; the beta itself rides in the
        // anthropic-beta header, which we forward, so the query is dropped.
        let (url, _query) = common::split_query(&req.url);
        let base = common::strip_path_suffix(url, MESSAGES_PATH)?;
        // `/v1/messages` alone is not distinctive; require Anthropic's signature.
        if req.header("anthropic-version").is_none() && req.header("x-api-key").is_none() {
            return None;
        }
        if !common::is_post(req) {
            return Some(Err(PassThrough::NotPost));
        }
        Some(route(req, base))
    }

    fn limits(&self, _route: &Route) -> BatchLimits {
        BatchLimits {
            max_requests: MAX_REQUESTS,
            max_bytes: MAX_BATCH_BYTES - ENVELOPE_HEADROOM_BYTES,
        }
    }

    fn item_bytes(&self, _ctx: &BatchContext, item: &BatchItem) -> usize {
        // +1 for the separating comma.
        Self::request_entry(item).to_string().len() + 1
    }

    fn build_create(
        &self,
        ctx: &BatchContext,
        items: &[BatchItem],
        _uploaded_file: Option<&str>,
    ) -> HttpRequest {
        let requests: Vec<Value> = items.iter().map(Self::request_entry).collect();
        common::post(ctx, BATCHES_PATH, &json!({"requests": requests}))
    }

    fn parse_create(&self, resp: &HttpResponse) -> Result<RemoteBatch, ProtocolError> {
        let v = ok_json(resp, "batch create")?;
        Self::remote_batch(&v).ok_or_else(|| ProtocolError::new("batch create: answer has no id"))
    }

    /// Anthropic offers nowhere to put a tag: a MessageBatch has no metadata or name, the create
    /// call takes no idempotency key, and the per-request custom_ids are only visible in the
    /// results, after the batch has ended. A listing could only be matched on request count and
    /// creation time, which can claim another client's batch on the same key; its results would
    /// then silently be missing for our callers. We prefer no answer to a wrong one: `None`
    /// tells the batcher an ambiguous create cannot be resolved for this provider.
    fn build_find(&self, _ctx: &BatchContext) -> Option<HttpRequest> {
        None
    }

    fn parse_find(
        &self,
        _resp: &HttpResponse,
        _tag: &str,
    ) -> Result<Option<RemoteBatch>, ProtocolError> {
        Ok(None)
    }

    fn build_poll(&self, ctx: &BatchContext, batch_id: &str) -> HttpRequest {
        common::get(ctx, &format!("{BATCHES_PATH}/{batch_id}"))
    }

    /// `POST /v1/messages/batches/{id}/cancel` (no body).
    fn build_cancel(&self, ctx: &BatchContext, batch_id: &str) -> Option<HttpRequest> {
        let mut req = common::get(ctx, &format!("{BATCHES_PATH}/{batch_id}/cancel"));
        req.method = "POST".into();
        Some(req)
    }

    fn parse_poll(
        &self,
        resp: &HttpResponse,
        _custom_ids_in_order: &[String],
    ) -> Result<PollReport, ProtocolError> {
        let v = ok_json(resp, "batch poll")?;
        let status = str_field(&v, "/processing_status")
            .ok_or_else(|| ProtocolError::new("batch poll: answer has no processing_status"))?;
        let count = |k: &str| common::count_field(&v, &format!("/request_counts/{k}"));
        let (succeeded, errored, canceled, expired) = (
            count("succeeded"),
            count("errored"),
            count("canceled"),
            count("expired"),
        );
        let (state, end_kind_if_partial) = match status {
            "in_progress" | "canceling" => (PollState::Running, None),
            "ended" => {
                let cancelled = v.get("cancel_initiated_at").is_some_and(|t| !t.is_null());
                let partial = cancelled.then_some(EndKind::Cancelled);
                match str_field(&v, "/results_url") {
                    Some(url) if !url.is_empty() => (
                        PollState::Completed {
                            downloads: vec![url.to_string()],
                            inline: None,
                        },
                        partial,
                    ),
                    // Results are deleted 29 days after creation (archived_at is then set).
                    _ => {
                        let message = if v.get("archived_at").is_some_and(|t| !t.is_null()) {
                            "batch results were archived and are no longer available"
                        } else {
                            "batch ended without a results_url"
                        };
                        (
                            PollState::Ended {
                                kind: EndKind::Failed,
                                message: message.into(),
                            },
                            None,
                        )
                    }
                }
            }
            other => {
                return Err(ProtocolError::new(format!(
                    "batch poll: unknown processing_status {other:?}"
                )))
            }
        };
        Ok(PollReport {
            state_label: status.to_string(),
            total: count("processing") + succeeded + errored + canceled + expired,
            completed: succeeded,
            failed: errored + canceled + expired,
            state,
            end_kind_if_partial,
        })
    }

    /// `results_url` is absolute. The SDK GETs it as is, with the same auth headers. We do too
    /// when it is on the route's origin. When it points elsewhere (the caller went through a
    /// proxy that passes batch objects through unchanged) we rebase its path onto the route's
    /// base URL, so credentials go only where the caller sent them and traffic keeps using the
    /// proxy.
    fn build_download(&self, ctx: &BatchContext, results_url: &str) -> HttpRequest {
        let base = &ctx.route.base_url;
        let url = if !results_url.contains("://") {
            format!("{}{}", common::origin(base), results_url)
        } else if common::origin(results_url) == common::origin(base) {
            results_url.to_string()
        } else {
            match results_url.find(BATCHES_PATH) {
                Some(i) => format!("{base}{}", &results_url[i..]),
                None => results_url.to_string(),
            }
        };
        json_request("GET", url, &ctx.route.forward_headers, None)
    }

    fn parse_results(&self, batch_id: &str, body: &str) -> ParsedResults {
        common::parse_jsonl(body, |line| Self::parse_line(batch_id, line))
    }

    /// The results file is JSONL.
    fn streams_results(&self) -> bool {
        true
    }

    fn ended_response(&self, batch_id: &str, kind: EndKind, message: &str) -> HttpResponse {
        Self::not_run(batch_id, kind, message)
    }

    fn dry_run_response(&self, route: &Route, custom_id: &str) -> HttpResponse {
        let body = json!({
            "id": format!("msg_dryrun_{custom_id}"),
            "type": "message",
            "role": "assistant",
            "model": route.model,
            "content": [{"type": "text", "text": common::DRY_RUN_TEXT}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        });
        json_response(200, &body, &[(common::DRY_RUN_HEADER, "1")])
    }
}

fn route(req: &HttpRequest, base: &str) -> Result<Route, PassThrough> {
    let body: Map<String, Value> = common::strip_streaming(common::json_object_body(req)?)?;
    let model = match body.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => return Err(PassThrough::NoModel),
    };
    let base_url = base.trim_end_matches('/').to_string();
    let forward_headers = common::forward_headers(&req.headers);
    Ok(Route {
        provider: ProviderId::Anthropic,
        endpoint: MESSAGES_PATH.to_string(),
        model,
        credential_fingerprint: common::fingerprint(
            ProviderId::Anthropic,
            &base_url,
            &forward_headers,
        ),
        base_url,
        forward_headers,
        body: Value::Object(body),
        settings: Default::default(),
    })
}

/// Jobs as Messages requests.
struct AnthropicJobs;

impl JobFormat for AnthropicJobs {
    fn takes_content_blocks(&self) -> bool {
        true
    }

    fn image_types(&self) -> &'static [&'static str] {
        &["image/png", "image/jpeg", "image/gif", "image/webp"]
    }

    fn max_temperature(&self) -> f64 {
        1.0
    }

    fn default_max_tokens(&self, info: &ModelInfo) -> Option<u64> {
        let default = if info.thinks_by_default {
            DEFAULT_ANTHROPIC_MAX_TOKENS_THINKING
        } else {
            DEFAULT_ANTHROPIC_MAX_TOKENS
        };
        Some(default.min(info.max_output_tokens))
    }

    fn wire_schema(&self, schema: &Value) -> Result<Value, String> {
        if schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(
                "must have `\"type\": \"object\"` at the root for Anthropic structured output (it \
                 becomes a tool's input schema)"
                    .to_string(),
            );
        }
        Ok(schema.clone())
    }

    fn schema_fields(&self) -> &'static [&'static str] {
        &["/tools", "/tool_choice"]
    }

    fn schema_extra_conflict(&self, extra: &Value) -> Option<String> {
        let thinking = extra.pointer("/thinking/type").and_then(Value::as_str);
        thinking.is_some_and(|t| t != "disabled").then(|| {
            "`extra.thinking` cannot be combined with `responseSchema` on Anthropic \
             (structured output forces a tool call, which thinking does not allow); remove \
             one of them"
                .to_string()
        })
    }

    fn body(&self, p: &Prepared, placeholder: bool) -> Value {
        job_body(p, placeholder)
    }

    fn target(
        &self,
        base_url: &str,
        _model: &str,
        api_key: &str,
    ) -> (String, Vec<(String, String)>) {
        let mut headers = Vec::new();
        if !api_key.is_empty() {
            headers.push(("x-api-key".into(), api_key.to_string()));
        }
        headers.push(("anthropic-version".into(), ANTHROPIC_VERSION.into()));
        (format!("{base_url}/v1/messages"), headers)
    }

    fn max_request_bytes(&self) -> Option<usize> {
        Some(ANTHROPIC_MAX_REQUEST_BYTES)
    }

    fn output(&self, answer: &Value) -> Output {
        job_output(answer)
    }
}

fn job_body(p: &Prepared, placeholder: bool) -> Value {
    let structured = p.schema.is_some();
    // A forced tool answer has no place for citations, and thinking does not allow forcing it.
    let citations = p.info.supports_citations && !structured;
    let disable_thinking = structured && p.info.thinks_by_default;
    let messages: Vec<Value> = p
        .turns
        .iter()
        .map(|turn| {
            let role = if turn.assistant { "assistant" } else { "user" };
            let content = match turn.parts.as_slice() {
                // Content blocks as the job gave them (`cache_control` and all).
                _ if turn.blocks.is_some() => {
                    Value::Array(turn.blocks.unwrap_or_default().to_vec())
                }
                [Part::Text(t)] => json!(t),
                parts => Value::Array(
                    parts
                        .iter()
                        .map(|part| match part {
                            Part::Text(t) => json!({"type": "text", "text": t}),
                            Part::Pdf { name, data: d } => {
                                let mut doc = json!({
                                    "type": "document",
                                    "source": {
                                        "type": "base64",
                                        "media_type": "application/pdf",
                                        "data": file_data(d, placeholder),
                                    },
                                    "title": name,
                                });
                                if citations {
                                    doc["citations"] = json!({"enabled": true});
                                }
                                doc
                            }
                            Part::Image {
                                media_type,
                                data: d,
                            } => json!({
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": media_type,
                                    "data": file_data(d, placeholder),
                                },
                            }),
                        })
                        .collect(),
                ),
            };
            json!({"role": role, "content": content})
        })
        .collect();
    let mut body = Map::new();
    body.insert("model".into(), json!(p.model));
    body.insert(
        "max_tokens".into(),
        json!(p.max_tokens.unwrap_or(DEFAULT_ANTHROPIC_MAX_TOKENS)),
    );
    if let Some(blocks) = &p.system_blocks {
        body.insert("system".into(), Value::Array(blocks.clone()));
    } else if let Some(system) = &p.system {
        body.insert("system".into(), json!(system));
    }
    body.insert("messages".into(), Value::Array(messages));
    if let Some(t) = p.job.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(schema) = &p.schema {
        body.insert(
            "tools".into(),
            json!([{
                "name": RESPONSE_SCHEMA_NAME,
                "description": "Record the answer. Call this tool exactly once with the complete answer.",
                "input_schema": schema,
            }]),
        );
        body.insert(
            "tool_choice".into(),
            json!({"type": "tool", "name": RESPONSE_SCHEMA_NAME}),
        );
        if disable_thinking {
            body.insert("thinking".into(), json!({"type": "disabled"}));
        }
    }
    Value::Object(body)
}

fn job_output(v: &Value) -> Output {
    let usage = |k: &str| u64_at(v, &format!("/usage/{k}"));
    let written = usage("cache_creation_input_tokens").unwrap_or(0);
    let read = usage("cache_read_input_tokens").unwrap_or(0);
    // The 1-hour share of the writes, when the answer breaks them down.
    let hour = usage("cache_creation/ephemeral_1h_input_tokens")
        .unwrap_or(0)
        .min(written);
    let input = usage("input_tokens").map(|n| n + written + read);
    let mut out = Output {
        input_tokens: input,
        output_tokens: usage("output_tokens"),
        cache_read_tokens: read,
        cache_write_5m_tokens: written - hour,
        cache_write_1h_tokens: hour,
        finish_reason: v
            .get("stop_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        ..Output::default()
    };
    out.truncated = out.finish_reason.as_deref() == Some("max_tokens");
    let mut text = String::new();
    let mut any_text = false;
    for block in v
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                any_text = true;
                text.push_str(
                    block
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                );
                for c in block
                    .get("citations")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    out.citations.push(citation(c));
                }
            }
            Some("tool_use")
                if block.get("name").and_then(Value::as_str) == Some(RESPONSE_SCHEMA_NAME) =>
            {
                out.structured = block.get("input").cloned();
            }
            _ => {}
        }
    }
    out.text = match &out.structured {
        Some(input) => Some(input.to_string()),
        None => any_text.then_some(text),
    };
    if out.finish_reason.as_deref() == Some("refusal") {
        out.problem = Some("the model declined to answer (stop_reason: refusal)".to_string());
    }
    out
}

fn citation(c: &Value) -> Citation {
    let source = match c.get("document_title").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => match c.get("document_index").and_then(Value::as_u64) {
            Some(i) => format!("document {i}"),
            None => "document".to_string(),
        },
    };
    let start = c.get("start_page_number").and_then(Value::as_u64);
    // The API's end page is exclusive.
    let end = c
        .get("end_page_number")
        .and_then(Value::as_u64)
        .map(|e| e.saturating_sub(1).max(start.unwrap_or(0)));
    Citation {
        cited_text: c
            .get("cited_text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        source,
        start_page: start,
        end_page: end.filter(|_| start.is_some()),
    }
}

#[cfg(test)]
mod tests;
