//! Rendering: a prepared job becomes the body and request its provider's SDK would send.

use serde_json::{json, Map, Value};

use crate::http::HttpRequest;
use crate::providers::{self, BatchContext, BatchItem, ProviderId};

use super::plan::{data, Part, Prepared};
use super::{
    default_base_url, JobError, ProviderEndpoint, ANTHROPIC_MAX_REQUEST_BYTES, ANTHROPIC_VERSION,
    DEFAULT_ANTHROPIC_MAX_TOKENS, RESPONSE_SCHEMA_NAME,
};

pub(super) fn build_body(p: &Prepared, placeholder_data: bool) -> Value {
    let mut body = match p.info.provider {
        ProviderId::Anthropic => anthropic_body(p, placeholder_data),
        ProviderId::Gemini => gemini_body(p, placeholder_data),
        _ => openai_body(p, placeholder_data),
    };
    if let Some(extra) = &p.job.extra {
        deep_merge(&mut body, extra);
    }
    body
}

pub(super) fn deep_merge(target: &mut Value, extra: &Map<String, Value>) {
    let Value::Object(target) = target else {
        return;
    };
    for (k, v) in extra {
        match (target.get_mut(k), v) {
            (Some(existing @ Value::Object(_)), Value::Object(more)) => deep_merge(existing, more),
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

pub(super) fn openai_body(p: &Prepared, placeholder: bool) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = &p.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    for turn in &p.turns {
        let role = if turn.assistant { "assistant" } else { "user" };
        let content = match turn.parts.as_slice() {
            [Part::Text(t)] => json!(t),
            parts => Value::Array(
                parts
                    .iter()
                    .map(|part| match part {
                        Part::Text(t) => json!({"type": "text", "text": t}),
                        Part::Pdf { name, data: d } => json!({
                            "type": "file",
                            "file": {
                                "filename": name,
                                "file_data": format!("data:application/pdf;base64,{}", data(d, placeholder)),
                            },
                        }),
                        Part::Image { media_type, data: d } => json!({
                            "type": "image_url",
                            "image_url": {"url": format!("data:{media_type};base64,{}", data(d, placeholder))},
                        }),
                    })
                    .collect(),
            ),
        };
        messages.push(json!({"role": role, "content": content}));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(p.model));
    body.insert("messages".into(), Value::Array(messages));
    if let Some(t) = p.job.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(n) = p.max_tokens {
        body.insert("max_completion_tokens".into(), json!(n));
    }
    if let Some(schema) = &p.schema {
        body.insert(
            "response_format".into(),
            json!({
                "type": "json_schema",
                "json_schema": {"name": RESPONSE_SCHEMA_NAME, "schema": schema, "strict": true},
            }),
        );
    }
    Value::Object(body)
}

pub(super) fn anthropic_body(p: &Prepared, placeholder: bool) -> Value {
    let messages: Vec<Value> = p
        .turns
        .iter()
        .map(|turn| {
            let role = if turn.assistant { "assistant" } else { "user" };
            let content = match turn.parts.as_slice() {
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
                                        "data": data(d, placeholder),
                                    },
                                    "title": name,
                                });
                                if p.citations {
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
                                    "data": data(d, placeholder),
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
    if let Some(system) = &p.system {
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
        if p.disable_thinking {
            body.insert("thinking".into(), json!({"type": "disabled"}));
        }
    }
    Value::Object(body)
}

pub(super) fn gemini_body(p: &Prepared, placeholder: bool) -> Value {
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
                        "inlineData": {"mimeType": "application/pdf", "data": data(d, placeholder)},
                    }),
                    Part::Image {
                        media_type,
                        data: d,
                    } => json!({
                        "inlineData": {"mimeType": media_type, "data": data(d, placeholder)},
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

/// Renders the request and checks it is one the batch engine will batch, and fits a batch.
pub(super) fn finish_request(
    p: &Prepared,
    endpoint: &ProviderEndpoint,
) -> Result<HttpRequest, JobError> {
    let provider = p.info.provider;
    let base = if endpoint.base_url.trim().is_empty() {
        default_base_url(provider)
    } else {
        endpoint.base_url.trim().trim_end_matches('/')
    };
    let key = endpoint.api_key.as_str();
    let mut headers: Vec<(String, String)> = Vec::new();
    let url = match provider {
        ProviderId::Anthropic => {
            if !key.is_empty() {
                headers.push(("x-api-key".into(), key.to_string()));
            }
            headers.push(("anthropic-version".into(), ANTHROPIC_VERSION.into()));
            format!("{base}/v1/messages")
        }
        ProviderId::Gemini => {
            if !key.is_empty() {
                headers.push(("x-goog-api-key".into(), key.to_string()));
            }
            format!("{base}/models/{}:generateContent", p.model)
        }
        _ => {
            if !key.is_empty() {
                headers.push(("authorization".into(), format!("Bearer {key}")));
            }
            format!("{base}/chat/completions")
        }
    };
    headers.push(("content-type".into(), "application/json".into()));
    for (k, v) in &endpoint.headers {
        if !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)) {
            headers.push((k.clone(), v.clone()));
        }
    }
    let req = HttpRequest {
        method: "POST".into(),
        url,
        headers,
        body: build_body(p, false).to_string(),
    };

    let id = || p.job.id.clone();
    let mut route = providers::classify(&req).map_err(|why| JobError::NotBatchable {
        id: id(),
        reason: format!("POST {} passes through: {why}", req.url),
    })?;
    if route.provider != provider {
        return Err(JobError::NotBatchable {
            id: id(),
            reason: format!(
                "POST {} is recognised as {}, not {provider}",
                req.url, route.provider
            ),
        });
    }
    let adapter = providers::adapter(provider);
    let mut limit = adapter.limits(&route).max_bytes;
    if provider == ProviderId::Anthropic {
        limit = limit.min(ANTHROPIC_MAX_REQUEST_BYTES);
    }
    // The item owns the body; the adapters size an item from it, not from the route's copy.
    let item = BatchItem {
        custom_id: p.job.id.clone(),
        body: std::mem::take(&mut route.body),
    };
    let ctx = BatchContext {
        route: &route,
        tag: "batchling-size-check",
    };
    let bytes = adapter.item_bytes(&ctx, &item).max(req.body.len());
    if bytes > limit {
        return Err(JobError::RequestTooLarge {
            id: id(),
            bytes,
            limit,
            provider,
        });
    }
    Ok(req)
}
