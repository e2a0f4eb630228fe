//! Doubleword: the OpenAI batch protocol (`openai_compat`) under `https://api.doubleword.ai/v1`.
//! Wire formats: providers.md §9.

use super::hosts::any_window;
use super::openai_compat::{Profile, CHAT, EMBEDDINGS, MB};
use super::{OpenAi, ProviderDescriptor, ProviderId};

/// 200 MB; chat completions and embeddings.
const PROFILE: Profile = Profile {
    endpoints: &[CHAT, EMBEDDINGS],
    completion_window: "24h",
    max_requests: 50_000,
    max_file_bytes: 200 * MB,
    recognize_at: None,
};

pub(super) const DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    id: ProviderId::Doubleword,
    name: "doubleword",
    adapter: &OpenAi,
    openai_profile: Some(&PROFILE),
    hosts: &["https://api.doubleword.ai/v1"],
    default_base_url: Some("https://api.doubleword.ai/v1"),
    window_error: any_window,
    api_key_env: Some("DOUBLEWORD_API_KEY"),
    base_url_env: None,
    jobs: None,
};
