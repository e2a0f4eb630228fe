//! The job builder's core functions, through the public API: job specs become the request each
//! provider's SDK would send, answers become job results, bad jobs become typed errors.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use batchling_core::catalog::models::{self, ModelInfo};
use batchling_core::catalog::pricing;
use batchling_core::http::HttpRequest;
use batchling_core::jobs::*;
use batchling_core::providers::{adapter, classify, EndKind, ProviderId, Route};

// ---------------------------------------------------------------------------------------------
// Fixtures.

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n\
2 0 obj <</Type /Pages /Kids [3 0 R 4 0 R] /Count 2>> endobj\n\
3 0 obj <</Type /Page /Parent 2 0 R>> endobj\n4 0 obj <</Type/Page /Parent 2 0 R>> endobj\n\
trailer <</Root 1 0 R>>\n%%EOF\n";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01";
const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\0\x10JFIF\0";
const GIF: &[u8] = b"GIF89a\x01\0\x01\0";

fn file(name: &str, media_type: &str, bytes: &[u8]) -> FileInput {
    FileInput {
        name: name.into(),
        media_type: media_type.into(),
        data_base64: b64(bytes),
    }
}

fn chat(id: &str, model: &str) -> JobSpec {
    JobSpec {
        id: id.into(),
        model: model.into(),
        messages: Some(vec![
            Message {
                role: "user".into(),
                content: "2+2?".into(),
            },
            Message {
                role: "assistant".into(),
                content: "4".into(),
            },
            Message {
                role: "user".into(),
                content: "times 3?".into(),
            },
        ]),
        file: None,
        prompt: None,
        system: Some("Be brief.".into()),
        temperature: None,
        max_tokens: None,
        response_schema: None,
        extra: None,
        price: None,
    }
}

fn ask(id: &str, model: &str, f: Option<FileInput>, prompt: &str) -> JobSpec {
    JobSpec {
        messages: None,
        file: f,
        prompt: Some(prompt.into()),
        system: None,
        ..chat(id, model)
    }
}

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "pages": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
            "note": {"type": ["string", "null"]},
        },
        "required": ["title", "pages", "tags", "note"],
        "additionalProperties": false,
    })
}

fn structured(model: &str) -> JobSpec {
    JobSpec {
        response_schema: Some(schema()),
        temperature: None,
        ..ask("s1", model, None, "Describe the report.")
    }
}

fn endpoint(provider: ProviderId) -> ProviderEndpoint {
    ProviderEndpoint::default_for(provider, "k-123")
}

fn build(job: &JobSpec) -> HttpRequest {
    let provider = job_provider(job).unwrap();
    build_request(job, &endpoint(provider)).unwrap()
}

fn body_of(req: &HttpRequest) -> Value {
    serde_json::from_str(&req.body).unwrap()
}

/// Builds the job's request and checks the batch engine recognises it as the job's provider,
/// endpoint and model on the default base URL; returns the route.
fn routed(job: &JobSpec, provider: ProviderId, endpoint: &str, model: &str) -> Route {
    let req = build(job);
    assert_eq!(req.method, "POST");
    assert_eq!(req.header("content-type"), Some("application/json"));
    let route = classify(&req).expect("batchable");
    assert_eq!(route.provider, provider);
    assert_eq!(route.endpoint, endpoint);
    assert_eq!(route.model, model);
    assert_eq!(route.base_url, default_base_url(provider));
    assert_eq!(route.body, body_of(&req));
    route
}

fn err(job: &JobSpec) -> JobError {
    let e = validate(job).unwrap_err();
    let provider = job_provider(job).unwrap_or(ProviderId::OpenAi);
    let built = build_request(job, &endpoint(provider)).unwrap_err();
    // (Compared as text: a NaN temperature is not equal to itself.)
    assert_eq!(built.to_string(), e.to_string());
    e
}

// ---------------------------------------------------------------------------------------------
// OpenAI requests.

#[test]
fn openai_messages_request() {
    let job = JobSpec {
        temperature: Some(0.2),
        max_tokens: Some(300),
        ..chat("j1", "gpt-4o-mini")
    };
    let route = routed(
        &job,
        ProviderId::OpenAi,
        "/v1/chat/completions",
        "gpt-4o-mini",
    );
    let req = build(&job);
    assert_eq!(req.url, "https://api.openai.com/v1/chat/completions");
    assert_eq!(req.header("authorization"), Some("Bearer k-123"));
    assert_eq!(
        route.body,
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"},
                {"role": "user", "content": "times 3?"},
            ],
            "temperature": 0.2,
            "max_completion_tokens": 300,
        })
    );
}

#[test]
fn openai_pdf_image_and_text_files() {
    let job = ask(
        "p",
        "gpt-4.1",
        Some(file("r.pdf", "application/pdf", PDF)),
        "Summarise.",
    );
    let route = routed(&job, ProviderId::OpenAi, "/v1/chat/completions", "gpt-4.1");
    assert_eq!(
        route.body["messages"],
        json!([{"role": "user", "content": [
            {"type": "file", "file": {"filename": "r.pdf", "file_data": format!("data:application/pdf;base64,{}", b64(PDF))}},
            {"type": "text", "text": "Summarise."},
        ]}])
    );

    let job = ask(
        "i",
        "gpt-4.1",
        Some(file("a.png", "image/png", PNG)),
        "What is this?",
    );
    let route = routed(&job, ProviderId::OpenAi, "/v1/chat/completions", "gpt-4.1");
    assert_eq!(
        route.body["messages"][0]["content"][0],
        json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", b64(PNG))}})
    );

    // `image/jpg` is read as image/jpeg; parameters and case are ignored.
    let job = ask("j", "gpt-4o", Some(file("a.jpg", "Image/JPG", JPEG)), "?");
    let req = build(&job);
    assert!(
        body_of(&req)["messages"][0]["content"][0]["image_url"]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/jpeg;base64,")
    );

    let job = ask(
        "t",
        "gpt-4.1",
        Some(file(
            "notes.txt",
            "text/plain; charset=utf-8",
            "\u{feff}line 1\nline 2\n".as_bytes(),
        )),
        "Count the lines.",
    );
    let route = routed(&job, ProviderId::OpenAi, "/v1/chat/completions", "gpt-4.1");
    assert_eq!(
        route.body["messages"],
        json!([{"role": "user", "content": "<file name=\"notes.txt\">\nline 1\nline 2\n</file>\n\nCount the lines."}])
    );
}

#[test]
fn openai_structured_output() {
    let route = routed(
        &structured("gpt-5.4-mini-2026-03-17"),
        ProviderId::OpenAi,
        "/v1/chat/completions",
        "gpt-5.4-mini-2026-03-17",
    );
    assert_eq!(
        route.body["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema(), "strict": true}})
    );
    assert_eq!(
        route.body["messages"],
        json!([{"role": "user", "content": "Describe the report."}])
    );
}

#[test]
fn openai_hand_written_schema_is_sent_strict_and_its_nulls_dropped() {
    // A schema as people write it: no `additionalProperties`, an optional field.
    let hand = json!({
        "type": "object",
        "properties": {"answer": {"type": "string"}, "source": {"type": "string"}},
        "required": ["answer"],
    });
    let job = JobSpec {
        response_schema: Some(hand.clone()),
        ..ask("h", "gpt-4o-mini", None, "Why is the sky blue?")
    };
    let route = routed(
        &job,
        ProviderId::OpenAi,
        "/v1/chat/completions",
        "gpt-4o-mini",
    );
    assert_eq!(
        route.body["response_format"]["json_schema"]["schema"],
        json!({
            "type": "object",
            "properties": {"answer": {"type": "string"}, "source": {"type": ["string", "null"]}},
            "required": ["answer", "source"],
            "additionalProperties": false,
        })
    );
    let answer = |content: Value| {
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content.to_string()}, "finish_reason": "stop"}]})
            .to_string()
    };
    // The model had to write `source`; null means it left it out.
    let r = extract_result(
        &job,
        200,
        &answer(json!({"answer": "Rayleigh", "source": null})),
    );
    assert!(r.ok, "{r:?}");
    assert_eq!(r.parsed_response, Some(json!({"answer": "Rayleigh"})));
    assert_eq!(
        r.response.as_deref(),
        Some(r#"{"answer":"Rayleigh","source":null}"#),
        "the raw text is the model's"
    );
    let r = extract_result(
        &job,
        200,
        &answer(json!({"answer": "Rayleigh", "source": "physics"})),
    );
    assert_eq!(
        r.parsed_response,
        Some(json!({"answer": "Rayleigh", "source": "physics"}))
    );
    // A null for a required field is still the job's error.
    let r = extract_result(&job, 200, &answer(json!({"answer": null, "source": null})));
    assert!(!r.ok);
    assert_eq!(
        r.error.as_deref(),
        Some("the answer does not match responseSchema: $.answer: expected string, got null")
    );
    // Gemini gets the schema as written, and its nulls are not touched.
    let gemini = JobSpec {
        model: "gemini-2.5-flash".into(),
        ..job.clone()
    };
    assert_eq!(
        body_of(&build(&gemini))["generationConfig"]["responseJsonSchema"],
        hand
    );
    let body = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": r#"{"answer":"x","source":null}"#}]}, "finishReason": "STOP"}]});
    let r = extract_result(&gemini, 200, &body.to_string());
    assert_eq!(
        r.error.as_deref(),
        Some("the answer does not match responseSchema: $.source: expected string, got null")
    );
}

// ---------------------------------------------------------------------------------------------
// Anthropic requests.

#[test]
fn anthropic_messages_request() {
    let job = JobSpec {
        temperature: Some(0.5),
        ..chat("a1", "claude-sonnet-4-5-20250929")
    };
    let route = routed(
        &job,
        ProviderId::Anthropic,
        "/v1/messages",
        "claude-sonnet-4-5-20250929",
    );
    let req = build(&job);
    assert_eq!(req.url, "https://api.anthropic.com/v1/messages");
    assert_eq!(req.header("x-api-key"), Some("k-123"));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        route.body,
        json!({
            "model": "claude-sonnet-4-5-20250929",
            "max_tokens": 1024,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"},
                {"role": "user", "content": "times 3?"},
            ],
            "temperature": 0.5,
        })
    );
    // System-role messages join `system`.
    let mut job = chat("a2", "claude-haiku-4-5");
    job.messages.as_mut().unwrap().insert(
        0,
        Message {
            role: "system".into(),
            content: "Answer in French.".into(),
        },
    );
    assert_eq!(
        body_of(&build(&job))["system"],
        "Be brief.\n\nAnswer in French."
    );
    // Models that think by default get a roomier default cap.
    assert_eq!(
        body_of(&build(&chat("a3", "claude-opus-5")))["max_tokens"],
        8192
    );
    // An explicit cap wins.
    let job = JobSpec {
        max_tokens: Some(50),
        ..chat("a4", "claude-opus-5")
    };
    assert_eq!(body_of(&build(&job))["max_tokens"], 50);
}

#[test]
fn anthropic_pdf_image_and_text_files() {
    let job = ask(
        "p",
        "claude-sonnet-4-6",
        Some(file("report.pdf", "application/pdf", PDF)),
        "Summarise.",
    );
    let route = routed(
        &job,
        ProviderId::Anthropic,
        "/v1/messages",
        "claude-sonnet-4-6",
    );
    assert_eq!(
        route.body["messages"],
        json!([{"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": b64(PDF)},
             "title": "report.pdf", "citations": {"enabled": true}},
            {"type": "text", "text": "Summarise."},
        ]}])
    );

    let job = ask(
        "g",
        "claude-haiku-4-5",
        Some(file("a.gif", "image/gif", GIF)),
        "Describe.",
    );
    let route = routed(
        &job,
        ProviderId::Anthropic,
        "/v1/messages",
        "claude-haiku-4-5",
    );
    assert_eq!(
        route.body["messages"][0]["content"][0],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": b64(GIF)}})
    );

    let job = ask(
        "t",
        "claude-3-haiku",
        Some(file("d.json", "application/json", b"{\"a\":1}")),
        "Keys?",
    );
    let route = routed(
        &job,
        ProviderId::Anthropic,
        "/v1/messages",
        "claude-3-haiku",
    );
    assert_eq!(
        route.body["messages"][0]["content"],
        "<file name=\"d.json\">\n{\"a\":1}\n</file>\n\nKeys?"
    );
}

#[test]
fn anthropic_structured_output_is_a_forced_tool() {
    let mut job = structured("claude-sonnet-4-6");
    job.file = Some(file("r.pdf", "application/pdf", PDF));
    let route = routed(
        &job,
        ProviderId::Anthropic,
        "/v1/messages",
        "claude-sonnet-4-6",
    );
    assert_eq!(route.body["tools"][0]["name"], "response");
    assert_eq!(route.body["tools"][0]["input_schema"], schema());
    assert_eq!(
        route.body["tool_choice"],
        json!({"type": "tool", "name": "response"})
    );
    assert!(route.body.get("thinking").is_none());
    // No citations when the answer is a tool call.
    assert!(route.body["messages"][0]["content"][0]
        .get("citations")
        .is_none());
    // Claude Opus 5 thinks by default, which forced tool use does not allow.
    let route = routed(
        &structured("claude-opus-5"),
        ProviderId::Anthropic,
        "/v1/messages",
        "claude-opus-5",
    );
    assert_eq!(route.body["thinking"], json!({"type": "disabled"}));
}

// ---------------------------------------------------------------------------------------------
// Gemini requests.

#[test]
fn gemini_messages_request() {
    let job = JobSpec {
        temperature: Some(1.5),
        max_tokens: Some(256),
        ..chat("g1", "gemini-2.5-flash")
    };
    let route = routed(
        &job,
        ProviderId::Gemini,
        "generateContent",
        "gemini-2.5-flash",
    );
    let req = build(&job);
    assert_eq!(
        req.url,
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(req.header("x-goog-api-key"), Some("k-123"));
    assert_eq!(
        route.body,
        json!({
            "contents": [
                {"role": "user", "parts": [{"text": "2+2?"}]},
                {"role": "model", "parts": [{"text": "4"}]},
                {"role": "user", "parts": [{"text": "times 3?"}]},
            ],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "generationConfig": {"temperature": 1.5, "maxOutputTokens": 256},
        })
    );
    // The `models/` resource prefix is not repeated in the URL; no generationConfig when unset.
    let job = ask("g2", "models/gemini-2.5-pro", None, "Hi");
    let route = routed(
        &job,
        ProviderId::Gemini,
        "generateContent",
        "gemini-2.5-pro",
    );
    assert_eq!(
        route.body,
        json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]})
    );
}

#[test]
fn gemini_pdf_image_and_text_files() {
    let job = ask(
        "p",
        "gemini-3.5-flash",
        Some(file("r.pdf", "application/pdf", PDF)),
        "Summarise.",
    );
    let route = routed(
        &job,
        ProviderId::Gemini,
        "generateContent",
        "gemini-3.5-flash",
    );
    assert_eq!(
        route.body["contents"],
        json!([{"role": "user", "parts": [
            {"inlineData": {"mimeType": "application/pdf", "data": b64(PDF)}},
            {"text": "Summarise."},
        ]}])
    );
    let job = ask(
        "i",
        "gemini-2.5-flash-lite",
        Some(file("a.png", "image/png", PNG)),
        "?",
    );
    let route = routed(
        &job,
        ProviderId::Gemini,
        "generateContent",
        "gemini-2.5-flash-lite",
    );
    assert_eq!(
        route.body["contents"][0]["parts"][0],
        json!({"inlineData": {"mimeType": "image/png", "data": b64(PNG)}})
    );
    let job = ask(
        "t",
        "gemini-2.5-pro",
        Some(file("a \"b\".md", "text/markdown", b"# Title")),
        "Title?",
    );
    let route = routed(
        &job,
        ProviderId::Gemini,
        "generateContent",
        "gemini-2.5-pro",
    );
    assert_eq!(
        route.body["contents"][0]["parts"],
        json!([{"text": "<file name=\"a _b_.md\">\n# Title\n</file>\n\nTitle?"}])
    );
}

#[test]
fn gemini_structured_output() {
    let route = routed(
        &structured("gemini-3.1-pro-preview"),
        ProviderId::Gemini,
        "generateContent",
        "gemini-3.1-pro-preview",
    );
    assert_eq!(
        route.body["generationConfig"],
        json!({"responseMimeType": "application/json", "responseJsonSchema": schema()})
    );
    // Gemini takes schemas OpenAI's strict mode would not (optional fields, array roots).
    let mut job = structured("gemini-2.5-flash");
    job.response_schema = Some(
        json!({"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}}),
    );
    assert!(validate(&job).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Endpoint, headers and extra.

#[test]
fn custom_endpoint_headers_and_extra() {
    let mut job = structured("gemini-2.5-flash");
    job.temperature = Some(0.0);
    job.extra = Some(
        json!({"generationConfig": {"topK": 5}, "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}]})
            .as_object()
            .unwrap()
            .clone(),
    );
    let ep = ProviderEndpoint {
        base_url: "http://127.0.0.1:8080/v1beta/".into(),
        api_key: String::new(),
        headers: [("x-goog-user-project".to_string(), "p1".to_string())].into(),
    };
    let req = build_request(&job, &ep).unwrap();
    assert_eq!(
        req.url,
        "http://127.0.0.1:8080/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(req.header("x-goog-api-key"), None);
    assert_eq!(req.header("x-goog-user-project"), Some("p1"));
    let body = body_of(&req);
    // Objects merge; the schema settings survive.
    assert_eq!(body["generationConfig"]["topK"], 5);
    assert_eq!(body["generationConfig"]["temperature"], 0.0);
    assert_eq!(body["generationConfig"]["responseJsonSchema"], schema());
    assert_eq!(body["safetySettings"][0]["threshold"], "BLOCK_NONE");
    let route = classify(&req).unwrap();
    assert_eq!(route.base_url, "http://127.0.0.1:8080/v1beta");

    // An empty base URL means the default; extra headers never replace ours.
    let ep = ProviderEndpoint {
        base_url: String::new(),
        api_key: "sk".into(),
        headers: [("Authorization".to_string(), "Bearer other".to_string())].into(),
    };
    let req = build_request(&chat("o", "gpt-4o"), &ep).unwrap();
    assert_eq!(req.url, "https://api.openai.com/v1/chat/completions");
    assert_eq!(req.header("authorization"), Some("Bearer sk"));
    assert!(!format!("{ep:?}").contains("sk"));

    // Scalars in extra replace ours.
    let mut job = chat("o2", "gpt-4o");
    job.max_tokens = Some(10);
    job.extra = Some(
        json!({"max_completion_tokens": 20, "seed": 7})
            .as_object()
            .unwrap()
            .clone(),
    );
    let body = body_of(&build(&job));
    assert_eq!(
        (
            body["max_completion_tokens"].as_u64(),
            body["seed"].as_u64()
        ),
        (Some(20), Some(7))
    );
}

#[test]
fn every_provider_model_is_batchable() {
    for info in models::all() {
        let job = ask("x", info.name, None, "hi");
        let expected_endpoint = match info.provider {
            ProviderId::Anthropic => "/v1/messages",
            ProviderId::Gemini => "generateContent",
            _ => "/v1/chat/completions",
        };
        routed(&job, info.provider, expected_endpoint, info.name);
    }
}

// ---------------------------------------------------------------------------------------------
// Errors.

#[test]
fn input_shape_errors() {
    let e = err(&JobSpec {
        id: " ".into(),
        ..chat("x", "gpt-4o")
    });
    assert_eq!(e, JobError::EmptyId);
    assert_eq!(
        e.to_string(),
        "a job has an empty `id`; give every job a unique id"
    );

    let mut both = chat("both", "gpt-4o");
    both.prompt = Some("also this".into());
    let e = err(&both);
    assert_eq!(e.code(), "ERR_BATCHLING_BOTH_INPUTS");
    assert_eq!(
        e.to_string(),
        "job `both`: give either `messages` or `file` + `prompt`, not both"
    );
    let mut both = chat("both2", "gpt-4o");
    both.file = Some(file("a.png", "image/png", PNG));
    assert_eq!(err(&both).code(), "ERR_BATCHLING_BOTH_INPUTS");

    let none = JobSpec {
        messages: None,
        ..chat("none", "gpt-4o")
    };
    let e = err(&none);
    assert_eq!(e, JobError::NoInput { id: "none".into() });
    assert!(e
        .to_string()
        .starts_with("job `none`: nothing to send; give `messages`"));
    // A blank prompt is no prompt; an empty or system-only conversation is no input.
    assert_eq!(
        err(&ask("blank", "gpt-4o", None, "  ")).code(),
        "ERR_BATCHLING_NO_INPUT"
    );
    let empty = JobSpec {
        messages: Some(vec![]),
        ..chat("e", "gpt-4o")
    };
    assert_eq!(err(&empty).code(), "ERR_BATCHLING_NO_INPUT");
    let sys_only = JobSpec {
        messages: Some(vec![Message {
            role: "system".into(),
            content: "x".into(),
        }]),
        ..chat("s", "gpt-4o")
    };
    assert_eq!(err(&sys_only).code(), "ERR_BATCHLING_NO_INPUT");

    let e = err(&ask(
        "f",
        "gpt-4o",
        Some(file("a.png", "image/png", PNG)),
        "",
    ));
    assert_eq!(e, JobError::FileWithoutPrompt { id: "f".into() });
    assert_eq!(
        e.to_string(),
        "job `f`: `file` needs a `prompt` saying what to do with it"
    );

    let mut bad_role = chat("r", "gpt-4o");
    bad_role.messages.as_mut().unwrap()[1].role = "model".into();
    assert_eq!(
        err(&bad_role).to_string(),
        "job `r`: messages[1] has role `model`; use \"system\", \"user\" or \"assistant\""
    );
    let mut blank = chat("b", "gpt-4o");
    blank.messages.as_mut().unwrap()[2].content = "\n".into();
    assert_eq!(
        err(&blank).to_string(),
        "job `b`: messages[2] has empty `content`"
    );
}

#[test]
fn unknown_model_error_suggests() {
    let e = err(&chat("m", "gpt4o"));
    assert_eq!(e.code(), "ERR_BATCHLING_UNKNOWN_MODEL");
    assert_eq!(
        e.to_string(),
        "job `m`: unknown model `gpt4o`; did you mean gpt-4o, gpt-4o-mini, gpt-4.1?"
    );
    assert!(job_provider(&chat("m", "gpt4o")).is_err());
    // Shape errors come first: they do not depend on the model.
    assert_eq!(
        err(&ask("m2", "nope", None, "")).code(),
        "ERR_BATCHLING_NO_INPUT"
    );
}

#[test]
fn unsupported_file_errors() {
    let e = err(&ask(
        "h",
        "claude-3-haiku-20240307",
        Some(file("r.pdf", "application/pdf", PDF)),
        "Sum.",
    ));
    assert_eq!(
        e.to_string(),
        "job `h`: file `r.pdf`: model `claude-3-haiku-20240307` cannot read PDF files; use a \
         model that reads PDFs, e.g. claude-opus-5"
    );
    let e = err(&ask(
        "g",
        "gemini-2.5-flash",
        Some(file("a.gif", "image/gif", GIF)),
        "?",
    ));
    assert_eq!(
        e.to_string(),
        "job `g`: file `a.gif`: gemini does not accept image/gif images; convert it to one of \
         image/png, image/jpeg, image/webp, image/heic, image/heif"
    );
    let e = err(&ask(
        "z",
        "gpt-4o",
        Some(file("a.zip", "application/zip", b"PK\x03\x04")),
        "?",
    ));
    assert_eq!(e.code(), "ERR_BATCHLING_UNSUPPORTED_FILE");
    assert!(e.to_string().starts_with(
        "job `z`: file `a.zip`: media type `application/zip` is not supported; send a PDF"
    ));
    // HEIC is fine on Gemini only.
    assert!(validate(&ask(
        "h1",
        "gemini-2.5-flash",
        Some(file("a.heic", "image/heic", b"\0\0\0\x18ftypheic")),
        "?"
    ))
    .is_ok());
    assert_eq!(
        err(&ask(
            "h2",
            "gpt-4o",
            Some(file("a.heic", "image/heic", b"\0\0\0\x18ftypheic")),
            "?"
        ))
        .code(),
        "ERR_BATCHLING_UNSUPPORTED_FILE"
    );
}

#[test]
fn capability_errors_on_a_limited_model() {
    static TEXT_ONLY: ModelInfo = ModelInfo {
        name: "text-only",
        provider: ProviderId::OpenAi,
        max_input_tokens: 16_000,
        max_output_tokens: 4_096,
        supports_files: false,
        supports_images: false,
        supports_citations: false,
        supports_structured_output: false,
        supports_temperature: true,
        thinks_by_default: false,
        batch_discount: 0.5,
    };
    let check = |job: &JobSpec| validate_for_model(job, &TEXT_ONLY).unwrap_err();
    let e = check(&ask(
        "i",
        "text-only",
        Some(file("a.png", "image/png", PNG)),
        "?",
    ));
    assert_eq!(
        e.to_string(),
        "job `i`: file `a.png`: model `text-only` cannot read images; use a model that reads \
         images, e.g. gpt-5.5"
    );
    let e = check(&structured("text-only"));
    assert_eq!(
        e,
        JobError::StructuredOutputUnsupported {
            id: "s1".into(),
            model: "text-only".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "job `s1`: model `text-only` does not support structured output; drop `responseSchema` \
         or pick a model that supports it"
    );
}

#[test]
fn invalid_file_errors() {
    let mut bad = file("r.pdf", "application/pdf", PDF);
    bad.data_base64.insert(4, '!');
    bad.data_base64.truncate(bad.data_base64.len() - 1);
    let e = err(&ask("b", "gpt-4o", Some(bad), "?"));
    assert_eq!(
        e.to_string(),
        "job `b`: file `r.pdf` is not valid base64 (standard alphabet, padded): bad character \
         or length at offset 4"
    );
    let mut unpadded = file("a.png", "image/png", PNG);
    unpadded.data_base64 = unpadded.data_base64.trim_end_matches('=').to_string();
    assert_eq!(
        err(&ask("u", "gpt-4o", Some(unpadded), "?")).code(),
        "ERR_BATCHLING_INVALID_FILE"
    );

    let e = err(&ask(
        "p",
        "gpt-4o",
        Some(file("r.pdf", "application/pdf", b"hello")),
        "?",
    ));
    assert_eq!(
        e.to_string(),
        "job `p`: file `r.pdf` is declared application/pdf but does not start like a PDF"
    );
    let e = err(&ask(
        "j",
        "claude-haiku-4-5",
        Some(file("a.png", "image/png", JPEG)),
        "?",
    ));
    assert_eq!(
        e.to_string(),
        "job `j`: file `a.png` is declared image/png but its bytes are image/jpeg; fix `mediaType`"
    );
    let e = err(&ask(
        "w",
        "gpt-4o",
        Some(file("a.webp", "image/webp", b"not an image")),
        "?",
    ));
    assert_eq!(
        e.to_string(),
        "job `w`: file `a.webp` is declared image/webp but its bytes are not in that format"
    );
    let e = err(&ask(
        "t",
        "gpt-4o",
        Some(file("a.txt", "text/plain", b"\xFF\xFEabc")),
        "?",
    ));
    assert_eq!(
        e.to_string(),
        "job `t`: file `a.txt` is declared text/plain but is not UTF-8 text; convert it to UTF-8"
    );
    let e = err(&ask(
        "e",
        "gpt-4o",
        Some(file("a.txt", "text/plain", b"")),
        "?",
    ));
    assert_eq!(e.to_string(), "job `e`: file `a.txt` is empty");
}

#[test]
fn schema_errors() {
    let mut job = structured("gpt-4o");
    job.response_schema = Some(json!("string"));
    let e = err(&job);
    assert_eq!(e.code(), "ERR_BATCHLING_INVALID_SCHEMA");
    assert_eq!(
        e.to_string(),
        "job `s1`: `responseSchema` must be a JSON Schema object"
    );

    job.response_schema = Some(json!({"type": "array", "items": {"type": "string"}}));
    assert_eq!(
        err(&job).to_string(),
        "job `s1`: `responseSchema` must have `\"type\": \"object\"` at the root for OpenAI \
         structured output"
    );

    // What strict mode cannot express is refused, naming the keyword and where it is.
    let mut negated = schema();
    negated["properties"]["title"]["not"] = json!({"const": ""});
    job.response_schema = Some(negated);
    let e = err(&job);
    assert_eq!(e.code(), "ERR_BATCHLING_INVALID_SCHEMA");
    assert_eq!(
        e.to_string(),
        "job `s1`: `responseSchema` cannot be expressed in OpenAI's strict structured-output \
         mode: `not` at #/properties/title: not supported: strict mode has no negation"
    );
    let mut map = schema();
    map["properties"]["counts"] =
        json!({"type": "object", "additionalProperties": {"type": "integer"}});
    job.response_schema = Some(map);
    assert!(err(&job)
        .to_string()
        .contains("`additionalProperties` at #/properties/counts: an object with free keys"));
    let mut optional = schema();
    optional["required"] = json!(["title"]);
    // Anthropic takes optional fields, but the root must be an object.
    let mut a = structured("claude-haiku-4-5");
    a.response_schema = Some(optional);
    assert!(validate(&a).is_ok());
    a.response_schema = Some(json!({"type": "array"}));
    assert!(err(&a)
        .to_string()
        .contains("for Anthropic structured output"));
}

#[test]
fn temperature_and_max_tokens_errors() {
    let job = JobSpec {
        temperature: Some(0.0),
        ..chat("t", "o3")
    };
    let e = err(&job);
    assert_eq!(e.code(), "ERR_BATCHLING_TEMPERATURE_UNSUPPORTED");
    assert_eq!(
        e.to_string(),
        "job `t`: model `o3` rejects `temperature`; remove it for this job"
    );
    assert_eq!(
        err(&JobSpec {
            temperature: Some(0.3),
            ..chat("t", "claude-opus-4-7")
        })
        .code(),
        "ERR_BATCHLING_TEMPERATURE_UNSUPPORTED"
    );
    let e = err(&JobSpec {
        temperature: Some(1.5),
        ..chat("t2", "claude-sonnet-4-6")
    });
    assert_eq!(
        e.to_string(),
        "job `t2`: temperature 1.5 is out of range for `claude-sonnet-4-6`; use a value from 0 to 1"
    );
    for t in [-0.1, 2.1, f64::NAN] {
        assert_eq!(
            err(&JobSpec {
                temperature: Some(t),
                ..chat("t3", "gpt-4.1")
            })
            .code(),
            "ERR_BATCHLING_TEMPERATURE_OUT_OF_RANGE"
        );
    }

    let e = err(&JobSpec {
        max_tokens: Some(20_000),
        ..chat("m", "gpt-4o")
    });
    assert_eq!(
        e,
        JobError::MaxTokensOutOfRange {
            id: "m".into(),
            model: "gpt-4o".into(),
            max_tokens: 20_000,
            limit: 16_384
        }
    );
    assert_eq!(
        e.to_string(),
        "job `m`: maxTokens 20000 is above `gpt-4o`'s limit of 16384 output tokens; lower \
         `maxTokens` to at most 16384"
    );
    let e = err(&JobSpec {
        max_tokens: Some(0),
        ..chat("z", "gemini-2.5-flash")
    });
    assert_eq!(e.to_string(), "job `z`: `maxTokens` must be at least 1");
    assert!(validate(&JobSpec {
        max_tokens: Some(16_384),
        ..chat("ok", "gpt-4o")
    })
    .is_ok());
}

#[test]
fn extra_errors() {
    let with_extra = |model: &str, extra: Value, schema: bool| {
        let mut job = if schema {
            structured(model)
        } else {
            chat("x", model)
        };
        job.extra = Some(extra.as_object().unwrap().clone());
        job
    };
    let e = err(&with_extra("gpt-4o", json!({"model": "gpt-5"}), false));
    assert_eq!(
        e.to_string(),
        "job `x`: `extra` may not set `model`; set the job's `model` instead"
    );
    let e = err(&with_extra("gpt-4o", json!({"stream": true}), false));
    assert_eq!(
        e.to_string(),
        "job `x`: `extra` may not set `stream`; batched requests cannot stream"
    );
    let e = err(&with_extra(
        "gpt-4o",
        json!({"response_format": {"type": "json_object"}}),
        true,
    ));
    assert_eq!(
        e.to_string(),
        "job `s1`: `extra` sets `response_format`, which `responseSchema` needs; remove one of them"
    );
    assert_eq!(
        err(&with_extra(
            "gemini-2.5-flash",
            json!({"generationConfig": {"responseMimeType": "text/plain"}}),
            true
        ))
        .code(),
        "ERR_BATCHLING_CONFLICTING_EXTRA"
    );
    let e = err(&with_extra(
        "claude-sonnet-4-6",
        json!({"thinking": {"type": "adaptive"}}),
        true,
    ));
    assert!(e
        .to_string()
        .starts_with("job `s1`: `extra.thinking` cannot be combined"));
    // Without a schema these are the caller's business.
    assert!(validate(&with_extra(
        "claude-sonnet-4-6",
        json!({"thinking": {"type": "adaptive"}}),
        false
    ))
    .is_ok());
    assert!(validate(&with_extra(
        "claude-sonnet-4-6",
        json!({"thinking": {"type": "disabled"}}),
        true
    ))
    .is_ok());
}

#[test]
fn too_large_and_not_batchable() {
    // An image just over Gemini's 20 MB per request (a batch this big goes as a file, but one
    // request with its inline data may not pass 20 MB).
    let mut data = b64(b"\x89PNG\r\n\x1a\n\0");
    data.push_str(&"AAAA".repeat(5_000_000));
    let job = ask(
        "big",
        "gemini-2.5-flash",
        Some(FileInput {
            name: "big.png".into(),
            media_type: "image/png".into(),
            data_base64: data,
        }),
        "?",
    );
    let e = validate(&job).unwrap_err();
    assert_eq!(e.code(), "ERR_BATCHLING_REQUEST_TOO_LARGE");
    assert!(
        e.to_string().starts_with(
            "job `big`: the request is 20.0 MB but a gemini batch request may be at most 20.0 MB;"
        ),
        "{e}"
    );
    // The same image fits an Anthropic request (32 MB).
    let mut a = job.clone();
    a.model = "claude-haiku-4-5".into();
    assert!(validate(&a).is_ok());

    let azure = ProviderEndpoint {
        base_url: "https://r.openai.azure.com/openai/deployments/d1".into(),
        api_key: "k".into(),
        headers: BTreeMap::new(),
    };
    let e = build_request(&chat("az", "gpt-4o"), &azure).unwrap_err();
    assert_eq!(
        e.to_string(),
        "job `az`: the batch engine would not batch this request (POST \
         https://r.openai.azure.com/openai/deployments/d1/chat/completions passes through: \
         unknown_url); check the provider base URL"
    );
}

// ---------------------------------------------------------------------------------------------
// Results.

fn approx(a: Option<f64>, b: f64) {
    let a = a.expect("a cost");
    assert!((a - b).abs() < 1e-12, "{a} != {b}");
}

#[test]
fn openai_results() {
    let job = chat("o", "gpt-4o-mini");
    let body = r#"{"id":"chatcmpl-9758Iw","object":"chat.completion","created":1763880100,"model":"gpt-4o-mini-2024-07-18",
        "choices":[{"index":0,"message":{"role":"assistant","content":"12","refusal":null},"finish_reason":"stop"}],
        "usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13}}"#;
    let r = extract_result(&job, 200, body);
    assert!(r.ok, "{r:?}");
    assert_eq!(r.response.as_deref(), Some("12"));
    assert_eq!((r.input_tokens, r.output_tokens), (Some(12), Some(1)));
    assert_eq!(r.finish_reason.as_deref(), Some("stop"));
    // Batch price: half of 0.15 / 0.60 per MTok.
    approx(r.cost_usd, (12.0 * 0.15 + 0.60) / 1e6 * 0.5);
    assert_eq!(r.error, None);

    let refusal = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":7}}"#;
    let r = extract_result(&structured("gpt-4o"), 200, refusal);
    assert!(!r.ok);
    assert_eq!(
        r.error.as_deref(),
        Some("the model refused: I can't help with that.")
    );
    assert_eq!(r.output_tokens, Some(7));

    // A reasoning model that spent the whole cap thinking.
    let mut job = chat("r", "gpt-5-mini");
    job.max_tokens = Some(100);
    let empty = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"length"}],"usage":{"prompt_tokens":20,"completion_tokens":100}}"#;
    let r = extract_result(&job, 200, empty);
    assert!(!r.ok && r.truncated);
    assert_eq!(
        r.error.as_deref(),
        Some(
            "the answer is empty: the model used every output token before writing any \
              (thinking and reasoning count towards the cap) (the output hit the 100-token cap; \
              raise `maxTokens`)"
        )
    );
    // A truncated but non-empty answer is still an answer.
    let cut = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Once upon"},"finish_reason":"length"}]}"#;
    let r = extract_result(&job, 200, cut);
    assert!(r.ok && r.truncated);
    assert_eq!((r.input_tokens, r.cost_usd), (None, None));
}

#[test]
fn structured_results() {
    let job = structured("gpt-4.1-mini");
    let answer = json!({"title": "Q3", "pages": 12, "tags": ["a"], "note": null});
    let ok_body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": answer.to_string()}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20}});
    let r = extract_result(&job, 200, &ok_body.to_string());
    assert!(r.ok, "{r:?}");
    assert_eq!(r.parsed_response, Some(answer.clone()));
    assert_eq!(r.response, Some(answer.to_string()));

    // Invalid JSON: an error, text kept.
    let bad = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "{\"title\": \"Q3\", "}, "finish_reason": "length"}]});
    let r = extract_result(&job, 200, &bad.to_string());
    assert!(!r.ok);
    assert_eq!(r.response.as_deref(), Some("{\"title\": \"Q3\", "));
    assert_eq!(r.parsed_response, None);
    let msg = r.error.unwrap();
    assert!(
        msg.starts_with("the answer is not valid JSON: EOF while parsing"),
        "{msg}"
    );
    assert!(
        msg.ends_with("(the output hit the model's token cap)"),
        "{msg}"
    );

    // Valid JSON that breaks the schema.
    let wrong = json!({"title": "Q3", "pages": "twelve", "tags": ["a"], "note": null});
    let body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": wrong.to_string()}, "finish_reason": "stop"}]});
    let r = extract_result(&job, 200, &body.to_string());
    assert!(!r.ok);
    assert_eq!(
        r.error.as_deref(),
        Some("the answer does not match responseSchema: $.pages: expected integer, got string")
    );
    assert_eq!(r.response, Some(wrong.to_string()));

    // A fenced answer (some models add one even in JSON mode) is accepted.
    let fenced = format!("```json\n{answer}\n```");
    let body = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": fenced}]}, "finishReason": "STOP"}]});
    let r = extract_result(&structured("gemini-2.5-flash"), 200, &body.to_string());
    assert_eq!(r.parsed_response, Some(answer));
}

#[test]
fn anthropic_results_with_citations() {
    let job = ask(
        "c",
        "claude-sonnet-4-6",
        Some(file("report.pdf", "application/pdf", PDF)),
        "Revenue?",
    );
    let body = r#"{"id":"msg_01X","type":"message","role":"assistant","model":"claude-sonnet-4-6",
      "content":[
        {"type":"text","text":"According to the report, "},
        {"type":"text","text":"revenue grew 12%","citations":[{"type":"page_location","cited_text":"Revenue grew 12% year over year.","document_index":0,"document_title":"report.pdf","start_page_number":3,"end_page_number":4}]},
        {"type":"text","text":" and margins held","citations":[{"type":"char_location","cited_text":"Margins were flat.","document_index":1,"document_title":null,"start_char_index":0,"end_char_index":18}]},
        {"type":"text","text":"."}],
      "stop_reason":"end_turn","stop_sequence":null,
      "usage":{"input_tokens":3000,"output_tokens":40,"cache_read_input_tokens":0}}"#;
    let r = extract_result(&job, 200, body);
    assert!(r.ok);
    assert_eq!(
        r.response.as_deref(),
        Some("According to the report, revenue grew 12% and margins held.")
    );
    assert_eq!(
        r.citations,
        vec![
            Citation {
                cited_text: "Revenue grew 12% year over year.".into(),
                source: "report.pdf".into(),
                start_page: Some(3),
                end_page: Some(3),
            },
            Citation {
                cited_text: "Margins were flat.".into(),
                source: "document 1".into(),
                start_page: None,
                end_page: None,
            },
        ]
    );
    approx(r.cost_usd, (3000.0 * 3.0 + 40.0 * 15.0) / 1e6 * 0.5);
    assert_eq!(r.finish_reason.as_deref(), Some("end_turn"));

    // Cut off at max_tokens: still an answer, flagged.
    let cut = r#"{"content":[{"type":"text","text":"Partial"}],"stop_reason":"max_tokens","usage":{"input_tokens":10,"output_tokens":1024,"cache_creation_input_tokens":5}}"#;
    let r = extract_result(&job, 200, cut);
    assert!(r.ok && r.truncated);
    assert_eq!(r.input_tokens, Some(15));

    let refusal =
        r#"{"content":[],"stop_reason":"refusal","usage":{"input_tokens":10,"output_tokens":0}}"#;
    let r = extract_result(&job, 200, refusal);
    assert_eq!(
        r.error.as_deref(),
        Some("the model declined to answer (stop_reason: refusal)")
    );
}

#[test]
fn anthropic_structured_results() {
    let job = structured("claude-haiku-4-5");
    let good = json!({"content": [{"type": "tool_use", "id": "toolu_1", "name": "response",
        "input": {"title": "Q3", "pages": 2, "tags": ["b"], "note": "draft"}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 500, "output_tokens": 60}});
    let r = extract_result(&job, 200, &good.to_string());
    assert!(r.ok, "{r:?}");
    assert_eq!(r.parsed_response.as_ref().unwrap()["note"], "draft");
    assert_eq!(
        r.response.as_deref(),
        Some(r#"{"title":"Q3","pages":2,"tags":["b"],"note":"draft"}"#)
    );
    approx(r.cost_usd, (500.0 * 1.0 + 60.0 * 5.0) / 1e6 * 0.5);

    let violation = json!({"content": [{"type": "tool_use", "id": "toolu_1", "name": "response",
        "input": {"title": "Q3", "pages": 2, "tags": ["b"], "note": null, "extra": 1}}],
        "stop_reason": "tool_use"});
    let r = extract_result(&job, 200, &violation.to_string());
    assert!(!r.ok);
    assert_eq!(
        r.error.as_deref(),
        Some("the answer does not match responseSchema: $: unexpected property `extra`")
    );
    assert!(r.response.unwrap().contains("\"extra\":1"));

    // No tool call: the text is tried as JSON.
    let text =
        json!({"content": [{"type": "text", "text": "Sorry, no."}], "stop_reason": "end_turn"});
    let r = extract_result(&job, 200, &text.to_string());
    assert!(r.error.unwrap().starts_with("the answer is not valid JSON"));
}

#[test]
fn gemini_results() {
    let job = chat("g", "gemini-2.5-flash");
    let body = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"thinking...","thought":true},{"text":"Rayleigh "},{"text":"scattering."}]},"finishReason":"STOP","index":0}],
      "usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":20,"thoughtsTokenCount":100,"totalTokenCount":128},"modelVersion":"gemini-2.5-flash","responseId":"abc"}"#;
    let r = extract_result(&job, 200, body);
    assert!(r.ok);
    assert_eq!(r.response.as_deref(), Some("Rayleigh scattering."));
    assert_eq!((r.input_tokens, r.output_tokens), (Some(8), Some(120)));
    approx(r.cost_usd, (8.0 * 0.30 + 120.0 * 2.50) / 1e6 * 0.5);

    let blocked =
        r#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":8}}"#;
    let r = extract_result(&job, 200, blocked);
    assert_eq!(
        r.error.as_deref(),
        Some("Gemini blocked the prompt (SAFETY)")
    );
    let withheld = r#"{"candidates":[{"finishReason":"RECITATION","index":0}]}"#;
    assert_eq!(
        extract_result(&job, 200, withheld).error.as_deref(),
        Some("Gemini withheld the answer (RECITATION)")
    );
    let cut =
        r#"{"candidates":[{"content":{"parts":[{"text":"Ray"}]},"finishReason":"MAX_TOKENS"}]}"#;
    let r = extract_result(&job, 200, cut);
    assert!(r.ok && r.truncated);
    // The adapter's empty inline result.
    let r = extract_result(
        &job,
        200,
        r#"{"candidates":[],"usageMetadata":{},"modelVersion":"gemini-2.5-flash"}"#,
    );
    assert_eq!(r.error.as_deref(), Some("the response has no candidates"));
}

#[test]
fn error_statuses_and_bad_bodies() {
    let r = extract_result(
        &chat("e", "gpt-4o"),
        400,
        r#"{"error":{"message":"Invalid 'messages': empty array","type":"invalid_request_error","param":"messages","code":"empty_array"}}"#,
    );
    assert!(!r.ok);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error.as_deref(),
        Some("HTTP 400: Invalid 'messages': empty array")
    );
    assert_eq!((r.input_tokens, r.cost_usd), (None, None));

    // The batch engine's synthetic "did not run" answers read the same way.
    for (provider, model) in [
        (ProviderId::OpenAi, "gpt-4o"),
        (ProviderId::Anthropic, "claude-haiku-4-5"),
        (ProviderId::Gemini, "gemini-2.5-flash"),
    ] {
        let resp = adapter(provider).ended_response("batch_9", EndKind::Expired, "");
        let r = extract_result(&chat("x", model), resp.status, &resp.body);
        assert_eq!(r.status, 504);
        let msg = r.error.unwrap();
        assert!(msg.starts_with("HTTP 504: batchling:"), "{msg}");
        assert!(msg.contains("batch_9"), "{msg}");
    }

    let r = extract_result(&chat("x", "gpt-4o"), 200, "<html>oops</html>");
    assert!(r
        .error
        .unwrap()
        .starts_with("the response body is not JSON"));
    let r = extract_result(&chat("x", "gpt4o"), 200, "{}");
    assert_eq!(
        r.error.as_deref(),
        Some("unknown model `gpt4o`; did you mean gpt-4o, gpt-4o-mini, gpt-4.1?")
    );
    let r = extract_result(&chat("x", "gpt-4o"), 200, "{}");
    assert_eq!(r.error.as_deref(), Some("the response has no choices"));
}

/// The whole path through the batch engine's adapters: build → classify → one batch result line →
/// the adapter's synthetic response → result.
#[test]
fn round_trip_through_the_adapters() {
    let cases = [
        (
            ask("rt-o", "gpt-4o-mini", None, "2+2?"),
            r#"{"id":"batch_req_1","custom_id":"c1","response":{"status_code":200,"request_id":"req_1","body":{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"4"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}},"error":null}"#,
        ),
        (
            ask("rt-a", "claude-sonnet-4-6", None, "2+2?"),
            r#"{"custom_id":"c1","result":{"type":"succeeded","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[{"type":"text","text":"4"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1}}}}"#,
        ),
        (
            ask("rt-g", "gemini-2.5-flash", None, "2+2?"),
            r#"{"key":"c1","response":{"candidates":[{"content":{"role":"model","parts":[{"text":"4"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":1,"totalTokenCount":10}}}"#,
        ),
    ];
    for (job, line) in cases {
        let route = classify(&build(&job)).unwrap();
        let parsed = adapter(route.provider).parse_results("batch_1", line);
        assert!(parsed.malformed.is_empty(), "{:?}", parsed.malformed);
        let resp = &parsed.items[0].response;
        let r = extract_result(&job, resp.status, &resp.body);
        assert!(r.ok, "{r:?}");
        assert_eq!(r.response.as_deref(), Some("4"));
        assert_eq!((r.input_tokens, r.output_tokens), (Some(9), Some(1)));
        assert!(r.cost_usd.unwrap() > 0.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Estimates.

#[test]
fn estimates() {
    // Text: exactly pricing::estimate on the built body.
    let job = chat("e", "gpt-4o-mini");
    let body = body_of(&build(&job));
    let direct = pricing::estimate(ProviderId::OpenAi, "gpt-4o-mini", &body);
    let e = estimate_job(&job).unwrap();
    assert_eq!(e, direct);
    assert_eq!(estimate_job_cost(&job), direct.batch_usd);

    // Anthropic's default cap is the output estimate.
    assert_eq!(
        estimate_job(&chat("a", "claude-haiku-4-5"))
            .unwrap()
            .output_tokens_est,
        1024
    );

    // Files count per page / per image, not per base64 character.
    let pdf_job = ask(
        "p",
        "claude-sonnet-4-6",
        Some(file("r.pdf", "application/pdf", PDF)),
        "Sum.",
    );
    let e = estimate_job(&pdf_job).unwrap();
    let mut stripped = body_of(&build(&pdf_job));
    stripped["messages"][0]["content"][0]["source"]["data"] = json!("");
    let base = pricing::estimate(ProviderId::Anthropic, "claude-sonnet-4-6", &stripped);
    assert_eq!(
        e.input_tokens_est,
        base.input_tokens_est + 2 * PDF_PAGE_TOKENS_EST
    );
    let sync = (e.input_tokens_est as f64 * 3.0 + e.output_tokens_est as f64 * 15.0) / 1e6;
    approx(e.sync_usd, sync);
    approx(e.batch_usd, sync / 2.0);

    let img = estimate_job(&ask(
        "i",
        "gpt-4o",
        Some(file("a.png", "image/png", PNG)),
        "?",
    ))
    .unwrap();
    let txt = estimate_job(&ask("i", "gpt-4o", None, "?")).unwrap();
    assert!(img.input_tokens_est >= txt.input_tokens_est + IMAGE_TOKENS_EST);

    assert_eq!(estimate_job_cost(&chat("x", "gpt4o")), None);
}

// ---------------------------------------------------------------------------------------------
// JSON shapes.

#[test]
fn job_spec_json() {
    let job: JobSpec = serde_json::from_value(json!({
        "id": "j1",
        "model": "gpt-4o",
        "file": {"name": "a.pdf", "mediaType": "application/pdf", "dataBase64": b64(PDF)},
        "prompt": "Sum.",
        "maxTokens": 100,
        "responseSchema": schema(),
        "extra": {"seed": 1},
        "temperature": null,
    }))
    .unwrap();
    assert_eq!(job.max_tokens, Some(100));
    assert_eq!(job.file.as_ref().unwrap().media_type, "application/pdf");
    assert!(format!("{job:?}").contains(&format!("<{} chars>", b64(PDF).len())));
    assert!(validate(&job).is_ok());
    let back = serde_json::to_value(&job).unwrap();
    assert_eq!(back["maxTokens"], 100);
    assert!(back.get("messages").is_none());

    let typo = serde_json::from_value::<JobSpec>(
        json!({"id": "j", "model": "gpt-4o", "prompt": "x", "max_tokens": 5}),
    );
    assert!(typo
        .unwrap_err()
        .to_string()
        .contains("unknown field `max_tokens`"));

    let r = extract_result(&chat("x", "gpt-4o"), 500, "");
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v,
        json!({"jobId": "x", "ok": false, "status": 500, "response": null, "parsedResponse": null,
               "citations": [], "inputTokens": null, "outputTokens": null, "costUsd": null,
               "finishReason": null, "truncated": false, "error": "HTTP 500: HTTP 500"})
    );
    assert_eq!(serde_json::from_value::<JobResult>(v).unwrap(), r);

    let ep: ProviderEndpoint =
        serde_json::from_value(json!({"baseUrl": "", "apiKey": "k"})).unwrap();
    assert!(ep.headers.is_empty());
}

#[test]
fn content_blocks_reach_anthropic_unchanged_and_others_as_text() {
    let long = "You are a careful analyst. ".repeat(200);
    let system: Value = json!([
        {"type": "text", "text": "Rules:"},
        {"type": "text", "text": long, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]);
    let user: Value = json!([
        {"type": "text", "text": "Shared context", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Question 1"},
    ]);
    let mut job = chat("blocks", "claude-haiku-4-5");
    job.system = Some(Content::Blocks(system.as_array().unwrap().clone()));
    job.messages = Some(vec![Message {
        role: "user".into(),
        content: Content::Blocks(user.as_array().unwrap().clone()),
    }]);
    let body = body_of(&build(&job));
    assert_eq!(body["system"], system);
    assert_eq!(body["messages"][0]["content"], user);
    // The estimate charges the cached prefix at the 1-hour write rate: an upper bound.
    let estimate = estimate_job(&job).unwrap();
    let flat = pricing::estimate(ProviderId::Anthropic, "claude-haiku-4-5", &body);
    assert!(estimate.batch_usd.unwrap() >= flat.batch_usd.unwrap());

    // A string system prompt beside block messages stays a string.
    let mut plain = job.clone();
    plain.system = Some("Be brief.".into());
    assert_eq!(body_of(&build(&plain))["system"], json!("Be brief."));

    // OpenAI gets the blocks' text.
    let mut openai = job.clone();
    openai.model = "gpt-4o-mini".into();
    let body = body_of(&build(&openai));
    assert_eq!(
        body["messages"][0],
        json!({"role": "system", "content": format!("Rules:\n\n{long}")})
    );
    assert_eq!(
        body["messages"][1]["content"],
        json!("Shared context\n\nQuestion 1")
    );

    // Bad blocks are refused, naming the job and where.
    let mut bad = openai.clone();
    bad.messages = Some(vec![Message {
        role: "user".into(),
        content: Content::Blocks(vec![json!({"type": "image", "source": {}})]),
    }]);
    let e = build_request(&bad, &endpoint(ProviderId::OpenAi)).unwrap_err();
    assert_eq!(e.code(), "ERR_BATCHLING_INVALID_MESSAGE");
    assert!(
        e.to_string()
            .contains("job `blocks`: messages[0] `content`: content block 0 has type `image`"),
        "{e}"
    );
    let mut bad = job.clone();
    bad.system = Some(Content::Blocks(vec![json!("text")]));
    let e = validate(&bad).unwrap_err();
    assert!(
        e.to_string()
            .contains("job `blocks`: `system` content block 0 must be an object with a `type`"),
        "{e}"
    );
    bad.system = Some(Content::Blocks(vec![]));
    assert!(validate(&bad)
        .unwrap_err()
        .to_string()
        .contains("has no content blocks"));
}
