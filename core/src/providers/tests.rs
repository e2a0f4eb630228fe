//! Cross-adapter tests (classification, fingerprints) and helpers shared by the adapter tests.

use proptest::prelude::*;
use serde_json::json;

use super::*;

pub(crate) fn req(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> HttpRequest {
    HttpRequest {
        method: method.into(),
        url: url.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.into(),
    }
}

pub(crate) fn ctx_for<'a>(route: &'a Route, tag: &'a str) -> BatchContext<'a> {
    BatchContext { route, tag }
}

/// A generated JSONL results body and what a correct parser must make of it.
#[derive(Debug, Clone)]
pub(crate) struct JsonlCase {
    pub body: String,
    /// custom_ids of the well-formed lines, in line order.
    pub good_ids: Vec<String>,
    /// 1-based numbers of the malformed lines, ascending.
    pub bad_lines: Vec<usize>,
}

#[derive(Debug, Clone)]
enum Entry {
    Good,
    /// A valid line cut after this fraction (per mille) of its bytes; never empty, never whole.
    Truncated(u16),
    /// Arbitrary non-blank text without a newline.
    Garbage(String),
    /// Whitespace only: skipped, not reported.
    Blank(&'static str),
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        4 => Just(Entry::Good),
        2 => (0u16..1000).prop_map(Entry::Truncated),
        2 => "[^\n]{1,60}"
            // A leading byte-order mark is an encoding marker the parsers strip, not garbage.
            .prop_filter("non-blank", |s| {
                !s.trim_start_matches('\u{feff}').trim().is_empty()
                    && !s.starts_with('\u{feff}')
            })
            .prop_map(Entry::Garbage),
        1 => prop_oneof![Just(""), Just("  "), Just("\r"), Just("\t ")].prop_map(Entry::Blank),
    ]
}

/// Mixed well-formed, truncated, garbage and blank lines, shuffled, with or without a final
/// newline. `valid_line(custom_id, n)` renders a well-formed result line for the adapter.
pub(crate) fn mixed_jsonl(valid_line: fn(&str, u32) -> String) -> impl Strategy<Value = JsonlCase> {
    (prop::collection::vec(entry(), 0..40), any::<bool>())
        .prop_flat_map(|(entries, trailing)| (Just(entries).prop_shuffle(), Just(trailing)))
        .prop_map(move |(entries, trailing_newline)| {
            let mut lines = Vec::new();
            let mut good_ids = Vec::new();
            let mut bad_lines = Vec::new();
            for (i, e) in entries.into_iter().enumerate() {
                let n = i as u32;
                let id = format!("id-{i}");
                match e {
                    Entry::Good => {
                        lines.push(valid_line(&id, n));
                        good_ids.push(id);
                    }
                    Entry::Truncated(per_mille) => {
                        let full = valid_line(&id, n);
                        let cut = (full.len() * per_mille as usize / 1000).clamp(1, full.len() - 1);
                        let mut cut = cut;
                        while !full.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        lines.push(full[..cut.max(1)].to_string());
                        bad_lines.push(i + 1);
                    }
                    Entry::Garbage(g) => {
                        lines.push(g);
                        bad_lines.push(i + 1);
                    }
                    Entry::Blank(b) => lines.push(b.to_string()),
                }
            }
            let mut body = lines.join("\n");
            if trailing_newline && !body.is_empty() {
                body.push('\n');
            }
            JsonlCase {
                body,
                good_ids,
                bad_lines,
            }
        })
}

/// Anything at all: random text including newlines, and lossily decoded random bytes.
pub(crate) fn garbage_lines_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,400}",
        prop::collection::vec(any::<u8>(), 0..400)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        prop::collection::vec(
            prop_oneof![
                Just("{".to_string()),
                Just("}".to_string()),
                Just("\n".to_string()),
                Just("\"custom_id\":".to_string()),
                Just("\"key\":".to_string()),
                Just("\"result\":{\"type\":\"succeeded\"".to_string()),
                Just("\"response\":".to_string()),
                Just("null".to_string()),
                Just(",".to_string()),
                "[a-z0-9\"]{0,5}",
            ],
            0..80
        )
        .prop_map(|parts| parts.concat()),
    ]
}

#[test]
fn classify_each_provider() {
    let openai = classify(&req(
        "POST",
        "https://api.openai.com/v1/chat/completions",
        &[("authorization", "Bearer sk-1")],
        r#"{"model":"gpt-4o","messages":[]}"#,
    ))
    .unwrap();
    assert_eq!(
        (openai.provider, openai.endpoint.as_str()),
        (ProviderId::OpenAi, "/v1/chat/completions")
    );

    let anthropic = classify(&req(
        "POST",
        "https://api.anthropic.com/v1/messages",
        &[
            ("x-api-key", "sk-ant-1"),
            ("anthropic-version", "2023-06-01"),
        ],
        r#"{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[]}"#,
    ))
    .unwrap();
    assert_eq!(
        (anthropic.provider, anthropic.endpoint.as_str()),
        (ProviderId::Anthropic, "/v1/messages")
    );

    let gemini = classify(&req(
        "POST",
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent",
        &[("x-goog-api-key", "AIza1")],
        r#"{"contents":[]}"#,
    ))
    .unwrap();
    assert_eq!(
        (gemini.provider, gemini.endpoint.as_str()),
        (ProviderId::Gemini, "generateContent")
    );
    assert_eq!(gemini.model, "gemini-2.5-flash");
}

#[test]
fn classify_custom_local_base_urls() {
    let o = classify(&req(
        "POST",
        "http://127.0.0.1:4010/v1/embeddings",
        &[],
        r#"{"model":"e","input":"x"}"#,
    ))
    .unwrap();
    assert_eq!(
        (o.provider, o.base_url.as_str()),
        (ProviderId::OpenAi, "http://127.0.0.1:4010/v1")
    );
    let a = classify(&req(
        "POST",
        "http://127.0.0.1:4010/anthropic/v1/messages?beta=true",
        &[
            ("authorization", "Bearer x"),
            ("anthropic-version", "2026-10-21"),
        ],
        r#"{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}"#,
    ))
    .unwrap();
    assert_eq!(
        (a.provider, a.base_url.as_str()),
        (ProviderId::Anthropic, "http://127.0.0.1:4010/anthropic")
    );
    let g = classify(&req(
        "POST",
        "http://127.0.0.1:4010/v1beta/models/gemini-2.5-pro:generateContent?key=AIzaQ",
        &[],
        r#"{"contents":[]}"#,
    ))
    .unwrap();
    assert_eq!(
        (g.provider, g.base_url.as_str()),
        (ProviderId::Gemini, "http://127.0.0.1:4010/v1beta")
    );
}

#[test]
fn classify_under_nested_declared_hosts_finds_the_provider_that_batches_the_path() {
    // One gateway: OpenAI under /v1, Anthropic at its root (a prefix of OpenAI's base).
    let spec = |provider, base_url: &str| HostSpec {
        base_url: base_url.into(),
        provider,
        completion_window: None,
        max_requests: None,
        max_file_bytes: None,
        max_inline_bytes: None,
    };
    let hosts = HostTable::with_declared(&[
        spec(ProviderId::OpenAi, "http://gw.local/v1"),
        spec(ProviderId::Anthropic, "http://gw.local"),
    ])
    .unwrap();
    let anthropic = classify_with(
        &req(
            "POST",
            "http://gw.local/v1/messages",
            &[("x-api-key", "k"), ("anthropic-version", "2023-06-01")],
            r#"{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}"#,
        ),
        &hosts,
    )
    .unwrap();
    assert_eq!(
        (anthropic.provider, anthropic.base_url.as_str()),
        (ProviderId::Anthropic, "http://gw.local")
    );
    let openai = classify_with(
        &req(
            "POST",
            "http://gw.local/v1/chat/completions",
            &[("authorization", "Bearer k")],
            r#"{"model":"gpt-4o-mini","messages":[]}"#,
        ),
        &hosts,
    )
    .unwrap();
    assert_eq!(
        (openai.provider, openai.base_url.as_str()),
        (ProviderId::OpenAi, "http://gw.local/v1")
    );
    // Neither batches it: the best match's reason stands.
    assert_eq!(
        classify_with(
            &req("GET", "http://gw.local/v1/chat/completions", &[], ""),
            &hosts
        )
        .unwrap_err(),
        PassThrough::NotPost
    );
}

#[test]
fn classify_pass_through() {
    let cases: &[(HttpRequest, PassThrough)] = &[
        (req("POST", "https://example.com/v1/whatever", &[], r#"{"model":"m"}"#), PassThrough::UnknownUrl),
        (req("POST", "https://api.openai.com/v1/images/generations", &[], r#"{"model":"m"}"#), PassThrough::UnknownUrl),
        (req("GET", "https://api.openai.com/v1/chat/completions", &[], ""), PassThrough::NotPost),
        (
            req("POST", "https://api.openai.com/v1/responses", &[], r#"{"model":"m","stream":true}"#),
            PassThrough::Streaming,
        ),
        (
            req(
                "POST",
                "https://api.anthropic.com/v1/messages",
                &[("anthropic-version", "2023-06-01")],
                r#"{"model":"m","max_tokens":1,"messages":[],"stream":true}"#,
            ),
            PassThrough::Streaming,
        ),
        (
            req(
                "POST",
                "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                &[("x-goog-api-key", "k")],
                r#"{"contents":[]}"#,
            ),
            PassThrough::Streaming,
        ),
        (
            req(
                "POST",
                "https://api.anthropic.com/v1/messages/batches",
                &[("anthropic-version", "2023-06-01")],
                r#"{"requests":[]}"#,
            ),
            PassThrough::UnknownUrl,
        ),
        (
            req(
                "POST",
                "https://api.anthropic.com/v1/messages/count_tokens",
                &[("anthropic-version", "2023-06-01")],
                r#"{"model":"m","messages":[]}"#,
            ),
            PassThrough::UnknownUrl,
        ),
        (
            req("POST", "https://api.openai.com/v1/files", &[("content-type", "multipart/form-data; boundary=b")], "--b"),
            PassThrough::UnknownUrl,
        ),
        (
            req("POST", "https://api.openai.com/v1/chat/completions", &[("content-type", "text/plain")], "hi"),
            PassThrough::NotJson,
        ),
    ];
    for (r, expected) in cases {
        assert_eq!(
            classify(r).unwrap_err(),
            *expected,
            "{} {}",
            r.method,
            r.url
        );
    }
}

#[test]
fn fingerprints_separate_credentials_and_never_contain_them() {
    let fp = |url: &str, headers: &[(&str, &str)], body: &str| {
        classify(&req("POST", url, headers, body))
            .unwrap()
            .credential_fingerprint
    };
    let chat = "https://api.openai.com/v1/chat/completions";
    let body = r#"{"model":"gpt-4o","messages":[]}"#;
    let base = fp(chat, &[("Authorization", "Bearer sk-AAAA")], body);
    assert_eq!(
        base,
        fp(
            chat,
            &[
                ("authorization", "Bearer sk-AAAA"),
                ("x-stainless-retry-count", "1")
            ],
            body
        )
    );
    assert_ne!(base, fp(chat, &[("authorization", "Bearer sk-BBBB")], body));
    assert_ne!(
        base,
        fp(
            chat,
            &[
                ("authorization", "Bearer sk-AAAA"),
                ("openai-organization", "org-2")
            ],
            body
        )
    );
    assert_ne!(
        base,
        fp(
            chat,
            &[("authorization", "Bearer sk-AAAA"), ("openai-project", "p")],
            body
        )
    );
    assert_ne!(
        base,
        fp(
            "http://127.0.0.1:9/v1/chat/completions",
            &[("authorization", "Bearer sk-AAAA")],
            body
        )
    );
    assert!(!base.contains("sk-AAAA"));

    let msgs = "https://api.anthropic.com/v1/messages";
    let abody = r#"{"model":"claude-sonnet-4-5","max_tokens":1,"messages":[]}"#;
    let a = fp(
        msgs,
        &[
            ("x-api-key", "sk-ant-KEY"),
            ("anthropic-version", "2023-06-01"),
        ],
        abody,
    );
    let beta = fp(
        msgs,
        &[
            ("x-api-key", "sk-ant-KEY"),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "x-2025"),
        ],
        abody,
    );
    assert_ne!(a, beta);
    assert_ne!(
        a,
        fp(
            msgs,
            &[
                ("x-api-key", "sk-ant-OTHER"),
                ("anthropic-version", "2023-06-01")
            ],
            abody
        )
    );
    assert!(!a.contains("sk-ant-KEY"));

    let gen =
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent";
    let g1 = fp(gen, &[("x-goog-api-key", "AIza1")], "{}");
    // The query credential is the same credential as the header.
    assert_eq!(g1, fp(&format!("{gen}?key=AIza1"), &[], "{}"));
    assert_ne!(g1, fp(gen, &[("x-goog-api-key", "AIza2")], "{}"));
}

#[test]
fn route_debug_redacts_secrets() {
    let r = classify(&req(
        "POST",
        "https://api.anthropic.com/v1/messages",
        &[
            ("x-api-key", "sk-ant-SECRET"),
            ("anthropic-version", "2023-06-01"),
        ],
        r#"{"model":"claude-sonnet-4-5","max_tokens":1,"messages":[]}"#,
    ))
    .unwrap();
    let dbg = format!("{r:?}");
    assert!(!dbg.contains("sk-ant-SECRET"));
    assert!(dbg.contains("2023-06-01"));
}

#[test]
fn adapter_registry_matches_ids() {
    for p in ProviderId::ALL {
        assert_eq!(adapter(p).id(), p.protocol());
    }
    assert_eq!(ProviderId::OpenAi.to_string(), "openai");
    assert_eq!(
        serde_json::to_string(&ProviderId::Anthropic).unwrap(),
        "\"anthropic\""
    );
    assert_eq!(
        serde_json::from_str::<ProviderId>("\"gemini\"").unwrap(),
        ProviderId::Gemini
    );
}

#[test]
fn descriptors_agree_with_ids_serde_and_protocols() {
    for p in ProviderId::ALL {
        let d = p.descriptor();
        assert_eq!(d.id, p);
        // The descriptor's name is what serde reads and writes, so declared hosts and journals
        // keep naming providers the same way.
        assert_eq!(serde_json::to_value(p).unwrap(), json!(d.name), "{p:?}");
        assert_eq!(
            serde_json::from_value::<ProviderId>(json!(d.name)).unwrap(),
            p
        );
        // An OpenAI profile exactly where the OpenAI protocol is spoken.
        assert_eq!(
            d.openai_profile.is_some(),
            p.protocol() == ProviderId::OpenAi,
            "{p:?}"
        );
        // Every built-in host is this provider's, and a request under it is routed to it.
        for pattern in d.hosts {
            let url = format!("{}/chat/completions", pattern.replace("*.", "res."));
            let m = HostTable::builtin().lookup(&url).map(|m| m.provider);
            assert_eq!(m, Some(p), "{url}");
        }
        if let Some(base) = d.default_base_url {
            assert!(
                base.starts_with("https://") && !base.ends_with('/'),
                "{base}"
            );
        }
    }
    // No two descriptors claim the same host, and the ids are distinct.
    let mut hosts: Vec<&str> = PROVIDERS
        .iter()
        .flat_map(|d| d.hosts.iter().copied())
        .collect();
    let n = hosts.len();
    hosts.sort_unstable();
    hosts.dedup();
    assert_eq!(hosts.len(), n);
    assert!(HostTable::builtin()
        .lookup("https://api.groq.com/openai/v1/x")
        .is_some());
}

#[test]
fn every_catalog_model_has_a_job_format() {
    // The job builder reaches a provider only through its descriptor's job format; a model of a
    // provider without one could be named in a job but never built.
    for info in crate::catalog::models::all() {
        assert!(
            info.provider.descriptor().jobs.is_some(),
            "{} ({})",
            info.name,
            info.provider
        );
    }
    let served: Vec<ProviderId> = PROVIDERS
        .iter()
        .filter(|d| d.jobs.is_some())
        .map(|d| d.id)
        .collect();
    assert_eq!(
        served,
        [
            ProviderId::OpenAi,
            ProviderId::Anthropic,
            ProviderId::Gemini
        ]
    );
}

#[test]
fn job_providers_name_their_env_keys_and_base_url() {
    for d in PROVIDERS {
        let served = d.jobs.is_some();
        // Every provider has a batch API, reached by `batchling batches` with this key.
        assert!(d.api_key_env.is_some(), "{}", d.name);
        assert_eq!(d.base_url_env.is_some(), served, "{}", d.name);
        if served {
            assert!(d.default_base_url.is_some(), "{}", d.name);
        }
        // Environment variable names: the provider's name in capitals, then the key's.
        let prefix = format!("{}_", d.name.to_ascii_uppercase());
        for name in [d.api_key_env, d.base_url_env].into_iter().flatten() {
            assert!(name.starts_with(&prefix), "{name}");
            assert!(
                name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{name}"
            );
        }
    }
}
