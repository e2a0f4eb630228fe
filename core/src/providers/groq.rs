//! Groq: the OpenAI batch protocol (`openai_compat`) under `https://api.groq.com/openai/v1`.
//! Wire formats: providers.md §6.

use super::hosts::window_hours;
use super::openai_compat::{Profile, CHAT, MB};
use super::{OpenAi, ProviderDescriptor, ProviderId};

/// 100 MB (SDK docstring), window "24h" (it accepts up to "7d"); the batch endpoint enum is chat
/// completions only (audio transcription takes multipart uploads, which pass through).
const PROFILE: Profile = Profile {
    endpoints: &[CHAT],
    completion_window: "24h",
    max_requests: 50_000,
    max_file_bytes: 100 * MB,
    recognize_at: None,
};

pub(super) const DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    id: ProviderId::Groq,
    name: "groq",
    adapter: &OpenAi,
    openai_profile: Some(&PROFILE),
    hosts: &["https://api.groq.com/openai/v1"],
    default_base_url: Some("https://api.groq.com/openai/v1"),
    window_error,
    api_key_env: Some("GROQ_API_KEY"),
    base_url_env: None,
    jobs: None,
};

/// Groq takes windows of 24h to 7d.
fn window_error(window: &str) -> Option<String> {
    let hours = window_hours(window);
    (!hours.is_some_and(|h| (24..=7 * 24).contains(&h)))
        .then(|| format!("completionWindow {window:?}: Groq accepts \"24h\" to \"7d\""))
}
