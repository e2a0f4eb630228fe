//! What the job builder needs from a provider it serves ([`JobFormat`]), and the
//! provider-neutral plan it renders ([`Prepared`]: turns of [`Part`]s) and reads answers into
//! ([`Output`]). Each such provider implements [`JobFormat`] in its own file and names it in its
//! descriptor ([`crate::providers::ProviderDescriptor`]'s `jobs`); the rest of `jobs/` is
//! provider-neutral and reaches a provider only through it.

use serde_json::Value;

use crate::catalog::models::ModelInfo;

use super::spec::{Citation, JobSpec};

/// A provider's rules for a job, the synchronous request its SDK would send, and how its answer
/// reads. Plain functions over plain data, like the batch adapters.
pub(crate) trait JobFormat: Sync {
    /// Image media types the provider accepts inline.
    fn image_types(&self) -> &'static [&'static str];

    /// The highest `temperature` the provider accepts (the lowest is 0).
    fn max_temperature(&self) -> f64 {
        2.0
    }

    /// The model name as the request carries it.
    fn model_name<'a>(&self, model: &'a str) -> &'a str {
        model
    }

    /// The output cap the request carries when the job sets none (`None`: no cap is sent).
    fn default_max_tokens(&self, _info: &ModelInfo) -> Option<u64> {
        None
    }

    /// The response schema to send for `schema` (a JSON object), or why it cannot be used.
    fn wire_schema(&self, schema: &Value) -> Result<Value, String>;

    /// Whether [`JobFormat::wire_schema`] sends OpenAI's strict form, whose `null`s for omitted
    /// optional properties are dropped from the answer before it is checked.
    fn strict_schema(&self) -> bool {
        false
    }

    /// Whether the provider gets a job's content blocks (system prompt, messages) unchanged
    /// (Anthropic: `cache_control` marks prompt-cache breakpoints), rather than their text.
    fn takes_content_blocks(&self) -> bool {
        false
    }

    /// JSON pointers of the body fields structured output relies on, which `extra` may not set
    /// when the job has a schema.
    fn schema_fields(&self) -> &'static [&'static str];

    /// Any further reason an `extra` (as a JSON object) would undo structured output.
    fn schema_extra_conflict(&self, _extra: &Value) -> Option<String> {
        None
    }

    /// The request body; `placeholder` leaves file data out (for estimates).
    fn body(&self, p: &Prepared, placeholder: bool) -> Value;

    /// The request's URL under `base_url` (no trailing slash) and the provider's own headers:
    /// auth (only when `api_key` is not empty) and any version header.
    fn target(&self, base_url: &str, model: &str, api_key: &str)
        -> (String, Vec<(String, String)>);

    /// A documented size limit of one request, when it is below the batch's own.
    fn max_request_bytes(&self) -> Option<usize> {
        None
    }

    /// What the answer (a JSON body with a 2xx status) holds.
    fn output(&self, answer: &Value) -> Output;
}

// ---- the plan: a validated job, provider-neutral ----------------------------------------

/// A validated job, ready to render for its provider.
pub(crate) struct Prepared<'a> {
    pub(crate) job: &'a JobSpec,
    pub(crate) info: &'static ModelInfo,
    /// How its provider renders it.
    pub(crate) format: &'static dyn JobFormat,
    /// The model name as sent (Gemini without a `models/` prefix).
    pub(crate) model: &'a str,
    pub(crate) system: Option<String>,
    /// The system prompt as content blocks, for a format that [takes them](JobFormat::takes_content_blocks)
    /// and a job that gives blocks (its text turned into a `text` block where it gives text).
    pub(crate) system_blocks: Option<Vec<Value>>,
    pub(crate) turns: Vec<Turn<'a>>,
    pub(crate) max_tokens: Option<u64>,
    /// The response schema as sent: OpenAI's strict form of the job's (see
    /// [`crate::json_schema::to_strict`]), the job's own for Anthropic and Gemini.
    pub(crate) schema: Option<Value>,
}

pub(crate) struct Turn<'a> {
    pub(crate) assistant: bool,
    pub(crate) parts: Vec<Part<'a>>,
    /// The message's content blocks as given, for a format that takes them.
    pub(crate) blocks: Option<&'a [Value]>,
}

pub(crate) enum Part<'a> {
    Text(String),
    Pdf {
        name: &'a str,
        data: &'a str,
    },
    Image {
        media_type: &'static str,
        data: &'a str,
    },
}

/// A file's base64 data as rendered: empty when `placeholder` (estimates leave the bytes out).
pub(crate) fn file_data(d: &str, placeholder: bool) -> &str {
    if placeholder {
        ""
    } else {
        d
    }
}

/// What one provider's answer holds, before schema checks.
#[derive(Default)]
pub(crate) struct Output {
    pub(crate) text: Option<String>,
    /// Anthropic tool input.
    pub(crate) structured: Option<Value>,
    pub(crate) citations: Vec<Citation>,
    /// All prompt tokens (cache reads and writes included).
    pub(crate) input_tokens: Option<u64>,
    /// Reasoning and thinking included.
    pub(crate) output_tokens: Option<u64>,
    /// Of `input_tokens`: read from a prompt cache, written to a 5-minute / 1-hour one.
    pub(crate) cache_read_tokens: u64,
    pub(crate) cache_write_5m_tokens: u64,
    pub(crate) cache_write_1h_tokens: u64,
    pub(crate) finish_reason: Option<String>,
    pub(crate) truncated: bool,
    /// A refusal, a block, a missing answer.
    pub(crate) problem: Option<String>,
}

impl Output {
    /// The usage to bill, `None` when the answer reports none.
    pub(crate) fn usage(&self) -> Option<crate::catalog::pricing::Usage> {
        if self.input_tokens.is_none() && self.output_tokens.is_none() {
            return None;
        }
        Some(crate::catalog::pricing::Usage {
            input_tokens: self.input_tokens.unwrap_or(0),
            cache_read_tokens: self.cache_read_tokens,
            cache_write_5m_tokens: self.cache_write_5m_tokens,
            cache_write_1h_tokens: self.cache_write_1h_tokens,
            output_tokens: self.output_tokens.unwrap_or(0),
        })
    }
}

/// The unsigned integer at `pointer` in `v`, if any.
pub(crate) fn u64_at(v: &Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(Value::as_u64)
}
