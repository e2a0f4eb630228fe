//! The shared harness of the engine's behaviour tests (`interceptor_*.rs`), with virtual time: no
//! clock, no network. A small in-test fake of the three batch providers (OpenAI, Anthropic, Gemini;
//! wire formats from shared/providers.md §1, §3, §4; `fake`) answers every `Output::Send` the
//! engine emits, so whole flows run: submit → (upload) → create → poll → download → respond. The
//! host (`harness`) drives the engine, answers its calls through the fake and records its outputs.
//!
//! The fake answers each batch line with a deterministic function of the line itself
//! (`"echo:<model>:<text>"`), so a caller that receives another caller's answer is caught. A text
//! containing `#err=<token>` makes the fake answer that line with a per-line error. Every call the
//! fake serves is checked: a batch never holds the same custom id twice, never mixes groups, and
//! every call carries the headers of the callers whose requests it holds.

// Every test file compiles this module on its own and uses a part of it.
#![allow(dead_code)]

mod fake;
mod fleet_store;
mod harness;

// (Re-exports too: a provider's own flow file uses only the request helpers.)
#[allow(unused_imports)]
pub use fake::*;
#[allow(unused_imports)]
pub use fleet_store::FleetStore;
#[allow(unused_imports)]
pub use harness::*;

use batchling_core::http::HttpRequest;
use batchling_core::interceptor::InterceptorConfig;
use batchling_core::providers::ProviderId;
use serde_json::{json, Map, Value};

// ---- requests ------------------------------------------------------------------------------

/// The providers the fake speaks (the others are covered by the JS fake provider).
pub const FAKE_PROVIDERS: [ProviderId; 3] = [
    ProviderId::OpenAi,
    ProviderId::Anthropic,
    ProviderId::Gemini,
];

pub const OPENAI_BASE: &str = "https://api.openai.com/v1";
pub const ANTHROPIC_BASE: &str = "https://api.anthropic.com";
pub const GEMINI_BASE: &str = "https://generativelanguage.googleapis.com/v1beta";

pub const OPENAI_KEYS: [&str; 2] = ["sk-proj-ALPHA0000secret", "sk-proj-BRAVO1111secret"];
pub const ANTHROPIC_KEYS: [&str; 2] = [
    "sk-ant-api03-CHARLIE2222secret",
    "sk-ant-api03-DELTA3333secret",
];
pub const GEMINI_KEYS: [&str; 2] = ["AIzaSyECHO4444secret", "AIzaSyFOXTROT5555secret"];

pub const OPENAI_MODELS: [&str; 2] = ["gpt-4o-mini", "gpt-4.1-nano"];
pub const ANTHROPIC_MODELS: [&str; 2] = ["claude-sonnet-4-5", "claude-3-5-haiku-latest"];
pub const GEMINI_MODELS: [&str; 2] = ["gemini-2.5-flash", "gemini-2.5-pro"];

pub const WINDOW: u64 = 1_000;
pub const POLL: u64 = 5_000;

pub fn all_secrets() -> Vec<&'static str> {
    OPENAI_KEYS
        .iter()
        .chain(&ANTHROPIC_KEYS)
        .chain(&GEMINI_KEYS)
        .copied()
        .collect()
}

pub fn http(method: &str, url: String, headers: Vec<(&str, String)>, body: String) -> HttpRequest {
    HttpRequest {
        method: method.into(),
        url,
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        body,
    }
}

pub fn openai_json(key: &str, path: &str, body: Value) -> HttpRequest {
    http(
        "POST",
        format!("{OPENAI_BASE}{path}"),
        vec![
            ("Authorization", format!("Bearer {key}")),
            ("Content-Type", "application/json".into()),
            ("User-Agent", "OpenAI/JS 7.57.0".into()),
            ("X-Stainless-Retry-Count", "0".into()),
        ],
        body.to_string(),
    )
}

pub fn openai_chat(key: &str, model: &str, text: &str) -> HttpRequest {
    openai_json(
        key,
        "/chat/completions",
        json!({"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16}),
    )
}

pub fn openai_embedding(key: &str, model: &str, text: &str) -> HttpRequest {
    openai_json(key, "/embeddings", json!({"model": model, "input": text}))
}

/// An OpenAI-protocol chat request (the shape the OpenAI-compatible providers share) to `base`,
/// a provider's API root, with this `Authorization` header.
pub fn chat_at(base: &str, authorization: &str, model: &str, text: &str) -> HttpRequest {
    http(
        "POST",
        format!("{base}/chat/completions"),
        vec![
            ("Authorization", authorization.to_string()),
            ("Content-Type", "application/json".to_string()),
        ],
        json!({"model": model, "messages": [{"role": "user", "content": text}]}).to_string(),
    )
}

pub fn anthropic_msg(key: &str, model: &str, text: &str, beta: Option<&str>) -> HttpRequest {
    let mut headers = vec![
        ("x-api-key", key.to_string()),
        ("anthropic-version", "2023-06-01".to_string()),
        ("content-type", "application/json".to_string()),
        ("x-stainless-os", "Linux".to_string()),
    ];
    if let Some(beta) = beta {
        headers.push(("anthropic-beta", beta.to_string()));
    }
    http(
        "POST",
        format!("{ANTHROPIC_BASE}/v1/messages"),
        headers,
        json!({"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}]})
            .to_string(),
    )
}

pub fn gemini_body(text: &str) -> String {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}], "generationConfig": {"maxOutputTokens": 32}})
        .to_string()
}

pub fn gemini_gen(key: &str, model: &str, text: &str) -> HttpRequest {
    http(
        "POST",
        format!("{GEMINI_BASE}/models/{model}:generateContent"),
        vec![
            ("x-goog-api-key", key.to_string()),
            ("content-type", "application/json".to_string()),
            ("x-goog-api-client", "google-genai-sdk/3.1.0".to_string()),
        ],
        gemini_body(text),
    )
}

/// The `?key=` flavour of Gemini auth.
pub fn gemini_gen_query_key(key: &str, model: &str, text: &str) -> HttpRequest {
    http(
        "POST",
        format!("{GEMINI_BASE}/models/{model}:generateContent?key={key}"),
        vec![("content-type", "application/json".to_string())],
        gemini_body(text),
    )
}

pub fn key_of(p: ProviderId, i: usize) -> &'static str {
    match p {
        ProviderId::OpenAi => OPENAI_KEYS[i],
        ProviderId::Anthropic => ANTHROPIC_KEYS[i],
        ProviderId::Gemini => GEMINI_KEYS[i],
        other => unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}"),
    }
}

pub fn model_of(p: ProviderId, i: usize) -> &'static str {
    match p {
        ProviderId::OpenAi => OPENAI_MODELS[i],
        ProviderId::Anthropic => ANTHROPIC_MODELS[i],
        ProviderId::Gemini => GEMINI_MODELS[i],
        other => unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}"),
    }
}

/// A batchable request of provider `p` with key `k` and model `m` (indices into the tables).
pub fn request(p: ProviderId, k: usize, m: usize, text: &str) -> HttpRequest {
    let (key, model) = (key_of(p, k), model_of(p, m));
    match p {
        ProviderId::OpenAi => openai_chat(key, model, text),
        ProviderId::Anthropic => anthropic_msg(key, model, text, None),
        ProviderId::Gemini => gemini_gen(key, model, text),
        other => unreachable!("this fake speaks OpenAI, Anthropic and Gemini, not {other}"),
    }
}

/// The same request with the body's top-level keys in reverse order.
pub fn reordered(mut req: HttpRequest) -> HttpRequest {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&req.body) else {
        panic!("JSON body expected");
    };
    let reversed: Map<String, Value> = map.into_iter().rev().collect();
    req.body = Value::Object(reversed).to_string();
    req
}

/// What the fake answers for a line: the model and the caller's text, quoted as a JSON string.
pub fn echo(model: &str, text: &str) -> String {
    format!("echo:{model}:{text}")
}

pub fn config(batch_size: usize) -> InterceptorConfig {
    InterceptorConfig {
        batch_size,
        batch_window_ms: WINDOW,
        poll_interval_ms: POLL,
        dry_run: false,
        call_attempts: 4,
        backoff_ms: 1_000,
        max_backoff_ms: 30_000,
        jitter_seed: 7,
        ..InterceptorConfig::default()
    }
}

/// The `type` of each journal record, in order.
pub fn record_types(journal: &[String]) -> Vec<String> {
    journal
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}
