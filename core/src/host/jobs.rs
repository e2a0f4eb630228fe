//! The job builder's functions as JSON in, JSON out, for the bindings (Node and wasm share it).
//! Every answer is `{"ok": true, …}` or `{"ok": false, "code": …, "error": …}`, never a panic.

use serde_json::{json, Value};

use crate::attachments::FILE_TYPES;
use crate::jobs::{self, JobSpec, ProviderEndpoint};
use crate::providers::PROVIDERS;

fn refusal(code: &str, error: impl std::fmt::Display) -> String {
    json!({ "ok": false, "code": code, "error": error.to_string() }).to_string()
}

fn spec(spec_json: &str) -> Result<JobSpec, String> {
    serde_json::from_str(spec_json)
        .map_err(|e| refusal("ERR_BATCHLING_INVALID_JOB", format!("bad job: {e}")))
}

/// The providers the job builder serves, in registry order, with what a host needs to reach each
/// one when the caller gives no settings:
/// `{"ok":true,"providers":[{"name":"openai","defaultBaseUrl":"https://api.openai.com/v1",
/// "apiKeyEnv":"OPENAI_API_KEY","baseUrlEnv":"OPENAI_BASE_URL"}, …]}`.
pub fn providers_json() -> String {
    let providers: Vec<Value> = PROVIDERS
        .iter()
        .filter(|d| d.jobs.is_some())
        .map(|d| {
            json!({
                "name": d.name,
                "defaultBaseUrl": d.default_base_url,
                "apiKeyEnv": d.api_key_env,
                "baseUrlEnv": d.base_url_env,
            })
        })
        .collect();
    json!({ "ok": true, "providers": providers }).to_string()
}

/// The files a job may name by path, in order:
/// `{"ok":true,"fileTypes":[{"extension":".pdf","mediaType":"application/pdf"}, …]}`
/// (see [`crate::attachments::FILE_TYPES`]).
pub fn file_types_json() -> String {
    let types: Vec<Value> = FILE_TYPES
        .iter()
        .map(|(extension, media_type)| json!({ "extension": extension, "mediaType": media_type }))
        .collect();
    json!({ "ok": true, "fileTypes": types }).to_string()
}

/// `{"ok":true,"provider":"openai"}`: which provider serves the job's model (so the host can
/// pick its key), or why the job is invalid (e.g. an unknown model, with the closest names).
pub fn provider(spec_json: &str) -> String {
    let job = match spec(spec_json) {
        Ok(job) => job,
        Err(refusal) => return refusal,
    };
    match jobs::job_provider(&job) {
        Ok(provider) => json!({ "ok": true, "provider": provider.as_str() }).to_string(),
        Err(e) => refusal(e.code(), e),
    }
}

/// `{"ok":true,"request":{method,url,headers,body},"estimatedUsd":…}`.
pub fn build_request(spec_json: &str, endpoint_json: &str) -> String {
    let job = match spec(spec_json) {
        Ok(job) => job,
        Err(refusal) => return refusal,
    };
    let endpoint: ProviderEndpoint = match serde_json::from_str(endpoint_json) {
        Ok(endpoint) => endpoint,
        Err(e) => return refusal("ERR_BATCHLING_INVALID_OPTION", format!("bad endpoint: {e}")),
    };
    match jobs::build_request(&job, &endpoint) {
        Ok(request) => json!({
            "ok": true,
            "request": {
                "method": request.method,
                "url": request.url,
                "headers": request.headers,
                "body": request.body,
            },
            "estimatedUsd": jobs::estimate_job_cost(&job),
        })
        .to_string(),
        Err(e) => refusal(e.code(), e),
    }
}

/// The job's result from the (synthetic) response its request got.
pub fn extract_result(spec_json: &str, status: u16, body: &str) -> String {
    let job = match spec(spec_json) {
        Ok(job) => job,
        Err(refusal) => return refusal,
    };
    let result = jobs::extract_result(&job, status, body);
    let mut value = serde_json::to_value(&result).expect("results serialize");
    if let Value::Object(map) = &mut value {
        map.insert("ok".into(), Value::Bool(result.ok));
    }
    value.to_string()
}
