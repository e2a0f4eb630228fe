//! What a job is (as the host passes it), where it goes, and what comes back.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Name of the OpenAI json_schema and of the Anthropic tool that carry structured output.
pub const RESPONSE_SCHEMA_NAME: &str = "response";

/// One offline job, as the host passes it (camelCase JSON; unknown fields are rejected so a
/// misspelt option fails loudly).
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSpec {
    /// Unique within a batch; names the job in errors and results.
    pub id: String,
    pub model: String,
    /// A conversation. Excludes `file` / `prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    /// A document or image to ask about; needs `prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInput>,
    /// The question or instruction. On its own it is a one-message conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// A JSON Schema the answer must follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<Value>,
    /// Provider-specific body fields, deep-merged into the request body last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Map<String, Value>>,
    /// The user's price for this job's model (the host sets it from the `prices` option): its
    /// cost is computed at it, and with a `provider` a model the registry does not know (a
    /// fine-tune id) is accepted as that provider's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<crate::catalog::pricing::PriceOverride>,
}

#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// "system", "user" or "assistant".
    pub role: String,
    pub content: String,
}

/// A file the host read and base64-encoded (standard alphabet, padded).
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileInput {
    pub name: String,
    /// "application/pdf", "image/png", "text/plain", ...
    pub media_type: String,
    pub data_base64: String,
}

impl fmt::Debug for FileInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileInput")
            .field("name", &self.name)
            .field("media_type", &self.media_type)
            .field(
                "data_base64",
                &format_args!("<{} chars>", self.data_base64.len()),
            )
            .finish()
    }
}

/// Where and as whom to send a provider's requests.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderEndpoint {
    /// No trailing slash needed. Empty means the provider's default ([`crate::jobs::default_base_url`]).
    pub base_url: String,
    /// Empty: no auth header is sent (e.g. a proxy adds it).
    pub api_key: String,
    /// Further headers for every request (`OpenAI-Project`, `anthropic-beta`, proxy auth, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl fmt::Debug for ProviderEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderEndpoint")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A passage the answer cites (Anthropic citations).
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Citation {
    pub cited_text: String,
    /// The cited document's title (the file name), else "document <n>".
    pub source: String,
    /// 1-based, inclusive, for PDF page citations.
    #[serde(default)]
    pub start_page: Option<u64>,
    #[serde(default)]
    pub end_page: Option<u64>,
}

/// The outcome of one job.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobResult {
    /// The job's `id`.
    pub job_id: String,
    /// A 2xx answer with usable content (and, with a schema, valid structured output).
    pub ok: bool,
    /// The HTTP status of the (synthetic) response.
    pub status: u16,
    /// The raw answer text. With a schema: the JSON text (Anthropic: the tool input,
    /// serialised). Kept when the JSON is invalid, so it can be inspected.
    #[serde(default)]
    pub response: Option<String>,
    /// The structured answer, only when it parsed and matched the schema. For OpenAI (whose
    /// strict mode makes optional properties required and nullable) the nulls of optional
    /// properties that do not accept null are dropped first: an absent field stays absent.
    #[serde(default)]
    pub parsed_response: Option<Value>,
    #[serde(default)]
    pub citations: Vec<Citation>,
    /// As the provider reported them (Anthropic: including cache reads/writes; Gemini output:
    /// candidates plus thinking tokens, which are billed as output).
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    /// The reported usage at the model's batch price (the user's override, else the catalog's),
    /// prompt-cache reads and writes at their own rates. `None` without usage or a known price.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// The provider's own stop reason ("stop", "end_turn", "MAX_TOKENS", ...).
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// The answer was cut off by the output token cap.
    #[serde(default)]
    pub truncated: bool,
    #[serde(default)]
    pub error: Option<String>,
}
