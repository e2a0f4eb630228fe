//! The job builder's functions as JSON in, JSON out, for the bindings (Node and wasm share it).
//! Every answer is `{"ok": true, …}` or `{"ok": false, "code": …, "error": …}`, never a panic.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use super::refusal;
use crate::attachments::FILE_TYPES;
use crate::jobs::{self, JobSpec, ProviderEndpoint};
use crate::providers::{ProviderId, PROVIDERS};

fn spec(spec_json: &str) -> Result<JobSpec, String> {
    serde_json::from_str(spec_json)
        .map_err(|e| refusal("ERR_BATCHLING_INVALID_JOB", format!("bad job: {e}")))
}

/// A provider the job builder serves, with what a host needs to reach it when the caller gives
/// no settings.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobProvider {
    pub name: ProviderId,
    pub default_base_url: Option<&'static str>,
    /// The environment variables its API key and base URL are read from.
    pub api_key_env: Option<&'static str>,
    pub base_url_env: Option<&'static str>,
}

/// A file a job may name by path: its extension (lower case, with the dot) and media type.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileType {
    pub extension: &'static str,
    pub media_type: &'static str,
}

/// The providers the job builder serves, in registry order.
pub fn providers() -> Vec<JobProvider> {
    PROVIDERS
        .iter()
        .filter(|d| d.jobs.is_some())
        .map(|d| JobProvider {
            name: d.id,
            default_base_url: d.default_base_url,
            api_key_env: d.api_key_env,
            base_url_env: d.base_url_env,
        })
        .collect()
}

/// `{"ok":true,"providers":[{"name":"openai","defaultBaseUrl":"https://api.openai.com/v1",
/// "apiKeyEnv":"OPENAI_API_KEY","baseUrlEnv":"OPENAI_BASE_URL"}, …]}` ([`providers`]).
pub fn providers_json() -> String {
    json!({ "ok": true, "providers": providers() }).to_string()
}

/// The files a job may name by path, in order:
/// `{"ok":true,"fileTypes":[{"extension":".pdf","mediaType":"application/pdf"}, …]}`
/// (see [`crate::attachments::FILE_TYPES`]).
pub fn file_types_json() -> String {
    let types: Vec<FileType> = FILE_TYPES
        .iter()
        .map(|&(extension, media_type)| FileType {
            extension,
            media_type,
        })
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

/// `{"ok":true,"request":{method,url,headers,body}}`: the job's request, sent to
/// the endpoint of the provider that serves its model. `endpoints_json` holds the host's endpoints
/// by provider name (`{"openai":{"baseUrl":"…","apiKey":"…"},…}`); a provider with no API key
/// there is refused (`ERR_BATCHLING_MISSING_KEY`, naming the environment variable to set), as is
/// an invalid job.
pub fn build_request(spec_json: &str, endpoints_json: &str) -> String {
    let job = match spec(spec_json) {
        Ok(job) => job,
        Err(refusal) => return refusal,
    };
    let endpoints: BTreeMap<String, ProviderEndpoint> = match serde_json::from_str(endpoints_json) {
        Ok(endpoints) => endpoints,
        Err(e) => {
            return refusal(
                "ERR_BATCHLING_INVALID_OPTION",
                format!("bad endpoints: {e}"),
            )
        }
    };
    match jobs::job_endpoint(&job, &endpoints)
        .and_then(|endpoint| jobs::build_request(&job, endpoint))
    {
        Ok(request) => json!({
            "ok": true,
            "request": {
                "method": request.method,
                "url": request.url,
                "headers": request.headers,
                "body": request.body,
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_and_file_types_read_as_hosts_use_them() {
        let providers: Value = serde_json::from_str(&providers_json()).unwrap();
        assert_eq!(
            providers["providers"][0],
            json!({
                "name": "openai",
                "defaultBaseUrl": "https://api.openai.com/v1",
                "apiKeyEnv": "OPENAI_API_KEY",
                "baseUrlEnv": "OPENAI_BASE_URL",
            })
        );
        let names: Vec<&str> = providers["providers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["openai", "anthropic", "gemini"]);
        let types: Value = serde_json::from_str(&file_types_json()).unwrap();
        assert_eq!(
            types["fileTypes"][0],
            json!({ "extension": ".pdf", "mediaType": "application/pdf" })
        );
    }
}
