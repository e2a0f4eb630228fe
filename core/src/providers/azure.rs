//! Azure OpenAI: the OpenAI batch protocol (`openai_compat`) on each resource's own host, with
//! its classic deployment URLs recognised here. Wire formats: providers.md §2.

use super::common;
use super::hosts::window_hours;
use super::openai_compat::{batch_endpoint, route, route_for, Profile, CHAT, EMBEDDINGS, MB};
use super::{HostMatch, OpenAi, PassThrough, ProviderDescriptor, ProviderId, Route};
use crate::http::HttpRequest;

/// OpenAI's limits; chat completions and embeddings. Whether its batches take `/responses` lines
/// is not documented in providers.md, so responses calls pass through.
const PROFILE: Profile = Profile {
    endpoints: &[CHAT, EMBEDDINGS],
    completion_window: "24h",
    max_requests: 50_000,
    max_file_bytes: 200 * MB,
    recognize_at: Some(recognize_at),
};

pub(super) const DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    id: ProviderId::Azure,
    name: "azure",
    adapter: &OpenAi,
    openai_profile: Some(&PROFILE),
    // Classic `/openai/deployments/{name}/…?api-version=` and the v1 surface `/openai/v1/…`, on
    // both resource host names Azure hands out.
    hosts: &[
        "https://*.openai.azure.com/openai",
        "https://*.cognitiveservices.azure.com/openai",
    ],
    // No global endpoint: every resource has its own host.
    default_base_url: None,
    window_error,
    api_key_env: Some("AZURE_OPENAI_API_KEY"),
    base_url_env: None,
    jobs: None,
};

/// Azure OpenAI accepts only "24h".
fn window_error(window: &str) -> Option<String> {
    (window_hours(window) != Some(24))
        .then(|| format!("completionWindow {window:?}: Azure OpenAI accepts only \"24h\""))
}

/// Azure OpenAI (providers.md §2), under a host whose base is the resource's `/openai`:
/// - classic: `/deployments/{name}/chat/completions?api-version=V` (and `/embeddings`), as the
///   `AzureOpenAI` client of the `openai` package sends them. The batch calls go to
///   `{base}/files?api-version=V`, `{base}/batches?api-version=V`, …; the deployment is the
///   model (`body.model` of each line) and lines use `"url": "/chat/completions"`, without the
///   `/v1` prefix, as Azure's classic examples do. A classic call without an api-version passes
///   through (Azure refuses it; the caller sees Azure's answer).
/// - v1 surface: `/v1/chat/completions` (model in the body, no api-version needed), batched
///   exactly like OpenAI under `{base}/v1`.
///
/// A declared Azure host whose base already ends in `/v1` is the v1 surface.
fn recognize_at(req: &HttpRequest, host: &HostMatch) -> Result<Route, PassThrough> {
    let api_version = host
        .query
        .and_then(|q| common::query_param(q, "api-version"))
        .filter(|v| !v.is_empty());
    let mut settings = host.settings.clone();
    settings.api_version = api_version.map(str::to_string);
    if let Some(rest) = host.rest_path.strip_prefix("/deployments/") {
        let (deployment, suffix) = rest.split_once('/').ok_or(PassThrough::UnknownUrl)?;
        let endpoint = batch_endpoint(&PROFILE, &format!("/{suffix}"))?;
        if deployment.is_empty() || api_version.is_none() {
            return Err(PassThrough::UnknownUrl);
        }
        // The SDK sends the caller's `model` (or none) in the body; Azure runs the deployment
        // named in the path, and a batch line names it in `body.model`.
        return route_for(
            req,
            &host.base_url,
            endpoint.trim_start_matches("/v1"),
            ProviderId::Azure,
            &settings,
            Some(deployment),
        );
    }
    let (base, rest) = match host.rest_path.strip_prefix("/v1") {
        Some(rest) if rest.starts_with('/') => (format!("{}/v1", host.base_url), rest),
        _ if host.base_url.ends_with("/v1") => (host.base_url.clone(), host.rest_path),
        _ => return Err(PassThrough::UnknownUrl),
    };
    let endpoint = batch_endpoint(&PROFILE, rest)?;
    route(req, &base, endpoint, ProviderId::Azure, &settings)
}
