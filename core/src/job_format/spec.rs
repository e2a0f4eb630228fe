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
    /// Text, or content blocks (Anthropic's `{type: "text", text, cache_control}`), which
    /// Anthropic gets unchanged and other providers as their text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Content>,
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
    pub content: Content,
}

/// A message's (or the system prompt's) content: text, or content blocks as Anthropic's
/// Messages API takes them (`[{ type: "text", text, cache_control: { type: "ephemeral" } }]`),
/// sent to Anthropic unchanged (so prompt caching works) and to other providers as the text of
/// their `text` blocks.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<Value>),
}

impl From<&str> for Content {
    fn from(text: &str) -> Self {
        Content::Text(text.to_string())
    }
}

impl From<String> for Content {
    fn from(text: String) -> Self {
        Content::Text(text)
    }
}

impl Content {
    /// The text: the string, or the `text` blocks' texts joined by a blank line. Refused: an
    /// empty one, a block that is not an object with a `type`, and (unless `any_block`) a block
    /// other than a non-empty `text` block.
    pub(crate) fn text(&self, any_block: bool) -> Result<String, String> {
        let blocks = match self {
            Content::Text(t) if t.trim().is_empty() => return Err("is empty".into()),
            Content::Text(t) => return Ok(t.clone()),
            Content::Blocks(b) if b.is_empty() => return Err("has no content blocks".into()),
            Content::Blocks(b) => b,
        };
        let mut texts = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            let kind = block.get("type").and_then(Value::as_str).ok_or_else(|| {
                format!("content block {i} must be an object with a `type`, e.g. {{ \"type\": \"text\", \"text\": \"…\" }}")
            })?;
            match block.get("text").and_then(Value::as_str) {
                Some(t) if kind == "text" && !t.trim().is_empty() => texts.push(t),
                _ if any_block && kind != "text" => {}
                _ if kind == "text" => {
                    return Err(format!("content block {i} needs a non-empty `text`"))
                }
                _ => {
                    return Err(format!(
                        "content block {i} has type `{kind}`; only Anthropic models take blocks other than `text`"
                    ))
                }
            }
        }
        Ok(texts.join("\n\n"))
    }
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
