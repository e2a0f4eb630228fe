//! What the core tells a host about the job builder's providers and attachable files (so the host
//! holds no copy of them), through the host functions both bindings export.

use serde_json::{json, Value};

use batchling_core::catalog::models;
use batchling_core::host::jobs::{build_request, file_types_json, provider, providers_json};

fn parse(answer: String) -> Value {
    let v: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(v["ok"], json!(true), "{v}");
    v
}

#[test]
fn providers_are_the_served_ones_with_base_urls_and_env_keys() {
    let v = parse(providers_json());
    assert_eq!(
        v["providers"],
        json!([
            {
                "name": "openai",
                "defaultBaseUrl": "https://api.openai.com/v1",
                "apiKeyEnv": "OPENAI_API_KEY",
                "baseUrlEnv": "OPENAI_BASE_URL",
            },
            {
                "name": "anthropic",
                "defaultBaseUrl": "https://api.anthropic.com",
                "apiKeyEnv": "ANTHROPIC_API_KEY",
                "baseUrlEnv": "ANTHROPIC_BASE_URL",
            },
            {
                "name": "gemini",
                "defaultBaseUrl": "https://generativelanguage.googleapis.com/v1beta",
                "apiKeyEnv": "GEMINI_API_KEY",
                "baseUrlEnv": "GEMINI_BASE_URL",
            },
        ])
    );
}

#[test]
fn every_model_routes_to_a_listed_provider_whose_base_url_builds_its_request() {
    let v = parse(providers_json());
    let listed = v["providers"].as_array().unwrap();
    for info in models::all() {
        let spec = json!({"id": "j", "model": info.name, "prompt": "Hi"}).to_string();
        let name = parse(provider(&spec))["provider"].clone();
        let entry = listed
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{} is served by unlisted {name}", info.name));
        let base = entry["defaultBaseUrl"].as_str().unwrap();
        // The listed base URL, as a host would pass it, is one the batch engine batches.
        let endpoint =
            json!({ name.as_str().unwrap(): {"baseUrl": base, "apiKey": "k"} }).to_string();
        let built = parse(build_request(&spec, &endpoint));
        let url = built["request"]["url"].as_str().unwrap();
        assert!(url.starts_with(&format!("{base}/")), "{url}");
    }
}

#[test]
fn a_job_goes_to_its_providers_endpoint_and_one_without_a_key_is_refused() {
    let spec = json!({"id": "c", "model": "claude-haiku-4-5", "prompt": "Hi"}).to_string();
    let endpoints = json!({
        "openai": {"baseUrl": "http://openai.test/v1", "apiKey": "ko"},
        "anthropic": {"baseUrl": "http://anthropic.test", "apiKey": "ka"},
    })
    .to_string();
    let built = parse(build_request(&spec, &endpoints));
    let url = built["request"]["url"].as_str().unwrap();
    assert_eq!(url, "http://anthropic.test/v1/messages");
    let headers = built["request"]["headers"].to_string();
    assert!(headers.contains("\"ka\""), "{headers}");
    assert!(!headers.contains("\"ko\""), "{headers}");

    let refused = |endpoints: Value| -> Value {
        serde_json::from_str(&build_request(&spec, &endpoints.to_string())).unwrap()
    };
    let message = "job `c` needs an API key for anthropic: set ANTHROPIC_API_KEY or pass \
                   providers: { anthropic: { apiKey } }";
    for endpoints in [
        json!({"openai": {"baseUrl": "", "apiKey": "ko"}}),
        json!({"anthropic": {"baseUrl": "http://anthropic.test", "apiKey": ""}}),
    ] {
        let answer = refused(endpoints);
        assert_eq!(answer["ok"], json!(false), "{answer}");
        assert_eq!(answer["code"], json!("ERR_BATCHLING_MISSING_KEY"));
        assert_eq!(answer["error"], json!(message));
    }
    // An unknown model is refused as such, before any key is looked for.
    let unknown = json!({"id": "u", "model": "no-such-model", "prompt": "Hi"}).to_string();
    let answer: Value = serde_json::from_str(&build_request(&unknown, "{}")).unwrap();
    assert_eq!(
        answer["code"],
        json!("ERR_BATCHLING_UNKNOWN_MODEL"),
        "{answer}"
    );
    let answer: Value = serde_json::from_str(&build_request(&spec, "[]")).unwrap();
    assert_eq!(
        answer["code"],
        json!("ERR_BATCHLING_INVALID_OPTION"),
        "{answer}"
    );
}

#[test]
fn file_types_are_the_attachable_extensions_in_order() {
    let v = parse(file_types_json());
    let pairs: Vec<(&str, &str)> = v["fileTypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["extension"].as_str().unwrap(),
                t["mediaType"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            (".pdf", "application/pdf"),
            (".png", "image/png"),
            (".jpg", "image/jpeg"),
            (".jpeg", "image/jpeg"),
            (".gif", "image/gif"),
            (".webp", "image/webp"),
            (".txt", "text/plain"),
            (".md", "text/markdown"),
            (".csv", "text/csv"),
            (".json", "application/json"),
            (".html", "text/html"),
        ]
    );
    assert_eq!(
        batchling_core::attachments::media_type_for_extension(".JPG"),
        Some("image/jpeg")
    );
    assert_eq!(
        batchling_core::attachments::media_type_for_extension(".heic"),
        None
    );
}

#[test]
fn a_file_of_every_listed_type_builds_a_request() {
    // The smallest bytes each kind is checked for, base64-encoded.
    let data = |media_type: &str| match media_type {
        "application/pdf" => "JVBERi0xLjQKJSVFT0YK", // %PDF-1.4\n%%EOF\n
        "image/png" => "iVBORw0KGgoAAAANSUhEUg==",   // the PNG signature and IHDR
        "image/jpeg" => "/9j/4A==",                  // FF D8 FF E0
        "image/gif" => "R0lGODlh",                   // GIF89a
        "image/webp" => "UklGRgAAAABXRUJQ",          // RIFF....WEBP
        _ => "eyJhIjogMX0K",                         // {"a": 1}\n
    };
    let v = parse(file_types_json());
    let endpoint = json!({"openai": {"baseUrl": "", "apiKey": "k"}}).to_string();
    for t in v["fileTypes"].as_array().unwrap() {
        let media_type = t["mediaType"].as_str().unwrap();
        let spec = json!({
            "id": "f",
            "model": "gpt-5.5",
            "file": {
                "name": format!("a{}", t["extension"].as_str().unwrap()),
                "mediaType": media_type,
                "dataBase64": data(media_type),
            },
            "prompt": "What is this?",
        })
        .to_string();
        let built: Value = serde_json::from_str(&build_request(&spec, &endpoint)).unwrap();
        assert_eq!(built["ok"], json!(true), "{media_type}: {built}");
    }
}
