//! OpenAI. Its batch protocol, shared with the other OpenAI-compatible providers, is in
//! `openai_compat`; its paths identify it on any host (see [`OpenAi`]'s recognition), so it
//! has no built-in host. Wire formats: providers.md §1.
//!
//! Jobs ([`crate::jobs`]) become Chat Completions requests: a leading system message, images
//! and PDFs as data URLs, structured output as a strict `json_schema` `response_format`.

use serde_json::{json, Map, Value};

use super::hosts::any_window;
use super::openai_compat::{Profile, CHAT, EMBEDDINGS, MB, RESPONSES};
use super::{OpenAi, ProviderDescriptor, ProviderId};
use crate::job_format::{
    file_data, u64_at, JobFormat, Output, Part, Prepared, RESPONSE_SCHEMA_NAME,
};
use crate::json_schema::to_strict;

/// 50,000 requests, 200 MB, window "24h"; chat, responses and embeddings.
const PROFILE: Profile = Profile {
    endpoints: &[CHAT, RESPONSES, EMBEDDINGS],
    completion_window: "24h",
    max_requests: 50_000,
    max_file_bytes: 200 * MB,
    recognize_at: None,
};

pub(super) const DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    id: ProviderId::OpenAi,
    name: "openai",
    adapter: &OpenAi,
    openai_profile: Some(&PROFILE),
    hosts: &[],
    default_base_url: Some("https://api.openai.com/v1"),
    window_error: any_window,
    api_key_env: Some("OPENAI_API_KEY"),
    base_url_env: Some("OPENAI_BASE_URL"),
    jobs: Some(&OpenAiJobs),
};

/// Jobs as Chat Completions requests.
struct OpenAiJobs;

impl JobFormat for OpenAiJobs {
    fn image_types(&self) -> &'static [&'static str] {
        &["image/png", "image/jpeg", "image/gif", "image/webp"]
    }

    fn wire_schema(&self, schema: &Value) -> Result<Value, String> {
        if schema.get("type").and_then(Value::as_str) != Some("object") {
            return Err(
                "must have `\"type\": \"object\"` at the root for OpenAI structured output"
                    .to_string(),
            );
        }
        to_strict(schema).map_err(|refusal| {
            format!("cannot be expressed in OpenAI's strict structured-output mode: {refusal}")
        })
    }

    fn strict_schema(&self) -> bool {
        true
    }

    fn schema_fields(&self) -> &'static [&'static str] {
        &["/response_format"]
    }

    fn body(&self, p: &Prepared, placeholder: bool) -> Value {
        body(p, placeholder)
    }

    fn target(
        &self,
        base_url: &str,
        _model: &str,
        api_key: &str,
    ) -> (String, Vec<(String, String)>) {
        let mut headers = Vec::new();
        if !api_key.is_empty() {
            headers.push(("authorization".into(), format!("Bearer {api_key}")));
        }
        (format!("{base_url}/chat/completions"), headers)
    }

    fn output(&self, answer: &Value) -> Output {
        output(answer)
    }
}

fn body(p: &Prepared, placeholder: bool) -> Value {
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
                                "file_data": format!("data:application/pdf;base64,{}", file_data(d, placeholder)),
                            },
                        }),
                        Part::Image { media_type, data: d } => json!({
                            "type": "image_url",
                            "image_url": {"url": format!("data:{media_type};base64,{}", file_data(d, placeholder))},
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

fn output(v: &Value) -> Output {
    let mut out = Output {
        input_tokens: u64_at(v, "/usage/prompt_tokens"),
        // Reasoning tokens are part of completion_tokens, cached tokens of prompt_tokens.
        output_tokens: u64_at(v, "/usage/completion_tokens"),
        cache_read_tokens: u64_at(v, "/usage/prompt_tokens_details/cached_tokens").unwrap_or(0),
        ..Output::default()
    };
    let Some(choice) = v.pointer("/choices/0") else {
        out.problem = Some("the response has no choices".to_string());
        return out;
    };
    out.finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    out.truncated = out.finish_reason.as_deref() == Some("length");
    out.text = choice
        .pointer("/message/content")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(refusal) = choice.pointer("/message/refusal").and_then(Value::as_str) {
        out.problem = Some(format!("the model refused: {refusal}"));
    } else if out.finish_reason.as_deref() == Some("content_filter") {
        out.problem = Some("the answer was withheld by OpenAI's content filter".to_string());
    }
    out
}
