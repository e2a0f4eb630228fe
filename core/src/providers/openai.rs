//! OpenAI. Its batch protocol, shared with the other OpenAI-compatible providers, is in
//! `openai_compat`; its paths identify it on any host (see [`OpenAi`]'s recognition), so it
//! has no built-in host. Wire formats: providers.md §1.

use super::hosts::any_window;
use super::openai_compat::{Profile, CHAT, EMBEDDINGS, MB, RESPONSES};
use super::{OpenAi, ProviderDescriptor, ProviderId};

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
    jobs: Some(&crate::jobs::OpenAiJobs),
};
