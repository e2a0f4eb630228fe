//! The host table: which provider a base URL belongs to, with its settings.

use batchling_core::providers::hosts::*;
use batchling_core::providers::ProviderId;

fn spec(base_url: &str, provider: ProviderId) -> HostSpec {
    HostSpec {
        base_url: base_url.into(),
        provider,
        completion_window: None,
        max_requests: None,
        max_file_bytes: None,
        max_inline_bytes: None,
    }
}

#[test]
fn builtin_hosts_match_by_origin_and_prefix() {
    let t = HostTable::builtin();
    let m = t
        .lookup("https://api.groq.com/openai/v1/chat/completions")
        .unwrap();
    assert_eq!(m.provider, ProviderId::Groq);
    assert_eq!(m.base_url, "https://api.groq.com/openai/v1");
    assert_eq!(m.rest_path, "/chat/completions");
    let m = t
        .lookup("https://myres.openai.azure.com/openai/deployments/d1/chat/completions?api-version=2024-10-21")
        .unwrap();
    assert_eq!(m.provider, ProviderId::Azure);
    assert_eq!(m.base_url, "https://myres.openai.azure.com/openai");
    assert_eq!(m.rest_path, "/deployments/d1/chat/completions");
    assert_eq!(m.query, Some("api-version=2024-10-21"));
    assert_eq!(
        t.lookup("https://API.GROQ.COM:443/openai/v1/chat/completions")
            .unwrap()
            .provider,
        ProviderId::Groq
    );
    for (url, p) in [
        (
            "https://api.doubleword.ai/v1/embeddings",
            ProviderId::Doubleword,
        ),
        (
            "https://r.cognitiveservices.azure.com/openai/v1/chat/completions",
            ProviderId::Azure,
        ),
    ] {
        assert_eq!(t.lookup(url).map(|m| m.provider), Some(p), "{url}");
    }
}

#[test]
fn non_matches() {
    let t = HostTable::builtin();
    for url in [
        "https://api.openai.com/v1/chat/completions",
        "http://api.groq.com/openai/v1/chat/completions", // other scheme
        "https://api.groq.com:8443/openai/v1/chat/completions", // other port
        "https://api.groq.com/openai/v10/chat/completions", // not at a segment boundary
        "https://api.groq.com.evil.example/openai/v1/chat/completions",
        "https://openai.azure.com/openai/v1/chat/completions", // the wildcard needs a label
        "https://evilopenai.azure.com/openai/v1/chat/completions",
        "not a url",
    ] {
        assert!(t.lookup(url).is_none(), "{url}");
    }
}

#[test]
fn declared_hosts_come_first_and_longest_prefix_wins() {
    let t = HostTable::with_declared(&[
        spec("http://127.0.0.1:8080/groq/v1", ProviderId::Groq),
        spec("https://api.groq.com/openai/v1", ProviderId::OpenAi),
        spec("http://127.0.0.1:8080", ProviderId::Anthropic),
    ])
    .unwrap();
    let m = t
        .lookup("http://127.0.0.1:8080/groq/v1/chat/completions")
        .unwrap();
    assert_eq!(m.provider, ProviderId::Groq);
    assert_eq!(m.base_url, "http://127.0.0.1:8080/groq/v1");
    let m = t
        .lookup("http://127.0.0.1:8080/v1/chat/completions")
        .unwrap();
    assert_eq!(
        (m.provider, m.rest_path),
        (ProviderId::Anthropic, "/v1/chat/completions")
    );
    // A declared entry beats the built-in for the same prefix.
    assert_eq!(
        t.lookup("https://api.groq.com/openai/v1/chat/completions")
            .unwrap()
            .provider,
        ProviderId::OpenAi
    );
}

#[test]
fn declared_hosts_are_validated() {
    let bad = |base: &str| {
        HostTable::with_declared(&[
            spec("https://ok.example/v1", ProviderId::OpenAi),
            spec(base, ProviderId::OpenAi),
        ])
        .unwrap_err()
    };
    for base in [
        "api.example.com/v1",
        "ftp://x.example/v1",
        "https://x.example/v1?a=1",
        "https://a.*.example/v1",
        "https://",
    ] {
        let e = bad(base);
        assert_eq!(e.index, 1, "{base}");
        assert!(!e.message.is_empty());
    }
    let window = |provider, w: &str| {
        let mut s = spec("https://x.example/v1", provider);
        s.completion_window = Some(w.into());
        HostTable::with_declared(&[s]).map(|_| ())
    };
    for ok in ["24h", "48h", "7d", "168h"] {
        assert_eq!(window(ProviderId::Groq, ok), Ok(()), "{ok}");
    }
    for bad in ["12h", "8d", "169h", "d", "1.5d", "24"] {
        let e = window(ProviderId::Groq, bad).unwrap_err();
        assert!(e.message.contains("Groq"), "{bad}: {}", e.message);
    }
    assert!(window(ProviderId::Azure, "48h").is_err());
    assert_eq!(window(ProviderId::Mistral, "48h"), Ok(()));
    for bad in ["0h", "soon", "24"] {
        assert!(window(ProviderId::Mistral, bad).is_err(), "{bad}");
    }
    assert_eq!(window(ProviderId::Azure, "24h"), Ok(()));
    // Generic hosts take any window (Novita uses "48h").
    assert_eq!(window(ProviderId::OpenAi, "48h"), Ok(()));
    assert_eq!(window(ProviderId::Doubleword, "1h"), Ok(()));
    let mut zero = spec("https://x.example/v1", ProviderId::OpenAi);
    zero.max_requests = Some(0);
    assert!(HostTable::with_declared(&[zero])
        .unwrap_err()
        .message
        .contains("maxRequests"));
    let parsed: HostSpec = serde_json::from_str(
        r#"{"baseUrl":"https://x.example/v1","provider":"groq","completionWindow":"7d","maxRequests":10}"#,
    )
    .unwrap();
    assert_eq!(parsed.provider, ProviderId::Groq);
    assert!(
        serde_json::from_str::<HostSpec>(r#"{"baseUrl":"https://x","provider":"nope"}"#).is_err()
    );
    assert!(serde_json::from_str::<HostSpec>(
        r#"{"baseUrl":"https://x","provider":"openai","apiKey":"k"}"#
    )
    .is_err());
}
