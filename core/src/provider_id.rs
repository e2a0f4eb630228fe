//! The names of the batch providers: the one type every layer shares (the catalog, the job
//! formats, the providers' registry). What each provider is lives in `providers/`.

use serde::{Deserialize, Serialize};

/// The batch providers batchling knows. Groq, Doubleword and Azure OpenAI speak the OpenAI batch
/// protocol (one adapter, `OpenAi`, with per-host settings); the others have their own. What
/// each one is lives in its `ProviderDescriptor` (`ProviderId::descriptor`, in `providers`).
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderId {
    OpenAi,
    Anthropic,
    Gemini,
    Groq,
    Doubleword,
    Azure,
    Mistral,
    Together,
    Xai,
}
